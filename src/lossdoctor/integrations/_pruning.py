"""When lossdoctor may stop a trial of a hyper-parameter search, and the reason it gives.

Shared by the Optuna pruner and the Ray Tune stopper, and framework-free: both hand over one
trial's reported values (steps and values), what the study knows (the best value any trial has
reached, how long a full trial runs) and, when the objective runs ``lossdoctor.watch``, the live
findings. :func:`judge_trial` returns a :class:`Stop` when lossdoctor is certain the trial will not
end among the study's best, else None (the wrapped pruner or scheduler then decides).

The curves are judged by lossdoctor's own engine (:func:`lossdoctor.curves.analyze_curves`); this
module only decides which of its verdicts, joined with the live findings and the study's state, are
certain enough to stop a run. Certainty first: a wrongly stopped trial that would have been the
study's best costs more than the steps a late stop wastes, so every rule waits for confirmation
and each threshold below says why it is where it is.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..curves import CHANCE_LEVEL_META, CurveAnalysis, analyze_curves
from ..curves.verdict import CHANCE_LEVEL_MARGIN
from ..errors import InputError
from ..evidence import VAL_LOSS, Curves

# ------------------------------------------------------------------------------------------------
# The decision's thresholds.

# Reports before a trial's curve is judged at all (the guard; the user sets ``min_reports``): the
# first evaluations of a run are dominated by its initialization and the first large updates (a
# warm-up spike, a loss that first rises then falls), so a curve is not judged on them.
DEFAULT_MIN_REPORTS = 3
# "Never prune on one bad report": a NaN/Inf or an at-chance value must repeat on this many
# consecutive reports (a NaN in the weights stays NaN, so a real one always repeats; one bad
# evaluation batch does not).
CONFIRM_REPORTS = 2
# Live findings that mean the network itself is broken: NaN/Inf reached the gradients or the
# inputs, the loss spiked and lost all its progress from oversized updates (``optim.lr_too_high``
# at error level: the rate that blew the network up is still the rate, so it does not rebuild),
# or (at error level) nine in ten units of a layer never fire. Joined with an objective that sits
# at chance, they say why the run cannot learn, so no long wait is needed. On the digits search
# (60 Optuna + 30 Ray Tune trials), no trial with any of them ended above 0.2 accuracy.
# Left out on purpose, because runs that end among the best show them while they sit on a plateau
# they later leave: vanishing gradients, logits near overflow, large or small update ratios, units
# half silent (a tiny-initialization run that ended third of 30 sat exactly at ln K for 5 reports
# with update ratios 1e-2..1e-1 and half its units silent, as the runs killed by weight decay do),
# and a gradient norm that grows (a run leaving a tiny-initialization plateau shows it too).
BROKEN_NETWORK_CODES = ("grad.non_finite", "data.non_finite", "optim.lr_too_high", "grad.dead_relu")
NAN_CODES = ("grad.non_finite", "data.non_finite")
# The verdict of a stop on a broken network that is not NaN (NaN is ``non_finite``).
BROKEN_VERDICT = {"optim.lr_too_high": "diverging", "grad.dead_relu": "underfitting"}
# A run that does not learn, with no live cause to explain why, may still leave its plateau late:
# a small-initialization run on digits sat exactly at chance for 40 % of its budget, then ended
# third of sixty. Such a run is stopped only once it has spent this share of the budget (the
# longest completed trial, or ``max_steps``) without learning: it would have to learn everything in
# the remaining third, faster than it has shown it can.
NO_PROGRESS_BUDGET_SHARE = 2 / 3
# "Far above the study's best": the trial's level is closer to chance (or, without a chance level,
# to its own start) than to the best value any trial of the study reached. Nearer the best, a slow
# run may still be a contender, and the wrapped pruner or the user should judge it.
FAR_FROM_BEST_SHARE = 0.5
# "At chance": a value within the curve engine's own chance margin of the chance level, or worse
# (a 10-class cross-entropy at 2.19 instead of ln 10 = 2.30 has learned nothing either). One
# report at a time, which the engine does not judge: it needs a curve.
AT_CHANCE_MARGIN = CHANCE_LEVEL_MARGIN

# Verdicts of the curve engine that mean "not learning".
NO_PROGRESS_VERDICTS = ("underfitting", "stalled")

# Keys of the reason, the same in an Optuna trial's user_attrs and a Ray Tune trial's results.
REASON_KEYS = ("lossdoctor_verdict", "lossdoctor_code", "lossdoctor_step", "lossdoctor_reason")
# Result key through which a Ray Tune worker passes the live findings (see ``live_codes``).
LIVE_RESULT_KEY = "lossdoctor_live_errors"


@dataclass(frozen=True)
class Stop:
    """Why a trial was stopped: the verdict, the finding code that names the cause (None when the
    evidence shows the symptom but does not settle the cause), the step at which it was stopped
    (the last reported step), and one readable line (with the step the problem began, if known)."""

    verdict: str
    code: str | None
    step: float
    reason: str

    def attrs(self) -> dict[str, Any]:
        """The reason as flat, JSON-able key/values (Optuna user_attrs, Ray Tune results)."""
        step = int(self.step) if float(self.step).is_integer() else float(self.step)
        return dict(zip(REASON_KEYS, (self.verdict, self.code, step, self.reason)))

    @property
    def cause(self) -> str:
        """The label a study summary counts: the verdict and, when settled, the code."""
        return f"{self.verdict} ({self.code})" if self.code else self.verdict


@dataclass(frozen=True)
class Guard:
    """What a trial must have done before lossdoctor judges it.

    ``min_reports``: reports before the curve is judged. ``warmup_steps``: steps of the learning-rate
    warm-up (nothing but NaN is judged before it ends). ``max_steps``: a full trial's length; by
    default the longest completed trial. A NaN/Inf confirmed on ``CONFIRM_REPORTS`` reports is
    judged at once: no later step can undo it.
    """

    min_reports: int = DEFAULT_MIN_REPORTS
    warmup_steps: float = 0.0
    max_steps: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.min_reports, int) or isinstance(self.min_reports, bool) or self.min_reports < 1:
            raise InputError(f"min_reports must be a positive integer, got {self.min_reports!r}")
        if not _is_number(self.warmup_steps) or self.warmup_steps < 0:
            raise InputError(f"warmup_steps must be a number of steps >= 0, got {self.warmup_steps!r}")
        if self.max_steps is not None and (not _is_number(self.max_steps) or self.max_steps <= 0):
            raise InputError(f"max_steps must be a positive number of steps or None, got {self.max_steps!r}")


@dataclass(frozen=True)
class Metric:
    """How to read the reported value: a loss (lower is better) or a score in [0, 1] (higher is
    better: accuracy, F1, AUC), and its value at chance, in its own units."""

    kind: str  # "loss" or "score"
    chance: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("loss", "score"):
            raise InputError(f"metric must be 'loss' or 'score' (accuracy, F1, ...), got {self.kind!r}")
        if self.chance is not None and (not _is_number(self.chance) or not math.isfinite(self.chance)):
            raise InputError(f"chance must be a finite number or None, got {self.chance!r}")
        if self.kind == "score" and self.chance is not None and not 0 <= self.chance < 1:
            raise InputError(f"the chance level of a score must lie in [0, 1), got {self.chance!r}")

    @classmethod
    def build(cls, kind: str, num_classes: int | None, chance: float | None) -> "Metric":
        """The metric, its chance level given directly or from the number of classes (cross-entropy
        ln K for a loss, 1/K for an accuracy; for other metrics pass ``chance``)."""
        if num_classes is not None and (not isinstance(num_classes, int) or isinstance(num_classes, bool)
                                        or num_classes < 2):
            raise InputError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if chance is None and num_classes is not None:
            chance = math.log(num_classes) if kind == "loss" else 1.0 / num_classes
        return cls(kind, chance)

    def as_loss(self, value: float) -> float:
        """The value on a lower-is-better scale (a score s becomes the error 1 - s)."""
        return float(value) if self.kind == "loss" else 1.0 - float(value)

    @property
    def chance_loss(self) -> float | None:
        return None if self.chance is None else self.as_loss(self.chance)

    def at_chance(self, value: float) -> bool:
        """The reported value is NaN/Inf, or within AT_CHANCE_MARGIN of the chance level, or worse
        (False when the chance level is unknown)."""
        chance = self.chance_loss
        return chance is not None and bool(_at_chance(np.array([self.as_loss(value)]), chance)[0])

    def check(self, value: float) -> str | None:
        """Why a reported value cannot be read as this metric, or None."""
        if self.kind == "score" and math.isfinite(value) and not -1e-9 <= value <= 1 + 1e-9:
            return (f"reported value {value:g} is outside [0, 1], so it cannot be read as a score (accuracy, F1, ...): "
                    "pass metric='loss' if lower is better, or report the score as a fraction")
        return None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def live_codes(report: Any) -> tuple[str, ...]:
    """The codes of a live report's error-level findings (a ``Report``, a ``Watch`` or a list of
    Findings), sorted: the plain data a Ray Tune worker puts in its results."""
    if report is None:
        return ()
    if hasattr(report, "report") and callable(report.report):  # a Watch
        report = report.report()
    findings = getattr(report, "findings", report)
    return tuple(sorted({f.code for f in findings if f.severity == "error"}))


def parse_live_codes(value: Any) -> tuple[str, ...]:
    """The codes a worker reported under ``LIVE_RESULT_KEY`` (a comma-separated string or a list)."""
    if not value:
        return ()
    if isinstance(value, str):
        return tuple(c.strip() for c in value.split(",") if c.strip())
    return tuple(str(c) for c in value)


# ------------------------------------------------------------------------------------------------
# The decision.


def judge_trial(steps: Sequence[float], values: Sequence[float], metric: Metric, guard: Guard, *,
                best_value: float | None = None, budget_steps: float | None = None,
                live: Iterable[str] = ()) -> Stop | None:
    """A :class:`Stop` when lossdoctor is certain this trial will not end among the study's best.

    ``steps``/``values``: the trial's reported values, in the metric's own units, in step order.
    ``best_value``: the best value any other trial of the study has reported (metric units).
    ``budget_steps``: how long a full trial runs (the longest completed trial), when known.
    ``live``: codes of error-level findings of the trial's ``lossdoctor.watch``, now.

    Rules, in order (each needs its own evidence; none fires on one report):

    1. non_finite: the objective is NaN/Inf on the last ``CONFIRM_REPORTS`` reports.
    2. broken network: a live NaN/Inf, blown-up (``optim.lr_too_high`` at error level) or
       dead-network finding while the objective sits at chance
       (or is NaN) on the last ``CONFIRM_REPORTS`` reports; NaN evidence skips the guard.
    3. diverging: the curve engine says the objective diverged, on this report and without it,
       and it now sits far from the study's best.
    4. no progress: the engine says underfitting or stalled, on this report and without it, the
       level is far from the study's best (at chance counts), and the trial has spent
       ``NO_PROGRESS_BUDGET_SHARE`` of the budget.

    Rules 3 and 4 wait for the guard (``min_reports``, ``warmup_steps``); so does rule 2 unless
    its evidence is a NaN/Inf.
    """
    steps = np.asarray(steps, dtype=np.float64)
    raw = np.asarray(values, dtype=np.float64)
    n = raw.size
    if n < CONFIRM_REPORTS:
        return None
    loss = raw if metric.kind == "loss" else 1.0 - raw
    step = float(steps[-1])
    live = tuple(live)
    chance = metric.chance_loss
    recent = loss[-CONFIRM_REPORTS:]

    # 1. NaN/Inf: confirmed on consecutive reports, judged at once (nothing undoes it)
    if not np.isfinite(recent).all():
        if np.isfinite(recent).any():
            return None
        analysis = _analyze(steps, loss, chance)
        first = analysis.evidence.get("first_non_finite_step", step)
        return Stop("non_finite", _settled_code(analysis, live), step,
                    f"the objective is {raw[-1]} from step {first:g} on ({CONFIRM_REPORTS} reports or more)")

    # 2. a live cause that breaks the network, while the objective has learned nothing
    broken = [c for c in BROKEN_NETWORK_CODES if c in live]
    guarded = n < guard.min_reports or step < guard.warmup_steps
    if broken and chance is not None and _at_chance(recent, chance).all():
        nan_evidence = any(c in NAN_CODES for c in broken)
        if nan_evidence or not guarded:
            code = broken[0]
            return Stop("non_finite" if nan_evidence else BROKEN_VERDICT[code], code, step,
                        f"{code} from lossdoctor.watch, and the objective has been at chance level "
                        f"({metric.chance:.4g}) or worse for {CONFIRM_REPORTS} reports")
    if guarded:
        return None

    best = None if best_value is None or not math.isfinite(best_value) else metric.as_loss(best_value)
    budget = guard.max_steps or budget_steps
    patient = budget is not None and step >= NO_PROGRESS_BUDGET_SHARE * budget
    analysis = _analyze(steps, loss, chance)
    if analysis.verdict != "diverging" and not (analysis.verdict in NO_PROGRESS_VERDICTS and patient):
        return None
    ev = analysis.evidence
    level = ev.get("end_level")
    if not _is_number(level) or not _far_from_best(float(level), best, chance, ev.get("start_level")):
        return None
    # confirmed: the same judgement on the curve without its last report
    previous = _analyze(steps[:-1], loss[:-1], chance).verdict
    if analysis.verdict == "diverging":
        if previous != "diverging":
            return None
        return Stop("diverging", _settled_code(analysis, live), step,
                    f"the objective diverged at step {ev.get('divergence_step', step):g} and now sits at "
                    f"{_shown(metric, level)}, far from the study's best {_shown(metric, best)}")
    if previous not in NO_PROGRESS_VERDICTS:
        return None
    where = (f"at chance level ({metric.chance:.4g})" if metric.at_chance(metric.as_loss(level))
             else f"at {_shown(metric, level)}, far from the study's best {_shown(metric, best)}")
    return Stop(analysis.verdict, _settled_code(analysis, live), step,
                f"after {step:g} of {budget:g} steps the objective has barely moved from its start "
                f"({analysis.verdict}) and sits {where}")


def _analyze(steps: np.ndarray, loss: np.ndarray, chance: float | None) -> CurveAnalysis:
    curves = Curves(run="trial", source="pruner", meta={} if chance is None else {CHANCE_LEVEL_META: chance})
    curves.add(VAL_LOSS, steps, loss)
    return analyze_curves(curves)


def _at_chance(loss: np.ndarray, chance: float) -> np.ndarray:
    """Per value: NaN/Inf, or within AT_CHANCE_MARGIN of the chance level, or worse."""
    line = chance - AT_CHANCE_MARGIN * abs(chance)
    return ~np.isfinite(loss) | (loss >= line)


def _far_from_best(level: float, best: float | None, chance: float | None, start: Any) -> bool:
    """The level is closer to chance (or to the trial's own start) than to the study's best."""
    reference = chance if chance is not None else (float(start) if _is_number(start) else None)
    if reference is None:
        return False
    if best is None or best >= reference:  # nothing in the study has learned yet: measure from chance
        return chance is not None and bool(_at_chance(np.array([level]), chance)[0])
    return level - best >= FAR_FROM_BEST_SHARE * (reference - best)


def _settled_code(analysis: CurveAnalysis, live: tuple[str, ...]) -> str | None:
    """The cause to name: a live error first, else the engine's top finding if it is at least a
    warning (an 'info' finding is a hypothesis the log cannot settle)."""
    if live:  # a broken network first, then whatever else the watch holds at error level
        return min(live, key=lambda c: (BROKEN_NETWORK_CODES.index(c) if c in BROKEN_NETWORK_CODES
                                        else len(BROKEN_NETWORK_CODES), c))
    for f in analysis.findings:
        if f.severity in ("error", "warning"):
            return f.code
    return None


def _shown(metric: Metric, loss_value: Any) -> str:
    """A lower-is-better value in the metric's own units (as_loss is its own inverse)."""
    return f"{metric.as_loss(float(loss_value)):.4g}" if _is_number(loss_value) else "?"


# ------------------------------------------------------------------------------------------------
# The study summary.


def summarize(causes: Mapping[Any, str], n_trials: int, n_stopped_by_others: int = 0, *,
              title: str = "lossdoctor") -> str:
    """A few lines: how many trials lossdoctor stopped, for which cause, and the rest."""
    counts = Counter(causes.values())
    lines = [f"{title}: stopped {len(causes)} of {n_trials} trials"
             + (f" ({n_stopped_by_others} more by the wrapped pruner)" if n_stopped_by_others else "")]
    for cause, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {count:4d}  {cause}")
    return "\n".join(lines)
