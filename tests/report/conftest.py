"""Reports for the HTML tests: one carrying every plot, one with nothing wrong, and hostile names."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from lossdoctor.findings import Event, Finding, Report, RuledOut

HOSTILE = '<script>alert("x")</script>$\\frac{1}{0}$&amp;'  # HTML, mathtext and an entity at once


def _curves(steps: int = 300):
    """A loss that falls, spikes, then turns NaN; validation that turns up (overfitting)."""
    rng = np.random.default_rng(0)
    s = np.arange(steps, dtype=float)
    train = 2.3 * np.exp(-s / 60) + 0.05 + 0.03 * rng.standard_normal(steps)
    train[200] = 6.0
    train[260:] = np.nan
    val = 2.3 * np.exp(-s / 70) + 0.25 + 0.002 * np.maximum(s - 120, 0)
    val[260:] = np.nan
    lr = np.full(steps, 0.5)
    return s, train, val, lr


def build_full_report(layer_name: str = "fc1", feature_name: str = "pixel_0", group: str = "lab_a",
                      source: str = "runs/exp1/metrics.csv") -> Report:
    s, train, val, lr = _curves()
    digits = load_digits().data * 16.0  # the demo's fault: unnormalized pixel intensities
    layers = [layer_name, "fc2", "out"]
    rng = np.random.default_rng(1)
    grad = np.exp(rng.normal(0, 0.3, (3, 30))) * np.array([[0.01], [0.1], [1.0]]) * np.linspace(1, 50, 30)
    grad[:, -3:] = np.nan
    lrs = np.logspace(-5, 1, 25)
    lr_losses = 2.3 - 1.5 * np.exp(-((np.log10(lrs) + 2) ** 2)) + np.where(lrs > 0.3, np.exp(lrs * 3), 0)
    lr_losses[-2:] = np.nan
    features = [feature_name] + [f"pixel_{i}" for i in range(1, 64)]
    plots = {
        "curves": {"train_loss": {"steps": s.tolist(), "values": train.tolist()},
                   "val_loss": {"steps": s.tolist(), "values": val.tolist()},
                   "lr": {"steps": s.tolist(), "values": lr.tolist()}},
        "lr_range": {"lrs": lrs.tolist(), "losses": lr_losses.tolist(), "suggested_lr": 3e-3, "current_lr": 0.5},
        "grad_norms": {"layers": layers, "steps": list(range(0, 300, 10)), "norms": grad.tolist()},
        "dead_units": {"layers": layers[:2], "share": [0.72, 0.1]},
        "feature_scales": {"features": features, "std": digits.std(0).tolist(), "mean": digits.mean(0).tolist()},
        "group_scales": {"value_col": "value", "group_col": "lab_type", "groups": [group, "lab_b", "lab_c"],
                         "std": [0.5, 120.0, 3000.0], "mean": [1.0, 400.0, 9000.0]},
        "ablations": {"baseline": {"label": "dropout 0.9, lr 0.5", "losses": train[:120].tolist()},
                      "runs": [{"label": "dropout off", "losses": (train[:120] * 0.6).tolist()},
                               {"label": "lr 3e-3", "losses": (train[:120] * 0.4).tolist()}]},
    }
    findings = [
        Finding("optim.lr_too_high", "error", 0.9, evidence={"first_nan_step": 260, "lr": 0.5, "suggested_lr": 3e-3},
                where=layer_name, source="probe:lr_range"),
        Finding("data.unnormalized", "warning", 0.8, where=feature_name, source="data",
                evidence={"max_std": float(digits.std(0).max()), "scale_ratio_threshold": 100.0,
                          "features": features[:20], "by_group": {group: {"std": 0.5}}}),
        Finding("model.regularization_too_strong", "warning", 0.7, evidence={"dropout": 0.9, "loss_drop_without": 0.8}),
        Finding("grad.dead_relu", "info", 0.4, where=layer_name, evidence={"dead_share": 0.72, "threshold": 0.5}),
    ]
    events = [Event("spike", 200, 6.0, "loss jumped 40x"), Event("overfitting_onset", 120, float(val[120])),
              Event("first_nan", 260, None, f"first NaN in {layer_name}"), Event("plateau", 150, 0.1)]
    ruled = [RuledOut("data.label_noise", "cleanlab confident learning", {"share_flagged": 0.01, "threshold": 0.1}),
             RuledOut("model.bad_init", "weight scale check", {"layer": layer_name, "ratio": 1.1})]
    return Report("non_finite", findings, source=source, metadata={"model": "MLP", "file": source},
                  events=events, ruled_out=ruled, plots=plots)


@pytest.fixture
def full_report() -> Report:
    return build_full_report()


@pytest.fixture
def hostile_report() -> Report:
    return build_full_report(layer_name=HOSTILE, feature_name=HOSTILE, group=HOSTILE, source=HOSTILE)


@pytest.fixture
def clean_report() -> Report:
    s = np.arange(100.0)
    loss = 2.3 * np.exp(-s / 20) + 0.02
    return Report("converging", [], source="healthy.csv",
                  plots={"curves": {"train_loss": {"steps": s.tolist(), "values": loss.tolist()}}})


@pytest.fixture
def make_report():
    """build_full_report itself, for tests that vary the names (tests cannot import conftest)."""
    return build_full_report


@pytest.fixture
def hostile() -> str:
    return HOSTILE


@pytest.fixture(scope="session")
def full_html() -> str:
    """The full report rendered once (rendering draws seven plots) for the read-only tests."""
    from lossdoctor.report.html import render_html

    return render_html(build_full_report())


@pytest.fixture(scope="session")
def digits_runs():
    """Real trainings on scikit-learn's digits (tests/curves/digits_training.py): ``healthy`` (Adam),
    ``lr_nan`` (SGD at lr 100: the loss climbs to ~1e23 in four steps, then NaN to the end) and
    ``dropout09``; each a dict of steps, loss, lr, grad_norm, val_steps, val_loss."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "curves" / "digits_training.py"
    spec = importlib.util.spec_from_file_location("lossdoctor_tests_digits_training", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class Runs(dict):
        def __missing__(self, fault):
            self[fault] = module.train(fault)
            return self[fault]

    runs = Runs()
    runs.to_curves = module.to_curves
    return runs


@pytest.fixture(scope="session")
def nan_run_report(digits_runs):
    """The curve analysis of the real lr_nan training, as diagnose returns it for its log."""
    from lossdoctor.curves import diagnose_curves

    report = diagnose_curves(digits_runs.to_curves(digits_runs["lr_nan"], run="lr_nan"))
    report.source = "runs/lr_nan/metrics.csv"
    return report
