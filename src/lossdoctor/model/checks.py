"""Model checks: pure functions of ModelFacts, registered with ``@check("model")``.

model.activation_mismatch: an output layer that does not fit the loss or the targets (one check
reads the output activation, its width, the loss and the targets together), squashing activations
after conv layers, custom recurrent cells gating without sigmoid. model.bad_init: weight scales far from He / LeCun / Glorot for the
layer's fan-in, constant or symmetric weights, activation scales drifting through the layers.
"""
from __future__ import annotations

import math
import statistics

from ..data.checks import CATEGORY_CODE_LEVELS
from ..evidence import Curves
from ..findings import Finding
from ..registry import check
from .facts import LayerFacts, ModelFacts, TargetFacts

# The values each bounded output activation can take (gelu/silu/mish: their minimum).
OUTPUT_RANGES: dict[str, tuple[float, float]] = {
    "relu": (0.0, math.inf), "relu6": (0.0, 6.0), "softplus": (0.0, math.inf), "sigmoid": (0.0, 1.0),
    "hardsigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "hardtanh": (-1.0, 1.0), "softsign": (-1.0, 1.0),
    "softmax": (0.0, 1.0), "logsigmoid": (-math.inf, 0.0), "log_softmax": (-math.inf, 0.0),
    "elu": (-1.0, math.inf), "celu": (-1.0, math.inf), "selu": (-1.7581, math.inf),
    "gelu": (-0.1700, math.inf), "silu": (-0.2785, math.inf), "mish": (-0.3089, math.inf),
}
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


# -- model.activation_mismatch: the output layer against the loss and the targets ---------------
# Activations that squeeze their outputs into a band no wider than 2 (sigmoid, softmax, tanh, ...):
# used as logits, scores that cannot differ by more than 2 cap the top probability at
# e^2 / (e^2 + K - 1) (0.45 for 10 classes), however long the model trains. (ReLU6's band of 6
# leaves 0.98: unusual, not a fault.)
SQUEEZE_WIDTH = 2.0
BOUNDED = {act for act, (low, high) in OUTPUT_RANGES.items() if high - low <= SQUEEZE_WIDTH}
PROBABILITY_ACTIVATIONS = {"softmax", "sigmoid", "hardsigmoid"}
# Whole-number targets fed to a regression loss look like class ids when they are the codes 0..K-1
# (or 1..K) of a few classes: the same rule that calls a feature column "categories stored as
# numbers" (data.checks.CATEGORY_CODE_LEVELS). Counts and ages (many levels, or not starting at
# 0/1) stay regression targets.

# The words of each remedy in the framework the model was written in.
_WORDS = {
    "pytorch": {
        "raw": "return the last layer's raw output from forward() (no {act} on it)",
        "multiclass": "nn.CrossEntropyLoss() on the raw logits (class ids as torch.long)",
        "binary": "nn.BCEWithLogitsLoss() on the raw logits (float 0/1 targets, one column per label)",
        "log_probs": "F.log_softmax(logits, dim=1) at the output",
        "probs_binary": "torch.sigmoid at the output",
        "regression": "nn.MSELoss() on a linear output",
        "classifier_head": "one output unit per class (nn.Linear(hidden, {k}))",
        "binary_head": "one output unit per label (nn.Linear(hidden, labels))",
        "reinit": "lossdoctor.model.apply_init(model)",
        "relu": "ReLU (or LeakyReLU/GELU)",
    },
    "keras": {
        "raw": "set activation=None on the output layer (no {act})",
        "multiclass": "keras.losses.SparseCategoricalCrossentropy(from_logits=True) (CategoricalCrossentropy"
                      "(from_logits=True) for one-hot targets)",
        "binary": "keras.losses.BinaryCrossentropy(from_logits=True) (0/1 targets, one column per label)",
        "log_probs": "a softmax output with a probability loss (from_logits=False)",
        "probs_binary": "activation='sigmoid' on the output layer",
        "regression": "keras.losses.MeanSquaredError() on a linear output (activation=None)",
        "classifier_head": "one output unit per class (Dense({k}))",
        "binary_head": "one output unit per label (Dense(labels))",
        "reinit": "kernel_initializer=<scheme> on each layer named",
        "relu": "activation='relu' (or 'leaky_relu'/'gelu')",
    },
}


def _say(model: ModelFacts, key: str, **fmt: object) -> str:
    words = _WORDS.get(model.framework, _WORDS["pytorch"])
    return words[key].format(**fmt) if fmt else words[key]


def _effective_activation(model: ModelFacts) -> str | None:
    """The named output activation, or what the observed outputs are (a hand-written exp/sum is a softmax)."""
    out = model.output
    if out.activation:
        return out.activation
    if out.probabilities:
        return "softmax"
    if out.log_probabilities:
        return "log_softmax"
    return None


def _class_like(targets: TargetFacts | None) -> bool:
    """Class ids given to a loss that treats them as quantities."""
    if targets is None or targets.columns != 1:
        return False
    if targets.kind == "class_ids":
        return targets.n_unique >= CATEGORY_CODE_LEVELS[0]
    low, high = CATEGORY_CODE_LEVELS
    return (targets.kind == "integer_values" and targets.min in (0.0, 1.0) and low <= targets.n_unique <= high
            and targets.max - targets.min + 1 == targets.n_unique)


def _multiclass_floor(width: int, low: float, high: float) -> float:
    """The lowest cross-entropy logits confined to [low, high] can reach: the true class at ``high``,
    the others at ``low``."""
    return math.log1p((width - 1) * math.exp(-(high - low)))


@check
def output_layer_mismatch(model: ModelFacts) -> list[Finding]:
    """The output layer against the loss and the targets, read together: softmax over one unit,
    softmax on multi-label targets, a bounded activation (sigmoid, softmax, tanh) feeding a loss that
    applies its own softmax/sigmoid, raw scores into NLLLoss/BCELoss, a regression loss on class ids,
    a classification loss on a continuous target, a bounded output on regression targets it cannot
    reach. One finding: the most basic mismatch, with the layer and the loss to use."""
    out, loss, targets = model.output, model.loss, model.targets
    act, width = _effective_activation(model), out.width
    family, expects = loss.family, loss.expects
    where = out.activation_name or _where(out.layers) or None
    evidence = {"output_activation": act, "output_width": width, "loss": loss.name, "loss_family": family,
                "loss_expects": expects, "target_kind": targets.kind if targets else None,
                "observed_via": model.traced_via, "output_min": out.min, "output_max": out.max}
    if loss.error:
        evidence["loss_error"] = loss.error

    def finding(severity: str, confidence: float, title: str, rule: str, remedy: str, **more: object) -> list[Finding]:
        return [Finding("model.activation_mismatch", severity, confidence, title=title,
                        evidence={**evidence, **more, "threshold": rule}, where=where, remedy=remedy)]

    # 1. one output unit under a softmax: a constant 1 (log_softmax: 0) whatever the weights
    if width == 1 and (act in ("softmax", "log_softmax") or family == "multiclass"):
        inside = act not in ("softmax", "log_softmax")
        what = f"{loss.name} applies a softmax over" if inside else f"A {act} over"
        return finding(
            "error", 0.95, f"{what} a single output unit: the output is constant, nothing can be learned",
            "a softmax (in the model or the loss) over exactly 1 unit",
            f"A softmax over one unit is always 1 (the loss is {'0' if inside else 'constant'}, the gradient 0). "
            f"For a yes/no target keep one unit, {_say(model, 'raw', act=act or 'softmax')}, and use "
            f"{_say(model, 'binary')}; for K classes use {_say(model, 'classifier_head', k='K')} with "
            f"{_say(model, 'multiclass')}.")

    # 2. the targets say which task it is
    if targets is not None and family in ("multiclass", "binary"):
        # a binary loss takes any target in [0, 1] (soft labels); a multi-class one only class ids,
        # one-hot or probability rows
        continuous = family == "multiclass" and targets.kind == "continuous"
        out_of_unit = family == "binary" and (targets.min < 0 or targets.max > 1)
        if continuous or out_of_unit:
            return finding(
                "error", 0.9, f"A classification loss ({loss.name}) on a continuous target "
                f"(values {_fmt(targets.min)}..{_fmt(targets.max)})",
                "a multi-class loss on non-integer targets, or a binary one on targets outside [0, 1]",
                f"The target is a quantity, not a class: predict it with {_say(model, 'regression')} and a "
                "standardized target; if classes were meant, bin the target into class ids first "
                "(e.g. np.digitize) and keep the classification loss.",
                targets_min=targets.min, targets_max=targets.max, targets_unique=targets.n_unique)
    if family == "regression" and _class_like(targets):
        k = int(targets.max) + 1
        broadcast = width is not None and width > 1
        return finding(
            "error" if broadcast else "warning", 0.85 if broadcast else 0.7,
            f"{loss.name} on class ids ({targets.n_unique} classes)"
            + (f": each of the {width} outputs is compared with the class id" if broadcast else
               ": the model must predict the id as a number"),
            f"a regression loss on integer codes 0..K-1 with {CATEGORY_CODE_LEVELS[0]}..{CATEGORY_CODE_LEVELS[1]} "
            "levels", f"Class ids are not quantities (class 7 is not closer to 8 than to 1): use "
            f"{_say(model, 'classifier_head', k=k)} and {_say(model, 'multiclass')}.",
            classes=targets.n_unique, targets_min=targets.min, targets_max=targets.max)
    multi_label = targets is not None and targets.kind == "multi_hot"
    if multi_label and (act == "softmax" or family == "multiclass"):
        where_softmax = f"The {act} at the output" if act == "softmax" else f"The softmax inside {loss.name}"
        return finding(
            "error", 0.9, f"Softmax on multi-label targets ({targets.multi_hot_share:.0%} of the rows have "
            "several labels)", "a softmax over targets whose rows are not one-hot",
            f"{where_softmax} makes the labels compete (the outputs sum to 1), so a row with two labels or "
            f"none can never be fitted. Score each label on its own: {_say(model, 'raw', act='softmax')} and "
            f"use {_say(model, 'binary')}.", multi_hot_share=targets.multi_hot_share, label_columns=targets.columns)

    # 3. what the output is against what the loss expects
    if expects == "logits" and act in BOUNDED:
        low, high = OUTPUT_RANGES[act]
        more: dict[str, object] = {"output_range": [low, high]}
        if family == "multiclass":
            title = ("Softmax applied before " + str(loss.name) + " (double softmax)" if act == "softmax"
                     else f"A {act} output fed to {loss.name}, which applies its own softmax")
            if width and width > 1:
                more.update(loss_floor=_multiclass_floor(width, low, high), chance_loss=math.log(width))
        else:
            title = (f"Sigmoid applied before {loss.name} (double sigmoid)" if act in ("sigmoid", "hardsigmoid")
                     else f"A {act} output fed to {loss.name}, which applies its own sigmoid")
            more.update(loss_floor_for_zero_labels=math.log1p(math.exp(low)),
                        loss_floor_for_one_labels=math.log1p(math.exp(-high)))
        return finding(
            "error", 0.95 if out.activation else 0.8, title,
            "a bounded output activation before a loss that expects raw logits",
            f"{loss.name} applies the {'softmax' if family == 'multiclass' else 'sigmoid'} itself, so the model's "
            f"scores are squeezed into [{_fmt(low)}, {_fmt(high)}] and can never express a confident prediction: "
            f"{_say(model, 'raw', act=act)} and keep {_say(model, family or 'multiclass')}. Apply "
            f"{act} only at prediction time.", **more)
    if expects == "log_probabilities" and act != "log_softmax" and (act is not None or out.min is not None):
        fix = (f"replace the {act} with {_say(model, 'log_probs')}" if act == "softmax"
               else f"add {_say(model, 'log_probs')}, or use {_say(model, 'multiclass')} instead")
        return finding(
            "error", 0.9 if act else 0.75, f"{loss.name} on outputs that are not log-probabilities"
            + (f" ({act})" if act else " (raw scores)"), "NLL-type loss on outputs whose logsumexp is not 0",
            f"{loss.name} takes -output[target] and expects log-probabilities; on raw scores it drives them to "
            f"+infinity instead of learning: {fix}.", logsumexp_zero=out.log_probabilities)
    if expects == "probabilities":
        probability = act in PROBABILITY_ACTIVATIONS or (
            act is None and out.min is not None and out.min >= 0 and out.max is not None and out.max <= 1)
        if not probability and (act is not None or out.min is not None or loss.error):
            return finding(
                "error", 0.9 if (out.min is not None or loss.error) else 0.7,
                f"{loss.name} expects probabilities, the model outputs raw scores"
                + (f" (observed {_fmt(out.min)}..{_fmt(out.max)})" if out.min is not None else f" ({act})"),
                "a probability loss on outputs outside [0, 1]",
                f"Keep the output raw and use the loss that applies the "
                f"{'sigmoid' if family == 'binary' else 'softmax'} itself, stably: "
                f"{_say(model, 'binary' if family == 'binary' else 'multiclass')}"
                + (f" (or add {_say(model, 'probs_binary')})." if family == "binary" else "."))
        if family == "multiclass" and act in ("sigmoid", "hardsigmoid") and width and width > 1:
            return finding(
                "warning", 0.7, f"A sigmoid output fed to a multi-class {loss.name}",
                "a multi-class probability loss on outputs that need not sum to 1",
                f"Sigmoid scores each class on its own (they do not sum to 1); one class per row needs a softmax: "
                f"{_say(model, 'raw', act=act)} and use {_say(model, 'multiclass')}.")
    if expects == "logits" and family == "multiclass" and act == "log_softmax":
        return [Finding(
            "model.activation_mismatch", "info", 0.5,
            title=f"log_softmax applied before {loss.name} (redundant, harmless)",
            evidence={**evidence, "logsumexp_zero": out.log_probabilities, "threshold": "log_softmax before a "
                      "loss that applies log_softmax"}, where=where,
            remedy=f"{loss.name} already applies log_softmax; either return raw logits or use NLLLoss, which "
                   "expects log-probabilities.")]

    # 4. a bounded output on regression targets outside its range
    regression = family == "regression" or (family is None and targets is not None and targets.kind == "continuous")
    if regression and act in OUTPUT_RANGES:
        low, high = OUTPUT_RANGES[act]
        if targets is None or not targets.values:
            return [Finding(
                "model.activation_mismatch", "info", 0.4,
                title=f"Bounded output activation ({act}) on a regression loss",
                evidence={**evidence, "output_range": [low, high], "threshold": "targets unknown: pass targets"},
                where=where,
                remedy=f"{act} limits predictions to [{low}, {high}]: pass targets to check_model to verify they "
                       "fit, or drop the output activation for regression.")]
        values = targets.values
        share = sum(1 for v in values if v < low or v > high) / len(values)
        if share > OUT_OF_RANGE_SHARE_LIMIT:
            return [Finding(
                "model.activation_mismatch", "error", min(0.95, 0.6 + share),
                title=f"The {act} output cannot reach {share:.0%} of the regression targets",
                evidence={**evidence, "output_range": [low, high], "targets_min": targets.min,
                          "targets_max": targets.max, "share_outside": share, "threshold": OUT_OF_RANGE_SHARE_LIMIT},
                where=where,
                remedy=f"Remove the final {act} and predict with a linear output (targets span "
                       f"[{_fmt(targets.min)}, {_fmt(targets.max)}], {act} only [{low}, {high}]); if the target must "
                       "stay positive, predict log(target) or use softplus on a shifted target.")]
    return []


# -- the output layer against the observed loss values, when the loss itself is unknown ------------
# A cross-entropy that applies its own softmax to outputs that are already probabilities can never
# fall below _multiclass_floor(K, 0, 1) (1.46 for 10 classes): the batch losses form a floor no
# correct loss would show. A correct loss on a hard task can level off near that value too (a small
# network on CIFAR-10 sits near 1.5), so the values alone only make this a hypothesis to settle (an
# info finding naming the experiment), and only when every condition holds with a wide margin:
# enough losses seen; none below the floor (float32 means round by far less than 0.1 %); the loss
# travelled from the upper half of the chance-to-floor gap down to within a tenth of the gap of the
# floor (pinned against it, not merely passing by).
FLOOR_MIN_LOSSES = 50
FLOOR_ROUNDING = 1e-3
FLOOR_START_SHARE = 0.5
FLOOR_PINNED_SHARE = 0.1
# The loss's start and end levels: medians of its first and last tenth (at least 5 values).
LEVEL_SHARE = 0.1


def _level(values: list[float], first: bool) -> float:
    n = max(5, int(len(values) * LEVEL_SHARE))
    return statistics.median(values[:n] if first else values[-n:])


@check
def loss_pinned_at_a_double_softmax_floor(model: ModelFacts, curves: Curves) -> list[Finding]:
    """Probabilities at the output, the loss unknown, and the training loss pinned just above the
    floor of a cross-entropy applied to probabilities: a hypothesis (info), settled by naming the loss."""
    out, k = model.output, model.output.width
    if model.loss.family is not None or _effective_activation(model) != "softmax" or not k or k < 2:
        return []
    train = curves.train
    values = [float(v) for v in (train.values if train is not None else []) if math.isfinite(v)]
    if len(values) < FLOOR_MIN_LOSSES:
        return []
    floor, chance = _multiclass_floor(k, 0.0, 1.0), math.log(k)
    gap = chance - floor
    lowest, start, end = min(values), _level(values, True), _level(values, False)
    if lowest < floor * (1 - FLOOR_ROUNDING) or start < floor + FLOOR_START_SHARE * gap \
            or end > floor + FLOOR_PINNED_SHARE * gap:
        return []
    return [Finding(
        "model.activation_mismatch", "info", 0.45,
        title=(f"Not settled: the loss levels off at {_fmt(end)}, just above {_fmt(floor)}, the floor of a "
               f"cross-entropy applied to the model's {k} probabilities (a double softmax)"),
        evidence={"output_activation": "softmax", "output_width": k, "loss": None, "loss_floor": floor,
                  "chance_loss": chance, "lowest_loss": lowest, "start_level": start, "end_level": end,
                  "observed_via": model.traced_via,
                  "threshold": f"none below the floor, the end within {FLOOR_PINNED_SHARE:g} of the chance-to-floor "
                               f"gap above it, from {FLOOR_MIN_LOSSES} losses"},
        where=out.activation_name or _where(out.layers) or None,
        remedy=(f"The model ends in a softmax and the loss never went below {_fmt(floor)}. If the loss applies "
                f"its own softmax ({_say(model, 'multiclass')}), {_say(model, 'raw', act='softmax')}. Experiment "
                "that settles it: pass the loss to lossdoctor (lossdoctor.watch(..., loss_fn=criterion), "
                "check_model(..., loss_fn=criterion)), or train a few steps on raw logits: a loss that now falls "
                f"below {_fmt(floor)} confirms it."),
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
        evidence={"layers": {layer.name: layer.activation for layer in bad}, "expected": "ReLU family",
                  "threshold": f"any of {sorted(SQUASHING)} after a hidden conv layer, gates excepted"},
        where=_where([layer.name for layer in bad]),
        remedy=f"Use {_say(model, 'relu')} after {_where([layer.name for layer in bad])} and re-initialize "
               f"them with he_normal ({_say(model, 'reinit')}); sigmoid/tanh saturate and shrink the "
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
                      "calls_per_forward": cell.calls, "expected_gate": "sigmoid",
                      "threshold": f"no {' or '.join(sorted(GATE_ACTIVATIONS))} among the gates"},
            where=cell.name,
            remedy="Gates decide how much to let through and must lie in [0, 1]: apply sigmoid to the "
                   "input/forget/output (update/reset) gates and tanh only to the candidate state, or use "
                   "nn.LSTM / nn.GRU.",
        ))
    return findings


# -- model.bad_init -----------------------------------------------------------------------------
def _second_factor_of_a_low_rank_product(layers: list[LayerFacts], i: int) -> bool:
    """A zero layer right after a random linear bottleneck that feeds it (a LoRA adapter's B, a
    zero-initialized residual branch): the product starts as a zero update on purpose, and its
    gradient g (A x)^T differs per unit, so it learns. Both factors zero is the fault."""
    if i == 0 or not layers[i].all_zero:
        return False
    first = layers[i - 1]
    return (first.activation is None and not first.constant and first.fan_out == layers[i].fan_in
            and first.fan_out < first.fan_in)


@check
def constant_or_symmetric_weights(model: ModelFacts) -> list[Finding]:
    """All-zero / constant weights, or units sharing one weight row: symmetry training cannot break."""
    hidden, output = [], []
    for i, layer in enumerate(model.layers):
        if (layer.constant or layer.duplicate_row_share > 0) and not _second_factor_of_a_low_rank_product(
                model.layers, i):
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
                   f"Re-initialize randomly: {_say(model, 'reinit')} ({_init_plan(hidden)}).",
        ))
    if output:
        findings.append(Finding(
            "model.bad_init", "info", 0.4,
            title="The output layer starts with constant (e.g. zero) weights",
            evidence={layer.name: {"all_zero": layer.all_zero, "constant": layer.constant} for layer in output}
                     | {"threshold": "every weight of the output layer equal"},
            where=_where([layer.name for layer in output]),
            remedy="A zero-initialized output layer trains (its gradient does not depend on its weights), "
                   "so this is fine if intended; otherwise use " + (_init_plan(output) or "lecun_normal") + ".",
        ))
    return findings


# The confidence of a moderate weight-scale note on a model with normalization layers: below the curve
# and watch hints (0.2 and up), so that the standard 0.02 init of a transformer never outranks them.
NORMALIZED_SCALE_ADVICE_CONFIDENCE = 0.15


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
        # whatever the width): a moderate mis-scale is then advice, not a warning, ranked under every
        # hint about the run itself (the curve hints start at 0.2)
        normalized = bool(model.regularization.batch_norm or model.regularization.other_norm)
        severity = "error" if severe else ("info" if normalized else "warning")
        findings.append(Finding(
            "model.bad_init", severity, 0.9 if severe else (NORMALIZED_SCALE_ADVICE_CONFIDENCE if normalized else 0.7),
            title="Weights are initialized far from the scale their activation needs",
            evidence={"layers": {layer.name: {"weight_rms": layer.weight_rms, "expected_std": layer.expected_std,
                                              "ratio": layer.scale_ratio, "scheme": layer.scheme,
                                              "fan_in": layer.fan_in, "activation": layer.activation}
                                 for layer in off},
                      "ratio_limits": [1 / WEIGHT_SCALE_FACTOR, WEIGHT_SCALE_FACTOR],
                      "severe_ratio_limit": WEIGHT_SCALE_SEVERE_FACTOR,
                      "normalization_layers": normalized},
            where=_where([layer.name for layer in off]),
            remedy=f"Re-initialize with {_say(model, 'reinit')}: {_init_plan(off)}. "
                   f"{worst.name} is at {_fmt(worst.scale_ratio)}x the {worst.scheme} std "
                   f"({_fmt(worst.weight_rms)} vs {_fmt(worst.expected_std)} for fan-in {worst.fan_in}).",
        ))
    if small_output:
        findings.append(Finding(
            "model.bad_init", "info", 0.3,
            title="The output layer starts small",
            evidence={layer.name: {"ratio": layer.scale_ratio, "scheme": layer.scheme} for layer in small_output}
                     | {"ratio_limit": 1 / WEIGHT_SCALE_FACTOR},
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
        remedy=f"Re-initialize with {_say(model, 'reinit')} ({_init_plan(hidden)}) so each layer "
               "keeps the activation scale; add normalization or residual connections for deep stacks.",
    )]
