"""Observe ``torch.nn.utils.clip_grad_norm_`` while a watch is active.

The function returns the total gradient norm before clipping; the wrapper passes every argument
through untouched, returns the same value, and hands the norm (a device tensor, no sync) and
``max_norm`` to the active watches. The original function is restored when the last watch closes.
Code that imported the function by name before ``watch()`` started keeps the original and is not
observed; declare ``max_norm=`` in ``watch()`` for that case.
"""
from __future__ import annotations

import functools
import threading

import torch.nn.utils
import torch.nn.utils.clip_grad

_lock = threading.Lock()
_active: list = []  # the watches that receive clip observations
_original = None


def _make_wrapper(original):
    @functools.wraps(original)
    def clip_grad_norm_(parameters, max_norm, *args, **kwargs):
        total = original(parameters, max_norm, *args, **kwargs)
        for watch in tuple(_active):
            watch._on_clip(total, max_norm)
        return total

    clip_grad_norm_.__lossdoctor_original__ = original
    return clip_grad_norm_


def attach(watch) -> None:
    global _original
    with _lock:
        if watch in _active:
            return
        _active.append(watch)
        if _original is None:
            _original = torch.nn.utils.clip_grad.clip_grad_norm_
            wrapper = _make_wrapper(_original)
            for module in (torch.nn.utils, torch.nn.utils.clip_grad):
                if getattr(module, "clip_grad_norm_", None) is _original:
                    module.clip_grad_norm_ = wrapper


def detach(watch) -> None:
    global _original
    with _lock:
        if watch in _active:
            _active.remove(watch)
        if not _active and _original is not None:
            for module in (torch.nn.utils, torch.nn.utils.clip_grad):
                current = getattr(module, "clip_grad_norm_", None)
                if getattr(current, "__lossdoctor_original__", None) is _original:
                    module.clip_grad_norm_ = _original
            _original = None
