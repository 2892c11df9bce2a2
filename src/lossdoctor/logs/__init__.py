"""Read the logs people already have into :class:`~lossdoctor.evidence.Curves`, one per run.

``read_runs(path)`` recognises the format of a file, or finds the logs inside a directory:

=============================  ===============================================================
format                         recognised by
=============================  ===============================================================
TensorBoard                    ``events.out.tfevents.*`` files; each directory holding them is a run
Hugging Face Trainer           ``trainer_state.json`` (``log_history``); in an output dir, the top-level
                               file or else the latest ``checkpoint-*``
MLflow file store              ``<experiment>/<run>/metrics/<key>`` (an ``mlruns`` dir, an experiment
                               dir or a run dir)
Lightning CSVLogger            ``metrics.csv`` with ``step`` and ``epoch`` (train/val rows interleaved)
Keras CSVLogger / history      a CSV starting with ``epoch``; a JSON dict of lists
CSV / TSV / JSONL / JSON       any header: step/epoch and loss columns recognised by common names
=============================  ===============================================================

In a directory the first kind found in that order wins (MLflow, then trainer_state, then TensorBoard,
then CSV/JSONL files), so a Hugging Face output dir that also holds TensorBoard files gives one
report per run, not two; point at a file to pick another.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import LogFormatError
from ..evidence import Curves
from .huggingface import is_trainer_state, load_json, read_trainer_state
from .mlflow import is_run_dir, read_mlflow_run, run_dirs
from .table import check_text, read_csv, read_json_records, read_jsonl
from .tensorboard import event_dirs, is_event_file, read_tensorboard

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")
EXPECTED = ("a CSV/TSV/JSONL log, a trainer_state.json, a TensorBoard event file or run directory, "
            "a Lightning/Keras CSVLogger file, or an MLflow mlruns directory")

__all__ = ["read_runs", "read_log", "LogFormatError"]


def read_runs(path: str | os.PathLike, step: str | None = None, train: str | None = None,
              val: str | None = None) -> list[Curves]:
    """Every run in ``path`` (a file or a directory), as Curves with standard series names.

    ``step``/``train``/``val`` name the column (or tag, or key) to use when the automatic recognition
    is wrong. Raises :class:`LogFormatError` naming the file, the line and what was expected.
    """
    p = Path(path)
    if not p.exists():
        raise LogFormatError(p, "no such file or directory", expected=EXPECTED)
    if p.is_file():
        return [read_log(p, step=step, train=train, val=val)]
    return _read_dir(p, step, train, val)


def read_log(path: str | os.PathLike, step: str | None = None, train: str | None = None,
             val: str | None = None, run: str | None = None) -> Curves:
    """One log file, its format sniffed from its name and content."""
    p = Path(path)
    if is_event_file(p):
        return read_tensorboard(p, step, train, val, run)
    for parent in p.parents:  # an MLflow metric file, possibly nested (metrics/train/loss)
        if parent.name == "metrics" and is_run_dir(parent.parent):
            return read_mlflow_run(parent.parent, step, train, val, run)
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return read_jsonl(p, step, train, val, run)
    if suffix in (".csv", ".tsv"):
        return read_csv(p, step, train, val, run)
    if suffix == ".json":
        return _read_json(p, step, train, val, run)
    head = check_text(p).lstrip()
    if head.startswith("["):
        return _read_json(p, step, train, val, run)
    if head.startswith("{"):
        first = head.split("\n", 1)[0]
        try:
            import json

            json.loads(first)
            return read_jsonl(p, step, train, val, run)  # a complete object on the first line
        except ValueError:
            return _read_json(p, step, train, val, run)
    return read_csv(p, step, train, val, run)


def _read_json(p: Path, step, train, val, run) -> Curves:
    obj = load_json(p)
    if is_trainer_state(obj):
        return read_trainer_state(p, step, train, val, run=run or _hf_run_name(p), obj=obj)
    return read_json_records(p, obj, step, train, val, run)


_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")


def _hf_run_name(p: Path) -> str:
    parent = p.parent
    if _CHECKPOINT.search(parent.name) and parent.parent.name:
        return parent.parent.name
    return parent.name or p.stem


def _trainer_states(root: Path) -> list[Path]:
    """One trainer_state.json per output directory: the top-level one, else the latest checkpoint's."""
    by_run: dict[Path, tuple[int, Path]] = {}
    for f in root.rglob("trainer_state.json"):
        m = _CHECKPOINT.search(f.parent.name)
        owner, rank = (f.parent.parent, int(m.group(1))) if m else (f.parent, 1 << 62)
        if owner not in by_run or rank > by_run[owner][0]:
            by_run[owner] = (rank, f)
    return [f for _, f in sorted(by_run.values(), key=lambda t: str(t[1]))]


def _name(root: Path, p: Path) -> str:
    rel = p.relative_to(root).as_posix() if p != root else ""
    return rel or root.name or str(root)


def _read_dir(root: Path, step, train, val) -> list[Curves]:
    mlflow = run_dirs(root)
    if mlflow:
        return [read_mlflow_run(r, step, train, val) for r in mlflow]
    states = _trainer_states(root)
    if states:
        return [read_trainer_state(f, step, train, val, run=_hf_run_name(f)) for f in states]
    tb = event_dirs(root)
    if tb:
        return [read_tensorboard(d, step, train, val, run=_name(root, d)) for d in tb]
    tables = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in TABLE_SUFFIXES)
    runs, skipped = [], []
    for f in tables:
        name = _name(root, f.parent) if f.stem in ("metrics", "log", "history") else _name(root, f)
        try:
            runs.append(read_log(f, step, train, val, run=name))
        except LogFormatError as exc:
            if "no loss column" not in exc.problem:
                raise
            skipped.append(f)  # a data file or a table without a loss: not a training log
    if not runs:
        found = ", ".join(f.name for f in skipped[:5]) or "no log files"
        raise LogFormatError(root, f"no training log found in the directory ({found})", expected=EXPECTED)
    return runs
