"""DataFacts: what ``profile_data`` measured, as plain data. The data checks read only this."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ColumnFacts:
    """Distribution of one numeric feature (on the profiled rows)."""

    name: str
    mean: float
    std: float
    min: float
    max: float
    q01: float
    q25: float
    median: float
    q75: float
    q99: float
    skew: float
    n_unique: int  # on the profiled rows
    integer_valued: bool
    binary: bool  # two values at most


@dataclass
class TargetFacts:
    task: str  # classification | regression
    n_nonfinite: int
    classes: list[Any] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    note: str | None = None


@dataclass
class DuplicateFacts:
    n_duplicate_rows: int  # rows whose features repeat another row's exactly
    n_conflicting_groups: int  # sets of identical rows that carry different labels
    n_conflicting_rows: int
    examples: list[list[int]] = field(default_factory=list)  # row indices of a few conflicting sets


@dataclass
class GroupScaleFacts:
    """How one value column's scale varies across the values of one key column (long format)."""

    value_col: str
    group_col: str
    groups: list[str]
    counts: list[int]
    mean: list[float]
    std: list[float]
    scale_spread: float  # largest / smallest std among groups with enough rows
    pooled_std: float  # std of the whole column
    n_small_groups: int  # groups with too few rows to judge


@dataclass
class BaselineFacts:
    """A quick cross-validated scikit-learn model against a label-permutation null."""

    model: str
    scoring: str
    score: float
    chance_level: float  # mean score of the permuted-label fits
    null_std: float
    p_value: float
    n_permutations: int
    folds: int
    rows: int
    nonlinear: "BaselineFacts | None" = None  # a tree model, tried when the linear one finds nothing


@dataclass
class LabelNoiseFacts:
    share: float
    n_flagged: int
    n_examined: int
    indices: list[int]  # row indices in the caller's data, most likely wrong first
    method: str
    oof_accuracy: float  # accuracy of the out-of-fold predictions the flags come from
    # the judge's out-of-fold balanced accuracy on a scale where chance (1/K) is 0 and perfect is 1
    skill: float | None = None
    model: str = ""  # the model whose out-of-fold predictions judged the labels
    # every model tried: {name: {"share": flagged share, "oof_accuracy": ...}}; a misfit of the linear
    # model is not noise when a nonlinear one fits the labels better
    models_tried: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class DataFacts:
    source: str  # numpy | torch | pandas | dataset
    n_rows: int
    n_features: int  # numeric features
    feature_names: list[str]
    columns: list[ColumnFacts]  # the profiled numeric columns
    non_finite: dict[str, int]  # column -> NaN/Inf count (only columns that have some)
    non_finite_rows: list[int]  # a few row indices with NaN/Inf
    constant_columns: list[str]
    categorical_columns: dict[str, int]  # non-numeric column -> number of distinct values
    target: TargetFacts | None
    duplicates: DuplicateFacts | None
    group_scales: list[GroupScaleFacts]
    baseline: BaselineFacts | None
    label_noise: LabelNoiseFacts | None
    rows_profiled: int
    rows_baseline: int | None = None
    inputs: str = "features"  # features | token_ids (ids for an embedding: no scale to judge)
    vocabulary: int | None = None  # token ids: the largest id + 1
    notes: list[str] = field(default_factory=list)  # what was sampled or skipped, and why
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    def column(self, name: str) -> ColumnFacts | None:
        return next((c for c in self.columns if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
