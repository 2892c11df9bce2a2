"""Model checks: pure functions of ModelFacts, registered with ``@check("model")``.

model.activation_mismatch: an output activation the loss does not expect, a bounded output on
regression targets outside its range, squashing activations after conv layers, custom recurrent
cells gating without sigmoid. model.bad_init: weight scales far from He / LeCun / Glorot for the
layer's fan-in, constant or symmetric weights, activation scales drifting through the layers.
"""
from __future__ import annotations

import math

from ..findings import Finding
from ..registry import check
from .facts import LayerFacts, ModelFacts

# The values each bounded output activation can take (gelu/silu/mish: their minimum).
OUTPUT_RANGES: dict[str, tuple[float, float]] = {
    "relu": (0.0, math.inf), "relu6": (0.0, 6.0), "softplus": (0.0, math.inf), "sigmoid": (0.0, 1.0),
    "hardsigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "hardtanh": (-1.0, 1.0), "softsign": (-1.0, 1.0),
    "softmax": (0.0, 1.0), "logsigmoid": (-math.inf, 0.0), "log_softmax": (-math.inf, 0.0),
    "elu": (-1.0, math.inf), "celu": (-1.0, math.inf), "selu": (-1.7581, math.inf),
    "gelu": (-0.1700, math.inf), "silu": (-0.2785, math.inf), "mish": (-0.3089, math.inf),
}
REGRESSION_LOSSES = {"mse", "l1", "huber", "smooth_l1"}
# More than 1% of the targets out of the output's reach: those can never be fitted, and the
# gradient for them pushes units into the flat part of the activation.
OUT_OF_RANGE_SHARE_LIMIT = 0.01
# Activations that squash: after a conv layer they saturate and slow training (ReLU-family is the norm).
SQUASHING = {"sigmoid", "tanh", "hardsigmoid", "hardtanh", "softsign"}
GATE_ACTIVATIONS = {"sigmoid", "hardsigmoid"}
# A weight RMS within 5x of the scheme's std is fine: PyTorch's default init (kaiming_uniform with
# a=sqrt(5)) sits at 0.41x He and 0.58x LeCun and trains well; 5x off per layer compounds to 5^depth.
WEIGHT_SCALE_FACTOR = 5.0
# Two orders of magnitude off: the layer's output is noise-level (or saturating) from the first step.
WEIGHT_SCALE_SEVERE_FACTOR = 100.0
# Activation RMS changing by more than 100x from the first hidden layer to the last at init: the
# signal (and the gradient back) vanishes or explodes with depth.
ACTIVATION_DRIFT_LIMIT = 100.0
# Half of a layer's units or more sharing one weight row: they receive identical gradients forever.
SYMMETRIC_ROWS_SEVERE_SHARE = 0.5


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _init_plan(layers: list[LayerFacts]) -> str:
    """'he_normal for fc1, fc2 (relu); lecun_normal for out (no activation)'."""
    plan: dict[tuple[str, str], list[str]] = {}
    for layer in layers:
        if layer.scheme:
            plan.setdefault((layer.scheme, layer.activation or "no activation"), []).append(layer.name)
    return "; ".join(f"{scheme} for {', '.join(names)} ({act})" for (scheme, act), names in plan.items())


def _where(names: list[str], limit: int = 6) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


# -- model.activation_mismatch -----------------------------------------------------------------
@check
def activation_before_loss(model: ModelFacts) -> list[Finding]:
    """Softmax before CrossEntropyLoss, sigmoid before BCEWithLogitsLoss, NLLLoss without log-probabilities."""
    loss, out = model.loss.kind, model.output
    act, where = out.activation, out.activation_name or _where(out.layers) or None
    observed = {"output_activation": act, "observed_via": model.traced_via, "loss": model.loss.name,
                "output_min": out.min, "output_max": out.max}
    if loss == "cross_entropy":
        if act == "softmax" or (act is None and out.probabilities):
            how = f"a {act} is applied" if act else "the outputs already sum to 1 per row"
            return [Finding(
                "model.activation_mismatch", "error", 0.95 if act else 0.8,
                title="Softmax applied before CrossEntropyLoss (double softmax)",
                evidence={**observed, "rows_sum_to_one": out.probabilities, "tolerance": 1e-3},
                where=where,
                remedy=f"CrossEntropyLoss applies log_softmax itself, and {how} at the output: remove the "
                       f"softmax from forward() and return raw logits; apply softmax only when you need "
                       "probabilities at prediction time.",
            )]
        if act == "log_softmax" or out.log_probabilities:
            return [Finding(
                "model.activation_mismatch", "info", 0.5,
                title="log_softmax applied before CrossEntropyLoss (redundant, harmless)",
                evidence={**observed, "logsumexp_zero": out.log_probabilities},
                where=where,
                remedy="CrossEntropyLoss already applies log_softmax; either return raw logits or switch to "
                       "NLLLoss, which expects log-probabilities.",
            )]
    if loss == "bce_with_logits" and act in ("sigmoid", "hardsigmoid"):
        return [Finding(
            "model.activation_mismatch", "error", 0.95,
            title="Sigmoid applied before BCEWithLogitsLoss",
            evidence=observed, where=where,
            remedy="BCEWithLogitsLoss applies the sigmoid itself: remove the sigmoid from forward() and "
                   "return raw logits (or keep it and use BCELoss, less stable numerically).",
        )]
    if loss == "nll" and act != "log_softmax" and not out.log_probabilities:
        if act is None and out.min is None:
            return []  # nothing observed: no sample, no activation in the trace
        fix = ("replace softmax with log_softmax" if act == "softmax"
               else "add log_softmax(dim=1) at the output, or use CrossEntropyLoss on the raw logits")
        return [Finding(
            "model.activation_mismatch", "error", 0.9 if act else 0.75,
            title="NLLLoss on outputs that are not log-probabilities",
            evidence={**observed, "logsumexp_zero": out.log_probabilities},
            where=where,
            remedy=f"NLLLoss takes -output[target] and expects log-probabilities: {fix}.",
        )]
    return []


@check
def bounded_output_on_regression(model: ModelFacts) -> list[Finding]:
    """A ReLU/sigmoid/tanh output when the targets go beyond its range."""
    act = model.output.activation
    if act not in OUTPUT_RANGES:
        return []
    targets = model.targets
    regression = model.loss.kind in REGRESSION_LOSSES or (
        model.loss.kind is None and targets is not None and not targets.integer_valued)
    if not regression:
        return []
    low, high = OUTPUT_RANGES[act]
    where = model.output.activation_name
    if targets is None or not targets.values:
        return [Finding(
            "model.activation_mismatch", "info", 0.4,
            title=f"Bounded output activation ({act}) on a regression loss",
            evidence={"output_activation": act, "range": [low, high], "loss": model.loss.name},
            where=where,
            remedy=f"{act} limits predictions to [{low}, {high}]: pass targets to check_model to verify they "
                   "fit, or drop the output activation for regression.",
        )]
    values = targets.values
    outside = sum(1 for v in values if v < low or v > high)
    share = outside / len(values)
    if share <= OUT_OF_RANGE_SHARE_LIMIT:
        return []
    return [Finding(
        "model.activation_mismatch", "error", min(0.95, 0.6 + share),
        title=f"The {act} output cannot reach {share:.0%} of the regression targets",
        evidence={"output_activation": act, "output_range": [low, high], "targets_min": targets.min,
                  "targets_max": targets.max, "share_outside": share, "threshold": OUT_OF_RANGE_SHARE_LIMIT,
                  "loss": model.loss.name},
        where=where,
        remedy=f"Remove the final {act} and predict with a linear output (targets span "
               f"[{_fmt(targets.min)}, {_fmt(targets.max)}], {act} only [{low}, {high}]); if the target must "
               "stay positive, predict log(target) or use softplus on a shifted target.",
    )]


@check
def squashing_after_conv(model: ModelFacts) -> list[Finding]:
    """Sigmoid/tanh after hidden conv layers (gates such as squeeze-excite excepted)."""
    bad = [layer for layer in model.layers if layer.op.startswith("conv") and layer.activation in SQUASHING
           and not layer.gate and not layer.is_output]
    if not bad:
        return []
    return [Finding(
        "model.activation_mismatch", "warning", 0.7,
        title="Conv layers followed by a squashing activation instead of a ReLU-family one",
        evidence={"layers": {layer.name: layer.activation for layer in bad}, "expected": "ReLU family"},
        where=_where([layer.name for layer in bad]),
        remedy=f"Use ReLU (or LeakyReLU/GELU) after {_where([layer.name for layer in bad])} and re-initialize "
               "them with he_normal (lossdoctor.model.apply_init(model)); sigmoid/tanh saturate and shrink the "
               "gradient at every conv layer.",
    )]


@check
def recurrent_gates_without_sigmoid(model: ModelFacts) -> list[Finding]:
    """A custom recurrent cell whose gating multiplications use no sigmoid at all."""
    findings = []
    for cell in model.recurrent_cells:
        if set(cell.gate_activations) & GATE_ACTIVATIONS:
            continue
        findings.append(Finding(
            "model.activation_mismatch", "warning", 0.7,
            title=f"Recurrent cell {cell.type} gates without sigmoid",
            evidence={"gate_activations": cell.gate_activations, "activations": cell.activations,
                      "calls_per_forward": cell.calls, "expected_gate": "sigmoid"},
            where=cell.name,
            remedy="Gates decide how much to let through and must lie in [0, 1]: apply sigmoid to the "
                   "input/forget/output (update/reset) gates and tanh only to the candidate state, or use "
                   "nn.LSTM / nn.GRU.",
        ))
    return findings


# -- model.bad_init -----------------------------------------------------------------------------
@check
def constant_or_symmetric_weights(model: ModelFacts) -> list[Finding]:
    """All-zero / constant weights, or units sharing one weight row: symmetry training cannot break."""
    hidden, output = [], []
    for layer in model.layers:
        if layer.constant or layer.duplicate_row_share > 0:
            (output if layer.is_output else hidden).append(layer)
    findings = []
    if hidden:
        severe = any(layer.constant or layer.duplicate_row_share >= SYMMETRIC_ROWS_SEVERE_SHARE for layer in hidden)
        findings.append(Finding(
            "model.bad_init", "error" if severe else "warning", 0.95 if severe else 0.7,
            title="Weights are all zero, constant, or repeat across units",
            evidence={layer.name: {"all_zero": layer.all_zero, "constant": layer.constant,
                                   "duplicate_row_share": layer.duplicate_row_share,
                                   "weight_std": layer.weight_std} for layer in hidden}
                     | {"threshold": "any repeated row; error at constant or >= 50% repeated"},
            where=_where([layer.name for layer in hidden]),
            remedy="Units with identical weights get identical gradients and never differentiate. "
                   f"Re-initialize randomly: lossdoctor.model.apply_init(model) ({_init_plan(hidden)}).",
        ))
    if output:
        findings.append(Finding(
            "model.bad_init", "info", 0.4,
            title="The output layer starts with constant (e.g. zero) weights",
            evidence={layer.name: {"all_zero": layer.all_zero, "constant": layer.constant} for layer in output},
            where=_where([layer.name for layer in output]),
            remedy="A zero-initialized output layer trains (its gradient does not depend on its weights), "
                   "so this is fine if intended; otherwise use " + (_init_plan(output) or "lecun_normal") + ".",
        ))
    return findings


@check
def weight_scale_off(model: ModelFacts) -> list[Finding]:
    """Weight RMS far from the He / LeCun / Glorot std for the layer's fan-in and activation."""
    off = [layer for layer in model.layers
           if layer.scale_checked and layer.scale_ratio is not None and not layer.constant
           and not (1 / WEIGHT_SCALE_FACTOR <= layer.scale_ratio <= WEIGHT_SCALE_FACTOR)]
    # a small output layer is a deliberate recipe (small logits at init); large ones saturate
    small_output = [layer for layer in off if layer.is_output and layer.scale_ratio < 1]
    off = [layer for layer in off if layer not in small_output]
    findings = []
    if off:
        worst = max(off, key=lambda layer: abs(math.log10(layer.scale_ratio)))
        severe = abs(math.log10(worst.scale_ratio)) >= math.log10(WEIGHT_SCALE_SEVERE_FACTOR)
        # normalization layers rescale activations after each block (transformers init at std 0.02
        # whatever the width): a moderate mis-scale is then advice, not a warning
        normalized = bool(model.regularization.batch_norm or model.regularization.other_norm)
        severity = "error" if severe else ("info" if normalized else "warning")
        findings.append(Finding(
            "model.bad_init", severity, 0.9 if severe else (0.4 if normalized else 0.7),
            title="Weights are initialized far from the scale their activation needs",
            evidence={"layers": {layer.name: {"weight_rms": layer.weight_rms, "expected_std": layer.expected_std,
                                              "ratio": layer.scale_ratio, "scheme": layer.scheme,
                                              "fan_in": layer.fan_in, "activation": layer.activation}
                                 for layer in off},
                      "allowed_ratio": [1 / WEIGHT_SCALE_FACTOR, WEIGHT_SCALE_FACTOR],
                      "normalization_layers": normalized},
            where=_where([layer.name for layer in off]),
            remedy=f"Re-initialize with lossdoctor.model.apply_init(model): {_init_plan(off)}. "
                   f"{worst.name} is at {_fmt(worst.scale_ratio)}x the {worst.scheme} std "
                   f"({_fmt(worst.weight_rms)} vs {_fmt(worst.expected_std)} for fan-in {worst.fan_in}).",
        ))
    if small_output:
        findings.append(Finding(
            "model.bad_init", "info", 0.3,
            title="The output layer starts small",
            evidence={layer.name: {"ratio": layer.scale_ratio, "scheme": layer.scheme} for layer in small_output},
            where=_where([layer.name for layer in small_output]),
            remedy="Small output weights give small logits at init, a common deliberate choice; if the loss "
                   f"starts slowly, use {_init_plan(small_output)}.",
        ))
    return findings


@check
def activation_scale_drift(model: ModelFacts) -> list[Finding]:
    """Activation RMS at init shrinking or growing by orders of magnitude from layer to layer."""
    hidden = [layer for layer in model.layers if not layer.is_output and layer.act_rms is not None
              and layer.calls <= 1 and math.isfinite(layer.act_rms)]
    if len(hidden) < 2:
        return []
    first, last = hidden[0].act_rms, hidden[-1].act_rms
    if first <= 0 and last <= 0:
        return []
    ratio = (last / first) if first > 0 else math.inf
    if 1 / ACTIVATION_DRIFT_LIMIT <= ratio <= ACTIVATION_DRIFT_LIMIT:
        return []
    direction = "shrink" if ratio < 1 else "grow"
    return [Finding(
        "model.bad_init", "warning", 0.75,
        title=f"Activations {direction} by {_fmt(max(ratio, 1 / ratio) if ratio > 0 else math.inf)}x through "
              "the layers at init",
        evidence={"activation_rms": {layer.name: layer.act_rms for layer in hidden}, "ratio_last_to_first": ratio,
                  "limit": ACTIVATION_DRIFT_LIMIT},
        where="activations",
        remedy=f"Re-initialize with lossdoctor.model.apply_init(model) ({_init_plan(hidden)}) so each layer "
               "keeps the activation scale; add normalization or residual connections for deep stacks.",
    )]
