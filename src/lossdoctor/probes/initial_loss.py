"""Initial loss against its expected value: ln C for C-class cross-entropy, the target variance for MSE.

A freshly initialised network predicts roughly uniform classes (or roughly zero), so its loss
starts near these values; far above them means an output activation, scale or initialization
that makes the first predictions confidently wrong.
"""
from __future__ import annotations

import math
import time

import torch
from torch import nn

from .loop import FIT_ROWS, eval_loss
from .recipe import Recipe
from .result import ProbeResult


def expected_initial_loss(recipe: Recipe) -> float | None:
    """The loss of an uninformed prediction, or None when the loss has no standard reference."""
    y = recipe.y.double()
    loss = recipe.loss_fn
    if isinstance(loss, (nn.CrossEntropyLoss, nn.NLLLoss)) and recipe.n_classes:
        return math.log(recipe.n_classes)
    if isinstance(loss, (nn.BCEWithLogitsLoss, nn.BCELoss)):
        return math.log(2.0)
    if isinstance(loss, nn.MSELoss):
        return float(y.var()) if y.numel() > 1 else None
    if isinstance(loss, (nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss)):
        return float((y - y.median()).abs().mean())
    return None


def chance_loss(recipe: Recipe) -> float | None:
    """The loss of the best constant prediction ("chance level"): the entropy of the class shares for
    cross-entropy (ln C when the classes are balanced), the target variance for MSE; a run that ends
    here has learned nothing from the inputs. Falls back to the expected initial loss."""
    loss = recipe.loss_fn
    y = recipe.y
    if isinstance(loss, (nn.CrossEntropyLoss, nn.NLLLoss)) and recipe.n_classes and not y.dtype.is_floating_point \
            and y.dim() == 1 and y.numel():
        share = torch.bincount(y[y >= 0].long()).double()
        share = share[share > 0] / share.sum()
        return float(-(share * share.log()).sum())
    if isinstance(loss, (nn.BCEWithLogitsLoss, nn.BCELoss)) and y.numel():
        p = y.double().reshape(y.shape[0], -1).mean(0).clamp(1e-12, 1 - 1e-12)
        return float(-(p * p.log() + (1 - p) * (1 - p).log()).mean())
    if isinstance(loss, nn.MSELoss) and y.numel() > 1:
        return float(y.double().reshape(y.shape[0], -1).var(0, unbiased=False).mean())
    return expected_initial_loss(recipe)


def run_initial_loss(recipe: Recipe) -> ProbeResult:
    t0 = time.monotonic()
    model = recipe.fresh_model()
    rows = torch.randperm(recipe.n_train, generator=torch.Generator().manual_seed(1234))[:FIT_ROWS]
    X, y = recipe.X[rows], recipe.y[rows]
    initial = eval_loss(recipe, model, X, y)
    expected = expected_initial_loss(recipe)
    with torch.no_grad():
        model.eval()
        out = model(X)
    out_abs_max = float(out.detach().abs().max()) if isinstance(out, torch.Tensor) and out.numel() else math.nan
    data = {
        "initial_loss": initial,
        "expected_loss": expected,
        "chance_loss": chance_loss(recipe),
        "ratio": (initial / expected) if expected and math.isfinite(initial) else None,
        "output_abs_max": out_abs_max,
        "non_finite_inputs": int((~torch.isfinite(recipe.X)).sum()),
        "non_finite_targets": int((~torch.isfinite(recipe.y)).sum()) if recipe.y.dtype.is_floating_point else 0,
        "n_classes": recipe.n_classes,
        "loss": type(recipe.loss_fn).__name__,
    }
    return ProbeResult("initial_loss", data=data, seconds=time.monotonic() - t0)
