"""Checks on the monitor's read-out statistics (``WatchStats``), registered with ``@check("stats")``.

Each threshold is a named constant beside the check that uses it, with the reason for the number.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..curves import GRAD_EXPLODE_ERROR_RATIO, GRAD_EXPLODE_RATIO
from ..findings import Event, Finding
from ..registry import check
from .stats import EXP_OVERFLOW_LIMIT, WatchStats

_PRODUCED_BY_REMEDY = {
    "inputs": ("The batch itself held NaN/Inf: find the rows (`lossdoctor.check_data(X, y)`) and fix or drop "
               "them before training."),
    "weights": ("The optimizer wrote NaN/Inf into this module's weights in the step before: lower the learning "
                "rate (10x), and resume from the last finite weights (watch(..., save_last_finite=path))."),
    "operation": ("This module's computation overflowed or hit an undefined value: lower the learning rate, "
                  "keep softmax inside the loss (log-softmax / CrossEntropyLoss on raw logits), and guard "
                  "log/sqrt/division against 0 (e.g. torch.log(x.clamp_min(1e-12)))."),
}


def non_finite_finding(origin: dict[str, Any], steps: int | None = None) -> Finding:
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
        remedy=_PRODUCED_BY_REMEDY.get(produced_by, ""),
    )


@check
def non_finite_values(stats: WatchStats) -> list[Finding | Event]:
    """The first NaN/Inf: the module, the step, and whether inputs, weights or an operation produced it."""
    if not isinstance(stats, WatchStats) or stats.first_non_finite_step is None:
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
                                       non_finite_finding(origin, stats.steps)]
    if origin.get("produced_by") == "inputs":
        findings.append(Finding(
            "data.non_finite", "error", 0.9, title=f"The batch of step {origin['step']} held NaN/Inf values",
            evidence={"step": origin["step"], "first_module": origin.get("module"), "threshold": "any NaN/Inf input"},
            where=f"step {origin['step']}",
        ))
    return findings


# exp() of a logit past the dtype's limit overflows (88.72 in float32/bfloat16, 11.09 in float16): a
# naive softmax or a hand-written exp then yields Inf and NaN. CrossEntropyLoss / log_softmax on raw
# logits subtract the maximum first and stay finite far beyond it, and a well-fitted classifier on
# separable data drives its margins up slowly (about logarithmically in steps): a large logit alone
# is not a fault. Hence three levels:
# - info from half the limit: one doubling from overflow in any exp outside the loss, or under float16
#   autocast, but harmless with a stable loss;
# - warning from three quarters, where normalized inputs rarely take a classifier, while unnormalized
#   ones do (raw 0..16 pixel counts on digits reach ~69 = 0.78 of the float32 limit before any NaN);
#   or from half the limit when the logit is still growing fast: it doubled over the last
#   LOGIT_GROWTH_WINDOW instrumented steps, so as many more reach the limit;
# - error past the limit.
LOGIT_INFO_FRACTION = 0.5
LOGIT_WARN_FRACTION = 0.75
LOGIT_ERROR_FRACTION = 1.0
LOGIT_FAST_GROWTH = 2.0
LOGIT_GROWTH_WINDOW = 3


def _compact(x: float) -> str:
    """3.5e19 instead of 3.5e+19 or 35000000000000000000."""
    return f"{x:.2g}".replace("e+", "e")


def _share_of_limit(fraction: float) -> str:
    return f"{fraction:.0%} of" if fraction < 10 else f"{_compact(fraction)}x"


@check
def logit_overflow(stats: WatchStats) -> list[Finding]:
    """The largest output logit against the exp overflow limit of its dtype, and how fast it grows."""
    if not isinstance(stats, WatchStats):
        return []
    seen = [(step, value, dtype) for step, value, dtype in stats.logits if value is not None and math.isfinite(value)]
    before = (stats.non_finite or {}).get("largest_logit_before")
    if not seen:
        return []
    step, value, dtype = max(seen, key=lambda t: t[1])
    limit = EXP_OVERFLOW_LIMIT.get(dtype, EXP_OVERFLOW_LIMIT["torch.float32"])
    fraction = value / limit
    if fraction < LOGIT_INFO_FRACTION:
        return []
    # growth of the running maximum (single batches are noisy: a fitted classifier's largest logit
    # jumps up and down from batch to batch, while a run heading for overflow keeps setting new highs)
    high = np.maximum.accumulate([v for _, v, _ in seen])
    growth = (float(high[-1] / high[-1 - LOGIT_GROWTH_WINDOW])
              if high.size > LOGIT_GROWTH_WINDOW and high[-1 - LOGIT_GROWTH_WINDOW] > 0 else 1.0)
    growing_fast = growth >= LOGIT_FAST_GROWTH
    if fraction >= LOGIT_ERROR_FRACTION:
        severity = "error"
    elif fraction >= LOGIT_WARN_FRACTION or growing_fast:
        severity = "warning"
    else:
        severity = "info"
    text = f"{value:.3g}" if value < 1e6 else _compact(value)
    trend = f", {growth:.1f}x over the last {LOGIT_GROWTH_WINDOW} instrumented steps" if growing_fast else ""
    return [Finding(
        "model.logit_overflow", severity, min(0.9, 0.4 + 0.4 * min(fraction, 1.25)),
        title=f"The largest output logit reached {text} ({_share_of_limit(fraction)} the "
              f"{dtype.replace('torch.', '')} exp overflow limit {limit}{trend})",
        evidence={"largest_logit": value, "step": step, "dtype": dtype, "exp_overflow_limit": limit,
                  "fraction_of_limit": fraction, "growth_over_window": growth, "growing_fast": growing_fast,
                  "info_fraction": LOGIT_INFO_FRACTION, "warn_fraction": LOGIT_WARN_FRACTION,
                  "largest_logit_before_nan": before, "output_layer": stats.logit_layer,
                  "logit_trend": [[s, v] for s, v, _ in seen][-10:]},
        where=stats.logit_layer,
        remedy=("Harmless with CrossEntropyLoss/log_softmax on raw logits; it overflows in any exp/softmax "
                "outside the loss and under float16." if severity == "info" else
                "Normalize the inputs, lower the learning rate, or add weight decay / label smoothing; keep "
                "softmax inside the loss (CrossEntropyLoss on raw logits)."),
    )]


# A ReLU unit active on none of several batches passes no gradient: when half a layer is silent, half
# its capacity is gone and the layer rarely recovers; nine in ten is a layer that has stopped learning.
DEAD_SHARE_WARN = 0.5
DEAD_SHARE_ERROR = 0.9


@check
def dead_units(stats: WatchStats) -> list[Finding]:
    """ReLU units never active (and sigmoid/tanh units always saturated) over the recent window."""
    if not isinstance(stats, WatchStats) or not stats.units:
        return []
    bad = {k: u for k, u in stats.units.items() if u["share"] >= DEAD_SHARE_WARN}
    if not bad:
        return []
    worst_key = max(bad, key=lambda k: bad[k]["share"])
    worst = bad[worst_key]
    saturated = worst["kind"] != "relu"
    what = f"always saturated ({worst['kind'].split()[-1]})" if saturated else "never active (dead ReLU)"
    severity = "error" if worst["share"] >= DEAD_SHARE_ERROR else "warning"
    remedy = ("Saturated sigmoid/tanh units pass almost no gradient: normalize the inputs, use Xavier/LeCun "
              "initialization, lower the learning rate, or use ReLU-family activations in hidden layers."
              if saturated else "")
    return [Finding(
        "grad.dead_relu", severity, min(0.9, 0.5 + 0.1 * worst["samples"]),
        title=f"{worst['share']:.0%} of the units after {worst_key!r} are {what}",
        evidence={"layers": {k: {"share": u["share"], "silent_units": u["silent_units"], "units": u["units"],
                                 "kind": u["kind"]} for k, u in bad.items()},
                  "instrumented_steps_in_window": worst["samples"], "threshold": DEAD_SHARE_WARN},
        where=worst_key, remedy=remedy,
    )]


# Gradient norm of the input-side weight layer over the output-side one. Three orders of magnitude
# (1e-3) means the first layers learn a thousand times slower than the last: vanishing. The mirror
# image (1e3) is exploding across depth; five orders makes either an error.
VANISHING_RATIO = 1e-3
EXPLODING_DEPTH_RATIO = 1e3
DEPTH_ERROR_ORDERS = 5
# Fewer weight layers than this is no depth to speak of.
MIN_DEPTH_LAYERS = 3


def _depth_ratios(stats: WatchStats) -> tuple[np.ndarray, list[str]]:
    idx = [i for i, w in enumerate(stats.weight_layers) if w]
    if len(idx) < MIN_DEPTH_LAYERS or stats.grad_norms.shape[1] == 0:
        return np.zeros(0), []
    first, last = stats.grad_norms[idx[0]], stats.grad_norms[idx[-1]]
    with np.errstate(all="ignore"):
        ratio = first / last
    ok = np.isfinite(ratio) & (last > 0)
    if stats.first_non_finite_step is not None:
        ok &= np.array(stats.sample_steps) < stats.first_non_finite_step
    return ratio[ok], [stats.layers[idx[0]], stats.layers[idx[-1]]]


def _layer_medians(stats: WatchStats) -> dict[str, float]:
    med = stats.layer_grad_norm_medians()
    return {name: float(v) for name, v, w in zip(stats.layers, med, stats.weight_layers) if w and np.isfinite(v)}


@check
def vanishing_gradients(stats: WatchStats) -> list[Finding]:
    """Per-layer gradient norms that shrink by orders of magnitude from the output to the input."""
    if not isinstance(stats, WatchStats):
        return []
    ratios, names = _depth_ratios(stats)
    if ratios.size == 0:
        return []
    first, last = names
    ratio = float(np.median(ratios))
    if ratio >= VANISHING_RATIO or ratio <= 0:
        return []
    orders = -math.log10(ratio)
    return [Finding(
        "grad.vanishing", "error" if orders >= DEPTH_ERROR_ORDERS else "warning", 0.8,
        title=f"Gradients shrink {orders:.1f} orders of magnitude from {last!r} (output side) to {first!r} (input side)",
        evidence={"first_over_last_grad_norm": ratio, "threshold": VANISHING_RATIO,
                  "median_grad_norm_per_layer": _layer_medians(stats), "instrumented_steps": int(ratios.size)},
        where=first,
    )]


@check
def exploding_gradients(stats: WatchStats) -> list[Finding]:
    """Gradient norms that grow by orders of magnitude towards the input, or over time."""
    if not isinstance(stats, WatchStats):
        return []
    findings = []
    ratios, names = _depth_ratios(stats)
    if ratios.size and float(np.median(ratios)) > EXPLODING_DEPTH_RATIO:
        ratio = float(np.median(ratios))
        orders = math.log10(ratio)
        findings.append(Finding(
            "grad.exploding", "error" if orders >= DEPTH_ERROR_ORDERS else "warning", 0.75,
            title=f"Gradients grow {orders:.1f} orders of magnitude from {names[1]!r} to {names[0]!r} (input side)",
            evidence={"first_over_last_grad_norm": ratio, "threshold": EXPLODING_DEPTH_RATIO,
                      "median_grad_norm_per_layer": _layer_medians(stats)},
            where=names[0],
        ))
    totals = stats.total_grad_norms
    steps = np.array(stats.sample_steps)
    ok = np.isfinite(totals) & (totals > 0)
    if ok.sum() >= 2:
        first = float(totals[ok][0])
        i_peak = int(np.argmax(np.where(ok, totals, -np.inf)))
        growth = float(totals[i_peak]) / first
        if growth >= GRAD_EXPLODE_RATIO:
            findings.append(Finding(
                "grad.exploding", "error" if growth >= GRAD_EXPLODE_ERROR_RATIO else "warning", 0.75,
                title=f"The total gradient norm grew {growth:.0f}x (from {first:.3g} to {totals[i_peak]:.3g})",
                evidence={"first_grad_norm": first, "peak_grad_norm": float(totals[i_peak]),
                          "peak_step": int(steps[i_peak]), "growth": growth, "threshold": GRAD_EXPLODE_RATIO},
                where=f"step {int(steps[i_peak])}",
            ))
    return findings


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


@check
def update_to_weight_ratio(stats: WatchStats) -> list[Finding]:
    """Evidence for the learning rate from the size of the updates relative to the weights."""
    if not isinstance(stats, WatchStats) or stats.update_ratios.size == 0:
        return []
    idx = [i for i, w in enumerate(stats.weight_layers) if w]
    if not idx:
        return []
    steps = np.array(stats.sample_steps)
    diverged = stats.first_non_finite_step is not None
    cols = steps < (stats.first_non_finite_step if diverged else np.inf)
    steady = cols & (steps >= UPDATE_RATIO_WARMUP_STEPS)
    if steady.any():
        cols = steady
    elif not diverged:  # only warm-up steps seen: too early to judge the learning rate
        return []
    r = stats.update_ratios[idx][:, cols]
    r = np.where(np.isfinite(r) & (r > 0), r, np.nan)
    usable = ~np.all(np.isnan(r), axis=0)
    if not usable.any():
        return []
    r = r[:, usable]
    per_layer = {stats.layers[i]: float(np.nanmedian(row)) for i, row in zip(idx, r) if np.isfinite(row).any()}
    with np.errstate(all="ignore"):
        top = float(np.nanmedian(np.nanmax(r, axis=0)))
        typical = float(np.nanmedian(np.nanmedian(r, axis=0)))
    evidence = {"median_update_to_weight_ratio_per_layer": per_layer, "largest_layer_ratio": top,
                "typical_ratio": typical, "high_threshold": UPDATE_RATIO_HIGH, "low_threshold": UPDATE_RATIO_LOW,
                "instrumented_steps": int(r.shape[1]), "warmup_steps_skipped": UPDATE_RATIO_WARMUP_STEPS}
    if top > UPDATE_RATIO_HIGH:
        layer = max(per_layer, key=per_layer.get)
        return [Finding(
            "optim.lr_too_high", "warning", 0.6,
            title=f"Each step changes {layer!r} by {per_layer[layer]:.0%} of its size (update-to-weight ratio)",
            evidence=evidence, where=layer,
            remedy=f"Lower the learning rate about {max(2.0, top / 1e-2):.0f}x, so updates are ~1e-3..1e-2 of the weights.",
        )]
    totals = stats.total_grad_norms
    first = next((float(t) for t in totals if math.isfinite(t) and t > 0), None)
    judged = totals[cols][usable] if totals.size == cols.size else np.zeros(0)
    judged = judged[np.isfinite(judged)]
    gradient_left = first is None or not judged.size or float(np.median(judged)) >= LOW_RATIO_MIN_GRAD_SHARE * first
    gradient_left = gradient_left and not any(u["share"] >= DEAD_SHARE_ERROR for u in stats.units.values())
    evidence["median_grad_norm_over_first"] = (float(np.median(judged)) / first) if first and judged.size else None
    if typical < UPDATE_RATIO_LOW and gradient_left:
        return [Finding(
            "optim.lr_too_low", "warning", 0.55,
            title=f"Updates are only {typical:.1e} of the weights per step (update-to-weight ratio)",
            evidence=evidence,
            remedy=f"Raise the learning rate about {min(1000.0, 1e-3 / typical):.0f}x (healthy ratios are ~1e-3).",
        )]
    return []


# The TAXONOMY's "clipping active on most steps": more than half of the steps are cut, so the clip
# threshold, not the learning rate, sets the step size. A fifth is worth a note.
CLIP_SHARE_WARN = 0.5
CLIP_SHARE_INFO = 0.2
# Fewer observations than this cannot tell "most steps" from chance.
MIN_CLIP_OBSERVATIONS = 5
# A norm equal to max_norm within this relative margin was cut to max_norm (when only the clipped
# gradient is seen, against a declared max_norm).
CLIPPED_NORM_TOLERANCE = 1e-3


@check
def clipping_masks_lr(stats: WatchStats) -> list[Finding]:
    """The share of steps on which gradient clipping cut the gradient."""
    if not isinstance(stats, WatchStats):
        return []
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
    return [Finding(
        "optim.clipping_masks_lr", "warning" if share >= CLIP_SHARE_WARN else "info", min(0.9, 0.4 + 0.5 * share),
        title=f"Gradient clipping cut the gradient on {share:.0%} of the steps (median cut {factor:.3g}x)",
        evidence={"clipped_share": share, "observations": int(norms.size), "max_norm": float(np.median(limits)),
                  "median_pre_clip_norm": float(np.median(norms)), "median_cut_factor": factor,
                  "observed_by": stats.clip["source"], "warn_share": CLIP_SHARE_WARN,
                  "thresholds": {"info": CLIP_SHARE_INFO, "warning": CLIP_SHARE_WARN}},
    )]


@check
def batchnorm_may_mask_gradients(stats: WatchStats) -> list[Finding]:
    """Batch norm rescales activations and gradients: a gradient check on such a model can look fine
    while the underlying initialization or activation problem remains."""
    if not isinstance(stats, WatchStats) or not stats.has_batchnorm:
        return []
    return [Finding(
        "grad.masked_by_batchnorm", "info", 0.3,
        title="The model has batch norm, which can hide a gradient problem from this gradient check",
        evidence={"histograms_written": stats.histograms, "threshold": "any batch norm layer"},
        remedy=("Before trusting the gradient histograms, rerun a few hundred steps with batch norm removed "
                "(or run `lossdoctor checkup`): a problem that shows only then is masked, not fixed."),
    )]
