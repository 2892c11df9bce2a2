"""Observe ``torch.amp.GradScaler.update`` while a watch is active (mixed precision under float16).

``scaler.update()`` ends every iteration of a float16 run, including the ones whose optimizer step
the scaler skipped because a gradient overflowed. The wrapper calls the original with every argument
untouched and then tells each active watch which scaler updated and whether that watch's optimizer
took part in the iteration and the overflow flags of the iteration (device tensors, read before
the update clears them); the watch reads the new scale (a device tensor, no sync). ``torch.cuda.amp.GradScaler`` and ``torch.cpu.amp.GradScaler`` inherit the
method and are observed too. The original method is restored when the last watch closes.
"""
from __future__ import annotations

import functools
import threading

from torch.amp.grad_scaler import GradScaler

_lock = threading.Lock()
_active: list = []  # the watches that receive scaler observations
_original = None


def _make_wrapper(original):
    @functools.wraps(original)
    def update(self, *args, **kwargs):
        watches = tuple(_active)
        states = getattr(self, "_per_optimizer_states", None) or {}
        found = [flag for state in states.values() for flag in state.get("found_inf_per_device", {}).values()]
        involved = [getattr(w, "optimizer", None) is not None and id(w.optimizer) in states for w in watches]
        result = original(self, *args, **kwargs)
        for watch, took_part in zip(watches, involved):
            watch._on_scaler_update(self, took_part, found)
        return result

    update.__lossdoctor_original__ = original
    return update


def attach(watch) -> None:
    global _original
    with _lock:
        if watch in _active:
            return
        _active.append(watch)
        if _original is None:
            _original = GradScaler.update
            GradScaler.update = _make_wrapper(_original)


def detach(watch) -> None:
    global _original
    with _lock:
        if watch in _active:
            _active.remove(watch)
        if not _active and _original is not None:
            if getattr(GradScaler.update, "__lossdoctor_original__", None) is _original:
                GradScaler.update = _original
            _original = None
