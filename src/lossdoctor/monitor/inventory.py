"""What the watch knows of a model before it runs: its layers, parameters and activation modules,
and how its forward pass can be hooked (a ``torch.compile``d model cannot be hooked inside)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

RELU_FAMILY = (nn.ReLU, nn.ReLU6)
SATURATING = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}
NORMALIZATION = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)
LOW_PRECISION = (torch.bfloat16, torch.float16)

# Update-to-weight ratios need a copy of the parameters on the instrumented step; above this many
# elements that copy would noticeably add to a large model's memory, so the ratio is skipped.
UPDATE_RATIO_MAX_ELEMENTS = 50_000_000
# The smallest gradients are the cheapest to check for NaN/Inf, and a NaN/Inf loss reaches every
# gradient: this many of them are the sentinels (one is checked per step, the first that has a gradient).
SENTINELS = 4


class ModuleInfo(NamedTuple):
    name: str
    layer: int  # index of the parameter-owning layer, -1 for a module without own parameters
    kind: str | None  # "relu", "sigmoid", "tanh" or None
    is_conv: bool
    is_leaf: bool
    is_normalization: bool
    is_embedding: bool


def _compiled_wrapper_type():
    try:
        from torch._dynamo.eval_frame import OptimizedModule
    except Exception:  # noqa: BLE001 - a torch without Dynamo has no compiled modules
        return ()
    return (OptimizedModule,)


def unwrap(model: nn.Module) -> tuple[nn.Module, nn.Module | None]:
    """The module that owns the layers, and the ``torch.compile`` wrapper around it (or None):
    DataParallel / DistributedDataParallel and compiled wrappers are looked through."""
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    compiled = _compiled_wrapper_type()
    wrapper = None
    while True:
        if isinstance(model, (DataParallel, DistributedDataParallel)):
            model = model.module
        elif compiled and isinstance(model, compiled):
            wrapper = wrapper or model
            model = model._orig_mod
        else:
            return model, wrapper


def compiled_in_place(module: nn.Module) -> bool:
    """``module.compile()`` compiles the module's own call, hooks included."""
    return getattr(module, "_compiled_call_impl", None) is not None


@dataclass
class Inventory:
    """The layers and parameters of the watched model (in ``named_modules`` order)."""

    root: nn.Module
    layer_names: list[str] = field(default_factory=list)
    weight_layer: list[bool] = field(default_factory=list)
    params: list[torch.nn.Parameter] = field(default_factory=list)
    param_layer: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    param_names: dict[int, str] = field(default_factory=dict)
    modules: dict[int, ModuleInfo] = field(default_factory=dict)
    has_batchnorm: bool = False
    sentinels: list[torch.nn.Parameter] = field(default_factory=list)
    update_ratio_ok: bool = True
    low_precision: list[int] = field(default_factory=list)  # indices of bf16/fp16 parameters
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def of(cls, root: nn.Module) -> "Inventory":
        inv = cls(root)
        params: list[torch.nn.Parameter] = []
        param_layer: list[int] = []
        seen: set[int] = set()
        for name, module in root.named_modules():
            own = [p for p in module.parameters(recurse=False) if p.requires_grad and id(p) not in seen]
            layer = -1
            if own:
                layer = len(inv.layer_names)
                inv.layer_names.append(name or type(module).__name__)
                inv.weight_layer.append(any(p.dim() >= 2 for p in own))
                for p in own:
                    seen.add(id(p))
                    params.append(p)
                    param_layer.append(layer)
            kind = "relu" if isinstance(module, RELU_FAMILY) else SATURATING.get(type(module))
            inv.modules[id(module)] = ModuleInfo(
                name or type(module).__name__, layer, kind, isinstance(module, nn.modules.conv._ConvNd),
                next(module.children(), None) is None, isinstance(module, NORMALIZATION),
                isinstance(module, (nn.Embedding, nn.EmbeddingBag)))
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                inv.has_batchnorm = True
        inv.params = params
        inv.param_layer = np.array(param_layer, dtype=np.int64)
        inv.param_names = {id(p): n for n, p in root.named_parameters()}
        inv.sentinels = sorted(params, key=lambda p: p.numel())[:SENTINELS]
        inv.update_ratio_ok = sum(p.numel() for p in params) <= UPDATE_RATIO_MAX_ELEMENTS
        inv.low_precision = [i for i, p in enumerate(params) if p.dtype in LOW_PRECISION]
        inv.device = next((p.device for p in params), torch.device("cpu"))
        return inv

    def stack(self, tensors) -> torch.Tensor:
        """One float32 device tensor from several (0-d) ones: one transfer at read-out."""
        return torch.stack([t.detach().float().to(self.device) for t in tensors])

    def low_precision_dtypes(self) -> dict[str, str]:
        return {self.layer_names[self.param_layer[i]]: str(self.params[i].dtype) for i in self.low_precision}
