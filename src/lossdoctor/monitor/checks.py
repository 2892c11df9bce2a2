"""Checks on the monitor's read-out statistics (``WatchStats``), registered in ``registry.all_checks``.

Each threshold is a named constant beside the check that uses it, with the reason for the number.
Evidence keys the differential reads: ``spike_step`` / ``onset_step`` on a cause (when it began),
``first_seen_step`` / ``dead_at_first_look`` on dead or saturated units (when they went silent).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..curves import GRAD_EXPLODE_ERROR_RATIO, GRAD_EXPLODE_RATIO
from ..curves.checks import WARMUP_START_FRACTION
from ..data.checks import LARGE_MAGNITUDE_LIMIT, UNIT_RANGE
from ..differential import NAN_FROM_OVERFLOW
from ..findings import Event, Finding
from ..registry import check
from . import advice
from .stats import EXP_OVERFLOW_LIMIT, SILENT_SHARE_WARN, WatchStats

if TYPE_CHECKING:
    from ..curves.verdict import CurveAnalysis
    from ..evidence import RunFacts

FLOAT32_LIMIT = EXP_OVERFLOW_LIMIT["torch.float32"]

def _produced_by_remedy(produced_by: str, run: "RunFacts | None" = None) -> str:
    if produced_by == "inputs":
        return ("The batch itself held NaN/Inf: find the rows (`lossdoctor.check_data(X, y)`) and fix or drop "
                "them before training.")
    if produced_by == "weights":
        return ("The optimizer wrote NaN/Inf into this module's weights in the step before: "
                f"{advice.lower_rate(run.lr if run else None).lower()}, and resume from the last finite weights"
                + (" (watch(..., save_last_finite=path))." if advice.framework(run) != "keras" else "."))
    if produced_by == "operation":
        stable = advice.stable_loss(run)
        return ("This module's computation overflowed or hit an undefined value: "
                f"{advice.lower_rate(run.lr if run else None).lower()}"
                + (f", {stable}" if stable else "")
                + ", and guard log/sqrt/division against 0 (clamp their input to at least 1e-12).")
    return ""


def non_finite_finding(origin: dict[str, Any], steps: int | None = None, run: "RunFacts | None" = None) -> Finding:
    """The grad.non_finite finding for a located NaN/Inf origin (also carried by TrainingHalted)."""
    module = origin.get("module")
    step = origin.get("step")
    produced_by = origin.get("produced_by", "unknown")
    kind = f" ({origin['module_type']})" if origin.get("module_type") else ""
    where_text = f"module {module!r}{kind}" if module else "an unlocated module"
    phase = "the gradient (backward pass)" if origin.get("in") == "backward" else "the output"
    title = f"NaN/Inf first appeared at step {step} in {phase} of {where_text}, produced by: {produced_by}"
    replayed = str(origin.get("located_by", "")).startswith("replay")
    evidence = {k: v for k, v in origin.items() if k not in ("detail",)}
    evidence["explanation"] = origin.get("detail", "")
    evidence["threshold"] = "the first NaN/Inf value"
    if steps is not None:
        evidence["steps_watched"] = steps
    return Finding(
        "grad.non_finite", "error", 0.9 if replayed else 0.6, title=title, evidence=evidence,
        source="watch:non_finite_values",
        where=module or (f"step {step}" if step is not None else None),
        remedy=_produced_by_remedy(produced_by, run),
    )


@check
def non_finite_values(stats: WatchStats, run: "RunFacts | None" = None) -> list[Finding | Event]:
    """The first NaN/Inf: the module, the step, and whether inputs, weights or an operation produced it."""
    if stats.first_non_finite_step is None:
        return []
    origin = dict(stats.non_finite or {})
    if not origin:
        origin = {"module": stats.non_finite_weights[0] if stats.non_finite_weights else None,
                  "produced_by": "unknown", "located_by": "weights inspected at read-out",
                  "detail": ("the NaN was found at a read-out, after the weights had changed; the module named "
                             "is the first whose weights are NaN/Inf now. Use nan_check='step' (or halt_on_nan) "
                             "to locate the origin exactly")}
    origin.setdefault("step", stats.first_non_finite_step)
    origin["step"] = min(int(origin["step"]), int(stats.first_non_finite_step))
    origin["modules_with_non_finite_weights_now"] = stats.non_finite_weights
    where = origin.get("module") or "an unknown module"
    findings: list[Finding | Event] = [Event("first_non_finite", float(origin["step"]), None, f"first NaN/Inf at {where}"),
                                       non_finite_finding(origin, stats.steps, run)]
    if origin.get("produced_by") == "inputs":
        findings.append(Finding(
            "data.non_finite", "error", 0.9, title=f"The batch of step {origin['step']} held NaN/Inf values",
            evidence={"step": origin["step"], "first_module": origin.get("module"), "threshold": "any NaN/Inf input"},
            where=f"step {origin['step']}",
        ))
    return findings


# -- model.logit_overflow ------------------------------------------------------------------------
# exp() of a logit past the dtype's limit overflows (88.72 in float32/bfloat16, 11.09 in float16): a
# naive softmax or a hand-written exp then yields Inf and NaN. CrossEntropyLoss / log_softmax on raw
# logits subtract the maximum first and stay finite far beyond it (autocast computes cross_entropy in
# float32), and a classifier fitting separable data keeps driving its margins up: with Adam's steady
# steps, about in proportion to the steps taken, so its running maximum doubles over the second half
# of a run. A large logit alone is not a fault, nor is that pace. Levels:
# - info from half the limit (harmless with a stable loss; any exp outside it overflows there);
# - warning when the running maximum grows faster than any steady fit: LOGIT_RUNAWAY_GROWTH (4x) over
#   the second half of the instrumented steps, a blow-up on its way; or past the float32 limit whatever
#   the dtype: a classifier never needs a margin of e^88, such logits are a scale problem (a
#   temperature, unnormalized inputs);
# - error past the dtype's limit and still running away.
LOGIT_INFO_FRACTION = 0.5
LOGIT_RUNAWAY_GROWTH = 4.0
# The pace needs instrumented steps after the first (the first is the untrained output).
LOGIT_MIN_SAMPLES = 3


def _compact(x: float) -> str:
    """3.5e19 instead of 3.5e+19 or 35000000000000000000."""
    return f"{x:.2g}".replace("e+", "e")


def _share_of_limit(fraction: float) -> str:
    return f"{fraction:.0%} of" if fraction < 10 else f"{_compact(fraction)}x"


def _logit_pace(seen: list[tuple[int, float]]) -> dict[str, Any]:
    """How much the running maximum grew over the second half of the instrumented steps."""
    steps = np.array([s for s, _ in seen], dtype=float)
    high = np.maximum.accumulate([v for _, v in seen])
    if len(seen) < LOGIT_MIN_SAMPLES or steps[-1] <= steps[0]:
        return {"runaway": False, "growth_over_last_half": None}
    half = steps[0] + (steps[-1] - steps[0]) / 2
    i_mid = int(np.searchsorted(steps, half, side="right")) - 1  # the last sample at or before half-way ...
    i_mid = min(max(i_mid, 1), len(steps) - 2)  # ... past the untrained first one, before the last
    growth = float(high[-1] / high[i_mid]) if high[i_mid] > 0 else math.inf
    return {"runaway": growth >= LOGIT_RUNAWAY_GROWTH, "growth_over_last_half": growth,
            "half_way_step": int(steps[i_mid]), "runaway_growth": LOGIT_RUNAWAY_GROWTH}


@check
def logit_overflow(stats: WatchStats, run: "RunFacts | None" = None) -> list[Finding]:
    """The largest output logit against the exp overflow limit of its dtype, and its pace over time."""
    if advice.is_regression(run):  # a regression's outputs are not logits
        return []
    seen = [(step, value, dtype) for step, value, dtype in stats.logits if value is not None and math.isfinite(value)]
    if not seen:
        return []
    step, value, dtype = max(seen, key=lambda t: t[1])
    limit = EXP_OVERFLOW_LIMIT.get(dtype, FLOAT32_LIMIT)
    pace = _logit_pace([(s, v) for s, v, _ in seen])
    heading = pace["runaway"]
    at_nan = None if heading else _logits_that_overflowed(stats, limit)
    overflowed = at_nan is not None
    if overflowed and at_nan["logit_at_nan"] > value:
        step, value = at_nan["nan_step"], at_nan["logit_at_nan"]
    fraction = value / limit
    if fraction < LOGIT_INFO_FRACTION:
        return []
    past = fraction >= 1.0
    if (past and heading) or overflowed:
        severity = "error"
    elif heading or value >= FLOAT32_LIMIT:
        severity = "warning"
    else:
        severity = "info"
    text = f"{value:.3g}" if value < 1e6 else _compact(value)
    growth = pace["growth_over_last_half"]
    trend = f", rising {growth:.2g}x" if heading and growth is not None else ""
    short_dtype = dtype.replace("torch.", "")
    evidence = {"largest_logit": value, "step": step, "dtype": dtype, "exp_overflow_limit": limit,
                "fraction_of_limit": fraction, **pace, "info_fraction": LOGIT_INFO_FRACTION,
                "largest_logit_before_nan": (stats.non_finite or {}).get("largest_logit_before"),
                "output_layer": stats.logit_layer, "autocast": stats.autocast,
                "logit_trend": [[s, v] for s, v, _ in seen][-10:], NAN_FROM_OVERFLOW: overflowed}
    if overflowed:
        evidence.update(at_nan)
    stable = advice.stable_loss(run)
    if severity == "info":
        where_harmless = "with a loss on raw logits" if not stats.autocast else "where the loss runs in float32"
        remedy = (f"Harmless {where_harmless}; exp()/softmax of these logits computed by hand in {short_dtype} "
                  f"overflows: {stable or 'compute it in float32'}.")
    elif overflowed:
        remedy = (f"The first NaN/Inf came from an operation of the model on finite inputs and weights, with "
                  f"logits past {short_dtype}'s exp limit: compute softmax/exp stably "
                  f"({stable or 'log_softmax, or subtract the maximum first'}), in float32 under autocast.")
    else:
        steps_text = []
        if heading:
            steps_text.append(advice.lower_rate(stats.lr_at(step) or (run.lr if run else None)))
        if not _inputs_look_standardized(stats):
            steps_text.append("standardize the inputs")
        steps_text.append("remove any temperature or scale factor on the output and add weight decay or label "
                          "smoothing")
        if stable:
            steps_text.append(stable)
        remedy = "; ".join(steps_text) + "."
        remedy = remedy[0].upper() + remedy[1:]
    return [Finding(
        "model.logit_overflow", severity, min(0.9, 0.4 + 0.4 * min(fraction, 1.25)),
        title=f"The largest output logit reached {text} ({_share_of_limit(fraction)} the "
              f"{short_dtype} exp overflow limit {limit}{trend})"
              + (f": at step {at_nan['nan_step']} logits of {at_nan['logit_at_nan']:.3g} over {at_nan['classes']} "
                 "classes overflowed the sum of exp() into the first NaN/Inf" if overflowed else ""),
        evidence=evidence, where=stats.logit_layer, remedy=remedy,
    )]


def _logits_that_overflowed(stats: WatchStats, limit: float) -> dict[str, Any] | None:
    """The step, the largest logit, the classes and the limit of their exp() sum (evidence) when the watch's replay of the first NaN/Inf step found it in an operation
    on finite inputs and weights that took the output layer's logits (the layer's output or that of
    the container it ends), and those were high enough for the sum of exp() over the K classes to
    pass the dtype's range (largest logit + ln K >= the exp limit): a hand-written softmax overflowed.
    Not a log(0) or sqrt(-1) elsewhere in the model."""
    origin = stats.non_finite or {}
    value, module, layer = origin.get("last_output_absmax"), origin.get("last_output_module"), stats.logit_layer
    if not (origin.get("produced_by") == "operation" and origin.get("inputs_finite") is True
            and origin.get("weights_finite") is True and layer is not None and isinstance(module, str)
            and (module == layer or layer.startswith(module + ".")) and isinstance(value, (int, float))
            and math.isfinite(value) and isinstance(origin.get("step"), int)):
        return None
    classes = stats.num_classes or 1
    if value + math.log(classes) < limit:
        return None
    return {"nan_step": origin["step"], "logit_at_nan": float(value), "classes": classes,
            "exp_sum_limit": limit - math.log(classes)}


def _inputs_look_standardized(stats: WatchStats) -> bool:
    """The watch measured the first layer's inputs and they are near unit scale."""
    inputs = stats.inputs
    if not inputs or inputs["kind"] != "features":
        return False
    return not _off_scale_features(inputs)


# -- grad.dead_relu / grad.saturated_activation ---------------------------------------------------
# A ReLU unit active on none of several batches passes no gradient: when half a layer is silent, half
# its capacity is gone and the layer rarely recovers; nine in ten is a layer that has stopped learning.
# The same shares hold for sigmoid/tanh units saturated on every example (derivative near 0).
DEAD_SHARE_WARN = SILENT_SHARE_WARN
DEAD_SHARE_ERROR = 0.9


def _silent_layers(stats: WatchStats, relu: bool) -> dict[str, dict[str, Any]]:
    return {k: u for k, u in stats.units.items()
            if (u["kind"] == "relu") == relu and u["share"] >= DEAD_SHARE_WARN}


def _timing(unit: dict[str, Any]) -> dict[str, Any]:
    return {"first_seen_step": unit.get("first_seen_step"), "dead_at_first_look": unit.get("dead_at_first_look"),
            "first_look_step": unit.get("first_look_step")}


def _units_evidence(bad: dict[str, dict[str, Any]], worst_key: str) -> dict[str, Any]:
    worst = bad[worst_key]
    return {"layers": {k: {"share": u["share"], "silent_units": u["silent_units"], "units": u["units"],
                           "kind": u["kind"], **_timing(u)} for k, u in bad.items()},
            "instrumented_steps_in_window": worst["samples"], "threshold": DEAD_SHARE_WARN, **_timing(worst)}


@check
def dead_relu_units(stats: WatchStats, run: "RunFacts | None" = None) -> list[Finding]:
    """ReLU units never active over the recent window, and since when."""
    bad = _silent_layers(stats, relu=True)
    if not bad:
        return []
    worst_key = max(bad, key=lambda k: bad[k]["share"])
    worst = bad[worst_key]
    since = ("from the first instrumented step: look at the bias initialization and the inputs' scale"
             if worst.get("dead_at_first_look") else
             f"since step {worst['first_seen_step']}: an update pushed them below zero for every input; lower the "
             "learning rate" if worst.get("first_seen_step") is not None else "")
    return [Finding(
        "grad.dead_relu", "error" if worst["share"] >= DEAD_SHARE_ERROR else "warning",
        min(0.9, 0.5 + 0.1 * worst["samples"]),
        title=f"{worst['share']:.0%} of the units after {worst_key!r} are never active (dead ReLU)",
        evidence=_units_evidence(bad, worst_key), where=worst_key,
        remedy=(f"Dead ReLUs pass no gradient. Silent {since}. Replace the ReLU after {worst_key!r} with "
                f"{advice.leaky_activation(run)}."),
    )]


@check
def saturated_units(stats: WatchStats, run: "RunFacts | None" = None) -> list[Finding]:
    """tanh/sigmoid units pinned at their bounds on every example over the recent window, and since when."""
    bad = _silent_layers(stats, relu=False)
    if not bad:
        return []
    worst_key = max(bad, key=lambda k: bad[k]["share"])
    worst = bad[worst_key]
    activation = worst["kind"].split()[-1]
    causes = []
    if worst.get("first_seen_step") is not None and not worst.get("dead_at_first_look"):
        causes.append(f"they saturated at step {worst['first_seen_step']}: "
                      + advice.lower_rate(stats.lr_at(worst["first_seen_step"]) or (run.lr if run else None)))
    if stats.inputs and _off_scale_features(stats.inputs):
        causes.append("standardize the inputs (the watch saw them far from unit scale)")
    causes.append(f"use {advice.tanh_sigmoid_init(run)} so that pre-activations start near 0")
    return [Finding(
        "grad.saturated_activation", "error" if worst["share"] >= DEAD_SHARE_ERROR else "warning",
        min(0.9, 0.5 + 0.1 * worst["samples"]),
        title=f"{worst['share']:.0%} of the {activation} units after {worst_key!r} are saturated on every example",
        evidence=_units_evidence(bad, worst_key), where=worst_key,
        remedy=(f"Saturated {activation} units pass almost no gradient (their pre-activations are far in the flat "
                "tails). " + "; ".join(causes) + "."),
    )]


# -- grad.vanishing / grad.exploding ----------------------------------------------------------------
# Gradient norm of the input-side weight layer over the output-side one. Three orders of magnitude
# (1e-3) means the first layers learn a thousand times slower than the last: vanishing. The mirror
# image (1e3) is exploding across depth; five orders makes either an error.
VANISHING_RATIO = 1e-3
EXPLODING_DEPTH_RATIO = 1e3
DEPTH_ERROR_ORDERS = 5
# Fewer weight layers than this is no depth to speak of.
MIN_DEPTH_LAYERS = 3


def _depth_ratios(stats: WatchStats) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The first weight layer's gradient norm over the last's per instrumented step (before the first
    NaN), the two layers, and the steps. A ratio of 0 is no vanishing: a zero-initialized branch (a
    LoRA B matrix) leaves the layer before it without a gradient on the first step."""
    idx = [i for i, w in enumerate(stats.weight_layers) if w]
    if len(idx) < MIN_DEPTH_LAYERS or stats.grad_norms.shape[1] == 0:
        return np.zeros(0), [], np.zeros(0)
    first, last = stats.grad_norms[idx[0]], stats.grad_norms[idx[-1]]
    with np.errstate(all="ignore"):
        ratio = first / last
    ok = np.isfinite(ratio) & (last > 0)
    steps = np.array(stats.sample_steps)
    if stats.first_non_finite_step is not None:
        ok &= steps < stats.first_non_finite_step
    return ratio[ok], [stats.layers[idx[0]], stats.layers[idx[-1]]], steps[ok]


def depth_ratio_off(ratio: float) -> bool:
    """A gradient that vanishes or explodes across depth (the depth checks' thresholds)."""
    return 0 < ratio < VANISHING_RATIO or ratio > EXPLODING_DEPTH_RATIO


def _depth_timing(ratios: np.ndarray, steps: np.ndarray, off) -> dict[str, Any]:
    """When the depth ratio went off: ``at_init`` when the first look, on the untrained weights (step
    0), already showed it (an initialization symptom); otherwise ``first_seen_step``, the first
    instrumented step from which it stayed off (a symptom that grew during training)."""
    first_seen = None
    for i in range(ratios.size - 1, -1, -1):
        if not off(ratios[i]):
            break
        first_seen = int(steps[i])
    first_look = int(steps[0])
    return {"ratio_at_first_look": float(ratios[0]), "first_look_step": first_look,
            "at_init": bool(first_look == 0 and off(ratios[0])), "first_seen_step": first_seen}


def _layer_medians(stats: WatchStats) -> dict[str, float]:
    med = stats.layer_grad_norm_medians()
    return {name: float(v) for name, v, w in zip(stats.layers, med, stats.weight_layers) if w and np.isfinite(v)}


@check
def vanishing_gradients(stats: WatchStats) -> list[Finding]:
    """Per-layer gradient norms that shrink by orders of magnitude from the output to the input
    (over the run, or on the untrained weights of the first look)."""
    ratios, names, steps = _depth_ratios(stats)
    if ratios.size == 0:
        return []
    first, last = names
    vanishes = lambda r: 0 < r < VANISHING_RATIO  # noqa: E731
    timing = _depth_timing(ratios, steps, vanishes)
    ratio = float(np.median(ratios))
    if not vanishes(ratio) and not timing["at_init"]:
        return []
    ratio = ratio if vanishes(ratio) else timing["ratio_at_first_look"]
    orders = -math.log10(ratio)
    when = " at initialization (step 0)" if timing["at_init"] else (
        f" from step {timing['first_seen_step']} on" if timing["first_seen_step"] is not None else "")
    return [Finding(
        "grad.vanishing", "error" if orders >= DEPTH_ERROR_ORDERS else "warning", 0.8,
        title=(f"Gradients shrink {orders:.1f} orders of magnitude from {last!r} (output side) to {first!r} "
               f"(input side){when}"),
        evidence={"first_over_last_grad_norm": ratio, "threshold": VANISHING_RATIO,
                  "median_grad_norm_per_layer": _layer_medians(stats), "instrumented_steps": int(ratios.size),
                  **timing},
        where=first,
    )]


@check
def exploding_gradients(stats: WatchStats) -> list[Finding]:
    """Gradient norms that grow by orders of magnitude towards the input (over the run, or on the
    untrained weights of the first look), or over time."""
    findings = []
    ratios, names, steps = _depth_ratios(stats)
    explodes = lambda r: r > EXPLODING_DEPTH_RATIO  # noqa: E731
    timing = _depth_timing(ratios, steps, explodes) if ratios.size else {}
    if ratios.size and (explodes(float(np.median(ratios))) or timing["at_init"]):
        ratio = float(np.median(ratios))
        ratio = ratio if explodes(ratio) else timing["ratio_at_first_look"]
        orders = math.log10(ratio)
        when = " at initialization (step 0)" if timing["at_init"] else ""
        findings.append(Finding(
            "grad.exploding", "error" if orders >= DEPTH_ERROR_ORDERS else "warning", 0.75,
            title=f"Gradients grow {orders:.1f} orders of magnitude from {names[1]!r} to {names[0]!r} (input side){when}",
            evidence={"first_over_last_grad_norm": ratio, "threshold": EXPLODING_DEPTH_RATIO,
                      "median_grad_norm_per_layer": _layer_medians(stats), **timing},
            where=names[0],
        ))
    growth = _grad_norm_growth(stats)
    if growth is not None and growth["growth"] >= GRAD_EXPLODE_RATIO:
        findings.append(Finding(
            "grad.exploding", "error" if growth["growth"] >= GRAD_EXPLODE_ERROR_RATIO else "warning", 0.75,
            title=(f"The total gradient norm grew {growth['growth']:.0f}x (from {growth['first_grad_norm']:.3g} to "
                   f"{growth['peak_grad_norm']:.3g})"),
            evidence={**growth, "threshold": GRAD_EXPLODE_RATIO}, where=f"step {growth['peak_step']}",
        ))
    return findings


def _grad_norm_growth(stats: WatchStats) -> dict[str, Any] | None:
    totals = stats.total_grad_norms
    steps = np.array(stats.sample_steps)
    ok = np.isfinite(totals) & (totals > 0)
    if ok.sum() < 2:
        return None
    first = float(totals[ok][0])
    i_peak = int(np.argmax(np.where(ok, totals, -np.inf)))
    return {"first_grad_norm": first, "peak_grad_norm": float(totals[i_peak]), "peak_step": int(steps[i_peak]),
            "growth": float(totals[i_peak]) / first}


# -- optim.lr_too_high / optim.lr_too_low ----------------------------------------------------------
# ||dW|| / ||W|| per weight layer and step. Around 1e-3 is the usual healthy rate. Above 0.1 a step
# rewrites a tenth of the layer: ten such steps replace it, which is an oscillating or diverging
# run's learning rate. Below 1e-5 a layer needs 100,000 steps to move by its own size.
UPDATE_RATIO_HIGH = 0.1
UPDATE_RATIO_LOW = 1e-5
# The first steps do not show the learning rate's steady effect: RMSprop (no bias correction) moves
# each weight by lr / sqrt(1 - alpha^t), 10x its steady step at t = 1 and still 1.6x at t = 50 (alpha
# 0.99), which on a small-init LSTM is a ratio of ~0.25; momentum SGD starts below its steady step.
# Instrumented steps before this are judged only when the run diverged (non-finite) before reaching it.
UPDATE_RATIO_WARMUP_STEPS = 50
# A tiny update is the learning rate's fault only while there is a gradient to apply: once the total
# gradient norm fell below this share of its first value (saturation, or a fitted model), or a layer
# is dead (grad.dead_relu at error level, often left behind by a too-HIGH learning rate), small
# updates say nothing about the learning rate.
LOW_RATIO_MIN_GRAD_SHARE = 1e-2

# An update as large as the weights it changes (||dW|| >= ||W||) overwrites the layer in one step:
# what it had learned, or its initialization, is gone. Healthy first steps stay far below: Adam's
# first update is about lr per weight, 0.16 of a BERT layer at lr 3e-3; RMSprop's uncorrected first
# step about 0.25 of a small-init LSTM. Adam's step does not scale with the gradient, so such an update
# is the rate's, unless the gradient itself was off across depth on that step (vanishing or exploding
# at initialization, or weights far below their scale): then the initialization made it large. It is
# judged on every instrumented step, warm-up steps included: the first steps are where it happens.
UPDATE_RATIO_REWRITE = 1.0

# A spike: a loss more than this many times the largest loss before it. A healthy run's batch losses
# stay below its first ones (a classifier starts at chance, ln K, the most it is usually wrong); a
# rate that is too high throws the weights far enough that the loss jumps past anything seen.
SPIKE_OVER_PREVIOUS_MAX = 3.0
# The run dies after the spike when its loss never gets back below its best level before the spike
# (measured as the median of the last losses), or ends with no more than this share of its starting
# loss gone (a network that spiked at once and then sat at chance has learned nothing).
DIED_PROGRESS_SHARE = 0.1
# The loss levels before and after the spike are medians over this many steps (single batches are
# noisy). The blow-up's onset is the end of the best such window before the spike: from there the loss
# rose to it (units killed by the oversized updates die after that step, not necessarily after the jump).
LEVEL_WINDOW_STEPS = 5


def _update_ratios(stats: WatchStats, before_step: float | None = None) -> dict[str, Any] | None:
    """The update-to-weight ratios of the weight layers over the steady instrumented steps (before the
    first NaN), or, with ``before_step``, over the instrumented steps up to it."""
    if stats.update_ratios.size == 0:
        return None
    idx = [i for i, w in enumerate(stats.weight_layers) if w]
    if not idx:
        return None
    steps = np.array(stats.sample_steps)
    diverged = stats.first_non_finite_step is not None
    cols = steps < (stats.first_non_finite_step if diverged else np.inf)
    if before_step is not None:
        cols &= steps <= before_step
    else:
        steady = cols & (steps >= UPDATE_RATIO_WARMUP_STEPS)
        if steady.any():
            cols = steady
        elif not diverged:  # only warm-up steps seen: too early to judge the learning rate
            return None
    r = stats.update_ratios[idx][:, cols]
    r = np.where(np.isfinite(r) & (r > 0), r, np.nan)
    usable = ~np.all(np.isnan(r), axis=0)
    if not usable.any():
        return None
    r = r[:, usable]
    per_layer = {stats.layers[i]: float(np.nanmedian(row)) for i, row in zip(idx, r) if np.isfinite(row).any()}
    with np.errstate(all="ignore"):
        top = float(np.nanmedian(np.nanmax(r, axis=0))) if before_step is None else float(np.nanmax(r))
        typical = float(np.nanmedian(np.nanmedian(r, axis=0)))
    return {"per_layer": per_layer, "top": top, "typical": typical, "steps": steps[cols][usable].tolist(),
            "cols": cols, "usable": usable}


def _level(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else math.nan


def _best_level(values: np.ndarray) -> tuple[float, int]:
    """The lowest median of LEVEL_WINDOW_STEPS consecutive losses before the spike, and the index of
    the window's last step: where the loss stood best, and from where it began to rise."""
    if values.size <= LEVEL_WINDOW_STEPS:
        return _level(values), int(np.nanargmin(np.where(np.isfinite(values), values, np.inf)))
    windows = np.lib.stride_tricks.sliding_window_view(np.where(np.isfinite(values), values, np.inf),
                                                       LEVEL_WINDOW_STEPS)
    levels = np.median(windows, axis=1)
    j = int(np.argmin(levels))
    return float(levels[j]), j + LEVEL_WINDOW_STEPS - 1


def _loss_spike(stats: WatchStats) -> dict[str, Any] | None:
    """A loss that jumped past everything before it (or turned NaN/Inf) and did not recover: the step,
    and the loss levels around it."""
    steps, values = stats.loss_steps, stats.loss_values
    if steps.size < 2:
        return None
    finite = np.isfinite(values)
    bad = np.flatnonzero(~finite)
    first_bad = int(bad[0]) if bad.size else None
    if first_bad is None and stats.first_non_finite_step is not None:  # a NaN gradient the loss did not show
        first_bad = min(int(np.searchsorted(steps, stats.first_non_finite_step)), steps.size - 1)
    running_max = np.maximum.accumulate(np.where(finite, values, -np.inf))
    jumps = np.flatnonzero(finite[1:] & (values[1:] > SPIKE_OVER_PREVIOUS_MAX * running_max[:-1])
                           & (running_max[:-1] > 0)) + 1
    jump = int(jumps[0]) if jumps.size and (first_bad is None or jumps[0] <= first_bad) else None
    i = jump if jump is not None else first_bad
    if i is None:
        i = _rise_after_progress(values)
    if i is None or i < 1:
        return None
    before = values[:i]
    best_before, bottom = _best_level(before)
    start = _level(values[:min(LEVEL_WINDOW_STEPS, i)])
    tail = values[i:][-max(LEVEL_WINDOW_STEPS, (values.size - i) // 10):]
    non_finite_after = first_bad is not None and first_bad >= i
    window = np.where(finite, values, np.inf)[i:i + LEVEL_WINDOW_STEPS]
    stayed_up = bool(np.median(window) > SPIKE_OVER_PREVIOUS_MAX * running_max[i - 1]) if jump is not None else False
    end = _level(tail)
    died = non_finite_after or not math.isfinite(end) or _learned_nothing(start, end)
    if not died and end <= best_before:
        return None  # a transient spike the run recovered from
    return {"spike_step": int(steps[i]), "onset_step": int(steps[bottom]), "loss_at_spike": float(values[i]),
            "loss_before_spike": best_before,
            "start_loss": start, "end_loss": end, "died": bool(died), "non_finite_after": bool(non_finite_after),
            "loss_jumped": jump is not None, "stayed_up": stayed_up, "spike_over_previous_max": SPIKE_OVER_PREVIOUS_MAX,
            "rose_after_progress": jump is None and first_bad is None}


def _learned_nothing(start: float, end: float) -> bool:
    """The run ended with no more than DIED_PROGRESS_SHARE of its starting loss gone."""
    return end >= (1 - DIED_PROGRESS_SHARE) * start


def _rise_after_progress(values: np.ndarray) -> int | None:
    """A loss that fell (by more than DIED_PROGRESS_SHARE of its start), then rose again and ended
    having learned nothing, without a jump: the first step after its best level from which it stayed
    above the level half-way back to the start. None when the run kept (part of) its progress."""
    finite = values[np.isfinite(values)]
    if finite.size < 4 * LEVEL_WINDOW_STEPS:
        return None
    start = _level(values[:LEVEL_WINDOW_STEPS])
    best, bottom = _best_level(values)
    end = _level(values[-max(LEVEL_WINDOW_STEPS, values.size // 10):])
    if not (best <= (1 - DIED_PROGRESS_SHARE) * start and _learned_nothing(start, end)):
        return None
    half_way = (best + start) / 2
    held = np.array([_level(values[j:j + LEVEL_WINDOW_STEPS]) for j in range(bottom + 1, values.size)])
    above = np.flatnonzero(held >= half_way)
    return bottom + 1 + int(above[0]) if above.size else None


def _blow_up_signs(stats: WatchStats, spike: dict[str, Any]) -> dict[str, Any]:
    """What else says the updates were too large before the spike: a ramping rate, the update ratio,
    the gradient norm, and NaN weights written by the update before the first NaN."""
    step = spike["spike_step"]
    evidence: dict[str, Any] = {}
    signs = []
    warm = _warmup(stats)
    if warm is not None:
        evidence.update(warm, steps_after_warmup=step - warm["warmup_end_step"])
        signs.append("warm-up")
    at_spike = _update_ratios(stats, before_step=step)
    if at_spike is not None:
        evidence.update(update_to_weight_ratio_before_spike=at_spike["top"], update_ratio_steps=at_spike["steps"][-5:],
                        high_threshold=UPDATE_RATIO_HIGH)
        if at_spike["top"] > UPDATE_RATIO_HIGH:
            signs.append("update ratio")
    growth = _grad_norm_growth(stats)
    if growth is not None:
        evidence["grad_norm_growth"] = growth["growth"]
        if growth["growth"] >= GRAD_EXPLODE_RATIO:
            signs.append("gradient norm")
    if (stats.non_finite or {}).get("produced_by") == "weights":
        signs.append("NaN weights written by an update")
    evidence["corroborated_by"] = signs
    return evidence


def rate_blew_up(stats: WatchStats) -> dict[str, Any] | None:
    """The evidence that the run spiked and died from oversized updates. A jump or a NaN alone is
    not enough: one batch of outliers makes a jump that the next batches undo, and a NaN may come
    from an operation (sqrt(0)'s gradient) or the data. So the loss must have stayed up (or turned
    NaN/Inf) after the jump, or the updates show it: ratios above UPDATE_RATIO_HIGH, a gradient norm
    grown GRAD_EXPLODE_RATIO-fold, NaN weights written by an update (a ramping rate alone is not)."""
    if (stats.non_finite or {}).get("produced_by") == "inputs":
        return None
    spike = _loss_spike(stats)
    if spike is None:
        return None
    spike.update(_blow_up_signs(stats, spike))
    from_the_updates = bool(set(spike["corroborated_by"]) - {"warm-up"})
    if spike["loss_jumped"]:
        if not (from_the_updates or spike["stayed_up"] or spike["non_finite_after"]):
            return None
    elif not (from_the_updates or _turned_near_the_peak(stats, spike)):
        return None
    # the rate's damage began at the first update that overwrote a layer, if one came before the spike:
    # that is its onset (a spike found later in a run already thrown off is a consequence, and where it
    # falls depends on float noise, not on the cause)
    rewrite = rewriting_update(stats)
    if rewrite is not None and rewrite["large_update_step"] < spike["onset_step"]:
        spike.update(large_update_step=rewrite["large_update_step"], onset_step=rewrite["large_update_step"],
                     update_to_weight_ratio=rewrite["update_to_weight_ratio"],
                     rewrite_threshold=rewrite["rewrite_threshold"])
    return spike


# A warm-up is a learning-rate range test run for free: the loss falls while the rate is small and
# turns up once it is too high. A loss that fell, then turned and gave back all its progress once the
# ramp had taken the rate past this share of its peak, turned because of the rate.
WARMUP_TURN_SHARE = 0.5


def _turned_near_the_peak(stats: WatchStats, spike: dict[str, Any]) -> bool:
    if not spike.get("rose_after_progress") or "warmup_end_step" not in spike:
        return False
    rate = stats.lr_at(spike["onset_step"])
    turned = rate is not None and rate >= WARMUP_TURN_SHARE * spike["peak_lr"]
    if turned:
        spike["corroborated_by"] = [*spike["corroborated_by"], "the loss turned up near the warm-up's peak"]
        spike["warmup_turn_share"] = WARMUP_TURN_SHARE
    return turned


def rewriting_update(stats: WatchStats) -> dict[str, Any] | None:
    """The first instrumented update (before any NaN) that changed a weight layer by at least its own
    size, on a step whose gradient was healthy across depth (see UPDATE_RATIO_REWRITE)."""
    idx = [i for i, w in enumerate(stats.weight_layers) if w]
    if stats.update_ratios.size == 0 or not idx:
        return None
    ratios, _, depth_steps = _depth_ratios(stats)
    depth_at = dict(zip(depth_steps.tolist(), ratios.tolist()))
    for col, step in enumerate(stats.sample_steps):
        if stats.first_non_finite_step is not None and step >= stats.first_non_finite_step:
            break
        r = stats.update_ratios[idx, col]
        r = np.where(np.isfinite(r), r, -np.inf)
        if not r.size or float(np.max(r)) < UPDATE_RATIO_REWRITE:
            continue
        depth = depth_at.get(step)
        if depth is not None and depth_ratio_off(depth):
            continue
        layer = stats.layers[idx[int(np.argmax(r))]]
        return {"large_update_step": int(step), "layer": layer, "update_to_weight_ratio": float(np.max(r)),
                "layers_rewritten": int(np.sum(r >= UPDATE_RATIO_REWRITE)), "weight_layers": len(idx),
                "depth_grad_ratio_at_that_step": depth, "rewrite_threshold": UPDATE_RATIO_REWRITE}
    return None


def collapsed_after_rewrite(stats: WatchStats) -> dict[str, Any] | None:
    """A run that learned nothing (no 3x spike needed: it may sit at chance from the first steps on)
    after an update that overwrote a layer: the rate threw the weights away."""
    update = rewriting_update(stats)
    values = stats.loss_values
    if update is None or values.size < 2 * LEVEL_WINDOW_STEPS:
        return None
    # the level before that update took effect (the untrained model's loss, for an update at step 0):
    # the losses right after it already show the damage
    taken = int(np.searchsorted(stats.loss_steps, update["large_update_step"], side="right"))
    start = _level(values[:max(1, min(taken, LEVEL_WINDOW_STEPS))])
    end = _level(values[-max(LEVEL_WINDOW_STEPS, values.size // 10):])
    if not (math.isfinite(start) and start > 0) or (math.isfinite(end) and not _learned_nothing(start, end)):
        return None
    return {**update, "onset_step": update["large_update_step"], "start_loss": start, "end_loss": end,
            "learned_nothing": True, "died_progress_share": DIED_PROGRESS_SHARE}


def updates_were_large(stats: WatchStats) -> bool:
    """Whether anything the watch measured says the updates were too large rather than too small: a
    blow-up, an update that overwrote a layer, or updates above UPDATE_RATIO_HIGH on any step (the
    first steps included). A too-low rate cannot be concluded from such a run."""
    if stats.update_ratios.size:
        idx = [i for i, w in enumerate(stats.weight_layers) if w]
        with np.errstate(all="ignore"):
            if idx and np.nanmax(np.where(np.isfinite(stats.update_ratios[idx]), stats.update_ratios[idx],
                                          np.nan), initial=0.0) > UPDATE_RATIO_HIGH:
                return True
    return rate_blew_up(stats) is not None or rewriting_update(stats) is not None


def _warmup(stats: WatchStats) -> dict[str, float] | None:
    """A rate that ramps up: it starts below WARMUP_START_FRACTION of its peak (the curves' rule)."""
    if stats.lr_values.size < 2:
        return None
    peak = float(np.max(stats.lr_values))
    if peak <= 0 or stats.lr_values[0] >= WARMUP_START_FRACTION * peak:
        return None
    i_peak = int(np.argmax(stats.lr_values >= peak * (1 - 1e-3)))
    return {"warmup_end_step": int(stats.lr_steps[i_peak]), "peak_lr": peak}


def _anchor_step(spike: dict[str, Any], analysis: "CurveAnalysis | None") -> float:
    """The step the curve analysis names for the same event (so that both findings are one), else the spike's."""
    if analysis is not None:
        key = {"non_finite": "first_non_finite_step", "diverging": "divergence_step"}.get(analysis.verdict)
        value = analysis.evidence.get(key) if key else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return float(spike["spike_step"])


@check
def learning_rate_too_high(stats: WatchStats, analysis: "CurveAnalysis | None" = None,
                           run: "RunFacts | None" = None) -> list[Finding]:
    """A run that spiked and died (named with the rate at the spike, the warm-up's end, the update
    ratio), or updates that rewrite a tenth of a layer per step."""
    spike = rate_blew_up(stats)
    if spike is not None:
        return [_spike_finding(stats, spike, analysis, run)]
    collapse = collapsed_after_rewrite(stats)
    if collapse is not None:
        return [_rewrite_finding(stats, collapse, run)]
    ratios = _update_ratios(stats)
    if ratios is None or ratios["top"] <= UPDATE_RATIO_HIGH:
        return []
    per_layer = ratios["per_layer"]
    layer = max(per_layer, key=per_layer.get)
    rate = stats.lr_at(stats.steps) or (run.lr if run else None)
    factor = max(2.0, ratios["top"] / 1e-2)
    return [Finding(
        "optim.lr_too_high", "warning", 0.6,
        title=f"Each step changes {layer!r} by {per_layer[layer]:.0%} of its size (update-to-weight ratio)",
        evidence=_ratio_evidence(ratios, rate), where=layer,
        remedy=f"{advice.lower_rate(rate, factor)}, so that updates are ~1e-3..1e-2 of the weights.",
    )]


def _rewrite_finding(stats: WatchStats, collapse: dict[str, Any], run: "RunFacts | None") -> Finding:
    step = collapse["large_update_step"]
    rate = stats.lr_at(step) or (run.lr if run else None)
    rate_text = f" at learning rate {advice.number(rate)}" if rate else ""
    share = collapse["update_to_weight_ratio"]
    layers = (f" ({collapse['layers_rewritten']} of {collapse['weight_layers']} weight layers)"
              if collapse["layers_rewritten"] > 1 else "")
    return Finding(
        "optim.lr_too_high", "error", 0.8,
        title=(f"The update of step {step}{rate_text} changed {collapse['layer']!r} by {share:.0%} of its size"
               f"{layers}, and the loss never fell below its start"),
        evidence={**collapse, "lr_at_spike": rate},
        where=f"step {step}",
        remedy=(f"An update as large as the weights throws them away: "
                f"{advice.lower_rate(rate, min(1000.0, max(10.0, share / 1e-2))).lower()} (updates "
                "should change a layer by ~1e-3..1e-2 of its size per step; for Adam that is roughly the rate "
                "over the weights' scale), and restart from the initial weights."),
    )


def _ratio_evidence(ratios: dict[str, Any], rate: float | None) -> dict[str, Any]:
    return {"median_update_to_weight_ratio_per_layer": ratios["per_layer"], "largest_layer_ratio": ratios["top"],
            "typical_ratio": ratios["typical"], "high_threshold": UPDATE_RATIO_HIGH, "low_threshold": UPDATE_RATIO_LOW,
            "instrumented_steps": len(ratios["steps"]), "warmup_steps_skipped": UPDATE_RATIO_WARMUP_STEPS,
            "lr": rate}


def _spike_finding(stats: WatchStats, spike: dict[str, Any], analysis, run) -> Finding:
    step = spike["spike_step"]
    rate = stats.lr_at(step)
    if rate is None and run is not None:
        rate = run.lr
    evidence = {**spike, "lr_at_spike": rate}
    what = "turned NaN/Inf" if spike["non_finite_after"] else (
        "never recovered" if not spike["died"] else "lost all its progress")
    rate_text = f" at learning rate {advice.number(rate)}" if rate else ""
    if "warmup_end_step" in spike:
        peak, after = spike["peak_lr"], spike["steps_after_warmup"]
        ramp = (f", {abs(after)} steps {'after' if after >= 0 else 'before'} the warm-up reached its peak "
                f"{advice.number(peak)} (step {spike['warmup_end_step']}),")
        remedy = (f"Lower the peak learning rate from {advice.number(peak)} to about {advice.number(peak / 10)} "
                  f"(or warm up longer), and restart from a checkpoint before step {step}.")
    else:
        ramp = ""
        remedy = f"{advice.lower_rate(rate)} and restart from a checkpoint before step {step} (or from the start)."
    return Finding(
        "optim.lr_too_high", "error" if spike["died"] else "warning",
        min(0.9, 0.7 + 0.05 * len(spike["corroborated_by"])),
        title=(f"The loss {'turned up again at' if spike.get('rose_after_progress') else 'spiked at'} step "
               f"{step}{rate_text}{ramp} and {what}"),
        evidence=evidence, where=f"step {_anchor_step(spike, analysis):g}", remedy=remedy,
    )


@check
def learning_rate_too_low(stats: WatchStats, run: "RunFacts | None" = None) -> list[Finding]:
    """Updates far too small for the weights while there is still a gradient to apply."""
    ratios = _update_ratios(stats)
    if ratios is None or ratios["top"] > UPDATE_RATIO_HIGH or updates_were_large(stats):
        return []
    totals = stats.total_grad_norms
    first = next((float(t) for t in totals if math.isfinite(t) and t > 0), None)
    judged = totals[ratios["cols"]][ratios["usable"]] if totals.size == ratios["cols"].size else np.zeros(0)
    judged = judged[np.isfinite(judged)]
    gradient_left = first is None or not judged.size or float(np.median(judged)) >= LOW_RATIO_MIN_GRAD_SHARE * first
    gradient_left = gradient_left and not any(u["share"] >= DEAD_SHARE_ERROR for u in stats.units.values())
    typical = ratios["typical"]
    if typical >= UPDATE_RATIO_LOW or not gradient_left:
        return []
    rate = stats.lr_at(stats.steps) or (run.lr if run else None)
    evidence = _ratio_evidence(ratios, rate)
    evidence["median_grad_norm_over_first"] = (float(np.median(judged)) / first) if first and judged.size else None
    return [Finding(
        "optim.lr_too_low", "warning", 0.55,
        title=f"Updates are only {typical:.1e} of the weights per step (update-to-weight ratio)",
        evidence=evidence,
        remedy=f"{advice.raise_rate(rate, min(1000.0, 1e-3 / typical))} (healthy ratios are ~1e-3).",
    )]


# -- optim.clipping_masks_lr ---------------------------------------------------------------------
# The TAXONOMY's "clipping active on most steps": more than half of the steps are cut, so the clip
# threshold, not the learning rate, sets the step size. A fifth is worth a note.
CLIP_SHARE_WARN = 0.5
CLIP_SHARE_INFO = 0.2
# Fewer observations than this cannot tell "most steps" from chance.
MIN_CLIP_OBSERVATIONS = 5
# A norm equal to max_norm within this relative margin was cut to max_norm (when only the clipped
# gradient is seen, against a declared max_norm).
CLIPPED_NORM_TOLERANCE = 1e-3
# A clip that cuts often is a fault only when it hides a rate that is too high (the default clip of
# the HF Trainer, max_grad_norm=1.0, fires on most steps of many healthy runs): the pre-clip norm
# grew by an order of magnitude from the first third of the run to the last (each clipped step
# overshoots and the next gradient is larger), the updates are above UPDATE_RATIO_HIGH, or the run
# spiked. Or when the clip itself sets a step too small: it cuts the gradient by more than an order
# of magnitude (CLIP_SEVERE_CUT) on most steps of a run whose loss does not fall (underfitting,
# stalled): the rate the user set is not the rate the run trains at.
CLIP_NORM_GROWTH = 10.0
CLIP_SEVERE_CUT = 10.0
NOT_LEARNING_VERDICTS = ("underfitting", "stalled")


def _clip_corroboration(stats: WatchStats, norms: np.ndarray, cut: float,
                        analysis: "CurveAnalysis | None") -> dict[str, Any]:
    third = max(1, norms.size // 3)
    early, late = float(np.median(norms[:third])), float(np.median(norms[-third:]))
    growth = late / early if early > 0 else math.inf
    ratios = _update_ratios(stats)
    spike = rate_blew_up(stats)
    reasons = []
    if growth >= CLIP_NORM_GROWTH:
        reasons.append(f"the pre-clip gradient norm grew {growth:.0f}x")
    if ratios is not None and ratios["top"] > UPDATE_RATIO_HIGH:
        reasons.append(f"updates change a layer by {ratios['top']:.0%} of its size per step")
    if spike is not None:
        reasons.append(f"the loss spiked at step {spike['spike_step']}")
    not_learning = analysis is not None and analysis.verdict in NOT_LEARNING_VERDICTS
    if cut >= CLIP_SEVERE_CUT and not_learning:
        reasons.append(f"the clip shrinks the step {cut:.0f}x while the loss does not fall ({analysis.verdict})")
    return {"severe_cut": CLIP_SEVERE_CUT, "pre_clip_norm_growth": growth, "norm_growth_threshold": CLIP_NORM_GROWTH,
            "largest_update_ratio": ratios["top"] if ratios else None, "spike_step": spike["spike_step"] if spike else None,
            "rate_too_high_because": reasons}


@check
def clipping_masks_lr(stats: WatchStats, analysis: "CurveAnalysis | None" = None,
                      run: "RunFacts | None" = None) -> list[Finding]:
    """The share of steps on which gradient clipping cut the gradient, and whether it hides a rate
    that is too high (otherwise a clip that fires is a note, not a fault)."""
    norms, limits = np.asarray(stats.clip["norms"], float), np.asarray(stats.clip["max_norms"], float)
    ok = np.isfinite(norms)
    norms, limits = norms[ok], limits[ok]
    if norms.size < MIN_CLIP_OBSERVATIONS:
        return []
    if stats.clip["source"] == "declared max_norm":
        clipped = norms >= limits * (1 - CLIPPED_NORM_TOLERANCE)
    else:
        clipped = norms > limits
    share = float(clipped.mean())
    if share < CLIP_SHARE_INFO:
        return []
    factor = float(np.median(norms[clipped] / limits[clipped])) if clipped.any() else 1.0
    corroboration = _clip_corroboration(stats, norms, factor, analysis)
    reasons = corroboration["rate_too_high_because"]
    rate = stats.lr_at(stats.steps) or (run.lr if run else None)
    max_norm = float(np.median(limits))
    if share >= CLIP_SHARE_WARN and reasons:
        severity, confidence = "warning", min(0.9, 0.5 + 0.4 * share)
        remedy = (f"The clip at {advice.number(max_norm)}, not the learning rate, sets the step ("
                  + "; ".join(reasons) + "). Turn clipping off and find the highest rate that does not blow up "
                  f"(now {advice.number(rate) if rate else 'unknown'}; a range test, or `lossdoctor checkup`), "
                  "then re-enable clipping at a threshold that rarely triggers (about the median pre-clip norm, "
                  f"{float(np.median(norms)):.3g}).")
    else:
        severity, confidence = "info", 0.3
        remedy = ("Nothing says the rate is too high (the gradient norm did not grow, updates are moderate, no "
                  "spike): a clip that fires often is harmless then. If the loss falls too slowly, the clip, not "
                  "the rate, sets the step: `lossdoctor checkup` runs the ablation without it.")
    return [Finding(
        "optim.clipping_masks_lr", severity, confidence,
        title=f"Gradient clipping cut the gradient on {share:.0%} of the steps (median cut {factor:.3g}x)",
        evidence={"clipped_share": share, "observations": int(norms.size), "max_norm": max_norm,
                  "median_pre_clip_norm": float(np.median(norms)), "median_cut_factor": factor,
                  "observed_by": stats.clip["source"], "warn_share": CLIP_SHARE_WARN, "lr": rate, **corroboration,
                  "thresholds": {"info": CLIP_SHARE_INFO, "warning": CLIP_SHARE_WARN}},
        remedy=remedy,
    )]


# -- data.unnormalized (the first layer's inputs) -----------------------------------------------------
# The data room's thresholds (one place: ``data.checks``): a feature whose magnitude (root mean square,
# sqrt(mean^2 + std^2)) exceeds LARGE_MAGNITUDE_LIMIT puts the first layer's pre-activations that far
# beyond what initializers assume. Inputs within [-1, 1] (UNIT_RANGE) are never flagged (already
# scaled), nor is a mean alone. The spread of per-feature scales is check_data's to judge on the
# whole data set: a few batches (and flattened images, whose border pixels never vary) do not show it
# reliably.


def _off_scale_features(inputs: dict[str, Any]) -> tuple[np.ndarray, list[int]]:
    """Each feature's magnitude, and the features whose magnitude is far from unit scale."""
    std, mean, absmax = np.asarray(inputs["std"]), np.asarray(inputs["mean"]), np.asarray(inputs["absmax"])
    magnitude = np.sqrt(mean ** 2 + std ** 2)
    if absmax.size == 0 or float(np.max(absmax)) <= UNIT_RANGE:
        return magnitude, []
    return magnitude, np.flatnonzero(np.isfinite(magnitude) & (magnitude > LARGE_MAGNITUDE_LIMIT)).tolist()


@check
def unnormalized_inputs(stats: WatchStats, run: "RunFacts | None" = None) -> list[Finding]:
    """The first layer's inputs, as the network sees them, far from unit scale."""
    inputs = stats.inputs
    if not inputs:
        return []
    magnitude, flagged = _off_scale_features(inputs)
    if not flagged:
        return []
    std, mean = np.asarray(inputs["std"]), np.asarray(inputs["mean"])
    worst = max(flagged, key=lambda i: magnitude[i])
    largest = float(magnitude[worst])
    features = "feature" if inputs["features"] > 1 else "input"
    where = "inputs" if inputs["kind"] == "features" else f"output of {inputs['layer']!r}"
    return [Finding(
        "data.unnormalized", "warning", min(0.9, 0.6 + 0.15 * math.log10(max(largest / LARGE_MAGNITUDE_LIMIT, 1.0))),
        title=(f"The inputs of {inputs['layer']!r} are far from unit scale: {features} {worst} has mean "
               f"{mean[worst]:.3g} and std {std[worst]:.3g} ({len(flagged)} of {inputs['features']} "
               f"{features}s off scale)"),
        evidence={"first_layer": inputs["layer"], "measured": inputs["kind"], "features": inputs["features"],
                  "rows": inputs["rows"], "largest_magnitude": largest, "magnitude_limit": LARGE_MAGNITUDE_LIMIT,
                  "magnitude": "root mean square of the values", "off_scale_features": len(flagged),
                  "off_scale_examples": flagged[:8], "largest_abs_value": float(np.max(inputs["absmax"])),
                  "worst_feature": {"index": worst, "mean": float(mean[worst]), "std": float(std[worst])}},
        where=where,
        remedy=(advice.standardize_inputs(run, inputs["layer"]) + "." if inputs["kind"] == "features" else
                f"The embedding output of {inputs['layer']!r} is far from unit scale: initialize the embedding at a "
                "smaller scale (e.g. normal with std 0.02) or normalize its output (LayerNorm)."),
    )]


# -- optim.grads_not_zeroed ---------------------------------------------------------------------------
# Without zero_grad, the gradient an update applies minus what this step's backward passes added is
# the previous step's gradient, exactly (up to float rounding, ~1e-7 of the norms involved): within
# CARRY_MATCH of their sum is a match, and zeroed gradients (0 carried) are far from one. A match on
# CARRY_CONFIRMATIONS instrumented steps, with a carried part at least CARRY_MIN_SHARE of the previous
# gradient (a previous gradient of ~0 proves nothing either way), settles it.
CARRY_MATCH = 1e-3
CARRY_MIN_SHARE = 0.5
CARRY_CONFIRMATIONS = 2


@check
def gradients_not_zeroed(stats: WatchStats) -> list[Finding]:
    """Updates that apply the previous step's gradient again: no optimizer.zero_grad() in the loop."""
    matched = [step for step, (diff, previous, carried, added) in stats.grad_carry
               if previous > 0 and carried >= CARRY_MIN_SHARE * previous
               and diff <= CARRY_MATCH * (previous + added)]
    if len(matched) < CARRY_CONFIRMATIONS:
        return []
    zeroed = [step for step, (_, previous, carried, _) in stats.grad_carry if previous > 0 and carried == 0]
    return [Finding(
        "optim.grads_not_zeroed", "error", 0.9,
        title=(f"The gradients are never zeroed: at steps {', '.join(str(s) for s in matched[:5])} the update applied "
               "the previous step's gradient again, plus this step's"),
        evidence={"steps_matched": matched, "steps_zeroed": zeroed, "match_threshold": CARRY_MATCH,
                  "carried_share_threshold": CARRY_MIN_SHARE, "confirmations": CARRY_CONFIRMATIONS,
                  "measured_on": "the smallest parameter's gradient, before the update"},
        where=f"step {matched[0]}",
        remedy=("Call optimizer.zero_grad() once per optimizer step, before the backward pass: every update now "
                "applies the sum of all gradients since the start, which grows with the step count like a "
                "learning rate that rises on every step."),
    )]


# -- optim.amp_scale_collapse ------------------------------------------------------------------------
# torch.amp.GradScaler starts at 2^16 and halves its scale on every step whose scaled gradients
# overflow float16 (skipping that step): at most 16 halvings bring it to 1, below which torch's own
# documentation says "something is likely wrong" (the gradients overflow unscaled). So the first
# AMP_CALIBRATION_STEPS iterations are the scaler settling, and a scale below AMP_MIN_SCALE, or a
# majority of skipped steps after the settling, is a collapse: the optimizer no longer steps.
AMP_CALIBRATION_STEPS = 16
AMP_MIN_SCALE = 1.0
AMP_SKIP_SHARE = 0.5
# Judging a skip share needs this many iterations after the settling.
AMP_MIN_JUDGED_STEPS = 8


@check
def grad_scaler_collapse(stats: WatchStats, run: "RunFacts | None" = None) -> list[Finding]:
    """The float16 grad scaler skipping most steps, its scale falling toward 0."""
    scaler = stats.scaler
    if not scaler or scaler["steps"] == 0:
        return []
    first = scaler.get("first_step", 0)
    skipped = np.asarray(scaler["skipped_steps"])
    judged_steps = scaler["steps"] - AMP_CALIBRATION_STEPS
    late = skipped[skipped >= first + AMP_CALIBRATION_STEPS]
    share = late.size / judged_steps if judged_steps >= AMP_MIN_JUDGED_STEPS else None
    scales = np.asarray(scaler["scales"], float)
    latest = float(scales[-1]) if scales.size else None
    collapsed_scale = latest is not None and latest < AMP_MIN_SCALE
    if not (collapsed_scale or (share is not None and share >= AMP_SKIP_SHARE)):
        return []
    onset = int(late[0]) if late.size else (int(skipped[0]) if skipped.size else first)
    rate = stats.lr_at(onset) or (run.lr if run else None)
    scale_text = f", its scale fell to {latest:.2g}" if latest is not None else ""
    return [Finding(
        "optim.amp_scale_collapse", "error", 0.8,
        title=(f"The float16 grad scaler skipped {late.size} of the {max(judged_steps, 0)} steps after it settled"
               f"{scale_text}: the optimizer stopped stepping"),
        evidence={"mechanism": "grad_scaler", "iterations": scaler["steps"], "skipped_steps": int(skipped.size),
                  "skipped_after_settling": int(late.size), "skipped_share_after_settling": share,
                  "settling_steps": AMP_CALIBRATION_STEPS, "skip_share_threshold": AMP_SKIP_SHARE,
                  "latest_scale": latest, "min_scale": AMP_MIN_SCALE, "onset_step": onset, "lr": rate,
                  "scale_trend": [[int(s), float(v)] for s, v in zip(scaler["scale_steps"], scales)][-10:]},
        where="GradScaler",
        remedy=(f"Every step overflows float16. {advice.lower_rate(rate)}; keep the loss and any softmax in float32 "
                "(autocast does this for cross_entropy); if the scale still collapses, train in bfloat16 "
                "(torch.autocast(dtype=torch.bfloat16), no scaler needed)."),
    )]


# Weights kept in bfloat16/float16 whose update is rounded away: bfloat16 keeps 8 significant bits, so
# an update below ~1/512 of a weight vanishes. When most elements that had a gradient did not change,
# the layer has stopped training whatever the learning rate says (TAXONOMY: "bf16 rounds most
# updates to nothing").
STALLED_SHARE = 0.5


@check
def low_precision_rounds_updates_away(stats: WatchStats, run: "RunFacts | None" = None) -> list[Finding]:
    """bfloat16/float16 weights whose updates round to nothing."""
    if not stats.low_precision:
        return []
    steady = {layer: float(np.median(entry["stalled_share"])) for layer, entry in stats.low_precision.items()
              if entry["stalled_share"]}
    stalled = {layer: share for layer, share in steady.items() if share >= STALLED_SHARE}
    if not stalled:
        return []
    worst = max(stalled, key=stalled.get)
    dtype = (stats.low_precision[worst].get("dtype") or "low precision").replace("torch.", "")
    rate = stats.lr_at(stats.steps) or (run.lr if run else None)
    everything = len(stalled) == len(steady)
    return [Finding(
        "optim.amp_scale_collapse", "error" if everything else "warning", 0.8,
        title=(f"{dtype} weights do not move: {stalled[worst]:.0%} of the updates to {worst!r} round to nothing"
               + (f" ({len(stalled)} of {len(steady)} layers)" if len(steady) > 1 else "")),
        evidence={"mechanism": "low_precision_rounding", "dtype": dtype, "stalled_share_per_layer": steady,
                  "stalled_layers": sorted(stalled), "threshold": STALLED_SHARE, "lr": rate,
                  "instrumented_steps": len(stats.low_precision[worst]["steps"])},
        where=worst,
        remedy=(f"The updates are smaller than {dtype} can represent next to the weights: "
                f"{advice.master_weights(run)}. Raising the rate would only hide it."),
    )]


@check
def batchnorm_may_mask_gradients(stats: WatchStats) -> list[Finding]:
    """Batch norm rescales activations and gradients: a gradient check on such a model can look fine
    while the underlying initialization or activation problem remains."""
    if not stats.has_batchnorm:
        return []
    return [Finding(
        "grad.masked_by_batchnorm", "info", 0.3,
        title="The model has batch norm, which can hide a gradient problem from this gradient check",
        evidence={"histograms_written": stats.histograms, "threshold": "any batch norm layer"},
        remedy=("Before trusting the gradient histograms, rerun a few hundred steps with batch norm removed "
                "(or run `lossdoctor checkup`): a problem that shows only then is masked, not fixed."),
    )]
