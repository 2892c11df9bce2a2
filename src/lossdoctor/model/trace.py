"""Watch what a model does on a sample batch: every layer, activation, norm and dropout, in order.

Module forward hooks see ``nn.ReLU()`` and friends; a ``TorchFunctionMode`` sees the functional
calls inside ``forward`` (``F.softmax``, ``torch.relu``, ``x.sigmoid()``, ``F.dropout``) that no
hook can. Each recorded op keeps which earlier layers its inputs came from (its lineage), so
"the activation after layer L" follows the data, not the order the modules were declared in.

Without a sample batch, ``torch.fx`` gives the op order where the model traces, and the order of
declaration is the last resort. The caller runs this on a deep copy, inside ``fork_rng``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

# canonical activation name for each activation module type
ACTIVATION_MODULES: dict[type, str] = {
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.LeakyReLU: "leaky_relu", nn.PReLU: "prelu",
    nn.RReLU: "rrelu", nn.ELU: "elu", nn.CELU: "celu", nn.SELU: "selu", nn.GELU: "gelu",
    nn.SiLU: "silu", nn.Mish: "mish", nn.Hardswish: "hardswish", nn.Softplus: "softplus",
    nn.Sigmoid: "sigmoid", nn.Hardsigmoid: "hardsigmoid", nn.Tanh: "tanh", nn.Hardtanh: "hardtanh",
    nn.Softsign: "softsign", nn.Softmax: "softmax", nn.Softmax2d: "softmax", nn.LogSoftmax: "log_softmax",
    nn.LogSigmoid: "logsigmoid", nn.Threshold: "relu", nn.GLU: "glu", nn.Tanhshrink: "tanhshrink",
}
# functional names (torch.*, F.*, Tensor.*; a trailing "_" for in-place is stripped first)
ACTIVATION_FUNCTIONS: dict[str, str] = {
    **{n: n for n in ("relu", "relu6", "leaky_relu", "prelu", "rrelu", "elu", "celu", "selu", "gelu",
                      "silu", "mish", "hardswish", "softplus", "sigmoid", "hardsigmoid", "tanh",
                      "hardtanh", "softsign", "softmax", "log_softmax", "logsigmoid", "glu", "tanhshrink")},
    "expit": "sigmoid", "threshold": "relu",
}
LAYER_TYPES = (nn.Linear, nn.modules.conv._ConvNd, nn.Bilinear, nn.RNNBase, nn.RNNCellBase,
               nn.Embedding, nn.EmbeddingBag)
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
              getattr(nn, "RMSNorm", nn.LayerNorm))
DROPOUT_TYPES = (nn.modules.dropout._DropoutNd,)
# functional layers: F.linear(x, self.weight) inside a custom module is a layer too
FUNCTIONAL_LAYERS = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                     "conv_transpose3d", "bilinear"}
FUNCTIONAL_DROPOUT = {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
                      "feature_alpha_dropout"}
FUNCTIONAL_NOISE = {"randn_like", "rand_like", "normal", "randn", "bernoulli", "normal_"}
# ops that only reshape or copy: an activation seen through them is still the model's output activation
PASSTHROUGH = {"view", "reshape", "squeeze", "unsqueeze", "flatten", "contiguous", "transpose", "permute",
               "clone", "__getitem__", "float", "double", "half", "to", "type_as", "view_as", "reshape_as",
               "t", "detach", "narrow", "select", "dropout", "identity", "flatten_module", "unflatten"}
MULTIPLY = {"mul", "__mul__", "__rmul__", "__imul__", "addcmul", "prod"}


@dataclass
class Op:
    """One thing the model did: a layer, an activation, a norm, a dropout or another tensor op."""

    index: int
    kind: str  # layer | activation | norm | dropout | noise | pool | other
    op: str  # canonical name: linear, conv2d, relu, softmax, batch_norm, mul, ...
    name: str  # module path ("encoder.0") or "<function> in <module path>"
    via: str  # module | function | fx | declaration
    scope: str  # module path whose forward made the call ("" for the model itself)
    sources: frozenset[int] = frozenset()  # indices of the layer ops this op's inputs derive from
    inputs: tuple[int, ...] = ()  # indices of the ops that produced the inputs
    in_rms: float | None = None
    out_rms: float | None = None
    out_min: float | None = None
    out_max: float | None = None
    params: dict[str, Any] = field(default_factory=dict)  # p of a dropout, ...


@dataclass
class Trace:
    ops: list[Op]
    via: str  # sample | synthetic | fx | declaration
    output: Any = None  # the model's output tensor (sample runs only)
    output_op: int | None = None  # the op that produced the output
    call_counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def _stats(t: torch.Tensor) -> tuple[float, float, float] | None:
    if not isinstance(t, torch.Tensor) or not (t.is_floating_point() or t.is_complex()) or t.numel() == 0:
        return None
    x = t.detach().float()
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        x = x[finite]
        if x.numel() == 0:
            return (math.nan, math.nan, math.nan)
    return (float(x.pow(2).mean().sqrt()), float(x.min()), float(x.max()))


def _tensors(obj: Any, limit: int = 16) -> list[torch.Tensor]:
    """The tensors in args/kwargs/outputs, shallowly (tuples, lists, dicts), at most ``limit``."""
    found: list[torch.Tensor] = []

    def walk(o: Any, depth: int) -> None:
        if len(found) >= limit or depth > 3:
            return
        if isinstance(o, torch.Tensor):
            found.append(o)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v, depth + 1)
        elif isinstance(o, dict):
            for v in o.values():
                walk(v, depth + 1)

    walk(obj, 0)
    return found


def module_kind(module: nn.Module) -> tuple[str, str] | None:
    """(kind, canonical op) for a built-in leaf module lossdoctor knows, else None."""
    for cls, name in ACTIVATION_MODULES.items():
        if type(module) is cls or (isinstance(module, cls) and type(module).__module__.startswith("torch.nn")):
            return "activation", name
    if isinstance(module, LAYER_TYPES):
        if isinstance(module, nn.modules.conv._ConvNd):
            dims = len(module.kernel_size)
            return "layer", ("conv_transpose" if module.transposed else "conv") + f"{dims}d"
        if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
            return "layer", type(module).__name__.lower()
        return "layer", type(module).__name__.lower()
    if isinstance(module, NORM_TYPES):
        return "norm", type(module).__name__.lower()
    if isinstance(module, DROPOUT_TYPES):
        return "dropout", "dropout"
    if isinstance(module, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
                           nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)):
        return "pool", "pool"
    if isinstance(module, (nn.Flatten, nn.Unflatten, nn.Identity)):
        return "other", "flatten_module" if isinstance(module, nn.Flatten) else "identity"
    return None


def _is_builtin_leaf(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.nn") and not any(True for _ in module.children())


class _Recorder(TorchFunctionMode):
    """Records module calls (through hooks) and functional calls (through the torch-function mode)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.ops: list[Op] = []
        self.stack: list[tuple[str, nn.Module]] = []
        self.producer: dict[int, int] = {}  # id(tensor) -> op index
        self.producer_ptr: dict[tuple[int, tuple], int] = {}  # (data_ptr, shape) -> op index (views)
        self.keep: list[Any] = []  # keeps recorded tensors alive so their ids are never reused
        self.call_counts: dict[str, int] = {}
        self.recording = True
        self.param_names = {id(p): n for n, p in model.named_parameters()}
        self.handles: list[Any] = []
        for name, module in model.named_modules():
            self.handles.append(module.register_forward_pre_hook(self._pre(name, module)))
            self.handles.append(module.register_forward_hook(self._post(name, module)))

    def remove_hooks(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    # -- lineage ---------------------------------------------------------------------------
    def _producer_of(self, t: torch.Tensor) -> int | None:
        idx = self.producer.get(id(t))
        if idx is None and t.numel():
            idx = self.producer_ptr.get((t.data_ptr(), tuple(t.shape)))
        return idx

    def _lineage(self, inputs: list[torch.Tensor]) -> tuple[tuple[int, ...], frozenset[int]]:
        producers = tuple(sorted({i for i in (self._producer_of(t) for t in inputs) if i is not None}))
        sources: set[int] = set()
        for i in producers:
            op = self.ops[i]
            sources |= {i} if op.kind == "layer" else set(op.sources)
        return producers, frozenset(sources)

    def _record(self, kind: str, op: str, name: str, via: str, inputs: list[torch.Tensor],
                outputs: list[torch.Tensor], params: dict | None = None) -> Op:
        producers, sources = self._lineage(inputs)
        rec = Op(index=len(self.ops), kind=kind, op=op, name=name, via=via,
                 scope=self.stack[-1][0] if self.stack else "", sources=sources, inputs=producers,
                 params=params or {})
        if kind in ("layer", "activation", "norm") and outputs:
            s_in = _stats(inputs[0]) if inputs else None
            s_out = _stats(outputs[0])
            rec.in_rms = s_in[0] if s_in else None
            if s_out:
                rec.out_rms, rec.out_min, rec.out_max = s_out
        self.ops.append(rec)
        for t in outputs:
            self.producer[id(t)] = rec.index
            if t.numel():
                self.producer_ptr[(t.data_ptr(), tuple(t.shape))] = rec.index
            self.keep.append(t)
        return rec

    # -- hooks -----------------------------------------------------------------------------
    def _pre(self, name: str, module: nn.Module):
        def hook(mod, args, kwargs=None):
            self.call_counts[name] = self.call_counts.get(name, 0) + 1
            self.stack.append((name, module))
            self._inputs = getattr(self, "_inputs", {})
            self._inputs[name] = _tensors(args, 4)
        return hook

    def _post(self, name: str, module: nn.Module):
        def hook(mod, args, output):
            if self.stack and self.stack[-1][1] is module:
                self.stack.pop()
            known = module_kind(module)
            if known is None or not _is_builtin_leaf(module):
                return None
            kind, op = known
            params = {}
            if kind == "dropout":
                params = {"p": float(getattr(module, "p", 0.0)), "training": module.training}
            was, self.recording = self.recording, False
            try:
                self._record(kind, op, name or "<model>", "module", self._inputs.get(name, []),
                             _tensors(output, 4), params)
            finally:
                self.recording = was
            return None
        return hook

    # -- functional calls ------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.recording:
            return func(*args, **kwargs)
        if self.stack and _is_builtin_leaf(self.stack[-1][1]):
            return func(*args, **kwargs)  # the module's own op: the hook records it
        result = func(*args, **kwargs)
        fname = getattr(func, "__name__", "") or ""
        base = fname.rstrip("_") if not fname.startswith("__") else fname
        outputs = _tensors(result, 8)
        if not outputs:
            return result
        was, self.recording = self.recording, False
        try:
            inputs = _tensors((args, kwargs), 8)
            scope = self.stack[-1][0] if self.stack else ""
            where = f"{base} in {scope or type(self).__name__}"
            if base in ACTIVATION_FUNCTIONS:
                self._record("activation", ACTIVATION_FUNCTIONS[base], f"{base}() in {scope or '<model>.forward'}",
                             "function", inputs[:1], outputs)
            elif base in FUNCTIONAL_LAYERS and len(inputs) >= 2 and id(inputs[1]) in self.param_names:
                pname = self.param_names[id(inputs[1])]
                self._record("layer", base, pname.rsplit(".", 1)[0] if "." in pname else pname, "function",
                             inputs[:1], outputs, {"weight": pname})
            elif base in FUNCTIONAL_DROPOUT:
                p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
                training = args[2] if len(args) > 2 else kwargs.get("training", True)
                self._record("dropout", "dropout", f"{base}() in {scope or '<model>.forward'}", "function",
                             inputs[:1], outputs, {"p": float(p), "training": bool(training)})
            elif base in FUNCTIONAL_NOISE:
                self._record("noise", base, f"{base}() in {scope or '<model>.forward'}", "function", inputs, outputs)
            else:
                self._record("other", base, where, "function", inputs, outputs)
        finally:
            self.recording = was
        return result


def pick_output(out: Any) -> torch.Tensor | None:
    """The prediction tensor of a model's output: itself, ``.logits``, ``["logits"]`` or the first tensor."""
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, dict) and isinstance(out.get("logits"), torch.Tensor):
        return out["logits"]
    found = _tensors(out, 1)
    return found[0] if found else None


def call_model(model: nn.Module, sample: Any) -> Any:
    if isinstance(sample, dict):
        return model(**sample)
    if isinstance(sample, (tuple, list)):
        return model(*sample)
    return model(sample)


def trace_with_sample(model: nn.Module, sample: Any, via: str = "sample") -> Trace:
    """Run ``model`` (a copy) on ``sample`` under no_grad and record every op."""
    recorder = _Recorder(model)
    try:
        with torch.no_grad(), recorder:
            out = call_model(model, sample)
    finally:
        recorder.remove_hooks()
    output = pick_output(out)
    output_op = recorder._producer_of(output) if output is not None else None
    return Trace(ops=recorder.ops, via=via, output=output, output_op=output_op,
                 call_counts=dict(recorder.call_counts))


def trace_with_fx(model: nn.Module) -> Trace:
    """Op order from ``torch.fx.symbolic_trace`` (no numbers): call_module, call_function, call_method."""
    import torch.fx

    graph_module = torch.fx.symbolic_trace(model)
    modules = dict(graph_module.named_modules())
    ops: list[Op] = []
    node_op: dict[str, int] = {}
    output_op = None
    for node in graph_module.graph.nodes:
        producers = tuple(sorted({node_op[a.name] for a in node.all_input_nodes if a.name in node_op}))
        sources: set[int] = set()
        for i in producers:
            sources |= {i} if ops[i].kind == "layer" else set(ops[i].sources)
        kind, op, name = None, None, None
        if node.op == "call_module":
            module = modules.get(node.target)
            known = module_kind(module) if module is not None else None
            kind, op = known if known else ("other", type(module).__name__.lower())
            name = str(node.target)
        elif node.op in ("call_function", "call_method"):
            fname = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
            base = fname.rstrip("_") if not fname.startswith("__") else fname
            name = f"{base}() in <model>.forward"
            if base in ACTIVATION_FUNCTIONS:
                kind, op = "activation", ACTIVATION_FUNCTIONS[base]
            elif base in FUNCTIONAL_DROPOUT:
                kind, op = "dropout", "dropout"
            else:
                kind, op = "other", base
        elif node.op == "output":
            output_op = producers[0] if producers else None
            continue
        else:
            continue
        rec = Op(index=len(ops), kind=kind, op=op, name=name, via="fx", scope="",
                 sources=frozenset(sources), inputs=producers)
        if kind == "dropout" and node.op == "call_module":
            rec.params = {"p": float(getattr(modules[node.target], "p", 0.0))}
        ops.append(rec)
        node_op[node.name] = rec.index
    return Trace(ops=ops, via="fx", output_op=output_op)


def trace_by_declaration(model: nn.Module) -> Trace:
    """Last resort: the leaf modules in the order they were declared, assumed to run in sequence."""
    ops: list[Op] = []
    previous: int | None = None
    for name, module in model.named_modules():
        known = module_kind(module)
        if known is None or any(True for _ in module.children()):
            continue
        kind, op = known
        sources = frozenset()
        if previous is not None:
            sources = frozenset({previous}) if ops[previous].kind == "layer" else ops[previous].sources
        rec = Op(index=len(ops), kind=kind, op=op, name=name, via="declaration", scope="",
                 sources=sources, inputs=(previous,) if previous is not None else ())
        if kind == "dropout":
            rec.params = {"p": float(getattr(module, "p", 0.0))}
        ops.append(rec)
        previous = rec.index
    return Trace(ops=ops, via="declaration", output_op=previous)
