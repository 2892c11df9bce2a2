"""Hugging Face ``trainer_state.json``: ``log_history`` entries with ``loss`` / ``eval_loss`` /
``grad_norm`` / ``learning_rate`` (keys vary across transformers versions), one per logging step."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LogFormatError
from ..evidence import GRAD_NORM, Curves
from .table import check_text, read_json_records, records_to_curves

# The final log_history entry is a summary of the whole run (train_runtime, an average train_loss):
# these keys mark it, and it is not a point on the curve.
SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "total_flos")
STATE_KEYS = ("global_step", "max_steps", "num_train_epochs", "logging_steps", "eval_steps", "save_steps",
              "best_metric", "best_model_checkpoint", "train_batch_size")


def load_json(path: Path) -> Any:
    check_text(path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise LogFormatError(path, f"not UTF-8 text ({exc.reason})", expected="a JSON document") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        body = text.rstrip()
        if exc.msg.startswith("Unterminated") or exc.pos >= len(body):
            raise LogFormatError(path, "truncated JSON: the file ends inside the document",
                                 line=body.count("\n") + 1, expected="a complete JSON document") from None
        raise LogFormatError(path, f"invalid JSON ({exc.msg})", line=exc.lineno,
                             expected="a complete JSON document") from None


def is_trainer_state(obj: Any) -> bool:
    return isinstance(obj, dict) and "log_history" in obj


def read_trainer_state(path: str | os.PathLike, step: str | None = None, train: str | None = None,
                       val: str | None = None, run: str | None = None, obj: Any = None) -> Curves:
    path = Path(path)
    if obj is None:
        obj = load_json(path)
    if not is_trainer_state(obj):
        return read_json_records(path, obj, step, train, val, run)
    history = obj["log_history"]
    if not isinstance(history, list):
        raise LogFormatError(path, "log_history is not a list of entries", expected="\"log_history\": [{...}, ...]")
    try:
        entries = [e for e in history if e.keys().isdisjoint(SUMMARY_KEYS)]
    except AttributeError:
        raise LogFormatError(path, "log_history holds something other than entries",
                             expected="\"log_history\": [{\"step\": ..., \"loss\": ...}, ...]") from None
    if not entries:
        raise LogFormatError(path, "log_history holds no logged steps",
                             expected="entries with \"loss\" or \"eval_loss\" (is logging_steps larger than the run?)")
    meta = {k: obj[k] for k in STATE_KEYS if k in obj}
    if run is None:
        run = path.parent.name if path.parent.name else path.stem
    curves = records_to_curves(path, entries, None, "huggingface", step, train, val, run, meta=meta)
    _unfilter_nan_losses(curves)
    return curves


def _unfilter_nan_losses(curves: Curves) -> None:
    """Undo the Trainer's ``logging_nan_inf_filter`` where the log shows it.

    With the filter on (the default), a NaN/Inf step loss is replaced by the average of the losses
    logged since the last log; when every step of the window is NaN that average is 0, so the log
    says ``loss: 0.0`` exactly while ``grad_norm`` is NaN/Inf at the same step. Such a loss is NaN.
    """
    train, grad = curves.train, curves.get(GRAD_NORM)
    if train is None or grad is None:
        return
    zero = np.flatnonzero(train.values == 0.0)
    if not zero.size:
        return
    pos = np.clip(np.searchsorted(grad.steps, train.steps[zero]), 0, len(grad) - 1)
    same_step = grad.steps[pos] == train.steps[zero]
    hidden = zero[same_step & ~np.isfinite(grad.values[pos])]
    if hidden.size:
        train.values[hidden] = np.nan
        curves.meta["nan_losses_logged_as_zero"] = int(hidden.size)
        curves.meta.setdefault("notes", []).append(
            f"{hidden.size} logged losses of exactly 0.0 had a NaN/Inf grad_norm at the same step: the Trainer's "
            "logging_nan_inf_filter wrote NaN losses as 0.0; they are read as NaN")
