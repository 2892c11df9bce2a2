"""The gradient check with batch norm taken out (the seed: remove batch normalization first).

Batch norm rescales activations and so hides a gradient that vanishes or explodes across depth;
the check compares per-layer gradient norms at initialization with and without it.
"""
from __future__ import annotations

import math
import time

import torch
from torch import nn

from .usercode import user_code
from .recipe import Recipe, batchnorm_layers, without_batchnorm
from .result import ProbeResult

GRAD_CHECK_BATCHES = 4  # a few batches average out one batch's noise


def layer_grad_norms(recipe: Recipe, model: nn.Module, seed: int = 0) -> dict[str, float]:
    """Mean gradient norm of every weight matrix/kernel (dim > 1), in forward order."""
    gen = torch.Generator().manual_seed(seed + 5)
    sums: dict[str, float] = {}
    model.train()
    for i in range(GRAD_CHECK_BATCHES):
        idx = torch.randint(0, recipe.n_train, (recipe.batch_size,), generator=gen)
        model.zero_grad(set_to_none=True)
        what = f"batch {i + 1} of the gradient check with and without batch norm, train mode"
        loss, _ = recipe.loss(model, recipe.batch(idx), what)
        with user_code(f"backward ({what})"):
            loss.float().backward()
        for name, p in model.named_parameters():
            if p.grad is not None and p.dim() > 1:
                sums[name] = sums.get(name, 0.0) + float(p.grad.norm()) / GRAD_CHECK_BATCHES
    return sums


def depth_ratio(norms: dict[str, float]) -> float | None:
    """First layer's gradient norm over the last layer's (1 = healthy; << 1 vanishing; >> 1 exploding)."""
    values = list(norms.values())
    if len(values) < 2:
        return None
    first, last = values[0], values[-1]
    if not math.isfinite(first) or not math.isfinite(last):
        return math.inf
    if last == 0:
        return math.inf if first > 0 else 1.0
    return first / last


def run_batchnorm_gradient_check(recipe: Recipe, seed: int = 0) -> ProbeResult:
    t0 = time.monotonic()
    layers = batchnorm_layers(recipe.model)
    if not layers:
        return ProbeResult.skipped("batchnorm_out", "the model has no batch norm")
    torch.manual_seed(seed)
    with_bn = layer_grad_norms(recipe, recipe.fresh_model(), seed)
    torch.manual_seed(seed)
    without_bn = layer_grad_norms(recipe, without_batchnorm(recipe.fresh_model()), seed)
    data = {
        "batchnorm_layers": layers,
        "with_bn": with_bn,
        "without_bn": without_bn,
        "ratio_with_bn": depth_ratio(with_bn),
        "ratio_without_bn": depth_ratio(without_bn),
    }
    return ProbeResult("batchnorm_out", data=data, seconds=time.monotonic() - t0)
