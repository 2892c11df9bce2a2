"""Initial loss against its expected value: ln C for C-class cross-entropy, the target variance for MSE.

A freshly initialised network predicts roughly uniform classes (or roughly zero), so its loss
starts near these values; far above them means an output activation, scale or initialization
that makes the first predictions confidently wrong.
"""
from __future__ import annotations

import math
import time

import torch

from .batches import logits_of, split_batch, tensors_of
from .loop import EVAL_BATCH_ROWS, default_eval_rows, eval_loss
from .recipe import Recipe
from .result import ProbeResult


def expected_initial_loss(recipe: Recipe) -> float | None:
    """The loss of an uninformed prediction, or None when the loss has no standard reference."""
    kind, y = recipe.loss_kind, recipe.targets
    if kind == "cross_entropy" and recipe.n_classes:
        return math.log(recipe.n_classes)
    if kind == "bce":
        return math.log(2.0)
    if y is None or not y.numel():
        return None
    y = y.double()
    y = y[torch.isfinite(y)] if y.dim() == 1 else y
    if kind == "mse":
        return float(y.var()) if y.numel() > 1 else None
    if kind == "l1":
        return float((y - y.median()).abs().mean())
    return None


def chance_loss(recipe: Recipe) -> float | None:
    """The loss of the best constant prediction ("chance level"): the entropy of the class shares for
    cross-entropy (ln C when the classes are balanced), the target variance for MSE; a run that ends
    here has learned nothing from the inputs. Falls back to the expected initial loss."""
    kind, y = recipe.loss_kind, recipe.targets
    if y is not None and y.numel():
        if kind == "cross_entropy" and recipe.n_classes and not y.dtype.is_floating_point and y.dim() == 1:
            share = torch.bincount(y[y >= 0].long()).double()
            if share.sum() > 0:
                share = share[share > 0] / share.sum()
                return float(-(share * share.log()).sum())
        if kind == "bce":
            p = y.double().reshape(y.shape[0], -1).mean(0).clamp(1e-12, 1 - 1e-12)
            if bool(torch.isfinite(p).all()):
                return float(-(p * p.log() + (1 - p) * (1 - p).log()).mean())
        if kind == "mse" and y.shape[0] > 1:
            values = y.double().reshape(y.shape[0], -1)
            values = values[torch.isfinite(values).all(1)]
            if values.shape[0] > 1:
                return float(values.var(0, unbiased=False).mean())
    return expected_initial_loss(recipe)


def _non_finite(recipe: Recipe) -> tuple[int, int]:
    """Non-finite values among the training inputs and among the targets."""
    examples = recipe.train
    batches = [examples.columns] if examples.columns is not None else examples.chunks(EVAL_BATCH_ROWS)
    inputs = targets = 0
    for batch in batches:
        x, y = split_batch(batch)
        inputs += sum(int((~torch.isfinite(t)).sum()) for t in tensors_of(x) if t.dtype.is_floating_point)
        targets += sum(int((~torch.isfinite(t)).sum()) for t in tensors_of(y) if t.dtype.is_floating_point)
    return inputs, targets


def run_initial_loss(recipe: Recipe) -> ProbeResult:
    t0 = time.monotonic()
    model = recipe.fresh_model()
    rows = default_eval_rows(recipe.n_train)
    initial = eval_loss(recipe, model, rows, label="initial loss")
    expected = expected_initial_loss(recipe)
    with torch.no_grad():
        model.eval()
        _, out = recipe.loss(model, recipe.batch(rows[:EVAL_BATCH_ROWS]), "the untrained model, eval mode")
    scores = logits_of(out) if out is not None else None
    out_abs_max = float(scores.detach().float().abs().max()) if isinstance(scores, torch.Tensor) and scores.numel() \
        else math.nan
    bad_inputs, bad_targets = _non_finite(recipe)
    data = {
        "initial_loss": initial,
        "expected_loss": expected,
        "chance_loss": chance_loss(recipe),
        "ratio": (initial / expected) if expected and math.isfinite(initial) else None,
        "output_abs_max": out_abs_max,
        "non_finite_inputs": bad_inputs,
        "non_finite_targets": bad_targets,
        "n_classes": recipe.n_classes,
        "loss": type(recipe.loss_fn).__name__ if recipe.loss_fn is not None else
        ("forward_fn" if recipe.forward_fn is not None else f"the model's own ({recipe.loss_kind or 'unknown kind'})"),
    }
    return ProbeResult("initial_loss", data=data, seconds=time.monotonic() - t0)
