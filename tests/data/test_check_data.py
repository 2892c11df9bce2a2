"""check_data on scikit-learn's bundled real data sets, each fault with a healthy twin."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_digits
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


def test_raw_breast_cancer_is_unnormalized_with_the_spread_as_evidence(cancer):
    X, y = cancer
    report = check_data(X, y, baseline=False)
    assert report.has("data.unnormalized", "warning")
    finding = next(f for f in report.findings if f.code == "data.unnormalized" and f.severity == "warning")
    assert finding.evidence["std_spread"] > 1e3 and finding.evidence["spread_limit"] == 100
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
