"""Every decision of lossdoctor goes through here: the checks, in one explicit list, then the differential.

A check is a small pure function named after what it detects. Its parameters name the evidence it
needs (the kinds below); a parameter with a default of ``None`` is evidence it uses when present::

    @check
    def dropout_keeps_the_model_from_fitting(analysis: CurveAnalysis, run: RunFacts, model: ModelFacts | None = None):
        ...

It returns (or yields) ``Finding``s and, for the curve checks, ``Event``s to mark on the curves. It
reads no file and decides no verdict. :func:`diagnose_evidence` runs every check whose evidence is
present, stamps each finding's ``source`` with the check's room and name, keeps a failing check from
breaking the run (the one guard), and hands all findings to the last stage, the differential
(``lossdoctor.differential``), which orders causes above the symptoms they explain.

Checks are registered in :func:`all_checks`, one explicit list: adding a check means adding it there.
"""
from __future__ import annotations

import functools
import inspect
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

from .findings import Event, Finding
from .internal import report_internal_error

if TYPE_CHECKING:  # the evidence types, for readers of this file; imported lazily where used
    from .curves.verdict import CurveAnalysis
    from .data.facts import DataFacts
    from .evidence import Curves, RunFacts
    from .model.facts import ModelFacts
    from .monitor.stats import WatchStats
    from .probes.checks import ProbeEvidence

# The kinds of evidence, each gathered by one room: the log readers (curves), the curve analysis
# (analysis: the verdict, its events and numbers), the model inspector (model), the data profiler (data), the live monitor (stats), the
# checkup's experiments (probes) and what the entry point knows of the run itself (run: framework,
# optimizer, learning rate, clip, dropout, output width).
EVIDENCE_KINDS = ("curves", "analysis", "model", "data", "stats", "probes", "run")

# The room a check module belongs to, as stamped into ``Finding.source`` ("<room>:<check name>").
ROOMS = {
    "lossdoctor.curves.checks": "curves",
    "lossdoctor.model.checks": "model",
    "lossdoctor.data.checks": "data",
    "lossdoctor.monitor.checks": "watch",
    "lossdoctor.probes.checks": "probe",
    "lossdoctor.run_checks": "run",
}

STRICT_ENV = "LOSSDOCTOR_STRICT"


@dataclass
class Evidence:
    """Everything one entry point gathered about one run, as plain data; absent kinds are None."""

    curves: "Curves | None" = None
    analysis: "CurveAnalysis | None" = None
    model: "ModelFacts | None" = None
    data: "DataFacts | None" = None
    stats: "WatchStats | None" = None
    probes: "ProbeEvidence | None" = None
    run: "RunFacts | None" = None

    def kinds(self) -> set[str]:
        return {k for k in EVIDENCE_KINDS if getattr(self, k) is not None}


@dataclass(frozen=True)
class Check:
    """A registered check: the function, what it needs, what it can use, and its name in ``source``."""

    fn: Callable[..., Iterable[Finding | Event] | None]
    needs: tuple[str, ...]
    uses: tuple[str, ...]  # optional evidence (parameters defaulting to None)

    @property
    def name(self) -> str:
        return self.fn.__name__

    @property
    def source(self) -> str:
        return f"{ROOMS.get(self.fn.__module__, self.fn.__module__)}:{self.name}"

    def applies(self, evidence: Evidence) -> bool:
        return all(getattr(evidence, k) is not None for k in self.needs)

    def __call__(self, evidence: Evidence) -> list[Finding | Event]:
        kwargs = {k: getattr(evidence, k) for k in (*self.needs, *self.uses)}
        return list(self.fn(**kwargs) or [])


def check(fn: Callable) -> Callable:
    """Mark ``fn`` as a check; its parameters name the evidence kinds it takes (see EVIDENCE_KINDS)."""
    needs, uses = [], []
    for name, param in inspect.signature(fn).parameters.items():
        if name not in EVIDENCE_KINDS:
            raise ValueError(f"check {fn.__qualname__}: parameter {name!r} is not an evidence kind; "
                             f"one of {EVIDENCE_KINDS}")
        (uses if param.default is None else needs).append(name)
    if not needs:
        raise ValueError(f"check {fn.__qualname__} needs at least one kind of evidence")
    fn.__lossdoctor_check__ = Check(fn, tuple(needs), tuple(uses))
    return fn


def spec(fn: Callable) -> Check:
    try:
        return fn.__lossdoctor_check__
    except AttributeError:
        raise TypeError(f"{fn.__module__}.{fn.__qualname__} is not marked with @check") from None


@functools.lru_cache(maxsize=None)
def all_checks() -> tuple[Check, ...]:
    """Every check, in the order they run (the order does not rank anything: the differential does)."""
    from . import run_checks as run
    from .curves import checks as curves
    from .data import checks as data
    from .model import checks as model
    from .monitor import checks as watch
    from .probes import checks as probes

    return tuple(spec(fn) for fn in (
        # the curves of a log, a live run or a checkup's baseline
        curves.divergence_after_warmup, curves.nan_loss_causes, curves.exploding_grad_norm,
        curves.blew_up_then_stuck_at_chance, curves.no_progress_causes,
        # the model, inspected before training
        model.output_layer_mismatch, model.squashing_after_conv,
        model.recurrent_gates_without_sigmoid, model.constant_or_symmetric_weights, model.weight_scale_off,
        model.activation_scale_drift, model.loss_pinned_at_a_double_softmax_floor,
        # the data
        data.non_finite_values, data.constant_columns, data.conflicting_duplicates, data.unnormalized_scales,
        data.target_in_raw_units, data.heavy_tails, data.categories_as_numbers, data.mixed_units,
        data.class_imbalance, data.no_signal, data.label_noise,
        # the live monitor's read-out
        watch.non_finite_values, watch.logit_overflow, watch.dead_relu_units, watch.saturated_units,
        watch.vanishing_gradients, watch.exploding_gradients, watch.learning_rate_too_high,
        watch.learning_rate_too_low, watch.clipping_masks_lr, watch.unnormalized_inputs, watch.grad_scaler_collapse,
        watch.low_precision_rounds_updates_away, watch.batchnorm_may_mask_gradients, watch.gradients_not_zeroed,
        # the checkup's experiments
        probes.learning_rate_off, probes.regularization_too_strong, probes.clipping_masks_learning_rate,
        probes.batchnorm_masks_gradients, probes.gradient_across_depth_at_init, probes.bad_initialization,
        probes.initial_loss_far_off,
        probes.optimizer_limits_progress, probes.mixed_precision_breaks_training, probes.too_much_data_for_the_model,
        probes.nothing_learned_beyond_memorising,
        # what needs several rooms at once
        run.dropout_keeps_the_model_from_fitting,
    ))


@dataclass
class Diagnosis:
    """What the checks and the differential concluded: ranked findings and the events they marked."""

    findings: list[Finding] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def run_checks(evidence: Evidence, checks: Iterable[Check] | None = None) -> tuple[list[Finding], list[Event]]:
    """Every applicable check on ``evidence``, each guarded: a check that raises is reported once as
    a warning and skipped (a bug in lossdoctor must never stop a diagnosis; LOSSDOCTOR_STRICT=1, as
    the tests set, lets it raise). Findings come back with ``source`` stamped, in check order."""
    findings: list[Finding] = []
    events: list[Event] = []
    for c in all_checks() if checks is None else checks:
        if not c.applies(evidence):
            continue
        try:
            out = c(evidence)
        except Exception as exc:  # noqa: BLE001 - a failing check must not stop the diagnosis
            if os.environ.get(STRICT_ENV):
                raise
            report_internal_error(f"check {c.source}", exc)
            continue
        for item in out:
            if isinstance(item, Finding):
                item.source = c.source
                findings.append(item)
            elif isinstance(item, Event):
                events.append(item)
            else:
                raise TypeError(f"check {c.source} returned {type(item).__name__}, not a Finding or an Event")
    return findings, events


def diagnose_evidence(evidence: Evidence, extra: Iterable[Finding] = ()) -> Diagnosis:
    """The checks, then the differential as the last stage: the one path every entry point takes.

    ``extra`` are findings an entry point observed directly (a framework's own event, e.g. weights
    that turned NaN in Keras) that go through the same differential.
    """
    from .differential import differential

    findings, events = run_checks(evidence)
    findings.extend(extra)
    try:
        ranked_findings = differential(findings, evidence)
    except Exception as exc:  # noqa: BLE001 - the ranking failed: keep the findings, ranked plainly
        if os.environ.get(STRICT_ENV):
            raise
        report_internal_error("the differential", exc)
        from .findings import ranked

        ranked_findings = ranked(findings)
    return Diagnosis(ranked_findings, events)


__all__ = ["EVIDENCE_KINDS", "Evidence", "Check", "check", "all_checks", "run_checks", "diagnose_evidence",
           "Diagnosis"]
