"""Plain evidence types shared by the readers, the monitor and the checks.

A ``Curves`` is what every log reader produces and what the curve analysis reads: named,
step-indexed series. Standard names are the constants below; readers map their format's column
names onto them and keep any other metric under its own name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

TRAIN_LOSS = "train_loss"
VAL_LOSS = "val_loss"
LEARNING_RATE = "lr"
GRAD_NORM = "grad_norm"


@dataclass
class Series:
    """One metric over steps. ``steps`` ascending; ``values`` float64, may hold NaN/Inf."""

    name: str
    steps: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        self.steps = np.asarray(self.steps, dtype=np.float64)
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.steps.shape != self.values.shape or self.steps.ndim != 1:
            raise ValueError(f"series {self.name!r}: steps and values must be 1-D of equal length")

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def to_plot(self, max_points: int = 2000) -> dict[str, list]:
        """Steps and values, thinned to at most ``max_points`` for plotting (non-finite kept)."""
        n = len(self)
        idx = np.arange(n) if n <= max_points else np.unique(np.linspace(0, n - 1, max_points).astype(int))
        bad = np.flatnonzero(~np.isfinite(self.values))
        if bad.size:
            idx = np.union1d(idx, bad[:max_points])
        return {"steps": self.steps[idx].tolist(), "values": self.values[idx].tolist()}


@dataclass
class Curves:
    """The series of one training run, as read from a log or recorded live."""

    run: str  # a name for the run (directory or file stem)
    source: str  # where it came from (a path, "watch", ...)
    series: dict[str, Series] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # format, warmup_steps, max_steps, ...

    def get(self, name: str) -> Series | None:
        return self.series.get(name)

    @property
    def train(self) -> Series | None:
        return self.series.get(TRAIN_LOSS)

    @property
    def val(self) -> Series | None:
        return self.series.get(VAL_LOSS)

    def add(self, name: str, steps, values) -> Series:
        s = Series(name, steps, values)
        self.series[name] = s
        return s


@dataclass
class RunFacts:
    """What an entry point knows about the run itself, beyond its curves: the framework, the
    optimizer and its settings, the regularization, and the task. Every field may be unknown (None);
    the checks that need one say so by returning nothing without it."""

    framework: str = "pytorch"  # pytorch | lightning | huggingface | keras
    optimizer: str | None = None  # the optimizer's class name
    lr: float | None = None  # the learning rate the user set (the peak when a schedule ramps it)
    grad_clip: float | None = None  # the max total gradient norm clipped to; None: no clipping
    weight_decay: float | None = None
    dropout: dict[str, float] = field(default_factory=dict)  # dropout layer -> rate (0 excluded)
    task: str | None = None  # classification | regression
    num_classes: int | None = None  # the output width of a classifier (chance loss = ln K)
    loss: str | None = None  # the loss's kind (cross_entropy, mse, ...) when known
    inputs: str | None = None  # features | token_ids | images, when known
    extra: dict[str, Any] = field(default_factory=dict)  # anything else an adapter wants to show

    @classmethod
    def of_torch(cls, framework: str, model: Any = None, optimizer: Any = None, grad_clip: float | None = None,
                 **known: Any) -> "RunFacts":
        """The facts a PyTorch model and optimizer show (read by duck typing: no torch import here)."""
        groups = getattr(optimizer, "param_groups", None) or []
        lrs = [float(g["lr"]) for g in groups if isinstance(g.get("lr"), (int, float))]
        decays = [float(g.get("weight_decay") or 0.0) for g in groups]
        dropout = {}
        for name, module in getattr(model, "named_modules", lambda: [])():
            rate = getattr(module, "p", None)
            if "Dropout" in type(module).__name__ and isinstance(rate, float) and rate > 0:
                dropout[name or type(module).__name__] = rate
        return cls(framework=framework, optimizer=type(optimizer).__name__ if optimizer is not None else None,
                   lr=max(lrs) if lrs else None, grad_clip=grad_clip, weight_decay=max(decays) if decays else None,
                   dropout=dropout, **known)

    @property
    def regularized(self) -> bool:
        """Whether the run has any regularization a check could blame (dropout or weight decay)."""
        return bool(self.dropout) or bool(self.weight_decay)
