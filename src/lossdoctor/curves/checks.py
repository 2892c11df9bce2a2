"""Causes the log itself supports, read from the curves and the verdict (never from a file)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..evidence import GRAD_NORM, LEARNING_RATE, Curves, RunFacts
from ..findings import Event, Finding
from ..registry import check
from .smoothing import END_FRACTION, running_median3, smooth, sorted_series
from .verdict import MIN_VAL_POINTS, CurveAnalysis

if TYPE_CHECKING:
    from ..model.facts import ModelFacts

# The "not settled by the log" hints of a run that does not learn rank by how often each cause is
# the answer when nothing else is known: the rate first, then the data's floor, then
# regularization (named only when the run is not known to have none).
LR_HINT_CONFIDENCE = 0.25
NO_SIGNAL_HINT_CONFIDENCE = 0.2
REGULARIZATION_HINT_CONFIDENCE = 0.15

# Warm-up: the learning rate starts below half its peak and reaches the peak after the first point.
WARMUP_START_FRACTION = 0.5
# "Right after warm-up": the divergence comes no later than one warm-up length (or 15 % of the
# run, whichever is longer) after the LR peak, and no earlier than half a warm-up before it (the
# loss can break while the LR is still climbing through its last steps).
AFTER_WARMUP_WINDOW = 0.15
# Gradient norms that grow by two orders of magnitude ("by orders of magnitude" in TAXONOMY.md):
# healthy runs change their gradient norm by a factor of a few, rarely ten.
GRAD_EXPLODE_RATIO = 100.0
# ... by three orders of magnitude, or to Inf/NaN, it is an error rather than a warning.
GRAD_EXPLODE_ERROR_RATIO = 1000.0
# The seed: "optimal learning rate can be between 0.0001 to 0.1". Below a tenth of that range, a
# run that does not learn points at the learning rate.
LR_TOO_LOW = 1e-5
# Adam-family, RMSprop and Lion normalize each element's step: the first step moves every weight by the
# learning rate itself, whatever the gradient's scale (later ones by up to about that). A run that
# does not learn at a rate at least this many times the typical weight (the median RMS of its weight
# layers) takes steps as large as its weights: the rate, not a floor of the data, is the first suspect.
ADAPTIVE_STEP_OVER_WEIGHT = 1.0
# ... ranked above the other "not settled" hints and the model room's mild notes: it rests on the
# optimizer's known step and the weights measured, not on how often a cause is the answer.
ADAPTIVE_RATE_HINT_CONFIDENCE = 0.45
# optimizer class names (lower case) whose step is normalized per element
ADAPTIVE_OPTIMIZER_MARKS = ("adam", "rmsprop", "lion")
# float32 exp overflows above ln(3.4e38) = 88.7: logits near it turn softmax into Inf/NaN
# (the seed's exp(100) = Inf).
FLOAT32_EXP_LIMIT = 88.7


def _warmup(curves: Curves) -> dict[str, float] | None:
    lr = curves.get(LEARNING_RATE)
    if lr is None or len(lr) < 3:
        return None
    steps, values = sorted_series(lr)
    ok = np.isfinite(values)
    steps, values = steps[ok], values[ok]
    if values.size < 3:
        return None
    peak = float(values.max())
    if peak <= 0 or values[0] >= WARMUP_START_FRACTION * peak:
        return None
    i_peak = int(np.argmax(values >= peak * (1 - 1e-3)))  # first step at the peak (float round-off)
    if i_peak == 0:
        return None
    return {"warmup_end_step": float(steps[i_peak]), "peak_lr": peak, "first_step": float(steps[0])}


def _lr_at(curves: Curves, step: float) -> float | None:
    lr = curves.get(LEARNING_RATE)
    if lr is None or not len(lr):
        return None
    steps, values = sorted_series(lr)
    i = int(np.searchsorted(steps, step, side="right")) - 1
    return float(values[max(i, 0)])


@check
def divergence_after_warmup(curves: Curves, analysis: CurveAnalysis) -> list[Finding | Event]:
    """Diverging curves point to a learning rate that is too high; right after warm-up, strongly."""
    if analysis.verdict != "diverging":
        return []
    ev = analysis.evidence
    step = float(ev["divergence_step"])
    evidence: dict[str, Any] = {"divergence_step": step, "rise_relative": ev["rise_relative"],
                                "min_level": ev["min_level"], "end_level": ev["end_level"],
                                "verdict_thresholds": ev.get("thresholds")}
    lr_now = _lr_at(curves, step)
    if lr_now is not None:
        evidence["lr_at_divergence"] = lr_now
    warm = _warmup(curves)
    run_len = float(ev.get("last_step", step)) - float(ev.get("first_step", 0.0))
    if warm is not None:
        warm_len = warm["warmup_end_step"] - warm["first_step"]
        window = max(warm_len, AFTER_WARMUP_WINDOW * run_len)
        after = step - warm["warmup_end_step"]
        evidence.update(warmup_end_step=warm["warmup_end_step"], peak_lr=warm["peak_lr"],
                        steps_after_warmup=after, window_limit=window)
        if -0.5 * warm_len <= after <= window:
            target = warm["peak_lr"] / 10
            return [Event("warmup_end", warm["warmup_end_step"], warm["peak_lr"],
                          f"learning rate reached its peak {warm['peak_lr']:.3g}"), Finding(
                "optim.lr_too_high", "error", 0.85,
                title="The loss diverged right after warm-up reached the peak learning rate",
                evidence=evidence, where=f"step {step:g}",
                remedy=(f"Lower the peak learning rate from {warm['peak_lr']:.3g} to about {target:.2g} "
                        f"(or run a learning-rate range test and take a little below where the loss blows "
                        f"up), and resume from a checkpoint before step {step:g}."),
            )]
    lr_text = f" (now {lr_now:.3g}; try {lr_now / 10:.2g})" if lr_now else ""
    return [Finding(
        "optim.lr_too_high", "warning", 0.55,
        title="The loss fell, then turned up and stayed up: typical of a learning rate that is too high",
        evidence=evidence, where=f"step {step:g}",
        remedy=(f"Lower the learning rate 10x{lr_text} and rerun from a checkpoint before step {step:g}. "
                "The log cannot settle it alone: if the rerun still turns up at the same place, look at the "
                "data around that step instead."),
    )]


@check
def nan_loss_causes(curves: Curves, analysis: CurveAnalysis) -> list[Finding | Event]:
    """A NaN/Inf loss: the learning rate or a softmax overflow, or NaN data when it is NaN from step one."""
    if analysis.verdict != "non_finite":
        return []
    ev = analysis.evidence
    step = float(ev["first_non_finite_step"])
    evidence = {k: ev[k] for k in ("first_non_finite_step", "first_non_finite_value", "non_finite_in",
                                   "finite_points_before", "loss_before_non_finite", "rose_before_non_finite")
                if k in ev}
    evidence["threshold"] = "the first NaN/Inf loss"
    lr_now = _lr_at(curves, step)
    if lr_now is not None:
        evidence["lr_at_non_finite"] = lr_now
    findings = []
    if ev.get("finite_points_before", 0) == 0:
        findings.append(Finding(
            "data.non_finite", "warning", 0.5,
            title="The loss is NaN/Inf from the first logged step: suspect the inputs or targets",
            evidence=evidence, where=f"step {step:g}",
            remedy=("Check the data for NaN/Inf before training (`lossdoctor.check_data(X, y)`); if the data "
                    "is clean, the model's initialization or loss produces it (run `lossdoctor checkup`)."),
        ))
    rose = bool(ev.get("rose_before_non_finite"))
    lr_text = f" from {lr_now:.3g} to {lr_now / 10:.2g}" if lr_now else " 10x"
    findings.append(Finding(
        "optim.lr_too_high", "warning", 0.7 if rose else 0.5,
        title=("The loss climbed and then became NaN/Inf: typical of a learning rate that is too high"
               if rose else "The loss became NaN/Inf: a learning rate that is too high is the usual cause"),
        evidence=evidence, where=f"step {step:g}",
        remedy=(f"Experiment that settles it: rerun from a checkpoint before step {step:g} with the learning "
                f"rate lowered{lr_text}. If the loss stays finite, the learning rate was the cause."),
    ))
    findings.append(Finding(
        "model.logit_overflow", "info", 0.35,
        title="A softmax overflow (exp of a large logit = Inf) can also produce this NaN",
        evidence={**evidence, "float32_exp_limit": FLOAT32_EXP_LIMIT}, where=f"step {step:g}",
        remedy=(f"Experiment that settles it: log the largest |logit| in the steps before {step:g} (or run "
                f"`lossdoctor checkup`, which names the first module that turns NaN). Values near "
                f"{FLOAT32_EXP_LIMIT} confirm overflow: feed raw logits to CrossEntropyLoss (no softmax in the "
                "model) and compute the loss in float32."),
    ))
    return findings


@check
def exploding_grad_norm(curves: Curves, analysis: CurveAnalysis) -> list[Finding | Event]:
    """A logged gradient norm that grows by orders of magnitude, or turns Inf/NaN."""
    gn = curves.get(GRAD_NORM)
    if gn is None or len(gn) < MIN_VAL_POINTS:
        return []
    steps, values = sorted_series(gn)
    finite = np.isfinite(values)
    fin = values[finite]
    if fin.size < 2:
        return []
    head = max(1, int(math.ceil(fin.size * END_FRACTION)))
    early = float(np.median(np.abs(fin[:head])))
    if not finite.all():
        i = int(np.argmin(finite))
        evidence = {"early_grad_norm": early, "first_non_finite_step": float(steps[i]),
                    "value": float(values[i]), "threshold": "the first NaN/Inf gradient norm"}
        return [Finding(
            "grad.exploding", "error", 0.8, title="The gradient norm became Inf/NaN",
            evidence=evidence, where=f"step {steps[i]:g}",
            remedy=("Lower the learning rate and fix the initialization scale; clip gradients "
                    "(torch.nn.utils.clip_grad_norm_) only once the learning rate is right."),
        )]
    sm = smooth(steps[finite], np.abs(fin))
    i_peak = int(np.argmax(sm.level))
    peak = float(sm.level[i_peak])
    ratio = peak / early if early > 0 else math.inf
    if ratio < GRAD_EXPLODE_RATIO:
        return []
    evidence = {"early_grad_norm": early, "peak_grad_norm": peak, "peak_step": float(sm.step[i_peak]),
                "growth": ratio, "threshold": GRAD_EXPLODE_RATIO}
    severity = "error" if ratio >= GRAD_EXPLODE_ERROR_RATIO else "warning"
    return [
        Event("grad_norm_explosion", float(sm.step[i_peak]), peak, f"gradient norm {ratio:.0f}x its early level"),
        Finding("grad.exploding", severity, 0.75,
                title=f"The gradient norm grew {ratio:.0f}x (from {early:.3g} to {peak:.3g})",
                evidence=evidence, where=f"step {sm.step[i_peak]:g}"),
    ]


# A classifier's loss far above chance (ln K) means confidently wrong predictions, which only large
# weights produce: a loss whose first logged value was near chance (a sane initialization) and that
# then rose to three times the chance level over consecutive points blew up (dropout at 0.9 makes a
# training loss noisy, to about 2.6x chance on digits, but not that far, and a single noisy minibatch
# does not count: the median of three neighbours must be up there). Settling back at chance
# afterwards is the aftermath: dead or saturated units, a collapsed output. A first loss above 1.5x
# chance is itself off (an initialization or output-scale problem), so such a run is not read this way.
BLOW_UP_OVER_CHANCE = 3.0
SANE_START_OVER_CHANCE = 1.5


@check
def blew_up_then_stuck_at_chance(curves: Curves, analysis: CurveAnalysis) -> list[Finding | Event]:
    """A loss that jumped far above chance level and then sat at chance: an oversized step broke the
    network (the seed: a spike, after which the loss never comes back down)."""
    ev = analysis.evidence
    chance = ev.get("chance_level")
    loss = curves.train if curves.train is not None and len(curves.train) else curves.val
    if not ev.get("ended_at_chance") or not isinstance(chance, (int, float)) or chance <= 0 or loss is None:
        return []
    steps, values = sorted_series(loss)
    finite = np.isfinite(values)
    steps, values = steps[finite], values[finite]
    if values.size < 3:
        return []
    start = float(values[0])
    held = running_median3(values)
    i_peak = 1 + int(np.argmax(held[1:]))
    peak = float(held[i_peak])
    if start > SANE_START_OVER_CHANCE * chance or peak < BLOW_UP_OVER_CHANCE * chance:
        return []
    spike_step = float(steps[i_peak])
    lr_now = _lr_at(curves, spike_step)
    evidence = {"start_loss": start, "peak_loss": peak, "spike_step": spike_step, "chance_level": chance,
                "end_level": ev.get("end_level"), "blow_up_threshold": BLOW_UP_OVER_CHANCE * chance,
                **({"lr_at_spike": lr_now} if lr_now is not None else {})}
    lr_text = f" from {lr_now:.3g} to about {lr_now / 10:.2g}" if lr_now else " 10x"
    return [
        Event("spike", spike_step, peak, f"loss jumped to {peak:.4g}, {peak / chance:.1f}x chance level"),
        Finding("optim.lr_too_high", "warning", 0.7,
                title=(f"The loss jumped to {peak:.3g} ({peak / chance:.1f}x chance) at step {spike_step:g}, "
                       f"then sat at chance level ({chance:.3g})"),
                evidence=evidence, where=f"step {spike_step:g}",
                remedy=(f"Lower the learning rate{lr_text} (or warm it up over more steps) and restart from "
                        f"the initial weights: after the jump at step {spike_step:g} the network did not "
                        "recover.")),
    ]


def _adaptive_step_over_weight(max_lr: float | None, run: RunFacts | None,
                               model: "ModelFacts | None") -> dict[str, Any] | None:
    """The rate of a per-element-normalized optimizer against the typical weight of the model's Linear
    and Conv layers, when it is at least ADAPTIVE_STEP_OVER_WEIGHT."""
    if not max_lr or run is None or not run.optimizer or model is None:
        return None
    if not any(mark in run.optimizer.lower() for mark in ADAPTIVE_OPTIMIZER_MARKS):
        return None
    sizes = [layer.weight_rms for layer in model.layers if layer.scale_checked and layer.weight_rms > 0]
    if not sizes:
        return None
    typical = float(np.median(sizes))
    ratio = max_lr / typical
    if ratio < ADAPTIVE_STEP_OVER_WEIGHT:
        return None
    return {"max_lr": max_lr, "optimizer": run.optimizer, "median_weight_rms": typical, "step_over_weight": ratio,
            "threshold": ADAPTIVE_STEP_OVER_WEIGHT}


@check
def no_progress_causes(curves: Curves, analysis: CurveAnalysis, run: RunFacts | None = None,
                       model: ModelFacts | None = None) -> list[Finding | Event]:
    """Underfitting / stalled: a tiny learning rate shows in the log, and so does an adaptive
    optimizer's rate above its weights' size (with the model's facts); the rest needs an experiment.
    Regularization is named only where the run is not known to have none."""
    if analysis.verdict not in ("underfitting", "stalled"):
        return []
    ev = analysis.evidence
    evidence = {"relative_drop": ev.get("relative_drop"), "plateau_level": ev.get("plateau_level"),
                "plateau_start_step": ev.get("plateau_start_step"), "verdict_thresholds": ev.get("thresholds")}
    findings = []
    lr = curves.get(LEARNING_RATE)
    max_lr = float(np.nanmax(lr.values)) if lr is not None and len(lr) and np.isfinite(lr.values).any() else None
    if max_lr is None and run is not None and run.lr:
        max_lr = float(run.lr)
    step_over_weight = _adaptive_step_over_weight(max_lr, run, model)
    if step_over_weight is not None:
        findings.append(Finding(
            "optim.lr_too_high", "info", ADAPTIVE_RATE_HINT_CONFIDENCE,
            title=(f"Not settled by the log: {run.optimizer} at a rate of {max_lr:.3g} takes steps "
                   f"{step_over_weight['step_over_weight']:.2g}x the size of its weights"),
            evidence={**evidence, **step_over_weight},
            remedy=(f"Experiment that settles it: rerun at {max_lr / 10:.2g} and {max_lr / 100:.2g} "
                    f"({run.optimizer} moves each weight by about the rate per step, here more than the weights' "
                    "typical size); if the loss now falls, keep the rate that learns fastest."),
        ))
    elif max_lr is not None and 0 < max_lr < LR_TOO_LOW:
        findings.append(Finding(
            "optim.lr_too_low", "warning", 0.6,
            title=f"The learning rate never exceeded {max_lr:.2g}",
            evidence={**evidence, "max_lr": max_lr, "threshold": LR_TOO_LOW},
            remedy=f"Raise the learning rate towards 1e-4..1e-1 (e.g. {max_lr * 100:.2g}), guided by a range test.",
        ))
    else:
        findings.append(Finding(
            "optim.lr_too_low", "info", LR_HINT_CONFIDENCE,
            title="Not settled by the log: the learning rate may be too low",
            evidence={**evidence, **({"max_lr": max_lr} if max_lr is not None else {})},
            remedy=("Experiment that settles it: rerun a few hundred steps at 3x and 10x the learning rate; if "
                    "the loss falls clearly faster, raise it (or run `lossdoctor checkup`, which does this)."),
        ))
    level = ev.get("plateau_level")
    findings.append(Finding(
        "data.no_signal", "info", NO_SIGNAL_HINT_CONFIDENCE,
        title="Not settled by the log: the data may not support a lower loss",
        evidence=evidence,
        remedy=(f"Experiment that settles it: fit a quick baseline on the same split (`lossdoctor.check_data(X, y)` "
                f"runs one against a label-permutation null). If it cannot do better than {level}, that level is "
                "the data's floor and the run has converged; if it does, the model or the optimizer is stuck."),
    ))
    known_unregularized = (run is not None and not run.regularized) or (
        model is not None and not model.regularization.dropout and not model.regularization.max_weight_decay)
    if known_unregularized:
        return findings
    findings.append(Finding(
        "model.regularization_too_strong", "info", REGULARIZATION_HINT_CONFIDENCE,
        title="Not settled by the log: regularization may keep the model from fitting",
        evidence=evidence,
        remedy=("Experiment that settles it: rerun with dropout, weight decay and noise off; if the training "
                "loss now falls much further, add them back gradually (dropout 0.1, then 0.2)."),
    ))
    return findings

