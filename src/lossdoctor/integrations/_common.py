"""What the framework callbacks share: recording curves step by step, a regularization check that
needs both the model and the curves, assembling the final Report, and keeping lossdoctor's own
failures out of the user's training. Imports no framework (torch only where a tensor is handed in).
"""
from __future__ import annotations

import functools
import math
import os
from collections import defaultdict
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..evidence import Curves
from ..findings import Finding, Report
from ..internal import report_internal_error

STRICT_ENV = "LOSSDOCTOR_STRICT"


def require(module: str, extra: str):
    """Import a framework, or fail with the one command that installs it."""
    from importlib import import_module

    try:
        return import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"this lossdoctor integration needs {module!r}: pip install '{extra}'") from exc


def guarded(where: str) -> Callable:
    """Run a callback hook so that a failure inside lossdoctor never stops the user's training.

    The failure is reported once (``report_internal_error``) and the hook returns None. With
    ``LOSSDOCTOR_STRICT=1`` (the tests) it raises instead, so bugs cannot hide.
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - lossdoctor must not break a training run
                if os.environ.get(STRICT_ENV):
                    raise
                report_internal_error(f"{where}.{fn.__name__}", exc)
                return None

        return run

    return decorate


class WatchOwner:
    """The ``lossdoctor.watch`` a framework callback owns, and the one way it is let go: at the end
    of training, on an exception the framework reports, or by the user's ``close()`` after a crash
    the framework does not report (Hugging Face and Keras give callbacks no event on an exception)."""

    _watch = None

    def close(self) -> None:
        """Remove the watch's hooks from the model now; safe to call more than once."""
        self._close_watch()

    @guarded("integration")
    def _close_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()


class CurveRecorder:
    """Step-indexed metrics recorded during training, turned into a :class:`Curves` at the end.

    Values may be Python numbers or tensors. Tensors are kept as they are (on their device) and
    converted in one batch by :meth:`flush`, so recording adds no host synchronisation per step.
    Several values at one step (gradient accumulation, several loggers) are averaged.
    """

    def __init__(self) -> None:
        self._points: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
        self._pending: list[tuple[str, float, Any]] = []

    def add(self, name: str, step: float, value: Any) -> None:
        if value is None:
            return
        if hasattr(value, "detach"):
            self._pending.append((name, float(step), value.detach().reshape(())))
            return
        steps, values = self._points[name]
        steps.append(float(step))
        values.append(float(value))

    def flush(self) -> list[tuple[str, float, float]]:
        """Move pending tensor values to the host (one transfer); returns what was flushed."""
        if not self._pending:
            return []
        import torch

        pending, self._pending = self._pending, []
        host = torch.stack([t.float().to(pending[0][2].device) for _, _, t in pending]).cpu().tolist()
        flushed = []
        for (name, step, _), value in zip(pending, host):
            steps, values = self._points[name]
            steps.append(step)
            values.append(value)
            flushed.append((name, step, value))
        return flushed

    def to_curves(self, run: str, source: str, meta: Mapping[str, Any] | None = None) -> Curves:
        self.flush()
        curves = Curves(run=run, source=source, meta=dict(meta or {}))
        for name, (steps, values) in self._points.items():
            if not steps:
                continue
            s = np.asarray(steps, dtype=np.float64)
            v = np.asarray(values, dtype=np.float64)
            # sorted by step; repeated steps averaged (a NaN stays NaN: it must remain visible)
            unique, inverse = np.unique(s, return_inverse=True)
            curves.add(name, unique, np.bincount(inverse, weights=v) / np.bincount(inverse))
        return curves


def torch_dropout_rates(module: Any) -> dict[str, float]:
    """Dropout probability of every torch dropout layer, by module name."""
    import torch

    kinds = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d,
             torch.nn.AlphaDropout, torch.nn.FeatureAlphaDropout)
    return {name or type(m).__name__: float(m.p) for name, m in module.named_modules() if isinstance(m, kinds)}


# ------------------------------------------------------------------------------------------------
# The final report.


def start_watch(model: Any, optimizer: Any = None, **kwargs: Any):
    """``lossdoctor.watch`` on the model, started; None (reported once) if watching fails."""
    from ..monitor import watch

    w = watch(model, optimizer, **kwargs)
    start = getattr(w, "start", None)
    if callable(start) and not getattr(w, "started", False):
        start()
    return w


def assemble_report(curves: Curves, stats: Any = None, extra: Iterable[Finding] = (), *, source: str,
                    run: Any = None, metadata: Mapping[str, Any] | None = None) -> Report:
    """One Report from the framework's logged curves, the live watch's read-out (``stats``, a
    ``WatchStats``) and what the callback knows of the run (``run``, a ``RunFacts``), through the
    registry and the differential like every other entry point.

    The verdict comes from the logged curves (they hold the validation loss); when they hold no
    loss at all, the watch's per-step losses are judged instead.
    """
    from ..assemble import build_report
    from ..curves import judge
    from ..evidence import TRAIN_LOSS, VAL_LOSS
    from ..registry import Evidence

    plots: dict[str, Any] = {}
    meta = dict(metadata or {})
    if stats is not None:
        from ..monitor.stats import stats_plots

        if curves.get(TRAIN_LOSS) is None and curves.get(VAL_LOSS) is None and stats.loss_steps.size:
            curves.add(TRAIN_LOSS, stats.loss_steps, stats.loss_values)
        plots = stats_plots(stats)
        meta.setdefault("watch", {"steps": stats.steps, "every": stats.every,
                                  "instrumented_steps": len(stats.sample_steps), "world_size": stats.world_size})
    analysis = judge(curves) if curves.series else None
    evidence = Evidence(curves=curves, analysis=analysis, stats=stats, run=run)
    return build_report(evidence, source=source, metadata=meta, plots=plots, extra=extra)


def summary_metrics(report: Report, prefix: str = "lossdoctor") -> dict[str, float]:
    """Numbers a metrics logger can plot: counts by severity, and each cause's confidence."""
    metrics: dict[str, float] = {
        f"{prefix}/converging": float(report.verdict == "converging"),
        f"{prefix}/errors": float(sum(f.severity == "error" for f in report.findings)),
        f"{prefix}/warnings": float(sum(f.severity == "warning" for f in report.findings)),
    }
    for f in report.findings:
        key = f"{prefix}/{f.code}"
        metrics[key] = max(metrics.get(key, 0.0), f.confidence)
    return metrics


def report_markdown(report: Report) -> str:
    """The report as short Markdown (TensorBoard's text plugin renders it)."""
    lines = [f"**verdict:** `{report.verdict}`", ""]
    for f in report.findings:
        where = f" ({f.where})" if f.where else ""
        lines.append(f"- **{f.severity}** `{f.code}`{where}: {f.title}. *Remedy:* {f.remedy}")
    if not report.findings:
        lines.append("- no findings")
    return "\n".join(lines)


def is_finite_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
