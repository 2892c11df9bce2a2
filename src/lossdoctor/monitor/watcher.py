"""``lossdoctor.watch()``: watch a live training loop for the causes that logs cannot show.

Cost model (the hot path does tensor arithmetic and nothing else):

- every step: one forward pre-hook on the root module (keeps a reference to the batch), one
  optimizer pre-step hook (checks that the smallest parameter's gradient is finite: a NaN/Inf
  loss makes every gradient NaN), one optimizer post-step hook (a counter) and, in ``step(loss)``,
  a reference to the detached loss. No ``.item()`` on an accelerator: there the finiteness flag
  and the losses stay on the device until the read-out. On the CPU there is no device queue to
  wait for, so the flag is read at once (``nan_check="auto"``).
- one step in every ``every`` is instrumented in full: forward hooks on every module (per-unit
  activity of ReLU/sigmoid/tanh layers, the largest logit, and output finiteness when the NaN
  check waits for the read-out), per-layer
  gradient norms before the update and update-to-weight ratios after it. The hooks exist only
  during that step. Warning signs (logits near overflow, gradient norms growing) make every step
  instrumented until the next read-out.
- every ``every`` steps: a read-out (device to host, once), reduced across ranks under
  torch.distributed (every rank reaches the same step, so every rank enters the same collective).
- when the first NaN/Inf gradient appears, before the optimizer applies it: a replay of that
  batch on a deep copy of the model names the first module whose output turned NaN/Inf.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError, TrainingHalted
from ..internal import report_internal_error
from . import clipping
from .locate import (all_finite, modules_with_non_finite_weights, origin_from_gradients, origin_from_trace,
                     replay_forward, tensors_in)
from .stats import EXP_OVERFLOW_LIMIT, Record, SampleRecord, WatchStats, build_stats, merge_records

RELU_FAMILY = (nn.ReLU, nn.ReLU6)
SATURATING = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}

# A sigmoid output within this margin of 0 or 1 (tanh: of -1 or 1) passes back less than 4% (tanh 2%)
# of the gradient it would pass at its centre: the unit is saturated.
SATURATION_MARGIN = 0.01

# Update-to-weight ratios need a copy of the parameters on the instrumented step; above this many
# elements that copy would noticeably add to a large model's memory, so the ratio is skipped.
UPDATE_RATIO_MAX_ELEMENTS = 50_000_000

# Escalation: instrument every step until the next read-out once the largest logit passes this share
# of the dtype's exp overflow limit, or the gradient norm grew this many times over its first value,
# and the sign is new (above ESCALATE_NEW_HIGH times the previous high). A run that stays in that
# state is escalated at most MAX_ESCALATIONS times, which bounds the cost to a few read-out windows.
ESCALATE_LOGIT_FRACTION = 0.25
ESCALATE_GRAD_GROWTH = 10.0
ESCALATE_NEW_HIGH = 1.5
MAX_ESCALATIONS = 3


class _Hook:
    """A hook that forwards to the watch, and turns inert when the module or optimizer is deep-copied
    or pickled (a copy must neither feed this watch nor carry it along)."""

    __slots__ = ("fn",)

    def __init__(self, fn=None):
        self.fn = fn

    def __call__(self, *args, **kwargs):
        fn = self.fn
        return None if fn is None else fn(*args, **kwargs)

    def __deepcopy__(self, memo):
        return _Hook(None)

    def __reduce__(self):
        return (_Hook, ())


@dataclass
class _Sample:
    """Device-side data of one instrumented step (converted to a SampleRecord at read-out)."""

    step: int
    order: list[int] = field(default_factory=list)
    units: dict[str, tuple[str, torch.Tensor]] = field(default_factory=dict)
    calls: dict[int, int] = field(default_factory=dict)
    finite: list[tuple[str, Any, Any]] = field(default_factory=list)
    logit: Any = None
    logit_dtype: str | None = None
    logit_out: Any = None  # the latest logits tensor seen (reduced once, at the end of the step)
    logit_layer: str | None = None
    logit_from_root: bool = False
    last_conv: bool = False
    grad_index: list[int] | None = None
    grad_norms: Any = None
    before: list[torch.Tensor] | None = None
    diff_norms: Any = None
    weight_norms: Any = None


def _unwrap(model: nn.Module) -> nn.Module:
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    while isinstance(model, (DataParallel, DistributedDataParallel)):
        model = model.module
    return model


def _strict() -> bool:
    return bool(os.environ.get("LOSSDOCTOR_STRICT"))


class Watch:
    """A running watch over one model (and optimizer). Use ``watch(...)`` to create one."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, every: int = 50,
                 tensorboard: str | os.PathLike | None = None, halt_on_nan: bool = False,
                 max_norm: float | None = None, histograms_every: int | None = None,
                 save_last_finite: str | os.PathLike | None = None, nan_check: str = "auto",
                 html: str | os.PathLike | None = None, json: str | os.PathLike | None = None, wandb: bool = True):
        from ..integrations._common import output_path

        if not isinstance(model, nn.Module):
            raise InputError(f"watch() needs a torch.nn.Module, got {type(model).__name__}")
        if next(model.parameters(), None) is None:
            raise InputError(f"watch(): {type(model).__name__} has no parameters: nothing trains, so there "
                             "is nothing to watch (pass the model that owns the weights)")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise InputError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
        if not isinstance(every, int) or every < 1:
            raise InputError(f"every must be a positive integer (steps between read-outs), got {every!r}")
        if histograms_every is not None and (not isinstance(histograms_every, int) or histograms_every < 1):
            raise InputError(f"histograms_every must be a positive integer or None, got {histograms_every!r}")
        if histograms_every is not None and tensorboard is None:
            raise InputError("histograms_every needs tensorboard=<log directory> to write the histograms to")
        if max_norm is not None and not (isinstance(max_norm, (int, float)) and max_norm > 0):
            raise InputError(f"max_norm must be a positive number or None, got {max_norm!r}")
        if nan_check not in ("auto", "step", "readout"):
            raise InputError(f"nan_check must be 'auto', 'step' or 'readout', got {nan_check!r}")
        self.model = model
        self.optimizer = optimizer
        self.every = every
        self.tensorboard = os.fspath(tensorboard) if tensorboard is not None else None
        self.halt_on_nan = bool(halt_on_nan)
        self.max_norm = float(max_norm) if max_norm is not None else None
        self.histograms_every = histograms_every
        self.save_last_finite = os.fspath(save_last_finite) if save_last_finite is not None else None
        self.nan_check = nan_check
        self.html, self.json, self.wandb = output_path(html, "html"), output_path(json, "json"), bool(wandb)
        self.step_count = 0
        self._started = False
        self._closed = False
        self._handles: list = []
        self._sample_handles: list = []
        self._history: list[Record] = []
        self._reset_pending()
        self._sample: _Sample | None = None
        self._origin: dict[str, Any] | None = None
        self._origin_recorded = False
        self._last_input: tuple | None = None
        self._recording = False
        self._root_called = False
        self._closure_loss = None
        self._window_start = 0
        self._last_loss_step = -1
        self._dense_until = 0
        self._first_total_norm: float | None = None
        self._logit_high = 0.0
        self._norm_high = 0.0
        self._escalations = 0
        self._before_done = -1
        self._snapshot: dict | None = None
        self._saved = False
        self._writer = None
        self._layer_rank: dict[int, int] = {}

    # ------------------------------------------------------------------------------------------
    # Life cycle

    def __enter__(self) -> "Watch":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close()
        return False

    def start(self) -> "Watch":
        """Attach the hooks. Idempotent; ``with watch(...)`` calls it."""
        if self._started:
            return self
        root = self._root = _unwrap(self.model)
        self._inventory(root)
        dist = torch.distributed
        self._world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self._rank = dist.get_rank() if self._world > 1 else 0
        device = next((p.device for p in self._params), torch.device("cpu"))
        self._device = device
        self._immediate = self.halt_on_nan or self.nan_check == "step" or (
            self.nan_check == "auto" and device.type == "cpu")
        self._handles.append(root.register_forward_pre_hook(_Hook(self._hook_root_pre), with_kwargs=True))
        if self.optimizer is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(_Hook(self._hook_pre_step)))
            self._handles.append(self.optimizer.register_step_post_hook(_Hook(self._hook_post_step)))
        clipping.attach(self)
        if self.tensorboard is not None and self._rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(self.tensorboard)
        self._started = True
        self._arm_if_sampled(self.step_count)
        return self

    def close(self) -> None:
        """Remove every hook, stop observing clip_grad_norm_, flush TensorBoard. Idempotent."""
        if not self._started or self._closed:
            return
        self._closed = True
        try:
            self._disarm()
            for h in self._handles:
                h.remove()
            self._handles.clear()
        finally:
            clipping.detach(self)
        self._last_input = None  # do not keep the user's last batch alive
        self._safely("read-out at close", self._read_out, False)
        if self._writer is not None:
            self._safely("TensorBoard flush", self._writer.close)
            self._writer = None
        self._safely("leaving the report", self._leave_report)

    def _leave_report(self) -> None:
        """At close, on rank 0: the report to the ``html=``/``json=`` files and the active W&B run."""
        from ..integrations._common import active_wandb_run, leave_report

        wandb = self.wandb and active_wandb_run() is not None
        if getattr(self, "_rank", 0) == 0 and (self.html or self.json or wandb):
            leave_report(self.report(), html=self.html, json=self.json, wandb=wandb)

    # ------------------------------------------------------------------------------------------
    # The user-facing calls

    def step(self, loss: Any = None) -> None:
        """Call once per optimizer step. With an optimizer, steps are counted by the optimizer's
        step hook and this only records ``loss``; without one, each call is a step."""
        if not self._started:
            self.start()
        if self._closed:
            return
        if loss is not None:
            self._safely("recording the loss", self._record_loss, loss)
        if self.optimizer is None:
            self._safely("end of step", self._step_without_optimizer)

    def stats(self) -> WatchStats:
        """The statistics read out so far (plus what is pending on this rank), as plain data."""
        if not hasattr(self, "_layer_names"):  # never started: an empty read-out of this model
            self._root = _unwrap(self.model)
            self._inventory(self._root)
        history = list(self._history)
        if self._started and not self._closed:
            history.append(self._make_record(clear=False))
        layer_order = self._layer_order()
        names = [self._layer_names[i] for i in layer_order]
        weight = [self._weight_layer[i] for i in layer_order]
        bad_weights = modules_with_non_finite_weights(self._root) if self._started else []
        return build_stats(
            history, steps=self.step_count, every=self.every, layers=names, weight_layers=weight,
            layer_order=layer_order,
            non_finite_weights=bad_weights, declared_max_norm=self.max_norm, has_batchnorm=self._has_batchnorm,
            histograms=self.histograms_every is not None, world_size=getattr(self, "_world", 1),
            meta={"nan_check": "every step" if getattr(self, "_immediate", False) else "at read-out",
                  "rank": getattr(self, "_rank", 0)},
        )

    def report(self):
        """The read-out now: the verdict of the loss curve, the findings, and the plot data."""
        return self._build_report()

    def run_facts(self, framework: str = "pytorch"):
        """What this watch knows of the run itself: optimizer, rate, clip, dropout (for the checks)."""
        from ..evidence import RunFacts

        return RunFacts.of_torch(framework, _unwrap(self.model), self.optimizer, self.max_norm)

    def evidence(self, curves=None, run=None):
        """The Evidence of this watch: its loss curve (or ``curves``, e.g. a framework's logged
        curves), their analysis, the read-out statistics and the run's facts."""
        from ..curves import judge
        from ..evidence import TRAIN_LOSS, Curves
        from ..registry import Evidence

        stats = self.stats()
        if curves is None:
            curves = Curves(run="watch", source="lossdoctor.watch", meta={"format": "watch"})
            if stats.loss_steps.size:
                curves.add(TRAIN_LOSS, stats.loss_steps, stats.loss_values)
        analysis = judge(curves) if curves.series else None
        return Evidence(curves=curves, analysis=analysis, stats=stats, run=run or self.run_facts())

    def _build_report(self, curves=None, run=None, source: str = "lossdoctor.watch", metadata=None, extra=()):
        from ..assemble import build_report
        from .stats import stats_plots

        evidence = self.evidence(curves, run)
        stats = evidence.stats
        meta = {"steps": stats.steps, "every": self.every, "instrumented_steps": len(stats.sample_steps),
                "world_size": stats.world_size, "nan_check": stats.meta["nan_check"], **(metadata or {})}
        return build_report(evidence, source=source, metadata=meta, plots=stats_plots(stats), extra=extra)

    def findings(self):
        return self.report().findings

    # ------------------------------------------------------------------------------------------
    # Inventory

    def _inventory(self, root: nn.Module) -> None:
        self._module_info: dict[int, tuple[str, int, str | None, bool, bool]] = {}
        self._layer_names: list[str] = []
        self._weight_layer: list[bool] = []
        params: list[torch.nn.Parameter] = []
        param_layer: list[int] = []
        seen: set[int] = set()
        self._has_batchnorm = False
        for name, module in root.named_modules():
            own = [p for p in module.parameters(recurse=False) if p.requires_grad and id(p) not in seen]
            layer = -1
            if own:
                layer = len(self._layer_names)
                self._layer_names.append(name or type(module).__name__)
                self._weight_layer.append(any(p.dim() >= 2 for p in own))
                for p in own:
                    seen.add(id(p))
                    params.append(p)
                    param_layer.append(layer)
            kind = "relu" if isinstance(module, RELU_FAMILY) else SATURATING.get(type(module))
            self._module_info[id(module)] = (name or type(module).__name__, layer, kind,
                                             isinstance(module, nn.modules.conv._ConvNd),
                                             next(module.children(), None) is None)
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                self._has_batchnorm = True
        self._params = params
        self._param_layer = np.array(param_layer, dtype=np.int64)
        self._param_names = {id(p): n for n, p in root.named_parameters()}
        # The smallest gradient is the cheapest to check; a NaN/Inf loss reaches every gradient.
        self._sentinels = sorted(params, key=lambda p: p.numel())[:4]
        self._update_ratio_ok = sum(p.numel() for p in params) <= UPDATE_RATIO_MAX_ELEMENTS

    def _layer_order(self) -> list[int]:
        n = len(self._layer_names)
        return sorted(range(n), key=lambda i: (self._layer_rank.get(i, n + i)))

    # ------------------------------------------------------------------------------------------
    # Hooks (each body guarded: a failure inside lossdoctor is reported once, training goes on)

    def _safely(self, where: str, fn, *args):
        try:
            return fn(*args)
        except TrainingHalted:
            raise
        except Exception as exc:  # noqa: BLE001 - never break the user's training
            if _strict():
                raise
            report_internal_error(f"lossdoctor.watch ({where})", exc)
            return None

    def _hook_root_pre(self, module, args, kwargs):
        if module is not self._root:
            return None
        self._recording = torch.is_grad_enabled()
        self._root_called = True
        if self._recording and self._immediate:
            self._last_input = (args, kwargs, self._autocast_state())
        return None

    def _hook_pre_step(self, optimizer, args, kwargs):
        # the optimizer's step wrapper passes (optimizer, *step_args): the closure is args[1]
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if callable(closure):
            # optimizer.step(closure) (Lightning, LBFGS): the gradients exist only once the closure ran,
            # so the checks run right after it, still before the update.
            def watched_closure():
                result = closure()
                # the closure's loss joins the NaN check: an Inf loss (an overflowing square) can still
                # give finite gradients, and only the next step's would show it
                if isinstance(result, torch.Tensor) and result.is_floating_point():
                    self._closure_loss = result.detach()
                if self._before_done != self.step_count:
                    self._safely("before the optimizer step", self._before_update)
                return result

            if "closure" in kwargs:
                return args, {**kwargs, "closure": watched_closure}
            return (args[0], watched_closure, *args[2:]), kwargs
        self._safely("before the optimizer step", self._before_update)
        return None

    def _hook_post_step(self, optimizer, args, kwargs):
        self._safely("after the optimizer step", self._after_update)
        return None

    def _hook_forward(self, module, args, output):
        # training forwards only (a validation pass under no_grad is not the step being measured); not
        # tied to the root's pre-hook, which a LightningModule's training_step never calls
        if self._sample is not None and torch.is_grad_enabled():
            self._safely("forward hook", self._on_forward, module, args, output)
        return None

    def _on_clip(self, total_norm, max_norm) -> None:
        self._safely("observing clip_grad_norm_", self._record_clip, total_norm, max_norm)

    # ------------------------------------------------------------------------------------------
    # Per-step work

    def _record_loss(self, loss) -> None:
        if self.optimizer is not None and self.step_count > 0 and self._last_loss_step < self.step_count - 1:
            index = self.step_count - 1  # called after optimizer.step(): the loss of the step just taken
        else:
            index = self.step_count
        self._last_loss_step = index
        if isinstance(loss, torch.Tensor):
            value = loss.detach()
            if value.numel() != 1:
                value = value.float().mean()
        else:
            value = float(loss)
        self._losses.append((index, value))

    def _record_clip(self, total_norm, max_norm) -> None:
        norm = total_norm.detach() if isinstance(total_norm, torch.Tensor) else float(total_norm)
        self._clips.append((self.step_count, norm, float(max_norm)))

    def _first_present_grad(self):
        for p in self._sentinels:
            if p.grad is not None:
                return p.grad
        return None

    def _before_update(self) -> None:
        step = self._before_done = self.step_count
        grad = self._first_present_grad()
        loss, self._closure_loss = self._closure_loss, None
        if (grad is not None or loss is not None) and self._origin is None:
            if self._immediate:
                # one reduction: a NaN/Inf makes the sum non-finite; a finite sum that overflowed is
                # told apart by the exact check, which runs only then
                bad = grad is not None and not math.isfinite(float(grad.sum())) and not bool(torch.isfinite(grad).all())
                bad = bad or (loss is not None and not bool(torch.isfinite(loss).all()))
                if bad:
                    self._on_first_non_finite(step, weights_updated=False)
            else:
                if grad is not None:
                    self._flags.append((step, torch.isfinite(grad).all()))
                if loss is not None:
                    self._flags.append((step, torch.isfinite(loss).all()))
        sample = self._sample
        if sample is not None:
            self._sample_gradients(sample)
            if self._update_ratio_ok and self._params:
                sample.before = [p.detach().clone() for p in self._params]
        if self.histograms_every is not None and step % self.histograms_every == 0 and self._writer is not None:
            self._write_histograms(step)

    def _after_update(self) -> None:
        sample = self._sample
        if sample is not None and sample.before is not None:
            current = [p.detach() for p in self._params]
            sample.diff_norms = self._stack(torch._foreach_norm(torch._foreach_sub(current, sample.before)))
            sample.weight_norms = self._stack(torch._foreach_norm(sample.before))
            sample.before = None
        self._end_of_step()

    def _step_without_optimizer(self) -> None:
        # No optimizer hook: the NaN check reads the loss handed to step() and, when gradients are
        # still present (Keras with the torch backend clears them only at the next batch), the
        # smallest one; the parameters themselves are checked at every read-out (_check_weights).
        step = self.step_count
        if self._origin is None:
            checks = []
            if self._losses and self._losses[-1][0] == step:
                checks.append(self._losses[-1][1])
            grad = self._first_present_grad()
            if grad is not None:
                checks.append(grad.detach().sum())
            for value in checks:
                if not isinstance(value, torch.Tensor):
                    value = torch.tensor(float(value))
                if self._immediate:
                    if not bool(torch.isfinite(value).all()):
                        self._on_first_non_finite(step, weights_updated=True)
                        break
                else:
                    self._flags.append((step, torch.isfinite(value).all()))
        if self._sample is not None:
            self._sample_gradients(self._sample)
        self._end_of_step()

    def _end_of_step(self) -> None:
        if self._sample is not None:
            s = self._sample
            if s.logit_out is not None:
                s.logit, s.logit_dtype = s.logit_out.detach().abs().amax(), str(s.logit_out.dtype)
                s.logit_out = None
            self._pending_samples.append(s)
            self._disarm()
        self.step_count += 1
        if self.step_count % self.every == 0:
            self._read_out(True)
        self._arm_if_sampled(self.step_count)

    def _stack(self, tensors) -> torch.Tensor:
        return torch.stack([t.detach().float().to(self._device) for t in tensors])

    # ------------------------------------------------------------------------------------------
    # Instrumented steps

    def _arm_if_sampled(self, step: int) -> None:
        if self._closed or not (step % self.every == 0 or step < self._dense_until):
            return
        self._sample = _Sample(step=step)
        for module in self._root.modules():
            self._sample_handles.append(module.register_forward_hook(_Hook(self._hook_forward)))

    def _disarm(self) -> None:
        for h in self._sample_handles:
            h.remove()
        self._sample_handles.clear()
        self._sample = None

    def _on_forward(self, module, args, output) -> None:
        info = self._module_info.get(id(module))
        if info is None:
            return
        name, layer, kind, is_conv, is_leaf = info
        s = self._sample
        if layer >= 0:
            if layer not in s.order:
                s.order.append(layer)
            s.last_conv = is_conv
        # The logits: the root's output, or, when the root is never called (a LightningModule's
        # training_step calls its submodules), the last classifier-shaped output of the step. Only a
        # reference is kept here; it is reduced once at the end of the step.
        is_root = module is self._root
        if is_root or not s.logit_from_root:
            logits = _logits(output)
            if logits is not None:
                s.logit_out, s.logit_from_root = logits, is_root
                s.logit_layer = self._layer_names[s.order[-1]] if s.order else name
        # Output finiteness locates a NaN only when no replay will (NaN check at read-out). One sum per
        # leaf output: a NaN/Inf makes it non-finite (a finite overflow of the sum is read as one too,
        # which matters only once the run already has a NaN step to explain).
        track_finite = not self._immediate and is_leaf
        if kind is None and not track_finite:
            return
        outs = tensors_in(output)
        if not outs:
            return
        out = outs[0].detach()
        if track_finite:
            raw = None
            if not s.finite:  # the first module called sees the batch itself
                ins = tensors_in(args)
                raw = torch.isfinite(ins[0].sum()) if ins else None
            s.finite.append((name, raw, torch.isfinite(out.sum())))
        if kind is None or out.dim() == 0:
            return
        calls = s.calls.get(id(module), 0)
        s.calls[id(module)] = calls + 1
        key = name if calls == 0 else f"{name}#{calls + 1}"
        unit_dim = 1 if out.dim() == 2 or s.last_conv else out.dim() - 1
        others = tuple(d for d in range(out.dim()) if d != unit_dim)  # reduce in place of a transposed copy
        if kind == "relu":
            mask = out.amax(dim=others) > 0  # active on some example/position
        elif kind == "sigmoid":
            mask = (out - 0.5).abs().amin(dim=others) > 0.5 - SATURATION_MARGIN  # saturated everywhere
        else:
            mask = out.abs().amin(dim=others) > 1 - SATURATION_MARGIN
        s.units[key] = (kind if kind == "relu" else "saturated " + kind, mask)

    def _sample_gradients(self, sample: _Sample) -> None:
        index = [i for i, p in enumerate(self._params) if p.grad is not None]
        if index:
            grads = [self._params[i].grad.detach() for i in index]
            sample.grad_index = index
            sample.grad_norms = self._stack(torch._foreach_norm(grads))
        for layer in sample.order:
            self._layer_rank.setdefault(layer, len(self._layer_rank))

    # ------------------------------------------------------------------------------------------
    # The first NaN/Inf

    def _on_first_non_finite(self, step: int, weights_updated: bool) -> None:
        origin, replay_note = None, None
        if self._last_input is not None:
            args, kwargs, autocast = self._last_input
            try:
                trace = replay_forward(self._root, args, kwargs, autocast)
                origin = origin_from_trace(trace, all_finite(tensors_in((args, kwargs))))
                if origin is not None:
                    origin["located_by"] = ("replay of the step's batch on a copy of the model "
                                            + ("(weights already updated)" if weights_updated else
                                               "with the weights before the update"))
            except Exception as exc:  # noqa: BLE001 - the user's model, not lossdoctor: never raised, not even
                # in strict mode (a LightningModule's forward may raise NotImplementedError; a model may
                # refuse a deep copy); the origin falls back to the gradients, and the evidence says why
                replay_note = f"replay of the root module's forward failed ({type(exc).__name__}: {exc})"[:300]
        elif not self._root_called:
            replay_note = ("no replay: the root module's forward was not called in training (e.g. a "
                           "LightningModule's training_step calls its submodules)")
        if origin is None:
            names = [self._layer_names[i] for i in self._layer_order()]
            origin = origin_from_gradients(self._root, names)
            if origin is not None:
                origin["located_by"] = "gradients of the step"
        if origin is None:
            bad = modules_with_non_finite_weights(self._root)
            origin = ({"module": bad[0], "produced_by": "weights", "located_by": "weights inspected",
                       "detail": "the first module whose weights are NaN/Inf"} if bad else
                      {"module": None, "produced_by": "unknown", "located_by": "not located"})
        if replay_note:
            origin["replay"] = replay_note
        origin["step"] = step
        origin["rank"] = getattr(self, "_rank", 0)
        previous = [s for s in self._pending_samples if s.logit is not None]
        if previous:
            origin["largest_logit_before"] = float(previous[-1].logit)
        self._origin = origin
        self._last_input = None
        if self.save_last_finite and not weights_updated:
            self._save_state(step, current=True)
        if self.halt_on_nan:
            from .checks import non_finite_finding

            raise TrainingHalted(non_finite_finding(origin, self.step_count))

    def _save_state(self, step: int, current: bool) -> None:
        if self._saved:
            return
        if current:
            if not all(bool(torch.isfinite(p).all()) for p in self._params):
                current = False
        if current:
            state = {"step": step, "model": self._root.state_dict()}
            if self.optimizer is not None:
                state["optimizer"] = self.optimizer.state_dict()
        elif self._snapshot is not None:
            state = self._snapshot
        else:
            return
        torch.save(state, self.save_last_finite)
        self._saved = True

    # ------------------------------------------------------------------------------------------
    # Read-out

    def _reset_pending(self) -> None:
        self._losses: list[tuple[int, Any]] = []
        self._flags: list[tuple[int, torch.Tensor]] = []
        self._clips: list[tuple[int, Any, float]] = []
        self._pending_samples: list[_Sample] = []

    def _make_record(self, clear: bool) -> Record:
        losses, flags, clips, samples = self._losses, self._flags, self._clips, self._pending_samples
        if clear:
            self._reset_pending()
        loss_steps = np.array([i for i, _ in losses], dtype=np.int64)
        loss_values = _to_numpy([v for _, v in losses])
        bad: list[int] = []
        if flags:
            ok = _to_numpy([f for _, f in flags])
            bad = [int(flags[i][0]) for i in np.flatnonzero(ok == 0)[:1]]
        records = [self._sample_record(s) for s in samples]
        clip_norms = _to_numpy([n for _, n, _ in clips])
        origin = self._origin if not self._origin_recorded else None
        if clear and origin is not None:
            self._origin_recorded = True
        return Record(loss_steps, loss_values, bad, records,
                      np.array([s for s, _, _ in clips], dtype=np.int64), clip_norms,
                      np.array([m for _, _, m in clips], dtype=np.float64), origin,
                      rank=getattr(self, "_rank", 0))

    def _sample_record(self, s: _Sample) -> SampleRecord:
        n_layers = len(self._layer_names)
        grad_layers = np.full(n_layers, np.nan)
        total = math.nan
        if s.grad_norms is not None:
            norms = s.grad_norms.cpu().numpy().astype(np.float64)
            layer = self._param_layer[s.grad_index]
            sq = np.zeros(n_layers)
            np.add.at(sq, layer, norms ** 2)
            present = np.zeros(n_layers, dtype=bool)
            present[layer] = True
            grad_layers = np.where(present, np.sqrt(sq), np.nan)
            total = float(np.sqrt(np.sum(norms ** 2)))
        ratios = None
        if s.diff_norms is not None:
            diff = s.diff_norms.cpu().numpy().astype(np.float64)
            weight = s.weight_norms.cpu().numpy().astype(np.float64)
            d2 = np.zeros(n_layers)
            w2 = np.zeros(n_layers)
            np.add.at(d2, self._param_layer, diff ** 2)
            np.add.at(w2, self._param_layer, weight ** 2)
            with np.errstate(all="ignore"):
                ratios = np.where(w2 > 0, np.sqrt(d2) / np.sqrt(w2), np.nan)
        finite = [(name, None if inf is None else bool(inf), bool(outf)) for name, inf, outf in s.finite]
        units = {k: (kind, mask.cpu().numpy().astype(bool)) for k, (kind, mask) in s.units.items()}
        return SampleRecord(
            step=s.step, grad_norms=grad_layers, total_grad_norm=total, update_ratios=ratios, units=units,
            finite=finite, logit_absmax=float(s.logit) if s.logit is not None else None, logit_dtype=s.logit_dtype,
            logit_layer=s.logit_layer,
        )

    def _check_weights(self) -> None:
        """Without an optimizer, at read-out: are the weights still finite? One norm per parameter and
        one flag read per read-out; catches a NaN that neither a loss nor a gradient showed."""
        if self.optimizer is not None or self._origin is not None or not self._params:
            return
        if any(not bool(f) for _, f in self._flags):
            return
        norms = torch.stack([n.float().to(self._device) for n in torch._foreach_norm([p.detach() for p in self._params])])
        if bool(torch.isfinite(norms).all()):
            return
        bad = modules_with_non_finite_weights(self._root)
        self._origin = {
            "module": bad[0] if bad else None, "produced_by": "weights", "located_by": "weights inspected at read-out",
            "step": self._window_start, "step_range": [self._window_start, max(self.step_count - 1, self._window_start)],
            "step_exact": False, "rank": getattr(self, "_rank", 0),
            "detail": ("the weights turned NaN/Inf between two read-outs and no loss or gradient showed it: the "
                       "step given is the first of that window. Pass the loss to doctor.step(loss) for the exact "
                       "step"),
        }

    def _read_out(self, collective: bool) -> None:
        self._safely("checking the weights", self._check_weights)
        self._window_start = self.step_count
        record = self._make_record(clear=True)
        if collective and getattr(self, "_world", 1) > 1:
            gathered: list[Any] = [None] * self._world
            torch.distributed.all_gather_object(gathered, record)
            record = merge_records(gathered)
        self._history.append(record)
        self._after_read_out(record)

    def _after_read_out(self, record: Record) -> None:
        non_finite = bool(record.bad_steps) or record.origin is not None or not np.isfinite(record.loss_values).all()
        if self.save_last_finite:
            if non_finite:
                self._save_state(self.step_count, current=False)
            elif not self._saved:
                self._snapshot = {"step": self.step_count,
                                  "model": {k: v.detach().cpu().clone() for k, v in self._root.state_dict().items()}}
        escalate = False
        for s in record.samples:
            if self._first_total_norm is None and math.isfinite(s.total_grad_norm) and s.total_grad_norm > 0:
                self._first_total_norm = s.total_grad_norm
            limit = EXP_OVERFLOW_LIMIT.get(s.logit_dtype or "", 88.72)
            logit = s.logit_absmax if s.logit_absmax is not None and math.isfinite(s.logit_absmax) else None
            norm = s.total_grad_norm if math.isfinite(s.total_grad_norm) else None
            if logit is not None:
                escalate |= logit > ESCALATE_LOGIT_FRACTION * limit and logit > ESCALATE_NEW_HIGH * self._logit_high
                self._logit_high = max(self._logit_high, logit)
            if norm is not None and self._first_total_norm is not None:
                escalate |= (norm > ESCALATE_GRAD_GROWTH * self._first_total_norm
                             and norm > ESCALATE_NEW_HIGH * self._norm_high)
                self._norm_high = max(self._norm_high, norm)
        if escalate and not non_finite and self._escalations < MAX_ESCALATIONS:
            self._escalations += 1
            self._dense_until = self.step_count + self.every
        if self._writer is not None:
            self._write_scalars(record)

    # ------------------------------------------------------------------------------------------
    # TensorBoard

    def _write_scalars(self, record: Record) -> None:
        w = self._writer
        for step, value in zip(record.loss_steps, record.loss_values):
            w.add_scalar("lossdoctor/train_loss", float(value), int(step))
        names = self._layer_names
        for s in record.samples:
            if math.isfinite(s.total_grad_norm):
                w.add_scalar("lossdoctor/grad_norm/total", s.total_grad_norm, s.step)
            for name, value in zip(names, s.grad_norms):
                if np.isfinite(value):
                    w.add_scalar(f"lossdoctor/grad_norm/{name}", float(value), s.step)
            if s.update_ratios is not None:
                for name, value in zip(names, s.update_ratios):
                    if np.isfinite(value):
                        w.add_scalar(f"lossdoctor/update_ratio/{name}", float(value), s.step)
            if s.logit_absmax is not None and math.isfinite(s.logit_absmax):
                w.add_scalar("lossdoctor/largest_logit", s.logit_absmax, s.step)
        w.flush()

    def _write_histograms(self, step: int) -> None:
        for p in self._params:
            name = self._param_names.get(id(p), "param")
            data = p.detach()
            if bool(torch.isfinite(data).all()):
                self._writer.add_histogram(f"weights/{name}", data, step)
            if p.grad is not None and bool(torch.isfinite(p.grad).all()):
                self._writer.add_histogram(f"gradients/{name}", p.grad.detach(), step)

    def _autocast_state(self) -> dict | None:
        device_type = self._device.type
        try:
            if torch.is_autocast_enabled(device_type):
                return {"enabled": True, "device_type": device_type, "dtype": torch.get_autocast_dtype(device_type)}
        except (TypeError, RuntimeError):
            return None
        return None


def _logits(output) -> torch.Tensor | None:
    """The classifier's logits in a model output: a floating tensor whose last axis holds >= 2 classes
    (``.logits`` of a transformers ModelOutput, the first tensor of a tuple)."""
    candidate = getattr(output, "logits", None)
    if candidate is None:
        found = tensors_in(output)
        candidate = found[0] if found else None
    if isinstance(candidate, torch.Tensor) and candidate.is_floating_point() and candidate.dim() >= 2 \
            and candidate.shape[-1] >= 2:
        return candidate
    return None


def _to_numpy(values: list) -> np.ndarray:
    if not values:
        return np.zeros(0, dtype=np.float64)
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    if len(tensors) == len(values):
        return torch.stack([t.reshape(()).float().cpu() for t in tensors]).double().numpy()
    return np.array([float(v) for v in values], dtype=np.float64)


def watch(model: nn.Module, optimizer: torch.optim.Optimizer | None = None, every: int = 50,
          tensorboard: str | os.PathLike | None = None, halt_on_nan: bool = False, max_norm: float | None = None,
          histograms_every: int | None = None, save_last_finite: str | os.PathLike | None = None,
          nan_check: str = "auto", html: str | os.PathLike | None = None, json: str | os.PathLike | None = None,
          wandb: bool = True) -> Watch:
    """Watch a training run: ``with lossdoctor.watch(model, optimizer) as doctor: ...``.

    ``every``: steps between read-outs (one step in ``every`` is instrumented in full).
    ``tensorboard``: a log directory for scalars (and histograms with ``histograms_every``).
    ``halt_on_nan``: raise ``TrainingHalted`` (carrying the finding) before the optimizer applies the
    first NaN/Inf gradient; reads one flag from the device every step (a sync on accelerators).
    ``max_norm``: the clip threshold, when clipping is not done through torch.nn.utils.clip_grad_norm_.
    ``save_last_finite``: a path; when the first NaN/Inf appears, the last finite weights are saved there.
    ``nan_check``: "auto" (every step on CPU, at read-out on accelerators), "step" or "readout".
    ``html`` / ``json``: paths the report is written to at ``close()`` (the end of the ``with`` block).
    ``wandb``: at ``close()``, write the findings to the active Weights & Biases run, if any.
    Call ``start()`` yourself when not using ``with``; ``close()`` removes every hook.
    """
    return Watch(model, optimizer, every=every, tensorboard=tensorboard, halt_on_nan=halt_on_nan,
                 max_norm=max_norm, histograms_every=histograms_every, save_last_finite=save_last_finite,
                 nan_check=nan_check, html=html, json=json, wandb=wandb)
