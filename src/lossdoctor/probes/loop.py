"""A small, seeded training loop the probes share: the recipe's own step, on a copy.

Every run starts from a deep copy of the user's model, draws its mini-batches from its own seeded
``torch.Generator`` and seeds the global torch RNG (dropout) itself; ``checkup`` restores every RNG
afterwards. One step is the user's step: ``gradient_accumulation_steps`` micro-batches, the
forward under the recipe's ``autocast`` dtype, the loss scaled by a fresh ``GradScaler`` when the
recipe uses one, the user's clipping, the optimizer (with a closure when its ``step`` needs one,
as LBFGS does) and the schedule's rate. A run always runs its planned number of steps (or stops at
a non-finite loss): its length never depends on the clock.
"""
from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .recipe import Recipe
from .usercode import user_code

# Rows of the training set the "fit loss" is measured on (eval mode, no grad): enough for a stable
# mean on digits-sized problems, small enough to cost a few forward passes.
FIT_ROWS = 512
# The fit loss is measured at this many evenly spaced points of a run (plus the end), for plots.
FIT_POINTS = 8
# Rows per forward pass when measuring the fit loss.
EVAL_BATCH_ROWS = 256


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
    lrs: list[float] = field(default_factory=list)  # the first group's rate at each step (schedules)
    scales: list[float] = field(default_factory=list)  # the GradScaler's scale after each step
    skipped_steps: int = 0  # steps the GradScaler skipped (non-finite gradients)
    seconds: float = 0.0
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
        out = {"label": self.label, "final_loss": self.final_loss, "start_loss": self.start_loss,
               "steps": self.steps_done, "first_non_finite_step": self.first_non_finite_step,
               "clip_share": self.clip_share, "val_loss": self.val_loss,
               "fit_steps": self.fit_steps, "fit_losses": self.fit_losses}
        if self.scales:
            out.update({"skipped_steps": self.skipped_steps, "skipped_share": self.skipped_steps / max(self.steps_done, 1),
                        "scale_start": self.scales[0], "scale_end": self.scales[-1], "scale_min": min(self.scales)})
        if self.lrs and len(set(self.lrs)) > 1:
            out.update({"lr_min": min(self.lrs), "lr_max": max(self.lrs)})
        return out


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` requires a closure (LBFGS and line-search optimizers)."""
    try:
        param = inspect.signature(optimizer.step).parameters.get("closure")
    except (TypeError, ValueError):
        return False
    return param is not None and param.default is inspect.Parameter.empty


@torch.no_grad()
def eval_loss(recipe: Recipe, model: nn.Module, rows: torch.Tensor, val: bool = False, label: str = "") -> float:
    """The mean loss over ``rows`` in eval mode (weighted by rows per forward pass)."""
    was_training = model.training
    model.eval()
    try:
        total, n = 0.0, 0
        for i in range(0, rows.numel(), EVAL_BATCH_ROWS):
            chunk = rows[i:i + EVAL_BATCH_ROWS]
            where = f"measuring the {'validation' if val else 'training'} loss{f' of the run {label!r}' if label else ''}"
            loss, _ = recipe.loss(model, recipe.batch(chunk, val=val), f"{where}, eval mode")
            total += float(loss.float()) * chunk.numel()
            n += chunk.numel()
        return total / max(n, 1)
    finally:
        model.train(was_training)


class Stepper:
    """One optimizer step of the recipe on a copy: micro-batches, precision, clipping, the step."""

    def __init__(self, recipe: Recipe, model: nn.Module, optimizer: torch.optim.Optimizer, clip: float | None,
                 label: str, scaler: Any = None):
        self.recipe, self.model, self.optimizer, self.clip, self.label = recipe, model, optimizer, clip, label
        self.scaler = scaler
        self.closure = needs_closure(optimizer)
        self.trained = [p for g in optimizer.param_groups for p in g["params"]]

    def step(self, batches: list[Any], step: int, before_update: Callable[[], None] | None = None
             ) -> tuple[torch.Tensor, float, bool]:
        """Run one step on ``batches`` (one per micro-batch). Returns (loss, grad norm before clipping,
        whether the GradScaler skipped the update for non-finite gradients)."""
        recipe, n = self.recipe, len(batches)
        record: dict[str, Any] = {}
        what = f"step {step} of the run '{self.label}', train mode"

        def compute():
            self.optimizer.zero_grad(set_to_none=True)
            total = None
            for batch in batches:
                loss, _ = recipe.loss(self.model, batch, what)
                with user_code(f"backward ({what})"):
                    (self.scaler.scale(loss / n) if self.scaler is not None else loss / n).backward()
                total = loss.detach().float() / n if total is None else total + loss.detach().float() / n
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            norm = self._clip_or_measure()
            if "loss" not in record:  # a closure may be called several times per step (LBFGS)
                record.update(loss=total, norm=norm)
            return total

        if self.closure:
            if before_update is not None:
                before_update()
            with user_code(f"optimizer.step(closure) ({what})"):
                self.optimizer.step(compute)
            return record["loss"], record["norm"], False
        compute()
        loss, norm = record["loss"], record["norm"]
        # a non-finite loss is stepped on too: the monitor locates the NaN from the gradients it sees
        # before the update, and the run stops right after it when it should
        if before_update is not None:
            before_update()
        with user_code(f"optimizer.step() ({what})"):
            if self.scaler is not None:
                scale = self.scaler.get_scale()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                return loss, norm, self.scaler.get_scale() < scale
            self.optimizer.step()
        return loss, norm, False

    def _clip_or_measure(self) -> float:
        params = [p for p in self.trained if p.grad is not None]
        if not params:
            return 0.0
        if self.clip is not None:
            return float(torch.nn.utils.clip_grad_norm_(params, self.clip))
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.float()) for p in params])))


def default_eval_rows(n: int, pool: torch.Tensor | None = None) -> torch.Tensor:
    pool = pool if pool is not None else torch.arange(n)
    if pool.numel() <= FIT_ROWS:
        return pool
    return pool[torch.randperm(pool.numel(), generator=torch.Generator().manual_seed(1234))[:FIT_ROWS]]


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
    on_step: Callable[[torch.Tensor], None] | None = None,
    setup: Callable[[nn.Module, torch.optim.Optimizer], Any] | None = None,
    stop_on_non_finite: bool = True,
) -> RunResult:
    """Train a copy for ``steps`` optimizer steps and record the losses.

    ``rows`` restricts training to those row indices (a subset), ``eval_rows`` sets the rows the
    fit loss is measured on (default: FIT_ROWS seeded rows of ``rows`` or of the whole set).
    ``grad_clip="recipe"`` uses the user's clipping; None turns it off. ``setup`` is called with
    the model and optimizer before the first step and may return a context manager (the monitor).
    ``stop_on_non_finite=False`` keeps stepping after a NaN/Inf loss (for the monitor, which locates it).
    The schedule, when the recipe has one, runs at the optimizer's rate relative to the user's.
    """
    t0 = time.monotonic()
    model = model if model is not None else recipe.fresh_model()
    model.train()
    with user_code(f"building the optimizer for the run '{label}'"):
        optimizer = optimizer if optimizer is not None else recipe.make_optimizer(model)
    clip = recipe.grad_clip if grad_clip == "recipe" else grad_clip
    pool = rows if rows is not None else torch.arange(recipe.n_train)
    eval_rows = default_eval_rows(recipe.n_train, pool) if eval_rows is None else eval_rows
    bs = min(batch_size or recipe.batch_size, int(pool.numel()))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    result = RunResult(label=label, steps_planned=steps)
    checkpoints = {round(i * steps / FIT_POINTS) for i in range(1, FIT_POINTS)}
    result.fit_steps.append(0)
    result.fit_losses.append(eval_loss(recipe, model, eval_rows, label=label))
    scaler = recipe.new_scaler()
    stepper = Stepper(recipe, model, optimizer, clip, label, scaler)
    schedule = None
    if recipe.schedule is not None:
        scale = optimizer.param_groups[0]["lr"] / recipe.base_lr if recipe.base_lr > 0 else 1.0
        schedule = recipe.schedule.start(optimizer, scale)
    clipped = 0
    ctx = setup(model, optimizer) if setup is not None else None
    try:
        if ctx is not None:
            ctx.__enter__()
        order = torch.randperm(pool.numel(), generator=gen)
        pos = 0
        for step in range(1, steps + 1):
            micro = []
            for _ in range(recipe.accumulation):
                if pos + bs > order.numel():
                    order, pos = torch.randperm(pool.numel(), generator=gen), 0
                micro.append(recipe.batch(pool[order[pos:pos + bs]]))
                pos += bs
            loss, norm, skipped = stepper.step(micro, step, schedule.apply if schedule is not None else None)
            value = float(loss)
            result.losses.append(value)
            result.steps_done = step
            result.lrs.append(float(optimizer.param_groups[0]["lr"]))
            if scaler is not None:
                result.scales.append(float(scaler.get_scale()))
                result.skipped_steps += bool(skipped)
            elif not math.isfinite(value):
                if result.first_non_finite_step is None:
                    result.first_non_finite_step = step
                if stop_on_non_finite:
                    break
            if clip is not None:
                clipped += norm > clip
            result.grad_norms.append(norm if result.first_non_finite_step is None else math.nan)
            if schedule is not None:
                schedule.advance(value)
            if on_step is not None:
                on_step(loss)
            if step in checkpoints and result.first_non_finite_step is None:
                result.fit_steps.append(step)
                result.fit_losses.append(eval_loss(recipe, model, eval_rows, label=label))
    finally:
        if ctx is not None:
            ctx.__exit__(None, None, None)
    if result.first_non_finite_step is None and result.steps_done and result.fit_steps[-1] != result.steps_done:
        result.fit_steps.append(result.steps_done)
        result.fit_losses.append(eval_loss(recipe, model, eval_rows, label=label))
    if result.first_non_finite_step is None and result.fit_losses and not math.isfinite(result.fit_losses[-1]):
        result.first_non_finite_step = result.steps_done
    if clip is not None and result.grad_norms:
        result.clip_share = clipped / len(result.grad_norms)
    if recipe.val is not None and result.first_non_finite_step is None:
        result.val_loss = eval_loss(recipe, model, torch.arange(min(recipe.val.n, FIT_ROWS * 2)), val=True,
                                     label=label)
    result.seconds = time.monotonic() - t0
    result.model = model
    return result
