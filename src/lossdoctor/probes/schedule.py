"""The recipe's learning-rate schedule, replayed on every copy at any peak rate.

A recipe may give a ``scheduler``: a factory ``lambda optimizer: get_linear_schedule_with_warmup(
optimizer, ...)`` or a scheduler instance bound to the user's optimizer. The probes never call it
on their own optimizers: the schedule runs on a *shadow* optimizer of the user's class and
hyper-parameters over one dummy parameter per group, and each probe's optimizer takes the shadow's
rates times ``scale``. A run "at peak rate r" uses ``scale = r / peak`` (``peak``: the highest rate
the user's schedule reaches over the run), so the ablation at the range test's suggested rate keeps
the user's warm-up and decay, whatever kind of scheduler it is (closed-form, chained, cyclic).
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch

from ..errors import InputError
from .usercode import user_code

SCHEDULE_INTERVALS = ("step", "epoch")
# Hyper-parameters a scheduler may move besides the rate (OneCycleLR and CyclicLR cycle momentum).
CYCLED_KEYS = ("momentum", "betas")


def _is_scheduler(value: Any) -> bool:
    return isinstance(value, (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)) or (
        hasattr(value, "step") and hasattr(value, "optimizer") and not callable(value))


class Schedule:
    """Builds one shadow schedule per run: ``start(optimizer, scale)`` -> a ``Running`` schedule."""

    def __init__(self, spec: Any, make_shadow: Callable[[], torch.optim.Optimizer], interval: str,
                 steps_per_epoch: int, user_optimizer: torch.optim.Optimizer):
        if interval not in SCHEDULE_INTERVALS:
            raise InputError(f"scheduler_interval: expected 'step' or 'epoch', got {interval!r}")
        if not callable(spec) and not _is_scheduler(spec):
            raise InputError("scheduler: expected a factory such as lambda optimizer: "
                             "torch.optim.lr_scheduler.LambdaLR(optimizer, ...), or a scheduler bound to your "
                             f"optimizer, got {type(spec).__name__}")
        if _is_scheduler(spec) and getattr(spec, "optimizer", None) is not user_optimizer:
            raise InputError("scheduler: it is bound to another optimizer than the recipe's; build it on the "
                             "recipe's optimizer, or pass a factory lambda optimizer: ...")
        self.spec = spec
        self.make_shadow = make_shadow
        self.interval = interval
        self.every = max(1, steps_per_epoch) if interval == "epoch" else 1
        self.user_optimizer = user_optimizer

    def _shadow_scheduler(self):
        if _is_scheduler(self.spec):
            # a copy of the user's scheduler whose optimizer's parameters are replaced by dummies (the
            # memo maps each parameter to a scalar), so that nothing of the user's model is copied
            memo = {id(p): torch.zeros(()) for g in self.user_optimizer.param_groups for p in g["params"]}
            memo.update({id(t): torch.zeros(()) for s in self.user_optimizer.state.values()
                         for t in s.values() if isinstance(t, torch.Tensor)})
            with user_code("copying the scheduler"):
                return copy.deepcopy(self.spec, memo)
        shadow = self.make_shadow()
        with user_code("the scheduler factory", "expected scheduler(optimizer) to return a learning-rate scheduler"):
            scheduler = self.spec(shadow)
        if not hasattr(scheduler, "step") or not hasattr(scheduler, "optimizer"):
            raise InputError(f"scheduler: the factory returned {type(scheduler).__name__}, not a learning-rate "
                             "scheduler (expected scheduler(optimizer) -> torch.optim.lr_scheduler.LRScheduler)")
        return scheduler

    def start(self, optimizer: torch.optim.Optimizer, scale: float = 1.0) -> Running:
        return Running(self._shadow_scheduler(), optimizer, scale, self.every)

    def rates(self, steps: int) -> list[float]:
        """The first group's rate at each of ``steps`` optimizer steps, at scale 1."""
        running = Running(self._shadow_scheduler(), None, 1.0, self.every)
        out = []
        for _ in range(steps):
            out.append(running.current()[0])
            running.advance(None)
        return out


class Running:
    """One run's schedule: ``apply()`` before each optimizer step, ``advance(loss)`` after it."""

    def __init__(self, scheduler: Any, optimizer: torch.optim.Optimizer | None, scale: float, every: int):
        self.scheduler = scheduler
        self.optimizer = optimizer
        self.scale = scale
        self.every = every
        self.steps = 0

    def current(self) -> list[float]:
        return [float(g["lr"]) for g in self.scheduler.optimizer.param_groups]

    def apply(self) -> None:
        if self.optimizer is None:
            return
        for target, source in zip(self.optimizer.param_groups, self.scheduler.optimizer.param_groups):
            target["lr"] = float(source["lr"]) * self.scale
            for key in CYCLED_KEYS:
                if key in target and key in source:
                    target[key] = source[key]

    def advance(self, loss: float | None) -> None:
        self.steps += 1
        if self.steps % self.every:
            return
        with warnings.catch_warnings(), user_code("the scheduler's step()"):
            # the shadow optimizer never steps: torch's "scheduler.step() before optimizer.step()" is moot
            warnings.simplefilter("ignore")
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(loss if loss is not None else 0.0)
            else:
                self.scheduler.step()
