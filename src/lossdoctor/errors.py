"""The errors lossdoctor raises for bad input. Each names what was read, where, and what was expected."""
from __future__ import annotations

import os
import re


class LossDoctorError(Exception):
    """Base class: the CLI prints these as one line and exits with code 2."""


class LogFormatError(LossDoctorError):
    """A log file lossdoctor cannot read: empty, truncated, malformed, or missing a metric."""

    def __init__(self, path: str | os.PathLike, problem: str, line: int | None = None, expected: str | None = None):
        self.path = os.fspath(path)
        self.line = line
        self.problem = problem
        self.expected = expected
        where = self.path if line is None else f"{self.path}:{line}"
        msg = f"{where}: {problem}"
        if expected:
            msg += f" (expected {expected})"
        super().__init__(msg)


class NoRunReadable(LogFormatError):
    """A directory (or store) held logs, but not one of them could be read. ``failures`` lists each
    unreadable log as a :class:`~lossdoctor.logs.ReadFailure` (its path and its LogFormatError)."""

    def __init__(self, path: str | os.PathLike, failures: list, expected: str | None = None):
        self.failures = list(failures)
        n = len(self.failures)
        problem = f"none of the {n} logs found could be read" if n > 1 else "the log found could not be read"
        super().__init__(path, problem, expected=expected)


class UnreadableLogWarning(UserWarning):
    """``diagnose(directory)`` read some runs but not this log (named in the message)."""


class InputError(LossDoctorError, ValueError):
    """A model, dataset or argument that cannot be diagnosed (no parameters, one row, ...)."""


class TrainingHalted(LossDoctorError):
    """``watch(..., halt_on_nan=True)`` stopped the run at the first NaN/Inf, before the optimizer
    applied it. ``finding`` is the ``grad.non_finite`` Finding (module, step, what produced it)."""

    def __init__(self, finding, message: str | None = None):
        self.finding = finding
        super().__init__(message or f"lossdoctor halted training: {finding.title} "
                                    f"(at {finding.where}; evidence {finding.evidence})")


# C0 controls (ESC of ANSI sequences among them), DEL and C1 controls: a file name may hold any of
# them, and printed raw they would move the cursor, recolour or clear the user's terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """``text`` safe to print on a terminal: control characters shown as escapes (``\\x1b``), the rest kept."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))
