"""Verdicts and causes from the curves of real small trainings on digits, each fault with its healthy twin."""
import json

import numpy as np
import pytest

from lossdoctor.curves import CurveAnalysis, analyze_curves, diagnose_curves
from lossdoctor.curves.verdict import OVERFIT_MIN_RISE, SHORT_MIN_POINTS
from lossdoctor.evidence import Curves
from lossdoctor.findings import Report


def test_healthy_run_is_converging_without_warnings(trainings, to_curves):
    analysis = analyze_curves(to_curves(trainings["healthy"]))
    assert isinstance(analysis, CurveAnalysis)
    assert analysis.verdict == "converging"
    assert [f for f in analysis.findings if f.severity != "info"] == []
    assert analysis.evidence["relative_drop"] > 0.9


def test_healthy_run_with_only_a_training_loss_is_converging(trainings, to_curves):
    curves = to_curves(trainings["healthy"], with_val=False, with_lr=False, with_grad=False)
    analysis = analyze_curves(curves)
    assert analysis.verdict == "converging"
    assert not [f for f in analysis.findings if f.severity != "info"]


def test_noisy_small_batch_healthy_runs_are_converging_for_several_seeds(train_digits, to_curves):
    # batch of 4: the minibatch loss jumps between ~0 and >1 from step to step
    for seed in (1, 2):
        rec = train_digits("healthy", steps=400, batch=4, eval_every=40, seed=seed)
        assert np.std(np.diff(rec["loss"][200:])) > 0.1  # the noise really is there
        report = diagnose_curves(to_curves(rec))
        assert report.verdict == "converging", report.metadata["curve_evidence"]
        assert report.warnings() == []


def test_divergence_after_warmup_blames_the_learning_rate(trainings, to_curves):
    rec = trainings["lr_warmup_too_high"]
    analysis = analyze_curves(to_curves(rec))
    assert analysis.verdict == "diverging"
    ev = analysis.evidence
    # the loss went down first, then came back above where it was: its size is reported
    assert ev["min_level"] < 0.5 * ev["end_level"]
    assert ev["rise_relative"] > 0.5
    step = ev["divergence_step"]
    losses = np.asarray(rec["loss"])
    assert np.median(losses[int(step) + 20:]) > 3 * ev["min_level"]  # it stayed up after the step
    lr_finding = next(f for f in analysis.findings if f.code == "optim.lr_too_high")
    assert lr_finding.severity == "error"
    assert lr_finding.evidence["warmup_end_step"] == 100  # LambdaLR reaches the peak at step 100
    assert lr_finding.evidence["peak_lr"] == pytest.approx(2.0)
    assert "2" in lr_finding.remedy and "0.2" in lr_finding.remedy  # names the LR and a lower one
    assert any(e.kind == "divergence" for e in analysis.events)


def test_divergence_without_lr_log_is_a_weaker_lr_suspicion(trainings, to_curves):
    analysis = analyze_curves(to_curves(trainings["lr_warmup_too_high"], with_lr=False))
    assert analysis.verdict == "diverging"
    finding = next(f for f in analysis.findings if f.code == "optim.lr_too_high")
    assert finding.severity == "warning" and finding.confidence < 0.8
    assert "rerun" in finding.remedy.lower()


def test_nan_loss_is_non_finite_with_first_step_and_experiments(trainings, to_curves):
    rec = trainings["lr_nan"]
    first_nan = rec["steps"][int(np.argmax(~np.isfinite(rec["loss"])))]
    analysis = analyze_curves(to_curves(rec))
    assert analysis.verdict == "non_finite"
    assert analysis.evidence["first_non_finite_step"] == first_nan
    codes = {f.code for f in analysis.findings}
    assert {"optim.lr_too_high", "model.logit_overflow"} <= codes
    for f in analysis.findings:
        if f.code in ("optim.lr_too_high", "model.logit_overflow"):
            assert "Experiment that settles it" in f.remedy
            assert f"{first_nan:g}" in f.remedy
    # the logged grad norm turned Inf/NaN too
    assert any(f.code == "grad.exploding" and f.severity == "error" for f in analysis.findings)
    assert "relative_drop" in analysis.evidence


def test_nan_in_a_train_only_live_series_is_non_finite(trainings, to_curves):
    curves = to_curves(trainings["lr_nan"], with_val=False, with_lr=False, with_grad=False)
    assert analyze_curves(curves).verdict == "non_finite"


def test_dropout_everywhere_does_not_converge_and_reports_the_plateau(trainings, to_curves):
    analysis = analyze_curves(to_curves(trainings["dropout09"]))
    assert analysis.verdict in ("underfitting", "stalled")
    ev = analysis.evidence
    assert ev["relative_drop"] < 0.5
    assert ev["plateau_level"] > 1.5  # near chance (ln 10 = 2.3), far above the healthy 0.01
    assert ev["plateau_length_steps"] > 0
    assert {f.code for f in analysis.findings} >= {"model.regularization_too_strong"}
    assert all(f.severity == "info" for f in analysis.findings)  # the log alone cannot settle the cause


def test_shuffled_labels_overfit_with_onset_at_best_validation(trainings, to_curves):
    rec = trainings["shuffled"]
    analysis = analyze_curves(to_curves(rec))
    assert analysis.verdict == "overfitting"
    ev = analysis.evidence
    val = np.asarray(rec["val_loss"])
    assert ev["overfit_onset_step"] in rec["val_steps"]
    assert ev["overfit_onset_step"] <= rec["val_steps"][int(np.argmin(val)) + 1]
    assert ev["val_rise_relative"] > OVERFIT_MIN_RISE
    assert ev["val_end"] > ev["val_best"]
    assert ev["train_fall_after_onset"] > 0.5  # training kept falling
    assert any(e.kind == "overfitting_onset" for e in analysis.events)


def test_two_points_are_insufficient_data_and_say_how_many_are_needed(trainings, to_curves):
    rec = {k: v[:2] for k, v in trainings["healthy"].items()}
    analysis = analyze_curves(to_curves(rec))
    assert analysis.verdict == "insufficient_data"
    assert analysis.evidence["min_points"] == SHORT_MIN_POINTS
    assert str(SHORT_MIN_POINTS) in analysis.evidence["problem"]


def test_no_loss_at_all_is_insufficient_data():
    analysis = analyze_curves(Curves(run="r", source="memory"))
    assert analysis.verdict == "insufficient_data"


def test_analysis_leaves_the_curves_unchanged(trainings, to_curves):
    curves = to_curves(trainings["shuffled"])
    before = {k: (s.steps.copy(), s.values.copy()) for k, s in curves.series.items()}
    analyze_curves(curves)
    for k, (steps, values) in before.items():
        np.testing.assert_array_equal(curves.series[k].steps, steps)
        np.testing.assert_array_equal(curves.series[k].values, values)


def test_report_carries_source_metadata_events_and_plots_and_round_trips(trainings, to_curves):
    curves = to_curves(trainings["lr_warmup_too_high"], run="warm")
    curves.meta["format"] = "memory"
    report = diagnose_curves(curves)
    assert report.verdict == "diverging" and report.source == "memory"
    assert report.metadata["run"] == "warm" and report.metadata["format"] == "memory"
    assert report.metadata["n_points"]["train_loss"] == len(trainings["lr_warmup_too_high"]["loss"])
    assert set(report.plots["curves"]) == {"train_loss", "val_loss", "lr", "grad_norm"}
    assert report.exit_code == 1
    again = Report.from_json(report.to_json())
    assert again.verdict == report.verdict and again.codes == report.codes
    assert json.loads(report.to_json())["metadata"]["curve_evidence"]["divergence_step"] == report.metadata["curve_evidence"]["divergence_step"]


def test_unsorted_steps_give_the_same_verdict(trainings, to_curves):
    rec = trainings["shuffled"]
    order = np.random.default_rng(0).permutation(len(rec["steps"]))
    c = Curves(run="r", source="memory")
    c.add("train_loss", np.asarray(rec["steps"])[order], np.asarray(rec["loss"])[order])
    c.add("val_loss", rec["val_steps"], rec["val_loss"])
    assert analyze_curves(c).verdict == "overfitting"


def _heavy_ball_regression(momentum: float, steps: int = 1000):
    """Full-batch linear regression on diabetes with SGD at lr 0.003 and the given momentum."""
    import torch
    from sklearn.datasets import load_diabetes
    from sklearn.preprocessing import StandardScaler

    X, y = load_diabetes(return_X_y=True)
    X = torch.tensor(StandardScaler().fit_transform(X), dtype=torch.float32)
    y = torch.tensor((y - y.mean()) / y.std(), dtype=torch.float32)[:, None]
    torch.manual_seed(0)
    model = torch.nn.Linear(10, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.003, momentum=momentum)
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    c = Curves(run=f"momentum {momentum}", source="memory")
    c.add("train_loss", np.arange(1, steps + 1), losses)
    return c, np.asarray(losses)


def test_momentum_0999_oscillates_and_reports_the_swing():
    curves, losses = _heavy_ball_regression(0.999)
    analysis = analyze_curves(curves)
    assert analysis.verdict == "oscillating"
    ev = analysis.evidence
    late = losses[len(losses) // 2:]
    assert ev["swing_low"] == pytest.approx(np.percentile(late, 10), rel=1e-4)
    assert ev["swing_high"] == pytest.approx(np.percentile(late, 90), rel=1e-4)
    assert ev["swing_relative"] >= 0.3 and ev["swing_legs"] >= 3
    twin, _ = _heavy_ball_regression(0.9)
    assert analyze_curves(twin).verdict != "oscillating"
