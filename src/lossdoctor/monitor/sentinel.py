"""The first NaN/Inf: a per-step sentinel, and the module that produced it.

Hot path, every step: the finiteness of the smallest gradient present before the update (a NaN/Inf
loss reaches every gradient), and of the loss of a closure (an Inf loss can still give finite
gradients). On the CPU the flag is read at once (there is no device queue to wait for); on an
accelerator it stays on the device until the read-out (``immediate=False``). When the first one is
seen at once, a replay of the batch on a deep copy of the model (``locate.replay_forward``) names
the first module whose output turned NaN/Inf; without a replay, ``OutputFiniteness`` (instrumented
steps, read-out mode only) or the gradients and weights name it.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from .locate import (all_finite, modules_with_non_finite_weights, origin_from_gradients, origin_from_trace,
                     replay_forward, tensors_in)
from .measurements import Instrumented, Sample, autocast_state, to_numpy
from .stats import Record, SampleRecord

if TYPE_CHECKING:
    from .inventory import Inventory, ModuleInfo


# A gradient this small (an output layer's bias: one value per class) is read as Python floats and
# summed there: about half the cost of a tensor reduction plus its read on the CPU, where this runs
# every step. Larger ones take the one tensor reduction, whose cost does not grow with a list.
LIST_SUM_MAX_NUMEL = 64


def grad_is_finite(grad: torch.Tensor) -> bool:
    """Whether a CPU gradient holds no NaN/Inf, read at once. One sum: a NaN/Inf makes it non-finite.
    The Python sum is in float64 (no float32 overflow); a tensor sum that overflowed float32 while
    every value is finite is told apart by the exact check, which runs only then."""
    if grad.numel() <= LIST_SUM_MAX_NUMEL:
        return math.isfinite(sum(grad.reshape(-1).tolist()))
    return math.isfinite(float(grad.sum())) or bool(torch.isfinite(grad).all())


class NanSentinel:
    def __init__(self, inventory: "Inventory", immediate: bool) -> None:
        self.inv = inventory
        self.immediate = immediate
        self.origin: dict[str, Any] | None = None
        self._origin_read = False
        self.flags: list[tuple[int, torch.Tensor]] = []
        self.last_input: tuple | None = None
        self.root_called = False
        self._device_type = inventory.device.type

    @property
    def found(self) -> bool:
        return self.origin is not None

    def keep_input(self, args, kwargs) -> None:
        """The root's training forward: keep a reference to the batch for a replay (CPU only: on an
        accelerator the NaN is seen at the read-out, when the batch is long gone)."""
        self.root_called = True
        if self.immediate:
            self.last_input = (args, kwargs, autocast_state(self._device_type))

    def _smallest_grad(self) -> torch.Tensor | None:
        for p in self.inv.sentinels:
            if p.grad is not None:
                return p.grad
        return None

    def check_before_update(self, step: int, closure_loss) -> bool:
        """Whether the step's gradients (or its closure's loss) hold NaN/Inf, when read at once."""
        if self.found:
            return False
        grad = self._smallest_grad()
        if grad is None and closure_loss is None:
            return False
        if self.immediate:
            bad = grad is not None and not grad_is_finite(grad)
            return bad or (closure_loss is not None and not bool(torch.isfinite(closure_loss).all()))
        if grad is not None:
            self.flags.append((step, torch.isfinite(grad).all()))
        if closure_loss is not None:
            self.flags.append((step, torch.isfinite(closure_loss).all()))
        return False

    def check_without_optimizer(self, step: int, loss) -> bool:
        """No optimizer hook: the loss handed to ``step()`` and, when gradients are still present
        (Keras with the torch backend clears them only at the next batch), the smallest one."""
        if self.found:
            return False
        checks = [] if loss is None else [loss]
        grad = self._smallest_grad()
        if grad is not None:
            checks.append(grad.detach().sum())
        for value in checks:
            if not isinstance(value, torch.Tensor):
                value = torch.tensor(float(value))
            if self.immediate:
                if not bool(torch.isfinite(value).all()):
                    return True
            else:
                self.flags.append((step, torch.isfinite(value).all()))
        return False

    def loss_is_non_finite(self, loss) -> bool:
        """A loss read at once (a step the grad scaler skipped: did the forward itself overflow?)."""
        if loss is None or self.found or not self.immediate:
            return False
        return not math.isfinite(float(loss.detach().float().mean() if isinstance(loss, torch.Tensor) else loss))

    def locate(self, step: int, weights_updated: bool, layer_order: list[str],
               largest_logit_before: float | None) -> dict[str, Any]:
        """Name the first module whose output turned NaN/Inf on the step's batch (see module docstring)."""
        origin, replay_note = None, None
        if self.last_input is not None:
            args, kwargs, autocast = self.last_input
            try:
                trace = replay_forward(self.inv.root, args, kwargs, autocast)
                origin = origin_from_trace(trace, all_finite(tensors_in((args, kwargs))))
                if origin is not None:
                    origin["located_by"] = ("replay of the step's batch on a copy of the model "
                                            + ("(weights already updated)" if weights_updated else
                                               "with the weights before the update"))
            except Exception as exc:  # noqa: BLE001 - the user's model, not lossdoctor: never raised, not even
                # in strict mode (a LightningModule's forward may raise NotImplementedError; a model may
                # refuse a deep copy); the origin falls back to the gradients, and the evidence says why
                replay_note = f"replay of the root module's forward failed ({type(exc).__name__}: {exc})"[:300]
        elif not self.root_called:
            replay_note = ("no replay: the root module's forward was not called in training (e.g. a "
                           "LightningModule's training_step calls its submodules)")
        if origin is None:
            origin = origin_from_gradients(self.inv.root, layer_order)
            if origin is not None:
                origin["located_by"] = "gradients of the step"
        if origin is None:
            bad = modules_with_non_finite_weights(self.inv.root)
            origin = ({"module": bad[0], "produced_by": "weights", "located_by": "weights inspected",
                       "detail": "the first module whose weights are NaN/Inf"} if bad else
                      {"module": None, "produced_by": "unknown", "located_by": "not located"})
        if replay_note:
            origin["replay"] = replay_note
        origin["step"] = step
        if largest_logit_before is not None:
            origin["largest_logit_before"] = largest_logit_before
        self.origin = origin
        self.last_input = None
        return origin

    def check_weights(self, window_start: int, step_count: int, rank: int) -> None:
        """Without an optimizer, at read-out: are the weights still finite? One norm per parameter and
        one flag read per read-out; catches a NaN that neither a loss nor a gradient showed."""
        if self.found or not self.inv.params or any(not bool(f) for _, f in self.flags):
            return
        params = [p.detach() for p in self.inv.params]
        if bool(torch.isfinite(self.inv.stack(torch._foreach_norm(params))).all()):
            return
        bad = modules_with_non_finite_weights(self.inv.root)
        self.origin = {
            "module": bad[0] if bad else None, "produced_by": "weights", "located_by": "weights inspected at read-out",
            "step": window_start, "step_range": [window_start, max(step_count - 1, window_start)],
            "step_exact": False, "rank": rank,
            "detail": ("the weights turned NaN/Inf between two read-outs and no loss or gradient showed it: the "
                       "step given is the first of that window. Pass the loss to doctor.step(loss) for the exact "
                       "step"),
        }

    def read_window(self, record: Record, clear: bool) -> None:
        flags = self.flags
        if clear:
            self.flags = []
        if flags:
            ok = to_numpy([f for _, f in flags])
            record.bad_steps = [int(flags[i][0]) for i in (ok == 0).nonzero()[0][:1]]
        if self.origin is not None and not self._origin_read:
            record.origin = self.origin
            self._origin_read = clear


class OutputFiniteness(Instrumented):
    """Which module's output turned NaN/Inf, when no replay will tell (the NaN check waits for the
    read-out, as on an accelerator). Instrumented, read-out mode only: one sum per leaf module's
    output (a NaN/Inf makes it non-finite; a finite overflow of the sum reads as one too, which
    matters only once the run already has a NaN step to explain), and of the batch at the first
    module (device). Read-out: booleans."""

    key = "finite"
    uses_forward = True

    def on_forward(self, sample: Sample, module, info: "ModuleInfo", args, output, is_root: bool) -> None:
        if not info.is_leaf:
            return
        outs = tensors_in(output)
        if not outs:
            return
        seen = sample.states.setdefault(self.key, [])
        raw = None
        if not seen:  # the first module called sees the batch itself
            ins = tensors_in(args)
            raw = torch.isfinite(ins[0].sum()) if ins else None
        seen.append((info.name, raw, torch.isfinite(outs[0].detach().sum())))

    def read_sample(self, sample: Sample, record: SampleRecord) -> None:
        seen = sample.states.get(self.key)
        if seen:
            record.finite = [(name, None if inf is None else bool(inf), bool(outf)) for name, inf, outf in seen]
