"""A small, seeded training loop the probes share, and the time budget they run under.

Every run starts from a deep copy of the user's model, draws its mini-batches from its own seeded
``torch.Generator`` and seeds the global torch RNG (dropout) itself; ``checkup`` restores every RNG
afterwards. A run stops early at its deadline and says so.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from .recipe import Recipe

# Rows of the training set the "fit loss" is measured on (eval mode, no grad): enough for a stable
# mean on digits-sized problems, small enough to cost a few forward passes.
FIT_ROWS = 512
# The fit loss is measured at this many evenly spaced points of a run (plus the end), for plots.
FIT_POINTS = 8


@dataclass
class RunResult:
    """The plain record of one short training run."""

    label: str
    losses: list[float] = field(default_factory=list)  # per-step training (mini-batch) loss
    fit_steps: list[int] = field(default_factory=list)
    fit_losses: list[float] = field(default_factory=list)  # loss on FIT_ROWS training rows, eval mode
    val_loss: float | None = None
    steps_done: int = 0
    steps_planned: int = 0
    first_non_finite_step: int | None = None
    clip_share: float | None = None  # share of steps on which the clip threshold cut the gradient
    grad_norms: list[float] = field(default_factory=list)  # total norm before clipping, per step
    seconds: float = 0.0
    stopped_early: bool = False
    model: Any = field(default=None, repr=False)  # the trained copy, for probes that inspect it

    @property
    def start_loss(self) -> float:
        return self.fit_losses[0] if self.fit_losses else math.nan

    @property
    def final_loss(self) -> float:
        """The fit loss at the end; +inf when the run turned non-finite."""
        if self.first_non_finite_step is not None:
            return math.inf
        if not self.fit_losses:
            return math.nan
        v = self.fit_losses[-1]
        return v if math.isfinite(v) else math.inf

    @property
    def best_loss(self) -> float:
        finite = [v for v in self.fit_losses if math.isfinite(v)]
        return min(finite) if finite else math.inf

    def to_plot(self) -> dict[str, Any]:
        return {"label": self.label, "losses": [float(v) for v in self.losses]}

    def summary(self) -> dict[str, Any]:
        return {"label": self.label, "final_loss": self.final_loss, "start_loss": self.start_loss,
                "steps": self.steps_done, "first_non_finite_step": self.first_non_finite_step,
                "clip_share": self.clip_share, "val_loss": self.val_loss,
                "fit_steps": self.fit_steps, "fit_losses": self.fit_losses}


class Budget:
    """Wall-clock budget shared by the probes: each asks whether its estimated cost still fits."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def left(self) -> float:
        return self.seconds - self.elapsed

    def deadline(self) -> float:
        return self.start + self.seconds

    def fits(self, cost_s: float) -> bool:
        return cost_s <= self.left


def compute_loss(recipe: Recipe, model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return recipe.loss_fn(model(X), y)


@torch.no_grad()
def eval_loss(recipe: Recipe, model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    was_training = model.training
    model.eval()
    try:
        total, n = 0.0, 0
        for i in range(0, X.shape[0], 256):
            xb, yb = X[i:i + 256], y[i:i + 256]
            total += float(compute_loss(recipe, model, xb, yb)) * xb.shape[0]
            n += xb.shape[0]
        return total / max(n, 1)
    finally:
        model.train(was_training)


def train_run(
    recipe: Recipe,
    *,
    label: str,
    steps: int,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    grad_clip: float | None | str = "recipe",
    rows: torch.Tensor | None = None,
    eval_rows: torch.Tensor | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    deadline: float | None = None,
    on_step: Callable[[torch.Tensor], None] | None = None,
    setup: Callable[[nn.Module, torch.optim.Optimizer], Any] | None = None,
    stop_on_non_finite: bool = True,
) -> RunResult:
    """Train a copy for ``steps`` mini-batch steps and record the losses.

    ``rows`` restricts training to those row indices (a subset), ``eval_rows`` sets the rows the
    fit loss is measured on (default: FIT_ROWS seeded rows of ``rows`` or of the whole set).
    ``grad_clip="recipe"`` uses the user's clipping; None turns it off. ``setup`` is called with
    the model and optimizer before the first step and may return a context manager (the monitor).
    ``stop_on_non_finite=False`` keeps stepping after a NaN/Inf loss (for the monitor, which locates it).
    """
    t0 = time.monotonic()
    model = model if model is not None else recipe.fresh_model()
    model.train()
    optimizer = optimizer if optimizer is not None else recipe.make_optimizer(model)
    clip = recipe.grad_clip if grad_clip == "recipe" else grad_clip
    pool = rows if rows is not None else torch.arange(recipe.n_train)
    if eval_rows is None:
        eval_rows = pool if pool.numel() <= FIT_ROWS else \
            pool[torch.randperm(pool.numel(), generator=torch.Generator().manual_seed(1234))[:FIT_ROWS]]
    Xf, yf = recipe.X[eval_rows], recipe.y[eval_rows]
    bs = min(batch_size or recipe.batch_size, int(pool.numel()))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    result = RunResult(label=label, steps_planned=steps)
    checkpoints = {round(i * steps / FIT_POINTS) for i in range(1, FIT_POINTS)}
    result.fit_steps.append(0)
    result.fit_losses.append(eval_loss(recipe, model, Xf, yf))
    clipped = 0
    ctx = setup(model, optimizer) if setup is not None else None
    try:
        if ctx is not None:
            ctx.__enter__()
        order = torch.randperm(pool.numel(), generator=gen)
        pos = 0
        for step in range(1, steps + 1):
            if deadline is not None and time.monotonic() > deadline:
                result.stopped_early = True
                break
            if pos + bs > order.numel():
                order, pos = torch.randperm(pool.numel(), generator=gen), 0
            idx = pool[order[pos:pos + bs]]
            pos += bs
            optimizer.zero_grad(set_to_none=True)
            loss = compute_loss(recipe, model, recipe.X[idx], recipe.y[idx])
            value = float(loss.detach())
            result.losses.append(value)
            result.steps_done = step
            if not math.isfinite(value):
                if result.first_non_finite_step is None:
                    result.first_non_finite_step = step
                if stop_on_non_finite:
                    break
            loss.backward()
            params = [p for p in model.parameters() if p.grad is not None]
            if clip is not None:
                norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
                clipped += norm > clip
            else:
                norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))) \
                    if params else 0.0
            if result.first_non_finite_step is not None:
                norm = math.nan
            result.grad_norms.append(norm)
            optimizer.step()
            if on_step is not None:
                on_step(loss)
            if step in checkpoints and result.first_non_finite_step is None:
                result.fit_steps.append(step)
                result.fit_losses.append(eval_loss(recipe, model, Xf, yf))
    finally:
        if ctx is not None:
            ctx.__exit__(None, None, None)
    if result.first_non_finite_step is None and result.steps_done and result.fit_steps[-1] != result.steps_done:
        result.fit_steps.append(result.steps_done)
        result.fit_losses.append(eval_loss(recipe, model, Xf, yf))
        if not math.isfinite(result.fit_losses[-1]):
            result.first_non_finite_step = result.steps_done
    if clip is not None and result.grad_norms:
        result.clip_share = clipped / len(result.grad_norms)
    if recipe.X_val is not None and result.first_non_finite_step is None:
        result.val_loss = eval_loss(recipe, model, recipe.X_val[:FIT_ROWS * 2], recipe.y_val[:FIT_ROWS * 2])
    result.seconds = time.monotonic() - t0
    result.model = model
    return result
