"""Reporting lossdoctor's own failures: once, as a warning, never as an exception in the user's run."""
from __future__ import annotations

import warnings

_reported: set[str] = set()


class LossDoctorInternalWarning(RuntimeWarning):
    """lossdoctor hit a bug of its own and skipped that part; the user's training goes on."""


def report_internal_error(where: str, exc: BaseException) -> None:
    key = f"{where}:{type(exc).__name__}"
    if key in _reported:
        return
    _reported.add(key)
    warnings.warn(
        f"lossdoctor: {where} failed and was skipped ({type(exc).__name__}: {exc}); "
        "your training is not affected. Please report this.",
        LossDoctorInternalWarning,
        stacklevel=3,
    )

