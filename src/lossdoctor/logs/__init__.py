"""Read the logs people already have into :class:`~lossdoctor.evidence.Curves`, one per run.

``read_runs(path)`` recognises the format of a file, or finds the logs inside a directory:

=============================  ===============================================================
format                         recognised by
=============================  ===============================================================
TensorBoard                    ``events.out.tfevents.*`` files; each directory holding them is a run
                               (``add_scalars`` sub-directories are series of their parent's run)
Hugging Face Trainer           ``trainer_state.json`` (``log_history``); in an output dir, the top-level
                               file or else the latest ``checkpoint-*``; ``config.json`` beside it gives
                               the number of classes
MLflow                         ``<experiment>/<run>/metrics/<key>`` (an ``mlruns`` dir, an experiment
                               dir or a run dir); any store or server with :func:`read_mlflow`
Lightning CSVLogger            ``metrics.csv`` with ``step`` and ``epoch`` (train/val rows interleaved)
Keras CSVLogger / history      a CSV starting with ``epoch``; a JSON dict of lists
TensorBoard downloads          ``run-<run>-tag-<tag>.csv`` (``Wall time,Step,Value``) or ``.json``
W&B panel export               a CSV of ``<run> - <metric>`` columns: one run per run name
CSV / TSV / JSONL / JSON       any header: step/epoch and loss columns recognised by pattern
=============================  ===============================================================

In a directory the first kind found in that order wins (MLflow, then trainer_state, then TensorBoard,
then CSV/JSONL files), so a Hugging Face output dir that also holds TensorBoard files gives one
report per run, not two; point at a file to pick another.

``read_runs`` returns a :class:`Runs`: the list of Curves read, with ``.failures`` naming each log of
a directory that could not be read (its path and its :class:`LogFormatError`). It raises when the
path itself cannot be read, or when not one run of a directory could be (:class:`NoRunReadable`,
which carries the failures).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import LogFormatError, NoRunReadable
from ..evidence import Curves
from .exports import (is_tb_csv_header, is_tb_json, is_wandb_export, read_wandb_export, tb_download_name,
                      tb_downloads_to_curves)
from .files import check_text, file_kind, os_problem, parse_json, require_file
from .huggingface import CHECKPOINT, is_trainer_state, load_json, read_trainer_state
from .mlflow import is_run_dir, read_mlflow_run, read_store, run_dirs
from .table import header_fields, read_csv, read_json_records, read_jsonl
from .tensorboard import EVENT_FILE_MARK, curves_from_scalars, group_runs, is_event_file, read_scalars, read_tensorboard

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")
EXPECTED = ("a CSV/TSV/JSONL log, a trainer_state.json, a TensorBoard event file or run directory, "
            "a Lightning/Keras CSVLogger file, or an MLflow mlruns directory")

__all__ = ["read_runs", "read_log", "read_mlflow", "Runs", "ReadFailure", "LogFormatError", "NoRunReadable"]


@dataclass
class ReadFailure:
    """A log that could not be read, and why."""

    path: str
    error: LogFormatError

    def to_dict(self) -> dict:
        out = {"path": self.path, "error": self.error.problem}
        if self.error.line is not None:
            out["line"] = self.error.line
        if self.error.expected:
            out["expected"] = self.error.expected
        return out

    def __str__(self) -> str:
        return str(self.error)


class Runs(list):
    """The runs read (a ``list`` of Curves), and ``failures``: the logs that could not be read."""

    def __init__(self, runs=(), failures=()):
        super().__init__(runs)
        self.failures: list[ReadFailure] = list(failures)


def read_runs(path: str | os.PathLike, step: str | None = None, train: str | None = None,
              val: str | None = None, *, live: bool = False) -> Runs:
    """Every run in ``path`` (a file or a directory), as Curves with standard series names.

    ``step``/``train``/``val`` name the column (or tag, or key) to use when the automatic recognition
    is wrong. ``live``: the log is being written (``--follow``): an unfinished last line is not an
    error, and not worth a note. Raises :class:`LogFormatError` naming the file, the line and what
    was expected.
    """
    p = Path(path)
    if file_kind(p, EXPECTED) == "file":
        return Runs(read_file(p, step=step, train=train, val=val, live=live))
    return _read_dir(p, step, train, val, live)


def read_mlflow(uri: str, experiment: str | None = None, run: str | None = None, step: str | None = None,
                train: str | None = None, val: str | None = None) -> Runs:
    """The runs of an MLflow store or server (``file:``, ``sqlite:``, ``http(s):`` or a path) through
    MLflow's client; ``experiment`` (a name) or ``run`` (an id) narrows it. Needs ``lossdoctor[mlflow]``."""
    runs, failures = read_store(uri, experiment, run, step, train, val)
    failures = [ReadFailure(where, exc) for where, exc in failures]
    if not runs:
        raise NoRunReadable(uri, failures, expected="runs with a logged loss")
    return Runs(runs, failures)


def read_log(path: str | os.PathLike, step: str | None = None, train: str | None = None,
             val: str | None = None, run: str | None = None) -> Curves:
    """One log file holding one run, its format sniffed from its name and content."""
    runs = read_file(Path(path), step, train, val, run)
    if len(runs) != 1:
        raise LogFormatError(path, f"the file holds {len(runs)} runs", expected="one run (read_runs reads them all)")
    return runs[0]


def read_file(p: Path, step: str | None = None, train: str | None = None, val: str | None = None,
              run: str | None = None, live: bool = False) -> list[Curves]:
    """The runs of one log file (most formats hold one; a W&B export may hold several)."""
    require_file(p, EXPECTED)  # before any open: a FIFO would block it
    if is_event_file(p):
        return [read_tensorboard(p, step, train, val, run)]
    for parent in p.parents:  # an MLflow metric file, possibly nested (metrics/train/loss)
        if parent.name == "metrics" and is_run_dir(parent.parent):
            return [read_mlflow_run(parent.parent, step, train, val, run)]
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return [read_jsonl(p, step, train, val, run, live=live)]
    if suffix in (".csv", ".tsv"):
        return _read_csv_kind(p, step, train, val, run, live)
    if suffix == ".json":
        return [_read_json(p, step, train, val, run)]
    head = check_text(p).lstrip("\ufeff \t\r\n")
    if head.startswith("["):
        return [_read_json(p, step, train, val, run)]
    if head.startswith("{"):
        first = head.split("\n", 1)[0]
        try:
            parse_json(first, p)
            return [read_jsonl(p, step, train, val, run, live=live)]  # a complete object on the first line
        except LogFormatError:
            return [_read_json(p, step, train, val, run)]
    return _read_csv_kind(p, step, train, val, run, live)


def _read_csv_kind(p: Path, step, train, val, run, live) -> list[Curves]:
    names, _, _ = header_fields(p, check_text(p))
    if is_tb_csv_header(names):
        named = tb_download_name(p)
        return [tb_downloads_to_curves([p], run or (named[0] if named else p.stem), p, step, train, val)]
    if is_wandb_export(names):
        return read_wandb_export(p, step, train, val)
    return [read_csv(p, step, train, val, run, live=live)]


def _read_json(p: Path, step, train, val, run) -> Curves:
    obj = load_json(p)
    if is_trainer_state(obj):
        return read_trainer_state(p, step, train, val, run=run or _hf_run_name(p), obj=obj)
    if is_tb_json(obj):
        named = tb_download_name(p)
        return tb_downloads_to_curves([p], run or (named[0] if named else p.stem), p, step, train, val,
                                      parsed={p: obj})
    return read_json_records(p, obj, step, train, val, run)


def _hf_run_name(p: Path) -> str:
    parent = p.parent
    if CHECKPOINT.fullmatch(parent.name) and parent.parent.name:
        return parent.parent.name
    return parent.name or p.stem


def _name(root: Path, p: Path) -> str:
    rel = p.relative_to(root).as_posix() if p != root else ""
    return rel or root.name or str(root)


@dataclass
class _Found:
    """What one walk of a directory tree found, by kind, and what it could not enter or open."""

    states: list[Path]
    event_dirs: list[Path]
    tables: list[Path]
    failures: list[ReadFailure]


def _scan(root: Path) -> _Found:
    found = _Found([], [], [], [])

    def unreadable(exc: OSError) -> None:
        where = exc.filename or root
        found.failures.append(ReadFailure(os.fspath(where), LogFormatError(where, os_problem(exc), expected=EXPECTED)))

    event_dirs = set()
    for folder, dirs, files in os.walk(root, onerror=unreadable):
        dirs.sort()
        base = Path(folder)
        for name in sorted(files):
            lower = name.lower()
            is_state = name == "trainer_state.json"
            is_event = EVENT_FILE_MARK in name
            is_table = lower.endswith(TABLE_SUFFIXES) or (lower.endswith(".json") and tb_download_name(Path(name)))
            if not (is_state or is_event or is_table):
                continue
            f = base / name
            try:
                file_kind(f, EXPECTED)
            except LogFormatError as exc:
                if exc.problem != "a directory, not a file":
                    found.failures.append(ReadFailure(os.fspath(f), exc))
                continue
            if is_state:
                found.states.append(f)
            elif is_event:
                event_dirs.add(base)
            else:
                found.tables.append(f)
        for name in dirs:  # a directory named like a log file: say so instead of skipping it silently
            if name == "trainer_state.json":
                d = base / name
                found.failures.append(ReadFailure(os.fspath(d), LogFormatError(d, "a directory, not a file",
                                                                              expected="a trainer_state.json file")))
    found.event_dirs = sorted(event_dirs)
    return found


def _latest_states(states: list[Path]) -> list[Path]:
    """One trainer_state.json per output directory: the top-level one, else the latest checkpoint's."""
    by_run: dict[Path, tuple[int, Path]] = {}
    for f in states:
        m = CHECKPOINT.fullmatch(f.parent.name)
        owner, rank = (f.parent.parent, int(m.group(1))) if m else (f.parent, 1 << 62)
        if owner not in by_run or rank > by_run[owner][0]:
            by_run[owner] = (rank, f)
    return [f for _, f in sorted(by_run.values(), key=lambda t: str(t[1]))]


def _attempt(runs: list, failures: list, where: Path, read) -> None:
    try:
        got = read()
    except LogFormatError as exc:
        failures.append(ReadFailure(os.fspath(where), exc))
        return
    runs.extend(got if isinstance(got, list) else [got])


def _tensorboard_runs(root: Path, dirs: list[Path], step, train, val, runs: list, failures: list) -> None:
    scalars = {}
    for d in dirs:
        try:
            scalars[d] = read_scalars(d)
        except LogFormatError as exc:
            failures.append(ReadFailure(os.fspath(d), exc))
    for d, joined in group_runs(root, scalars).items():
        _attempt(runs, failures, d, lambda d=d, sc=joined: curves_from_scalars(d, _name(root, d), sc, step, train, val))


def _table_runs(root: Path, tables: list[Path], step, train, val, live, runs: list, failures: list) -> list[Path]:
    """Read the CSV/JSONL logs; returns the tables that hold no loss (data files, not training logs)."""
    downloads: dict[tuple[Path, str], list[Path]] = {}
    plain = []
    for f in tables:
        named = tb_download_name(f)
        if named is not None:
            downloads.setdefault((f.parent, named[0]), []).append(f)
        else:
            plain.append(f)
    for (folder, run), files in sorted(downloads.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        _attempt(runs, failures, folder, lambda files=files, folder=folder, run=run:
                 tb_downloads_to_curves(files, run, folder, step, train, val))
    not_logs = []
    for f in plain:
        name = _name(root, f.parent) if f.stem in ("metrics", "log", "history") else _name(root, f)
        try:
            runs.extend(read_file(f, step, train, val, run=name, live=live))
        except LogFormatError as exc:
            if exc.problem == "no loss column found" and step is None and train is None and val is None:
                not_logs.append(f)  # a data file or a table without a loss: not a training log
            else:
                failures.append(ReadFailure(os.fspath(f), exc))
    return not_logs


def _read_dir(root: Path, step, train, val, live: bool = False) -> Runs:
    runs: list[Curves] = []
    mlflow = run_dirs(root)
    found = _scan(root)
    failures = list(found.failures)
    not_logs: list[Path] = []
    if mlflow:
        for r in mlflow:
            _attempt(runs, failures, r, lambda r=r: read_mlflow_run(r, step, train, val))
    elif found.states:
        for f in _latest_states(found.states):
            _attempt(runs, failures, f, lambda f=f: read_trainer_state(f, step, train, val, run=_hf_run_name(f)))
    elif found.event_dirs:
        _tensorboard_runs(root, found.event_dirs, step, train, val, runs, failures)
    else:
        not_logs = _table_runs(root, found.tables, step, train, val, live, runs, failures)
    if runs:
        return Runs(runs, failures)
    if len(failures) == 1:
        raise failures[0].error
    if failures:
        raise NoRunReadable(root, failures, expected=EXPECTED)
    shown = ", ".join(f.name for f in not_logs[:5]) or "no log files"
    raise LogFormatError(root, f"no training log found in the directory ({shown})", expected=EXPECTED)

