"""Hugging Face ``trainer_state.json``: ``log_history`` entries with ``loss`` / ``eval_loss`` /
``grad_norm`` / ``learning_rate`` (keys vary across transformers versions), one per logging step."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LogFormatError
from ..evidence import GRAD_NORM, Curves
from .files import is_regular_file, parse_json, read_text
from .table import read_json_records, records_to_curves

# The final log_history entry is a summary of the whole run (train_runtime, an average train_loss):
# these keys mark it, and it is not a point on the curve.
SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "total_flos")
STATE_KEYS = ("global_step", "max_steps", "num_train_epochs", "logging_steps", "eval_steps", "save_steps",
              "best_metric", "best_model_checkpoint", "train_batch_size")


def load_json(path: Path) -> Any:
    return parse_json(read_text(path, "a JSON document"), path)


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
    meta = {k: obj[k] for k in STATE_KEYS if k in obj and isinstance(obj[k], (int, float, str))}
    if not entries:
        # a well-formed state of a run that logged nothing (logging_steps larger than the run, or a save
        # before the first log): a log with no points, judged "insufficient_data", not a broken file
        steps, every = meta.get("global_step"), meta.get("logging_steps")
        why = (f" ({steps} steps with logging_steps={every}: nothing was logged)"
               if isinstance(steps, (int, float)) and isinstance(every, (int, float)) and steps < every else "")
        return Curves(run=run or (path.parent.name if path.parent.name else path.stem), source=str(path),
                      meta={"format": "huggingface", **meta,
                            "notes": [f"log_history is empty{why}: log more often (logging_steps) to judge the run"]})
    # (the integration passes a live TrainerState's history under a name that is no file: no config beside it)
    classes = num_classes_from_config(path) if is_regular_file(path) else None
    if classes is not None:
        meta["num_classes"], meta["num_classes_from"] = classes
    if run is None:
        run = path.parent.name if path.parent.name else path.stem
    curves = records_to_curves(path, entries, None, "huggingface", step, train, val, run, meta=meta)
    _unfilter_nan_losses(curves)
    return curves


CHECKPOINT = re.compile(r"checkpoint-(\d+)")
# Hugging Face problem types whose loss is not a K-way cross-entropy (chance is not ln K there).
NOT_K_WAY = ("regression", "multi_label_classification")
# Model heads whose loss is not over the config's labels (the vocabulary, spans, choices, CTC frames).
NOT_LABEL_HEADS = ("ForCausalLM", "ForConditionalGeneration", "ForMaskedLM", "LMHeadModel", "ForPreTraining",
                   "ForQuestionAnswering", "ForSeq2SeqLM", "ForMultipleChoice", "ForCTC", "ForMaskGeneration")


def num_classes_from_config(state_path: Path) -> tuple[int, str] | None:
    """The number of classes the model's ``config.json`` states (``id2label`` or ``num_labels``) and
    the file it came from, when the task is single-label classification; else None.

    The config is looked for beside ``trainer_state.json``, then in the output directory above a
    ``checkpoint-*``, then in the latest ``checkpoint-*`` below it (``Trainer.save_state`` writes the
    top-level state, the checkpoints hold the model's config). transformers saves ``id2label`` only
    when it differs from the 2-label default, so a config without it says nothing and gives None; so
    does a language model's or question-answering model's config (its loss is not over the labels).
    """
    folder = state_path.parent
    if CHECKPOINT.fullmatch(folder.name):
        folders = [folder, folder.parent]
    else:
        try:
            checkpoints = [(int(m.group(1)), p) for p in folder.iterdir()
                           if (m := CHECKPOINT.fullmatch(p.name)) and p.is_dir()]
        except OSError:
            checkpoints = []
        folders = [folder] + [p for _, p in sorted(checkpoints, reverse=True)[:1]]
    for folder in folders:
        config = folder / "config.json"
        if not is_regular_file(config):
            continue
        try:
            obj = parse_json(read_text(config, "a JSON document"), config)
        except LogFormatError:
            return None
        if not isinstance(obj, dict) or obj.get("problem_type") in NOT_K_WAY:
            return None
        heads = obj.get("architectures")
        if isinstance(heads, list) and any(isinstance(h, str) and h.endswith(NOT_LABEL_HEADS) for h in heads):
            return None  # a language model's config may carry id2label too: its loss is over the vocabulary
        labels = obj.get("id2label")
        k = len(labels) if isinstance(labels, dict) and labels else obj.get("num_labels")
        if isinstance(k, int) and not isinstance(k, bool) and k >= 2:
            return k, os.fspath(config)
        return None
    return None


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
