"""Where did the first NaN/Inf come from? Replays one forward pass on a deep copy of the model.

Called once, when the monitor first sees a non-finite gradient and before the optimizer applies it:
the model still holds the weights that produced the NaN, and the batch is the one that was just
used. The replay runs on a deep copy with every hook stripped, under ``torch.no_grad`` and
``torch.random.fork_rng``, so the user's model, hooks and RNG state are untouched.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

_HOOK_DICTS = (
    "_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks",
)


@dataclass
class TraceEntry:
    """One module's forward call in the replay, in the order the calls finished."""

    name: str
    type: str
    inputs_finite: bool | None  # None: no floating-point tensor input
    weights_finite: bool  # the module's own parameters (not its children's)
    output_finite: bool | None
    output_absmax: float | None


def tensors_in(obj: Any, depth: int = 0) -> list[torch.Tensor]:
    """The floating-point tensors in a (nested) tuple/list/dict/ModelOutput, a few levels deep."""
    if isinstance(obj, torch.Tensor):
        return [obj] if obj.is_floating_point() or obj.is_complex() else []
    if depth > 3:
        return []
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        found: list[torch.Tensor] = []
        for item in obj:
            found.extend(tensors_in(item, depth + 1))
        return found
    return []


def all_finite(tensors: list[torch.Tensor]) -> bool | None:
    if not tensors:
        return None
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def _strip_hooks(model: nn.Module) -> None:
    for module in model.modules():
        for attr in _HOOK_DICTS:
            hooks = getattr(module, attr, None)
            if hooks is not None:
                hooks.clear()


def _devices(model: nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


def replay_forward(model: nn.Module, args: tuple, kwargs: dict, autocast: dict | None = None) -> list[TraceEntry]:
    """Run ``model(*args, **kwargs)`` once on a hook-free deep copy and record every module call."""
    twin = copy.deepcopy(model)
    _strip_hooks(twin)
    trace: list[TraceEntry] = []
    names = {id(m): n or type(m).__name__ for n, m in twin.named_modules()}

    def record(module, inputs, output):
        out = tensors_in(output)
        trace.append(TraceEntry(
            name=names.get(id(module), type(module).__name__),
            type=type(module).__name__,
            inputs_finite=all_finite(tensors_in(inputs)),
            weights_finite=all(bool(torch.isfinite(p).all()) for p in module.parameters(recurse=False)),
            output_finite=all_finite(out),
            output_absmax=max((float(t.detach().abs().max()) for t in out if t.numel()), default=None),
        ))

    handles = [m.register_forward_hook(record) for m in twin.modules()]
    try:
        with torch.random.fork_rng(devices=_devices(twin)), torch.no_grad():
            if autocast and autocast.get("enabled"):
                with torch.autocast(autocast["device_type"], dtype=autocast["dtype"]):
                    twin(*args, **kwargs)
            else:
                twin(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return trace


def origin_from_trace(trace: list[TraceEntry], raw_inputs_finite: bool | None) -> dict[str, Any] | None:
    """The first module (in the order calls finished) whose output was NaN/Inf, and what produced it.

    - ``inputs``: the batch itself held NaN/Inf;
    - ``weights``: the module's own parameters were already NaN/Inf (a previous update wrote them);
    - ``operation``: inputs and weights were finite and the module's computation overflowed, or,
      when its input was already non-finite, a functional operation in the forward code before it.
    """
    for i, entry in enumerate(trace):
        if entry.output_finite is not False:
            continue
        if raw_inputs_finite is False:
            produced_by, detail = "inputs", "the batch fed to the model already held NaN/Inf"
        elif not entry.weights_finite:
            produced_by, detail = "weights", ("its parameters were already NaN/Inf: the optimizer update "
                                              "before this step wrote them")
        elif entry.inputs_finite is False:
            produced_by, detail = "operation", ("its input was already NaN/Inf although every module before "
                                                "it returned finite values: a functional operation in the "
                                                "forward code just before it produced it")
        else:
            produced_by, detail = "operation", ("its inputs and weights were finite: its own computation "
                                                "overflowed or hit an undefined value (log/sqrt/division)")
        before = [e.output_absmax for e in trace[:i] if e.output_absmax is not None]
        # the output that finished last before it: what a functional operation in the forward code (a
        # hand-written softmax after the output layer) took as its input
        last = next((e for e in reversed(trace[:i]) if e.output_absmax is not None), None)
        return {
            "module": entry.name, "module_type": entry.type, "produced_by": produced_by, "detail": detail,
            "in": "forward", "inputs_finite": entry.inputs_finite, "weights_finite": entry.weights_finite,
            "largest_finite_output_before": max(before) if before else None,
            "last_output_module": last.name if last is not None else None,
            "last_output_absmax": last.output_absmax if last is not None else None,
        }
    return None


def origin_from_gradients(model: nn.Module, layer_order: list[str]) -> dict[str, Any] | None:
    """When the forward pass was finite: the module nearest the output with a NaN/Inf gradient.

    A NaN born in the backward pass flows towards the input, so every module before the one that
    produced it also gets NaN; the one nearest the output (last in forward order) is the origin,
    or the parameter-free operation right after it.
    """
    bad = []
    for name, module in model.named_modules():
        grads = [p.grad for p in module.parameters(recurse=False) if p.grad is not None]
        if grads and not all(bool(torch.isfinite(g).all()) for g in grads):
            bad.append(name)
    if not bad:
        return None
    rank = {n: i for i, n in enumerate(layer_order)}
    origin = max(bad, key=lambda n: rank.get(n, -1))
    module = dict(model.named_modules())[origin]
    return {
        "module": origin or type(module).__name__, "module_type": type(module).__name__, "produced_by": "operation",
        "in": "backward", "modules_with_non_finite_gradients": bad,
        "detail": ("the forward pass was finite; the gradient turned NaN/Inf in the backward pass at this "
                   "module or the parameter-free operation right after it"),
    }


def modules_with_non_finite_weights(model: nn.Module) -> list[str]:
    out = []
    for name, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        if params and not all(bool(torch.isfinite(p).all()) for p in params):
            out.append(name or type(module).__name__)
    return out
