"""Data checks: pure functions of DataFacts, registered with ``@check("data")``."""
from __future__ import annotations

import math

from ..findings import Finding
from ..registry import check
from .facts import BaselineFacts, ColumnFacts, DataFacts

# Significance level of the no-signal permutation test (the usual 5%; with 19 permutations it is
# also the smallest attainable p-value, so "not significant" means some shuffled labels scored as well).
NO_SIGNAL_P_LIMIT = 0.05
# When a borderline score made the baseline run 99 permutations, it must beat all of them (p = 0.01):
# a score that merely beat the first 19 should not count twice as evidence.
EXTENDED_P_LIMIT = 0.01
# A scale is a problem when it hurts training, not when a mean is not 0. A feature's scale is its
# magnitude, the root mean square of its values, sqrt(mean^2 + std^2): what a first-layer weight
# multiplies on average. It counts an offset (years ~2000 are far from unit scale whatever their
# spread) and is 1 for any standardized column, sparse ones included (a rarely-active pixel after a
# StandardScaler has a long tail, not a wrong scale: heavy_tails speaks of it).
# Inputs whose values all lie in [-1, 1] (pixels / 255 or / 16, sklearn's pre-scaled diabetes) are
# never raised (TAXONOMY): nothing in them is large, and a rarely-active pixel is sparse, not small.
UNIT_RANGE = 1.0
# Largest / smallest feature magnitude (RMS) beyond two orders: one learning rate cannot suit both ends
# (the small features learn 100x slower, the large ones dominate the first layer).
SCALE_SPREAD_LIMIT = 100.0
# A magnitude (RMS) above 10 (|x| in the tens and up) puts first-layer pre-activations an order of
# magnitude beyond the unit scale He/LeCun/Glorot initializers assume: large initial logits,
# saturated tanh/sigmoid, gradients that scale with the inputs. Standardized features sit at 1; raw
# pixels (0-255), wine's proline (RMS ~850) and breast cancer's worst area (~1,100) are far above.
LARGE_MAGNITUDE_LIMIT = 10.0
# A regression target whose root mean square exceeds 10 starts an untrained model (output ~0) at
# an MSE above 100, and its gradient, and the output bias needs thousands of steps at usual rates
# to travel to the target's mean (the diabetes progression score: mean 152, std 77, MSE ~3e4).
TARGET_SCALE_LIMIT = 10.0
# |skewness| above 2: a long tail (exponential data has skew 2); a few extreme values dominate the
# scale that standardization picks.
SKEW_LIMIT = 2.0
# A tail needs values to be long: with 10 distinct values or fewer a column is levels or counts.
HEAVY_TAIL_MIN_DISTINCT = 10
# Integer codes 0..K-1 / 1..K with 3..30 levels look like categories stored as numbers.
CATEGORY_CODE_LEVELS = (3, 30)
# More than 1% of rows being identical inputs with different labels: the labels contradict each other.
CONFLICT_SHARE_LIMIT = 0.01
# One group's std 10x another's in the same value column: one normalizer cannot fit both.
GROUP_SCALE_SPREAD_LIMIT = 10.0
# Majority / minority class count of 10 or more (e.g. 91% / 9%): the loss is dominated by one class.
IMBALANCE_RATIO_LIMIT = 10.0
# Labels flagged by confident learning: clean bundled data sets with a linear baseline flag 1-5%;
# beyond 10% the labels (or the features) deserve a look, beyond 25% they limit any model.
LABEL_NOISE_SHARE_LIMIT = 0.10
LABEL_NOISE_SEVERE_SHARE = 0.25
# The judge must have learned the classes to call a label wrong. Its skill is its out-of-fold
# balanced accuracy rescaled from chance (0) to perfect (1). A perfect judge of labels of which a
# share r is random scores 1 - r*K/(K-1): below 0.2 only when 40% (2 classes) to 72% (10 classes)
# of the labels are random, which is no signal rather than noise. Far more often a skill that low
# means the judge has not learned the classes (e.g. an XOR of two features, which greedy and random
# trees both miss): then the disagreement is reported as info, with the experiment that settles it.
LABEL_NOISE_MIN_JUDGE_SKILL = 0.2
# Columns listed by name in evidence and remedies.
MAX_LISTED = 8


def _names(cols: list[str]) -> str:
    return ", ".join(cols[:MAX_LISTED]) + (f" (+{len(cols) - MAX_LISTED} more)" if len(cols) > MAX_LISTED else "")


def _judged(facts: DataFacts) -> list[ColumnFacts]:
    """Columns whose scale matters: non-constant, non-binary, with a finite std."""
    constant = set(facts.constant_columns)
    return [c for c in facts.columns if c.name not in constant and not c.binary and math.isfinite(c.std) and c.std > 0]


# -- data.non_finite ---------------------------------------------------------------------------
@check
def non_finite_values(data: DataFacts) -> list[Finding]:
    """NaN/Inf in the features or the targets: one of them makes every loss after it NaN."""
    findings = []
    y_bad = data.target.n_nonfinite if data.target else 0
    if data.non_finite or y_bad:
        total = sum(data.non_finite.values())
        worst = sorted(data.non_finite, key=data.non_finite.get, reverse=True)
        findings.append(Finding(
            "data.non_finite", "error", 1.0,
            title=f"{total} NaN/Inf value(s) in the features" + (f" and {y_bad} in the targets" if y_bad else "")
            if total else f"{y_bad} NaN/Inf value(s) in the targets",
            evidence={"columns": {c: data.non_finite[c] for c in worst[:MAX_LISTED]}, "total": total,
                      "target_nonfinite": y_bad, "example_rows": data.non_finite_rows[:10], "threshold": 0},
            where=_names(worst) if worst else "target",
            remedy=(f"Impute or drop the NaN/Inf in {_names(worst)} (e.g. sklearn.impute.SimpleImputer"
                    "(strategy='median'), fitted on the training split)" if worst else "")
                   + ("; " if worst and y_bad else "") + (f"drop the {y_bad} rows without a finite target" if y_bad else "")
                   + ". One NaN input makes every loss after it NaN.",
        ))
    return findings


# -- data.constant_feature ---------------------------------------------------------------------
# Confidence that constant columns explain a loss that will not converge: low, since a network
# just learns nothing from them; they hurt only through a hand-written (x - mean) / std (NaN).
# It is preprocessing advice, not a cause: ranked below the experiments' advisories
# (optim.optimizer_choice, 0.5 and up) and below every hint the curves or the live watch give about
# the run itself (the lowest, a possibly too strong regularization, is 0.15): when the data is
# checked during training, the run's own evidence comes first.
CONSTANT_FEATURE_CONFIDENCE = 0.1
# Heavy tails (standardized sparse pixels, incomes) slow learning at most and never stop a loss on
# their own: advice ranked like constant columns, after any evidence about the run.
HEAVY_TAILS_CONFIDENCE = 0.1


@check
def constant_columns(data: DataFacts) -> list[Finding]:
    """Columns with one value on every row: no information, and NaN under a hand-written standardization."""
    if not data.constant_columns:
        return []
    cols = data.constant_columns
    return [Finding(
        "data.constant_feature", "info", CONSTANT_FEATURE_CONFIDENCE,
        title=f"{len(cols)} constant column(s)",
        evidence={"columns": cols[:MAX_LISTED], "count": len(cols), "threshold": "max == min on every row"},
        where=_names(cols),
        remedy=f"Drop {_names(cols)}: they carry no information, and a hand-written (x - mean) / std turns "
               "them into NaN (std 0).",
    )]


@check
def conflicting_duplicates(data: DataFacts) -> list[Finding]:
    """Identical feature rows with different labels: labels that contradict each other."""
    dup = data.duplicates
    if dup is None or dup.n_conflicting_groups == 0:
        return []
    share = dup.n_conflicting_rows / max(data.n_rows, 1)
    return [Finding(
        "data.label_noise", "warning" if share > CONFLICT_SHARE_LIMIT else "info", 0.8 if share > CONFLICT_SHARE_LIMIT else 0.5,
        title="Identical inputs carry different labels",
        evidence={"conflicting_sets": dup.n_conflicting_groups, "rows_involved": dup.n_conflicting_rows,
                  "share_of_rows": share, "threshold": CONFLICT_SHARE_LIMIT, "duplicate_rows": dup.n_duplicate_rows,
                  "examples": dup.examples},
        where="duplicated rows",
        remedy="Rows with the same features and different labels cannot all be fitted: check how the labels "
               "were joined, deduplicate (keep the majority label), or add the feature that tells them apart.",
    )]


# -- data.unnormalized -------------------------------------------------------------------------
def magnitude(c: ColumnFacts) -> float:
    """The scale of a feature's values: their root mean square."""
    return math.hypot(c.mean, c.std)


def _in_unit_range(c: ColumnFacts) -> bool:
    return -UNIT_RANGE <= c.min and c.max <= UNIT_RANGE


def _scaled_inputs(data: DataFacts) -> list[ColumnFacts]:
    """The columns whose scale is judged: none for token ids (they index an embedding)."""
    return [] if data.inputs == "token_ids" else _judged(data)


@check
def unnormalized_scales(data: DataFacts) -> list[Finding]:
    """Input features far from unit scale (|x| in the tens and up) or whose scales differ by orders
    of magnitude; never inputs already in [-1, 1], never a mean alone."""
    cols = [c for c in _scaled_inputs(data) if magnitude(c) > 0]
    if not cols or all(_in_unit_range(c) for c in cols):
        return []
    largest = max(cols, key=magnitude)
    smallest = min(cols, key=magnitude)
    spread = magnitude(largest) / magnitude(smallest)
    large = [c for c in cols if magnitude(c) > LARGE_MAGNITUDE_LIMIT]
    if spread <= SCALE_SPREAD_LIMIT and not large:
        return []
    flagged = [c.name for c in large]
    if spread > SCALE_SPREAD_LIMIT:
        flagged = list(dict.fromkeys([largest.name, smallest.name, *flagged]))
    worst = sorted(cols, key=lambda c: -abs(math.log10(magnitude(c))))[:MAX_LISTED]
    pixels = all(c.integer_valued and c.min >= 0 and c.max <= 255 for c in cols) and len(cols) > MAX_LISTED
    how = (f"divide by {largest.max:.0f} (pixel intensities: the inputs then lie in [0, 1])" if pixels else
           "standardize the features (sklearn.preprocessing.StandardScaler fitted on the training split, the same "
           "transform applied to validation and test)")
    over = max(spread / SCALE_SPREAD_LIMIT, magnitude(largest) / LARGE_MAGNITUDE_LIMIT)
    return [Finding(
        "data.unnormalized", "warning", min(0.95, 0.6 + 0.1 * math.log10(max(over, 1.0))),
        title=(f"Feature scales span {spread:.3g}x" if spread > SCALE_SPREAD_LIMIT else
               f"{len(large)} feature(s) far from unit scale (RMS up to {magnitude(largest):.3g})"),
        evidence={"scale_spread": spread, "spread_limit": SCALE_SPREAD_LIMIT,
                  "largest_magnitude": {largest.name: magnitude(largest)},
                  "smallest_magnitude": {smallest.name: magnitude(smallest)},
                  "large_columns": len(large), "magnitude_limit": LARGE_MAGNITUDE_LIMIT,
                  "magnitude": "root mean square of the values",
                  "worst": {c.name: {"magnitude": magnitude(c), "mean": c.mean, "std": c.std} for c in worst}},
        where=_names(flagged),
        remedy=f"Scale the inputs before training: {how}. {largest.name} has RMS {magnitude(largest):.3g}, "
               f"{smallest.name} {magnitude(smallest):.3g}; with inputs near unit scale the usual initializations "
               "and learning rates apply.",
    )]


@check
def target_in_raw_units(data: DataFacts) -> list[Finding]:
    """A regression target far from unit scale: a large initial MSE and gradient, a slow output bias."""
    t = data.target
    if t is None or t.task != "regression" or t.mean is None or t.std is None:
        return []
    rms = math.hypot(t.mean, t.std)
    if rms <= TARGET_SCALE_LIMIT:
        return []
    return [Finding(
        "data.unnormalized", "warning", min(0.9, 0.6 + 0.1 * math.log10(rms / TARGET_SCALE_LIMIT)),
        title=f"The regression target is in raw units (mean {t.mean:.3g}, std {t.std:.3g})",
        evidence={"target_mean": t.mean, "target_std": t.std, "target_rms": rms,
                  "mse_of_a_zero_prediction": rms ** 2, "threshold": TARGET_SCALE_LIMIT},
        where="target",
        remedy=f"Standardize the target: train on (y - {t.mean:.4g}) / {t.std:.4g} (statistics of the training split) "
               f"and invert it at prediction, prediction * {t.std:.4g} + {t.mean:.4g} "
               "(sklearn.compose.TransformedTargetRegressor does both); the loss then starts near 1 and a usual "
               "learning rate fits it.",
    )]


@check
def heavy_tails(data: DataFacts) -> list[Finding]:
    """Long-tailed features (bounded ones in [-1, 1] have no extreme values to tame)."""
    tailed = [c for c in _scaled_inputs(data) if abs(c.skew) > SKEW_LIMIT and c.n_unique > HEAVY_TAIL_MIN_DISTINCT and not _in_unit_range(c)]
    if not tailed:
        return []
    positive = [c.name for c in tailed if c.min >= 0]
    other = [c.name for c in tailed if c.min < 0]
    advice = []
    if positive:
        advice.append(f"np.log1p on {_names(positive)} (non-negative)")
    if other:
        advice.append(f"sklearn.preprocessing.QuantileTransformer(output_distribution='normal') on {_names(other)}")
    return [Finding(
        "data.unnormalized", "info", HEAVY_TAILS_CONFIDENCE,
        title=f"{len(tailed)} feature(s) with heavy tails",
        evidence={"skew": {c.name: c.skew for c in tailed[:MAX_LISTED]}, "skew_limit": SKEW_LIMIT,
                  "distinct_values_limit": HEAVY_TAIL_MIN_DISTINCT},
        where="heavy tails",
        remedy="A few extreme values set the scale that standardization picks; transform before scaling: "
               + "; ".join(advice) + ".",
    )]


@check
def categories_as_numbers(data: DataFacts) -> list[Finding]:
    """Integer codes 0..K-1 that look like categories, and non-numeric columns left unencoded."""
    low, high = CATEGORY_CODE_LEVELS
    coded = [c for c in _scaled_inputs(data) if c.integer_valued and low <= c.n_unique <= high
             and c.min in (0.0, 1.0) and c.max - c.min + 1 == c.n_unique]
    # when most columns look like this the data is counts or pixels, not categories
    if len(coded) * 2 > len(data.columns):
        coded = []
    grouped = {g.group_col for g in data.group_scales}
    text_cols = [c for c in data.categorical_columns if c not in grouped]
    if not coded and not text_cols:
        return []
    parts = []
    if coded:
        parts.append(f"if {_names([c.name for c in coded])} are categories, one-hot encode them "
                     "(sklearn.preprocessing.OneHotEncoder) or use an nn.Embedding: as numbers they impose an order "
                     "and distances that do not exist")
    if text_cols:
        parts.append(f"encode the non-numeric column(s) {_names(text_cols)} (one-hot, or an embedding for many levels)")
    return [Finding(
        "data.unnormalized", "info", 0.4,
        title="Categorical values fed as numbers" if coded else "Non-numeric columns need an encoding",
        evidence={"integer_codes": {c.name: c.n_unique for c in coded[:MAX_LISTED]},
                  "levels_limits": list(CATEGORY_CODE_LEVELS),
                  "non_numeric": {c: data.categorical_columns[c] for c in text_cols[:MAX_LISTED]}},
        where="categorical columns",
        remedy="; ".join(parts) + ".",
    )]


# -- data.mixed_units --------------------------------------------------------------------------
@check
def mixed_units(data: DataFacts) -> list[Finding]:
    """A value column whose scale depends on a key column (the seed's lab results): one normalizer per group."""
    findings = []
    for g in data.group_scales:
        if g.scale_spread < GROUP_SCALE_SPREAD_LIMIT or len(findings) >= 3:
            continue
        order = sorted(range(len(g.groups)), key=lambda i: g.std[i])
        lo, hi = order[0], order[-1]
        findings.append(Finding(
            "data.mixed_units", "warning", min(0.95, 0.6 + 0.1 * math.log10(g.scale_spread)),
            title=f"The scale of {g.value_col} depends on {g.group_col} ({g.scale_spread:.3g}x between groups)",
            evidence={"value_col": g.value_col, "group_col": g.group_col, "groups": len(g.groups),
                      "std_spread": g.scale_spread, "threshold": GROUP_SCALE_SPREAD_LIMIT,
                      "largest": {g.groups[hi]: {"mean": g.mean[hi], "std": g.std[hi]}},
                      "smallest": {g.groups[lo]: {"mean": g.mean[lo], "std": g.std[lo]}},
                      "groups_too_small": g.n_small_groups},
            where=f"{g.value_col} by {g.group_col}",
            remedy=f"Normalize {g.value_col} per {g.group_col}: lossdoctor.GroupNormalizer(group_col="
                   f"{g.group_col!r}, value_cols=[{g.value_col!r}]) fitted on the training split "
                   f"({g.groups[hi]!r} has std {g.std[hi]:.3g}, {g.groups[lo]!r} {g.std[lo]:.3g}); a single "
                   "scaler leaves the small-scale groups flat.",
        ))
    return findings


# -- data.class_imbalance ----------------------------------------------------------------------
@check
def class_imbalance(data: DataFacts) -> list[Finding]:
    """A majority class that outnumbers the smallest one by an order of magnitude."""
    t = data.target
    if t is None or t.task != "classification" or len(t.counts) < 2:
        return []
    ratio = max(t.counts) / min(t.counts)
    if ratio < IMBALANCE_RATIO_LIMIT:
        return []
    total = sum(t.counts)
    major = t.classes[t.counts.index(max(t.counts))]
    minor = t.classes[t.counts.index(min(t.counts))]
    weights = {str(c): round(total / (len(t.counts) * n), 3) for c, n in zip(t.classes, t.counts)}
    return [Finding(
        "data.class_imbalance", "warning", min(0.95, 0.6 + 0.1 * math.log10(ratio)),
        title=f"Class {major!r} outnumbers class {minor!r} {ratio:.3g} to 1",
        evidence={"counts": {str(c): n for c, n in zip(t.classes, t.counts)}, "ratio": ratio,
                  "threshold": IMBALANCE_RATIO_LIMIT, "majority_share": max(t.counts) / total},
        where="target",
        remedy=f"Weight the loss by inverse class frequency (CrossEntropyLoss(weight=torch.tensor([...])) with "
               f"weights {dict(list(weights.items())[:MAX_LISTED])}), or resample; judge with balanced accuracy "
               "or per-class recall, not accuracy.",
    )]


# -- data.no_signal ----------------------------------------------------------------------------
def significant(baseline: BaselineFacts) -> bool:
    """Did this baseline beat its permutation null?"""
    limit = NO_SIGNAL_P_LIMIT if baseline.n_permutations < 99 else EXTENDED_P_LIMIT
    return baseline.p_value <= limit


@check
def no_signal(data: DataFacts) -> list[Finding]:
    """A quick cross-validated baseline (linear, then a tree model) that cannot beat shuffled labels."""
    b = data.baseline
    if b is None or significant(b):
        return []
    tree = b.nonlinear
    if tree is not None and significant(tree):
        return []
    runs = [b] + ([tree] if tree is not None else [])
    return [Finding(
        "data.no_signal", "warning", 0.85 if tree is not None else 0.7,
        title="A quick baseline cannot beat shuffled labels",
        evidence={r.model: {"score": r.score, "chance_level": r.chance_level, "null_std": r.null_std,
                            "p_value": r.p_value, "scoring": r.scoring} for r in runs}
                 | {"p_limit": NO_SIGNAL_P_LIMIT, "p_limit_after_99_permutations": EXTENDED_P_LIMIT,
                    "permutations": b.n_permutations, "folds": b.folds, "rows": b.rows},
        where="target",
        remedy=f"The data may not support this prediction: {b.model} scores {b.score:.3g} {b.scoring} against "
               f"{b.chance_level:.3g} with shuffled labels (p = {b.p_value:.2g}). Check that labels are joined to "
               "the right rows and features are extracted correctly before tuning the network; then look for more "
               "informative features, or reconsider whether the project is doable.",
    )]


# -- data.label_noise --------------------------------------------------------------------------
@check
def label_noise(data: DataFacts) -> list[Finding]:
    """A large share of labels that out-of-fold predictions of a model that fits the data disagree with."""
    ln = data.label_noise
    if ln is None or ln.share < LABEL_NOISE_SHARE_LIMIT:
        return []
    judge = ln.model or "the baseline model"
    evidence = {"share_flagged": ln.share, "flagged": ln.n_flagged, "examined": ln.n_examined,
                "threshold": LABEL_NOISE_SHARE_LIMIT, "severe_threshold": LABEL_NOISE_SEVERE_SHARE,
                "oof_accuracy": ln.oof_accuracy, "judge_skill": ln.skill,
                "judge_skill_limit": LABEL_NOISE_MIN_JUDGE_SKILL, "judged_by": judge,
                "models_tried": ln.models_tried, "example_indices": ln.indices[:20], "method": ln.method}
    if ln.skill is not None and ln.skill < LABEL_NOISE_MIN_JUDGE_SKILL:
        return [Finding(
            "data.label_noise", "info", 0.3,
            title=f"{ln.share:.0%} of the labels disagree with models that barely learned the classes",
            evidence=evidence, where="labels",
            remedy=f"Not settled: the best model tried ({judge}) is only {ln.skill:.0%} of the way from chance to "
                   "perfect out of fold, so its disagreement says as much about the model as about the labels. "
                   "Experiment that settles it: relabel a random sample of 50 of the flagged rows "
                   f"(most suspicious: {ln.indices[:10]}) by hand; if most labels were right, the features need a "
                   "model (or features) that captures the pattern, not new labels.",
        )]
    severe = ln.share >= LABEL_NOISE_SEVERE_SHARE
    return [Finding(
        "data.label_noise", "error" if severe else "warning", min(0.9, 0.5 + ln.share),
        title=f"About {ln.share:.0%} of the labels look wrong",
        evidence=evidence,
        where="labels",
        remedy=f"Review the flagged rows first (most suspicious: {ln.indices[:10]}); relabel or drop them, or train "
               "with a noise-robust loss (e.g. CrossEntropyLoss(label_smoothing=0.1)). "
               f"cleanlab.filter.find_label_issues gives the full ranked list. The labels were judged by {judge}'s "
               f"out-of-fold predictions ({ln.oof_accuracy:.0%} agree with the labels): where no model separates the "
               "classes, some flagged rows are hard rather than mislabelled.",
    )]
