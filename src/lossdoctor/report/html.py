"""A self-contained HTML report from a Jinja2 template: plots inline, no script, nothing fetched.

``render_html(report_or_list)`` takes a report's plain dict (``Report.to_dict()``, the --json
output), a ``Report``, or a list of either, and returns one page: the verdict and the cause to
fix first at the top, the plots, the findings (root causes with their symptoms under them) with
their evidence, what was ruled out, and the events. ``fragment=True`` returns the compact
``<div>`` a notebook cell shows (``Report._repr_html_``): no page shell, and CSS scoped to
``.lossdoctor`` so it never restyles the notebook around it.

The templates (``templates/``) are rendered with autoescaping on, and Python hands them only
plain strings and numbers: every user string (run names, paths, layer names, evidence keys and
values, remedies) is escaped by construction. This module only prepares data; the plots come
from :mod:`lossdoctor.report.plots`.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from .plots import PLOT_KEYS, draw_plots
from .view import (
    SIGNIFICANT_DIGITS,
    code_title,
    finding_groups,
    fix_first,
    fmt_number,
    is_number,
    merged_events,
    report_dicts,
    summarize,
)

EVIDENCE_LIST_ITEMS = 12  # lists longer than this are shown as their first items and a count
EVIDENCE_NESTED_TABLES = 2  # dicts deeper than this are shown as one line of JSON
EVIDENCE_JSON_CHARS = 200  # ... cut at this length
MAX_CHIPS = 10  # short scalar facts shown as chips; everything else goes into "run details"
MAX_CHIP_CHARS = 80
SHOWN_ELSEWHERE = ("advice", "notes")  # metadata keys the summary shows in their own place

__all__ = ["PLOT_KEYS", "render_html"]


@functools.lru_cache(maxsize=1)
def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("lossdoctor.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["num"] = fmt_number
    env.filters["pct"] = lambda x: f"{float(x):.0%}"
    return env


# -- evidence as a tree the template walks ------------------------------------------------------
def evidence_node(value: Any, depth: int = 0) -> dict[str, Any]:
    """One evidence value as a node: ``{"kind": "number" | "code" | "text" | "table" | "list" |
    "empty", ...}``; tables and lists hold child nodes."""
    if isinstance(value, bool) or value is None:
        return {"kind": "code", "text": str(value)}
    if is_number(value):
        return {"kind": "number", "text": fmt_number(value)}
    if isinstance(value, str):
        return {"kind": "text", "text": value}
    if isinstance(value, Mapping):
        if not value:
            return {"kind": "empty", "text": "(empty)"}
        if depth >= EVIDENCE_NESTED_TABLES:
            text = json.dumps(value, default=str)
            cut = len(text) > EVIDENCE_JSON_CHARS
            return {"kind": "code", "text": text[: EVIDENCE_JSON_CHARS - 3] + "..." if cut else text}
        return {"kind": "table", "rows": [(str(k), evidence_node(v, depth + 1)) for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = list(value)
        if not items:
            return {"kind": "empty", "text": "(empty)"}
        shown = items[:EVIDENCE_LIST_ITEMS]
        flat = all(isinstance(v, (int, float, str, bool)) or v is None for v in shown)
        return {"kind": "list", "inline": flat, "items": [evidence_node(v, depth + 1) for v in shown],
                "total": len(items), "more": len(items) > EVIDENCE_LIST_ITEMS}
    return {"kind": "text", "text": str(value)}


def evidence_rows(evidence: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [("also seen by" if k == "also_seen_by" else str(k), evidence_node(v)) for k, v in evidence.items()]


# -- one report -----------------------------------------------------------------------------------
def _metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    chips, details = [], {}
    for key, value in metadata.items():
        if key in SHOWN_ELSEWHERE or value in (None, "", [], {}):
            continue
        if (isinstance(value, (str, int, float, bool)) and len(chips) < MAX_CHIPS
                and len(str(value)) <= MAX_CHIP_CHARS):
            chips.append((str(key), fmt_number(value) if isinstance(value, float) else str(value)))
        else:
            details[str(key)] = value
    notes = metadata.get("notes")
    return {"chips": chips, "notes": [str(n) for n in notes] if isinstance(notes, list) else [],
            "details": evidence_rows(details) if details else []}


def _finding_model(view) -> dict[str, Any]:
    f = view.finding
    return {
        "rank": view.rank, "nested": view.nested, "code": f["code"], "severity": f["severity"],
        "confidence": f["confidence"], "title": f["title"], "where": f["where"], "source": f["source"],
        "remedy": f["remedy"], "evidence": evidence_rows({k: v for k, v in f["evidence"].items()
                                                           if k not in ("explains", "separating_experiment")}),
        "explained_by": view.explained_by, "explained_by_title": view.explained_by_title,
        "why_explained": view.why_explained,
        "explains": [{"code": c, "title": code_title(c), "reason": r} for c, r in view.explains],
        "separating_experiment": view.separating_experiment,
        "symptoms": [_finding_model(s) for s in view.symptoms],
    }


def report_model(report: dict[str, Any], index: int | None) -> dict[str, Any]:
    """Everything the template shows for one report (a dict from ``report_dict``): plain data."""
    summary = summarize(report)
    groups = finding_groups(report["findings"])
    top = fix_first(groups)
    return {
        "index": index,
        "name": report["source"] or (f"run {index}" if index else "report"),
        "summary": summary,
        "fix_first": _finding_model(top) if top is not None else None,
        "findings": [_finding_model(g) for g in groups],
        "plots": draw_plots(report),
        "events": [{"kind": e["kind"], "step": fmt_number(e["step"]),
                    "value": "" if e["value"] is None else fmt_number(e["value"]), "detail": e["detail"]}
                   for e in merged_events(report["events"])],
        "ruled_out": [{"code": str(r.get("code", "")), "title": code_title(str(r.get("code", ""))),
                       "by": str(r.get("by", "")), "evidence": evidence_rows(r.get("evidence") or {})}
                      for r in report["ruled_out"]],
        "metadata": _metadata(report["metadata"]),
    }


def render_html(report_or_list: Any, *, fragment: bool = False) -> str:
    """The report(s) as one self-contained HTML page (a list: an overview and a section per run);
    ``fragment=True``: the compact, scoped ``<div>`` for a notebook cell."""
    from .. import __version__

    reports, many = report_dicts(report_or_list)
    models = [report_model(r, i if many else None) for i, r in enumerate(reports, 1)]
    title = f"{len(models)} runs" if many else models[0]["name"] if models else "no reports"
    template = _environment().get_template("fragment.html.j2" if fragment else "page.html.j2")
    return template.render(reports=models, many=many, title=title, version=__version__,
                           digits=SIGNIFICANT_DIGITS)
