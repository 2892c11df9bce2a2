"""The model-based evidence: a quick baseline against a permutation null, and confident learning.

Both fit scikit-learn models on a subsample (``BASELINE_MAX_ROWS``): the question is whether
there is *any* signal and whether labels disagree with it, which a few thousand rows answer.
BLAS/OpenMP run single-threaded here: many tiny fits gain nothing from threads and lose a lot
on a busy machine (the limit is lifted again on exit).
"""
from __future__ import annotations

import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from .facts import BaselineFacts, LabelNoiseFacts

# Rows the baseline models fit on: p-values from a few thousand rows are already decisive, and
# 20 permutations x 3 folds of a linear model stay near a second.
BASELINE_MAX_ROWS = 4000
BASELINE_FOLDS = 3
# 19 permutations: the smallest attainable p-value is 1/20 = 0.05, the usual significance level.
BASELINE_PERMUTATIONS = 19
# A score beating all 19 permutations by less than 4 null stds may be luck (the best of 20 noise
# scores sits ~1.9 stds above their mean): then 80 more permutations are run (99 in all).
BORDERLINE_Z = 4.0
CONFIRM_PERMUTATIONS = 80
# cleanlab recommends out-of-fold probabilities from at least 5 folds.
LABEL_NOISE_FOLDS = 5
# Categorical columns with at most this many levels are one-hot encoded for the baseline.
MAX_ONE_HOT_LEVELS = 50
# The tree baseline, tried only when the linear one finds nothing: small (20 rounds of 15 leaves)
# because it is fitted 60 times; it only has to show that some non-linear signal exists.
TREE_BASELINE_ROUNDS = 20
TREE_BASELINE_LEAVES = 15
# The nonlinear model that judges labels where the linear one cannot fit the classes: 50 extremely
# randomized trees (cheap to grow: random split points; ~2-4 s for 5 folds of 4,000 x 100 on one
# busy core) with leaves of at least 3 rows, so that a single mislabelled row is outvoted by its
# neighbours instead of memorised in a leaf of its own.
LABEL_NOISE_TREES = 50
LABEL_NOISE_MIN_LEAF = 3
# cleanlab's "confident_learning" filter flags only the rows whose out-of-fold prediction is
# confident in another class (the off-diagonal of its confident joint): a row near a boundary
# between overlapping classes, which any model gets wrong half of the time, is hard, not
# mislabelled. (On clean make_classification data with overlapping clusters it flags 1-6 % where the
# default filter flags 2-11 %; 20-40 % flipped digits labels are still found, 80-90 % of them.)
LABEL_NOISE_FILTER = "confident_learning"
# lbfgs iterations of the linear baseline: enough for standardized features; an unconverged fit
# only makes the baseline more conservative.
LINEAR_MAX_ITER = 100


def _linear(task: str):
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = LogisticRegression(max_iter=LINEAR_MAX_ITER) if task == "classification" else Ridge(alpha=1.0)
    return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(), model)


def _tree(task: str, random_state: int):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor
    return cls(max_iter=TREE_BASELINE_ROUNDS, max_leaf_nodes=TREE_BASELINE_LEAVES, early_stopping=False,
               random_state=random_state)


def _cv(task: str, y: np.ndarray, folds: int, random_state: int):
    from sklearn.model_selection import KFold, StratifiedKFold

    if task == "classification":
        return StratifiedKFold(folds, shuffle=True, random_state=random_state)
    return KFold(folds, shuffle=True, random_state=random_state)


def _permutation_baseline(model, name: str, X: np.ndarray, y: np.ndarray, task: str, random_state: int) -> BaselineFacts:
    from sklearn.model_selection import permutation_test_score

    scoring = "balanced_accuracy" if task == "classification" else "r2"

    def run(n_permutations: int, seed: int):
        return permutation_test_score(model, X, y, cv=_cv(task, y, BASELINE_FOLDS, random_state),
                                      n_permutations=n_permutations, scoring=scoring, random_state=seed, n_jobs=1)

    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")  # convergence warnings on permuted labels are expected
        score, null, p_value = run(BASELINE_PERMUTATIONS, random_state)
        z = (score - np.mean(null)) / max(float(np.std(null)), 1e-12)
        if p_value <= 1.0 / (BASELINE_PERMUTATIONS + 1) and z < BORDERLINE_Z:
            # beat all 19 permutations, but not by much: 80 more settle whether that was luck
            _, more, _ = run(CONFIRM_PERMUTATIONS, random_state + 1)
            null = np.concatenate([null, more])
            p_value = (np.sum(null >= score) + 1.0) / (len(null) + 1.0)
    return BaselineFacts(model=name, scoring=scoring, score=float(score), chance_level=float(np.mean(null)),
                         null_std=float(np.std(null)), p_value=float(p_value), n_permutations=int(len(null)),
                         folds=BASELINE_FOLDS, rows=int(len(y)))


def no_signal_baseline(X: np.ndarray, y: np.ndarray, task: str, has_signal, random_state: int = 0) -> BaselineFacts:
    """Linear model vs its permutation null; a tree model too when the linear one shows no signal."""
    name = "LogisticRegression" if task == "classification" else "Ridge"
    facts = _permutation_baseline(_linear(task), f"StandardScaler+{name}", X, y, task, random_state)
    if not has_signal(facts):
        facts.nonlinear = _permutation_baseline(_tree(task, random_state), "HistGradientBoosting", X, y, task,
                                                random_state)
    return facts


def _extra_trees(random_state: int):
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    forest = ExtraTreesClassifier(n_estimators=LABEL_NOISE_TREES, min_samples_leaf=LABEL_NOISE_MIN_LEAF,
                                  random_state=random_state, n_jobs=1)
    return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), forest)


def _flag(model, X: np.ndarray, y: np.ndarray, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities of ``model`` and cleanlab's flagged rows, most suspicious first."""
    from cleanlab.filter import find_label_issues
    from sklearn.model_selection import cross_val_predict

    probs = cross_val_predict(model, X, y, cv=_cv("classification", y, LABEL_NOISE_FOLDS, random_state),
                              method="predict_proba")
    ranked = find_label_issues(labels=y, pred_probs=probs, filter_by=LABEL_NOISE_FILTER,
                               return_indices_ranked_by="self_confidence")
    return probs, np.asarray(ranked, dtype=int)


def find_label_noise(X: np.ndarray, y: np.ndarray, rows: np.ndarray, random_state: int = 0,
                     share_limit: float = 1.0) -> LabelNoiseFacts:
    """cleanlab's confident learning on out-of-fold probabilities of a model that can fit the data.

    Judges are tried from the cheapest, the next one only while every judge so far would flag
    ``share_limit`` of the labels or more (its misfit may be the model's rather than the labels'):
    the linear baseline; extremely randomized trees (classes that are not linearly separable, e.g.
    several clusters per class); gradient-boosted trees (interactions such as an XOR of two
    features, which random splits miss among many features). The judge whose out-of-fold
    predictions agree with more labels (balanced accuracy) decides.
    """
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")
        tried: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, judge in (("LogisticRegression", lambda: _linear("classification")),
                            ("ExtraTrees", lambda: _extra_trees(random_state)),
                            ("HistGradientBoosting", lambda: _tree("classification", random_state))):
            if tried and min(len(flagged) for _, flagged in tried.values()) < share_limit * len(y):
                break  # a judge already finds the labels clean enough: no further opinion needed
            tried[name] = _flag(judge(), X, y, random_state)
    from sklearn.metrics import balanced_accuracy_score

    accuracy = {name: float((probs.argmax(axis=1) == y).mean()) for name, (probs, _) in tried.items()}
    balanced = {name: float(balanced_accuracy_score(y, probs.argmax(axis=1))) for name, (probs, _) in tried.items()}
    best = max(tried, key=lambda name: (balanced[name], name == "LogisticRegression"))  # a tie: the linear one
    probs, ranked = tried[best]
    chance = 1.0 / probs.shape[1]
    return LabelNoiseFacts(
        share=float(len(ranked) / len(y)), n_flagged=int(len(ranked)), n_examined=int(len(y)),
        indices=[int(i) for i in rows[ranked]],
        method=f"cleanlab.filter.find_label_issues(filter_by={LABEL_NOISE_FILTER!r}) on {LABEL_NOISE_FOLDS}-fold "
               f"out-of-fold {best} probabilities",
        oof_accuracy=accuracy[best], model=best, skill=(balanced[best] - chance) / (1.0 - chance),
        models_tried={name: {"share": float(len(r) / len(y)), "oof_accuracy": accuracy[name],
                             "oof_balanced_accuracy": balanced[name]} for name, (_, r) in tried.items()},
    )
