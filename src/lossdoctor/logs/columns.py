"""Shared by every reader: recognise what each column (tag, key) of a log holds, and turn the chosen
columns into a :class:`~lossdoctor.evidence.Curves` (resumed runs de-duplicated, choices explained).

Names are compared after normalisation (:func:`norm`): camelCase split, lower case, runs of ``/``,
``.``, ``-``, ``_``, spaces and ``:`` turned into ``_``; so TensorBoard's ``Loss/train``, HF's
``train/loss``, W&B's ``train.loss`` and ``trainLoss`` all read alike.

A loss is recognised by pattern, not by a fixed list: a name holding ``loss`` (``train_loss``,
``loss_cls``, ``data_loss``, ``valloss``), or one of the loss words ``nll``, ``ce``, ``xent``,
``cross_entropy``, ``objective``, or ``perplexity``/``ppl`` (read as its logarithm, the
cross-entropy). Its role comes from a marker anywhere in the name: ``train``/``training``/``trn``/
``tr``, ``val``/``valid``/``validation``/``eval``/``dev``, ``test``; an unmarked loss is the training
loss. When several columns fit a role, the total loss ranks above aggregates of it, other loss words,
perplexity and components (``loss_cls``, ``kl_loss``), then the first in the log wins;
``meta["column_choice"]`` says what was chosen over what, and why. A test loss stands in for the
validation loss only when there is none.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import LogFormatError
from ..evidence import GRAD_NORM, LEARNING_RATE, TRAIN_LOSS, VAL_LOSS, Curves

STANDARD = (TRAIN_LOSS, VAL_LOSS, LEARNING_RATE, GRAD_NORM)

# "_step" is the step W&B adds to every record, after the names a user writes.
STEP_NAMES = ("step", "global_step", "steps", "iteration", "iterations", "iter", "it", "batch",
              "trainer_global_step", "train_global_step", "num_steps", "n_iter", "num_updates", "update", "updates",
              "_step")
EPOCH_NAMES = ("epoch", "epochs", "train_epoch", "ep")
LR_NAMES = ("lr", "learning_rate", "train_learning_rate", "lr_adam", "lr_adamw", "lr_sgd", "lr_0",
            "learning_rate_0", "lr_group_0", "lr_pg0", "train_lr")
GRAD_NAMES = ("grad_norm", "gradient_norm", "train_grad_norm", "grad_norm_total", "total_grad_norm",
              "grad_2_0_norm_total", "grad_norm_2_0_norm_total", "total_norm")
# Columns that are bookkeeping, never metrics.
NOT_METRICS = ("time", "timestamp", "wall_time", "walltime", "created_at", "_runtime", "_timestamp", "runtime",
               "train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos",
               "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "date", "datetime")

TRAIN_MARKS = frozenset({"train", "training", "trn", "tr"})
VAL_MARKS = frozenset({"val", "valid", "validation", "eval", "evaluation", "dev", "vali"})
TEST_MARKS = frozenset({"test", "testing"})
LOSS_WORDS = frozenset({"nll", "ce", "xent", "crossentropy", "objective"})
PERPLEXITY_WORDS = frozenset({"ppl", "perplexity"})
TOTAL_WORDS = frozenset({"total", "overall", "full", "all", "main", "sum"})
# How a loss was aggregated: lower ranks first. A training loss is best per step (most points); a
# validation loss per epoch (a per-batch validation loss is noisier and repeats the global step).
TRAIN_AGGREGATES = {"step": 1, "steps": 1, "batch": 1, "iter": 1, "mean": 1, "avg": 1, "average": 1,
                    "running": 2, "smooth": 2, "smoothed": 2, "ema": 2, "epoch": 3}
VAL_AGGREGATES = {"epoch": 1, "mean": 1, "avg": 1, "average": 1, "step": 2, "steps": 2, "batch": 2, "iter": 2,
                  "running": 2, "smooth": 2, "smoothed": 2, "ema": 2}
# A name that holds "loss" but measures something about a loss, not the loss itself: the AMP loss
# scale, a loss weight, a running best (monotone by construction: it would always read as converging),
# spread statistics, counts, timings, gradients.
NOT_A_LOSS = frozenset({"scale", "scaler", "scaling", "weight", "weights", "coef", "coeff", "factor", "std",
                        "var", "variance", "best", "min", "max", "lowest", "count", "num", "n", "time", "grad",
                        "grads", "gradient", "norm", "lr", "ratio", "delta", "diff", "improvement", "rank",
                        "skipped", "frac", "fraction", "pct", "percent", "gap", "patience", "threshold"})

# Ranks of loss candidates (lower wins), named for the reasons shown in meta["column_choice"].
RANK_WHY = {0: "the total loss", 1: "an aggregate of the total loss", 2: "a loss by another name",
            3: "perplexity (read as its log, the cross-entropy)", 4: "a component of the loss"}

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEP = re.compile(r"[/\.\-\s:_]+")


# Names are looked at several times each (step, losses, lr, grad norm, extras): remember the last
# ones, enough for the widest logs (a 100,000-column CSV), bounded all the same.
NAME_CACHE_SIZE = 1 << 17


@functools.lru_cache(maxsize=NAME_CACHE_SIZE)
def norm(name: str) -> str:
    text = str(name).lstrip("\ufeff").strip()  # BOM from Excel
    return _SEP.sub("_", _CAMEL.sub("_", text).lower()).strip("_") or text


def _tokens(normalised: str) -> list[str]:
    """The words of a normalised name; a word glued to "loss" (``valloss``, ``trainloss``) is split off."""
    out: list[str] = []
    for t in normalised.split("_"):
        if "loss" in t and t != "loss" and t not in NOT_A_LOSS:
            head, _, tail = t.partition("loss")
            out += [p for p in (head, "loss", tail) if p]
        else:
            out.append(t)
    return out


@dataclass(frozen=True)
class LossName:
    """What a column name says about a loss: its role (train/val/test) and its rank among candidates."""

    role: str
    rank: int
    aggregate: int
    perplexity: bool


@functools.lru_cache(maxsize=NAME_CACHE_SIZE)
def loss_name(name: str) -> LossName | None:
    """The loss a column name describes, or None when it is not a loss (or its role is ambiguous)."""
    n = norm(name)
    if n in NOT_METRICS:
        return None
    tokens = _tokens(n)
    words = set(tokens)
    has_cross_entropy = "cross_entropy" in n
    if not ("loss" in n or words & LOSS_WORDS or words & PERPLEXITY_WORDS or has_cross_entropy):
        return None
    if words & NOT_A_LOSS:
        return None
    roles = {r for r, marks in (("train", TRAIN_MARKS), ("val", VAL_MARKS), ("test", TEST_MARKS)) if words & marks}
    if len(roles) > 1:
        return None  # "train_val_loss", "train_test_gap": not one curve of one split
    role = roles.pop() if roles else "train"
    aggregates = VAL_AGGREGATES if role == "val" else TRAIN_AGGREGATES
    core = [t for t in tokens if t not in TRAIN_MARKS | VAL_MARKS | TEST_MARKS and t not in aggregates
            and not t.isdigit()]
    aggregate = max((aggregates[t] for t in tokens if t in aggregates), default=0)
    rest = [t for t in core if t not in TOTAL_WORDS]
    if has_cross_entropy:
        rest = [t for t in rest if t not in ("cross", "entropy")] + ["crossentropy"]
    perplexity = bool(words & PERPLEXITY_WORDS) and "loss" not in words
    if "loss" in rest and all(t == "loss" or t in LOSS_WORDS for t in rest):  # loss, nll_loss, ce_loss
        rank = 0 if aggregate == 0 else 1
    elif perplexity and len(rest) == 1:
        rank = 3
    elif len(rest) == 1 and rest[0] in LOSS_WORDS:
        rank = 2
    else:
        rank = 4
    return LossName(role, rank, aggregate, perplexity)


def _first(names: Sequence[str], candidates: tuple[str, ...]) -> str | None:
    """The first of ``names`` whose normalised form comes first in ``candidates``."""
    by_norm: dict[str, str] = {}
    for n in names:
        by_norm.setdefault(norm(n), n)
    for c in candidates:
        if c in by_norm:
            return by_norm[c]
    return None


def find_column(path, names: Sequence[str], wanted: str, what: str) -> str:
    """The column the user named (exactly, or else by its normalised spelling); an error listing the
    columns when there is none, or when the spelling fits several."""
    if wanted in names:
        return wanted
    hits = [n for n in names if norm(n) == norm(wanted)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise LogFormatError(path, f"{what} {wanted!r} fits several columns: " + ", ".join(map(repr, hits)),
                             expected="the exact name of one of them")
    shown = ", ".join(map(str, names[:40])) + (f", ... ({len(names)} in all)" if len(names) > 40 else "")
    raise LogFormatError(path, f"no {what} column {wanted!r}", expected="one of: " + (shown or "no columns"))


def _pattern_lr(names: Sequence[str]) -> str | None:
    for n in names:
        words = set(norm(n).split("_"))
        if ("lr" in words or {"learning", "rate"} <= words) and not words & {"grad", "scale", "loss"}:
            return n
    return None


def _pattern_grad(names: Sequence[str]) -> str | None:
    hits = []
    for i, n in enumerate(names):
        words = norm(n).split("_")
        if ({"grad", "gradient", "grads"} & set(words)) and "norm" in words:
            hits.append((0 if {"total", "global"} & set(words) else 1, len(words), i, n))
    return min(hits)[3] if hits else None


@dataclass
class Roles:
    """Which column of a log holds the step and each standard series, and why."""

    step: str | None = None
    columns: dict[str, str] = field(default_factory=dict)  # standard series -> source column
    why: dict[str, str] = field(default_factory=dict)  # standard series -> the reason for the choice
    log_of: set = field(default_factory=set)  # columns read as their logarithm (perplexity)
    notes: list[str] = field(default_factory=list)

    def used(self) -> set[str]:
        return set(self.columns.values()) | ({self.step} if self.step else set())


def _choose_loss(path, names: Sequence[str], role: str, what: str, flag: str) -> tuple[str | None, str, bool]:
    """The best column for a loss role, the reason, and whether it is a perplexity."""
    found = []
    for i, n in enumerate(names):
        ln = loss_name(n)
        if ln is not None and ln.role == role:
            found.append(((ln.rank, ln.aggregate, i), n, ln))
    if not found:
        return None, "", False
    found.sort(key=lambda t: t[0])
    (key, best, ln) = found[0]
    twins = [n for k, n, _ in found[1:] if k[:2] == key[:2] and norm(n) == norm(best)]
    if twins:
        raise LogFormatError(path, f"columns {best!r} and {twins[0]!r} both read as the {what}",
                             expected=f"one of them named with {flag}")
    if len(found) == 1:
        why = f"{best!r}: the only {what} column"
    else:
        others = [n for _, n, _ in found[1:]]
        shown = ", ".join(map(repr, others[:5])) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        runner = found[1][0]
        reason = (f"{RANK_WHY[key[0]]} ranks first" if runner[0] > key[0]
                  else "the less aggregated form ranks first" if runner[1] > key[1]
                  else "first in the log of equally ranked columns")
        why = f"{best!r} over {shown}: {reason}"
    return best, why, ln.perplexity


def assign_roles(path, names: Sequence[str], step: str | None = None, train: str | None = None,
                 val: str | None = None, *, default_step: bool = True) -> Roles:
    """Decide the step column and the standard series of a log from its column names (and the user's
    overrides). Raises LogFormatError when no loss is found or an override names no column."""
    names = [n for n in names if norm(n) not in NOT_METRICS or n in (step, train, val)]
    roles = Roles()
    if step is not None:
        roles.step = find_column(path, names, step, "step")
    elif default_step:
        roles.step = _first(names, STEP_NAMES)
        if roles.step is None:
            roles.step = _first(names, EPOCH_NAMES)
    metrics = [n for n in names if n != roles.step]

    def user(col: str, what: str) -> str:
        return find_column(path, names, col, what)

    if train is not None:
        roles.columns[TRAIN_LOSS] = user(train, "training-loss")
        roles.why[TRAIN_LOSS] = f"{roles.columns[TRAIN_LOSS]!r}: named with --train"
    else:
        col, why, ppl = _choose_loss(path, metrics, "train", "training loss", "--train")
        if col is not None:
            roles.columns[TRAIN_LOSS], roles.why[TRAIN_LOSS] = col, why
            if ppl:
                roles.log_of.add(col)
    if val is not None:
        roles.columns[VAL_LOSS] = user(val, "validation-loss")
        roles.why[VAL_LOSS] = f"{roles.columns[VAL_LOSS]!r}: named with --val"
    else:
        col, why, ppl = _choose_loss(path, metrics, "val", "validation loss", "--val")
        if col is None:
            col, why, ppl = _choose_loss(path, metrics, "test", "test loss", "--val")
            if col is not None:
                why += " (no validation loss: the test loss stands in for it)"
                roles.notes.append(f"no validation loss in the log: the test loss {col!r} is read as the "
                                   "validation loss")
        if col is not None and col != roles.columns.get(TRAIN_LOSS):
            roles.columns[VAL_LOSS], roles.why[VAL_LOSS] = col, why
            if ppl:
                roles.log_of.add(col)
    if not roles.columns:
        shown = ", ".join(map(str, metrics[:40])) + (f", ... ({len(metrics)} in all)" if len(metrics) > 40 else "")
        raise LogFormatError(
            path, "no loss column found",
            expected="a training loss named like loss/train_loss/nll or a validation loss like val_loss/eval_loss "
            "(or name them with --train/--val); found: " + (shown or "no metrics"),
        )
    for col in sorted(roles.log_of, key=str):
        roles.notes.append(f"{col!r} is a perplexity: read as its natural log (the cross-entropy)")
    rest = [n for n in metrics if n not in roles.columns.values()]
    lr = _first(rest, LR_NAMES) or _pattern_lr(rest)
    if lr is not None:
        roles.columns[LEARNING_RATE] = lr
        rest.remove(lr)
    grad = _first(rest, GRAD_NAMES) or _pattern_grad(rest)
    if grad is not None:
        roles.columns[GRAD_NORM] = grad
    return roles


# Metrics beside the standard series that a Curves keeps, in the order of the log. Enough for every
# metric a person reads next to the loss (accuracy, F1, a few per-class scores); a log with thousands
# of columns is a dump of per-parameter statistics that no check reads, and keeping them all would
# make reading, the report and its JSON grow with the width of the file instead of its length.
MAX_EXTRA_METRICS = 64


def extra_metrics(names: Iterable[str], roles: Roles) -> tuple[list[str], int]:
    """The other metrics to keep (at most MAX_EXTRA_METRICS, in log order; epoch and bookkeeping columns
    left out) and how many the log has in all."""
    used = roles.used()
    out, total = [], 0
    for n in names:
        if n in used:
            continue
        key = norm(n)
        if key in NOT_METRICS or key in EPOCH_NAMES:
            continue
        total += 1
        if len(out) < MAX_EXTRA_METRICS:
            out.append(n)
    return out, total


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
    roles: Roles | None = None,
    extra_total: int | None = None,
) -> Curves:
    """Curves from ``{name: (steps, values)}`` (missing cells already removed; NaN/Inf kept as data).

    ``roles`` (from :func:`assign_roles`) says which columns become ``train_loss``, ``val_loss``, ``lr``
    and ``grad_norm``; it is worked out from the names here when the reader has not already done so.
    Other metrics keep their names (at most MAX_EXTRA_METRICS; ``extra_total`` is how many the log had).
    Raises LogFormatError when no loss is found or an override names a missing column.
    """
    if roles is None:
        roles = assign_roles(path, list(columns), None, train, val, default_step=False)
    curves = Curves(run=run, source=os.fspath(path), meta={"format": fmt, **(meta or {})})
    notes = list(curves.meta.pop("notes", [])) + roles.notes
    source_of = {col: std for std, col in roles.columns.items()}
    extras, n_extra = extra_metrics(list(columns), roles)
    if extra_total is not None:
        n_extra = extra_total
    dropped: dict[str, int] = {}
    went_back: list[str] = []
    for name in [*roles.columns.values(), *extras]:
        if name not in columns:
            continue
        steps, values = columns[name]
        target = source_of.get(name, name)
        if target in curves.series:  # an extra metric that happens to be called like a standard series
            target = f"{name} (column)"
        if steps.size == 0:
            if name in (train, val):
                raise LogFormatError(path, f"column {name!r} has no values", expected="numbers in that column")
            continue
        values = np.asarray(values, dtype=np.float64)
        if name in roles.log_of:
            with np.errstate(divide="ignore", invalid="ignore"):
                values = np.log(values)
        s, v, n_dropped, back = dedupe(np.asarray(steps, dtype=np.float64), values)
        if n_dropped:
            dropped[target] = n_dropped
        if back:
            went_back.append(target)
        curves.add(target, s, v)
    if TRAIN_LOSS not in curves.series and VAL_LOSS not in curves.series:
        raise LogFormatError(path, "the loss columns hold no values",
                             expected="numbers under " + ", ".join(repr(c) for c in (roles.columns.get(TRAIN_LOSS),
                                                                                     roles.columns.get(VAL_LOSS)) if c))
    curves.meta["columns"] = {std: col for std, col in roles.columns.items() if std in curves.series}
    curves.meta["column_choice"] = {std: why for std, why in roles.why.items() if std in curves.series}
    if n_extra > MAX_EXTRA_METRICS:
        curves.meta["metrics_not_kept"] = n_extra - MAX_EXTRA_METRICS
        notes.append(f"the log has {n_extra} other metrics: the first {MAX_EXTRA_METRICS} are kept beside the losses")
    if dropped or went_back:
        curves.meta["duplicate_steps_dropped"] = dropped
        curves.meta["steps_went_back"] = went_back
        notes.append("steps were logged more than once or went back (a resumed run?): kept the latest write of each "
                     f"step ({sum(dropped.values())} earlier writes dropped)")
    if notes:
        curves.meta["notes"] = notes
    return curves
