"""A rate far too high under Adam overwrites the weights on its first update and the loss sits at
chance from then on, with no 3x spike: the live monitor must name optim.lr_too_high first (from what
the optimizer did, the update-to-weight ratio), never optim.lr_too_low; the healthy twin (the same
model at a usual rate) comes out clean."""
import numpy as np
import pytest
import torch
from torch import nn

import lossdoctor
from lossdoctor.differential import differential
from lossdoctor.findings import Finding
from lossdoctor.registry import Evidence
from watch_training import X, Y, batches

SPIKE_OVER_PREVIOUS_MAX = 3.0


class RowsTransformer(nn.Module):
    """The 8 pixel rows of a digit as 8 tokens, through a small transformer encoder (LayerNorm keeps
    the activations bounded, so a too-high rate collapses it to chance instead of blowing it up)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(8, 32)
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x.view(-1, 8, 8))).mean(1))


def _train(lr: float, steps: int = 200):
    model = RowsTransformer()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    with lossdoctor.watch(model, opt, every=10) as doctor:
        for idx in batches(steps):
            loss = nn.functional.cross_entropy(model(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            doctor.step(loss)
    return doctor.report(), doctor.stats()


@pytest.fixture(scope="module")
def too_high():
    return _train(lr=0.3)  # transformers train at 1e-4..5e-3


def test_a_collapse_to_chance_without_a_spike_names_the_rate_first(too_high):
    report, stats = too_high
    losses = stats.loss_values
    # the premise: no loss jumped past 3x the largest before it, and the run ended near chance (ln 10)
    assert np.max(losses[1:] / np.maximum.accumulate(losses)[:-1]) < SPIKE_OVER_PREVIOUS_MAX
    assert abs(np.median(losses[-20:]) - np.log(10)) < 0.3
    top = report.top
    assert top.code == "optim.lr_too_high" and top.severity == "error" and top.source.startswith("watch:")
    ev = top.evidence
    assert ev["large_update_step"] == 0 and ev["update_to_weight_ratio"] > 2 * ev["rewrite_threshold"]
    assert ev["learned_nothing"] and ev["lr_at_spike"] == pytest.approx(0.3)
    assert "optim.lr_too_low" not in [f.code for f in report.findings]


def test_the_healthy_twin_is_clean():
    report, _ = _train(lr=0.003)
    assert report.warnings() == []
    assert "optim.lr_too_low" not in [f.code for f in report.findings]


def _finding(code, severity="error", source="watch:x", **evidence):
    return Finding(code, severity, 0.8, title=code, evidence=evidence, source=source)


def test_vanishing_seen_healthy_at_step_0_hangs_under_the_rate():
    rate = _finding("optim.lr_too_high", onset_step=0, large_update_step=0, learned_nothing=True)
    later = _finding("grad.vanishing", first_over_last_grad_norm=1e-7, threshold=1e-3, at_init=False,
                     ratio_at_first_look=0.3, first_look_step=0, first_seen_step=50)
    differential([rate, later], Evidence())
    assert later.explained_by == "optim.lr_too_high"
    at_init = _finding("grad.vanishing", first_over_last_grad_norm=1e-9, threshold=1e-3, at_init=True,
                       ratio_at_first_look=1e-9, first_look_step=0, first_seen_step=0)
    differential([_finding("optim.lr_too_high", onset_step=0), at_init], Evidence())
    assert at_init.explained_by is None  # vanishing at step 0 is the initialization's, not the rate's


def test_a_structural_bad_init_explains_a_rate_judged_on_update_ratios_alone():
    init = _finding("model.bad_init", source="model:init_scale")
    ratio_only = _finding("optim.lr_too_high", "warning", largest_layer_ratio=0.11)
    differential([init, ratio_only], Evidence())
    assert ratio_only.explained_by == "model.bad_init"
    collapsed = _finding("optim.lr_too_high", largest_layer_ratio=4.0, learned_nothing=True)
    differential([_finding("model.bad_init", source="model:init_scale"), collapsed], Evidence())
    assert collapsed.explained_by is None
