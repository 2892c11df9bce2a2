"""Rendering a Report: console (rich) and HTML (matplotlib). Renderers rank nothing and decide nothing."""
from __future__ import annotations


def verdict_advice(report) -> str | None:
    """The one line of advice for the report's verdict: the report's own (``metadata["advice"]``,
    written by the curve analysis) or else the curve analysis' table, so that every renderer says
    the same thing for reports that did not come through ``diagnose`` (a checkup, a watch)."""
    advice = report.metadata.get("advice")
    if isinstance(advice, str) and advice:
        return advice
    if report.verdict is None:
        return None
    from ..codes import VERDICT_ADVICE

    return VERDICT_ADVICE.get(report.verdict)
