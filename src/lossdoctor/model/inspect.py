"""inspect_model: gather the facts about a model (on a deep copy), check_model: judge them.

Nothing here touches the user's model, optimizer or RNG: the forward pass runs on a deep copy,
under ``torch.no_grad`` and ``torch.random.fork_rng``, and every hook is removed afterwards.
"""
from __future__ import annotations

import copy
import re
import warnings
from collections import Counter
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..findings import Report
from ..registry import Evidence, diagnose_evidence
from .facts import (ActivationFacts, LayerFacts, LossFacts, ModelFacts, OutputFacts, RecurrentCellFacts,
                    RegularizationFacts, TargetFacts)
from .init import INIT_LAYER_TYPES, expected_std, fans, scheme_for
from .trace import (DROPOUT_TYPES, MULTIPLY, NORM_TYPES, PASSTHROUGH, Op, Trace, call_model, trace_by_declaration,
                    trace_with_fx, trace_with_sample)

# A sample batch larger than this is cut: the facts are scales and shapes, 256 rows pin them down.
MAX_SAMPLE_ROWS = 256
# Weight rows compared for duplicates per layer (exact comparison is a sort: cap its cost).
MAX_ROWS_FOR_DUPLICATES = 4096
# Target values kept in the facts for the output-range check (256 rows of up to 16 outputs).
MAX_TARGET_VALUES = 4096
# A probability vector sums to 1 up to float32 rounding over a few thousand classes.
PROBABILITY_SUM_TOLERANCE = 1e-3
# CrossEntropyLoss/NLLLoss's default ignore_index: rows labelled -100 are padding, not a class.
IGNORE_INDEX = -100
# Recurrent-looking custom modules, by class name.
RECURRENT_NAME = re.compile(r"lstm|gru|rnn|recurr|cell", re.IGNORECASE)

LOSS_TYPES: dict[type, str] = {
    nn.CrossEntropyLoss: "cross_entropy", nn.NLLLoss: "nll", nn.BCEWithLogitsLoss: "bce_with_logits",
    nn.BCELoss: "bce", nn.MSELoss: "mse", nn.L1Loss: "l1", nn.SmoothL1Loss: "smooth_l1",
    nn.HuberLoss: "huber", nn.KLDivLoss: "kl_div",
}
LOSS_FUNCTIONS: dict[str, str] = {
    "cross_entropy": "cross_entropy", "nll_loss": "nll", "binary_cross_entropy_with_logits": "bce_with_logits",
    "binary_cross_entropy": "bce", "mse_loss": "mse", "l1_loss": "l1", "smooth_l1_loss": "smooth_l1",
    "huber_loss": "huber", "kl_div": "kl_div",
}


# -- input handling ------------------------------------------------------------------------
def _as_sample(sample: Any) -> tuple[Any, int | None, list[str]]:
    """Tensors from numpy, the batch cut to MAX_SAMPLE_ROWS; returns (sample, rows, notes)."""
    notes: list[str] = []

    def convert(x: Any) -> Any:
        if isinstance(x, np.ndarray):
            t = torch.as_tensor(x)
            return t.float() if t.is_floating_point() else t
        return x

    def cut(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[0] > MAX_SAMPLE_ROWS:
            return x[:MAX_SAMPLE_ROWS]
        return x

    if isinstance(sample, dict):
        sample = {k: convert(v) for k, v in sample.items()}
        first = next((v for v in sample.values() if isinstance(v, torch.Tensor)), None)
    elif isinstance(sample, (tuple, list)):
        sample = type(sample)(convert(v) for v in sample)
        first = next((v for v in sample if isinstance(v, torch.Tensor)), None)
    else:
        sample = convert(sample)
        first = sample if isinstance(sample, torch.Tensor) else None
    rows = int(first.shape[0]) if first is not None and first.dim() > 0 else None
    if rows is not None and rows > MAX_SAMPLE_ROWS:
        notes.append(f"sample batch cut from {rows} to its first {MAX_SAMPLE_ROWS} rows")
        rows = MAX_SAMPLE_ROWS
        if isinstance(sample, dict):
            sample = {k: cut(v) for k, v in sample.items()}
        elif isinstance(sample, (tuple, list)):
            sample = type(sample)(cut(v) for v in sample)
        else:
            sample = cut(sample)
    return sample, rows, notes


def _synthetic_sample(model: nn.Module) -> torch.Tensor | None:
    """A standard-normal batch shaped for the first layer, when its input shape is evident."""
    for module in model.modules():
        param = next(module.parameters(recurse=False), None)
        if param is None:
            continue
        dtype, device = param.dtype, param.device
        if isinstance(module, nn.Linear):
            return torch.randn(32, module.in_features, dtype=dtype, device=device)
        if isinstance(module, nn.modules.conv._ConvNd):
            spatial = {1: (64,), 2: (32, 32), 3: (8, 16, 16)}[len(module.kernel_size)]
            return torch.randn(8, module.in_channels, *spatial, dtype=dtype, device=device)
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            return torch.randint(0, module.num_embeddings, (8, 16), device=device)
        if isinstance(module, nn.RNNBase):
            shape = (8, 16, module.input_size) if module.batch_first else (16, 8, module.input_size)
            return torch.randn(*shape, dtype=dtype, device=device)
        return None
    return None


def _trace(model_copy: nn.Module, sample: Any) -> tuple[Trace, list[str]]:
    """Observe the copy on the sample (train mode for batch statistics, eval mode for dropout)."""
    notes: list[str] = []
    errors: list[str] = []
    candidates: list[tuple[Any, str]] = []
    if sample is not None:
        candidates.append((sample, "sample"))
    else:
        synthetic = _synthetic_sample(model_copy)
        if synthetic is not None:
            candidates.append((synthetic, "synthetic"))
    for batch, via in candidates:
        for train in (True, False):  # train mode fails on batch norm with one row: then eval
            model_copy.train(train)
            for m in model_copy.modules():
                if isinstance(m, DROPOUT_TYPES):
                    m.eval()  # scales at init are judged without dropout noise
            try:
                if any(isinstance(p, nn.parameter.UninitializedParameter) for p in model_copy.parameters()):
                    with torch.no_grad():
                        call_model(model_copy, batch)  # lazy layers take their shapes first
                trace = trace_with_sample(model_copy, batch, via=via)
                if via == "synthetic":
                    notes.append("no sample_input given: observed on a synthetic standard-normal batch "
                                  f"of shape {list(batch.shape)}")
                return trace, notes
            except Exception as exc:  # noqa: BLE001 - a model that fails on this batch: try the next way
                errors.append(f"{via} batch ({'train' if train else 'eval'} mode): {type(exc).__name__}: {exc}")
    if sample is not None:
        raise InputError("check_model: the model raised on sample_input: " + errors[-1])
    try:
        trace = trace_with_fx(model_copy)
        notes.append("no sample_input: op order from a torch.fx trace, no activation scales")
    except Exception as exc:  # noqa: BLE001 - not every model traces symbolically
        errors.append(f"torch.fx: {type(exc).__name__}: {exc}")
        trace = trace_by_declaration(model_copy)
        notes.append("no sample_input and no fx trace: layers assumed to run in declaration order")
    trace.error = "; ".join(errors) or None
    return trace, notes


# -- facts from the trace --------------------------------------------------------------------
def _weight_facts(name: str, module: nn.Module, op: str, calls: int) -> LayerFacts | None:
    weight = getattr(module, "weight", None)
    if weight is None:
        weight = next((p for n, p in module.named_parameters(recurse=False) if n.startswith("weight")), None)
    if not isinstance(weight, torch.Tensor) or weight.numel() == 0 or weight.is_meta:
        return None
    w = weight.detach().float().cpu()
    fan_in, fan_out = fans(w)
    rows = w.reshape(w.shape[0], -1) if w.dim() >= 2 else w.reshape(1, -1)
    if rows.shape[0] > MAX_ROWS_FOR_DUPLICATES:
        rows = rows[torch.linspace(0, rows.shape[0] - 1, MAX_ROWS_FOR_DUPLICATES).long()]
    n_unique = int(torch.unique(rows, dim=0).shape[0]) if rows.shape[0] > 1 else 1
    return LayerFacts(
        name=name, type=type(module).__name__, op=op, weight_shape=list(w.shape), fan_in=fan_in,
        fan_out=fan_out, weight_rms=float(w.pow(2).mean().sqrt()), weight_std=float(w.std(unbiased=False)),
        weight_mean=float(w.mean()), all_zero=bool((w == 0).all()),
        constant=bool((w == 0).all() or (w.numel() > 1 and (w == w.flatten()[0]).all())),
        duplicate_row_share=1.0 - n_unique / rows.shape[0], calls=calls,
        scale_checked=isinstance(module, INIT_LAYER_TYPES),
    )


def _gates(ops: list[Op]) -> set[int]:
    """Activation ops whose output is multiplied with another tensor (gates)."""
    gated: set[int] = set()
    for op in ops:
        if op.kind == "other" and op.op in MULTIPLY and len(op.inputs) >= 2:
            gated |= {i for i in op.inputs if ops[i].kind == "activation"}
    return gated


def _output_activation(trace: Trace) -> tuple[Op | None, frozenset[int]]:
    """The activation that produced the output (looking through reshapes and dropout), and the output layers."""
    ops, idx = trace.ops, trace.output_op
    seen = 0
    while idx is not None and seen < 64:
        op = ops[idx]
        if op.kind == "activation":
            return op, op.sources
        if op.kind == "layer":
            return None, frozenset({idx})
        if (op.kind == "dropout" or (op.kind == "other" and op.op in PASSTHROUGH)) and len(op.inputs) == 1:
            idx = op.inputs[0]
            seen += 1
            continue
        return None, op.sources
    return None, frozenset()


def _loss_kind(loss_fn: Any, output: torch.Tensor | None, targets: Any) -> LossFacts:
    if loss_fn is None:
        return LossFacts()
    smoothing = float(getattr(loss_fn, "label_smoothing", 0.0) or 0.0)
    for cls, kind in LOSS_TYPES.items():
        if isinstance(loss_fn, cls):
            return LossFacts(kind, type(loss_fn).__name__, "type", smoothing)
    if isinstance(loss_fn, type) and issubclass(loss_fn, nn.Module):
        raise InputError(f"check_model: loss_fn should be an instance, e.g. {loss_fn.__name__}(), not the class")
    fname = getattr(loss_fn, "__name__", None)
    if fname in LOSS_FUNCTIONS:
        return LossFacts(LOSS_FUNCTIONS[fname], fname, "function", smoothing)
    name = fname or type(loss_fn).__name__
    if output is not None and targets is not None and callable(loss_fn):
        # a wrapper (lambda, custom module): run it once and see which torch loss it calls
        called: list[str] = []

        class _Spy(torch.overrides.TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                called.append(getattr(func, "__name__", ""))
                return func(*args, **(kwargs or {}))

        try:
            with torch.no_grad(), _Spy():
                loss_fn(output.detach().clone(), targets)
        except Exception:  # noqa: BLE001 - a loss that cannot run on these shapes stays unidentified
            called = []
        kinds = [LOSS_FUNCTIONS[c] for c in called if c in LOSS_FUNCTIONS]
        if kinds:
            return LossFacts(kinds[0], name, "traced", smoothing)
    return LossFacts("other", name, None, smoothing)


def _loss_facts(loss_fn: Any, output: torch.Tensor | None, targets: Any, evaluate: bool) -> LossFacts:
    """The loss's kind, and (``evaluate``: on the user's sample) what it gives or raises on the
    untrained model's output and the targets."""
    facts = _loss_kind(loss_fn, output, targets)
    if not evaluate or loss_fn is None or not callable(loss_fn) or not isinstance(output, torch.Tensor) or targets is None:
        return facts
    if output.dim() > 0 and isinstance(targets, torch.Tensor) and targets.dim() > 0 \
            and targets.shape[0] != output.shape[0]:
        facts.error = (f"the sample gives {output.shape[0]} rows of output and the targets {targets.shape[0]} rows: "
                       "pass targets for the same rows as sample_input")
        return facts
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. MSELoss's broadcasting warning: the check says it better
            value = loss_fn(output.detach().clone(), targets.to(output.device) if isinstance(targets, torch.Tensor)
                            else targets)
        if (isinstance(value, torch.Tensor) and value.numel() == 1) or isinstance(value, (int, float)):
            facts.value = float(value)
    except Exception as exc:  # noqa: BLE001 - the user's loss on the user's data: an observation, not our failure
        facts.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    return facts


def _target_kind(t: torch.Tensor, finite: torch.Tensor) -> tuple[str, int, float]:
    """(kind, columns, multi_hot_share) of a target tensor; see TargetFacts.kind."""
    columns = int(t.shape[1]) if t.dim() == 2 else 1
    if t.dtype == torch.bool:
        return ("binary" if columns == 1 else "multi_hot"), columns, 0.0
    binary_values = bool(finite.numel()) and bool(((finite == 0) | (finite == 1)).all())
    if columns > 1:
        rows = t.double()
        sums = rows.sum(dim=1)
        if binary_values:
            several = float((sums > 1).double().mean())
            return ("one_hot" if bool((sums == 1).all()) else "multi_hot"), columns, several
        if bool((rows >= 0).all()) and bool(((sums - 1).abs() < PROBABILITY_SUM_TOLERANCE).all()):
            return "soft_labels", columns, 0.0
        integer = bool(finite.numel()) and bool((finite == finite.round()).all())
        return ("integer_values" if integer else "continuous"), columns, 0.0
    if not t.is_floating_point():
        ids = finite[finite != IGNORE_INDEX]
        return ("class_ids" if not ids.numel() or float(ids.min()) >= 0 else "integer_values"), columns, 0.0
    if binary_values:
        return "binary", columns, 0.0
    integer = bool(finite.numel()) and bool((finite == finite.round()).all())
    return ("integer_values" if integer else "continuous"), columns, 0.0


def _target_facts(targets: Any) -> tuple[TargetFacts | None, Any]:
    if targets is None:
        return None, None
    if isinstance(targets, np.ndarray):
        targets = torch.as_tensor(targets)
    if not isinstance(targets, torch.Tensor):
        try:
            targets = torch.as_tensor(np.asarray(targets))
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"check_model: targets must be a tensor or array, got {type(targets).__name__}") from exc
    if targets.numel() == 0:
        raise InputError("check_model: targets is empty")
    if targets.dim() > 0 and targets.shape[0] > MAX_SAMPLE_ROWS:
        targets = targets[:MAX_SAMPLE_ROWS]
    t = targets.detach().cpu()
    values = t.double()
    finite = values[torch.isfinite(values)]
    integer_valued = bool(not t.is_floating_point() or (finite.numel() and (finite == finite.round()).all()))
    kind, columns, several = _target_kind(t, finite)
    facts = TargetFacts(
        shape=list(t.shape), dtype=str(t.dtype).replace("torch.", ""),
        min=float(finite.min()) if finite.numel() else float("nan"),
        max=float(finite.max()) if finite.numel() else float("nan"),
        integer_valued=integer_valued, n_unique=int(torch.unique(finite).numel()),
        values=finite[:MAX_TARGET_VALUES].tolist(), kind=kind, columns=columns, multi_hot_share=several,
        mean=float(finite.mean()) if finite.numel() else None,
        std=float(finite.std(unbiased=False)) if finite.numel() else None,
    )
    return facts, targets


def describe_targets(targets: Any) -> TargetFacts | None:
    """The TargetFacts of ``targets`` (tensor, array or list): shape, range, kind (class ids, one-hot or
    multi-hot rows, continuous values, ...). For adapters that fill ModelFacts for another framework."""
    return _target_facts(targets)[0]


def _output_facts(output: torch.Tensor | None) -> OutputFacts:
    if not isinstance(output, torch.Tensor):
        return OutputFacts()
    # the class dimension: dim 1 of a (rows, units) output; a (rows,) output is one unit; for higher
    # ranks (sequences, images) the class dimension depends on how the loss is called: not evident
    width = 1 if output.dim() <= 1 else int(output.shape[1]) if output.dim() == 2 else None
    if not output.is_floating_point() or output.numel() == 0:
        return OutputFacts(shape=list(output.shape), width=width)
    x = output.detach().float()
    facts = OutputFacts(shape=list(x.shape), width=width, min=float(x.min()), max=float(x.max()),
                        rms=float(x.pow(2).mean().sqrt()))
    dim = 1  # probabilities are read along the class dimension; a (rows,) output has none
    if x.dim() >= 2 and x.shape[dim] > 1 and bool(torch.isfinite(x).all()):
        sums = x.sum(dim=dim)
        facts.probabilities = bool((x >= -1e-6).all() and ((sums - 1).abs() < PROBABILITY_SUM_TOLERANCE).all())
        lse = torch.logsumexp(x, dim=dim)
        facts.log_probabilities = bool((x <= 1e-6).all() and (lse.abs() < PROBABILITY_SUM_TOLERANCE).all())
    return facts


def _regularization(model: nn.Module, trace: Trace, optimizer: Any, loss: LossFacts) -> RegularizationFacts:
    reg = RegularizationFacts(label_smoothing=loss.label_smoothing)
    for name, m in model.named_modules():
        if isinstance(m, DROPOUT_TYPES):
            reg.dropout.append({"name": name, "type": type(m).__name__, "p": float(m.p), "via": "module"})
        elif isinstance(m, nn.RNNBase) and getattr(m, "dropout", 0) > 0:
            reg.dropout.append({"name": name, "type": f"{type(m).__name__}(dropout=)", "p": float(m.dropout),
                                "via": "recurrent"})
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            reg.batch_norm.append({"name": name, "type": type(m).__name__, "num_features": m.num_features,
                                   "affine": m.affine, "momentum": m.momentum,
                                   "track_running_stats": m.track_running_stats})
        elif isinstance(m, NORM_TYPES):
            reg.other_norm.append({"name": name, "type": type(m).__name__})
        elif "noise" in type(m).__name__.lower():
            std = next((float(getattr(m, a)) for a in ("std", "stddev", "sigma", "scale", "p")
                        if isinstance(getattr(m, a, None), (int, float))), None)
            reg.noise.append({"name": name, "type": type(m).__name__, "std": std, "via": "module"})
    for op in trace.ops:
        if op.via == "function" and op.kind == "dropout":
            reg.dropout.append({"name": op.name, "type": "functional", "p": op.params.get("p", 0.0),
                                "via": "function", "training": op.params.get("training", True)})
        elif op.kind == "noise" and op.via in ("function", "fx"):
            reg.noise.append({"name": op.name, "type": op.op, "std": None, "via": op.via})
    if optimizer is not None:
        if not hasattr(optimizer, "param_groups"):
            raise InputError(f"check_model: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        names = {id(p): n for n, p in model.named_parameters()}
        decoupled = type(optimizer).__name__ in ("AdamW", "SGDW", "Lion") or bool(
            optimizer.defaults.get("decoupled_weight_decay", False))
        for i, group in enumerate(optimizer.param_groups):
            params = group.get("params", [])
            reg.weight_decay.append({
                "group": i, "weight_decay": float(group.get("weight_decay", 0.0) or 0.0),
                "lr": float(group["lr"]) if "lr" in group and not isinstance(group["lr"], torch.Tensor)
                else float(group.get("lr", 0.0)),
                "n_params": int(sum(p.numel() for p in params)),
                "param_names": [names.get(id(p), "?") for p in params][:8],
                "optimizer": type(optimizer).__name__, "decoupled": decoupled,
            })
    return reg


def _recurrent_cells(model: nn.Module, trace: Trace) -> list[RecurrentCellFacts]:
    """Custom (not torch.nn) modules that look recurrent and gate with multiplications."""
    cells: list[RecurrentCellFacts] = []
    for name, m in model.named_modules():
        if not name or type(m).__module__.startswith("torch.nn"):
            continue
        calls = trace.call_counts.get(name, 0)
        if not (RECURRENT_NAME.search(type(m).__name__) or calls >= 2):
            continue
        prefix = name + "."
        inside = [op for op in trace.ops if op.scope == name or op.scope.startswith(prefix)]
        activations = Counter(op.op for op in inside if op.kind == "activation")
        gates = [trace.ops[i].op for op in inside if op.kind == "other" and op.op in MULTIPLY
                 for i in op.inputs if trace.ops[i].kind == "activation"]
        if gates:
            cells.append(RecurrentCellFacts(name, type(m).__name__, calls, gates, dict(activations)))
    # an outer module wrapping a cell sees the same gates: keep the innermost
    names = [c.name for c in cells]
    return [c for c in cells if not any(other.startswith(c.name + ".") for other in names)]


def inspect_model(model: nn.Module, sample_input: Any = None, loss_fn: Any = None, targets: Any = None,
                  optimizer: Any = None) -> ModelFacts:
    """Observe ``model`` (a deep copy of it) on ``sample_input`` and return plain facts.

    Layers with their weight scale against the initializer their activation calls for, the
    activation observed after each layer (module or functional call), the output activation,
    activation scales per layer, the loss, and the regularization inventory (dropout, weight decay
    per optimizer group, noise layers, batch norm). Without ``sample_input`` a synthetic batch is
    used when the first layer's input shape is evident, else a torch.fx trace or declaration order.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"check_model expects a torch.nn.Module, got {type(model).__name__}")
    params = list(model.parameters())
    if not params:
        raise InputError(f"check_model: {type(model).__name__} has no parameters: nothing to train or check")
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in params) and sample_input is None:
        raise InputError(f"check_model: {type(model).__name__} has lazy (uninitialized) layers; "
                         "pass sample_input so that they take their shapes")
    sample, rows, notes = _as_sample(sample_input) if sample_input is not None else (None, None, [])
    target_facts, target_tensor = _target_facts(targets)

    cuda_devices = sorted({p.device.index or 0 for p in params if p.is_cuda})
    with torch.random.fork_rng(devices=cuda_devices):
        try:
            model_copy = copy.deepcopy(model)
        except Exception as exc:  # noqa: BLE001 - locks, open files, generators held by the model
            raise InputError(f"check_model: {type(model).__name__} cannot be deep-copied ({type(exc).__name__}: "
                             f"{exc}); lossdoctor only runs copies of your model, never the model itself") from exc
        trace, trace_notes = _trace(model_copy, sample)
    notes += trace_notes
    modules = dict(model_copy.named_modules())
    ops = trace.ops
    gated = _gates(ops)

    # the first call of each layer, and the first activation fed by it
    layer_ops: dict[str, Op] = {}
    for op in ops:
        if op.kind == "layer" and op.name not in layer_ops:
            layer_ops[op.name] = op
    first_activation: dict[int, Op] = {}
    for op in ops:
        if op.kind == "activation":
            for src in op.sources:
                first_activation.setdefault(src, op)

    out_act, out_sources = _output_activation(trace)
    output_layer_names = {ops[i].name for i in out_sources}
    layers: list[LayerFacts] = []
    for name, op in layer_ops.items():
        module = modules.get("" if name == "<model>" else name)
        if module is None:
            continue
        facts = _weight_facts(name, module, op.op, trace.call_counts.get("" if name == "<model>" else name, 0))
        if facts is None:
            continue
        act = first_activation.get(op.index)
        facts.activation = act.op if act else None
        facts.gate = bool(act and act.index in gated)
        facts.in_rms, facts.out_rms = op.in_rms, op.out_rms
        facts.act_rms = act.out_rms if act else op.out_rms
        facts.is_output = name in output_layer_names
        if facts.scale_checked:
            facts.scheme = scheme_for(facts.activation)
            facts.expected_std = expected_std(facts.scheme, facts.fan_in, facts.fan_out)
            facts.scale_ratio = facts.weight_rms / facts.expected_std
        layers.append(facts)
    # layers the trace never reached still have weights worth checking
    for name, module in model_copy.named_modules():
        if (name or "<model>") not in layer_ops and isinstance(module, INIT_LAYER_TYPES):
            facts = _weight_facts(name or "<model>", module, type(module).__name__.lower(), 0)
            if facts is not None:
                facts.scheme = scheme_for(None)
                facts.expected_std = expected_std(facts.scheme, facts.fan_in, facts.fan_out)
                facts.scale_ratio = facts.weight_rms / facts.expected_std
                layers.append(facts)

    activations = [
        ActivationFacts(name=op.name, op=op.op, via=op.via, after=sorted(ops[i].name for i in op.sources),
                        gate=op.index in gated, out_min=op.out_min, out_max=op.out_max)
        for op in ops if op.kind == "activation"
    ]
    output = _output_facts(trace.output)
    output.activation = out_act.op if out_act else None
    output.activation_name = out_act.name if out_act else None
    output.layers = sorted(output_layer_names)
    # the loss is evaluated on the user's sample only (a synthetic batch has no matching targets)
    loss = _loss_facts(loss_fn, trace.output, target_tensor, evaluate=trace.via == "sample")
    builtin_recurrent = [n for n, m in model_copy.named_modules() if isinstance(m, (nn.RNNBase, nn.RNNCellBase))]
    return ModelFacts(
        model_class=type(model).__name__,
        n_parameters=int(sum(p.numel() for p in model_copy.parameters())),
        n_trainable=int(sum(p.numel() for p in model_copy.parameters() if p.requires_grad)),
        layers=layers, activations=activations, output=output, loss=loss, targets=target_facts,
        regularization=_regularization(model, trace, optimizer, loss),
        recurrent_cells=_recurrent_cells(model_copy, trace), builtin_recurrent=builtin_recurrent,
        traced_via=trace.via, sample_rows=rows, trace_error=trace.error, notes=notes,
    )


def check_model(model: nn.Module, sample_input: Any = None, loss_fn: Any = None, targets: Any = None,
                optimizer: Any = None) -> Report:
    """Check activations, initialization and regularization before training; verdict None."""
    facts = inspect_model(model, sample_input=sample_input, loss_fn=loss_fn, targets=targets, optimizer=optimizer)
    findings = diagnose_evidence(Evidence(model=facts)).findings
    reg = facts.regularization
    return Report(
        verdict=None, findings=findings, source=f"check_model({facts.model_class})",
        metadata={
            "model_class": facts.model_class, "n_parameters": facts.n_parameters,
            "traced_via": facts.traced_via, "sample_rows": facts.sample_rows, "notes": facts.notes,
            "output_activation": facts.output.activation, "loss": facts.loss.kind,
            "regularization": {"dropout": reg.dropout, "weight_decay": reg.weight_decay, "noise": reg.noise,
                               "batch_norm": [b["name"] for b in reg.batch_norm],
                               "label_smoothing": reg.label_smoothing},
            "layers": [{"name": layer.name, "activation": layer.activation, "scheme": layer.scheme,
                        "scale_ratio": layer.scale_ratio, "act_rms": layer.act_rms} for layer in facts.layers],
        },
    )
