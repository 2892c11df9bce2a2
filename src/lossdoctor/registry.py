"""The one way to register a check.

A check is a small pure function named after what it detects. It takes one kind of evidence
(and keyword context) and returns findings; it reads no file and decides no verdict::

    @check("model")
    def double_softmax(facts: ModelFacts, **context) -> list[Finding]:
        ...

``run_checks("model", facts, loss_fn=...)`` runs every check of that kind, in registration
order. A check that raises is reported once as a warning and skipped: a bug in lossdoctor must
never stop a diagnosis (set LOSSDOCTOR_STRICT=1, as the tests do, to let it raise).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable

from .findings import Finding
from .internal import report_internal_error

# The kinds of evidence checks take. One list, so a typo in a decorator fails at import time.
EVIDENCE_KINDS = ("curves", "model", "data", "stats", "probes")

CheckFn = Callable[..., Iterable[Finding]]
_CHECKS: dict[str, list[CheckFn]] = {kind: [] for kind in EVIDENCE_KINDS}


def check(kind: str) -> Callable[[CheckFn], CheckFn]:
    if kind not in _CHECKS:
        raise ValueError(f"unknown evidence kind {kind!r}; one of {EVIDENCE_KINDS}")

    def register(fn: CheckFn) -> CheckFn:
        if fn not in _CHECKS[kind]:
            _CHECKS[kind].append(fn)
        return fn

    return register


def registered(kind: str) -> list[CheckFn]:
    return list(_CHECKS[kind])


def run_checks(kind: str, evidence: Any, **context: Any) -> list[Finding]:
    findings: list[Finding] = []
    for fn in _CHECKS[kind]:
        try:
            findings.extend(fn(evidence, **context) or [])
        except Exception as exc:  # noqa: BLE001 - a failing check must not stop the diagnosis
            if os.environ.get("LOSSDOCTOR_STRICT"):
                raise
            report_internal_error(f"check {fn.__module__}.{fn.__name__}", exc)
    return findings
