"""lossdoctor for Keras 3: ``model.fit(..., callbacks=[LossDoctorCallback()])``.

What it does during ``fit``:

* before the first step, checks the compiled model: the output activation against the loss
  (``model.activation_mismatch``: softmax/sigmoid output into a loss with ``from_logits=True`` is a
  double softmax; raw outputs into a loss that expects probabilities; a bounded output on a
  regression loss; sigmoid/tanh after conv layers), and each kernel's initial scale against its
  fan-in (``model.bad_init``: an order of magnitude off He / LeCun / Glorot, or constant weights);
* records the training loss of every batch, ``val_loss`` and the learning rate of every epoch;
  Keras logs the *running mean* of the epoch's loss per batch, and the callback recovers each
  batch's own loss from it (equal batch sizes assumed; only the last, smaller batch is approximate);
* after every epoch, looks for NaN/Inf weights (``grad.non_finite``, with the first such layer);
* with the torch backend, also watches the model with :func:`lossdoctor.watch` (a Keras model is a
  ``torch.nn.Module`` there);
* at the end of ``fit``, judges the curves like ``lossdoctor diagnose``, adds the model findings
  and the dropout check (``model.regularization_too_strong``), keeps the Report as
  ``callback.report`` and prints it.

Works with every Keras backend; the watch runs with the torch backend only.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..evidence import LEARNING_RATE, TRAIN_LOSS, VAL_LOSS, RunFacts
from ..findings import Finding, Report
from ._common import CurveRecorder, WatchOwner, assemble_report, guarded, require, start_watch

keras = require("keras", "lossdoctor[keras]")

# ------------------------------------------------------------------------------------------------
# Activation against loss.

# Output activations that squash into [0, 1] (what a probability loss expects, and what a loss with
# from_logits=True must not get).
PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid", "log_softmax")
# Output activations whose range is bounded (below or on both sides): on a regression loss they fit
# only targets inside their range (e.g. ReLU cannot output the negative half of a standardized target).
BOUNDED_ACTIVATIONS = ("sigmoid", "tanh", "relu", "softmax", "hard_sigmoid", "relu6", "softplus", "elu")
# The seed: "the output of convolutional layer should be activated by ReLu"; these saturate instead.
SATURATING_ACTIVATIONS = ("sigmoid", "tanh", "hard_sigmoid")
# Loss names (Keras function names) that treat the targets as real values.
REGRESSION_LOSSES = ("mean_squared_error", "mean_absolute_error", "huber", "log_cosh",
                     "mean_squared_logarithmic_error", "mean_absolute_percentage_error")

# ------------------------------------------------------------------------------------------------
# Initial weight scale.

# A kernel's standard deviation more than 10x away from every standard initializer for its fan-in
# and fan-out (He sqrt(2/fan_in), LeCun sqrt(1/fan_in), Glorot sqrt(2/(fan_in+fan_out))) is off by
# an order of magnitude: activations shrink or grow by that factor in every such layer.
INIT_SCALE_FACTOR = 10.0
# Kernels smaller than this hold too few weights for their standard deviation to mean much.
INIT_MIN_WEIGHTS = 16


def _numpy(value: Any) -> np.ndarray:
    """A Keras variable or tensor as numpy, on any backend."""
    if isinstance(value, keras.Variable):
        value = value.value  # the backend tensor
    if hasattr(value, "detach"):  # torch: Keras's own conversion goes through a deprecated numpy path
        return value.detach().cpu().double().numpy()
    return np.asarray(keras.ops.convert_to_numpy(value))


def _name(fn: Any) -> str:
    if fn is None:
        return "linear"
    return str(getattr(fn, "__name__", None) or getattr(fn, "name", None) or type(fn).__name__).lower()


def _layer_activation(layer: Any) -> str | None:
    """The activation a layer applies to its output, by Keras name (None if it applies none)."""
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    if isinstance(layer, keras.layers.ReLU):
        return "relu"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    return _name(activation)


def _output_layers(model: Any) -> list[Any]:
    """The layers producing the model's outputs (Sequential: the last layer)."""
    outputs = getattr(model, "outputs", None) or []
    layers = []
    for tensor in outputs:
        history = getattr(tensor, "_keras_history", None)
        if history is not None:
            layers.append(history.operation)
    if not layers and getattr(model, "layers", None):
        layers = [model.layers[-1]]
    return layers


# Layers that pass their input through unchanged in value range (walked over to find the activation).
_PASS_THROUGH = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
                 "GaussianNoise", "AlphaDropout", "Reshape", "Flatten", "Identity")


def _output_activation(model: Any, layer: Any) -> tuple[str, str]:
    """(activation, layer name) of an output layer, looking through dropout/reshape layers."""
    current = layer
    while type(current).__name__ in _PASS_THROUGH:
        previous = _previous_layer(model, current)
        if previous is None:
            break
        current = previous
    return _layer_activation(current) or "linear", current.name


def _previous_layer(model: Any, layer: Any) -> Any:
    layers = getattr(model, "layers", [])
    if isinstance(model, keras.Sequential):
        i = layers.index(layer) if layer in layers else -1
        return layers[i - 1] if i > 0 else None
    node = layer._inbound_nodes[0] if getattr(layer, "_inbound_nodes", None) else None
    parents = getattr(node, "parent_nodes", None) or []
    return parents[0].operation if len(parents) == 1 else None


def _losses(model: Any) -> list[Any]:
    loss = getattr(model, "loss", None)
    if isinstance(loss, dict):
        return list(loss.values())
    if isinstance(loss, (list, tuple)):
        return list(loss)
    return [loss] if loss is not None else []


def _describe_loss(loss: Any) -> tuple[str, bool]:
    """(Keras function name of the loss, from_logits)."""
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        config = loss.get_config()
        fn = getattr(loss, "fn", None)
        name = _name(fn) if fn is not None else str(config.get("name") or type(loss).__name__).lower()
        return name, bool(config.get("from_logits", False))
    return _name(loss), False  # a loss function: Keras's take probabilities by default


def activation_findings(model: Any) -> list[Finding]:
    """Output activation against the compiled loss, and saturating activations after conv layers."""
    findings: list[Finding] = []
    losses = _losses(model)
    outputs = _output_layers(model)
    for layer, loss in zip(outputs, losses if len(losses) == len(outputs) else losses[:1] * len(outputs)):
        if loss is None:
            continue
        loss_name, from_logits = _describe_loss(loss)
        activation, where = _output_activation(model, layer)
        evidence = {"output_activation": activation, "loss": loss_name, "from_logits": from_logits}
        if "crossentropy" in loss_name and from_logits and activation in PROBABILITY_ACTIVATIONS:
            findings.append(Finding(
                "model.activation_mismatch", "error", 0.9,
                title=f"Double {activation}: the output layer applies {activation} and {loss_name} "
                      "(from_logits=True) applies it again",
                evidence=evidence, where=where, source="keras:model",
                remedy=(f"Remove the {activation} from layer {where!r} (activation=None) and keep "
                        f"from_logits=True; apply {activation} only when you need probabilities at prediction."),
            ))
        elif "crossentropy" in loss_name and not from_logits and activation not in PROBABILITY_ACTIVATIONS:
            findings.append(Finding(
                "model.activation_mismatch", "error", 0.85,
                title=f"{loss_name} expects probabilities but layer {where!r} outputs raw values ({activation})",
                evidence=evidence, where=where, source="keras:model",
                remedy=(f"Pass from_logits=True to the loss (keras.losses.{_loss_class(loss_name)}"
                        "(from_logits=True)) and keep the output linear."),
            ))
        elif loss_name in REGRESSION_LOSSES and activation in BOUNDED_ACTIVATIONS:
            findings.append(Finding(
                "model.activation_mismatch", "info", 0.4,
                title=f"A bounded output activation ({activation}) on a regression loss ({loss_name})",
                evidence=evidence, where=where, source="keras:model",
                remedy=(f"Unless every target lies inside {activation}'s range, use a linear output on "
                        f"layer {where!r} (activation=None) and standardize the targets."),
            ))
    for layer in _all_layers(model):
        if "Conv" in type(layer).__name__:
            activation = _layer_activation(layer)
            if activation in SATURATING_ACTIVATIONS:
                findings.append(Finding(
                    "model.activation_mismatch", "warning", 0.5,
                    title=f"Conv layer {layer.name!r} uses {activation}, which saturates",
                    evidence={"layer": layer.name, "activation": activation}, where=layer.name,
                    source="keras:model",
                    remedy=f"Use activation='relu' on {layer.name!r} (ReLU-family after conv layers).",
                ))
    return findings


def _loss_class(loss_name: str) -> str:
    """sparse_categorical_crossentropy -> SparseCategoricalCrossentropy."""
    return "".join(part.capitalize() for part in loss_name.split("_"))


def _all_layers(model: Any) -> list[Any]:
    """Every layer, nested models' layers included (after the nested model itself), in model order."""
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        found.extend(_all_layers(layer))
    return found


def _kernel_layers(model: Any) -> list[tuple[Any, np.ndarray]]:
    """Dense and conv layers with their kernel as numpy, in model order."""
    out = []
    for layer in _all_layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is None or len(getattr(kernel, "shape", ())) < 2:
            continue
        out.append((layer, _numpy(kernel).astype(np.float64)))
    return out


def init_scale_findings(model: Any) -> list[Finding]:
    """Kernels whose initial scale is an order of magnitude off every standard initializer, or constant."""
    findings: list[Finding] = []
    kernels = _kernel_layers(model)
    for i, (layer, w) in enumerate(kernels):
        if w.size < INIT_MIN_WEIGHTS or not np.all(np.isfinite(w)):
            continue
        receptive = int(np.prod(w.shape[:-2])) if w.ndim > 2 else 1
        fan_in, fan_out = receptive * w.shape[-2], receptive * w.shape[-1]
        std = float(w.std())
        reference = {"he": math.sqrt(2.0 / fan_in), "lecun": math.sqrt(1.0 / fan_in),
                     "glorot": math.sqrt(2.0 / (fan_in + fan_out))}
        low, high = min(reference.values()), max(reference.values())
        evidence = {"std": std, "fan_in": fan_in, "fan_out": fan_out,
                    **{f"{k}_std": v for k, v in reference.items()}, "factor": INIT_SCALE_FACTOR}
        activation = _layer_activation(layer) or "linear"
        family = "he" if activation in ("relu", "leaky_relu", "relu6", "elu", "gelu", "silu") else "lecun"
        suggest = f"{family}_normal"
        if std == 0.0:
            if i == len(kernels) - 1:
                continue  # the seed: all-zero init is usual for a (final) logistic-regression layer
            findings.append(Finding(
                "model.bad_init", "error", 0.85,
                title=f"Layer {layer.name!r} starts with constant weights: its units stay identical",
                evidence=evidence, where=layer.name, source="keras:weights",
                remedy=f"Initialize {layer.name!r} randomly: kernel_initializer='{suggest}'.",
            ))
        elif std < low / INIT_SCALE_FACTOR or std > high * INIT_SCALE_FACTOR:
            direction = "small" if std < low else "large"
            findings.append(Finding(
                "model.bad_init", "warning", 0.7,
                title=f"Layer {layer.name!r} starts {std / (low if std < low else high):.2g}x too {direction} "
                      f"for its fan-in {fan_in}",
                evidence=evidence, where=layer.name, source="keras:weights",
                remedy=f"Use kernel_initializer='{suggest}' on {layer.name!r} (std {reference[family]:.3g}).",
            ))
    return findings


def non_finite_weights(model: Any) -> tuple[str, list[str]] | None:
    """(first layer, all layers) whose weights hold NaN/Inf, in model order; None if all finite."""
    bad = []
    for layer in _all_layers(model):
        for weight in layer.weights if not getattr(layer, "layers", None) else []:
            if not np.all(np.isfinite(_numpy(weight))):
                bad.append(layer.name)
                break
    return (bad[0], bad) if bad else None


def dropout_rates(model: Any) -> dict[str, float]:
    return {layer.name: float(layer.rate) for layer in _all_layers(model)
            if "Dropout" in type(layer).__name__ and isinstance(getattr(layer, "rate", None), (int, float))}


# ------------------------------------------------------------------------------------------------
# Per-batch loss from Keras's running mean.

# Keras keeps the epoch's running mean in float32 (unit roundoff 2**-24). Recovering batch k's loss as
# (k+1) m_k - k m_(k-1) cancels digits: the error is a few roundoffs of (k+1) |m_k|.
FLOAT32_ROUNDOFF = 2.0**-24
ROUNDOFF_MARGIN = 8.0  # rounding in the sum, the count and the division, twice over
# When the recovered loss would carry more than 1 % error (after a huge spike earlier in the epoch,
# whose value dominates the sum), the running mean itself is recorded for that batch instead.
MAX_RECOVERY_ERROR = 0.01


def batch_loss_from_running_mean(batch: int, mean: float, previous_mean: float | None) -> float:
    """Batch ``batch``'s own loss from the running means after it and before it (equal batch sizes)."""
    if batch == 0 or previous_mean is None or not (math.isfinite(mean) and math.isfinite(previous_mean)):
        return mean
    loss = (batch + 1) * mean - batch * previous_mean
    error = ROUNDOFF_MARGIN * FLOAT32_ROUNDOFF * (batch + 1) * max(abs(mean), abs(previous_mean))
    return loss if error <= MAX_RECOVERY_ERROR * abs(loss) else mean


# ------------------------------------------------------------------------------------------------


class LossDoctorCallback(WatchOwner, keras.callbacks.Callback):
    """Diagnose a Keras ``fit``; the Report is ``callback.report`` afterwards.

    Args:
        every: read out the watch every this many batches (torch backend).
        watch_model: with the torch backend, hook the model with :func:`lossdoctor.watch`.
        halt_on_nan: stop training once a batch loss is NaN/Inf.
        print_report: print the report at the end of ``fit``.
        **watch_kwargs: anything else ``lossdoctor.watch`` takes.
    """

    def __init__(self, every: int = 50, *, watch_model: bool = True, halt_on_nan: bool = False,
                 print_report: bool = True, **watch_kwargs: Any) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be a positive number of batches, got {every}")
        self.every, self.watch_model, self.halt_on_nan = int(every), watch_model, halt_on_nan
        self.print_report, self.watch_kwargs = print_report, watch_kwargs
        self.report: Report | None = None
        self.halted_at: int | None = None
        self._reset()

    def _reset(self) -> None:
        self._recorder = CurveRecorder()
        self._findings: list[Finding] = []
        self._step = -1  # 0-based index of the last batch (the watch's and Lightning's convention)
        self._previous_mean: float | None = None
        self._nan_weights_seen = False
        self._watch = None

    @guarded("keras")
    def on_train_begin(self, logs: dict | None = None) -> None:
        self.report, self.halted_at = None, None
        self._reset()
        model = self.model
        self._findings.extend(activation_findings(model))
        optimizer = getattr(model, "optimizer", None)
        fresh = optimizer is None or int(_numpy(optimizer.iterations)) == 0
        if fresh:  # a trained model has drifted from its initial scale on purpose
            self._findings.extend(init_scale_findings(model))
        if self.watch_model and keras.backend.backend() == "torch":
            self._watch = start_watch(model, None, every=self.every, **self.watch_kwargs)

    @guarded("keras")
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._previous_mean = None

    @guarded("keras")
    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._step += 1
        mean = (logs or {}).get("loss")
        if mean is None:
            return
        mean = float(mean)
        # Keras logs the running mean of the epoch: batch k's own loss is (k+1) m_k - k m_(k-1)
        loss = batch_loss_from_running_mean(batch, mean, self._previous_mean)
        self._previous_mean = mean
        self._recorder.add(TRAIN_LOSS, self._step, loss)
        if self._watch is not None:
            self._watch.step()  # the loss curve is judged from these logs; the watch adds the hooks' view
        if self.halt_on_nan and not math.isfinite(loss):
            self.model.stop_training = True
            self.halted_at = self._step

    @guarded("keras")
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if "val_loss" in logs:
            self._recorder.add(VAL_LOSS, self._step, float(logs["val_loss"]))
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            self._recorder.add(LEARNING_RATE, self._step,
                               float(_numpy(optimizer.learning_rate)))
        if not self._nan_weights_seen:
            bad = non_finite_weights(self.model)
            if bad is not None:
                self._nan_weights_seen = True
                first, layers = bad
                self._findings.append(Finding(
                    "grad.non_finite", "error", 0.8,
                    title=f"Weights of layer {first!r} became NaN/Inf by the end of epoch {epoch + 1}",
                    evidence={"epoch": epoch + 1, "last_step_of_epoch": self._step, "layers": layers},
                    where=first, source="keras:weights",
                    remedy=("Lower the learning rate and check the inputs for NaN/Inf; the first NaN loss "
                            "step in the curves shows when it started."),
                ))

    @guarded("keras")
    def on_train_end(self, logs: dict | None = None) -> None:
        stats = self._watch.stats() if self._watch is not None else None
        self._close_watch()
        curves = self._recorder.to_curves(run=self.model.name, source="keras", meta={"format": "keras"})
        optimizer = getattr(self.model, "optimizer", None)
        lr = float(_numpy(optimizer.learning_rate)) if optimizer is not None else None
        run = RunFacts(framework="keras", optimizer=type(optimizer).__name__ if optimizer is not None else None,
                       lr=lr, dropout={k: v for k, v in dropout_rates(self.model).items() if v > 0})
        self.report = assemble_report(
            curves, stats, self._findings, source="keras", run=run,
            metadata={"framework": "keras", "backend": keras.backend.backend(), "steps": self._step + 1,
                      "halted_at_step": self.halted_at})
        if self.print_report:
            self.report.print()




__all__ = ["LossDoctorCallback", "activation_findings", "init_scale_findings", "non_finite_weights",
           "dropout_rates"]
