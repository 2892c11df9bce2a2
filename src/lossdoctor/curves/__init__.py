"""What the loss curves show (one verdict per run), and the causes the log itself supports.

``analyze_curves(curves)`` turns a :class:`~lossdoctor.evidence.Curves` into a
:class:`CurveAnalysis`: a verdict from TAXONOMY.md (``verdict.judge``), the events on the curves
(overfitting onset, divergence, first NaN, plateau, end of warm-up) and the numbers behind them;
then the curve checks (``checks``) add the causes that the log supports.
"""
from __future__ import annotations

from ..codes import VERDICT_ADVICE
from ..evidence import Curves
from ..findings import Report
from ..registry import run_checks
from . import checks as _checks  # noqa: F401 - registers the curve checks
from .checks import FLOAT32_EXP_LIMIT, GRAD_EXPLODE_ERROR_RATIO, GRAD_EXPLODE_RATIO, LR_TOO_LOW
from .verdict import CHANCE_LEVEL_META, MIN_POINTS, MIN_VAL_POINTS, CurveAnalysis, judge


def analyze_curves(curves: Curves) -> CurveAnalysis:
    """Verdict, events, causes and evidence for one run.

    Needs only a training loss (``train_loss``; a run with only ``val_loss`` is judged on it);
    uses ``val_loss`` for overfitting, ``lr`` for warm-up and ``grad_norm`` for exploding gradients
    when present. Pure: reads nothing but ``curves``.
    """
    analysis = judge(curves)
    analysis.findings = run_checks("curves", curves, analysis=analysis)
    return analysis


def diagnose_curves(curves: Curves) -> Report:
    """A Report for one run: the verdict, ranked findings, events, evidence and plot data."""
    analysis = analyze_curves(curves)
    meta = dict(curves.meta)
    meta.setdefault("format", curves.meta.get("format", "unknown"))
    meta.update(
        run=curves.run,
        n_points={name: len(s) for name, s in curves.series.items()},
        evidence=analysis.evidence,
        advice=VERDICT_ADVICE[analysis.verdict],
    )
    return Report(
        verdict=analysis.verdict,
        findings=analysis.findings,
        source=curves.source,
        metadata=meta,
        events=sorted(analysis.events, key=lambda e: e.step),
        plots={"curves": {name: s.to_plot() for name, s in curves.series.items()}},
    )


__all__ = ["CurveAnalysis", "analyze_curves", "diagnose_curves", "judge", "VERDICT_ADVICE", "CHANCE_LEVEL_META",
           "MIN_POINTS", "MIN_VAL_POINTS", "FLOAT32_EXP_LIMIT", "GRAD_EXPLODE_RATIO", "GRAD_EXPLODE_ERROR_RATIO",
           "LR_TOO_LOW"]
