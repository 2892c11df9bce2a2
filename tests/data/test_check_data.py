"""check_data on scikit-learn's bundled real data sets, each fault with a healthy twin."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.preprocessing import StandardScaler

from lossdoctor.data import check_data, profile_data
from lossdoctor.errors import InputError
from lossdoctor.registry import Evidence, run_checks


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="module")
def digits():
    return load_digits(return_X_y=True)


@pytest.fixture(scope="module")
def wine():
    X, y = load_wine(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="module")
def descriptions():
    """Real text as token ids: 16-word windows of the bundled data sets' descriptions (a vocabulary
    of ~640 words), labelled with the data set each window comes from."""
    import re

    from sklearn import datasets

    loaders = (datasets.load_digits, datasets.load_wine, datasets.load_breast_cancer, datasets.load_diabetes,
               datasets.load_iris)
    words = [re.findall(r"[a-z]+", load().DESCR.lower()) for load in loaders]
    vocabulary = {w: i for i, w in enumerate(sorted({w for ws in words for w in ws}))}
    windows, source = [], []
    for label, ws in enumerate(words):
        for start in range(0, len(ws) - 16, 4):
            windows.append([vocabulary[w] for w in ws[start:start + 16]])
            source.append(label)
    return np.array(windows, dtype=np.int64), np.array(source)


def test_raw_breast_cancer_is_unnormalized_with_the_spread_as_evidence(cancer):
    X, y = cancer
    report = check_data(X, y, baseline=False)
    assert report.has("data.unnormalized", "warning")
    finding = next(f for f in report.findings if f.code == "data.unnormalized" and f.severity == "warning")
    assert finding.evidence["scale_spread"] > 1e3 and finding.evidence["spread_limit"] == 100
    assert finding.evidence["magnitude_limit"] == 10 and finding.evidence["large_columns"] >= 5
    assert "worst area" in finding.where and "StandardScaler" in finding.remedy
    plot = report.plots["feature_scales"]
    assert plot["features"][0] == "mean radius" and len(plot["std"]) == 30 == len(plot["mean"])


def test_standardized_breast_cancer_comes_out_clean(cancer):
    X, y = cancer
    report = check_data(StandardScaler().fit_transform(X), y.to_numpy())
    assert not report.warnings(), report.to_text()
    b = report.metadata["baseline"]
    assert b["score"] > 0.9 and b["p_value"] <= 0.05 and abs(b["chance_level"] - 0.5) < 0.05


def test_shuffled_labels_have_no_signal_and_say_score_chance_and_p(cancer):
    X, y = cancer
    shuffled = np.random.default_rng(0).permutation(y.to_numpy())
    report = check_data(StandardScaler().fit_transform(X), shuffled)
    assert report.has("data.no_signal", "warning")
    ev = next(f for f in report.findings if f.code == "data.no_signal").evidence
    linear = ev["StandardScaler+LogisticRegression"]
    assert linear["p_value"] > 0.05 and abs(linear["score"] - linear["chance_level"]) < 0.1
    assert "HistGradientBoosting" in ev  # a non-linear model was tried before concluding
    assert not report.has("data.label_noise")  # nothing to judge the labels against


def flip(y, share, n_classes, seed=0):
    rng = np.random.default_rng(seed)
    noisy = y.copy()
    chosen = rng.random(len(y)) < share
    noisy[chosen] = (noisy[chosen] + rng.integers(1, n_classes, chosen.sum())) % n_classes
    return noisy, np.flatnonzero(chosen)


def test_forty_percent_flipped_labels_are_found_and_clean_labels_are_not(digits):
    X, y = digits
    X = X / 16.0
    noisy, flipped = flip(y, 0.4, 10)
    report = check_data(X, noisy)
    assert report.has("data.label_noise", "warning")
    finding = next(f for f in report.findings if f.code == "data.label_noise" and f.where == "labels")
    assert 0.25 < finding.evidence["share_flagged"] < 0.6
    flagged = finding.evidence["example_indices"]
    assert np.isin(flagged, flipped).mean() >= 0.9  # the examples really are flipped labels
    clean = profile_data(X, y)
    assert clean.label_noise.share < 0.1
    assert not [f for f in run_checks(Evidence(data=clean))[0] if f.code == "data.label_noise"]


def test_nan_constant_column_and_conflicting_duplicates_are_reported(cancer):
    X, y = cancer
    X = X.copy()
    X.iloc[[3, 10], 0] = np.nan
    X.iloc[5, 2] = np.inf
    X["site"] = 1.0  # constant
    dup = X.iloc[20:40].copy()
    y2 = pd.concat([y, 1 - y.iloc[20:40]], ignore_index=True)
    X2 = pd.concat([X, dup], ignore_index=True)
    report = check_data(X2, y2, baseline=False)
    nf = next(f for f in report.findings if f.code == "data.non_finite" and f.severity == "error")
    assert nf.evidence["columns"] == {"mean radius": 2, "mean perimeter": 1} and nf.evidence["example_rows"][:3] == [3, 5, 10]
    const = next(f for f in report.findings if f.code == "data.constant_feature")
    assert const.evidence["columns"] == ["site"] and const.where == "site" and const.severity == "info"
    assert not [f for f in report.findings if f.code == "data.non_finite" and f.severity != "error"]
    assert not check_data(X2.drop(columns="site"), y2, baseline=False).has("data.constant_feature")
    conflict = next(f for f in report.findings if f.code == "data.label_noise" and f.where == "duplicated rows")
    assert conflict.evidence["conflicting_sets"] == 20 
    assert all(sorted(pair) == [pair[0] % 569, pair[0] % 569 + 549] for pair in conflict.evidence["examples"])
    assert conflict.severity == "warning"


def test_class_imbalance_is_flagged_and_balanced_classes_are_not(cancer):
    X, y = cancer
    keep = np.concatenate([np.flatnonzero(y == 1), np.flatnonzero(y == 0)[:20]])  # 357 vs 20
    report = check_data(StandardScaler().fit_transform(X.iloc[keep]), y.iloc[keep].to_numpy(), baseline=False)
    finding = next(f for f in report.findings if f.code == "data.class_imbalance")
    assert finding.evidence["ratio"] > 17 and finding.evidence["threshold"] == 10
    assert "weight" in finding.remedy
    assert not check_data(StandardScaler().fit_transform(X), y, baseline=False).has("data.class_imbalance")


def test_integer_coded_categories_and_heavy_tails_are_advice_not_warnings(cancer):
    X, y = cancer
    Xs = pd.DataFrame(StandardScaler().fit_transform(X), columns=X.columns)
    Xs["blood_type"] = np.random.default_rng(0).integers(0, 4, len(Xs))  # 0..3 codes
    report = check_data(Xs, y, baseline=False)
    codes = next(f for f in report.findings if f.where == "categorical columns")
    assert codes.severity == "info" and "blood_type" in codes.evidence["integer_codes"]
    tails = next(f for f in report.findings if f.where == "heavy tails")
    assert tails.severity == "info" and "area error" in tails.evidence["skew"]


def test_torch_tensors_datasets_and_column_names_are_accepted(cancer, monkeypatch):
    X, y = cancer
    Xs = StandardScaler().fit_transform(X)
    from_tensor = check_data(torch.tensor(Xs, dtype=torch.float32), torch.tensor(y.to_numpy()), baseline=False)
    assert from_tensor.metadata["source"] == "torch" and from_tensor.metadata["rows"] == 569
    frame = X.assign(label=y)
    by_name = check_data(frame, "label", baseline=False)
    assert by_name.metadata["features"] == 30 and by_name.metadata["task"] == "classification"

    import lossdoctor.data.inputs as inputs

    monkeypatch.setattr(inputs, "MAX_DATASET_ITEMS", 200)
    dataset = torch.utils.data.TensorDataset(torch.tensor(X.to_numpy(), dtype=torch.float32), torch.tensor(y.to_numpy()))
    report = check_data(dataset, baseline=False)
    assert report.metadata["source"] == "dataset" and report.metadata["rows"] == 569
    assert report.metadata["rows_profiled"] == 200 and report.metadata["sampled"]
    assert any("200 sampled" in note for note in report.metadata["notes"])
    assert report.has("data.unnormalized", "warning")
    loader = check_data(torch.utils.data.DataLoader(dataset, batch_size=32), baseline=False)
    assert loader.metadata["source"] == "dataset" and any("DataLoader" in n for n in loader.metadata["notes"])


def test_facts_are_plain_data(cancer):
    X, y = cancer
    facts = profile_data(X, y, baseline=False)
    json.dumps(facts.to_dict())
    assert facts.target.task == "classification" and facts.target.counts == [212, 357]
    assert facts.column("mean area").std > 300


def test_bad_input_raises_a_clear_input_error(cancer):
    X, y = cancer
    with pytest.raises(InputError, match="1 row"):
        check_data(X.iloc[:1], y.iloc[:1])
    with pytest.raises(InputError, match="569 rows but y has 10"):
        check_data(X, y.iloc[:10])
    with pytest.raises(InputError, match="not a column"):
        check_data(X, "diagnosis")
    with pytest.raises(InputError, match="task"):
        check_data(X, y, task="ranking")
    with pytest.raises(InputError, match="non-numeric"):
        check_data(np.array([["a", "b"], ["c", "d"]]))


# -- scales: a problem when they hurt training -------------------------------------------------
def _unnormalized(report):
    return [f for f in report.findings if f.code == "data.unnormalized" and f.severity != "info"]


def test_images_already_in_unit_range_are_not_unnormalized_but_raw_byte_pixels_are(digits):
    X, y = digits
    for scaled in (X / 16.0, X / 8.0 - 1.0):  # [0, 1] and [-1, 1]: sparse border pixels included
        report = check_data(scaled, y, baseline=False)
        assert not report.warnings(), report.to_text()
        assert not report.has("data.unnormalized")  # not even the heavy-tail advice: nothing in [-1, 1] is extreme
    as_bytes = np.round(X * 255.0 / 16.0)  # the same images stored as 8-bit intensities 0..255
    finding = _unnormalized(check_data(as_bytes, y, baseline=False))[0]
    assert finding.evidence["large_columns"] > 30 and "divide by 255" in finding.remedy


def test_standardized_features_with_sparse_pixels_are_not_unnormalized(digits):
    X, y = digits
    report = check_data(StandardScaler().fit_transform(X), y, baseline=False)
    assert not _unnormalized(report), report.to_text()


def test_raw_wine_features_are_far_from_unit_scale_and_a_mean_alone_is_not(wine):
    X, y = wine
    finding = _unnormalized(check_data(X, y, baseline=False))[0]
    ev = finding.evidence
    assert "proline" in ev["largest_magnitude"] and ev["largest_magnitude"]["proline"] > 50 * ev["magnitude_limit"]
    assert "proline" in finding.where and "StandardScaler" in finding.remedy
    shifted = StandardScaler().fit_transform(X) + 3.0  # every mean at 3, every std at 1
    assert not check_data(shifted, y, baseline=False).has("data.unnormalized")


def test_a_regression_target_in_raw_units_is_unnormalized_at_the_target():
    X, y = load_diabetes(return_X_y=True)  # X comes pre-scaled; y is the raw progression score
    report = check_data(X, y, baseline=False)
    finding = next(f for f in report.findings if f.code == "data.unnormalized")
    assert finding.where == "target" and finding.severity == "warning"
    assert finding.evidence["target_std"] > 50 and finding.evidence["target_rms"] > 10 * finding.evidence["threshold"]
    assert "invert" in finding.remedy and "TransformedTargetRegressor" in finding.remedy
    assert not check_data(X, (y - y.mean()) / y.std(), baseline=False).findings


# -- integer inputs: token ids for an embedding ------------------------------------------------
def test_token_ids_are_valid_inputs_and_their_scale_is_not_judged(descriptions):
    ids, source = descriptions
    report = check_data(ids, source, baseline=False)
    assert report.metadata["inputs"] == "token_ids"
    assert not report.has("data.unnormalized"), report.to_text()
    assert any("token ids" in note and "do not apply" in note for note in report.metadata["notes"])
    assert "float" not in report.to_text()  # nothing tells the user to cast ids
    # the same integers declared as features are quantities: then their scale is judged
    as_features = check_data(ids, source, baseline=False, inputs="features")
    assert as_features.metadata["inputs"] == "features" and _unnormalized(as_features)
    # pixels stored as bytes are not token ids: 256 values at most
    assert profile_data(np.round(load_digits().data * 255 / 16).astype(np.uint8), baseline=False).inputs == "features"


# -- label noise: judged by a model that can fit the data ---------------------------------------
@pytest.fixture(scope="module")
def nonlinear():
    """Clean labels (flip_y=0) of classes made of several clusters each: not linearly separable."""
    from sklearn.datasets import make_classification

    return make_classification(n_samples=1000, n_informative=3, n_clusters_per_class=3, flip_y=0, random_state=0)


def test_clean_labels_a_linear_model_cannot_fit_are_not_called_noise(nonlinear):
    X, y = nonlinear
    facts = profile_data(X, y)
    tried = facts.label_noise.models_tried
    assert tried["LogisticRegression"]["share"] > 0.2  # the linear misfit that used to be reported as noise
    assert facts.label_noise.model == "ExtraTrees" and facts.label_noise.share < 0.05
    assert not check_data(X, y).has("data.label_noise")
    again = profile_data(X, y)  # fixed seeds: the same rows on every run
    assert again.label_noise.indices == facts.label_noise.indices


def test_flipped_labels_on_nonlinear_data_are_found_among_the_flagged_rows(nonlinear):
    X, y = nonlinear
    noisy, flipped = flip(y, 0.3, 2)
    report = check_data(X, noisy)
    finding = next(f for f in report.findings if f.code == "data.label_noise" and f.where == "labels")
    assert finding.evidence["share_flagged"] > 0.2 and finding.evidence["judged_by"] != "LogisticRegression"
    # the most suspicious rows are flipped ones far more often than the 30% a random pick would give
    assert np.isin(finding.evidence["example_indices"], flipped).mean() >= 0.7


def test_an_interaction_random_splits_miss_is_judged_by_boosted_trees_and_stays_clean():
    """Labels that are the sign of a product of two features among 50: no linear model and no
    randomly split tree learns them, so both would flag a third of the clean labels."""
    from lossdoctor.data.baseline import find_label_noise
    from lossdoctor.data.checks import LABEL_NOISE_SHARE_LIMIT

    X = np.random.default_rng(0).standard_normal((2000, 50))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    facts = find_label_noise(X, y, np.arange(len(y)), share_limit=LABEL_NOISE_SHARE_LIMIT)
    assert facts.models_tried["LogisticRegression"]["share"] > 0.3 and facts.models_tried["ExtraTrees"]["share"] > 0.2
    assert facts.model == "HistGradientBoosting" and facts.share < 0.05 and facts.skill > 0.5


def _long_format_wine(per_type_normalized: bool):
    """Long-format lab-style rows from the wine measurements: (one-hot of the measurement type, value),
    as a tensor pipeline feeds them (no string column to group by). The target: is the value above its
    type's median."""
    X, _ = load_wine(return_X_y=True)
    n, k = X.shape
    if per_type_normalized:
        X = (X - X.mean(0)) / X.std(0)
    kinds = np.tile(np.arange(k), n)
    values = X.reshape(-1)
    target = (values > np.median(X, axis=0)[kinds]).astype(np.int64)
    return np.column_stack([np.eye(k)[kinds], values]).astype(np.float32), target


def test_a_one_hot_encoded_type_is_recognised_as_the_group_whose_units_differ():
    features, target = _long_format_wine(per_type_normalized=False)
    report = check_data(features, target)
    mixed = next(f for f in report.findings if f.code == "data.mixed_units")
    assert mixed.severity == "warning" and mixed.evidence["group_col"].startswith("one-hot")
    assert mixed.evidence["std_spread"] > 100 * mixed.evidence["threshold"]


def test_the_same_rows_normalized_per_type_have_no_mixed_units():
    features, target = _long_format_wine(per_type_normalized=True)
    assert "data.mixed_units" not in check_data(features, target).codes
