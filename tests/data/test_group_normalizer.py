"""data.mixed_units on a long-format table melted from breast_cancer, and GroupNormalizer."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.pipeline import make_pipeline
from torch import nn

from lossdoctor import GroupNormalizer
from lossdoctor.data import check_data
from lossdoctor.errors import InputError


@pytest.fixture(scope="module")
def long_table():
    """One row per (patient, measurement): 30 lab types in one `value` column, like the seed's EHR labs."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    wide = X.assign(patient=np.arange(len(X)), diagnosis=y.to_numpy())
    return wide.melt(id_vars=["patient", "diagnosis"], var_name="lab", value_name="value")


def test_long_format_table_is_flagged_mixed_units_with_group_scales(long_table):
    report = check_data(long_table[["lab", "value"]], baseline=False)
    finding = next(f for f in report.findings if f.code == "data.mixed_units")
    assert finding.severity == "warning" and finding.where == "value by lab"
    assert finding.evidence["std_spread"] > 1e3 and finding.evidence["threshold"] == 10
    assert "GroupNormalizer(group_col='lab'" in finding.remedy
    plot = report.plots["group_scales"]
    assert plot["group_col"] == "lab" and plot["value_col"] == "value" and len(plot["groups"]) == 30
    # groups given as an array work the same
    by_array = check_data(long_table[["value"]].to_numpy(), groups=long_table["lab"].to_numpy(), baseline=False)
    assert by_array.has("data.mixed_units", "warning")


def test_group_normalized_table_is_not_mixed_units(long_table):
    normalized = GroupNormalizer(group_col="lab", value_cols=["value"]).fit_transform(long_table[["lab", "value"]])
    assert not check_data(normalized, baseline=False).has("data.mixed_units")


def _fit_rows(frame: pd.DataFrame, labs: list[str], steps: int = 150) -> float:
    """A small MLP predicting the diagnosis from one (lab type, value) row; returns the final loss."""
    torch.manual_seed(0)
    onehot = torch.tensor(pd.get_dummies(frame["lab"]).reindex(columns=labs).to_numpy(dtype=np.float32))
    X = torch.cat([onehot, torch.tensor(frame["value"].to_numpy(dtype=np.float32))[:, None]], dim=1)
    y = torch.tensor(frame["diagnosis"].to_numpy(dtype=np.float32))[:, None]
    model = nn.Sequential(nn.Linear(X.shape[1], 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(loss_fn(model(X), y))


def test_group_normalizer_lowers_the_training_loss_on_the_long_table(long_table):
    labs = sorted(long_table["lab"].unique())
    table = long_table[long_table["patient"] < 200]  # 6,000 rows keep the training short
    raw = _fit_rows(table, labs)
    normalized = GroupNormalizer(group_col="lab", value_cols=["value"]).fit_transform(table)
    fixed = _fit_rows(normalized, labs)
    assert fixed < raw - 0.05, (raw, fixed)


def test_each_group_is_standardized_and_inverse_transform_round_trips():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"lab": np.repeat(["cbc", "pt", "hp"], 200),
                          "value": np.concatenate([rng.normal(5000, 900, 200), rng.normal(12, 1.5, 200),
                                                   rng.integers(0, 2, 200)]),
                          "other": np.arange(600)})
    gn = GroupNormalizer(group_col="lab", value_cols=["value"]).fit(frame)
    out = gn.transform(frame)
    stats = out.groupby("lab")["value"].agg(["mean", "std"])
    assert np.allclose(stats["mean"], 0, atol=1e-9) and np.allclose(stats["std"], 1, atol=0.01)
    assert out["other"].equals(frame["other"]) and list(out.columns) == ["lab", "value", "other"]
    back = gn.inverse_transform(out)
    assert np.allclose(back["value"], frame["value"])
    assert list(gn.get_feature_names_out()) == ["lab", "value", "other"]
    robust = GroupNormalizer(group_col="lab", value_cols="value", method="robust").fit_transform(frame)
    assert abs(robust.loc[robust["lab"] == "cbc", "value"].median()) < 1e-9


def test_unseen_and_small_groups_follow_the_documented_policies():
    frame = pd.DataFrame({"lab": ["a"] * 50 + ["b"] * 50 + ["tiny"] * 3,
                          "value": np.r_[np.linspace(0, 10, 50), np.linspace(1000, 3000, 50), [1.0, 2.0, 3.0]]})
    gn = GroupNormalizer(group_col="lab", min_group_size=10).fit(frame)
    assert gn.small_groups_ == ["tiny"]
    assert gn.center_.loc["tiny", "value"] == pytest.approx(frame["value"].mean())  # global fallback
    new = pd.DataFrame({"lab": ["zzz"], "value": [frame["value"].mean()]})
    assert gn.transform(new)["value"].iloc[0] == pytest.approx(0.0)  # unseen -> global statistics
    passthrough = GroupNormalizer(group_col="lab", unseen="passthrough").fit(frame)
    assert passthrough.transform(new)["value"].iloc[0] == pytest.approx(new["value"].iloc[0])
    with pytest.raises(InputError, match="unseen group"):
        GroupNormalizer(group_col="lab", unseen="error").fit(frame).transform(new)
    with pytest.raises(InputError, match="fewer than 10"):
        GroupNormalizer(group_col="lab", small="error").fit(frame)
    with pytest.raises(InputError, match="method"):
        GroupNormalizer(method="minmax").fit(frame)
    constant = GroupNormalizer(group_col="lab").fit_transform(pd.DataFrame({"lab": ["c"] * 20, "value": [7.0] * 20}))
    assert (constant["value"] == 0).all()  # constant group: scale 1, no division by zero


def test_works_on_arrays_in_pipelines_and_clones():
    rng = np.random.default_rng(0)
    keys = np.repeat([0.0, 1.0], 100)
    values = np.where(keys == 0, rng.normal(0, 1, 200), rng.normal(500, 100, 200))
    X = np.column_stack([keys, values])
    gn = GroupNormalizer(group_col=0, value_cols=[1])
    out = make_pipeline(gn).fit_transform(X)
    assert isinstance(out, np.ndarray) and np.array_equal(out[:, 0], keys)
    assert abs(out[keys == 1, 1].std() - 1) < 1e-9
    assert clone(gn).get_params() == gn.get_params()
    assert list(GroupNormalizer().fit(X).get_feature_names_out()) == ["x0", "x1"]
    with pytest.raises(InputError, match="columns"):
        gn.transform(X[:, :1])
