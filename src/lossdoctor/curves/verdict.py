"""The verdict on one run's curves (TAXONOMY.md's verdicts), its events and the numbers behind them.

``judge(curves)`` reads a :class:`~lossdoctor.evidence.Curves` and returns a :class:`CurveAnalysis`.
Both the training and the validation loss are judged (each into a :class:`_Shape`) and the verdict
uses both: overfitting compares them, a validation loss at chance level vetoes a converging training
loss, and a run with 3 training rows and 33 evaluations is judged on its evaluations.

Every comparison is relative to the loss's own scale and to its measured noise, so the same
thresholds hold for a cross-entropy near 2.3 and a regression MSE near 30,000. Every threshold is a
module constant next to the code that uses it, with the reason for its value.
"""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..evidence import Curves, Series
from ..findings import Event, Finding
from .smoothing import (
    NOISE_MIN_POINTS,
    SMOOTH_BINS,
    Smooth,
    curvature_noise_sigma,
    end_level,
    kendall_tau,
    rounded,
    running_median3,
    smooth,
    sorted_series,
    zigzag_legs,
)

# ------------------------------------------------------------------------------------------------
# How many points a verdict needs.

# Fewest finite points for a verdict at full confidence: the smoothed curve then has a start, a
# minimum and an end that are different points, each with a neighbour on either side to confirm it.
MIN_POINTS = 8
# Fewest points for any verdict: two points are always a line; a third says whether it bends. A short
# log (SHORT_MIN_POINTS..MIN_POINTS-1 points, e.g. one row per epoch) is judged when its points agree.
SHORT_MIN_POINTS = 3
# A short log of 5-7 points "agrees" when Kendall's tau of its values against their order is at least
# 0.6 in size: one point out of place in five still gives 0.8, and a flat noisy series reaches 0.6 in
# a given direction by chance 12 % of the time at 5 points, 4 % at 7. 3-4 points must be monotone.
SHORT_TREND_TAU = 0.6
SHORT_TAU_MIN_POINTS = 5
# The start level is the first point, unless that point is a spike: then the median of the first block
# of the smoothed curve and of at least 3 points, where a first-batch spike (2585 before 2.30) or one
# warm-up outlier is one point of three and cannot set it ...
START_POINTS = 3
# ... and the first point is a spike when it lies above that median by more than twice the whole drop
# from the median to the end: a fall that starts fast (2.3, 1.2, 0.8, ..., 0.3) keeps its first point, a
# jump down to a level the run then holds (2585, 2.31, 2.30, ...) does not.
SPIKE_FACTOR = 2.0
# Fewer points than this that disagree (fall and rise) cannot be judged: 4 epochs of 0.376, 0.360,
# 0.364, 0.362 say neither "flat" nor "falling". From 5 points on the general rules read them.
SHORT_DISAGREE_MIN_POINTS = 5
# Fewest points of a secondary series (a logged gradient norm) that the curve checks read: a level and
# a change seen twice.
MIN_VAL_POINTS = 4
# Differences smaller than this many noise standard deviations are treated as noise (3 sigma: a
# noisy healthy run crosses it by chance about once in 700 comparisons).
NOISE_SIGMAS = 3.0

# ------------------------------------------------------------------------------------------------
# Thresholds of the verdicts. Each is relative (to the loss's scale or to its noise).

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

# Overfitting: the validation loss ended at least 10 % above its true minimum (the usual early-stopping
# tolerance; a plateau with noise stays well below it) and beyond its noise ...
OVERFIT_MIN_RISE = 0.10
# ... while the training loss fell a further 10 % after that minimum (training "keeps falling" rather
# than both curves rising together) ...
OVERFIT_TRAIN_FALL = 0.10
# ... and the rise is sustained: past its first crossing of half the rise, 80 % of the later
# evaluations (running median of 3) stay above that line. Validation that swings back down to its
# minimum again and again (a rate too high) has no sustained rise.
OVERFIT_STAYS_UP = 0.80
# In a short log (fewer than MIN_POINTS evaluations), evaluations that rise every time from the minimum
# to the last one are strong evidence even when there are one or two of them (0.170 -> 0.197 -> 0.246;
# 0.807 -> 0.902 after two flat epochs), as long as the total rise clears OVERFIT_MIN_RISE, beyond the
# noise where 5 or more evaluations measure it, and training fell meanwhile ...
OVERFIT_MIN_RISES = 1
# ... while a longer log must confirm the turn with at least 3 evaluations after the minimum (rising
# every time, or passing the "stays up" test): a log that ends two evaluations into a swing that a
# rate on the high side produces (0.100 -> 0.130 -> 0.162, then back to 0.102) has not shown a trend.
OVERFIT_CONFIRM_POINTS = 3
# With at least 5 evaluations after the minimum, their own scatter (MAD) measures the noise the rise
# must clear; fewer cannot pin a spread down, and the whole curve's second differences are used.
LOCAL_NOISE_MIN_POINTS = 5

# A non-negative loss (cross-entropy, MSE, BCE) below 1e-4 fits its targets to four decimals: whatever
# its curve does there (a flat excerpt of a run's last epochs, noise of +-50 % at 3e-6), it has
# settled low, the TAXONOMY's "converging".
SETTLED_LOW = 1e-4

# Underfitting: the loss dropped less than 20 % from its start and is not falling any more. The seed's
# example of regularisation blinding the model: "the training loss just dropped 0.2 from initial loss".
UNDERFIT_MAX_DROP = 0.20
# A curve whose values span less than 0.01 % of its level is frozen: a loss logged with 4-6 digits
# that never changes in them (a collapsed model's validation loss pinned at the triplet margin, say).
FROZEN_SPAN = 1e-4
# Stalled: the loss settled on a plateau covering at least 30 % of the run ...
STALL_MIN_PLATEAU = 0.30
# ... at least 10 % of its scale above the minimum it had already reached (and beyond the noise):
# it stopped far above what it reached. Without a reference (its own minimum, or chance level) a
# plateau is a floor the log cannot tell from a stall, and a slow fall to it is converging.
STALL_ABOVE_MIN = 0.10
# The plateau reported is the final stretch of the smoothed curve that stays within 5 % of its
# level (or within the noise): flat enough that more steps of the same would not change the picture.
PLATEAU_BAND = 0.05
# A run "still falls" when the last 30 % of the smoothed curve lost at least 5 % of the loss's
# scale: a run that is still learning is not underfitting, only short. 30 % of the run is long
# enough that a plateau is not a pause between two drops.
RECENT_FRACTION = 0.30
STILL_FALLING_DROP = 0.05
# ... or when its second half trends down consistently (the smoothed levels agree on a fall as the
# points of a short log must) and lost at least 2 % of the scale: a fine-tune creeping from
# 0.39 to 0.34 is still improving towards a floor the log cannot know; a stuck run drifts by less.
STILL_FALLING_TREND_DROP = 0.02

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

# ------------------------------------------------------------------------------------------------
# Chance level: the loss of an uninformed K-class prediction is ln K (balanced classes).

# A caller that knows the chance level (lossdoctor's checkup, the callbacks: the output width) passes
# it as ``curves.meta[CHANCE_LEVEL_META]`` or the class count as ``curves.meta[NUM_CLASSES_META]``;
# the readers put the class count there when the log says it (``NUM_CLASSES_SOURCE_META`` says where).
CHANCE_LEVEL_META = "chance_loss"
NUM_CLASSES_META = "num_classes"
NUM_CLASSES_SOURCE_META = "num_classes_source"
# "At chance" for a known chance level: the end level is within 5 % of it (or above it), or within the
# noise: a 10-class run that ends at 2.19 instead of ln 10 = 2.30 has not learned either.
CHANCE_LEVEL_MARGIN = 0.05
# A chance level given as a number is ln K when within 0.001 of it (float32 round-off of ln K).
CHANCE_GIVEN_MATCH = 1e-3
# Class counts searched when the log does not say: ln 2 .. ln 1000 (binary to ImageNet).
CHANCE_MIN_CLASSES = 2
CHANCE_MAX_CLASSES = 1000
# Inferring K from a plateau needs a tight match: within 0.015 nats of ln K (plus the end level's
# noise). 0.015 covers a mildly unbalanced prior (a model that learned only the 58/42 class shares of
# a binary task sits 0.013 below ln 2). The match must also be unambiguous: the tolerance less than
# half the gap to ln(K-1) and ln(K+1). Above about 30 classes every level is that close to some ln K,
# so a match says nothing there and K must come from the log or the caller.
CHANCE_MATCH_TOLERANCE = 0.015
# ... and corroboration that the loss is a classification loss at chance: it started there (the loss
# of an untrained classifier is ln K), an accuracy column sits at 1/K, or it sat within the tight match
# for two thirds of the run: a classifier stuck at chance sits there from its first steps or right
# after a blow-up, while a regression settling near 0.69 approaches it over a good part of the run
# (an MSE fit on diabetes: 53 %). The other loss curve ending there too is no sign: train and
# validation of any run that does not overfit end close together.
CHANCE_FLAT_SHARE = 2 / 3
# An accuracy "sits at chance" within 20 % of 1/K (0.4-0.6 for 2 classes, 0.08-0.12 for 10), and
# "learned something" above 1/K by more than twice that (0.7 for 2 classes): such a column vetoes an
# inferred chance level, and a level merely near ln K then costs no confidence.
CHANCE_ACCURACY_MARGIN = 0.20
_ACCURACY_NAME = re.compile(r"(?<![a-z])acc(uracy)?(?![a-z])|accuracy")

# ------------------------------------------------------------------------------------------------
# Confidence of the verdict (in the evidence as ``verdict_confidence``).

# A verdict on a full log whose curves agree.
CONFIDENCE_FULL = 0.9
# A short log (fewer than MIN_POINTS points) rests on a rank test of a handful of points (chance
# agreement 4-17 %) instead of a measured noise margin: 0.9 x 0.65 = 0.585, under 0.6.
SHORT_LOG_FACTOR = 0.65
# A chance level inferred from the curves (not given): the match and its corroboration can be a
# coincidence that the caller's class count would rule out.
INFERRED_CHANCE_FACTOR = 0.85
# A converging run whose end level is near some ln K (within 0.015 nats with no corroboration, or
# within CHANCE_LEVEL_MARGIN for K <= 5, where that band is unambiguous): maybe a stuck classifier,
# maybe a regression that settled at 0.69. The verdict stands, the confidence drops.
NEAR_CHANCE_FACTOR = 0.6


@dataclass
class CurveAnalysis:
    """The verdict on one run's curves, its events, the causes found and the numbers behind them."""

    verdict: str
    events: list[Event] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def confidence(self) -> float | None:
        """How far the verdict can be trusted (0..1); None when there was nothing to judge."""
        return self.evidence.get("verdict_confidence")


# ------------------------------------------------------------------------------------------------
# One loss curve.

@dataclass
class _Shape:
    """The levels of one finite, sorted loss curve: start, minimum, end, noise and trend."""

    name: str
    steps: np.ndarray
    values: np.ndarray
    sm: Smooth
    start: float
    end: float
    end_sigma: float
    # the curve the events are located on: block medians of a long log, the running median of 3 of a
    # log of up to SMOOTH_BINS points (each already an average: an epoch, a logging window)
    levels: np.ndarray
    level_steps: np.ndarray
    bounds: np.ndarray  # levels[i] stands for the raw points bounds[i]:bounds[i+1]
    low: float  # the minimum its neighbours confirm (not one lucky block or point)
    i_min: int  # its index in levels
    low_sigma: float  # the noise of that minimum
    trend: int  # for short logs: -1 the points agree on a fall, +1 on a rise, 0 they disagree

    @property
    def n(self) -> int:
        return int(self.values.size)

    @property
    def short(self) -> bool:
        return self.n < MIN_POINTS

    @property
    def scale(self) -> float:
        return max(abs(self.start), abs(self.low), 1e-12)

    @property
    def relative_drop(self) -> float:
        return (self.start - self.end) / self.scale

    @property
    def tail_descent(self) -> float:
        """What the last RECENT_FRACTION of the run lost, relative to the scale."""
        level = self.sm.level
        return float(level[int(len(level) * (1 - RECENT_FRACTION))] - self.end) / self.scale

    @property
    def still_falling(self) -> bool:
        if self.short and self.trend:
            return self.trend < 0
        if self.tail_descent >= STILL_FALLING_DROP and self.tail_descent * self.scale > NOISE_SIGMAS * math.hypot(
                self.sm.sigma, self.end_sigma):
            return True
        # a slow fall that goes on: the second half trends down consistently (a rank test) by a visible
        # share of the scale and beyond the noise; read on the raw points (with their noise from second
        # differences, which a trend does not inflate) when the smoothed curve is too short to test
        half, sigma = self.sm.level[len(self.sm.level) // 2:], self.sm.sigma
        if half.size < SHORT_TAU_MIN_POINTS:
            half, sigma = self.values[self.n // 2:], curvature_noise_sigma(self.values)
        if half.size < SHORT_MIN_POINTS or _consistent_trend(half) >= 0:
            return False
        fall = float(np.median(half[:START_POINTS])) - self.end
        return fall >= STILL_FALLING_TREND_DROP * self.scale and fall > NOISE_SIGMAS * sigma

    @property
    def frozen(self) -> bool:
        """Every point the same value (to float round-off): what produced it does not change."""
        span = float(self.values.max() - self.values.min())
        return span <= FROZEN_SPAN * max(abs(self.end), 1e-12)

    @property
    def barely_dropped(self) -> bool:
        return self.relative_drop < UNDERFIT_MAX_DROP and not self.still_falling


def _consistent_trend(values: np.ndarray) -> int:
    """-1 when the points of a short log agree on a fall, +1 on a rise, 0 when they disagree."""
    d = np.diff(values)
    if np.all(d < 0):
        return -1
    if np.all(d > 0):
        return 1
    if values.size >= SHORT_TAU_MIN_POINTS:
        tau = kendall_tau(values)
        if abs(tau) >= SHORT_TREND_TAU:
            return 1 if tau > 0 else -1
    return 0


def _shape(series: Series | None) -> _Shape | None:
    if series is None or len(series) < SHORT_MIN_POINTS:
        return None
    steps, values = sorted_series(series)
    sm = smooth(steps, values)
    if values.size > SMOOTH_BINS:
        # the minimum held by neighbouring blocks: one lucky block (easy batches) is not the level
        levels, level_steps, bounds = sm.level, sm.step, sm.bounds
        held = running_median3(levels)
        i_min = int(np.argmin(held))
        low, low_sigma = float(held[i_min]), sm.sigma
    else:
        # few points, each already an average: the lowest point that its neighbours confirm, so that
        # blocks do not wash out a real trough of two epochs
        levels, level_steps, bounds = running_median3(values), steps, np.arange(values.size + 1)
        confirmed = values >= levels - NOISE_SIGMAS * sm.sigma_point
        i_min = int(np.argmin(np.where(confirmed, values, np.inf)))
        low, low_sigma = float(values[i_min]), sm.sigma_point
    end, end_sigma = end_level(values, sm.sigma_point)
    start = float(np.median(values[:max(START_POINTS, int(sm.bounds[1]))]))
    if values[0] - start <= SPIKE_FACTOR * max(start - end, 0.0):
        start = max(start, float(values[0]))
    trend = _consistent_trend(values) if values.size < MIN_POINTS else 0
    return _Shape(series.name, steps, values, sm, start, end, end_sigma, levels, level_steps, bounds, low, i_min,
                  low_sigma, trend)


def _finite_count(series: Series | None) -> int:
    return int(np.count_nonzero(np.isfinite(series.values))) if series is not None else 0


# ------------------------------------------------------------------------------------------------
# The verdict.

def judge(curves: Curves) -> CurveAnalysis:
    """The verdict, events and evidence of one run (no causes: the checks add those)."""
    train = curves.train if curves.train is not None and len(curves.train) else None
    val = curves.val if curves.val is not None and len(curves.val) else None
    if train is None and val is None:
        return CurveAnalysis(
            "insufficient_data",
            evidence={"n_points": 0, "min_points": SHORT_MIN_POINTS, "problem": "no training or validation loss",
                      "series": sorted(curves.series)},
        )
    # the richer curve leads: 3 training rows beside 33 evaluations are judged on the evaluations
    primary, secondary = train, val
    if train is None or (val is not None and len(train) < MIN_POINTS and len(val) > len(train)):
        primary, secondary = val, train
    non_finite = _non_finite(primary, secondary)
    if non_finite is not None:
        return non_finite

    shapes = {s.name: _shape(s) for s in (primary, secondary) if s is not None}
    first, other = shapes.get(primary.name), shapes.get(secondary.name) if secondary is not None else None
    if first is not None and other is not None and first.n == SHORT_MIN_POINTS and first.trend == 0 \
            and (other.trend != 0 or not other.short):
        first, other = other, first  # three points that disagree beside a curve that can be judged
    if first is None:
        return _insufficient(primary, first)
    tr = shapes.get(train.name) if train is not None else None
    va = shapes.get(val.name) if val is not None else None

    ev: dict[str, Any] = {"loss": first.name, "n_points": first.n, "min_points": MIN_POINTS,
                          "first_step": rounded(first.steps[0]), "last_step": rounded(first.steps[-1])}
    if first.name != (train.name if train is not None else None) and train is not None:
        ev["judged_on"] = (f"{first.name}: {_finite_count(val)} points beside {_finite_count(train)} of "
                           f"{train.name}")
    if first.short:
        ev["short_log"] = True
    ev.update(_levels(first))
    events: list[Event] = []
    confidence = CONFIDENCE_FULL * (SHORT_LOG_FACTOR if first.short else 1.0)

    def done(verdict: str, conf: float | None = None) -> CurveAnalysis:
        ev["verdict_confidence"] = rounded(confidence if conf is None else conf)
        return CurveAnalysis(verdict, events, [], ev)

    # -- overfitting: validation rose from its true minimum while training kept falling ---------
    if tr is not None and va is not None:
        over = _overfitting(tr, va, ev)
        if over is not None:
            events.append(over)
            short = va.short or tr.short
            return done("overfitting", CONFIDENCE_FULL * (SHORT_LOG_FACTOR if short else 1.0))

    # -- diverging: it fell (or not), then rose and stayed up -----------------------------------
    div = _diverging(first, ev)
    if div is not None:
        events.append(div)
        return done("diverging")

    if first.short and first.trend == 0 and first.n < SHORT_DISAGREE_MIN_POINTS:
        return _insufficient(primary if first.name == primary.name else secondary, first)

    # -- oscillating: wide waves with no downward trend -----------------------------------------
    osc = _oscillating(first, ev)
    if osc is not None:
        events.append(osc)
        return done("oscillating")

    plateau = _plateau(first, ev)

    # -- chance level: a loss at ln K learned nothing, however far it fell to get there ----------
    chance = _chance(curves, [s for s in (first, other) if s is not None], ev)
    if chance is not None and chance["at"]:
        at = chance["at"]
        never_left = all(_near(s.start, chance["level"], s) for s in (first, other) if s is not None and s.name in at)
        everything_at_chance = all(s.name in at or s.barely_dropped for s in (first, other) if s is not None)
        verdict = "underfitting" if never_left and everything_at_chance else "stalled"
        events.append(Event("plateau", plateau, first.end if first.name in at else other.end,
                            f"{' and '.join(at)} at chance level ({chance['text']})"))
        return done(verdict, CONFIDENCE_FULL * (1.0 if chance["given"] else INFERRED_CHANCE_FACTOR))
    if chance is not None and chance.get("near"):
        confidence *= NEAR_CHANCE_FACTOR

    # -- the rest: underfitting, stalled or converging -------------------------------------------
    if first.short and first.trend:
        if first.trend > 0:  # every point rose, but not by enough to call it a divergence
            events.append(Event("plateau", plateau, first.end, f"loss stays near {first.end:.4g}"))
            return done("underfitting")
        return done("converging")
    # a non-negative loss that settled below SETTLED_LOW has nothing left to fall: a plateau there is the
    # end of a fitted run (a log excerpt of its last epochs), not a stall or a failure to learn
    if float(first.values.min()) >= 0 and first.end <= SETTLED_LOW:
        ev.update(settled_low=True, thresholds={"settled_low": SETTLED_LOW})
        return done("converging")
    # underfitting: the loss barely dropped, validation likewise. A validation loss frozen at one value
    # (the model's outputs on it never change) beside a training loss that barely dropped is the same,
    # however steadily training creeps down.
    if other is None:
        underfit = first.barely_dropped
    else:
        frozen = first.frozen or other.frozen
        underfit = (first.barely_dropped and other.barely_dropped) or (
            frozen and first.relative_drop < UNDERFIT_MAX_DROP and other.relative_drop < UNDERFIT_MAX_DROP)
    if underfit:
        ev["thresholds"] = {"max_drop": UNDERFIT_MAX_DROP, "recent_min_drop": STILL_FALLING_DROP,
                            "recent_fraction": RECENT_FRACTION}
        events.append(Event("plateau", plateau, first.end, f"loss stays near {first.end:.4g}"))
        return done("underfitting")
    stall = _stalled(first, ev)
    if stall is not None and (other is None or not other.still_falling):
        events.append(stall)
        return done("stalled")
    return done("converging")


def _insufficient(series: Series, shape: _Shape | None) -> CurveAnalysis:
    n = _finite_count(series)
    ev: dict[str, Any] = {"loss": series.name, "n_points": n}
    if shape is None:
        ev["min_points"] = SHORT_MIN_POINTS
        ev["problem"] = (f"{n} point{'s' if n != 1 else ''}; at least {SHORT_MIN_POINTS} that agree (or "
                         f"{MIN_POINTS} in all) are needed to judge a run")
    else:
        ev["min_points"] = SHORT_DISAGREE_MIN_POINTS
        ev["problem"] = (f"{n} points that disagree (they fall and rise); at least {SHORT_DISAGREE_MIN_POINTS} "
                         f"are needed to judge a run whose points do not agree ({MIN_POINTS} for full confidence)")
    if n >= 2:
        _, values = sorted_series(series)
        ev["relative_drop"] = rounded((values[0] - values[-1]) / max(abs(float(values[0])), 1e-12))
    return CurveAnalysis("insufficient_data", [], [], ev)


def _levels(s: _Shape) -> dict[str, Any]:
    return {"start_level": rounded(s.start), "end_level": rounded(s.end), "min_level": rounded(s.low),
            "min_step": rounded(float(s.level_steps[s.i_min])), "relative_drop": rounded(s.relative_drop),
            "noise_sigma": rounded(s.sm.sigma)}


# -- NaN / Inf: the first non-finite value decides, whatever came before ------------------------
def _non_finite(primary: Series, secondary: Series | None) -> CurveAnalysis | None:
    bad = []
    for s in (primary, secondary):
        if s is not None and not np.all(np.isfinite(s.values)):
            s_steps, s_values = sorted_series(s)
            i = int(np.argmin(np.isfinite(s_values)))
            bad.append((s.name, float(s_steps[i]), float(s_values[i])))
    if not bad:
        return None
    steps, values = sorted_series(primary)
    finite = np.isfinite(values)
    name, step, value = min(bad, key=lambda b: b[1])
    ev: dict[str, Any] = {"loss": primary.name, "n_points": int(values.size), "min_points": MIN_POINTS,
                          "first_step": rounded(steps[0]), "last_step": rounded(steps[-1]),
                          "first_non_finite_step": rounded(step), "first_non_finite_value": value,
                          "non_finite_in": name, "finite_points_before": int(np.count_nonzero(steps < step)),
                          "non_finite_share": rounded(1.0 - float(finite.mean())), "verdict_confidence": 1.0}
    events = [Event("first_non_finite", step, value, f"{name} became {value}")]
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


# -- diverging --------------------------------------------------------------------------------
def _diverging(s: _Shape, ev: dict[str, Any]) -> Event | None:
    level, bounds, values, steps, low, end = s.levels, s.bounds, s.values, s.steps, s.low, s.end
    rise = end - low
    drop = s.start - low
    noise_floor = NOISE_SIGMAS * math.hypot(s.end_sigma, s.low_sigma)
    gave_back = rise >= DIVERGE_GIVE_BACK * drop if drop > 0 else True
    tripled = low > 0 and end >= DIVERGE_FACTOR * low
    # the first level clearly above the minimum, and whether the curve stays up after it
    threshold = low + DIVERGE_CROSSING * rise
    above = np.flatnonzero(level[s.i_min:] > threshold)
    j = s.i_min + int(above[0]) if above.size else len(level) - 1
    stays_up = float(np.mean(level[j:] > threshold)) >= DIVERGE_STAYS_UP
    if not (rise > noise_floor and rise >= DIVERGE_MIN_RISE * s.scale and (gave_back or tripled) and stays_up):
        return None
    still_low = np.flatnonzero(level[s.i_min:j + 1] <= low + DIVERGE_ONSET * rise)
    onset = min(s.i_min + int(still_low[-1]) + 1 if still_low.size else j, j)
    a = int(bounds[onset])
    raw_up = np.flatnonzero(values[a:int(bounds[j + 1])] > low + DIVERGE_ONSET * rise)
    k = a + int(raw_up[0]) if raw_up.size else a
    step = float(steps[k])
    ev.update(divergence_step=rounded(step), rise=rounded(rise), rise_relative=rounded(rise / s.scale),
              rise_factor=rounded(end / low) if low > 0 else None, max_after_divergence=rounded(float(np.max(values[k:]))),
              thresholds={"give_back": DIVERGE_GIVE_BACK, "factor": DIVERGE_FACTOR, "min_rise": DIVERGE_MIN_RISE,
                          "stays_up": DIVERGE_STAYS_UP})
    return Event("divergence", step, float(values[k]),
                 f"loss rose from {low:.4g} to {end:.4g} ({rise / s.scale:.0%} of its scale)")


# -- overfitting ------------------------------------------------------------------------------
def _overfitting(tr: _Shape, va: _Shape, ev: dict[str, Any]) -> Event | None:
    """Validation rose from its true minimum, beyond its noise and for good, while training fell."""
    dense = va.n > SMOOTH_BINS  # validation logged as often as training: judged on block medians
    if dense:
        levels, level_steps, sigma, end_sigma = va.sm.level, va.sm.step, va.sm.sigma, va.end_sigma
    else:  # evaluations: few, each over the whole validation set; their noise from second differences
        levels, level_steps = va.values, va.steps
        sigma = end_sigma = curvature_noise_sigma(va.values)
    # the true minimum: the lowest level that its neighbours confirm. A lone dip below both of them,
    # beyond the noise and deeper than the rise overfitting needs, is an outlier evaluation, not the
    # best the model reached; a shallower dip cannot fake that rise and is the real minimum.
    neighbours = running_median3(levels)
    confirmed = levels >= neighbours - np.maximum(NOISE_SIGMAS * sigma, OVERFIT_MIN_RISE * np.abs(neighbours))
    if levels.size < NOISE_MIN_POINTS:
        confirmed[:] = True  # too few points to tell an outlier from a sharp minimum
    ib = int(np.argmin(np.where(confirmed, levels, np.inf)))
    best, best_step = float(levels[ib]), float(level_steps[ib])
    after = levels[ib + 1:]
    v_start = float(np.median(levels[:START_POINTS]))
    ev.update(val_best=rounded(best), val_best_step=rounded(best_step), val_end=rounded(va.end),
              val_relative_drop=rounded((v_start - va.end) / max(abs(v_start), 1e-12)))
    if after.size == 0:
        return None
    rise = va.end - best
    scale = max(abs(best), 1e-12)
    ev["val_rise_relative"] = rounded(rise / scale)
    t_at_onset = float(np.interp(best_step, tr.sm.step, tr.sm.level))
    train_fall = (t_at_onset - tr.end) / max(abs(t_at_onset), 1e-12)
    if rise < OVERFIT_MIN_RISE * scale or train_fall < OVERFIT_TRAIN_FALL:
        return None
    rises_in_a_row = after.size if np.all(np.diff(levels[ib:]) > 0) else 0
    line = best + 0.5 * rise
    up = running_median3(after) > line
    crossed = np.flatnonzero(up)
    sustained = crossed.size > 0 and float(np.mean(up[crossed[0]:])) >= OVERFIT_STAYS_UP
    # beyond the noise: the level of the risen stretch (the median of its m levels) against the best
    # level, with the noise of both (a median of m has 1.25 / sqrt(m) of one level's noise)
    measurable = levels.size >= NOISE_MIN_POINTS
    risen = after[crossed[0]:] if crossed.size else after[-1:]
    if not dense and after.size >= LOCAL_NOISE_MIN_POINTS:
        # the noise where the comparison is made: the scatter of the evaluations after the minimum (a
        # loss's noise shrinks with its level, so the steep early evaluations overstate it there)
        sigma = end_sigma = min(sigma, float(1.4826 * np.median(np.abs(after - np.median(after)))))
    risen_sigma = math.hypot(sigma, (end_sigma if dense else sigma) * 1.2533 / math.sqrt(risen.size))
    beyond_noise = measurable and float(np.median(risen)) - best > NOISE_SIGMAS * risen_sigma
    needed = OVERFIT_MIN_RISES if va.short else OVERFIT_CONFIRM_POINTS
    monotone = rises_in_a_row >= needed and (beyond_noise or not measurable)
    if not (monotone or (beyond_noise and sustained and after.size >= OVERFIT_CONFIRM_POINTS)):
        return None
    if _oscillating(tr, {}) is not None:
        return None  # training swings too: a rate too high, not a model that memorises
    ev.update(overfit_onset_step=rounded(best_step), train_fall_after_onset=rounded(train_fall),
              generalization_gap=rounded(va.end - tr.end), val_rises_in_a_row=int(rises_in_a_row),
              val_noise_sigma=rounded(sigma),
              thresholds={"val_rise": OVERFIT_MIN_RISE, "train_fall": OVERFIT_TRAIN_FALL,
                          "stays_up": OVERFIT_STAYS_UP, "rises_in_a_row": needed})
    return Event("overfitting_onset", best_step, best,
                 f"validation best {best:.4g}, now {va.end:.4g} (+{rise / scale:.0%})")


# -- oscillating ------------------------------------------------------------------------------
def _oscillating(s: _Shape, ev: dict[str, Any]) -> Event | None:
    if s.short:
        return None
    sm, values, steps = s.sm, s.values, s.steps
    # swing of the raw points (fast oscillations hide inside blocks), judged against white noise
    half_raw = values[values.size // 2:]
    lo, mid, hi = (float(x) for x in np.percentile(half_raw, [10, 50, 90]))  # one partition for all three
    swing = hi - lo
    half_blocks = sm.level[len(sm.level) // 2:]
    half_descent = float(half_blocks[0] - half_blocks[-1]) if half_blocks.size > 1 else 0.0
    half_level = max(abs(mid), 1e-12)
    block_swing = float(np.percentile(half_blocks, 90) - np.percentile(half_blocks, 10))
    legs = zigzag_legs(half_blocks, block_swing / 2)
    ev.update(swing_relative=rounded(swing / half_level), swing_legs=legs)
    if not (swing >= OSCILLATE_MIN_SWING * half_level and swing >= OSCILLATE_MIN_SWING_OF_SCALE * s.scale
            and swing > OSCILLATE_NOISE_RATIO * WHITE_NOISE_SPREAD * sm.sigma_point
            and legs >= OSCILLATE_MIN_LEGS and swing > OSCILLATE_TREND_RATIO * max(half_descent, 0.0)):
        return None
    ev.update(swing=rounded(swing), swing_low=rounded(lo), swing_high=rounded(hi),
              thresholds={"swing": OSCILLATE_MIN_SWING, "swing_of_scale": OSCILLATE_MIN_SWING_OF_SCALE,
                          "noise_ratio": OSCILLATE_NOISE_RATIO, "legs": OSCILLATE_MIN_LEGS,
                          "trend_ratio": OSCILLATE_TREND_RATIO})
    return Event("oscillation", float(steps[values.size // 2]), None, f"swings between {lo:.4g} and {hi:.4g}")


# -- plateau, stalled -------------------------------------------------------------------------
def _plateau(s: _Shape, ev: dict[str, Any]) -> float:
    """The final flat stretch (evidence); returns the step where it starts."""
    sm, steps, end = s.sm, s.steps, s.end
    band = max(PLATEAU_BAND * max(abs(end), 1e-12), NOISE_SIGMAS * sm.sigma)
    outside = np.flatnonzero(np.abs(sm.level - end) > band)
    p0 = int(outside[-1]) + 1 if outside.size else 0
    fraction = (len(sm.level) - p0) / len(sm.level)
    step = float(steps[int(sm.bounds[min(p0, len(sm.level) - 1)])])
    ev.update(plateau_level=rounded(end), plateau_start_step=rounded(step),
              plateau_length_steps=rounded(float(steps[-1]) - step), plateau_fraction=rounded(fraction),
              recent_relative_drop=rounded(s.tail_descent))
    return step


def _stalled(s: _Shape, ev: dict[str, Any]) -> Event | None:
    """A long final plateau far above the minimum the curve had already reached."""
    above = s.end - s.low
    noise_floor = NOISE_SIGMAS * math.hypot(s.end_sigma, s.low_sigma)
    if s.short or s.still_falling or ev["plateau_fraction"] < STALL_MIN_PLATEAU:
        return None
    if above < STALL_ABOVE_MIN * s.scale or above <= noise_floor:
        return None
    ev["above_min_relative"] = rounded(above / s.scale)
    ev["thresholds"] = {"plateau_share": STALL_MIN_PLATEAU, "above_min": STALL_ABOVE_MIN,
                        "recent_min_drop": STILL_FALLING_DROP}
    return Event("plateau", ev["plateau_start_step"], s.end,
                 f"flat at {s.end:.4g} for {ev['plateau_fraction']:.0%} of the run, {s.low:.4g} reached before")


# -- chance level -----------------------------------------------------------------------------
def _near(level: float, chance: float, s: _Shape) -> bool:
    """Within CHANCE_LEVEL_MARGIN of the chance level, or within the noise of it."""
    return abs(level - chance) <= CHANCE_LEVEL_MARGIN * chance + NOISE_SIGMAS * s.end_sigma


def _chance(curves: Curves, shapes: list[_Shape], ev: dict[str, Any]) -> dict[str, Any] | None:
    """Which loss curves end at chance level, with K and where K came from (in the evidence)."""
    given = _given_chance(curves.meta)
    accuracy = _accuracy_end(curves)
    if given is not None:
        level, classes, source = given
        at = [s.name for s in shapes if s.end >= _chance_line(level, s.end_sigma)]
        ev["chance_level"] = rounded(level)
        if classes:
            ev["chance_classes"] = classes
        ev["chance_source"] = source
        if not at:
            return None
        text = f"ln {classes} = {level:.4g}" if classes else f"{level:.4g}"
        ev.update(ended_at_chance=True, chance_at=at, chance_text=text,
                  thresholds={"chance_level": rounded(level), "margin": CHANCE_LEVEL_MARGIN,
                              "at_chance_above": rounded(_chance_line(level, max(s.end_sigma for s in shapes)))})
        return {"level": level, "at": at, "given": True, "text": text}

    # inferred: a tight, unambiguous match of some curve's end level with ln K, corroborated
    near = None
    for s in shapes:
        k = _nearest_classes(s.end)
        if k is None:
            continue
        level = math.log(k)
        tolerance = CHANCE_MATCH_TOLERANCE + NOISE_SIGMAS * s.end_sigma
        gap = min(level - math.log(k - 1), math.log(k + 1) - level)
        tight = abs(s.end - level) <= tolerance < gap / 2
        band = CHANCE_LEVEL_MARGIN * level + NOISE_SIGMAS * s.end_sigma
        loose = abs(s.end - level) <= band < gap / 2  # beyond 5 classes every level is "near" one
        if not (tight or loose):
            continue
        signs = []
        if _near(s.start, level, s):
            signs.append(f"{s.name} started there ({s.start:.4g})")
        share = _share_near(s, level, tolerance)
        if share >= CHANCE_FLAT_SHARE:
            signs.append(f"{s.name} within {tolerance:.2g} of it for {share:.0%} of the run")
        others = [o for o in shapes if o is not s and _near(o.end, level, o)]
        learned = None
        for name, acc in _paired(accuracy, s.name).items():
            if abs(acc - 1 / k) <= CHANCE_ACCURACY_MARGIN / k:
                signs.append(f"{name} ends at {acc:.3g} (1/{k} = {1 / k:.3g})")
            elif acc > (1 + 2 * CHANCE_ACCURACY_MARGIN) / k:
                learned = f"{name} ends at {acc:.3g}, above chance (1/{k} = {1 / k:.3g})"
        if tight and signs and learned is None:
            text = f"ln {k} = {level:.4g}"
            at = [s.name] + [o.name for o in others]
            also = [f"{o.name} ends there too ({o.end:.4g})" for o in others]
            ev.update(chance_level=rounded(level), chance_classes=k, ended_at_chance=True, chance_at=at,
                      chance_text=text,
                      chance_source=f"{s.name} ends at {s.end:.4g}, matching ln {k}; " + "; ".join(signs + also),
                      thresholds={"match_tolerance": rounded(tolerance), "margin": CHANCE_LEVEL_MARGIN,
                                  "flat_share": CHANCE_FLAT_SHARE})
            return {"level": level, "at": at, "given": False, "text": text}
        if near is None and learned is None:
            why = "not within the tight match" if signs else "nothing else says it is a classifier at chance"
            near = f"{s.name} ends at {s.end:.4g}, near ln {k} = {level:.4g}, but {why}"
    # ... or from the first logged loss: an untrained K-class classifier's first loss is ln K; a run
    # that logged ln K first and ends there again, no longer falling, learned nothing, whatever it did
    # in between (a blow-up to 50 and back looks like a 95 % drop from the inflated early level).
    # This holds for any loss: a curve that ends where it began is no progress.
    for s in shapes:
        first = float(s.values[0])
        k = _nearest_classes(first)
        if k is None:
            continue
        level = math.log(k)
        if abs(first - level) > CHANCE_LEVEL_MARGIN * level or not _near(s.end, level, s) or s.still_falling \
                or s.short:
            continue
        if any(o.end < _chance_line(level, o.end_sigma) for o in shapes if o is not s):
            continue  # the other loss curve beat chance: the run learned
        vetoes = [f"{name} ends at {acc:.3g}" for name, acc in _paired(accuracy, s.name).items()
                  if acc > (1 + 2 * CHANCE_ACCURACY_MARGIN) / k]
        if vetoes:
            continue
        text = f"ln {k} = {level:.4g}"
        at = [s.name] + [o.name for o in shapes if o is not s and _near(o.end, level, o)]
        ev.update(chance_level=rounded(level), chance_classes=k, ended_at_chance=True, chance_at=at, chance_text=text,
                  chance_source=(f"{s.name}'s first logged value {first:.4g} is {text} (an untrained {k}-class "
                                 f"classifier's loss) and it ends there again ({s.end:.4g})"),
                  thresholds={"margin": CHANCE_LEVEL_MARGIN})
        return {"level": level, "at": at, "given": False, "text": text}

    if near is None:
        return None
    ev["near_chance_level"] = near
    return {"near": True, "at": []}


def _chance_line(chance: float, end_sigma: float) -> float:
    """The level at and above which a run has not beaten the chance level."""
    return chance - max(CHANCE_LEVEL_MARGIN * chance, NOISE_SIGMAS * end_sigma)


def _given_chance(meta: dict[str, Any]) -> tuple[float, int | None, str] | None:
    def number(x: Any) -> bool:
        return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)  # numpy scalars too

    chance, classes = meta.get(CHANCE_LEVEL_META), meta.get(NUM_CLASSES_META)
    k = int(classes) if number(classes) and classes == int(classes) and classes >= CHANCE_MIN_CLASSES else None
    if number(chance) and chance > 0:
        if k is None:  # ln K given as a number: name K when it is one (2.302585 is ln 10)
            k = _nearest_classes(chance)
        if k is not None and abs(math.log(k) - chance) > CHANCE_GIVEN_MATCH:
            k = None
        return float(chance), k, f"{CHANCE_LEVEL_META} given with the curves"
    if k is not None:
        source = meta.get(NUM_CLASSES_SOURCE_META) or f"{NUM_CLASSES_META} = {k} given with the curves"
        return math.log(k), k, str(source)
    return None


def _nearest_classes(level: float) -> int | None:
    """The class count K (2..1000) whose ln K is nearest to ``level``."""
    if not math.log(CHANCE_MIN_CLASSES) * (1 - CHANCE_LEVEL_MARGIN) <= level <= \
            math.log(CHANCE_MAX_CLASSES) * (1 + CHANCE_LEVEL_MARGIN):
        return None
    x = math.exp(level)
    ks = [k for k in (math.floor(x), math.ceil(x)) if CHANCE_MIN_CLASSES <= k <= CHANCE_MAX_CLASSES]
    return min(ks, key=lambda k: abs(math.log(k) - level)) if ks else None


def _share_near(s: _Shape, chance: float, tolerance: float) -> float:
    """The share of the run's points whose smoothed level is within ``tolerance`` (plus its noise) of
    ``chance``."""
    inside = np.abs(s.sm.level - chance) <= tolerance + NOISE_SIGMAS * s.sm.sigma
    return float(np.sum(np.diff(s.sm.bounds)[inside])) / s.n


_EVAL_PREFIX = re.compile(r"^(val|valid|validation|eval|dev|test)(?![a-z])")


def _paired(accuracy: dict[str, float], loss_name: str) -> dict[str, float]:
    """The accuracy columns of the same split as the loss (val_accuracy for val_loss), else all."""
    want = loss_name != "train_loss"
    same = {k: v for k, v in accuracy.items() if bool(_EVAL_PREFIX.search(k.lower())) == want}
    return same or accuracy


def _accuracy_end(curves: Curves) -> dict[str, float]:
    """The end level of each accuracy column (fractions; a column in percent is divided by 100)."""
    out = {}
    for name, s in curves.series.items():
        low = name.lower()
        if not _ACCURACY_NAME.search(low) or "loss" in low or ("top" in low and not re.search(r"top_?1(?!\d)", low)):
            continue
        v = s.values[np.isfinite(s.values)]
        if v.size < SHORT_MIN_POINTS or v.min() < 0 or v.max() > 100:
            continue
        _, ordered = sorted_series(Series(name, s.steps[np.isfinite(s.values)], v))
        end, _ = end_level(ordered, 0.0)
        out[name] = end / 100 if ordered.max() > 1 else end
    return out
