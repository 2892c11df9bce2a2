"""Each fault trains a real small model and must be named with its TAXONOMY code; each has a healthy
twin that differs only in the fault and must come out clean (nothing above info)."""
import pytest
import torch
from torch import nn

from watch_training import first_non_finite_module, mlp, train, warnings_of  # noqa: E402


@pytest.fixture(scope="module")
def healthy():
    report, _ = train(mlp())
    return report


def test_healthy_mlp_reports_nothing_above_info(healthy):
    assert healthy.verdict == "converging"
    assert warnings_of(healthy) == []
    assert healthy.plots["grad_norms"]["layers"] == ["0", "2", "4"]
    assert len(healthy.plots["dead_units"]["share"]) == 2


def test_huge_learning_rate_names_the_module_and_step_of_the_first_nan():
    expected_step, expected_module = first_non_finite_module(mlp(), lr=50.0)
    assert expected_module is not None
    report, _ = train(mlp(), lr=50.0)
    nan = [f for f in report.findings if f.code == "grad.non_finite"]
    assert nan and nan[0].severity == "error"
    assert nan[0].where == expected_module
    assert nan[0].evidence["step"] == expected_step
    assert nan[0].evidence["produced_by"] in ("operation", "weights")
    assert report.verdict == "non_finite"


def test_nan_found_at_read_out_still_gives_first_step():
    expected_step, _ = first_non_finite_module(mlp(), lr=50.0)
    report, _ = train(mlp(), lr=50.0, nan_check="readout")
    nan = [f for f in report.findings if f.code == "grad.non_finite"]
    assert nan and nan[0].evidence["step"] == expected_step
    assert nan[0].evidence["modules_with_non_finite_weights_now"]


def test_nan_in_the_inputs_is_blamed_on_the_data():
    from watch_training import X

    poisoned = X.clone()
    poisoned[777, 3] = float("nan")  # one bad pixel in one row; some batch within 120 steps draws it
    report, _ = train(mlp(), inputs=poisoned, steps=120)
    nan = [f for f in report.findings if f.code == "grad.non_finite"]
    assert nan and nan[0].evidence["produced_by"] == "inputs"
    assert report.has("data.non_finite", "error")


def test_negative_bias_init_kills_relus():
    model = mlp()
    with torch.no_grad():
        model[0].bias.fill_(-10.0)
        model[2].bias.fill_(-10.0)
    report, _ = train(model)
    dead = [f for f in report.findings if f.code == "grad.dead_relu"]
    assert dead and dead[0].severity in ("warning", "error")
    assert dead[0].evidence["layers"]["1"]["share"] > 0.9


def test_deep_sigmoid_stack_has_vanishing_gradients():
    report, _ = train(mlp(depth=8, act=nn.Sigmoid), lr=0.005)
    vanish = [f for f in report.findings if f.code == "grad.vanishing"]
    assert vanish and vanish[0].severity in ("warning", "error")
    assert vanish[0].where == "0"
    assert vanish[0].evidence["first_over_last_grad_norm"] < 1e-3


def test_deep_relu_twin_of_the_sigmoid_stack_is_clean():
    model = mlp(depth=8, act=nn.ReLU)
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    report, _ = train(model, lr=0.005)
    assert not report.has("grad.vanishing")
    assert warnings_of(report) == []


def test_a_clip_that_shrinks_every_step_of_a_run_that_does_not_learn_masks_the_learning_rate():
    report, _ = train(mlp(), clip=0.001)  # the pre-clip norm is ~0.4: every step cut ~400x
    assert report.verdict in ("underfitting", "stalled")
    clip = [f for f in report.findings if f.code == "optim.clipping_masks_lr"]
    assert clip and clip[0].severity == "warning"
    assert clip[0].evidence["clipped_share"] > 0.9
    assert clip[0].evidence["median_cut_factor"] > 10 * clip[0].evidence["severe_cut"]
    assert clip[0].evidence["observed_by"] == "clip_grad_norm_"


def test_a_clip_that_fires_on_every_step_of_a_healthy_run_is_only_a_note():
    """Like the HF Trainer's default max_grad_norm=1.0 on a healthy model: the clip cuts ~2x on every
    step, the loss falls, nothing says the rate is too high."""
    report, _ = train(mlp(), clip=0.25)
    clip = next(f for f in report.findings if f.code == "optim.clipping_masks_lr")
    assert clip.evidence["clipped_share"] > 0.9 and clip.evidence["median_cut_factor"] < 5
    assert clip.severity == "info" and clip.evidence["rate_too_high_because"] == []
    assert report.verdict == "converging"
    assert warnings_of(report) == []


def test_clip_that_never_triggers_is_clean():
    report, _ = train(mlp(), clip=1e6)
    assert not report.has("optim.clipping_masks_lr")
    assert warnings_of(report) == []


def own_clip(parameters, max_norm):
    """A hand-written clip (not torch.nn.utils.clip_grad_norm_), which the watch cannot observe."""
    params = [p for p in parameters if p.grad is not None]
    total = float(torch.stack([p.grad.norm() for p in params]).norm())
    for p in params:
        p.grad.mul_(min(1.0, max_norm / (total + 1e-6)))


def test_unobserved_clipping_is_caught_with_a_declared_max_norm():
    report, _ = train(mlp(), clip=0.01, clip_fn=own_clip, max_norm=0.01)
    clip = [f for f in report.findings if f.code == "optim.clipping_masks_lr"]
    assert clip and clip[0].evidence["observed_by"] == "declared max_norm"
    assert clip[0].evidence["clipped_share"] > 0.9


class TemperatureMLP(nn.Module):
    """Logits multiplied by 100 (a temperature of 0.01 in the wrong place)."""

    def __init__(self, scale: float):
        super().__init__()
        self.body = mlp()
        self.scale = scale

    def forward(self, x):
        return self.body(x) * self.scale


def test_logits_past_the_overflow_limit_are_flagged_before_any_nan():
    report, _ = train(TemperatureMLP(100.0), lr=1e-3, optimizer="adam")
    logit = [f for f in report.findings if f.code == "model.logit_overflow"]
    assert logit and logit[0].severity in ("warning", "error")
    assert logit[0].evidence["largest_logit"] > 88.72
    assert logit[0].evidence["exp_overflow_limit"] == pytest.approx(88.72)
    assert logit[0].where == "body.4"
    assert not report.has("grad.non_finite")


def test_untempered_twin_keeps_its_logits_far_below_the_limit():
    report, doctor = train(TemperatureMLP(1.0), lr=1e-3, optimizer="adam")
    assert max(v for _, v, _ in doctor.stats().logits) < 0.25 * 88.72
    assert not report.has("model.logit_overflow")
    assert warnings_of(report) == []


def test_normalized_twin_keeps_logits_far_from_overflow(healthy):
    assert not healthy.has("model.logit_overflow")
    assert not healthy.has("grad.non_finite")
