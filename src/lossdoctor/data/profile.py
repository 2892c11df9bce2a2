"""profile_data: measure a dataset once, as plain DataFacts; check_data: judge the facts.

Costs are bounded for large inputs: NaN/Inf and constant columns are counted over every row
(one chunked pass), duplicates are found by hashing, distribution statistics come from a random
sample of ``PROFILE_MAX_ROWS`` rows and the model-based checks from ``BASELINE_MAX_ROWS``.
Everything sampled is said in ``DataFacts.notes`` and the report's metadata.
"""
from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..findings import Report
from ..registry import Evidence, diagnose_evidence
from .baseline import (BASELINE_FOLDS, BASELINE_MAX_ROWS, LABEL_NOISE_FOLDS, MAX_ONE_HOT_LEVELS, find_label_noise,
                       no_signal_baseline)
from .facts import ColumnFacts, DataFacts, DuplicateFacts, GroupScaleFacts, TargetFacts
from .inputs import Table, to_table

# Rows the distribution statistics (quantiles, skew, distinct values) are computed on: 50,000
# random rows give quantiles to about 0.5% and keep the pass well under a second per 100 columns.
PROFILE_MAX_ROWS = 50_000
# Columns profiled in detail; image-like inputs with more features are sampled column-wise.
MAX_PROFILED_COLUMNS = 2000
# Rows per chunk in the full NaN/Inf pass (bounds the temporary boolean array).
CHUNK_ROWS = 200_000
# An integer-valued target with at most this many distinct values is taken as class labels.
MAX_CLASSES = 50
# Columns hashed first to find duplicate candidates (the most distinct ones); full rows only for candidates.
DUPLICATE_KEY_COLUMNS = 8
# A key column with more distinct values than this is an identifier, not a group.
MAX_GROUPS = 1000
# A group needs this many rows for its std to mean something; smaller ones are counted, not judged.
MIN_GROUP_ROWS = 5
# Value columns examined per key column (long-format tables have one or a few).
MAX_VALUE_COLUMNS = 100
# Per-group statistics kept in the facts (the plot shows fewer).
MAX_GROUPS_KEPT = 200
# Row indices kept as examples in the facts.
MAX_EXAMPLES = 20


def _full_pass(numeric: np.ndarray) -> tuple[np.ndarray, list[int], np.ndarray, np.ndarray]:
    """NaN/Inf count per column, a few bad rows, and min/max of the finite values, over all rows."""
    n, d = numeric.shape
    bad_counts = np.zeros(d, dtype=np.int64)
    bad_rows: list[int] = []
    col_min = np.full(d, np.inf)
    col_max = np.full(d, -np.inf)
    for start in range(0, n, CHUNK_ROWS):
        chunk = numeric[start:start + CHUNK_ROWS]
        bad = ~np.isfinite(chunk)
        if bad.any():
            bad_counts += bad.sum(axis=0)
            if len(bad_rows) < MAX_EXAMPLES:
                bad_rows += (np.flatnonzero(bad.any(axis=1))[:MAX_EXAMPLES] + start).tolist()
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
                masked = np.where(bad, np.nan, chunk)
                lo, hi = np.nanmin(masked, axis=0), np.nanmax(masked, axis=0)
        else:
            lo, hi = chunk.min(axis=0), chunk.max(axis=0)
        col_min = np.fmin(col_min, lo)
        col_max = np.fmax(col_max, hi)
    return bad_counts, bad_rows[:MAX_EXAMPLES], col_min, col_max


def _column_facts(names: list[str], sample: np.ndarray) -> list[ColumnFacts]:
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: reported as non-finite instead
        mean = np.nanmean(sample, axis=0)
        std = np.nanstd(sample, axis=0)
        q = np.nanpercentile(sample, [1, 25, 50, 75, 99], axis=0)
        z = (sample - mean) / np.where(std > 0, std, 1.0)
        skew = np.nanmean(z ** 3, axis=0)
    facts = []
    for j, name in enumerate(names):
        col = sample[:, j]
        col = col[np.isfinite(col)]
        n_unique = int(np.unique(col).size)
        facts.append(ColumnFacts(
            name=name, mean=float(mean[j]), std=float(std[j]),
            min=float(col.min()) if col.size else float("nan"), max=float(col.max()) if col.size else float("nan"),
            q01=float(q[0, j]), q25=float(q[1, j]), median=float(q[2, j]), q75=float(q[3, j]), q99=float(q[4, j]),
            skew=float(skew[j]) if std[j] > 0 else 0.0, n_unique=n_unique,
            integer_valued=bool(col.size and np.all(col == np.round(col))), binary=n_unique <= 2,
        ))
    return facts


def _target_facts(y: np.ndarray, task: str | None) -> TargetFacts:
    series = pd.Series(y)
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    n_nonfinite = int((~np.isfinite(series.to_numpy(dtype=float))).sum()) if numeric else int(series.isna().sum())
    finite = series[np.isfinite(series.to_numpy(dtype=float))] if numeric else series.dropna()
    if task is None:
        if not numeric:
            task = "classification"
        else:
            values = finite.to_numpy(dtype=float)
            integer = values.size > 0 and bool(np.all(values == np.round(values)))
            task = "classification" if integer and finite.nunique() <= MAX_CLASSES else "regression"
    elif task not in ("classification", "regression"):
        raise InputError(f"check_data: task must be 'classification', 'regression' or None, got {task!r}")
    facts = TargetFacts(task=task, n_nonfinite=n_nonfinite)
    if task == "classification":
        counts = finite.value_counts().sort_index()
        facts.classes = [c.item() if hasattr(c, "item") else c for c in counts.index]
        facts.counts = [int(c) for c in counts.to_numpy()]
    elif numeric and len(finite):
        values = finite.to_numpy(dtype=float)
        facts.min, facts.max = float(values.min()), float(values.max())
        facts.mean, facts.std = float(values.mean()), float(values.std())
    else:
        raise InputError("check_data: task='regression' needs a numeric y")
    return facts


def _duplicates(table: Table, columns: list[ColumnFacts], col_index: list[int]) -> DuplicateFacts:
    """Rows with identical features, and those among them with different labels (hash, then verify)."""
    n = table.n_rows
    order = np.argsort([-c.n_unique for c in columns])[:DUPLICATE_KEY_COLUMNS]
    keys = [col_index[i] for i in order]
    parts = [pd.DataFrame(table.numeric[:, keys], copy=False)] if keys else []
    if table.frame is not None and table.categorical:
        parts.append(table.frame[list(table.categorical)].reset_index(drop=True))
    first = pd.util.hash_pandas_object(pd.concat(parts, axis=1), index=False).to_numpy()
    candidates = np.flatnonzero(pd.Series(first).duplicated(keep=False).to_numpy())
    if candidates.size == 0:
        return DuplicateFacts(0, 0, 0)
    full_parts = [pd.DataFrame(table.numeric[candidates], copy=False)]
    if table.frame is not None and table.categorical:
        full_parts.append(table.frame[list(table.categorical)].iloc[candidates].reset_index(drop=True))
    full = pd.util.hash_pandas_object(pd.concat(full_parts, axis=1), index=False).to_numpy()
    groups = pd.Series(candidates).groupby(full).apply(list)
    n_dup, n_conf_groups, n_conf_rows, examples = 0, 0, 0, []
    for rows in groups:
        if len(rows) < 2:
            continue
        rows = np.asarray(rows)
        same = np.all((table.numeric[rows] == table.numeric[rows[0]]) |
                      (np.isnan(table.numeric[rows]) & np.isnan(table.numeric[rows[0]])), axis=1)
        rows = rows[same]
        if len(rows) < 2:
            continue
        n_dup += len(rows) - 1
        if table.y is not None and pd.Series(table.y[rows]).nunique(dropna=False) > 1:
            n_conf_groups += 1
            n_conf_rows += len(rows)
            if len(examples) < 5:
                examples.append([int(r) for r in (table.row_index[rows] if table.row_index is not None else rows)][:10])
    return DuplicateFacts(n_dup, n_conf_groups, n_conf_rows, examples)


def _group_scales(table: Table, sample_rows: np.ndarray, columns: list[ColumnFacts], col_index: list[int]) -> list[GroupScaleFacts]:
    """Per-group mean/std of each value column, for each key column (given, or non-numeric with few levels)."""
    keys: dict[str, np.ndarray] = {}
    if table.groups is not None:
        keys[table.group_name or "group"] = table.groups
    elif table.frame is not None:
        n = table.n_rows
        for name, levels in table.categorical.items():
            if 2 <= levels <= min(MAX_GROUPS, n // MIN_GROUP_ROWS):
                keys[name] = table.frame[name].to_numpy()
    if not keys:
        keys.update(_one_hot_key(table, sample_rows, columns, col_index))
    if not keys:
        return []
    values = [(c, j) for c, j in zip(columns, col_index) if not c.binary][:MAX_VALUE_COLUMNS]
    out = []
    for key_name, key in keys.items():
        key_sample = pd.Series(key[sample_rows]).astype(str).to_numpy()
        for col, j in values:
            v = table.numeric[sample_rows, j].astype(np.float64)
            v = np.where(np.isfinite(v), v, np.nan)
            stats = pd.DataFrame({"k": key_sample, "v": v}).groupby("k")["v"].agg(["count", "mean", "std"])
            stats["std"] = stats["std"].fillna(0.0)
            enough = stats[(stats["count"] >= MIN_GROUP_ROWS) & (stats["std"] > 0)]
            if len(enough) < 2:
                continue
            spread = float(enough["std"].max() / enough["std"].min())
            kept = stats.sort_values("count", ascending=False).head(MAX_GROUPS_KEPT)
            out.append(GroupScaleFacts(
                value_col=col.name, group_col=key_name, groups=[str(g) for g in kept.index],
                counts=[int(c) for c in kept["count"]], mean=[float(m) for m in kept["mean"]],
                std=[float(s) for s in kept["std"]], scale_spread=spread, pooled_std=float(np.nanstd(v)),
                n_small_groups=int((stats["count"] < MIN_GROUP_ROWS).sum()),
            ))
    return sorted(out, key=lambda g: -g.scale_spread)


def _one_hot_key(table: Table, sample_rows: np.ndarray, columns: list[ColumnFacts],
                 col_index: list[int]) -> dict[str, np.ndarray]:
    """A categorical key that arrives one-hot encoded (a tensor has no string columns: the measurement
    type of long-format lab data, a store or a sensor id): the 0/1 columns of which exactly one is 1
    on every row are one key, its level the column that is set. Only one such block is recognised
    (with two, every row sums to 2 and none is taken: per-group scales are then not judged)."""
    block = [(c, j) for c, j in zip(columns, col_index) if c.binary]
    if len(block) < 2:
        return {}
    onehot = table.numeric[:, [j for _, j in block]]
    sample = onehot[sample_rows]
    if not (np.isin(sample, (0.0, 1.0)).all() and np.all(sample.sum(axis=1) == 1)):
        return {}
    levels = int((sample.sum(axis=0) > 0).sum())
    if not 2 <= levels <= min(MAX_GROUPS, table.n_rows // MIN_GROUP_ROWS):
        return {}
    names = [c.name for c, _ in block]
    key = np.asarray(names, dtype=object)[np.argmax(onehot, axis=1)]
    return {f"one-hot {names[0]}..{names[-1]}": key}


def _baseline_rows(y: np.ndarray, task: str, rng: np.random.Generator, notes: list[str]) -> np.ndarray:
    """Up to BASELINE_MAX_ROWS rows with a finite label; classes too small for the folds are left out."""
    series = pd.Series(y)
    ok = series.notna().to_numpy().copy()
    if task == "regression":
        ok &= np.isfinite(series.to_numpy(dtype=float))
    rows = np.flatnonzero(ok)
    if task == "classification":
        counts = series.iloc[rows].value_counts()
        small = counts[counts < LABEL_NOISE_FOLDS].index
        if len(small):
            notes.append(f"{len(small)} class(es) with fewer than {LABEL_NOISE_FOLDS} rows left out of the baseline")
            rows = rows[~series.iloc[rows].isin(small).to_numpy()]
    if rows.size > BASELINE_MAX_ROWS:
        if task == "classification":
            from sklearn.model_selection import train_test_split

            rows, _ = train_test_split(rows, train_size=BASELINE_MAX_ROWS, stratify=series.iloc[rows].to_numpy(),
                                       random_state=int(rng.integers(2**31)))
            rows = np.sort(rows)
        else:
            rows = np.sort(rng.choice(rows, BASELINE_MAX_ROWS, replace=False))
    return rows


def _design_matrix(table: Table, rows: np.ndarray) -> np.ndarray:
    X = np.asarray(table.numeric[rows], dtype=np.float64)
    X = np.where(np.isfinite(X), X, np.nan)
    parts = [X]
    if table.frame is not None:
        for name, levels in table.categorical.items():
            if levels <= MAX_ONE_HOT_LEVELS:
                parts.append(pd.get_dummies(table.frame[name].iloc[rows].astype(str)).to_numpy(dtype=np.float64))
    if table.groups is not None and pd.Series(table.groups).nunique() <= MAX_ONE_HOT_LEVELS:
        parts.append(pd.get_dummies(pd.Series(table.groups[rows]).astype(str)).to_numpy(dtype=np.float64))
    X = np.hstack(parts) if len(parts) > 1 else X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        informative = np.nanmax(X, axis=0) > np.nanmin(X, axis=0)  # all-NaN and constant columns say nothing
    return X[:, informative] if informative.any() else X[:, :1] * 0.0


# Token ids index an embedding: as numbers they mean nothing, but which ids a row holds is what any
# text model reads first. The baseline of token ids reads a bag of tokens (how often each id occurs
# in the row) over the most frequent ids, at most this many, which bounds the matrix at
# BASELINE_MAX_ROWS x 1,000 (32 MB) whatever the vocabulary; the rarer ids share one last column.
BAG_OF_TOKENS_MAX_IDS = 1000


def _bag_of_tokens(ids: np.ndarray) -> np.ndarray:
    """(rows, ids) token ids -> (rows, kept ids + 1) counts of each frequent id in each row."""
    ids = np.asarray(ids, dtype=np.int64)
    ids = np.where(ids < 0, -1, ids)  # an ignore/padding marker such as -100: one "other" id
    values, counts = np.unique(ids[ids >= 0], return_counts=True)
    kept = values[np.argsort(-counts, kind="stable")[:BAG_OF_TOKENS_MAX_IDS]]
    column = np.full(int(ids.max(initial=0)) + 1, len(kept), dtype=np.int64)
    column[kept] = np.arange(len(kept))
    flat = np.where(ids >= 0, column[np.clip(ids, 0, None)], len(kept))
    bag = np.zeros((ids.shape[0], len(kept) + 1))
    np.add.at(bag, (np.repeat(np.arange(ids.shape[0]), ids.shape[1]), flat.ravel()), 1.0)
    return bag[:, bag.max(axis=0) > bag.min(axis=0)] if (bag.max(axis=0) > bag.min(axis=0)).any() else bag[:, :1]


def profile_data(X: Any, y: Any = None, groups: Any = None, task: str | None = None, *, baseline: bool = True,
                 random_state: int = 0, inputs: str | None = None) -> DataFacts:
    """Measure ``X`` (and ``y``, ``groups``) once: the evidence every data check reads.

    ``X``: numpy array, torch tensor, pandas DataFrame or torch Dataset (items ``(x, y)`` or dicts).
    ``y``: labels/targets, or the name of a column of ``X``. ``groups``: a key per row, or the name
    of a column of ``X`` (e.g. the lab type of a long-format lab table). ``task``: "classification",
    "regression" or None (inferred from ``y``). ``baseline=False`` skips the model-based evidence
    (no-signal baseline, label noise). ``inputs``: "features", "token_ids" (integer ids for an
    embedding layer: their scales are not judged and the baseline reads a bag of tokens) or None
    (inferred: a non-negative integer matrix with a vocabulary larger than a byte's, its columns
    sharing one id space). The caller's data and the global RNGs are not touched.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    rng = np.random.default_rng(random_state)
    table = to_table(X, y, groups, random_state, inputs)
    notes = list(table.notes)
    n, d = table.numeric.shape

    bad_counts, bad_rows, col_min, col_max = _full_pass(table.numeric)
    constant = [table.names[j] for j in range(d) if not (col_max[j] > col_min[j])]

    col_index = list(range(d))
    if d > MAX_PROFILED_COLUMNS:
        col_index = sorted(rng.choice(d, MAX_PROFILED_COLUMNS, replace=False).tolist())
        notes.append(f"{d} features: distributions profiled on {MAX_PROFILED_COLUMNS} sampled at random")
    sample_rows = np.arange(n)
    if n > PROFILE_MAX_ROWS:
        sample_rows = np.sort(rng.choice(n, PROFILE_MAX_ROWS, replace=False))
        notes.append(f"{n} rows: distribution statistics on {PROFILE_MAX_ROWS} sampled at random "
                     "(NaN/Inf, constant columns and duplicates on all rows)")
    sample = np.asarray(table.numeric[np.ix_(sample_rows, col_index)], dtype=np.float64)
    sample = np.where(np.isfinite(sample), sample, np.nan)
    columns = _column_facts([table.names[j] for j in col_index], sample) if col_index else []
    target = _target_facts(table.y, task) if table.y is not None else None
    timings["profile_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    duplicates = _duplicates(table, columns, col_index) if table.y is not None else None
    timings["duplicates_s"] = time.perf_counter() - t
    t = time.perf_counter()
    group_scales = _group_scales(table, sample_rows, columns, col_index)
    timings["groups_s"] = time.perf_counter() - t

    baseline_facts = label_noise = None
    rows_baseline = None
    if baseline and target is not None:
        from .checks import LABEL_NOISE_SHARE_LIMIT, significant

        rows = _baseline_rows(table.y, target.task, rng, notes)
        classes = np.unique(pd.Series(table.y[rows]).astype(str).to_numpy(), return_inverse=True)[1] \
            if target.task == "classification" else None
        if rows.size < 4 * BASELINE_FOLDS or (classes is not None and classes.max(initial=0) < 1):
            notes.append("baseline skipped: too few labelled rows or a single class")
        else:
            rows_baseline = int(rows.size)
            if rows.size < table.n_rows:
                notes.append(f"baseline and label-noise models fit on {rows.size} of {table.n_rows} rows")
            # token ids read as numbers would prove nothing: the baseline reads which ids a row holds
            Xb = _bag_of_tokens(table.numeric[rows]) if table.inputs == "token_ids" else _design_matrix(table, rows)
            yb = classes if classes is not None else np.asarray(table.y[rows], dtype=np.float64)
            t = time.perf_counter()
            baseline_facts = no_signal_baseline(Xb, yb, target.task, significant, random_state)
            timings["baseline_s"] = time.perf_counter() - t
            signal = significant(baseline_facts) or (
                baseline_facts.nonlinear is not None and significant(baseline_facts.nonlinear))
            if target.task == "classification" and signal:
                t = time.perf_counter()
                original = table.row_index[rows] if table.row_index is not None else rows
                label_noise = find_label_noise(Xb, yb, original, random_state, LABEL_NOISE_SHARE_LIMIT)
                timings["label_noise_s"] = time.perf_counter() - t
            elif target.task == "classification":
                notes.append("label noise not estimated: the baseline finds no signal to judge labels against")
    timings["total_s"] = time.perf_counter() - t0
    return DataFacts(
        source=table.source, n_rows=table.n_total, n_features=d, feature_names=list(table.names),
        columns=columns, non_finite={table.names[j]: int(bad_counts[j]) for j in range(d) if bad_counts[j]},
        non_finite_rows=[int(r) for r in (table.row_index[bad_rows] if table.row_index is not None else bad_rows)],
        constant_columns=constant, categorical_columns=dict(table.categorical), target=target,
        duplicates=duplicates, group_scales=group_scales, baseline=baseline_facts, label_noise=label_noise,
        rows_profiled=int(sample_rows.size), rows_baseline=rows_baseline, notes=notes, timings=timings,
        inputs=table.inputs, vocabulary=table.vocabulary,
    )


def data_plots(facts: DataFacts) -> dict[str, Any]:
    """The plot data of a data profile (Report.plots keys ``feature_scales`` and ``group_scales``)."""
    plots: dict[str, Any] = {}
    if facts.columns:
        plots["feature_scales"] = {"features": [c.name for c in facts.columns], "std": [c.std for c in facts.columns],
                                   "mean": [c.mean for c in facts.columns]}
    if facts.group_scales:
        g = facts.group_scales[0]
        plots["group_scales"] = {"value_col": g.value_col, "group_col": g.group_col, "groups": g.groups,
                                 "std": g.std, "mean": g.mean}
    return plots


def check_data(X: Any, y: Any = None, groups: Any = None, task: str | None = None, *, baseline: bool = True,
               random_state: int = 0, inputs: str | None = None) -> Report:
    """Check a dataset before training; returns a Report (verdict None) with data.* findings."""
    facts = profile_data(X, y, groups, task, baseline=baseline, random_state=random_state, inputs=inputs)
    findings = diagnose_evidence(Evidence(data=facts)).findings
    plots = data_plots(facts)
    b = facts.baseline
    return Report(
        verdict=None, findings=findings, source="check_data", plots=plots,
        metadata={
            "source": facts.source, "rows": facts.n_rows, "features": facts.n_features, "inputs": facts.inputs,
            "rows_profiled": facts.rows_profiled, "rows_baseline": facts.rows_baseline,
            "sampled": facts.rows_profiled < facts.n_rows or bool(facts.rows_baseline and facts.rows_baseline < facts.n_rows),
            "task": facts.target.task if facts.target else None, "notes": facts.notes, "timings": facts.timings,
            "baseline": None if b is None else {"model": b.model, "scoring": b.scoring, "score": b.score,
                                                "chance_level": b.chance_level, "p_value": b.p_value},
            "label_noise": None if facts.label_noise is None else {
                "judged_by": facts.label_noise.model, "share_flagged": facts.label_noise.share,
                "models_tried": facts.label_noise.models_tried},
        },
    )
