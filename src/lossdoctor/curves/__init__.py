"""What the loss curves show (one verdict per run), and the causes the log itself supports.

``analyze_curves(curves)`` turns a :class:`~lossdoctor.evidence.Curves` into a
:class:`CurveAnalysis`: a verdict from TAXONOMY.md (``verdict.judge``), the events on the curves
(overfitting onset, divergence, first NaN, plateau, end of warm-up) and the numbers behind them;
then the curve checks (``checks``, run through the registry) add the causes the log supports.
"""
from __future__ import annotations

from ..codes import VERDICT_ADVICE
from ..evidence import Curves
from ..findings import Report
from ..registry import Evidence, diagnose_evidence
from .checks import FLOAT32_EXP_LIMIT, GRAD_EXPLODE_ERROR_RATIO, GRAD_EXPLODE_RATIO, LR_TOO_LOW
from .verdict import CHANCE_LEVEL_META, MIN_POINTS, MIN_VAL_POINTS, CurveAnalysis, judge


def analyze_curves(curves: Curves) -> CurveAnalysis:
    """Verdict, events, causes and evidence for one run, from its curves alone.

    Needs only a training loss (``train_loss``; a run with only ``val_loss`` is judged on it);
    uses ``val_loss`` for overfitting, ``lr`` for warm-up and ``grad_norm`` for exploding gradients
    when present. Pure: reads nothing but ``curves``.
    """
    analysis = judge(curves)
    diagnosis = diagnose_evidence(Evidence(curves=curves, analysis=analysis))
    analysis.findings = diagnosis.findings
    analysis.events.extend(diagnosis.events)
    return analysis


def diagnose_curves(curves: Curves) -> Report:
    """A Report for one run's log: the verdict, ranked findings, events, evidence and plot data."""
    from ..assemble import build_report

    meta = dict(curves.meta)
    meta.setdefault("format", "unknown")
    meta.update(run=curves.run, n_points={name: len(s) for name, s in curves.series.items()})
    return build_report(Evidence(curves=curves, analysis=judge(curves)), source=curves.source, metadata=meta)


__all__ = ["CurveAnalysis", "analyze_curves", "diagnose_curves", "judge", "VERDICT_ADVICE", "CHANCE_LEVEL_META",
           "MIN_POINTS", "MIN_VAL_POINTS", "FLOAT32_EXP_LIMIT", "GRAD_EXPLODE_RATIO", "GRAD_EXPLODE_ERROR_RATIO",
           "LR_TOO_LOW"]
