"""Terminal rendering of Reports with rich."""
from __future__ import annotations

import io
import json
from typing import Iterable

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..codes import VERDICTS
from ..findings import Finding, Report
from . import verdict_advice

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
VERDICT_STYLE = {"converging": "bold green", "insufficient_data": "bold yellow"}


# Evidence is shown to 4 significant digits: enough to compare with a threshold, short enough to read.
EVIDENCE_DIGITS = 4
# Longer nested evidence (lists of steps, per-layer dicts) is cut here; JSON/HTML carry it whole.
EVIDENCE_MAX_CHARS = 120


def _short(value):
    if isinstance(value, float):
        return float(f"{value:.{EVIDENCE_DIGITS}g}")
    if isinstance(value, dict):
        return {k: _short(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_short(v) for v in value]
    return value


def _evidence_text(evidence: dict) -> str:
    parts = []
    for key, value in evidence.items():
        if key == "also_seen_by":
            parts.append("also seen by " + ", ".join(value))
            continue
        value = _short(value)
        if isinstance(value, float):
            value = f"{value:g}"
        elif isinstance(value, (list, dict)):
            value = json.dumps(value)
            if len(value) > EVIDENCE_MAX_CHARS:
                value = value[: EVIDENCE_MAX_CHARS - 3] + "..."
        parts.append(f"{key}={value}")
    return "; ".join(parts)


def _finding_table(findings: Iterable[Finding]) -> Table:
    table = Table(show_header=True, header_style="bold", expand=True, show_lines=True)
    table.add_column("#", width=3, justify="right")
    table.add_column("finding", ratio=3)
    table.add_column("evidence", ratio=3)
    table.add_column("do this", ratio=4)
    for i, f in enumerate(findings, 1):
        head = Text()
        head.append(f"{f.severity.upper()} ", style=SEVERITY_STYLE[f.severity])
        head.append(f.code, style="bold")
        head.append(f"  ({f.confidence:.0%})\n")
        head.append(f.title)
        if f.where:
            head.append(f"\nwhere: {f.where}", style="dim")
        table.add_row(str(i), head, Text(_evidence_text(f.evidence)), Text(f.remedy))
    return table


def renderable(report: Report):
    """A rich renderable for one report."""
    verdict = report.verdict or "no curves examined"
    style = VERDICT_STYLE.get(report.verdict or "", "bold red" if report.verdict else "bold")
    header = Text()
    header.append("verdict: ")
    header.append(verdict, style=style)
    if report.verdict:
        header.append(f"  ({VERDICTS[report.verdict]})", style="dim")
    parts = [header]
    if report.events:
        events = "; ".join(
            f"{e.kind} at step {e.step:g}" + (f" ({e.detail})" if e.detail else "") for e in report.events
        )
        parts.append(Text(f"events: {events}", style="dim"))
    advice = verdict_advice(report)
    if advice and report.verdict != "converging":
        parts.append(Text.assemble(("advice: ", "bold"), str(advice)))
    if report.top is not None:
        parts.append(Text.assemble(("fix first: ", "bold"), f"{report.top.code}: {report.top.remedy}"))
        parts.append(_finding_table(report.findings))
    elif report.verdict in (None, "converging"):
        parts.append(Text("no findings: nothing to fix.", style="green"))
    elif not advice:
        parts.append(Text("no cause could be named from this evidence alone; "
                          "`lossdoctor checkup` runs the experiments that would name one.", style="yellow"))
    if report.ruled_out:
        ruled = Table(title="ruled out", show_header=True, header_style="bold", expand=True)
        ruled.add_column("cause")
        ruled.add_column("by")
        ruled.add_column("evidence")
        for r in report.ruled_out:
            ruled.add_row(r.code, r.by, _evidence_text(r.evidence))
        parts.append(ruled)
    return Panel(Group(*parts), title=f"lossdoctor: {report.source or 'report'}", title_align="left")


def print_report(report: Report | list[Report], console: Console | None = None) -> None:
    console = console or Console()
    for r in report if isinstance(report, list) else [report]:
        console.print(renderable(r))


def render_text(report: Report, width: int = 100) -> str:
    """The terminal rendering as plain text (no colour codes), e.g. for ``str(report)``."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, color_system=None)
    console.print(renderable(report))
    return buffer.getvalue()
