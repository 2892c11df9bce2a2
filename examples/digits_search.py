"""One trial of a hyper-parameter search on scikit-learn's digits, shared by the Optuna and Ray Tune
examples (and the pruning benchmark): a small MLP, a search space wide enough to hold the usual
reasons a run never converges, and a training loop that reports the validation accuracy.

The space (SPACE) spans a learning rate of 1e-5..10 (log), dropout 0..0.95, weight decay 1e-6..1
(log), an initialization scale of 0.01x..100x the default (log), SGD or Adam, and input
standardization on or off. A third or more of it never learns: a rate too high (NaN, dead ReLUs),
too low, dropout near 1, weight decay near 1, an init far too small or large.
"""
from __future__ import annotations

import contextlib
import math
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

NUM_CLASSES = 10
# kind, low, high (or the choices)
SPACE: dict[str, tuple] = {
    "lr": ("log", 1e-5, 10.0),
    "dropout": ("uniform", 0.0, 0.95),
    "weight_decay": ("log", 1e-6, 1.0),
    "init_scale": ("log", 1e-2, 1e2),
    "optimizer": ("choice", ("sgd", "adam")),
    "normalize": ("choice", (True, False)),
}
STEPS = 400
REPORT_EVERY = 20
BATCH = 64
HIDDEN = 128


def suggest(trial: Any) -> dict[str, Any]:
    """The configuration of an Optuna trial, drawn from SPACE."""
    config = {}
    for name, (kind, *args) in SPACE.items():
        if kind == "choice":
            config[name] = trial.suggest_categorical(name, list(args[0]))
        else:
            config[name] = trial.suggest_float(name, args[0], args[1], log=kind == "log")
    return config


def sample(rng: np.random.Generator) -> dict[str, Any]:
    """A configuration drawn from SPACE with a numpy generator (Ray Tune's fixed list of trials)."""
    config: dict[str, Any] = {}
    for name, (kind, *args) in SPACE.items():
        if kind == "choice":
            config[name] = args[0][int(rng.integers(len(args[0])))]
        elif kind == "log":
            config[name] = float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
        else:
            config[name] = float(rng.uniform(args[0], args[1]))
    return config


@lru_cache(maxsize=1)
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train / validation split of load_digits (80 / 20, stratified, fixed)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return tuple(train_test_split(X.astype(np.float32), y, test_size=0.2, random_state=0, stratify=y))


def build(config: dict[str, Any]) -> tuple[nn.Module, torch.optim.Optimizer]:
    p = config["dropout"]
    model = nn.Sequential(nn.Linear(64, HIDDEN), nn.ReLU(), nn.Dropout(p), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                          nn.Dropout(p), nn.Linear(HIDDEN, NUM_CLASSES))
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.mul_(config["init_scale"])
    if config["optimizer"] == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9,
                                    weight_decay=config["weight_decay"])
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    return model, optimizer


def train(config: dict[str, Any], seed: int, on_report: Callable[[int, dict[str, float], Any], None] | None = None,
          watch: Callable[[nn.Module, torch.optim.Optimizer], Any] | None = None, steps: int = STEPS,
          report_every: int = REPORT_EVERY) -> dict[str, float]:
    """Train one configuration; returns its final validation metrics (``accuracy``, ``val_loss``).

    ``on_report(step, metrics, doctor)`` is called every ``report_every`` steps with the same
    metrics (it may raise to stop the trial); ``watch(model, optimizer)``, when given, returns the
    ``lossdoctor.watch`` to train under (``doctor``; None without one).
    """
    torch.manual_seed(seed)
    X_train, X_val, y_train, y_val = digits()
    if config["normalize"]:  # StandardScaler leaves the always-blank pixels at scale 1 (no division by 0)
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(X_train)
        X_train, X_val = scaler.transform(X_train).astype(np.float32), scaler.transform(X_val).astype(np.float32)
    x, xv = torch.from_numpy(np.ascontiguousarray(X_train)), torch.from_numpy(np.ascontiguousarray(X_val))
    y, yv = torch.from_numpy(y_train), torch.from_numpy(y_val)
    model, optimizer = build(config)
    loss_fn = nn.CrossEntropyLoss()
    batches = torch.Generator().manual_seed(seed)
    metrics = {"accuracy": float("nan"), "val_loss": float("nan")}
    doctor = watch(model, optimizer) if watch is not None else None
    with doctor if doctor is not None else contextlib.nullcontext():
        for step in range(1, steps + 1):
            model.train()
            idx = torch.randint(0, len(x), (BATCH,), generator=batches)
            loss = loss_fn(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if doctor is not None:
                doctor.step(loss)
            if step % report_every == 0:
                model.eval()
                with torch.no_grad():
                    logits = model(xv)
                    metrics = {"accuracy": float((logits.argmax(1) == yv).float().mean()),
                               "val_loss": float(loss_fn(logits, yv))}
                if on_report is not None:
                    on_report(step, metrics, doctor)
    return metrics
