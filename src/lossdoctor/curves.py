"""What the loss curves show (one verdict per run), and the causes the log itself supports.

``analyze_curves(curves)`` turns a :class:`~lossdoctor.evidence.Curves` into a
:class:`CurveAnalysis`: a verdict from TAXONOMY.md, the events on the curves (overfitting onset,
divergence, first NaN, plateau, end of warm-up) and the numbers behind them. Then every check
registered with ``@check("curves")`` runs on the same curves and adds the causes that the log
supports (``optim.lr_too_high`` after warm-up, ``grad.exploding``, NaN causes, ...).

Checks of kind ``"curves"`` are called as ``check(curves, analysis=CurveAnalysis, **context)``:
the evidence is the ``Curves``; ``analysis`` holds the verdict, events and evidence computed here
(its ``findings`` are still empty while the checks run).

Robustness to minibatch noise: the verdict is read from a smoothed curve made of the medians of
about ``SMOOTH_BINS`` consecutive blocks of points (a median ignores single spikes), and every
comparison is relative to the loss's own scale and to its measured noise. All of it is vectorised
numpy, so a million-point log is analysed in a few tens of milliseconds.

Every threshold is a module constant next to the code that uses it, with the reason for its value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .evidence import GRAD_NORM, LEARNING_RATE, Curves, Series
from .findings import Event, Finding, Report
from .registry import check, run_checks

# ------------------------------------------------------------------------------------------------
# Thresholds of the verdict. Each is relative (to the loss's scale or to its noise) so that it
# holds for a cross-entropy near 2.3 and a regression MSE near 30,000 alike.

# Fewest finite training-loss points to judge a run: the smoothed curve needs a start, a minimum
# and an end that are different points, each with a neighbour on either side to confirm it.
MIN_POINTS = 8
# Fewest validation points to judge overfitting: a best point plus a rise that is seen at least
# twice after it (one high evaluation is noise, two in a row a trend).
MIN_VAL_POINTS = 4
# The smoothed curve has about this many points (block medians). 50 blocks resolve an event to 2 %
# of the run, and a block of a 500-step log still holds 10 minibatch losses, enough for a median
# to ignore a spike.
SMOOTH_BINS = 50
# ... but a block holds at least 3 points (the median of 3 ignores one spike) as long as that leaves
# 8 blocks or more (a start, a minimum and an end, each with neighbours): a 70-point Lightning log
# is judged on 23 blocks of 3, a 20-epoch Keras log on medians of 3 neighbouring epochs.
MIN_BLOCK_POINTS = 3
MIN_BLOCKS = 8
# The level at the end of the run is the median of the last 10 % of the points: long enough to
# average out minibatch noise, short enough to reflect where the run ended up.
END_FRACTION = 0.10
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

# Advice for each verdict, shown with the report (causes come as findings).
VERDICT_ADVICE = {
    "converging": "Nothing to fix in the curves.",
    "underfitting": "The model barely learns: run `lossdoctor checkup` to test the data, the learning "
    "rate and the regularization one at a time.",
    "overfitting": "Stop at the best validation step (early stopping), then add regularization or data; "
    "the training loss itself is fine.",
    "diverging": "Lower the learning rate and resume from a checkpoint taken before the divergence step.",
    "non_finite": "Find what produced the first NaN/Inf: lower the learning rate, check the inputs, "
    "keep softmax inside the loss.",
    "stalled": "The loss stopped falling while still high: a quick baseline on the data tells its floor from a "
    "stall; then test a larger learning rate and less regularization.",
    "oscillating": "Lower the learning rate (or raise the batch size) until the swings stop.",
    "insufficient_data": "Log more points (at least the number given in the evidence) and run again.",
}


@dataclass
class CurveAnalysis:
    """The verdict on one run's curves, its events, the causes found and the numbers behind them."""

    verdict: str
    events: list[Event] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# Numeric helpers (vectorised; the Python loops run over at most SMOOTH_BINS items).


def _sorted_series(series: Series) -> tuple[np.ndarray, np.ndarray]:
    steps, values = series.steps, series.values
    if steps.size > 1 and np.any(np.diff(steps) < 0):
        order = np.argsort(steps, kind="stable")
        steps, values = steps[order], values[order]
    return steps, values


# The noise is estimated from at most this many point-to-point differences (a median of 200,000
# values is within 0.3 % of the full one, and keeps a million-point log fast).
NOISE_SAMPLE = 200_000


def _noise_sigma(values: np.ndarray) -> float:
    """Standard deviation of point-to-point noise, from the MAD of first differences (robust to
    trends and spikes; 1.4826 turns a MAD into a Gaussian sigma, sqrt 2 undoes the difference)."""
    if values.size < 3:
        return 0.0
    d = np.diff(values)
    if d.size > NOISE_SAMPLE:
        d = d[:: int(math.ceil(d.size / NOISE_SAMPLE))]
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0))


@dataclass
class _Smooth:
    """Block medians of a series: ``level[i]`` is the median of raw points ``bounds[i]:bounds[i+1]``."""

    level: np.ndarray
    step: np.ndarray  # the step in the middle of each block
    bounds: np.ndarray
    block_size: float
    sigma: float  # noise of one block median
    sigma_point: float  # noise of one raw point


def _smooth(steps: np.ndarray, values: np.ndarray, sigma: float | None = None) -> _Smooth:
    n = values.size
    n_blocks = min(SMOOTH_BINS, n, max(n // MIN_BLOCK_POINTS, MIN_BLOCKS))
    bounds = np.linspace(0, n, n_blocks + 1).astype(np.int64)
    sigma = _noise_sigma(values) if sigma is None else sigma
    if n_blocks == n:
        # One point per block (very short logs): a running median of 3 removes single spikes.
        return _Smooth(_running_median3(values), steps.copy(), bounds, 1.0, sigma, sigma)
    size = n // n_blocks
    if n % n_blocks == 0:
        level = np.median(values.reshape(n_blocks, size), axis=1)
        mid = steps.reshape(n_blocks, size)[:, size // 2]
    else:
        level = np.array([np.median(values[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])
        mid = steps[(bounds[:-1] + bounds[1:]) // 2]
    # the median of k noisy points has about 1.25 / sqrt(k) of their spread
    return _Smooth(level, mid, bounds, n / n_blocks, sigma * 1.2533 / math.sqrt(n / n_blocks), sigma)


def _running_median3(values: np.ndarray) -> np.ndarray:
    """Each point replaced by the median of itself and its two neighbours (ends repeated)."""
    if values.size < 3:
        return values.copy()
    padded = np.concatenate([values[:1], values, values[-1:]])
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, 3), axis=1)


def _zigzag_legs(level: np.ndarray, min_move: float) -> int:
    """How many times the curve moves up or down by at least ``min_move`` before turning back."""
    if level.size < 3 or min_move <= 0:
        return 0
    legs, direction, anchor = 0, 0, float(level[0])
    for x in level[1:].tolist():  # at most SMOOTH_BINS points
        move = x - anchor
        if (direction >= 0 and move <= -min_move) or (direction <= 0 and move >= min_move):
            legs, direction, anchor = legs + 1, (1 if move > 0 else -1), x
        elif direction * move > 0:
            anchor = x  # the leg goes on: its far end moves with it
    return legs


def _end_level(values: np.ndarray, sigma: float) -> tuple[float, float]:
    """Median of the last END_FRACTION of the points, and the noise of that median."""
    k = max(1, int(math.ceil(values.size * END_FRACTION)))
    tail = values[-k:]
    return float(np.median(tail)), sigma * 1.2533 / math.sqrt(k)


def _f(x: float) -> float:
    return float(f"{x:.6g}")


# ------------------------------------------------------------------------------------------------
# The verdict.


def analyze_curves(curves: Curves) -> CurveAnalysis:
    """Verdict, events, causes and evidence for one run.

    Needs only a training loss (``train_loss``; a run with only ``val_loss`` is judged on it);
    uses ``val_loss`` for overfitting, ``lr`` for warm-up and ``grad_norm`` for exploding gradients
    when present. Pure: reads nothing but ``curves``.
    """
    analysis = _verdict(curves)
    analysis.findings = run_checks("curves", curves, analysis=analysis)
    return analysis


def _primary(curves: Curves) -> Series | None:
    s = curves.train
    if s is None or len(s) == 0:
        s = curves.val
    return s if s is not None and len(s) else None


def _verdict(curves: Curves) -> CurveAnalysis:
    primary = _primary(curves)
    if primary is None:
        return CurveAnalysis(
            "insufficient_data",
            evidence={"n_points": 0, "min_points": MIN_POINTS, "problem": "no training or validation loss",
                      "series": sorted(curves.series)},
        )
    steps, values = _sorted_series(primary)
    ev: dict[str, Any] = {"loss": primary.name, "n_points": int(values.size), "min_points": MIN_POINTS}
    if steps.size:
        ev["first_step"], ev["last_step"] = _f(steps[0]), _f(steps[-1])
    events: list[Event] = []

    # -- NaN / Inf: the first non-finite value decides, whatever came before ------------------
    finite = np.isfinite(values)
    bad_series = []
    for s in (primary, curves.val if primary is not curves.val else None):
        if s is not None and len(s) and not np.all(np.isfinite(s.values)):
            s_steps, s_values = _sorted_series(s)
            i = int(np.argmin(np.isfinite(s_values)))
            bad_series.append((s.name, float(s_steps[i]), float(s_values[i])))
    if bad_series:
        name, step, value = min(bad_series, key=lambda b: b[1])
        ev.update(first_non_finite_step=_f(step), first_non_finite_value=value, non_finite_in=name,
                  finite_points_before=int(np.count_nonzero(steps < step)),
                  non_finite_share=_f(1.0 - float(finite.mean())))
        events.append(Event("first_non_finite", step, value, f"{name} became {value}"))
        head = values[steps < step]  # the primary loss before the first non-finite value of any loss
        if head.size >= 2:
            start = float(np.median(head[: max(1, head.size // 10)]))
            ev["loss_before_non_finite"] = _f(float(head[-1]))
            ev["start_level"] = _f(start)
            ev["relative_drop"] = _f((start - float(head[-1])) / max(abs(start), 1e-12))
            # Did the loss climb before it broke? (seed: a spike, then NaN, points to the LR)
            peak = float(np.max(head[head.size // 2:]))
            low = float(np.min(head))
            ev["rose_before_non_finite"] = bool(peak > low + DIVERGE_MIN_RISE * max(abs(start), abs(low), 1e-12)
                                                and peak > start)
        return CurveAnalysis("non_finite", events, [], ev)

    if values.size < MIN_POINTS:
        ev["problem"] = f"{values.size} points; at least {MIN_POINTS} are needed to judge a run"
        if values.size >= 2:
            ev["relative_drop"] = _f((values[0] - values[-1]) / max(abs(float(values[0])), 1e-12))
        return CurveAnalysis("insufficient_data", events, [], ev)

    sm = _smooth(steps, values)
    start = float(sm.level[0])
    # the minimum must hold for neighbouring blocks too: one low block (a trough of a fast
    # oscillation, a lucky run of easy batches) is not the level the run reached
    held = _running_median3(sm.level)
    i_min = int(np.argmin(held))
    low = float(held[i_min])
    end, end_sigma = _end_level(values, sm.sigma_point)
    scale = max(abs(start), abs(low), 1e-12)
    drop = start - low
    ev.update(start_level=_f(start), end_level=_f(end), min_level=_f(low), min_step=_f(sm.step[i_min]),
              relative_drop=_f((start - end) / scale), noise_sigma=_f(sm.sigma))

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
        ev.update(divergence_step=_f(step), rise=_f(rise), rise_relative=_f(rise / scale),
                  rise_factor=_f(end / low) if low > 0 else None, max_after_divergence=_f(float(np.max(values[k:]))),
                  thresholds={"give_back": DIVERGE_GIVE_BACK, "factor": DIVERGE_FACTOR, "min_rise": DIVERGE_MIN_RISE,
                              "stays_up": DIVERGE_STAYS_UP})
        events.append(Event("divergence", step, float(values[k]),
                            f"loss rose from {low:.4g} to {end:.4g} ({rise / scale:.0%} of its scale)"))
        return CurveAnalysis("diverging", events, [], ev)

    # -- overfitting: validation rose from its best while training kept falling ---------------
    val = curves.val if primary is not curves.val else None
    if val is not None and len(val) >= MIN_VAL_POINTS:
        v_steps, v_values = _sorted_series(val)
        if len(val) <= SMOOTH_BINS:  # evaluations: few, each over the whole validation set
            v_level, v_level_steps = _running_median3(v_values), v_steps
        else:  # validation logged as often as training: block medians
            vs = _smooth(v_steps, v_values)
            v_level, v_level_steps = vs.level, vs.step
        ib = int(np.argmin(v_level))
        best_step = float(v_level_steps[ib])
        best_raw = int(np.argmin(np.abs(v_steps - best_step)))
        best = float(v_level[ib])
        v_sigma = _noise_sigma(v_values)
        v_end = float(v_level[-1])  # same smoothing as the best value, so a still-falling curve shows no rise
        v_rise = v_end - best
        v_scale = max(abs(best), 1e-12)
        v_start = float(v_level[0])
        ev.update(val_best=_f(best), val_best_step=_f(best_step), val_end=_f(v_end),
                  val_rise_relative=_f(v_rise / v_scale),
                  val_relative_drop=_f((v_start - v_end) / max(abs(v_start), 1e-12)))
        # training level at the onset vs at the end
        t_at_onset = float(np.interp(best_step, sm.step, sm.level))
        train_fall = (t_at_onset - end) / max(abs(t_at_onset), 1e-12)
        v_noise = NOISE_SIGMAS * v_sigma
        if (v_rise >= OVERFIT_MIN_RISE * v_scale and v_rise > v_noise and train_fall >= OVERFIT_TRAIN_FALL
                and best_raw < len(val) - 1):
            ev.update(overfit_onset_step=_f(best_step), train_fall_after_onset=_f(train_fall),
                      generalization_gap=_f(v_end - end),
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
    legs = _zigzag_legs(half_blocks, block_swing / 2)
    ev.update(swing_relative=_f(swing / half_level), swing_legs=legs)
    if (swing >= OSCILLATE_MIN_SWING * half_level and swing >= OSCILLATE_MIN_SWING_OF_SCALE * scale
            and swing > OSCILLATE_NOISE_RATIO * WHITE_NOISE_SPREAD * sm.sigma_point
            and legs >= OSCILLATE_MIN_LEGS and swing > OSCILLATE_TREND_RATIO * max(half_descent, 0.0)):
        ev.update(swing=_f(swing), swing_low=_f(lo), swing_high=_f(hi),
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
    ev.update(plateau_level=_f(end), plateau_start_step=_f(plateau_step),
              plateau_length_steps=_f(float(steps[-1]) - plateau_step), plateau_fraction=_f(plateau_fraction),
              recent_relative_drop=_f(tail_descent))
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
    ev["chance_level"] = _f(float(chance))
    line = float(chance) - max(CHANCE_LEVEL_MARGIN * float(chance), NOISE_SIGMAS * end_sigma)
    if end < line:
        return None
    ev.update(ended_at_chance=True, thresholds={"chance_level": _f(float(chance)), "margin": CHANCE_LEVEL_MARGIN,
                                                "at_chance_above": _f(line)})
    return float(chance)


# ------------------------------------------------------------------------------------------------
# Causes the log supports. Each check reads the curves and the analysis, never a file.

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
# float32 exp overflows above ln(3.4e38) = 88.7: logits near it turn softmax into Inf/NaN
# (the seed's exp(100) = Inf).
FLOAT32_EXP_LIMIT = 88.7


def _warmup(curves: Curves) -> dict[str, float] | None:
    lr = curves.get(LEARNING_RATE)
    if lr is None or len(lr) < 3:
        return None
    steps, values = _sorted_series(lr)
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
    steps, values = _sorted_series(lr)
    i = int(np.searchsorted(steps, step, side="right")) - 1
    return float(values[max(i, 0)])


@check("curves")
def divergence_after_warmup(curves: Curves, *, analysis: CurveAnalysis | None = None, **_: Any) -> list[Finding]:
    """Diverging curves point to a learning rate that is too high; right after warm-up, strongly."""
    if analysis is None or analysis.verdict != "diverging":
        return []
    ev = analysis.evidence
    step = float(ev["divergence_step"])
    evidence: dict[str, Any] = {"divergence_step": step, "rise_relative": ev["rise_relative"],
                                "min_level": ev["min_level"], "end_level": ev["end_level"]}
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
                        steps_after_warmup=after, window=window)
        if -0.5 * warm_len <= after <= window:
            analysis.events.append(Event("warmup_end", warm["warmup_end_step"], warm["peak_lr"],
                                         f"learning rate reached its peak {warm['peak_lr']:.3g}"))
            target = warm["peak_lr"] / 10
            return [Finding(
                "optim.lr_too_high", "error", 0.85,
                title="The loss diverged right after warm-up reached the peak learning rate",
                evidence=evidence, where=f"step {step:g}", source="curves",
                remedy=(f"Lower the peak learning rate from {warm['peak_lr']:.3g} to about {target:.2g} "
                        f"(or run a learning-rate range test and take a little below where the loss blows "
                        f"up), and resume from a checkpoint before step {step:g}."),
            )]
    lr_text = f" (now {lr_now:.3g}; try {lr_now / 10:.2g})" if lr_now else ""
    return [Finding(
        "optim.lr_too_high", "warning", 0.55,
        title="The loss fell, then turned up and stayed up: typical of a learning rate that is too high",
        evidence=evidence, where=f"step {step:g}", source="curves",
        remedy=(f"Lower the learning rate 10x{lr_text} and rerun from a checkpoint before step {step:g}. "
                "The log cannot settle it alone: if the rerun still turns up at the same place, look at the "
                "data around that step instead."),
    )]


@check("curves")
def nan_loss_causes(curves: Curves, *, analysis: CurveAnalysis | None = None, **_: Any) -> list[Finding]:
    """A NaN/Inf loss: the learning rate or a softmax overflow, or NaN data when it is NaN from step one."""
    if analysis is None or analysis.verdict != "non_finite":
        return []
    ev = analysis.evidence
    step = float(ev["first_non_finite_step"])
    evidence = {k: ev[k] for k in ("first_non_finite_step", "first_non_finite_value", "non_finite_in",
                                   "finite_points_before", "loss_before_non_finite", "rose_before_non_finite")
                if k in ev}
    lr_now = _lr_at(curves, step)
    if lr_now is not None:
        evidence["lr_at_non_finite"] = lr_now
    findings = []
    if ev.get("finite_points_before", 0) == 0:
        findings.append(Finding(
            "data.non_finite", "warning", 0.5,
            title="The loss is NaN/Inf from the first logged step: suspect the inputs or targets",
            evidence=evidence, where=f"step {step:g}", source="curves",
            remedy=("Check the data for NaN/Inf before training (`lossdoctor.check_data(X, y)`); if the data "
                    "is clean, the model's initialization or loss produces it (run `lossdoctor checkup`)."),
        ))
    rose = bool(ev.get("rose_before_non_finite"))
    lr_text = f" from {lr_now:.3g} to {lr_now / 10:.2g}" if lr_now else " 10x"
    findings.append(Finding(
        "optim.lr_too_high", "warning", 0.7 if rose else 0.5,
        title=("The loss climbed and then became NaN/Inf: typical of a learning rate that is too high"
               if rose else "The loss became NaN/Inf: a learning rate that is too high is the usual cause"),
        evidence=evidence, where=f"step {step:g}", source="curves",
        remedy=(f"Experiment that settles it: rerun from a checkpoint before step {step:g} with the learning "
                f"rate lowered{lr_text}. If the loss stays finite, the learning rate was the cause."),
    ))
    findings.append(Finding(
        "model.logit_overflow", "info", 0.35,
        title="A softmax overflow (exp of a large logit = Inf) can also produce this NaN",
        evidence={**evidence, "float32_exp_limit": FLOAT32_EXP_LIMIT}, where=f"step {step:g}", source="curves",
        remedy=(f"Experiment that settles it: log the largest |logit| in the steps before {step:g} (or run "
                f"`lossdoctor checkup`, which names the first module that turns NaN). Values near "
                f"{FLOAT32_EXP_LIMIT} confirm overflow: feed raw logits to CrossEntropyLoss (no softmax in the "
                "model) and compute the loss in float32."),
    ))
    return findings


@check("curves")
def exploding_grad_norm(curves: Curves, *, analysis: CurveAnalysis | None = None, **_: Any) -> list[Finding]:
    """A logged gradient norm that grows by orders of magnitude, or turns Inf/NaN."""
    gn = curves.get(GRAD_NORM)
    if gn is None or len(gn) < MIN_VAL_POINTS:
        return []
    steps, values = _sorted_series(gn)
    finite = np.isfinite(values)
    fin = values[finite]
    if fin.size < 2:
        return []
    head = max(1, int(math.ceil(fin.size * END_FRACTION)))
    early = float(np.median(np.abs(fin[:head])))
    if not finite.all():
        i = int(np.argmin(finite))
        evidence = {"early_grad_norm": early, "first_non_finite_step": float(steps[i]),
                    "value": float(values[i])}
        return [Finding(
            "grad.exploding", "error", 0.8, title="The gradient norm became Inf/NaN",
            evidence=evidence, where=f"step {steps[i]:g}", source="curves",
            remedy=("Lower the learning rate and fix the initialization scale; clip gradients "
                    "(torch.nn.utils.clip_grad_norm_) only once the learning rate is right."),
        )]
    sm = _smooth(steps[finite], np.abs(fin))
    i_peak = int(np.argmax(sm.level))
    peak = float(sm.level[i_peak])
    ratio = peak / early if early > 0 else math.inf
    if ratio < GRAD_EXPLODE_RATIO:
        return []
    evidence = {"early_grad_norm": early, "peak_grad_norm": peak, "peak_step": float(sm.step[i_peak]),
                "growth": ratio, "threshold": GRAD_EXPLODE_RATIO}
    severity = "error" if ratio >= GRAD_EXPLODE_ERROR_RATIO else "warning"
    if analysis is not None:
        analysis.events.append(Event("grad_norm_explosion", float(sm.step[i_peak]), peak,
                                     f"gradient norm {ratio:.0f}x its early level"))
    return [Finding(
        "grad.exploding", severity, 0.75,
        title=f"The gradient norm grew {ratio:.0f}x (from {early:.3g} to {peak:.3g})",
        evidence=evidence, where=f"step {sm.step[i_peak]:g}", source="curves",
    )]


@check("curves")
def no_progress_causes(curves: Curves, *, analysis: CurveAnalysis | None = None, **_: Any) -> list[Finding]:
    """Underfitting / stalled: a tiny learning rate shows in the log; the rest needs an experiment."""
    if analysis is None or analysis.verdict not in ("underfitting", "stalled"):
        return []
    ev = analysis.evidence
    evidence = {"relative_drop": ev.get("relative_drop"), "plateau_level": ev.get("plateau_level"),
                "plateau_start_step": ev.get("plateau_start_step")}
    findings = []
    lr = curves.get(LEARNING_RATE)
    max_lr = float(np.nanmax(lr.values)) if lr is not None and len(lr) and np.isfinite(lr.values).any() else None
    if max_lr is not None and 0 < max_lr < LR_TOO_LOW:
        findings.append(Finding(
            "optim.lr_too_low", "warning", 0.6,
            title=f"The learning rate never exceeded {max_lr:.2g}",
            evidence={**evidence, "max_lr": max_lr, "threshold": LR_TOO_LOW}, source="curves",
            remedy=f"Raise the learning rate towards 1e-4..1e-1 (e.g. {max_lr * 100:.2g}), guided by a range test.",
        ))
    else:
        findings.append(Finding(
            "optim.lr_too_low", "info", 0.25,
            title="Not settled by the log: the learning rate may be too low",
            evidence={**evidence, **({"max_lr": max_lr} if max_lr is not None else {})}, source="curves",
            remedy=("Experiment that settles it: rerun a few hundred steps at 3x and 10x the learning rate; if "
                    "the loss falls clearly faster, raise it (or run `lossdoctor checkup`, which does this)."),
        ))
    level = ev.get("plateau_level")
    findings.append(Finding(
        "data.no_signal", "info", 0.2,
        title="Not settled by the log: the data may not support a lower loss",
        evidence=evidence, source="curves",
        remedy=(f"Experiment that settles it: fit a quick baseline on the same split (`lossdoctor.check_data(X, y)` "
                f"runs one against a label-permutation null). If it cannot do better than {level}, that level is "
                "the data's floor and the run has converged; if it does, the model or the optimizer is stuck."),
    ))
    findings.append(Finding(
        "model.regularization_too_strong", "info", 0.25,
        title="Not settled by the log: regularization may keep the model from fitting",
        evidence=evidence, source="curves",
        remedy=("Experiment that settles it: rerun with dropout, weight decay and noise off; if the training "
                "loss now falls much further, add them back gradually (dropout 0.1, then 0.2)."),
    ))
    return findings


# ------------------------------------------------------------------------------------------------


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


__all__ = [
    "CurveAnalysis",
    "analyze_curves",
    "diagnose_curves",
    "VERDICT_ADVICE",
]
