"""``watch(..., tensorboard=logdir)``: the read-out as TensorBoard scalars (loss, per-layer gradient
norms and update ratios, the largest logit, the grad scaler's scale) and, with ``histograms_every``,
weight and gradient histograms (the seed article's gradient check)."""
from __future__ import annotations

import math
import os

import numpy as np
import torch

from ..errors import InputError
from .stats import Record


class TensorBoardOutput:
    def __init__(self, logdir: str | os.PathLike) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = os.fspath(logdir)
        try:
            self.writer = SummaryWriter(self.logdir)
        except OSError as exc:
            raise InputError(f"tensorboard={self.logdir!r}: cannot write a TensorBoard log there "
                             f"({type(exc).__name__}: {exc}); pass a writable directory") from exc

    def write_record(self, record: Record, layer_names: list[str]) -> None:
        w = self.writer
        for step, value in zip(record.loss_steps, record.loss_values):
            w.add_scalar("lossdoctor/train_loss", float(value), int(step))
        for step, value in zip(record.lr_steps, record.lr_values):
            w.add_scalar("lossdoctor/lr", float(value), int(step))
        if record.scaler is not None:
            for step, value in zip(record.scaler["scale_steps"], record.scaler["scales"]):
                w.add_scalar("lossdoctor/grad_scaler_scale", float(value), int(step))
        for s in record.samples:
            if math.isfinite(s.total_grad_norm):
                w.add_scalar("lossdoctor/grad_norm/total", s.total_grad_norm, s.step)
            for name, value in zip(layer_names, s.grad_norms):
                if np.isfinite(value):
                    w.add_scalar(f"lossdoctor/grad_norm/{name}", float(value), s.step)
            if s.update_ratios is not None:
                for name, value in zip(layer_names, s.update_ratios):
                    if np.isfinite(value):
                        w.add_scalar(f"lossdoctor/update_ratio/{name}", float(value), s.step)
            if s.logit_absmax is not None and math.isfinite(s.logit_absmax):
                w.add_scalar("lossdoctor/largest_logit", s.logit_absmax, s.step)
        w.flush()

    def write_histograms(self, params: list, names: dict[int, str], step: int) -> None:
        for p in params:
            name = names.get(id(p), "param")
            data = p.detach()
            if bool(torch.isfinite(data).all()):
                self.writer.add_histogram(f"weights/{name}", data, step)
            if p.grad is not None and bool(torch.isfinite(p.grad).all()):
                self.writer.add_histogram(f"gradients/{name}", p.grad.detach(), step)

    def close(self) -> None:
        self.writer.close()
