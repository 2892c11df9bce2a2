"""The terminal rendering of reports, with rich, from the report's plain dict.

Every user string (run names, paths, layer names, evidence keys, remedies) becomes a
``rich.text.Text`` (never markup: ``exp[lr=0.1]/metrics.csv`` prints as it is and ``a[/]b``
cannot break anything) after :func:`~lossdoctor.report.view.clean` has removed ANSI sequences
and control characters. Per finding, the terminal shows the few numbers that matter as
``name = value`` lines; the full evidence is in ``--json`` and the HTML page.
"""
from __future__ import annotations

import io
from typing import Any

from rich.console import Console, Group
from rich.padding import Padding
from rich.panel import Panel
from rich.text import Text

from .view import (
    FindingView,
    clean,
    finding_groups,
    fix_first,
    fmt_number,
    is_number,
    merged_events,
    report_dict,
    report_dicts,
    summarize,
)

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
TONE_STYLE = {"good": "bold green", "neutral": "bold", "caution": "bold yellow", "bad": "bold red"}
TONE_BORDER = {"good": "green", "neutral": "default", "caution": "yellow", "bad": "red"}
SYMPTOM_INDENT = 4  # columns a symptom is indented under its root cause


def _t(text: Any, style: str = "") -> Text:
    """A user string as inert rich Text."""
    return Text(clean(text), style=style)


def _finding(view: FindingView) -> Group:
    f = view.finding
    head = Text()
    head.append(f"#{view.rank} ", style="bold")
    head.append(f"{f['severity'].upper()} ", style=SEVERITY_STYLE[f["severity"]])
    head.append_text(_t(f["code"], "bold"))
    head.append(f"  {f['confidence']:.0%}")
    if f["where"]:
        head.append("  at ", style="dim")
        head.append_text(_t(f["where"]))
    body: list[Text] = [_t(f["title"], "italic")]
    if view.explained_by:
        because = Text("explained by ", style="italic")
        because.append_text(_t(view.explained_by, "bold"))
        if view.why_explained:
            because.append(": ")
            because.append_text(_t(view.why_explained))
        body.append(because)
    if f["remedy"]:
        body.append(Text.assemble(("do: ", "bold green"), _t(f["remedy"])))
    for number in view.numbers:
        line = Text.assemble(_t(number.name), " = ", (number.value, "bold"))
        if number.threshold_name:
            line.append("   (")
            line.append_text(_t(number.threshold_name))
            line.append(f" {number.threshold})")
        body.append(line)
    if view.more_numbers:
        body.append(Text(f"+{view.more_numbers} more in --json / HTML", style="dim"))
    for code, reason in view.explains:
        line = Text.assemble(("explains ", "italic"), _t(code, "bold"))
        if reason:
            line.append(": ")
            line.append_text(_t(reason))
        body.append(line)
    if view.separating_experiment:
        body.append(Text.assemble(("to settle it: ", "bold"), _t(view.separating_experiment)))
    for words, what in view.related:
        body.append(Text.assemble((f"{words}: ", "dim"), _t(what, "dim")))
    indent = len(view.rank) + 2
    parts: list[Any] = [head, Padding(Group(*body), (0, 0, 0, indent))]
    for symptom in view.symptoms:
        parts.append(Padding(_finding(symptom), (0, 0, 0, SYMPTOM_INDENT)))
    return Group(*parts)


def renderable(report: Any) -> Panel:
    """A rich renderable for one report (a Report or its dict)."""
    data = report_dict(report)
    summary = summarize(data)
    header = Text("verdict: ")
    header.append(summary.label, style=TONE_STYLE[summary.tone])
    header.append(f"  ({summary.meaning})", style="dim")
    parts: list[Any] = [header]
    if summary.qualifier:
        parts.append(Text(summary.qualifier, style=TONE_STYLE[summary.tone]))
    events = merged_events(data["events"])
    if events:
        line = Text("events: ", style="dim")
        for i, e in enumerate(events):
            if i:
                line.append("; ", style="dim")
            line.append_text(_t(f"{e['kind']} at step {fmt_number(e['step'])}", "dim"))
            if e["detail"]:
                line.append_text(_t(f" ({e['detail']})", "dim"))
        parts.append(line)
    if summary.advice:
        parts.append(Text.assemble(("advice: ", "bold"), _t(summary.advice)))
    groups = finding_groups(data["findings"])
    top = fix_first(groups)
    if top is not None:
        parts.append(Text.assemble(("fix first: ", "bold"), _t(top.finding["code"], "bold"), ": ",
                                   _t(top.finding["remedy"] or top.finding["title"])))
        for group in groups:
            parts.append(Text(""))
            parts.append(_finding(group))
    elif summary.nothing_to_fix:
        parts.append(Text("no findings: nothing to fix.", style="green"))
    elif not summary.advice:
        parts.append(Text("no cause could be named from this evidence alone; `lossdoctor checkup` runs the "
                          "experiments that would name one.", style="yellow"))
    if data["ruled_out"]:
        parts.append(Text(""))
        parts.append(Text("ruled out:", style="bold"))
        for r in data["ruled_out"]:
            line = Text("  ")
            line.append_text(_t(r.get("code", "?"), "bold"))
            line.append(" by ")
            line.append_text(_t(r.get("by", "?")))
            numbers = ", ".join(f"{k} = {fmt_number(v)}" for k, v in (r.get("evidence") or {}).items()
                                if is_number(v))
            if numbers:
                line.append_text(_t(f" ({numbers})", "dim"))
            parts.append(line)
    title = Text("lossdoctor: ")
    title.append_text(_t(data["source"] or "report"))
    return Panel(Group(*parts), title=title, title_align="left", border_style=TONE_BORDER[summary.tone])


def print_report(report: Any, console: Console | None = None) -> None:
    """Print a report, or a list of them, to the terminal."""
    console = console or Console()
    reports, _ = report_dicts(report)
    for r in reports:
        console.print(renderable(r))


def render_text(report: Any, width: int = 100) -> str:
    """The terminal rendering as plain text (no colour codes), e.g. for ``str(report)``."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, color_system=None)
    reports, _ = report_dicts(report)
    for r in reports:
        console.print(renderable(r))
    return buffer.getvalue()
