"""The errors lossdoctor raises for bad input. Each names what was read, where, and what was expected."""
from __future__ import annotations

import os


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


class InputError(LossDoctorError, ValueError):
    """A model, dataset or argument that cannot be diagnosed (no parameters, one row, ...)."""


class TrainingHalted(LossDoctorError):
    """``watch(..., halt_on_nan=True)`` stopped the run at the first NaN/Inf, before the optimizer
    applied it. ``finding`` is the ``grad.non_finite`` Finding (module, step, what produced it)."""

    def __init__(self, finding, message: str | None = None):
        self.finding = finding
        super().__init__(message or f"lossdoctor halted training: {finding.title} "
                                    f"(at {finding.where}; evidence {finding.evidence})")
