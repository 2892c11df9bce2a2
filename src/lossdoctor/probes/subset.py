"""Small subset against the full data, same steps and settings.

A model that fits a small sample but not the full set at equal effort is short of capacity for the
data (or the data is too much to start with): start small, reduce features, or grow the model.
"""
from __future__ import annotations

import time

import torch

from .loop import train_run
from .recipe import Recipe
from .result import ProbeResult

# Rows in the small subset: a few mini-batches, enough that fitting it is not trivial memorisation
# of one batch, few enough that a model short of capacity for the full set still fits it.
SUBSET_ROWS = 64


def run_subset(recipe: Recipe, steps: int, seed: int = 0) -> ProbeResult:
    t0 = time.monotonic()
    n = min(SUBSET_ROWS, max(2, recipe.n_train // 4))
    rows = torch.randperm(recipe.n_train, generator=torch.Generator().manual_seed(seed + 11))[:n]
    run = train_run(recipe, label=f"subset of {n} rows", steps=steps, rows=rows, seed=seed)
    data = {"rows": n, "run": run.summary(), "losses": run.losses}
    return ProbeResult("subset", data=data, seconds=time.monotonic() - t0)
