"""The gradient check with batch norm taken out (the seed: remove batch normalization first).

Batch norm rescales activations and so hides a gradient that vanishes or explodes across depth;
the check compares per-layer gradient norms at initialization with and without it.
"""
from __future__ import annotations

import time

import torch

from .gradients import depth_ratio, layer_grad_norms
from .recipe import Recipe, batchnorm_layers, without_batchnorm
from .result import ProbeResult


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
