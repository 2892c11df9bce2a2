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


# ------------------------------------------------------------------------------------------------
# Regularization: visible only with the model (dropout rates) and the curves (no learning) together.

# The seed: dropout 0.5 on every fully connected layer kept the training loss within 0.2 of its
# start until dropout was removed. At 0.5 and above, half or more of the units are dropped.
HIGH_DROPOUT_RATE = 0.5
# Verdicts that say the model does not fit its training data (what too strong regularization does).
NOT_FITTING_VERDICTS = ("underfitting", "stalled")


def torch_dropout_rates(module: Any) -> dict[str, float]:
    """Dropout probability of every torch dropout layer, by module name."""
    import torch

    kinds = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d,
             torch.nn.AlphaDropout, torch.nn.FeatureAlphaDropout)
    return {name or type(m).__name__: float(m.p) for name, m in module.named_modules() if isinstance(m, kinds)}


def regularization_findings(dropout_rates: Mapping[str, float], verdict: str | None,
                            source: str) -> list[Finding]:
    """``model.regularization_too_strong`` when the run did not fit and dropout is high."""
    high = {name: rate for name, rate in dropout_rates.items() if rate >= HIGH_DROPOUT_RATE}
    if not high or verdict not in NOT_FITTING_VERDICTS:
        return []
    names = sorted(high)
    shown = ", ".join(f"{n} ({high[n]:g})" for n in names[:6]) + (" ..." if len(names) > 6 else "")
    share = len(high) / max(len(dropout_rates), 1)
    return [Finding(
        "model.regularization_too_strong", "warning", min(0.9, 0.5 + 0.4 * share),
        title=f"The loss does not fall ({verdict}) and {len(high)} dropout layer(s) drop half or more of their units",
        evidence={"verdict": verdict, "dropout_rates": dict(high), "threshold": HIGH_DROPOUT_RATE,
                  "dropout_layers": len(dropout_rates)},
        # where=None: merges with the curve analysis's "not settled" note of the same code
        where=None, source=source,
        remedy=(f"Set dropout to 0 in {shown} until the training loss falls, then add it back gradually "
                "(0.1, then 0.2) while watching the validation loss."),
    )]


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


def assemble_report(curves: Curves, live: Report | None = None, extra: Iterable[Finding] = (),
                    *, source: str, metadata: Mapping[str, Any] | None = None,
                    dropout_rates: Mapping[str, float] | None = None) -> Report:
    """One Report from the framework's logged curves, the live watch and framework-specific checks.

    The verdict comes from the logged curves (they hold the validation loss), unless they hold too
    few points and the watch saw more. Findings of all sources are ranked together; the same cause at
    the same place from two sources is kept once (see ``findings.ranked``).
    """
    from ..curves import diagnose_curves

    report = diagnose_curves(curves)
    if live is not None:
        if report.verdict == "insufficient_data" and live.verdict not in (None, "insufficient_data"):
            report.verdict = live.verdict
        report.add(live.findings)
        report.events = sorted([*report.events, *live.events], key=lambda e: e.step)
        report.ruled_out = [*report.ruled_out, *live.ruled_out]
        for key, value in live.plots.items():
            if key == "curves":
                for name, plot in value.items():
                    report.plots.setdefault("curves", {}).setdefault(name, plot)
            else:
                report.plots.setdefault(key, value)
        report.metadata.setdefault("watch", live.metadata)
    report.add(regularization_findings(dropout_rates or {}, report.verdict, source=source))
    report.add(extra)
    report.source = source
    report.metadata.update(metadata or {})
    return report


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
