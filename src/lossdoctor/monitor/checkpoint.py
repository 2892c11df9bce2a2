"""``watch(..., save_last_finite=path)``: the last finite weights, saved when the first NaN/Inf appears.

When the NaN is caught before the optimizer applies it (CPU, ``halt_on_nan``), the current weights
are saved; otherwise the snapshot taken at the last clean read-out (a CPU copy of the weights every
``every`` steps) is.
"""
from __future__ import annotations

import os
from typing import Any

import torch


class LastFinite:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self.snapshot: dict[str, Any] | None = None
        self.saved = False

    def save_now(self, step: int, root: torch.nn.Module, optimizer, params: list) -> None:
        """The NaN was caught before the update: the weights in the model are the last finite ones."""
        if self.saved:
            return
        if not all(bool(torch.isfinite(p).all()) for p in params):
            self.save_snapshot()
            return
        state = {"step": step, "model": root.state_dict()}
        if optimizer is not None:
            state["optimizer"] = optimizer.state_dict()
        self._write(state)

    def save_snapshot(self) -> None:
        if not self.saved and self.snapshot is not None:
            self._write(self.snapshot)

    def after_read_out(self, step: int, root: torch.nn.Module, non_finite: bool) -> None:
        if non_finite:
            self.save_snapshot()
        elif not self.saved:
            self.snapshot = {"step": step, "model": {k: v.detach().cpu().clone() for k, v in root.state_dict().items()}}

    def _write(self, state: dict[str, Any]) -> None:
        torch.save(state, self.path)
        self.saved = True
