"""The verdict on one run's curves (TAXONOMY.md's verdicts), its events and the numbers behind them.

``judge(curves)`` reads a :class:`~lossdoctor.evidence.Curves` and returns a :class:`CurveAnalysis`.
Every comparison is relative to the loss's own scale and to its measured noise, so the same
thresholds hold for a cross-entropy near 2.3 and a regression MSE near 30,000. Every threshold is a
module constant next to the code that uses it, with the reason for its value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..evidence import Curves, Series
from ..findings import Event, Finding
from .smoothing import (SMOOTH_BINS, end_level, noise_sigma, rounded, running_median3, smooth,
                        sorted_series, zigzag_legs)

# ------------------------------------------------------------------------------------------------
# Thresholds of the verdict. Each is relative (to the loss's scale or to its noise) so that it
# holds for a cross-entropy near 2.3 and a regression MSE near 30,000 alike.

# Fewest finite training-loss points to judge a run: the smoothed curve needs a start, a minimum
# and an end that are different points, each with a neighbour on either side to confirm it.
MIN_POINTS = 8
# Fewest validation points to judge overfitting: a best point plus a rise that is seen at least
# twice after it (one high evaluation is noise, two in a row a trend).
MIN_VAL_POINTS = 4
# Differences smaller than this many noise standard deviations are treated as noise (3 sigma: a
# noisy healthy run crosses it by chance about once in 700 comparisons).
NOISE_SIGMAS = 3.0

# Diverging: the loss gave back at least 30 % of what it had gained since its start...
DIVERGE_GIVE_BACK = 0.30
# ... or ended at least 3x above its best (a loss that triples from its minimum is not noise)...
DIVERGE_FACTOR = 3.0
# ... and in either case the rise is at least 10 % of the loss's scale, so that the wobbles of a
# run that has nearly reached 0 (0.010 -> 0.035) do not count.
DIVERGE_MIN_RISE = 0.10
# The divergence is located where the smoothed curve first crosses half-way from the minimum to the
# end level (the jump itself, not a wobble near the minimum) ...
DIVERGE_CROSSING = 0.5
# ... and its step is where the rise began: the first point past the last block still within 10 %
# of the rise above the minimum (so a slow climb is dated to its start, not its middle).
DIVERGE_ONSET = 0.10
# "... and stays up": after that step the smoothed curve stays above the half-way line for at least
# 80 % of the remaining blocks. A curve that keeps coming back down oscillates; it did not diverge.
DIVERGE_STAYS_UP = 0.80

# Overfitting: the validation loss ended at least 10 % above its best (the usual early-stopping
# tolerance; a plateau with noise stays well below it) ...
OVERFIT_MIN_RISE = 0.10
# ... while the training loss fell a further 10 % after the best validation step (training "keeps
# falling" rather than both curves rising together).
OVERFIT_TRAIN_FALL = 0.10

# Underfitting: the training loss dropped less than 20 % from its start. The seed's example of
# regularisation blinding the model: "the training loss just dropped 0.2 from initial loss no more".
UNDERFIT_MAX_DROP = 0.20
# Stalled: the loss stopped falling while still above half of its starting level: whatever it
# learned, it kept most of the loss it started with (a healthy run drops far more than 50 %).
STALL_MAX_DROP = 0.50
# The plateau reported is the final stretch of the smoothed curve that stays within 5 % of its
# level (or within the noise): flat enough that more steps of the same would not change the picture.
PLATEAU_BAND = 0.05
# A run "still falls" when the last 30 % of the smoothed curve lost at least 5 % of the loss's
# scale: a run that is still learning is not stalled or underfitting, only short. 30 % of the run is
# long enough that a plateau is not a pause between two drops.
RECENT_FRACTION = 0.30
STILL_FALLING_DROP = 0.05

# Oscillating: in the second half of the run the loss swings (10-90 % range, so single spikes do
# not count) over at least 30 % of its own level ...
OSCILLATE_MIN_SWING = 0.30
# ... and over at least 10 % of the loss's scale, so that a converged loss wobbling near 0
# (0.010 <-> 0.015 is 50 % of its level) is not called oscillating ...
OSCILLATE_MIN_SWING_OF_SCALE = 0.10
# ... the smoothed curve moves at least 3 times by half its own swing, turning each time (down, up,
# down again: a single bump or a slow drift is not an oscillation) ...
OSCILLATE_MIN_LEGS = 3
# ... and the swing is larger than twice the net descent over the same half (no downward trend).
OSCILLATE_TREND_RATIO = 2.0
# The swing is measured on the raw points (a fast oscillation hides inside the blocks), so it must
# be at least twice what white minibatch noise of the measured point-to-point sigma spans
# (10-90 % of a Gaussian = 2.56 sigma): the loss moves in waves, not from batch to batch.
WHITE_NOISE_SPREAD = 2.56
OSCILLATE_NOISE_RATIO = 2.0


@dataclass
class CurveAnalysis:
    """The verdict on one run's curves, its events, the causes found and the numbers behind them."""

    verdict: str
    events: list[Event] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)




def _primary(curves: Curves) -> Series | None:
    s = curves.train
    if s is None or len(s) == 0:
        s = curves.val
    return s if s is not None and len(s) else None


def judge(curves: Curves) -> CurveAnalysis:
    """The verdict, events and evidence of one run (no causes: the checks add those)."""
    primary = _primary(curves)
    if primary is None:
        return CurveAnalysis(
            "insufficient_data",
            evidence={"n_points": 0, "min_points": MIN_POINTS, "problem": "no training or validation loss",
                      "series": sorted(curves.series)},
        )
    steps, values = sorted_series(primary)
    ev: dict[str, Any] = {"loss": primary.name, "n_points": int(values.size), "min_points": MIN_POINTS}
    if steps.size:
        ev["first_step"], ev["last_step"] = rounded(steps[0]), rounded(steps[-1])
    events: list[Event] = []

    # -- NaN / Inf: the first non-finite value decides, whatever came before ------------------
    finite = np.isfinite(values)
    bad_series = []
    for s in (primary, curves.val if primary is not curves.val else None):
        if s is not None and len(s) and not np.all(np.isfinite(s.values)):
            s_steps, s_values = sorted_series(s)
            i = int(np.argmin(np.isfinite(s_values)))
            bad_series.append((s.name, float(s_steps[i]), float(s_values[i])))
    if bad_series:
        name, step, value = min(bad_series, key=lambda b: b[1])
        ev.update(first_non_finite_step=rounded(step), first_non_finite_value=value, non_finite_in=name,
                  finite_points_before=int(np.count_nonzero(steps < step)),
                  non_finite_share=rounded(1.0 - float(finite.mean())))
        events.append(Event("first_non_finite", step, value, f"{name} became {value}"))
        head = values[steps < step]  # the primary loss before the first non-finite value of any loss
        if head.size >= 2:
            start = float(np.median(head[: max(1, head.size // 10)]))
            ev["loss_before_non_finite"] = rounded(float(head[-1]))
            ev["start_level"] = rounded(start)
            ev["relative_drop"] = rounded((start - float(head[-1])) / max(abs(start), 1e-12))
            # Did the loss climb before it broke? (seed: a spike, then NaN, points to the LR)
            peak = float(np.max(head[head.size // 2:]))
            low = float(np.min(head))
            ev["rose_before_non_finite"] = bool(peak > low + DIVERGE_MIN_RISE * max(abs(start), abs(low), 1e-12)
                                                and peak > start)
        return CurveAnalysis("non_finite", events, [], ev)

    if values.size < MIN_POINTS:
        ev["problem"] = f"{values.size} points; at least {MIN_POINTS} are needed to judge a run"
        if values.size >= 2:
            ev["relative_drop"] = rounded((values[0] - values[-1]) / max(abs(float(values[0])), 1e-12))
        return CurveAnalysis("insufficient_data", events, [], ev)

    sm = smooth(steps, values)
    start = float(sm.level[0])
    # the minimum must hold for neighbouring blocks too: one low block (a trough of a fast
    # oscillation, a lucky run of easy batches) is not the level the run reached
    held = running_median3(sm.level)
    i_min = int(np.argmin(held))
    low = float(held[i_min])
    end, end_sigma = end_level(values, sm.sigma_point)
    scale = max(abs(start), abs(low), 1e-12)
    drop = start - low
    ev.update(start_level=rounded(start), end_level=rounded(end), min_level=rounded(low), min_step=rounded(sm.step[i_min]),
              relative_drop=rounded((start - end) / scale), noise_sigma=rounded(sm.sigma))

    # -- diverging: it fell (or not), then rose and stayed up ----------------------------------
    rise = end - low
    noise_floor = NOISE_SIGMAS * math.hypot(end_sigma, sm.sigma)
    gave_back = rise >= DIVERGE_GIVE_BACK * drop if drop > 0 else True
    tripled = low > 0 and end >= DIVERGE_FACTOR * low
    # the first block clearly above the minimum, and whether the curve stays up after it
    threshold = low + DIVERGE_CROSSING * rise
    above = np.flatnonzero(sm.level[i_min:] > threshold)
    j = i_min + int(above[0]) if above.size else len(sm.level) - 1
    stays_up = float(np.mean(sm.level[j:] > threshold)) >= DIVERGE_STAYS_UP
    if rise > noise_floor and rise >= DIVERGE_MIN_RISE * scale and (gave_back or tripled) and stays_up:
        still_low = np.flatnonzero(sm.level[i_min:j + 1] <= low + DIVERGE_ONSET * rise)
        onset = min(i_min + int(still_low[-1]) + 1 if still_low.size else j, j)
        a = int(sm.bounds[onset])
        raw_up = np.flatnonzero(values[a:int(sm.bounds[j + 1])] > low + DIVERGE_ONSET * rise)
        k = a + int(raw_up[0]) if raw_up.size else a
        step = float(steps[k])
        ev.update(divergence_step=rounded(step), rise=rounded(rise), rise_relative=rounded(rise / scale),
                  rise_factor=rounded(end / low) if low > 0 else None, max_after_divergence=rounded(float(np.max(values[k:]))),
                  thresholds={"give_back": DIVERGE_GIVE_BACK, "factor": DIVERGE_FACTOR, "min_rise": DIVERGE_MIN_RISE,
                              "stays_up": DIVERGE_STAYS_UP})
        events.append(Event("divergence", step, float(values[k]),
                            f"loss rose from {low:.4g} to {end:.4g} ({rise / scale:.0%} of its scale)"))
        return CurveAnalysis("diverging", events, [], ev)

    # -- overfitting: validation rose from its best while training kept falling ---------------
    val = curves.val if primary is not curves.val else None
    if val is not None and len(val) >= MIN_VAL_POINTS:
        v_steps, v_values = sorted_series(val)
        if len(val) <= SMOOTH_BINS:  # evaluations: few, each over the whole validation set
            v_level, v_level_steps = running_median3(v_values), v_steps
        else:  # validation logged as often as training: block medians
            vs = smooth(v_steps, v_values)
            v_level, v_level_steps = vs.level, vs.step
        ib = int(np.argmin(v_level))
        best_step = float(v_level_steps[ib])
        best_raw = int(np.argmin(np.abs(v_steps - best_step)))
        best = float(v_level[ib])
        v_sigma = noise_sigma(v_values)
        v_end = float(v_level[-1])  # same smoothing as the best value, so a still-falling curve shows no rise
        v_rise = v_end - best
        v_scale = max(abs(best), 1e-12)
        v_start = float(v_level[0])
        ev.update(val_best=rounded(best), val_best_step=rounded(best_step), val_end=rounded(v_end),
                  val_rise_relative=rounded(v_rise / v_scale),
                  val_relative_drop=rounded((v_start - v_end) / max(abs(v_start), 1e-12)))
        # training level at the onset vs at the end
        t_at_onset = float(np.interp(best_step, sm.step, sm.level))
        train_fall = (t_at_onset - end) / max(abs(t_at_onset), 1e-12)
        v_noise = NOISE_SIGMAS * v_sigma
        if (v_rise >= OVERFIT_MIN_RISE * v_scale and v_rise > v_noise and train_fall >= OVERFIT_TRAIN_FALL
                and best_raw < len(val) - 1):
            ev.update(overfit_onset_step=rounded(best_step), train_fall_after_onset=rounded(train_fall),
                      generalization_gap=rounded(v_end - end),
                      thresholds={"val_rise": OVERFIT_MIN_RISE, "train_fall": OVERFIT_TRAIN_FALL})
            events.append(Event("overfitting_onset", best_step, best,
                                f"validation best {best:.4g}, now {v_end:.4g} (+{v_rise / v_scale:.0%})"))
            return CurveAnalysis("overfitting", events, [], ev)

    # -- no real progress: oscillating, underfitting, stalled ---------------------------------
    # swing of the raw points (fast oscillations hide inside blocks), judged against white noise
    half_raw = values[values.size // 2:]
    lo, hi = (float(x) for x in np.percentile(half_raw, [10, 90]))
    swing = hi - lo
    half_blocks = sm.level[len(sm.level) // 2:]
    half_descent = float(half_blocks[0] - half_blocks[-1]) if half_blocks.size > 1 else 0.0
    half_level = max(abs(float(np.median(half_raw))), 1e-12)
    block_swing = float(np.percentile(half_blocks, 90) - np.percentile(half_blocks, 10))
    legs = zigzag_legs(half_blocks, block_swing / 2)
    ev.update(swing_relative=rounded(swing / half_level), swing_legs=legs)
    if (swing >= OSCILLATE_MIN_SWING * half_level and swing >= OSCILLATE_MIN_SWING_OF_SCALE * scale
            and swing > OSCILLATE_NOISE_RATIO * WHITE_NOISE_SPREAD * sm.sigma_point
            and legs >= OSCILLATE_MIN_LEGS and swing > OSCILLATE_TREND_RATIO * max(half_descent, 0.0)):
        ev.update(swing=rounded(swing), swing_low=rounded(lo), swing_high=rounded(hi),
                  thresholds={"swing": OSCILLATE_MIN_SWING, "swing_of_scale": OSCILLATE_MIN_SWING_OF_SCALE,
                              "noise_ratio": OSCILLATE_NOISE_RATIO, "legs": OSCILLATE_MIN_LEGS,
                              "trend_ratio": OSCILLATE_TREND_RATIO})
        events.append(Event("oscillation", float(steps[values.size // 2]), None,
                            f"swings between {lo:.4g} and {hi:.4g}"))
        return CurveAnalysis("oscillating", events, [], ev)

    relative_drop = (start - end) / scale
    # plateau: the final stretch of blocks that stay within the band around the final level
    band = max(PLATEAU_BAND * max(abs(end), 1e-12), NOISE_SIGMAS * sm.sigma)
    outside = np.flatnonzero(np.abs(sm.level - end) > band)
    p0 = int(outside[-1]) + 1 if outside.size else 0
    plateau_fraction = (len(sm.level) - p0) / len(sm.level)
    tail0 = int(len(sm.level) * (1 - RECENT_FRACTION))
    tail_descent = float(sm.level[tail0] - end) / scale
    still_falling = tail_descent >= STILL_FALLING_DROP
    plateau_step = float(steps[int(sm.bounds[min(p0, len(sm.level) - 1)])])
    ev.update(plateau_level=rounded(end), plateau_start_step=rounded(plateau_step),
              plateau_length_steps=rounded(float(steps[-1]) - plateau_step), plateau_fraction=rounded(plateau_fraction),
              recent_relative_drop=rounded(tail_descent))
    # validation that barely moved from its first evaluation while training did not get far either:
    # both curves stay high (training's start can be inflated, by dropout at 0.9 for instance)
    val_stuck = "val_relative_drop" in ev and ev["val_relative_drop"] < UNDERFIT_MAX_DROP
    if not still_falling and (relative_drop < UNDERFIT_MAX_DROP or (val_stuck and relative_drop < STALL_MAX_DROP)):
        ev["thresholds"] = {"max_drop": UNDERFIT_MAX_DROP, "recent_min_drop": STILL_FALLING_DROP,
                            "recent_fraction": RECENT_FRACTION}
        events.append(Event("plateau", plateau_step, end, f"loss stays near {end:.4g}"))
        return CurveAnalysis("underfitting", events, [], ev)
    if relative_drop < STALL_MAX_DROP and not still_falling:
        ev["thresholds"] = {"max_drop": STALL_MAX_DROP, "recent_min_drop": STILL_FALLING_DROP,
                            "recent_fraction": RECENT_FRACTION}
        events.append(Event("plateau", plateau_step, end,
                            f"flat at {end:.4g} for {plateau_fraction:.0%} of the run"))
        return CurveAnalysis("stalled", events, [], ev)
    at_chance = _at_chance_level(curves, end, end_sigma, ev)
    if at_chance is not None:
        verdict = "underfitting" if still_falling else "stalled"
        events.append(Event("plateau", plateau_step, end, f"ends at {end:.4g}, chance level {at_chance:.4g}"))
        return CurveAnalysis(verdict, events, [], ev)
    return CurveAnalysis("converging", events, [], ev)


# Chance level: a caller that knows the loss of an uninformed prediction (ln C for C-class
# cross-entropy with balanced classes, the target variance for MSE; lossdoctor's checkup does)
# passes it as ``curves.meta[CHANCE_LEVEL_META]``. A loss that fell from an inflated start (a
# blow-up, a bad output scale) down to chance level has learned nothing, however far it dropped.
CHANCE_LEVEL_META = "chance_loss"
# "At chance": the end level is within 5 % of the chance level (or above it), or within the
# noise of it: a 10-class run that ends at 2.19 instead of ln 10 = 2.30 has not learned either.
CHANCE_LEVEL_MARGIN = 0.05


def _at_chance_level(curves: Curves, end: float, end_sigma: float, ev: dict[str, Any]) -> float | None:
    """The chance level when the run ended at or above it (and put it in the evidence), else None."""
    chance = curves.meta.get(CHANCE_LEVEL_META)
    if not isinstance(chance, (int, float)) or isinstance(chance, bool) or not math.isfinite(chance) or chance <= 0:
        return None
    ev["chance_level"] = rounded(float(chance))
    line = float(chance) - max(CHANCE_LEVEL_MARGIN * float(chance), NOISE_SIGMAS * end_sigma)
    if end < line:
        return None
    ev.update(ended_at_chance=True, thresholds={"chance_level": rounded(float(chance)), "margin": CHANCE_LEVEL_MARGIN,
                                                "at_chance_above": rounded(line)})
    return float(chance)


