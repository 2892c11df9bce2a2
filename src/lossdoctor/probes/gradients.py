"""Per-layer gradient norms of the untrained network: how the gradient changes across depth at step 0.

A ratio first-layer / last-layer far below 1 at initialization is a structural vanishing gradient
(depth, activations, init); when it is healthy at initialization, a vanishing gradient the monitor
sees later grew during training (saturation after oversized updates).
"""
from __future__ import annotations

import math
import time

import torch
from torch import nn

from .recipe import Recipe
from .result import ProbeResult
from .usercode import user_code

GRAD_CHECK_BATCHES = 4  # a few batches average out one batch's noise


def layer_grad_norms(recipe: Recipe, model: nn.Module, seed: int = 0) -> dict[str, float]:
    """Mean gradient norm of every weight matrix/kernel (dim > 1), in forward order."""
    gen = torch.Generator().manual_seed(seed + 5)
    sums: dict[str, float] = {}
    model.train()
    for i in range(GRAD_CHECK_BATCHES):
        idx = torch.randint(0, recipe.n_train, (recipe.batch_size,), generator=gen)
        model.zero_grad(set_to_none=True)
        what = f"batch {i + 1} of the gradient check at initialization, train mode"
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


def run_gradients_at_init(recipe: Recipe, seed: int = 0) -> ProbeResult:
    t0 = time.monotonic()
    torch.manual_seed(seed)
    norms = layer_grad_norms(recipe, recipe.fresh_model(), seed)
    names = list(norms)
    data = {"layer_norms": norms, "depth_ratio": depth_ratio(norms),
            "first_layer": names[0] if names else None, "last_layer": names[-1] if names else None}
    return ProbeResult("gradients_at_init", data=data, seconds=time.monotonic() - t0)
