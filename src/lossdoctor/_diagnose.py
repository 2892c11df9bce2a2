"""``diagnose``: read the logs people already have and say what the curves show, and why.

``diagnose(path)`` reads every run it can. Logs of a directory that cannot be read do not stop the
others: each is named in a :class:`~lossdoctor.errors.UnreadableLogWarning` and in every report's
``metadata["unreadable"]`` (a list of ``{"path", "error", "line"?, "expected"?}``);
``diagnose_path`` returns them instead. ``follow`` re-reads a growing log and stops at the first
certain problem.
"""
from __future__ import annotations

import os
import time
import warnings
from typing import Callable

from .errors import LogFormatError, UnreadableLogWarning, printable
from .evidence import Curves
from .findings import Report

# Verdicts that no amount of further training undoes: the job can be stopped. (A run stalled at
# chance level joins them: see certain_problem.)
CERTAIN_PROBLEMS = ("non_finite", "diverging")
DEFAULT_FOLLOW_INTERVAL_S = 10.0


def diagnose(
    source: str | os.PathLike | Curves | None = None,
    *,
    step: str | None = None,
    train: str | None = None,
    val: str | None = None,
    mlflow: str | None = None,
    experiment: str | None = None,
    run: str | None = None,
) -> Report | list[Report]:
    """Diagnose a log file, a directory of logs, already-read ``Curves``, or an MLflow store.

    Returns one Report for one run and a list of Reports when the path holds several runs
    (a TensorBoard directory with several runs, say), mirroring ``lossdoctor diagnose --json``.
    ``step``/``train``/``val`` name the columns to use when the automatic recognition is wrong.
    ``mlflow`` is a tracking URI (``sqlite:///mlflow.db``, ``http://host:5000``, a ``mlruns`` path),
    narrowed by ``experiment`` (a name) or ``run`` (an id); it needs ``lossdoctor[mlflow]``.
    Raises ``LogFormatError`` (a ``LossDoctorError``) when no run can be read; logs of a directory that
    cannot be read beside readable ones are reported as warnings and in ``metadata["unreadable"]``.
    """
    from .curves import diagnose_curves

    if isinstance(source, Curves):
        return diagnose_curves(source)
    if mlflow is not None:
        reports, failures = diagnose_mlflow(mlflow, experiment=experiment, run=run, step=step, train=train, val=val)
    elif source is None:
        raise TypeError("diagnose() needs a path, Curves, or mlflow=URI")
    else:
        reports, failures = diagnose_path(source, step=step, train=train, val=val)
    for failure in failures:
        warnings.warn(f"lossdoctor: skipped an unreadable log: {failure}", UnreadableLogWarning, stacklevel=2)
    return reports[0] if len(reports) == 1 else reports


def _reports(runs) -> tuple[list[Report], list]:
    from .curves import diagnose_curves

    reports = [diagnose_curves(c) for c in runs]
    if runs.failures:
        unreadable = [f.to_dict() for f in runs.failures]
        for r in reports:
            r.metadata["unreadable"] = unreadable
    return reports, list(runs.failures)


def diagnose_path(path: str | os.PathLike, *, step: str | None = None, train: str | None = None,
                  val: str | None = None, live: bool = False) -> tuple[list[Report], list]:
    """The reports of every readable run in ``path`` and the :class:`~lossdoctor.logs.ReadFailure` of
    every log that could not be read (raises only when not one run could be)."""
    from .logs import read_runs

    return _reports(read_runs(path, step=step, train=train, val=val, live=live))


def diagnose_mlflow(uri: str, *, experiment: str | None = None, run: str | None = None, step: str | None = None,
                    train: str | None = None, val: str | None = None) -> tuple[list[Report], list]:
    """Like :func:`diagnose_path`, for the runs of an MLflow store or server."""
    from .logs import read_mlflow

    return _reports(read_mlflow(uri, experiment=experiment, run=run, step=step, train=train, val=val))


def certain_problem(report: Report) -> str | None:
    """What makes a run certainly broken, or None: a NaN/Inf loss, a divergence, or a loss that has
    stopped falling at chance level (a plateau at chance, not a run still falling from its start)."""
    if report.verdict in CERTAIN_PROBLEMS:
        return report.verdict
    evidence = report.metadata.get("curve_evidence") or {}
    if report.verdict == "stalled" and evidence.get("ended_at_chance"):
        return "stalled at chance level"
    return None


def _state_line(report: Report) -> str:
    evidence = report.metadata.get("curve_evidence") or {}
    last = evidence.get("last_step")
    where = f"step {last:g}: " if isinstance(last, (int, float)) else ""
    line = f"{printable(report.metadata.get('run', report.source))}: {where}{report.verdict}"
    if report.top is not None:
        line += f"; fix first: {report.top.code} ({printable(report.top.title)})"
    return line


def follow(path: str | os.PathLike, *, interval: float = DEFAULT_FOLLOW_INTERVAL_S, step: str | None = None,
           train: str | None = None, val: str | None = None, out: Callable[[str], None] = print,
           stop: Callable[[], bool] | None = None, sleep: Callable[[float], None] | None = None) -> int:
    """Re-read a growing log every ``interval`` seconds and print (through ``out``) one line whenever a
    run's verdict or top finding changes. Returns 1 at the first certain problem (NaN/Inf at once; a
    divergence or a plateau at chance level once two reads in a row show it), so that a job script can
    stop the run; 0 once ``stop()`` says so (the command line follows until Ctrl-C). A last line still
    being written is not an error; a log that cannot be read yet (missing, empty, no loss column yet) is
    said once and waited for, and a read that fails after a good one (a file caught while rewritten
    whole) leaves the last verdict standing.
    """
    shown: dict[str, tuple] = {}
    suspected: dict[str, str] = {}  # run -> the problem seen at the previous read, awaiting confirmation
    waiting = None
    while True:
        try:
            reports, _ = diagnose_path(path, step=step, train=train, val=val, live=True)
        except LogFormatError as exc:
            reports = []
            # before the first good read, say what is awaited; after it, a failed read is a file caught
            # mid-rewrite (trainer_state.json is rewritten whole at each save): the last verdict stands
            if not shown and str(exc) != waiting:
                out(f"waiting: {printable(exc)}")
                waiting = str(exc)
        for report in reports:
            key = str(report.metadata.get("run", report.source))
            state = (report.verdict, report.top.code if report.top else None)
            if shown.get(key) != state:
                shown[key] = state
                out(_state_line(report))
            problem = certain_problem(report)
            # A NaN loss is final at once; a divergence or a plateau judged on part of a run must hold at
            # the next read too, so that one noisy stretch early in training cannot stop a healthy job.
            if problem and (problem == "non_finite" or suspected.get(key) == problem):
                out(f"{printable(key)}: stopping: {problem}")
                return 1
            if problem:
                suspected[key] = problem
            else:
                suspected.pop(key, None)
        if stop is not None and stop():
            return 0
        (sleep or time.sleep)(interval)
