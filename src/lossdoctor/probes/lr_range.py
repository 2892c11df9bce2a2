"""Learning-rate range test, clipping off: the loss against an exponentially growing learning rate.

The seed's recipe: turn clipping off, find the highest learning rate that does not blow up, and
take a little less. The suggested rate is the one at the smoothed loss minimum divided by
SUGGEST_DIVISOR; the blow-up rate is where the smoothed loss first exceeds BLOWUP_FACTOR times
its minimum.
"""
from __future__ import annotations

import math
import time

import torch

from .loop import Stepper
from .recipe import Recipe
from .result import ProbeResult

LR_START = 1e-6  # below any useful rate for SGD or Adam on standardized data
LR_END = 10.0  # above any rate that does not blow up
SMOOTHING = 0.8  # exponential smoothing of the mini-batch losses (bias-corrected), as in fastai's finder
BLOWUP_FACTOR = 4.0  # the smoothed loss at 4x its minimum: the run has blown up, stop there
# "a little less" than the minimum: one decade below the rate of the smoothed minimum, the usual
# choice of LR finders (the minimum sits just before divergence)
SUGGEST_DIVISOR = 10.0


def run_lr_range(recipe: Recipe, steps: int, seed: int = 0) -> ProbeResult:
    """The range test on a copy: the recipe's step (micro-batches, precision, optimizer) with
    clipping off and no schedule (the exponential sweep is its own warm-up)."""
    t0 = time.monotonic()
    model = recipe.fresh_model()
    optimizer = recipe.make_optimizer(model, lr=LR_START)
    stepper = Stepper(recipe, model, optimizer, None, "lr range test", recipe.new_scaler())
    gen = torch.Generator().manual_seed(seed + 3)
    torch.manual_seed(seed)
    factor = (LR_END / LR_START) ** (1.0 / max(steps - 1, 1))
    base_lr = recipe.lr if recipe.lr > 0 else 1.0
    ratios = [float(g["lr"]) / float(optimizer.param_groups[0]["lr"]) for g in optimizer.param_groups]
    lrs, raw, smooth = [], [], []
    avg, best = 0.0, math.inf
    bs = recipe.batch_size
    n = recipe.n_train
    lr = LR_START
    stopped = "end of range"
    for i in range(steps):
        for g, r in zip(optimizer.param_groups, ratios):
            g["lr"] = lr * r
        batches = [recipe.batch(torch.randint(0, n, (bs,), generator=gen)) for _ in range(recipe.accumulation)]
        loss, _, _ = stepper.step(batches, i + 1)
        value = float(loss)
        if not math.isfinite(value):
            stopped = "non-finite loss"
            break
        avg = SMOOTHING * avg + (1 - SMOOTHING) * value
        s = avg / (1 - SMOOTHING ** (i + 1))
        lrs.append(lr)
        raw.append(value)
        smooth.append(s)
        best = min(best, s)
        if s > BLOWUP_FACTOR * best:
            stopped = "blew up"
            break
        lr *= factor
    data: dict = {"lrs": lrs, "losses": smooth, "raw_losses": raw, "current_lr": recipe.lr, "stopped": stopped,
                  "suggested_lr": None, "min_loss_lr": None, "blowup_lr": None}
    if len(smooth) >= 5:
        i_min = min(range(len(smooth)), key=smooth.__getitem__)
        data["min_loss_lr"] = lrs[i_min]
        data["suggested_lr"] = lrs[i_min] / SUGGEST_DIVISOR
        data["min_loss"] = smooth[i_min]
        data["start_loss"] = smooth[0]
        if stopped in ("blew up", "non-finite loss"):
            data["blowup_lr"] = lr
    data["user_lr_ratio"] = base_lr / data["suggested_lr"] if data["suggested_lr"] else None
    return ProbeResult("lr_range", data=data, seconds=time.monotonic() - t0)
