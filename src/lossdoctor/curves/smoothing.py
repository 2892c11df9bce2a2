"""Numeric helpers of the curve analysis: sorting, block-median smoothing, noise estimates.

Vectorised numpy; the Python loops run over at most SMOOTH_BINS items, so a million-point log is
analysed in a few tens of milliseconds. Robust to minibatch noise: a median ignores single spikes,
and noise is measured from the median absolute deviation of point-to-point differences.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..evidence import Series

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


def sorted_series(series: Series) -> tuple[np.ndarray, np.ndarray]:
    steps, values = series.steps, series.values
    if steps.size > 1 and np.any(np.diff(steps) < 0):
        order = np.argsort(steps, kind="stable")
        steps, values = steps[order], values[order]
    return steps, values


# The noise is estimated from at most this many point-to-point differences (a median of 200,000
# values is within 0.3 % of the full one, and keeps a million-point log fast).
NOISE_SAMPLE = 200_000


def noise_sigma(values: np.ndarray) -> float:
    """Standard deviation of point-to-point noise, from the MAD of first differences (robust to
    trends and spikes; 1.4826 turns a MAD into a Gaussian sigma, sqrt 2 undoes the difference)."""
    if values.size < 3:
        return 0.0
    d = np.diff(values)
    if d.size > NOISE_SAMPLE:
        d = d[:: int(math.ceil(d.size / NOISE_SAMPLE))]
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0))


@dataclass
class Smooth:
    """Block medians of a series: ``level[i]`` is the median of raw points ``bounds[i]:bounds[i+1]``."""

    level: np.ndarray
    step: np.ndarray  # the step in the middle of each block
    bounds: np.ndarray
    block_size: float
    sigma: float  # noise of one block median
    sigma_point: float  # noise of one raw point


def smooth(steps: np.ndarray, values: np.ndarray, sigma: float | None = None) -> Smooth:
    n = values.size
    n_blocks = min(SMOOTH_BINS, n, max(n // MIN_BLOCK_POINTS, MIN_BLOCKS))
    bounds = np.linspace(0, n, n_blocks + 1).astype(np.int64)
    sigma = noise_sigma(values) if sigma is None else sigma
    if n_blocks == n:
        # One point per block (very short logs): a running median of 3 removes single spikes.
        return Smooth(running_median3(values), steps.copy(), bounds, 1.0, sigma, sigma)
    size = n // n_blocks
    if n % n_blocks == 0:
        level = np.median(values.reshape(n_blocks, size), axis=1)
        mid = steps.reshape(n_blocks, size)[:, size // 2]
    else:
        level = np.array([np.median(values[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])
        mid = steps[(bounds[:-1] + bounds[1:]) // 2]
    # the median of k noisy points has about 1.25 / sqrt(k) of their spread
    return Smooth(level, mid, bounds, n / n_blocks, sigma * 1.2533 / math.sqrt(n / n_blocks), sigma)


def running_median3(values: np.ndarray) -> np.ndarray:
    """Each point replaced by the median of itself and its two neighbours (ends repeated)."""
    if values.size < 3:
        return values.copy()
    padded = np.concatenate([values[:1], values, values[-1:]])
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, 3), axis=1)


def zigzag_legs(level: np.ndarray, min_move: float) -> int:
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


# Fewest points to measure noise from second differences: three differences, so that a median
# of them ignores one outlier.
NOISE_MIN_POINTS = 5


def curvature_noise_sigma(values: np.ndarray) -> float:
    """Standard deviation of the noise of a short, curved series (evaluations), from the MAD of second
    differences: a trend and its curvature cancel out, and a V-shaped minimum moves one term only.
    For white noise a second difference has variance 6 sigma^2. 0.0 below NOISE_MIN_POINTS points."""
    if values.size < NOISE_MIN_POINTS:
        return 0.0
    d2 = values[2:] - 2.0 * values[1:-1] + values[:-2]
    return float(1.4826 * np.median(np.abs(d2 - np.median(d2))) / math.sqrt(6.0))


def kendall_tau(values: np.ndarray) -> float:
    """Kendall's rank correlation of the values with their order: -1 when every point is below all the
    earlier ones, +1 when above. O(n^2): for short logs only."""
    n = values.size
    if n < 2:
        return 0.0
    signs = np.sign(values[None, :] - values[:, None])
    return float(np.triu(signs, 1).sum() / (n * (n - 1) / 2))


def end_level(values: np.ndarray, sigma: float) -> tuple[float, float]:
    """Median of the last END_FRACTION of the points, and the noise of that median."""
    k = max(1, int(math.ceil(values.size * END_FRACTION)))
    tail = values[-k:]
    return float(np.median(tail)), sigma * 1.2533 / math.sqrt(k)


def rounded(x: float) -> float:
    return float(f"{x:.6g}")

