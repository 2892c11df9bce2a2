"""Shared by every reader: recognise step / loss / lr / grad-norm names, and turn named columns into
a :class:`~lossdoctor.evidence.Curves` (resumed runs de-duplicated, missing metrics reported)."""
from __future__ import annotations

import os
import re
from typing import Mapping

import numpy as np

from ..errors import LogFormatError
from ..evidence import GRAD_NORM, LEARNING_RATE, TRAIN_LOSS, VAL_LOSS, Curves

# Names are compared after normalisation: lower case, runs of "/", ".", "-", " " and ":" turned into
# "_" (so TensorBoard's "Loss/train", HF's "train/loss" and W&B's "train.loss" all match).
STEP_NAMES = ("step", "global_step", "steps", "iteration", "iterations", "iter", "it", "batch",
              "trainer_global_step", "_step", "train_global_step")
EPOCH_NAMES = ("epoch", "epochs", "train_epoch")
TRAIN_NAMES = ("train_loss", "train_loss_step", "loss", "training_loss", "loss_train", "train_loss_epoch",
               "trn_loss", "tr_loss", "train_batch_loss", "batch_loss", "loss_step", "loss_epoch",
               "train_epoch_loss", "train_total_loss", "train_loss_mean")
VAL_NAMES = ("val_loss", "valid_loss", "validation_loss", "eval_loss", "loss_val", "loss_valid",
             "loss_validation", "val_loss_epoch", "dev_loss", "val_loss_step", "val_epoch_loss",
             "eval_loss_epoch", "val_total_loss", "valid_total_loss")
LR_NAMES = ("lr", "learning_rate", "train_learning_rate", "lr_adam", "lr_adamw", "lr_sgd", "lr_0",
            "learning_rate_0", "lr_group_0", "lr_pg0")
GRAD_NAMES = ("grad_norm", "gradient_norm", "train_grad_norm", "grad_norm_total", "total_grad_norm",
              "grad_2_0_norm_total", "grad_norm_2_0_norm_total", "total_norm")
# Columns that are bookkeeping, never metrics.
NOT_METRICS = ("time", "timestamp", "wall_time", "walltime", "created_at", "_runtime", "_timestamp",
               "train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos",
               "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "date", "datetime")

_SEP = re.compile(r"[/\.\-\s:]+")


def norm(name: str) -> str:
    return _SEP.sub("_", str(name).lstrip("\ufeff").strip().lower()).strip("_") or str(name)  # BOM from Excel


def pick(names, candidates: tuple[str, ...]) -> str | None:
    """The first of ``names`` (original spelling) whose normalised form comes first in ``candidates``."""
    by_norm: dict[str, str] = {}
    for n in names:
        by_norm.setdefault(norm(n), n)
    for c in candidates:
        if c in by_norm:
            return by_norm[c]
    return None


def choose(path, names, override: str | None, candidates: tuple[str, ...], what: str) -> str | None:
    """The column to use for ``what``: the user's ``override`` (which must exist) or a recognised name."""
    names = list(names)
    if override is not None:
        if override in names:
            return override
        hit = pick(names, (norm(override),))
        if hit is None:
            raise LogFormatError(path, f"no {what} column {override!r}", expected="one of: " + ", ".join(map(str, names)))
        return hit
    return pick(names, candidates)


def dedupe(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Sort by step, keeping the latest write of a step (a resumed run logs some steps twice).

    Returns steps, values, the number of earlier writes dropped, and whether the steps went back.
    """
    if steps.size < 2:
        return steps, values, 0, False
    d = np.diff(steps)
    if np.all(d > 0):
        return steps, values, 0, False
    went_back = bool(np.any(d < 0))
    rev = steps[::-1]
    uniq, first_in_rev = np.unique(rev, return_index=True)  # first in reversed order = latest write
    keep = steps.size - 1 - first_in_rev
    return uniq, values[keep], int(steps.size - keep.size), went_back


def build_curves(
    path: str | os.PathLike,
    run: str,
    fmt: str,
    columns: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    train: str | None = None,
    val: str | None = None,
    meta: dict | None = None,
) -> Curves:
    """Curves from ``{name: (steps, values)}`` (missing cells already removed; NaN/Inf kept as data).

    Recognised names become ``train_loss``, ``val_loss``, ``lr`` and ``grad_norm``; other metrics keep
    their names. Raises LogFormatError when no loss is found or an override names a missing column.
    """
    names = [n for n in columns if norm(n) not in NOT_METRICS]
    train_col = choose(path, names, train, TRAIN_NAMES, "training-loss")
    val_col = choose(path, names, val, VAL_NAMES, "validation-loss")
    if train_col is not None and train_col == val_col:
        val_col = None
    if train_col is None and val_col is None:
        raise LogFormatError(
            path, "no loss column found",
            expected="a training loss named like train_loss/loss or a validation loss like val_loss/eval_loss "
            "(or name them with --train/--val); found: " + (", ".join(map(str, names)) or "no metrics"),
        )
    lr_col = pick([n for n in names if n not in (train_col, val_col)], LR_NAMES)
    grad_col = pick([n for n in names if n not in (train_col, val_col, lr_col)], GRAD_NAMES)
    standard = {train_col: TRAIN_LOSS, val_col: VAL_LOSS, lr_col: LEARNING_RATE, grad_col: GRAD_NORM}
    curves = Curves(run=run, source=os.fspath(path), meta={"format": fmt, **(meta or {})})
    dropped: dict[str, int] = {}
    went_back: list[str] = []
    renamed = {}
    for name in names:
        steps, values = columns[name]
        if steps.size == 0:
            if name in (train_col, val_col) and (name == train or name == val):
                raise LogFormatError(path, f"column {name!r} has no values", expected="numbers in that column")
            continue
        target = standard.get(name, name)
        if target in curves.series and target not in (TRAIN_LOSS, VAL_LOSS, LEARNING_RATE, GRAD_NORM):
            target = name
        s, v, n_dropped, back = dedupe(np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64))
        if n_dropped:
            dropped[target] = n_dropped
        if back:
            went_back.append(target)
        curves.add(target, s, v)
        if target != name or target in (TRAIN_LOSS, VAL_LOSS, LEARNING_RATE, GRAD_NORM):
            renamed[target] = name  # which source column each standard series came from
    if TRAIN_LOSS not in curves.series and VAL_LOSS not in curves.series:
        raise LogFormatError(path, "the loss columns hold no values", expected="numbers under "
                             + ", ".join(c for c in (train_col, val_col) if c))
    curves.meta["columns"] = renamed
    if dropped or went_back:
        curves.meta["duplicate_steps_dropped"] = dropped
        curves.meta["steps_went_back"] = went_back
        curves.meta.setdefault("notes", []).append(
            "steps were logged more than once or went back (a resumed run?): kept the latest write of each "
            f"step ({sum(dropped.values())} earlier writes dropped)"
        )
    return curves
