"""Rendering reports: the terminal (rich), a self-contained HTML page, a notebook cell.

Every renderer takes a report as the plain dict of the JSON schema (``Report.to_dict()``, the
output of ``--json``), a ``Report`` (converted with its ``to_dict``), or a list of either; this
package never imports ``lossdoctor.findings``. A saved JSON report renders again::

    render_html(json.load(open("report.json")))

Renderers rank nothing and decide nothing: the shared wording and the verdict box's tone come
from :mod:`lossdoctor.report.view`. rich, matplotlib and Jinja2 are imported on first use.
"""
from __future__ import annotations

from typing import Any

from .view import report_dict, summarize, verdict_advice, verdict_tone


def render_html(report_or_list: Any, *, fragment: bool = False) -> str:
    """One self-contained HTML page (a list: one section per run). ``fragment=True`` gives the
    compact, scoped ``<div>`` a notebook shows (no ``<html>`` shell, CSS that only styles itself)."""
    from .html import render_html as render

    return render(report_or_list, fragment=fragment)


def render_text(report_or_list: Any, width: int = 100) -> str:
    """The terminal rendering as plain text (no colour codes)."""
    from .console import render_text as render

    return render(report_or_list, width=width)


def print_report(report_or_list: Any, console: Any = None) -> None:
    """Print to the terminal (a ``rich.console.Console``, or a new one)."""
    from .console import print_report as emit

    emit(report_or_list, console=console)


__all__ = ["print_report", "render_html", "render_text", "report_dict", "summarize", "verdict_advice", "verdict_tone"]
