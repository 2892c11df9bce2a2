"""Mixed precision (issue 12): float16 under a GradScaler whose scale collapses, bfloat16 weights whose
updates round to nothing, logits against the float16 limit. On the CPU: torch.autocast("cpu") runs
float16 and bfloat16, and torch.amp.GradScaler("cpu") is the scaler a GPU run uses, with its device
paths (the overflow flags and the scale stay tensors until the read-out) exercised by
nan_check="readout"."""
import contextlib
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.amp.grad_scaler import GradScaler

import lossdoctor
from watch_training import X, Y, batches, mlp, warnings_of

FAULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "faults"


def train_amp(model, lr, steps=150, dtype=torch.float16, scaler=True, optimizer="sgd", inputs=None, every=10,
              declare_scaler=False, **watch_kwargs):
    inputs = X if inputs is None else inputs
    opt = (torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=lr))
    grad_scaler = torch.amp.GradScaler("cpu") if scaler else None
    with lossdoctor.watch(model, opt, every=every, scaler=grad_scaler if declare_scaler else None,
                          **watch_kwargs) as doctor:
        for idx in batches(steps):
            with torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext():
                loss = nn.functional.cross_entropy(model(inputs[idx]), Y[idx])
            opt.zero_grad()
            if grad_scaler is not None:
                grad_scaler.scale(loss).backward()
                grad_scaler.step(opt)
                grad_scaler.update()
            else:
                loss.backward()
                opt.step()
            doctor.step(loss)
    return doctor.report(), doctor


@pytest.fixture(scope="module")
def collapsed():
    return train_amp(mlp(), lr=5.0)


def test_a_grad_scaler_whose_scale_collapses_is_found_without_being_passed(collapsed):
    report, doctor = collapsed
    amp = [f for f in report.findings if f.code == "optim.amp_scale_collapse"]
    assert amp and amp[0].severity == "error" and amp[0].evidence["mechanism"] == "grad_scaler"
    assert amp[0].evidence["skipped_share_after_settling"] > 0.9  # the threshold is 0.5
    assert amp[0].evidence["latest_scale"] < 1e-20  # the threshold is 1
    assert doctor.step_count == 150  # the skipped steps are steps: the watch kept counting and reading out


def test_the_collapse_is_filed_under_the_rate_that_caused_it(collapsed):
    report, _ = collapsed
    assert report.top.code == "optim.lr_too_high" and report.top.evidence["lr_at_spike"] == pytest.approx(5.0)
    amp = next(f for f in report.findings if f.code == "optim.amp_scale_collapse")
    assert amp.explained_by == "optim.lr_too_high"
    nan = next(f for f in report.findings if f.code == "grad.non_finite")
    assert nan.evidence["located_by"].startswith("replay") and nan.where  # the float16 forward that overflowed


def test_a_healthy_float16_run_with_its_scaler_is_clean():
    report, doctor = train_amp(mlp(), lr=0.02)
    stats = doctor.stats()
    assert stats.scaler["steps"] == 150 and stats.scaler["skipped_steps"].size == 0
    assert stats.autocast == "torch.float16" and stats.logits[-1][2] == "torch.float16"
    assert not report.has("optim.amp_scale_collapse")
    assert warnings_of(report) == []  # logits past the float16 exp limit are a note under autocast


def test_everyday_logits_of_a_healthy_float16_run_do_not_escalate_the_schedule():
    # a quarter of float16's exp limit (2.8) is an everyday logit, and autocast runs the loss's softmax in
    # float32: the logits are judged against float32's limit (a quarter of it: 22) before the watch
    # instruments every step
    _, doctor = train_amp(mlp(), lr=0.02)
    stats = doctor.stats()
    largest = max(value for _, value, _ in stats.logits)
    assert 0.25 * 11.09 < largest < 0.25 * 88.72  # past the old escalation sign, short of the new one
    assert all(step % 10 == 0 for step in stats.sample_steps)


def test_the_device_path_reads_the_scaler_at_read_out(collapsed):
    report, doctor = train_amp(mlp(), lr=5.0, nan_check="readout")
    assert doctor.stats().meta["nan_check"] == "at read-out"
    amp = next(f for f in report.findings if f.code == "optim.amp_scale_collapse")
    assert amp.evidence["skipped_share_after_settling"] > 0.9
    assert report.verdict == "non_finite"
    assert report.top.code == "optim.lr_too_high"


def test_a_declared_scaler_without_an_optimizer_is_read_from_its_own_overflow_flags():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=5.0, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu")
    with lossdoctor.watch(model, every=10, scaler=scaler) as doctor:  # no optimizer: step() counts
        for idx in batches(100):
            with torch.autocast("cpu", dtype=torch.float16):
                loss = nn.functional.cross_entropy(model(X[idx]), Y[idx])
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            doctor.step(loss)
    stats = doctor.stats()
    assert stats.scaler["steps"] == 100 and stats.scaler["skipped_steps"].size > 80
    assert doctor.report().has("optim.amp_scale_collapse", "error")


def test_bfloat16_weights_that_a_small_rate_cannot_move_are_found():
    model = mlp().to(torch.bfloat16)
    report, doctor = train_amp(model, lr=1e-4, optimizer="adam", dtype=None, scaler=False, inputs=X.to(torch.bfloat16))
    amp = [f for f in report.findings if f.code == "optim.amp_scale_collapse"]
    assert amp and amp[0].evidence["mechanism"] == "low_precision_rounding" and amp[0].severity == "error"
    assert min(amp[0].evidence["stalled_share_per_layer"].values()) > 0.75  # the threshold is 0.5
    assert "autocast" in amp[0].remedy and amp[0].evidence["dtype"] == "bfloat16"


def test_float32_master_weights_under_bfloat16_autocast_move_at_the_same_rate():
    report, doctor = train_amp(mlp(), lr=1e-4, optimizer="adam", dtype=torch.bfloat16, scaler=False)
    stats = doctor.stats()
    assert stats.low_precision == {} and stats.autocast == "torch.bfloat16"
    assert stats.loss_values[-20:].mean() < stats.loss_values[:20].mean() - 0.1  # it learns
    assert not report.has("optim.amp_scale_collapse")
    assert warnings_of(report) == []


@pytest.mark.parametrize("fail", [False, True])
def test_grad_scaler_and_clip_observation_end_with_the_watch(fail):
    original_update = GradScaler.update
    original_clip = torch.nn.utils.clip_grad_norm_
    with contextlib.suppress(RuntimeError):
        with lossdoctor.watch(mlp(), every=5):
            assert GradScaler.update is not original_update
            if fail:
                raise RuntimeError("user code failed")
    assert GradScaler.update is original_update
    assert torch.nn.utils.clip_grad_norm_ is original_clip



def _softmax_classifier(stable: bool) -> nn.Module:
    """The fault suite's model (benchmarks/faults/_amp.py): log(exp(s) / sum exp(s)) without subtracting
    the maximum, which overflows float16 once a score passes ~11; ``stable`` is log_softmax in float32."""
    sys.path.insert(0, str(FAULTS))
    try:
        from _amp import SoftmaxClassifier
    finally:
        sys.path.remove(str(FAULTS))
    torch.manual_seed(0)
    return SoftmaxClassifier(hidden=128, stable=stable)


# a usual rate for Adam (the rate is not the fault); inputs x4 drive the scores past float16's exp limit.
# cross_entropy of log-probabilities equals their NLL: the loss is the one the fault suite uses.
def test_a_float16_overflow_at_a_usual_rate_names_the_scaler_collapse_not_the_rate():
    report, _ = train_amp(_softmax_classifier(stable=False), lr=3e-3, steps=200, optimizer="adam", inputs=X * 4)
    assert report.top.code == "optim.amp_scale_collapse" and report.top.source.startswith("watch:")
    assert not [f for f in report.findings if f.code == "optim.lr_too_high" and f.severity != "info"]
    for f in report.findings:
        if f.code in ("grad.non_finite", "optim.lr_too_high"):
            assert f.explained_by == "optim.amp_scale_collapse"


def test_the_same_model_with_a_stable_softmax_is_clean_under_float16():
    report, _ = train_amp(_softmax_classifier(stable=True), lr=3e-3, steps=200, optimizer="adam", inputs=X * 4)
    assert "optim.amp_scale_collapse" not in report.codes
    assert warnings_of(report) == []


# float16 autocast with no GradScaler (what the HF Trainer runs on a CPU): the overflow is not skipped,
# it writes NaN into the weights. The watch replays the step and finds the NaN in the model's own
# operation on finite inputs and weights, with the logits past float16's exp limit: the overflow is
# the root, the NaN under it, and the curve's "a NaN loss is usually the rate" stays a guess.
def test_a_float16_overflow_without_a_scaler_names_the_logit_overflow_not_the_rate():
    report, _ = train_amp(_softmax_classifier(stable=False), lr=3e-3, steps=200, optimizer="adam", inputs=X * 4,
                          scaler=False)
    top = report.top
    assert top.code == "model.logit_overflow" and top.severity == "error", report.codes
    assert top.evidence["nan_from_overflow"] is True and top.evidence["dtype"] == "torch.float16"
    # exp() summed over the 10 classes overflows once the largest logit is within ln 10 of the limit
    assert top.evidence["classes"] == 10
    assert top.evidence["logit_at_nan"] >= top.evidence["exp_sum_limit"]
    nan = next(f for f in report.findings if f.code == "grad.non_finite")
    assert nan.explained_by == "model.logit_overflow"
    assert not [f for f in report.findings if f.code == "optim.lr_too_high" and f.severity != "info"]


def test_the_same_model_with_a_stable_softmax_and_no_scaler_is_clean():
    report, _ = train_amp(_softmax_classifier(stable=True), lr=3e-3, steps=200, optimizer="adam", inputs=X * 4,
                          scaler=False)
    assert "grad.non_finite" not in report.codes
    assert warnings_of(report) == []
