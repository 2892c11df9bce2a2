"""One Report from one Evidence: the checks and the differential (``registry.diagnose_evidence``),
the verdict and events of the curves, their numbers under ``metadata["curve_evidence"]``, and the
curves' plot data. Every entry point ends here, so a log, a live run, a callback and a checkup
give reports of the same shape."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from .codes import VERDICT_ADVICE
from .findings import Finding, Report
from .registry import Evidence, diagnose_evidence

CURVE_EVIDENCE = "curve_evidence"  # the metadata key of the curve analysis' numbers


def build_report(evidence: Evidence, *, source: str, metadata: Mapping[str, Any] | None = None,
                 plots: Mapping[str, Any] | None = None, extra: Iterable[Finding] = ()) -> Report:
    diagnosis = diagnose_evidence(evidence, extra)
    analysis = evidence.analysis
    meta: dict[str, Any] = dict(metadata or {})
    events = list(diagnosis.events)
    verdict = None
    if analysis is not None:
        verdict = analysis.verdict
        events = [*analysis.events, *events]
        meta[CURVE_EVIDENCE] = analysis.evidence
        meta.setdefault("advice", VERDICT_ADVICE[verdict])
    all_plots: dict[str, Any] = {}
    if evidence.curves is not None:
        all_plots["curves"] = {name: s.to_plot() for name, s in evidence.curves.series.items()}
    for key, value in (plots or {}).items():
        if key == "curves":
            all_plots.setdefault("curves", {}).update({k: v for k, v in value.items()
                                                       if k not in all_plots.get("curves", {})})
        else:
            all_plots[key] = value
    return Report(verdict=verdict, findings=diagnosis.findings, source=source, metadata=meta,
                  events=sorted(events, key=lambda e: e.step), plots=all_plots)
