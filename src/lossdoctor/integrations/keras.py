"""lossdoctor for Keras 3: ``model.fit(..., callbacks=[LossDoctorCallback()])``.

What it does during ``fit``:

* before the first step, describes the compiled model as ``ModelFacts`` (:func:`keras_model_facts`:
  layers and their kernels, activations, the output layer, the loss and ``from_logits``, dropout,
  noise, normalization, weight decay), so that a Keras model goes through the same model checks as
  a PyTorch one (``model.activation_mismatch``: a softmax output into a ``from_logits=True`` loss, raw
  outputs into a loss that expects probabilities, ...; ``model.bad_init``: kernels far from the
  scale their activation needs, constant kernels), with remedies in Keras' own words
  (``from_logits=True``, ``kernel_initializer=...``);
* records the training loss of every batch, ``val_loss`` and the learning rate of every epoch;
  Keras logs the *running mean* of the epoch's loss per batch, and the callback recovers each
  batch's own loss from it (equal batch sizes assumed; only the last, smaller batch is approximate);
* after every epoch, looks for NaN/Inf weights (``grad.non_finite``, with the first such layer);
* with the torch backend, also watches the model with :func:`lossdoctor.watch` (a Keras model is a
  ``torch.nn.Module`` there);
* at the end of ``fit``, judges the curves, the watch's read-out, the model's facts and the run's
  facts (framework, optimizer, rate, clip, dropout, task and class count from the loss and the
  output width), and, given ``data=(x, y)`` (a callback cannot see the data ``fit`` receives), a
  seeded sample of at most 4,000 of its rows in the data room's checks, through the same registry and differential as every other entry point, keeps the
  Report as ``callback.report``, prints it, writes it as HTML/JSON when asked (``html=``, ``json=``),
  as text beside Keras' ``TensorBoard`` callback's logs when one is in the fit, and to the active
  Weights & Biases run.

Works with every Keras backend; the watch runs with the torch backend only. After a crash inside
``fit()`` Keras gives callbacks no event: call ``callback.close()`` (or fit inside ``with callback:``)
to take the watch's hooks off the model at once.
"""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..errors import InputError
from ..evidence import LEARNING_RATE, TRAIN_LOSS, VAL_LOSS, RunFacts
from ..findings import Finding, Report
from ..model.facts import (ActivationFacts, LayerFacts, LossFacts, ModelFacts, OutputFacts, RegularizationFacts)
from ..model.init import expected_std, scheme_for
from ._common import (
    CurveRecorder,
    WatchOwner,
    assemble_report,
    calling_instance,
    data_metadata,
    guarded,
    leave_report,
    output_path,
    require,
    start_watch,
    training_data_facts,
    write_tensorboard_text,
)

keras = require("keras", "lossdoctor[keras]")

# ------------------------------------------------------------------------------------------------
# Keras' words, in the model checks' vocabulary.

# Keras activation names -> the canonical names of the model checks (None: linear, no activation).
ACTIVATION_NAMES = {"linear": None, "hard_sigmoid": "hardsigmoid", "swish": "silu", "hard_silu": "hardswish",
                    "hard_swish": "hardswish", "log_sigmoid": "logsigmoid", "hard_tanh": "hardtanh"}
# Keras loss function names -> (LossFacts kind with from_logits, without), family, RunFacts loss.
# Keras' cross-entropies take probabilities unless from_logits=True.
LOSSES: dict[str, tuple[tuple[str | None, str | None], str | None, str]] = {
    "sparse_categorical_crossentropy": (("cross_entropy", None), "multiclass", "cross_entropy"),
    "categorical_crossentropy": (("cross_entropy", None), "multiclass", "cross_entropy"),
    "categorical_focal_crossentropy": (("cross_entropy", None), "multiclass", "cross_entropy"),
    "binary_crossentropy": (("bce_with_logits", "bce"), "binary", "bce"),
    "binary_focal_crossentropy": (("bce_with_logits", "bce"), "binary", "bce"),
    "mean_squared_error": (("mse", "mse"), "regression", "mse"),
    "mean_absolute_error": (("l1", "l1"), "regression", "l1"),
    "huber": (("huber", "huber"), "regression", "huber"),
    "log_cosh": (("other", "other"), "regression", "log_cosh"),
    "mean_squared_logarithmic_error": (("other", "other"), "regression", "msle"),
    "mean_absolute_percentage_error": (("other", "other"), "regression", "mape"),
}
TASKS = {"multiclass": "classification", "binary": "classification", "regression": "regression"}
# Layers that regularize by dropping or perturbing units: dropout rates and noise scales.
DROPOUT_LAYERS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout",
                  "GaussianDropout")
NOISE_LAYERS = ("GaussianNoise",)
NORMALIZATION_LAYERS = ("LayerNormalization", "GroupNormalization", "UnitNormalization", "RMSNormalization")
RECURRENT_LAYERS = ("LSTM", "GRU", "SimpleRNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")
# The output activation of a Dense/Conv output layer declared without one: raw scores, as declared.
DECLARED_LINEAR = "linear"
# Kernels below this many weights are skipped for their scale: their standard deviation means little
# (and the model checks ask nothing of a 1x1 or 2x1 kernel).
MIN_KERNEL_WEIGHTS = 16
# Rows of a kernel compared for duplicates (enough to catch symmetry, bounded for huge layers).
MAX_ROWS_FOR_DUPLICATES = 4096


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


def _all_layers(model: Any) -> list[Any]:
    """Every layer, nested models' layers included (after the nested model itself), in model order."""
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        found.extend(_all_layers(layer))
    return found


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
# The Keras model as ModelFacts: the same model checks as a PyTorch model, in Keras' words.


def _canonical_activation(name: str | None) -> str | None:
    return None if name is None else ACTIVATION_NAMES.get(name, name)


def _loss_class(loss_name: str) -> str:
    """sparse_categorical_crossentropy -> SparseCategoricalCrossentropy."""
    return "".join(part.capitalize() for part in loss_name.split("_"))


def _loss_facts(model: Any) -> tuple[LossFacts, str | None]:
    """The compiled loss (the first output's) as LossFacts, and its kind for RunFacts."""
    losses = [loss for loss in _losses(model) if loss is not None]
    if not losses:
        return LossFacts(), None
    loss = losses[0]
    name, from_logits = _describe_loss(loss)
    (with_logits, without), family, run_loss = LOSSES.get(name, ((None, None), None, name))
    config = loss.get_config() if isinstance(loss, keras.losses.Loss) else {}
    smoothing = config.get("label_smoothing") or 0.0
    if family in ("multiclass", "binary"):
        expects = "logits" if from_logits else "probabilities"
        shown = f"keras.losses.{_loss_class(name)}(from_logits={from_logits})"
    else:
        expects = "values" if family == "regression" else None
        shown = f"keras.losses.{_loss_class(name)}()"
    facts = LossFacts(kind=(with_logits if from_logits else without) or "other", name=shown, identified_by="adapter",
                      label_smoothing=float(smoothing), family=family, expects=expects)
    return facts, run_loss


def _next_layers(model: Any, layer: Any) -> list[Any]:
    """The layers that take ``layer``'s output (Sequential: the next one)."""
    if isinstance(model, keras.Sequential):
        layers = list(model.layers)
        i = layers.index(layer) if layer in layers else -1
        return layers[i + 1:i + 2] if i >= 0 else []
    return [node.operation for node in getattr(layer, "_outbound_nodes", []) or []
            if getattr(node, "operation", None) is not None]


def _applied_activation(model: Any, layer: Any) -> str | None:
    """The activation applied to a layer's output: its own ``activation=``, or a separate activation
    layer right after it (through dropout/reshape and normalization layers)."""
    own = _canonical_activation(_layer_activation(layer))
    if own is not None:
        return own
    current = layer
    for _ in range(4):  # Dense -> BatchNormalization -> Dropout -> ReLU at most
        following = _next_layers(model, current)
        if len(following) != 1:
            return None
        current = following[0]
        kind = type(current).__name__
        if kind in ("Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax"):
            return _canonical_activation("leaky_relu" if kind == "LeakyReLU" else _layer_activation(current)
                                         or kind.lower())
        if kind not in _PASS_THROUGH and kind not in ("BatchNormalization", *NORMALIZATION_LAYERS):
            return None
    return None


def _kernel_facts(model: Any, layer: Any, is_output: bool, fresh: bool) -> LayerFacts | None:
    """A Dense/Conv (or any kernel-holding) layer's weights, in Keras' layout: the kernel's last axis
    is its output units, the one before its inputs, any leading axes the receptive field."""
    kernel = getattr(layer, "kernel", None)
    if kernel is None or len(getattr(kernel, "shape", ())) < 2:
        return None
    w = _numpy(kernel).astype(np.float64)
    if w.size == 0 or not np.all(np.isfinite(w)):
        return None
    receptive = int(np.prod(w.shape[:-2])) if w.ndim > 2 else 1
    fan_in, fan_out = receptive * w.shape[-2], receptive * w.shape[-1]
    rows = np.moveaxis(w, -1, 0).reshape(w.shape[-1], -1)  # one row per output unit
    if rows.shape[0] > MAX_ROWS_FOR_DUPLICATES:
        rows = rows[np.linspace(0, rows.shape[0] - 1, MAX_ROWS_FOR_DUPLICATES).astype(int)]
    n_unique = int(np.unique(rows, axis=0).shape[0]) if rows.shape[0] > 1 else 1
    kind = type(layer).__name__
    op = "linear" if kind in ("Dense", "EinsumDense") else kind.lower()
    activation = _applied_activation(model, layer)
    # the model room's scale check applies to an untrained model's dense and conv kernels: a trained
    # kernel has moved from its initial scale on purpose
    checked = fresh and (op == "linear" or op.startswith("conv")) and w.size >= MIN_KERNEL_WEIGHTS
    facts = LayerFacts(
        name=layer.name, type=kind, op=op, weight_shape=list(w.shape), fan_in=fan_in, fan_out=fan_out,
        weight_rms=float(np.sqrt(np.mean(w ** 2))), weight_std=float(w.std()), weight_mean=float(w.mean()),
        all_zero=bool(np.all(w == 0)), constant=bool(np.all(w == w.flat[0])),
        duplicate_row_share=1.0 - n_unique / rows.shape[0], activation=activation, is_output=is_output,
        calls=1, scale_checked=checked)
    if checked:
        facts.scheme = scheme_for(activation)
        facts.expected_std = expected_std(facts.scheme, fan_in, fan_out)
        facts.scale_ratio = facts.weight_rms / facts.expected_std
    return facts


def _regularization(model: Any) -> RegularizationFacts:
    reg = RegularizationFacts()
    for layer in _all_layers(model):
        kind = type(layer).__name__
        rate = getattr(layer, "rate", None)
        if kind in DROPOUT_LAYERS and isinstance(rate, (int, float)):
            reg.dropout.append({"name": layer.name, "type": kind, "p": float(rate), "via": "layer"})
        elif kind in NOISE_LAYERS:
            reg.noise.append({"name": layer.name, "type": kind, "std": float(getattr(layer, "stddev", 0.0)),
                              "via": "layer"})
        elif kind == "BatchNormalization":
            reg.batch_norm.append({"name": layer.name, "type": kind, "momentum": float(layer.momentum)})
        elif kind in NORMALIZATION_LAYERS:
            reg.other_norm.append({"name": layer.name, "type": kind})
        if kind in RECURRENT_LAYERS:
            for attr in ("dropout", "recurrent_dropout"):
                p = getattr(layer, attr, 0.0) or 0.0
                if p > 0:
                    reg.dropout.append({"name": layer.name, "type": f"{kind}({attr}=)", "p": float(p),
                                        "via": "recurrent"})
        regularizer = getattr(layer, "kernel_regularizer", None)
        l2 = getattr(regularizer, "l2", None)
        if isinstance(l2, (int, float)) and l2 > 0:
            reg.weight_decay.append({"group": layer.name, "weight_decay": float(l2), "via": "kernel_regularizer",
                                     "decoupled": False})
    optimizer = getattr(model, "optimizer", None)
    decay = getattr(optimizer, "weight_decay", None)
    if isinstance(decay, (int, float)) and decay > 0:
        reg.weight_decay.append({"group": 0, "weight_decay": float(decay), "optimizer": type(optimizer).__name__,
                                 "decoupled": True, "via": "optimizer"})
    return reg


def keras_model_facts(model: Any, fresh: bool = True) -> ModelFacts:
    """A compiled Keras model as the framework-neutral ``ModelFacts`` the model checks read: its
    kernels (scale checked only while ``fresh``, i.e. before the first update), the activations,
    the output layer (activation, width), the compiled loss, and its regularizers. Observed by
    declaration (no forward pass): the output's observed range and the targets stay unknown."""
    outputs = _output_layers(model)
    output_layers = {layer.name for layer in outputs}
    notes = []
    if len(outputs) > 1:
        notes.append(f"{len(outputs)} outputs: the first ({outputs[0].name}) is described")
    output = OutputFacts(layers=sorted(output_layers))
    if outputs:
        activation, where = _output_activation(model, outputs[0])
        # a declared linear output is known to be raw scores (None would mean "not observed")
        output.activation = _canonical_activation(activation) or DECLARED_LINEAR
        output.activation_name = where
        output_layers.add(where)  # the layer under a dropout/reshape output is the output layer
        shape = getattr((getattr(model, "outputs", None) or [None])[0], "shape", None)
        if shape is not None:
            output.shape = [d if isinstance(d, int) else -1 for d in shape]
            output.width = shape[-1] if isinstance(shape[-1], int) else None
    layers, activations = [], []
    for layer in _all_layers(model):
        facts = _kernel_facts(model, layer, layer.name in output_layers, fresh)
        if facts is not None:
            layers.append(facts)
        activation = _canonical_activation(_layer_activation(layer))
        if activation is not None:
            activations.append(ActivationFacts(name=layer.name, op=activation, via="declaration", after=[layer.name]))
    loss, _ = _loss_facts(model)
    weights = list(getattr(model, "weights", []))
    trainable = list(getattr(model, "trainable_weights", []))
    return ModelFacts(
        model_class=type(model).__name__,
        n_parameters=int(sum(int(np.prod(w.shape)) for w in weights)),
        n_trainable=int(sum(int(np.prod(w.shape)) for w in trainable)),
        layers=layers, activations=activations, output=output, loss=loss, targets=None,
        regularization=_regularization(model), recurrent_cells=[],
        builtin_recurrent=[layer.name for layer in _all_layers(model) if type(layer).__name__ in RECURRENT_LAYERS],
        traced_via="declaration", notes=notes, framework="keras",
    )


def keras_run_facts(model: Any, facts: ModelFacts | None) -> RunFacts:
    """What the compiled model says of the run: optimizer, rate, clip, weight decay, dropout, and the
    task with its class count (from the loss and the output width: chance level = ln K)."""
    optimizer = getattr(model, "optimizer", None)
    lr = float(_numpy(optimizer.learning_rate)) if optimizer is not None else None
    clip = getattr(optimizer, "global_clipnorm", None)  # clipnorm/clipvalue clip each variable on its own
    decay = getattr(optimizer, "weight_decay", None)
    _, run_loss = _loss_facts(model)
    family = facts.loss.family if facts is not None else None
    width = facts.output.width if facts is not None else None
    num_classes = None
    if family == "multiclass" and width and width >= 2:
        num_classes = width
    elif family == "binary" and width == 1:
        num_classes = 2  # one yes/no unit: chance is ln 2
    inputs = None
    tensor = (getattr(model, "inputs", None) or [None])[0]
    if tensor is not None:
        if "int" in str(tensor.dtype):
            inputs = "token_ids"
        elif len(tensor.shape) == 4:
            inputs = "images"
        elif len(tensor.shape) == 2:
            inputs = "features"
    extra = {k: float(v) for k in ("clipnorm", "clipvalue") if isinstance(v := getattr(optimizer, k, None), (int, float))}
    return RunFacts(
        framework="keras", optimizer=type(optimizer).__name__ if optimizer is not None else None, lr=lr,
        grad_clip=float(clip) if isinstance(clip, (int, float)) else None,
        weight_decay=float(decay) if isinstance(decay, (int, float)) else None,
        dropout={k: v for k, v in dropout_rates(model).items() if v > 0}, task=TASKS.get(family),
        num_classes=num_classes, loss=run_loss, inputs=inputs, extra=extra)


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
        log_report: write the verdict and the finding to fix first beside the logs of a
            ``keras.callbacks.TensorBoard`` in the same fit (as text, in its ``train`` run).
        data: the training data ``(x, y)`` (arrays or tensors, as given to ``fit``): at the end of
            ``fit`` a seeded sample of it goes through the data room's checks (no signal, label
            noise, class imbalance, scales, NaN/Inf; a few seconds of CPU). A callback cannot see
            the data ``fit`` receives, so without it the data is not checked.
        html / json: paths to write the report to at the end of ``fit``.
        wandb: write the findings to the active Weights & Biases run, if any.
        **watch_kwargs: anything else ``lossdoctor.watch`` takes.
    """

    def __init__(self, every: int = 50, *, watch_model: bool = True, halt_on_nan: bool = False,
                 print_report: bool = True, log_report: bool = True, data: Any = None, html: str | None = None,
                 json: str | None = None, wandb: bool = True, **watch_kwargs: Any) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be a positive number of batches, got {every}")
        self.every, self.watch_model, self.halt_on_nan = int(every), watch_model, halt_on_nan
        self.print_report, self.log_report, self.watch_kwargs = print_report, log_report, watch_kwargs
        if data is not None and not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise InputError(f"data= must be the training data as (x, y), as given to fit(); got {type(data).__name__}")
        self.data = data
        self.html, self.json, self.wandb = output_path(html, "html"), output_path(json, "json"), bool(wandb)
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
        self._model_facts: ModelFacts | None = None
        self._tensorboard_dirs: list[str] = []

    @guarded("keras")
    def on_train_begin(self, logs: dict | None = None) -> None:
        self.report, self.halted_at = None, None
        self._reset()
        model = self.model
        callbacks = calling_instance(keras.callbacks.CallbackList)
        self._tensorboard_dirs = [os.path.join(os.fspath(cb.log_dir), "train")
                                  for cb in getattr(callbacks, "callbacks", [])
                                  if isinstance(cb, keras.callbacks.TensorBoard)]
        self._describe_model(model)
        if self.watch_model and keras.backend.backend() == "torch":
            self._watch = start_watch(model, None, every=self.every, **self.watch_kwargs)

    @guarded("keras")
    def _describe_model(self, model: Any) -> None:
        optimizer = getattr(model, "optimizer", None)
        fresh = optimizer is None or int(_numpy(optimizer.iterations)) == 0
        self._model_facts = keras_model_facts(model, fresh=fresh)

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
            self._watch.step(loss)  # one step per batch (the Keras optimizer is not a torch one)
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
                    where=first, source="integration:keras_weights",
                    remedy=("Lower the learning rate and check the inputs for NaN/Inf; the first NaN loss "
                            "step in the curves shows when it started."),
                ))

    @guarded("keras")
    def on_train_end(self, logs: dict | None = None) -> None:
        stats = self._watch.stats() if self._watch is not None else None
        self._close_watch()
        curves = self._recorder.to_curves(run=self.model.name, source="keras", meta={"format": "keras"})
        run = keras_run_facts(self.model, self._model_facts)
        metadata = {"framework": "keras", "backend": keras.backend.backend(), "steps": self._step + 1,
                    "halted_at_step": self.halted_at}
        data = None
        if self.data is not None:
            notes: list[str] = []
            data = training_data_facts(self.data, notes)
            metadata["data"] = data_metadata(data, notes)
        self.report = assemble_report(curves, stats, self._findings, source="keras", run=run,
                                      model=self._model_facts, data=data, metadata=metadata)
        if self.log_report:
            for log_dir in self._tensorboard_dirs:
                write_tensorboard_text(log_dir, self.report, self._step + 1)
        leave_report(self.report, html=self.html, json=self.json, wandb=self.wandb)
        if self.print_report:
            self.report.print()


__all__ = ["LossDoctorCallback", "keras_model_facts", "keras_run_facts", "non_finite_weights", "dropout_rates",
           "batch_loss_from_running_mean"]
