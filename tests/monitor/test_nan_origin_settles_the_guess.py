"""A loss curve that turns NaN can only guess why (usually the rate, sometimes the data); the watch
that locates the first NaN settles it. A square root fed negative pre-activations turns NaN in the
forward pass of step 0, from finite inputs and finite weights: before any update, so not the rate,
and not the data. The same model with the square root guarded trains clean; a rate far too high on
a sound model is still named first."""
import torch
from torch import nn

from watch_training import mlp, train


class Sqrt(nn.Module):
    def forward(self, x):
        return torch.sqrt(x)


class GuardedSqrt(nn.Module):
    def forward(self, x):
        return torch.sqrt(torch.relu(x) + 1e-6)


def _sqrt_mlp(guarded: bool) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), GuardedSqrt() if guarded else Sqrt(), nn.Linear(64, 10))


def test_a_nan_made_by_an_operation_before_any_update_is_the_root_not_the_rate():
    report, _ = train(_sqrt_mlp(guarded=False), lr=0.01, steps=60, optimizer="adam")
    top = report.top
    assert top.code == "grad.non_finite" and top.source.startswith("watch:")
    assert top.evidence["step"] == 0 and top.evidence["weights_finite"] is True
    assert top.evidence["module_type"] == "Sqrt"
    guesses = [f for f in report.findings if f.source == "curves:nan_loss_causes"
               and f.code in ("optim.lr_too_high", "data.non_finite")]
    assert guesses and all(f.severity == "info" and "refuted_by" in f.evidence for f in guesses)
    assert all(f.explained_by != "optim.lr_too_high" for f in report.findings)


def test_the_guarded_twin_trains_clean():
    report, _ = train(_sqrt_mlp(guarded=True), lr=0.01, steps=60, optimizer="adam")
    assert report.verdict != "non_finite"
    assert report.warnings() == []


def test_a_rate_that_overflows_a_sound_model_is_still_named_first():
    report, _ = train(mlp(), lr=50.0, steps=60)
    assert report.verdict == "non_finite"
    assert report.top.code == "optim.lr_too_high"
