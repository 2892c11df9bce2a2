"""The monitor's measurements: one small class per quantity, each with its own state and its own cost.

The ``Watch`` decides when each runs (every step, or only on an instrumented step) and reads them
out; a measurement only measures. Two kinds:

- **per-step** measurements (the loss, the learning rate, gradient clipping, the AMP grad scaler,
  and the NaN sentinel in ``sentinel.py``) run on every step, so they keep references or Python
  numbers only: no reduction and no host synchronisation;
- **instrumented** measurements run on one step in ``every`` (and on escalated steps): they see the
  forward pass through hooks that exist only during that step, the gradients before the update
  and the weights after it. Their device work is tensor arithmetic that stays on the device; each
  ``read_sample`` converts it to numpy at the read-out.

Each class states its cost as ``hot path`` (every step), ``instrumented`` and ``read-out``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .locate import tensors_in
from .stats import InputMoments, Record, SampleRecord

if TYPE_CHECKING:
    from .inventory import Inventory, ModuleInfo

# A sigmoid output within this margin of 0 or 1 (tanh: of -1 or 1) passes back less than 4% (tanh 2%)
# of the gradient it would pass at its centre: the unit is saturated.
SATURATION_MARGIN = 0.01


@dataclass
class Sample:
    """One instrumented step: the layers in the order their forward calls finished, and each
    instrumented measurement's device-side state under its key."""

    step: int
    order: list[int] = field(default_factory=list)
    last_conv: bool = False  # whether the last parameter-owning layer called was a convolution
    states: dict[str, Any] = field(default_factory=dict)


class Instrumented:
    """A measurement taken on instrumented steps only. Every method is a no-op by default."""

    key = ""
    uses_forward = False  # whether ``on_forward`` needs the per-module forward hooks

    def __init__(self, inventory: "Inventory") -> None:
        self.inv = inventory

    def arm(self, sample: Sample) -> None:
        """The instrumented step is about to begin (the previous optimizer step just ended)."""

    def disarm(self, sample: Sample) -> None:
        """The instrumented step ended, or the watch closed: remove whatever ``arm`` attached."""

    def on_forward(self, sample: Sample, module, info: "ModuleInfo", args, output, is_root: bool) -> None:
        """A module's forward call finished (training forwards of the instrumented step only)."""

    def before_update(self, sample: Sample) -> None:
        """The gradients are final, the optimizer has not applied them."""

    def after_update(self, sample: Sample) -> None:
        """The optimizer applied the update."""

    def end_sample(self, sample: Sample) -> None:
        """The step is over: reduce what was kept by reference, drop what is no longer needed."""

    def read_sample(self, sample: Sample, record: SampleRecord) -> None:
        """At read-out: device data to numpy, into the sample's record."""


# ------------------------------------------------------------------------------------------------
# Instrumented measurements


class GradientNorms(Instrumented):
    """Per-layer gradient norms before the update.

    Instrumented: one ``_foreach_norm`` over the present gradients (device). Read-out: the per-layer
    root of summed squares and the total norm, in numpy."""

    key = "grad_norms"

    def before_update(self, sample: Sample) -> None:
        params = self.inv.params
        index = [i for i, p in enumerate(params) if p.grad is not None]
        if index:
            norms = self.inv.stack(torch._foreach_norm([params[i].grad.detach() for i in index]))
            sample.states[self.key] = (index, norms)

    def read_sample(self, sample: Sample, record: SampleRecord) -> None:
        n_layers = len(self.inv.layer_names)
        record.grad_norms = np.full(n_layers, np.nan)
        state = sample.states.get(self.key)
        if state is None:
            return
        index, norms = state
        norms = norms.cpu().numpy().astype(np.float64)
        layer = self.inv.param_layer[index]
        squares = np.zeros(n_layers)
        np.add.at(squares, layer, norms ** 2)
        present = np.zeros(n_layers, dtype=bool)
        present[layer] = True
        record.grad_norms = np.where(present, np.sqrt(squares), np.nan)
        record.total_grad_norm = float(np.sqrt(np.sum(norms ** 2)))


class GradCarryOver(Instrumented):
    """Whether the gradient an update applies still holds the previous step's: a loop that never calls
    ``optimizer.zero_grad()`` applies the sum of every gradient so far, a step that grows with time.

    Armed: a copy of the previous step's gradient of one small parameter (the NaN sentinel's) and a
    tensor hook on it that sums what this step's backward passes add (one per micro-batch under
    gradient accumulation), removed when the step ends. Before the update: four norms (device).
    Read-out: four floats. Without zero_grad the gradient minus this step's backward passes is the
    previous gradient, exactly; zeroed, it is 0. A clip or a grad scaler that rescales the gradient in
    place makes it neither, and nothing is concluded."""

    key = "grad_carry"

    def arm(self, sample: Sample) -> None:
        param = next((p for p in self.inv.sentinels if p.requires_grad), None)
        if param is None or param.grad is None:
            return
        state: dict[str, Any] = {"param": param, "previous": param.grad.detach().clone(), "added": None}

        def add(grad: torch.Tensor) -> None:
            if not torch.compiler.is_compiling():
                state["added"] = grad.detach().clone() if state["added"] is None else state["added"] + grad.detach()

        state["handle"] = param.register_hook(add)
        sample.states[self.key] = state

    def before_update(self, sample: Sample) -> None:
        state = sample.states.get(self.key)
        if state is None or state["added"] is None or state["param"].grad is None:
            return
        grad, added, previous = state["param"].grad.detach(), state["added"], state["previous"]
        if grad.shape != added.shape or grad.shape != previous.shape:
            return
        carried = grad.float() - added.float()
        state["norms"] = torch.stack([torch.linalg.vector_norm(carried - previous.float()),
                                      torch.linalg.vector_norm(previous.float()),
                                      torch.linalg.vector_norm(carried), torch.linalg.vector_norm(added.float())])

    def disarm(self, sample: Sample) -> None:
        state = sample.states.get(self.key)
        if state is None:
            return
        handle = state.pop("handle", None)
        if handle is not None:
            handle.remove()
        for name in ("param", "previous", "added"):  # nothing of the user's kept past the step
            state.pop(name, None)

    def read_sample(self, sample: Sample, record: SampleRecord) -> None:
        state = sample.states.get(self.key)
        if state is not None and "norms" in state:
            record.grad_carry = tuple(float(v) for v in state["norms"].cpu().tolist())


class UpdateRatio(Instrumented):
    """||dW|| / ||W|| per layer: how much one update changes each layer.

    Instrumented: a copy of the parameters before the update (skipped above
    ``UPDATE_RATIO_MAX_ELEMENTS``), one ``_foreach_sub`` and two ``_foreach_norm`` after it (device).
    The copy lives until the end of the step (``LowPrecisionUpdates`` reads it). Read-out: per-layer
    ratios in numpy."""

    key = "update_ratio"

    def before_update(self, sample: Sample) -> None:
        if self.inv.update_ratio_ok and self.inv.params:
            sample.states[self.key] = {"before": [p.detach().clone() for p in self.inv.params]}

    def after_update(self, sample: Sample) -> None:
        state = sample.states.get(self.key)
        if state is None or "before" not in state:
            return
        current = [p.detach() for p in self.inv.params]
        state["diff"] = self.inv.stack(torch._foreach_norm(torch._foreach_sub(current, state["before"])))
        state["weight"] = self.inv.stack(torch._foreach_norm(state["before"]))

    def before_copy(self, sample: Sample) -> list[torch.Tensor] | None:
        state = sample.states.get(self.key)
        return None if state is None else state.get("before")

    def end_sample(self, sample: Sample) -> None:
        state = sample.states.get(self.key)
        if state is not None:
            state.pop("before", None)  # the copy of the weights: not kept past the step

    def read_sample(self, sample: Sample, record: SampleRecord) -> None:
        state = sample.states.get(self.key)
        if state is None or "diff" not in state:
            return
        n_layers = len(self.inv.layer_names)
        diff = state["diff"].cpu().numpy().astype(np.float64)
        weight = state["weight"].cpu().numpy().astype(np.float64)
        d2, w2 = np.zeros(n_layers), np.zeros(n_layers)
        np.add.at(d2, self.inv.param_layer, diff ** 2)
        np.add.at(w2, self.inv.param_layer, weight ** 2)
        with np.errstate(all="ignore"):
            record.update_ratios = np.where(w2 > 0, np.sqrt(d2) / np.sqrt(w2), np.nan)


class LowPrecisionUpdates(Instrumented):
    """Weights kept in bfloat16/float16 that an update leaves unchanged: an update smaller than half
    the spacing of representable values around a weight rounds back to the same weight.

    Costs nothing for float32 weights (the usual case, autocast included: autocast keeps the weights
    in float32). Instrumented, for low-precision weights only: per parameter, the share of elements
    with a non-zero gradient whose value the update did not change (compared with the copy
    ``UpdateRatio`` keeps; device). Read-out: per layer, the element-weighted share."""

    key = "low_precision"

    def __init__(self, inventory: "Inventory", update_ratio: UpdateRatio) -> None:
        super().__init__(inventory)
        self.update_ratio = update_ratio

    def after_update(self, sample: Sample) -> None:
        index = self.inv.low_precision
        before = self.update_ratio.before_copy(sample) if index else None
        if before is None:
            return
        moving, unchanged = [], []
        for i in index:
            p = self.inv.params[i]
            if p.grad is None:
                continue
            meant_to_move = p.grad.detach() != 0
            moving.append(meant_to_move.sum())
            unchanged.append((meant_to_move & (p.detach() == before[i])).sum())
        if moving:
            sample.states[self.key] = ([i for i in index if self.inv.params[i].grad is not None],
                                       self.inv.stack(moving), self.inv.stack(unchanged))

    def read_sample(self, sample: Sample, record: SampleRecord) -> None:
        state = sample.states.get(self.key)
        if state is None:
            return
        index, moving, unchanged = state
        moving, unchanged = moving.cpu().numpy(), unchanged.cpu().numpy()
        per_layer: dict[str, list[float]] = {}
        for i, m, u in zip(index, moving, unchanged):
            totals = per_layer.setdefault(self.inv.layer_names[self.inv.param_layer[i]], [0.0, 0.0])
            totals[0] += float(m)
            totals[1] += float(u)
        record.stalled = {layer: u / m for layer, (m, u) in per_layer.items() if m > 0}


class UnitActivity(Instrumented):
    """Per unit of each ReLU layer: active on some example of the batch; per unit of each sigmoid/tanh
    layer: saturated (within ``SATURATION_MARGIN`` of a bound) on every example.

    Instrumented: one reduction over each activation's output to a per-unit mask (device).
    Read-out: the masks as numpy booleans."""

    key = "units"
    uses_forward = True

    def on_forward(self, sample: Sample, module, info: "ModuleInfo", args, output, is_root: bool) -> None:
        if info.kind is None:
            return
        outs = tensors_in(output)
        if not outs or outs[0].dim() == 0:
            return
        out = outs[0].detach()
        state = sample.states.setdefault(self.key, {"calls": {}, "masks": {}})
        calls = state["calls"].get(id(module), 0)
        state["calls"][id(module)] = calls + 1
        key = info.name if calls == 0 else f"{info.name}#{calls + 1}"
        unit_dim = 1 if out.dim() == 2 or sample.last_conv else out.dim() - 1
        others = tuple(d for d in range(out.dim()) if d != unit_dim)  # reduce in place of a transposed copy
        if info.kind == "relu":
            mask = out.amax(dim=others) > 0  # active on some example/position
        elif info.kind == "sigmoid":
            mask = (out - 0.5).abs().amin(dim=others) > 0.5 - SATURATION_MARGIN  # saturated everywhere
        else:
            mask = out.abs().amin(dim=others) > 1 - SATURATION_MARGIN
        state["masks"][key] = (info.kind if info.kind == "relu" else "saturated " + info.kind, mask)

    def read_sample(self, sample: Sample, record: SampleRecord) -> None:
        state = sample.states.get(self.key)
        if state is not None:
            record.units = {k: (kind, mask.cpu().numpy().astype(bool)) for k, (kind, mask) in state["masks"].items()}


def logits_in(output) -> torch.Tensor | None:
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


class LargestLogit(Instrumented):
    """The largest |logit| of the model's output, its dtype (the exp overflow limit depends on it) and
    the output layer that produced it.

    Instrumented: a reference to the root's output (or, when the root is never called, e.g. a
    LightningModule's training_step calls its submodules, the last classifier-shaped output of the
    step), reduced once at the end of the step (device). Read-out: one float."""

    key = "logit"
    uses_forward = True

    def on_forward(self, sample: Sample, module, info: "ModuleInfo", args, output, is_root: bool) -> None:
        state = sample.states.setdefault(self.key, {"from_root": False})
        if not is_root and state["from_root"]:
            return
        logits = logits_in(output)
        if logits is not None:
            state.update(out=logits, from_root=is_root,
                         layer=self.inv.layer_names[sample.order[-1]] if sample.order else info.name)

    def end_sample(self, sample: Sample) -> None:
        state = sample.states.get(self.key)
        if state is not None and "out" in state:
            out = state.pop("out")
            state.update(absmax=out.detach().abs().amax(), dtype=str(out.dtype), classes=int(out.shape[-1]))

    def read_sample(self, sample: Sample, record: SampleRecord) -> None:
        state = sample.states.get(self.key)
        if state is not None and "absmax" in state:
            record.logit_absmax = float(state["absmax"])
            record.logit_dtype, record.logit_layer, record.logit_classes = state["dtype"], state["layer"], state["classes"]

    def latest(self, samples: list[Sample]) -> float | None:
        """The largest logit of the most recent instrumented step that measured one (read now)."""
        for sample in reversed(samples):
            state = sample.states.get(self.key)
            if state is not None and "absmax" in state:
                return float(state["absmax"])
        return None


class InputScale(Instrumented):
    """The scale of the inputs as the network sees them: per feature, the sum, sum of squares and
    largest |value| of what the first parameter-owning layer received (its floating-point input;
    for an embedding, whose input is token ids, its output). Features are the channels of a
    convolution's input and the last axis otherwise. A first layer that normalizes (batch/layer/
    group norm) is the model normalizing its own inputs: nothing is measured then.

    Instrumented: three reductions over that one input tensor (device). Read-out: three numpy
    vectors (summed over instrumented steps by ``build_stats``)."""

    key = "inputs"
    uses_forward = True

    def __init__(self, inventory: "Inventory", compiled: bool = False) -> None:
        super().__init__(inventory)
        self.compiled = compiled  # only the compiled wrapper is hooked: its input is the model's

    def on_forward(self, sample: Sample, module, info: "ModuleInfo", args, output, is_root: bool) -> None:
        # The root's forward ends after its layers': it measures only when no layer did, i.e. when the
        # model's layers are not called as torch modules (a compiled graph, or Keras 3 on torch, whose
        # weights sit in one ParameterDict): its own input is then what the network sees.
        if self.key in sample.states or not (info.layer >= 0 or is_root):
            return
        sample.states[self.key] = None  # the first layer only, whatever it holds
        if info.is_normalization and not is_root:
            return
        ins = [t for t in _all_tensors(args)]
        if ins and ins[0].is_floating_point():
            x, kind = ins[0], "features"
        elif info.is_embedding and tensors_in(output):
            x, kind = tensors_in(output)[0], "embedding output"
        else:
            return
        x = x.detach()
        if x.dim() == 0 or x.numel() == 0:
            return
        feature_dim = 1 if x.dim() > 2 and (info.is_conv or (self.compiled and x.dim() == 4)) else x.dim() - 1
        others = tuple(d for d in range(x.dim()) if d != feature_dim)
        x = x.float()
        rows = x.numel() / x.shape[feature_dim]
        sample.states[self.key] = (info.name if not is_root else "model input", kind, rows,
                                   x.sum(dim=others), (x * x).sum(dim=others), x.abs().amax(dim=others))

    def read_sample(self, sample: Sample, record: SampleRecord) -> None:
        state = sample.states.get(self.key)
        if state is None:
            return
        layer, kind, rows, sums, squares, absmax = state
        record.inputs = InputMoments(layer, kind, float(rows), *(t.cpu().double().numpy()
                                                                  for t in (sums, squares, absmax)))


def _all_tensors(obj, depth: int = 0) -> list[torch.Tensor]:
    """Every tensor (floating or integer) in a nested tuple/list/dict, a few levels deep."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if depth > 3:
        return []
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _all_tensors(item, depth + 1)]
    return []


class Autocast(Instrumented):
    """The autocast dtype of the instrumented step's forward pass (a Python read, at the root)."""

    key = "autocast"
    uses_forward = True

    def __init__(self, inventory: "Inventory") -> None:
        super().__init__(inventory)
        self.device_type = inventory.device.type

    def on_forward(self, sample: Sample, module, info: "ModuleInfo", args, output, is_root: bool) -> None:
        if self.key not in sample.states:
            sample.states[self.key] = autocast_state(self.device_type)

    def read_sample(self, sample: Sample, record: SampleRecord) -> None:
        state = sample.states.get(self.key)
        if state:
            record.autocast = str(state["dtype"])


def autocast_state(device_type: str) -> dict | None:
    try:
        if torch.is_autocast_enabled(device_type):
            return {"enabled": True, "device_type": device_type, "dtype": torch.get_autocast_dtype(device_type)}
    except (TypeError, RuntimeError):
        return None
    return None


# ------------------------------------------------------------------------------------------------
# Per-step measurements: a reference or a Python number per step, converted at read-out


class Losses:
    """The loss handed to ``doctor.step(loss)``. Hot path: a reference to the detached loss (a
    Python float when given one). Read-out: one device-to-host transfer for the window."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, Any]] = []

    def record(self, index: int, loss) -> None:
        if isinstance(loss, torch.Tensor):
            value = loss.detach()
            if value.numel() != 1:
                value = value.float().mean()
        else:
            value = float(loss)
        self.pending.append((index, value))

    def latest(self, step: int):
        return self.pending[-1][1] if self.pending and self.pending[-1][0] == step else None

    def read_window(self, record: Record, clear: bool) -> None:
        pending = self.pending
        if clear:
            self.pending = []
        record.loss_steps = np.array([i for i, _ in pending], dtype=np.int64)
        record.loss_values = to_numpy([v for _, v in pending])


class LearningRate:
    """The optimizer's learning rate (the largest over its parameter groups), recorded where it
    changes. Hot path: reading the param groups' ``lr`` (Python floats) after each update; a tensor
    rate is kept by reference. Read-out: numpy."""

    def __init__(self, optimizer) -> None:
        self.optimizer = optimizer
        self.pending: list[tuple[int, Any]] = []
        self.last: float | None = None

    def record(self, step: int) -> None:
        groups = self.optimizer.param_groups
        rate = groups[0].get("lr") if len(groups) == 1 else None
        if rate.__class__ is not float:  # several groups, or a tensor rate: the general path
            rates = [g.get("lr") for g in groups if g.get("lr") is not None]
            tensors = [r for r in rates if isinstance(r, torch.Tensor)]
            if tensors:  # kept on its device until the read-out
                device = tensors[0].device
                self.pending.append((step, torch.stack([torch.as_tensor(r, dtype=torch.float32, device=device)
                                                        .detach() for r in rates]).max()))
                return
            rate = max((float(r) for r in rates), default=None)
        if rate is not None and rate != self.last:
            self.last = rate
            self.pending.append((step, rate))

    def read_window(self, record: Record, clear: bool) -> None:
        pending = self.pending
        if clear:
            self.pending = []
            self.last = None  # each window starts with the rate in force
        record.lr_steps = np.array([s for s, _ in pending], dtype=np.int64)
        record.lr_values = to_numpy([v for _, v in pending])


class ClipNorms:
    """``torch.nn.utils.clip_grad_norm_``'s total norm before clipping and its ``max_norm``, observed
    through ``clipping.py``. Hot path (when the user clips): a reference to the returned norm.
    Read-out: numpy."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, Any, float]] = []

    def record(self, step: int, total_norm, max_norm) -> None:
        norm = total_norm.detach() if isinstance(total_norm, torch.Tensor) else float(total_norm)
        self.pending.append((step, norm, float(max_norm)))

    def read_window(self, record: Record, clear: bool) -> None:
        pending = self.pending
        if clear:
            self.pending = []
        record.clip_steps = np.array([s for s, _, _ in pending], dtype=np.int64)
        record.clip_norms = to_numpy([n for _, n, _ in pending])
        record.clip_max_norms = np.array([m for _, _, m in pending], dtype=np.float64)


class GradScalerSteps:
    """The ``torch.amp.GradScaler`` of a mixed-precision run, observed through ``amp.py``: which
    iterations it skipped (it skips the optimizer step when a gradient overflowed) and its scale.

    Hot path (per ``scaler.update()``): whether the optimizer step ran (a Python flag the optimizer
    hook set: no sync); a device copy of the scale on skipped and instrumented steps only (healthy
    runs skip a handful of steps while the scale settles). Read-out: numpy."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.skipped: list[bool] = []
        self.scales: list[tuple[int, Any]] = []
        self.seen = False  # the first scale (the initial one) is always kept

    def record(self, step: int, skipped, scale, keep_scale: bool) -> None:
        """``skipped``: a bool, or the scaler's overflow flag (a device tensor) when no optimizer hook tells."""
        self.steps.append(step)
        self.skipped.append(skipped)
        first, self.seen = not self.seen, True
        if (first or keep_scale or skipped is True or isinstance(skipped, torch.Tensor)) and scale is not None:
            self.scales.append((step, scale.detach().clone() if isinstance(scale, torch.Tensor) else float(scale)))

    def read_window(self, record: Record, clear: bool) -> None:
        if not self.steps:
            return
        steps, skipped, scales = self.steps, self.skipped, self.scales
        if clear:
            self.steps, self.skipped, self.scales = [], [], []
        record.scaler = {"steps": np.array(steps, dtype=np.int64), "skipped": to_numpy(skipped) > 0,
                         "scale_steps": np.array([s for s, _ in scales], dtype=np.int64),
                         "scales": to_numpy([v for _, v in scales])}


def to_numpy(values: list) -> np.ndarray:
    """Python numbers and 0-d tensors (on any device) as one float64 array: one transfer."""
    if not values:
        return np.zeros(0, dtype=np.float64)
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    if len(tensors) == len(values):
        return torch.stack([t.reshape(()).float().cpu() for t in tensors]).double().numpy()
    return np.array([float(v) for v in values], dtype=np.float64)
