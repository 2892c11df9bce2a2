"""Overfit one small batch: a sound network, loss and optimizer drive its loss near zero.

If they cannot, the cause is in the network, the loss or the optimizer, not in the data.
"""
from __future__ import annotations

import time

import torch

from .loop import train_run
from .recipe import Recipe
from .result import ProbeResult

# Rows in the batch: small enough that any network with a few hundred parameters can memorise it.
OVERFIT_ROWS = 32


def run_overfit_batch(recipe: Recipe, steps: int, seed: int = 0) -> ProbeResult:
    t0 = time.monotonic()
    rows = torch.randperm(recipe.n_train, generator=torch.Generator().manual_seed(seed + 7))[:OVERFIT_ROWS]
    run = train_run(recipe, label="one batch", steps=steps, rows=rows, batch_size=rows.numel(),
                    seed=seed)
    data = {"rows": int(rows.numel()), "run": run.summary(), "losses": run.losses}
    return ProbeResult("overfit_batch", data=data, seconds=time.monotonic() - t0)
