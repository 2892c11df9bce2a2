"""``lossdoctor.watch()``: watch a live training loop for the causes that logs cannot show.

The ``Watch`` attaches the hooks, decides which steps are instrumented (``schedule.py``), and reads
the measurements out (``measurements.py``, ``sentinel.py``: each states its own cost). Its jobs
beyond that are small classes of their own: the model's inventory (``inventory.py``), TensorBoard
(``tensorboard.py``), the last finite weights (``checkpoint.py``), the observed
``clip_grad_norm_`` (``clipping.py``) and ``GradScaler`` (``amp.py``).

Cost model (the hot path does tensor arithmetic and nothing else):

- every step: one forward pre-hook on the root module (keeps a reference to the batch on the CPU),
  one optimizer pre-step hook (the NaN sentinel: the smallest gradient's finiteness), one
  post-step hook (the learning rate, a Python float, and a counter) and, in ``step(loss)``, a
  reference to the detached loss. No ``.item()`` on an accelerator: there the sentinel's flags and
  the losses stay on the device until the read-out.
- one step in every ``every`` is instrumented in full: forward hooks on every module (unit activity,
  the largest logit, the inputs' scale, output finiteness in read-out mode), gradient norms before
  the update, update ratios and low-precision rounding after it. The hooks exist only during that
  step. Warning signs (logits near overflow, gradient norms growing) make every step instrumented
  until the next read-out.
- every ``every`` steps: a read-out (device to host, once), reduced across ranks under
  torch.distributed (every rank reaches the same step, so every rank enters the same collective).
- once, at the first training batch (before the first update): the model checks' facts, from a deep
  copy of the model run on that batch (``ModelAtInit``; skipped above 100 million parameters).
- the first NaN/Inf gradient, before the optimizer applies it: a replay of that batch on a deep
  copy of the model names the first module whose output turned NaN/Inf.

A failure inside the watch never reaches the training loop: every hook is guarded (reported once
as a ``LossDoctorInternalWarning``); the one exception is ``TrainingHalted`` of ``halt_on_nan``.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError, TrainingHalted
from ..internal import report_internal_error
from . import amp, clipping
from .checkpoint import LastFinite
from .inventory import Inventory, compiled_in_place, unwrap
from .locate import modules_with_non_finite_weights
from .measurements import (Autocast, ClipNorms, GradCarryOver, GradientNorms, GradScalerSteps, InputScale,
                           LargestLogit, LearningRate, Losses, LowPrecisionUpdates, Sample, UnitActivity,
                           UpdateRatio)
from .schedule import Schedule
from .sentinel import NanSentinel, OutputFiniteness
from .stats import Record, SampleRecord, WatchStats, build_stats, merge_records

COMPILED_WARNING = (
    "lossdoctor.watch: the model is compiled (torch.compile), and hooks inside a compiled graph would "
    "break it, so the layers inside are not hooked: dead/saturated units and the module of a first NaN "
    "are not watched. The loss, learning rate, gradients, update ratios, clipping and grad scaler are, "
    "read out every `every` steps{boundary}. Watch the uncompiled model to see inside.")


class _Hook:
    """A hook that forwards to the watch, and turns inert when the module or optimizer is deep-copied
    or pickled (a copy must neither feed this watch nor carry it along), or when Dynamo traces it (a
    model compiled after the watch started: the traced hook does nothing instead of breaking the
    compilation)."""

    __slots__ = ("fn",)

    def __init__(self, fn=None):
        self.fn = fn

    def __call__(self, *args, **kwargs):
        if torch.compiler.is_compiling():
            return None
        fn = self.fn
        return None if fn is None else fn(*args, **kwargs)

    def __deepcopy__(self, memo):
        return _Hook(None)

    def __reduce__(self):
        return (_Hook, ())


def _strict() -> bool:
    return bool(os.environ.get("LOSSDOCTOR_STRICT"))


class ModelAtInit:
    """The model room's evidence for the watch: ``ModelFacts`` of a deep copy of the model, run on the
    first training batch before the first update (so that its initialization is judged), built once
    by ``torch_model_facts`` as the framework callbacks build theirs.

    The batch is the root module's first training forward (positional and keyword inputs; ``labels``
    among the keywords are the targets, as Hugging Face models take them). The targets of a plain
    loop reach only the loss: a loss given as an ``nn.Module`` is observed at its first training call
    (its second argument), which comes after the forward and before the update; the facts are built
    then, or at the first optimizer step, or at once when neither will come. Nothing here touches
    the user's model, RNG or gradients (``inspect_model`` works on a copy under ``fork_rng``).
    """

    def __init__(self, loss_fn, check: bool | str, optimizer=None):
        self.loss_fn = loss_fn
        self.check = check
        self.optimizer = optimizer
        self.facts = None
        self.inputs = self.targets = None
        self.skipped: str | None = None  # why no facts were built (a model that cannot be copied)
        self._batch: tuple[tuple, dict] | None = None
        self.pending = check is not False  # read by the hooks every step: a plain attribute, nothing else
        self._loss_handle = None

    def attach(self, hook) -> None:
        """Observe the loss module's first call (``hook`` forwards to ``on_loss``)."""
        if self.pending and isinstance(self.loss_fn, nn.Module):
            self._loss_handle = self.loss_fn.register_forward_pre_hook(hook, with_kwargs=True)

    def detach(self) -> None:
        handle, self._loss_handle = self._loss_handle, None
        if handle is not None:
            handle.remove()
        self._batch = None
        self.pending = False

    def on_forward(self, model: nn.Module, args: tuple, kwargs: dict) -> None:
        if self._batch is not None:
            return
        self._batch = (args, dict(kwargs))
        if self._loss_handle is None and self.optimizer is None:
            self.build(model)

    def on_loss(self, model: nn.Module, args: tuple, kwargs: dict) -> None:
        if self._batch is None:
            return
        self.targets = kwargs.get("target", args[1] if len(args) > 1 else None)
        self.build(model)

    def before_update(self, model: nn.Module) -> None:
        if self._batch is not None:
            self.build(model)

    def build(self, model: nn.Module) -> None:
        from ..integrations._common import split_batch, torch_model_facts

        (args, kwargs), self._batch = self._batch, None
        self.detach()
        # keyword inputs alone are the batch (model(**batch)); beside positional ones they are options
        sample = (args[0] if len(args) == 1 else args) if args else kwargs
        # a batch the model takes whole (model(**batch), model(batch_dict)) names its inputs and labels;
        # positional tensors are inputs only (model(x, mask) has no targets)
        whole = args[0] if args else kwargs
        inputs, labels = split_batch(whole) if isinstance(whole, Mapping) else (whole, None)
        self.inputs = inputs
        if self.targets is None:
            self.targets = labels
        try:
            self.facts = torch_model_facts(model, sample, self.targets, self.optimizer, self.check, self.loss_fn)
        except InputError as exc:  # a model that cannot be copied or run on a copy: no model evidence
            self.skipped = str(exc)


class Watch:
    """A running watch over one model (and optimizer). Use ``watch(...)`` to create one."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, every: int = 50,
                 tensorboard: str | os.PathLike | None = None, halt_on_nan: bool = False,
                 max_norm: float | None = None, histograms_every: int | None = None,
                 save_last_finite: str | os.PathLike | None = None, nan_check: str = "auto", scaler=None,
                 html: str | os.PathLike | None = None, json: str | os.PathLike | None = None, wandb: bool = True,
                 loss_fn=None, check_model: bool | str = "auto", data: Any = None):
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
        if scaler is not None and not isinstance(scaler, torch.amp.GradScaler):
            raise InputError(f"scaler must be a torch.amp.GradScaler or None, got {type(scaler).__name__}")
        if loss_fn is not None and (isinstance(loss_fn, type) or not callable(loss_fn)):
            raise InputError("loss_fn must be the loss you call (e.g. nn.CrossEntropyLoss() or F.cross_entropy), got "
                             + (f"the class {loss_fn.__name__}" if isinstance(loss_fn, type) else type(loss_fn).__name__))
        if check_model not in (True, False, "auto"):
            raise InputError(f"check_model must be True, False or 'auto', got {check_model!r}")
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler
        self.every = every
        self.tensorboard = os.fspath(tensorboard) if tensorboard is not None else None
        self.halt_on_nan = bool(halt_on_nan)
        self.max_norm = float(max_norm) if max_norm is not None else None
        self.histograms_every = histograms_every
        self.save_last_finite = os.fspath(save_last_finite) if save_last_finite is not None else None
        self.nan_check = nan_check
        self.html, self.json, self.wandb = output_path(html, "html"), output_path(json, "json"), bool(wandb)
        # the training data, checked by the data room once, at the first report (never per step)
        if data is not None and not (isinstance(data, (tuple, list, dict)) or hasattr(data, "__getitem__")
                                     or hasattr(data, "dataset")):
            raise InputError(f"data= must be a DataLoader, a Dataset or (X, y), got {type(data).__name__}")
        self.data, self._data_facts, self._data_notes = data, None, None
        self.step_count = 0
        self._started = False
        self._closed = False
        self._handles: list = []
        self._sample_handles: list = []
        self._history: list[Record] = []
        self._sample: Sample | None = None
        self._pending_samples: list[Sample] = []
        self._window_start = 0
        self._last_loss_step = -1
        self._before_done = -1
        self._closure_loss = None
        self._layer_rank: dict[int, int] = {}
        self._updates_since_scaler = 0
        self._unchecked_skip: int | None = None
        self._world, self._rank = 1, 0
        self._writer = None
        self._schedule = Schedule(every)
        self._checkpoint = LastFinite(self.save_last_finite) if self.save_last_finite else None
        self._losses = Losses()
        self._clips = ClipNorms()
        self._scaler_steps = GradScalerSteps()
        self._lr = LearningRate(optimizer) if optimizer is not None else None
        self._inv: Inventory | None = None
        self._model_at_init = ModelAtInit(loss_fn, check_model, optimizer)

    # ------------------------------------------------------------------------------------------
    # Life cycle

    def __enter__(self) -> "Watch":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close()
        return False

    def start(self) -> "Watch":
        """Attach the hooks. Idempotent; ``with watch(...)`` calls it. A ``tensorboard`` directory that
        cannot be written raises ``InputError`` with nothing attached; any other failure leaves the
        watch inert (reported once) and the training unwatched."""
        if self._started or self._closed:
            return self
        try:
            self._build()
            if self.tensorboard is not None and self._rank == 0:
                from .tensorboard import TensorBoardOutput

                self._writer = TensorBoardOutput(self.tensorboard)
            self._attach()
        except InputError:
            self._detach_all()
            raise
        except Exception as exc:  # noqa: BLE001 - never break the user's training
            self._detach_all()
            self._closed = True
            if _strict():
                raise
            report_internal_error("lossdoctor.watch (start)", exc)
            return self
        self._started = True
        self._safely("arming the first step", self._arm_if_sampled, self.step_count)
        return self

    def close(self) -> None:
        """Remove every hook, stop observing clip_grad_norm_ and GradScaler, flush TensorBoard. Idempotent."""
        if not self._started or self._closed:
            return
        self._closed = True
        self._detach_all(keep_writer=True)
        self._sentinel.last_input = None  # do not keep the user's last batch alive
        self._safely("read-out at close", self._read_out, False)
        if self._writer is not None:
            self._safely("TensorBoard flush", self._writer.close)
            self._writer = None
        self._safely("leaving the report", self._leave_report)

    def _leave_report(self) -> None:
        """At close, on rank 0: the report to the ``html=``/``json=`` files and the active W&B run."""
        from ..integrations._common import active_wandb_run, leave_report

        wandb = self.wandb and active_wandb_run() is not None
        if self._rank == 0 and (self.html or self.json or wandb):
            leave_report(self.report(), html=self.html, json=self.json, wandb=wandb)

    def _build(self) -> None:
        self._root, self._wrapper = unwrap(self.model)
        self._inv = inv = Inventory.of(self._root)
        dist = torch.distributed
        self._world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self._rank = dist.get_rank() if self._world > 1 else 0
        self._immediate = self.halt_on_nan or self.nan_check == "step" or (
            self.nan_check == "auto" and inv.device.type == "cpu")
        self._sentinel = NanSentinel(inv, self._immediate)
        # The modules whose hooks run outside a compiled graph: the compile wrapper only, or none when
        # the root itself was compiled in place (its own hooks are traced with it).
        self._compiled = self._wrapper is not None or compiled_in_place(self._root)
        if self._wrapper is not None:
            self._hook_root, self._forward_targets = self._wrapper, [self._wrapper]
        elif self._compiled:
            self._hook_root, self._forward_targets = None, []
        else:
            self._hook_root, self._forward_targets = self._root, None  # None: every module, armed per step
        if self._compiled:
            boundary = "; the logits and the inputs at the compiled module's boundary" if self._wrapper else ""
            warnings.warn(COMPILED_WARNING.format(boundary=boundary), UserWarning, stacklevel=4)
        self._grad_norms = GradientNorms(inv)
        update_ratio = UpdateRatio(inv)
        self._logit = LargestLogit(inv)
        carry = GradCarryOver(inv)
        self._measures = [self._grad_norms, update_ratio, LowPrecisionUpdates(inv, update_ratio), UnitActivity(inv),
                          self._logit, InputScale(inv, compiled=self._compiled), Autocast(inv), carry]
        if not self._immediate:
            self._measures.append(OutputFiniteness(inv))
        self._forward_measures = [m for m in self._measures if m.uses_forward]
        self._update_measures = [self._grad_norms, update_ratio, carry]

    def _attach(self) -> None:
        if self._hook_root is not None:
            self._handles.append(self._hook_root.register_forward_pre_hook(_Hook(self._hook_root_pre), with_kwargs=True))
        if self.optimizer is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(_Hook(self._hook_pre_step)))
            self._handles.append(self.optimizer.register_step_post_hook(_Hook(self._hook_post_step)))
        self._model_at_init.attach(_Hook(self._hook_loss_pre))
        clipping.attach(self)
        amp.attach(self)

    def _detach_all(self, keep_writer: bool = False) -> None:
        """Remove every hook and patch; each part runs whatever failed before it."""
        try:
            self._disarm()
            self._model_at_init.detach()
            for h in self._handles:
                h.remove()
            self._handles.clear()
        finally:
            try:
                clipping.detach(self)
            finally:
                amp.detach(self)
                if self._writer is not None and not keep_writer:
                    self._safely("closing TensorBoard", self._writer.close)
                    self._writer = None

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
        inv = self._inventory()
        history = list(self._history)
        if self._started and not self._closed:
            history.append(self._make_record(clear=False))
        layer_order = self._layer_order()
        return build_stats(
            history, steps=self.step_count, every=self.every, layers=[inv.layer_names[i] for i in layer_order],
            weight_layers=[inv.weight_layer[i] for i in layer_order], layer_order=layer_order,
            non_finite_weights=modules_with_non_finite_weights(inv.root) if self._started else [],
            declared_max_norm=self.max_norm, has_batchnorm=inv.has_batchnorm,
            histograms=self.histograms_every is not None, world_size=self._world,
            meta={"nan_check": "every step" if getattr(self, "_immediate", False) else "at read-out",
                  "rank": self._rank, "compiled": bool(getattr(self, "_compiled", False))},
            low_precision_dtypes=inv.low_precision_dtypes(),
        )

    def report(self):
        """The read-out now: the verdict of the loss curve, the findings, and the plot data."""
        return self._build_report()

    def run_facts(self, framework: str = "pytorch"):
        """What this watch knows of the run itself: optimizer, rate, clip, dropout, and what the first
        batch and the loss show (the task, the inputs, the loss's kind) (for the checks)."""
        from ..evidence import RunFacts
        from ..integrations._common import batch_facts

        seen = self._model_at_init
        known = batch_facts(seen.inputs, seen.targets)
        if seen.facts is not None and seen.facts.loss.kind not in (None, "other"):
            known["loss"] = seen.facts.loss.kind
        return RunFacts.of_torch(framework, self._inventory().root, self.optimizer, self.max_norm, **known)

    def evidence(self, curves=None, run=None):
        """The Evidence of this watch: its loss curve and learning rate (or ``curves``, e.g. a
        framework's logged curves), their analysis, the read-out statistics and the run's facts."""
        from ..curves import judge
        from ..evidence import LEARNING_RATE, TRAIN_LOSS, Curves
        from ..registry import Evidence

        stats = self.stats()
        if curves is None:
            curves = Curves(run="watch", source="lossdoctor.watch", meta={"format": "watch"})
            if stats.loss_steps.size:
                curves.add(TRAIN_LOSS, stats.loss_steps, stats.loss_values)
                if stats.lr_steps.size:
                    at = np.clip(np.searchsorted(stats.lr_steps, stats.loss_steps, side="right") - 1, 0, None)
                    curves.add(LEARNING_RATE, stats.loss_steps, stats.lr_values[at])
        if run is None:
            run = self.run_facts()
            if run.num_classes is None and stats.num_classes:
                run = replace(run, num_classes=stats.num_classes)
        analysis = judge(curves) if curves.series else None
        return Evidence(curves=curves, analysis=analysis, stats=stats, run=run, model=self._model_at_init.facts,
                        data=self._training_data())

    def _training_data(self):
        """The DataFacts of ``data=`` (a seeded, bounded sample, read once; None without data)."""
        if self.data is not None and self._data_notes is None:
            from ..integrations._common import training_data_facts

            self._data_notes = []
            self._data_facts = training_data_facts(self.data, self._data_notes)
        return self._data_facts

    def _build_report(self, curves=None, run=None, source: str = "lossdoctor.watch", metadata=None, extra=()):
        from ..assemble import build_report
        from .stats import stats_plots

        evidence = self.evidence(curves, run)
        stats = evidence.stats
        meta = {"steps": stats.steps, "every": self.every, "instrumented_steps": len(stats.sample_steps),
                "world_size": stats.world_size, "nan_check": stats.meta["nan_check"], **(metadata or {})}
        if self._model_at_init.skipped:
            meta["model_check_skipped"] = self._model_at_init.skipped
        if self.data is not None:
            from ..integrations._common import data_metadata

            meta["data"] = data_metadata(self._data_facts, self._data_notes or [])
        return build_report(evidence, source=source, metadata=meta, plots=stats_plots(stats), extra=extra)

    def findings(self):
        return self.report().findings

    # ------------------------------------------------------------------------------------------
    # Layers

    def _inventory(self) -> Inventory:
        if self._inv is None:  # never started: an empty read-out of this model
            self._inv = Inventory.of(unwrap(self.model)[0])
        return self._inv

    def _layer_order(self) -> list[int]:
        n = len(self._inventory().layer_names)
        return sorted(range(n), key=lambda i: (self._layer_rank.get(i, n + i)))

    def _layer_names_in_order(self) -> list[str]:
        return [self._inv.layer_names[i] for i in self._layer_order()]

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
        if torch.is_grad_enabled():  # a training forward (a validation pass is not the step measured)
            self._safely("forward pre-hook", self._sentinel.keep_input, args, kwargs)
            if self._model_at_init.pending:
                self._safely("inspecting the model at init", self._model_at_init.on_forward, self._root, args, kwargs)
        return None

    def _hook_loss_pre(self, module, args, kwargs):
        if torch.is_grad_enabled():
            self._safely("inspecting the model at init", self._model_at_init.on_loss, self._root, args, kwargs)
        return None

    def _hook_pre_step(self, optimizer, args, kwargs):
        # the optimizer's step wrapper passes (optimizer, *step_args): the closure is args[1]
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if callable(closure):
            # optimizer.step(closure) (Lightning, LBFGS): the gradients exist only once the closure ran,
            # so the checks run right after it, still before the update.
            def watched_closure():
                result = closure()
                self._safely("after the closure", self._after_closure, result)
                return result

            if "closure" in kwargs:
                return args, {**kwargs, "closure": watched_closure}
            return (args[0], watched_closure, *args[2:]), kwargs
        self._safely("before the optimizer step", self._before_update)
        return None

    def _after_closure(self, result) -> None:
        # the closure's loss joins the NaN check: an Inf loss (an overflowing square) can still give
        # finite gradients, and only the next step's would show it
        if isinstance(result, torch.Tensor) and result.is_floating_point():
            self._closure_loss = result.detach()
        if self._before_done != self.step_count:
            self._before_update()

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
        if not self._closed:
            self._safely("observing clip_grad_norm_", self._clips.record, self.step_count, total_norm, max_norm)

    def _on_scaler_update(self, scaler, took_part: bool, found_inf: list) -> None:
        if self._started and not self._closed:
            self._safely("observing GradScaler.update", self._scaler_update, scaler, took_part, found_inf)

    # ------------------------------------------------------------------------------------------
    # Per-step work

    def _record_loss(self, loss) -> None:
        if self.optimizer is not None and self.step_count > 0 and self._last_loss_step < self.step_count - 1:
            index = self.step_count - 1  # called after optimizer.step(): the loss of the step just taken
        else:
            index = self.step_count
        self._last_loss_step = index
        self._losses.record(index, loss)
        if self._unchecked_skip == index:
            self._unchecked_skip = None
            if self._sentinel.loss_is_non_finite(loss):
                self._on_first_non_finite(index, weights_updated=False)

    def _before_update(self) -> None:
        if self._model_at_init.pending:
            self._safely("inspecting the model at init", self._model_at_init.before_update, self._root)
        step = self._before_done = self.step_count
        loss, self._closure_loss = self._closure_loss, None
        if self._sentinel.check_before_update(step, loss):
            self._on_first_non_finite(step, weights_updated=False)
        sample = self._sample
        if sample is not None:
            for m in self._update_measures:
                m.before_update(sample)
        if self.histograms_every is not None and step % self.histograms_every == 0 and self._writer is not None:
            self._writer.write_histograms(self._inv.params, self._inv.param_names, step)

    def _after_update(self) -> None:
        self._updates_since_scaler += 1
        sample = self._sample
        if sample is not None:
            for m in self._measures:
                m.after_update(sample)
        self._lr.record(self.step_count)
        self._end_of_step()

    def _step_without_optimizer(self) -> None:
        step = self.step_count
        if self._sentinel.check_without_optimizer(step, self._losses.latest(step)):
            self._on_first_non_finite(step, weights_updated=True)
        if self._sample is not None:
            self._grad_norms.before_update(self._sample)
        self._end_of_step()

    def _scaler_update(self, scaler, took_part: bool, found_inf: list) -> None:
        """The end of a float16 iteration. A scaler that skipped the optimizer step (a gradient
        overflowed) still ends the iteration: the step is counted, and on the CPU a non-finite loss
        of that step (the forward itself overflowed, not only the scaled gradients) is located.
        Without an optimizer (a declared ``scaler=``) the steps are ``step()``'s and the skip is the
        scaler's own overflow flag, read at the read-out."""
        if not (took_part or scaler is self.scaler) or not scaler.is_enabled():
            return
        if self.optimizer is None:
            flag = torch.stack([f.detach().float().reshape(()) for f in found_inf]).sum() if found_inf else False
            self._scaler_steps.record(self.step_count, flag, getattr(scaler, "_scale", None),
                                      keep_scale=self._schedule.instrumented(self.step_count))
            return
        skipped = self._updates_since_scaler == 0
        self._updates_since_scaler = 0
        step = self.step_count if skipped else self.step_count - 1
        self._scaler_steps.record(step, skipped, getattr(scaler, "_scale", None),
                                  keep_scale=self._schedule.instrumented(step))
        if not skipped:
            return
        loss = self._losses.latest(step)
        if loss is None:
            self._unchecked_skip = step  # the loss arrives with doctor.step(loss) after the update
        elif self._sentinel.loss_is_non_finite(loss):
            self._on_first_non_finite(step, weights_updated=False)
        self._end_of_step()

    def _on_first_non_finite(self, step: int, weights_updated: bool) -> None:
        origin = self._sentinel.locate(step, weights_updated, self._layer_names_in_order(),
                                       self._logit.latest(self._pending_samples))
        origin["rank"] = self._rank
        if self._checkpoint is not None and not weights_updated:
            self._checkpoint.save_now(step, self._root, self.optimizer, self._inv.params)
        if self.halt_on_nan:
            from .checks import non_finite_finding

            raise TrainingHalted(non_finite_finding(origin, self.step_count))

    def _end_of_step(self) -> None:
        sample = self._sample
        if sample is not None:
            try:
                self._safely("end of the instrumented step", self._end_sample, sample)
            finally:
                self._pending_samples.append(sample)
                self._disarm()
        self.step_count += 1
        if self._schedule.read_out_due(self.step_count):
            self._safely("read-out", self._read_out, True)
        self._arm_if_sampled(self.step_count)

    def _end_sample(self, sample: Sample) -> None:
        for m in self._measures:
            m.end_sample(sample)
        for layer in sample.order:
            self._layer_rank.setdefault(layer, len(self._layer_rank))

    # ------------------------------------------------------------------------------------------
    # Instrumented steps

    def _arm_if_sampled(self, step: int) -> None:
        if self._closed or not self._schedule.instrumented(step):
            return
        self._sample = sample = Sample(step=step)
        if self.optimizer is not None:  # the gradient an optimizer step applies (no step without one)
            for m in self._measures:
                m.arm(sample)
        targets = self._root.modules() if self._forward_targets is None else self._forward_targets
        for module in targets:
            self._sample_handles.append(module.register_forward_hook(_Hook(self._hook_forward)))

    def _disarm(self) -> None:
        for h in self._sample_handles:
            h.remove()
        self._sample_handles.clear()
        sample, self._sample = self._sample, None
        if sample is not None:
            for m in self._measures:
                m.disarm(sample)

    def _on_forward(self, module, args, output) -> None:
        is_root = module is self._hook_root
        info = self._inv.modules.get(id(self._root if is_root else module))
        if info is None:
            return
        sample = self._sample
        if info.layer >= 0:
            if info.layer not in sample.order:
                sample.order.append(info.layer)
            sample.last_conv = info.is_conv
        for m in self._forward_measures:
            m.on_forward(sample, module, info, args, output, is_root)

    # ------------------------------------------------------------------------------------------
    # Read-out

    def _make_record(self, clear: bool) -> Record:
        record = Record(rank=self._rank)
        for window in (self._losses, self._sentinel, self._clips, self._scaler_steps):
            window.read_window(record, clear)
        if self._lr is not None:
            self._lr.read_window(record, clear)
        samples = self._pending_samples
        if clear:
            self._pending_samples = []
        record.samples = [self._sample_record(s) for s in samples]
        return record

    def _sample_record(self, sample: Sample) -> SampleRecord:
        record = SampleRecord(step=sample.step)
        for m in self._measures:
            m.read_sample(sample, record)
        return record

    def _read_out(self, collective: bool) -> None:
        if self.optimizer is None:
            self._safely("checking the weights", self._sentinel.check_weights, self._window_start, self.step_count,
                         self._rank)
        self._window_start = self.step_count
        # a rank whose record failed still enters the collective (with an empty record): a rank that
        # skipped it would hang the others
        record = self._safely("read-out", self._make_record, True) or Record(rank=self._rank)
        if collective and self._world > 1:
            gathered: list[Any] = [None] * self._world
            torch.distributed.all_gather_object(gathered, record)
            record = merge_records(gathered)
        self._history.append(record)
        self._safely("after the read-out", self._after_read_out, record)

    def _after_read_out(self, record: Record) -> None:
        non_finite = bool(record.bad_steps) or record.origin is not None or not np.isfinite(record.loss_values).all()
        if self._checkpoint is not None:
            self._checkpoint.after_read_out(self.step_count, self._root, non_finite)
        self._schedule.after_read_out(record, self.step_count, non_finite)
        if self._writer is not None:
            self._writer.write_record(record, self._inv.layer_names)


def watch(model: nn.Module, optimizer: torch.optim.Optimizer | None = None, every: int = 50,
          tensorboard: str | os.PathLike | None = None, halt_on_nan: bool = False, max_norm: float | None = None,
          histograms_every: int | None = None, save_last_finite: str | os.PathLike | None = None,
          nan_check: str = "auto", scaler=None, html: str | os.PathLike | None = None,
          json: str | os.PathLike | None = None, wandb: bool = True, loss_fn=None,
          check_model: bool | str = "auto", data: Any = None) -> Watch:
    """Watch a training run: ``with lossdoctor.watch(model, optimizer) as doctor: ...``.

    ``every``: steps between read-outs (one step in ``every`` is instrumented in full).
    ``tensorboard``: a log directory for scalars (and histograms with ``histograms_every``).
    ``halt_on_nan``: raise ``TrainingHalted`` (carrying the finding) before the optimizer applies the
    first NaN/Inf gradient; reads one flag from the device every step (a sync on accelerators).
    ``max_norm``: the clip threshold, when clipping is not done through torch.nn.utils.clip_grad_norm_.
    ``save_last_finite``: a path; when the first NaN/Inf appears, the last finite weights are saved there.
    ``nan_check``: "auto" (every step on CPU, at read-out on accelerators), "step" or "readout".
    ``scaler``: the ``torch.amp.GradScaler`` of a float16 run, when the watch cannot tell it is the
    optimizer's (without an optimizer); a scaler stepping the watched optimizer is found on its own.
    ``html`` / ``json``: paths the report is written to at ``close()`` (the end of the ``with`` block).
    ``wandb``: at ``close()``, write the findings to the active Weights & Biases run, if any.
    ``check_model``: inspect the model once, on a deep copy run on the first training batch before the
    first update, for the model checks (the output layer against the loss and the targets, the
    initialization, the regularization): "auto" up to 100 million parameters, True, or False.
    ``loss_fn``: the loss you apply to the model's output (``nn.CrossEntropyLoss()``,
    ``F.cross_entropy``, ...). The watch cannot see it otherwise, and without it an output layer that
    does not fit the loss (a softmax before ``CrossEntropyLoss``) is not judged. A loss module is also
    observed at its first training call, for the targets (a plain loop passes them only to the loss;
    ``labels`` passed to the model are seen without it). Not needed when the model computes its loss.
    ``data``: the training data (a DataLoader, a Dataset or ``(X, y)``). At the first report (never
    per step) a seeded sample of at most 4,000 rows is read by index, through the loader's collate
    function (its sampler and iterators untouched, the global RNGs restored), and goes through the
    data room's checks: no signal, label noise, class imbalance, scales, NaN/Inf (a few seconds of CPU).
    Call ``start()`` yourself when not using ``with``; ``close()`` removes every hook.
    """
    return Watch(model, optimizer, every=every, tensorboard=tensorboard, halt_on_nan=halt_on_nan,
                 max_norm=max_norm, histograms_every=histograms_every, save_last_finite=save_last_finite,
                 nan_check=nan_check, scaler=scaler, html=html, json=json, wandb=wandb, loss_fn=loss_fn,
                 check_model=check_model, data=data)
