"""``diagnose``: read the logs people already have and say what the curves show, and why."""
from __future__ import annotations

import os

from .evidence import Curves
from .findings import Report


def diagnose(
    source: str | os.PathLike | Curves,
    *,
    step: str | None = None,
    train: str | None = None,
    val: str | None = None,
) -> Report | list[Report]:
    """Diagnose a log file, a directory of logs, or already-read ``Curves``.

    Returns one Report for one run and a list of Reports when the path holds several runs
    (a TensorBoard directory with several runs, say), mirroring ``lossdoctor diagnose --json``.
    ``step``/``train``/``val`` name the columns to use when the automatic recognition is wrong.
    Raises ``LogFormatError`` (a ``LossDoctorError``) for logs that cannot be read.
    """
    from .curves import diagnose_curves
    from .logs import read_runs

    if isinstance(source, Curves):
        return diagnose_curves(source)
    reports = [diagnose_curves(c) for c in read_runs(source, step=step, train=train, val=val)]
    return reports[0] if len(reports) == 1 else reports

