"""ModelFacts: what ``inspect_model`` observed, as plain data (no tensors, no modules).

The model checks read only this; ``checkup`` reads ``regularization`` to decide
``model.regularization_too_strong`` and ``grad.masked_by_batchnorm``.

The facts are framework-neutral: a PyTorch model is observed by ``inspect_model``, and an adapter
for another framework (Keras) fills the same fields. What the output-layer check reads:
``output.activation`` and ``output.width`` (and the observed ``min``/``max``/``probabilities`` when a
sample ran), ``loss.family`` and ``loss.expects`` (set from ``loss.kind`` for the PyTorch losses,
or directly by an adapter: Keras' ``CategoricalCrossentropy(from_logits=False)`` is family
``multiclass`` expecting ``probabilities``), ``targets`` (``kind``, range, values) and ``framework``
(so that the remedies name that framework's layers and losses).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LayerFacts:
    """A Linear / Conv / recurrent / embedding layer: its weights and what follows it."""

    name: str
    type: str  # the module class, e.g. "Linear"
    op: str  # linear, conv2d, lstm, embedding, ...
    weight_shape: list[int]
    fan_in: int
    fan_out: int
    weight_rms: float
    weight_std: float
    weight_mean: float
    all_zero: bool
    constant: bool  # every weight has the same value (zero included)
    duplicate_row_share: float  # share of output units whose weight row repeats another's
    activation: str | None = None  # the activation observed on this layer's output (None: linear)
    gate: bool = False  # that activation's output multiplies another tensor (a gate, e.g. squeeze-excite)
    scheme: str | None = None  # the initializer that fits `activation` (he_normal, lecun_normal, glorot_normal)
    expected_std: float | None = None
    scale_ratio: float | None = None  # weight_rms / expected_std
    scale_checked: bool = False  # Linear/Conv weights are checked against the scheme; others are not
    in_rms: float | None = None  # RMS of the layer's input on the sample batch
    out_rms: float | None = None  # RMS of its output (before the activation)
    act_rms: float | None = None  # RMS after its activation
    is_output: bool = False  # feeds the model's output without another layer in between
    calls: int = 0  # times it ran in one forward pass (>1: shared or recurrent)


@dataclass
class ActivationFacts:
    name: str  # module path, or "softmax() in <scope>" for a functional call
    op: str  # canonical: relu, sigmoid, softmax, ...
    via: str  # module | function | fx | declaration
    after: list[str] = field(default_factory=list)  # the layers whose output it takes
    gate: bool = False
    out_min: float | None = None
    out_max: float | None = None


@dataclass
class OutputFacts:
    shape: list[int] | None = None
    width: int | None = None  # output units per row (the class dimension); None when it is not evident
    activation: str | None = None  # the activation that produced the output (None: raw / linear)
    activation_name: str | None = None  # where it was applied
    min: float | None = None
    max: float | None = None
    rms: float | None = None
    probabilities: bool = False  # non-negative and summing to 1 along the class dimension
    log_probabilities: bool = False  # non-positive with logsumexp 0 along the class dimension
    layers: list[str] = field(default_factory=list)  # the output layer(s)


# What each known loss is for (its family) and what it expects the model's output to be:
# multiclass (one class per row, softmax over the units), binary (an independent yes/no per unit:
# binary or multi-label), regression (values), distribution (KL divergence to target distributions);
# logits (raw scores: the loss applies its own softmax/sigmoid), probabilities, log_probabilities,
# values.
LOSS_KINDS: dict[str, tuple[str, str]] = {
    "cross_entropy": ("multiclass", "logits"), "nll": ("multiclass", "log_probabilities"),
    "bce_with_logits": ("binary", "logits"), "bce": ("binary", "probabilities"),
    "mse": ("regression", "values"), "l1": ("regression", "values"), "huber": ("regression", "values"),
    "smooth_l1": ("regression", "values"), "kl_div": ("distribution", "log_probabilities"),
}


@dataclass
class LossFacts:
    kind: str | None = None  # cross_entropy, nll, bce_with_logits, bce, mse, l1, huber, smooth_l1, kl_div, other
    name: str | None = None
    identified_by: str | None = None  # type | function | traced | adapter
    label_smoothing: float = 0.0
    family: str | None = None  # multiclass | binary | regression | distribution (from kind when not given)
    expects: str | None = None  # logits | probabilities | log_probabilities | values (from kind when not given)
    value: float | None = None  # the loss of the untrained model on the sample and targets
    error: str | None = None  # what the loss raised on the sample's output and the targets

    def __post_init__(self) -> None:
        family, expects = LOSS_KINDS.get(self.kind or "", (None, None))
        self.family = self.family or family
        self.expects = self.expects or expects


@dataclass
class TargetFacts:
    shape: list[int]
    dtype: str
    min: float
    max: float
    integer_valued: bool
    n_unique: int
    values: list[float] = field(default_factory=list)  # up to MAX_TARGET_VALUES of them, for range checks
    # What the targets are, as observed: class_ids (an integer dtype, one id per row), binary (0/1, one
    # column), integer_values (whole numbers in a float dtype: counts, or class ids cast to float),
    # one_hot / multi_hot (0/1 rows with exactly one / sometimes several 1s), soft_labels (rows of
    # probabilities), continuous (anything else).
    kind: str | None = None
    columns: int = 1  # target values per row
    multi_hot_share: float = 0.0  # share of rows with more than one positive label
    mean: float | None = None
    std: float | None = None


@dataclass
class RegularizationFacts:
    """Every regularizer of the model and optimizer: the context for regularization_too_strong."""

    dropout: list[dict[str, Any]] = field(default_factory=list)  # {name, p, via}
    weight_decay: list[dict[str, Any]] = field(default_factory=list)  # {group, weight_decay, lr, n_params, optimizer, decoupled}
    noise: list[dict[str, Any]] = field(default_factory=list)  # {name, type, std}
    batch_norm: list[dict[str, Any]] = field(default_factory=list)  # {name, type, num_features, affine, momentum}
    other_norm: list[dict[str, Any]] = field(default_factory=list)  # LayerNorm, GroupNorm, ...
    label_smoothing: float = 0.0

    @property
    def max_dropout(self) -> float:
        return max((d["p"] for d in self.dropout), default=0.0)

    @property
    def max_weight_decay(self) -> float:
        return max((w["weight_decay"] for w in self.weight_decay), default=0.0)

    @property
    def has_batch_norm(self) -> bool:
        return bool(self.batch_norm)


@dataclass
class RecurrentCellFacts:
    """A custom recurrent cell: the activations whose outputs it multiplies with (its gates)."""

    name: str
    type: str
    calls: int
    gate_activations: list[str]  # canonical names, e.g. ["sigmoid", "sigmoid", "tanh", "sigmoid"]
    activations: dict[str, int]  # every activation used inside it, counted


@dataclass
class ModelFacts:
    model_class: str
    n_parameters: int
    n_trainable: int
    layers: list[LayerFacts]
    activations: list[ActivationFacts]
    output: OutputFacts
    loss: LossFacts
    targets: TargetFacts | None
    regularization: RegularizationFacts
    recurrent_cells: list[RecurrentCellFacts]
    builtin_recurrent: list[str]  # nn.LSTM / nn.GRU / nn.RNN layers: gates correct by construction
    traced_via: str  # sample | synthetic | fx | declaration
    sample_rows: int | None = None
    trace_error: str | None = None
    notes: list[str] = field(default_factory=list)
    framework: str = "pytorch"  # pytorch | keras: the vocabulary the remedies use

    def layer(self, name: str) -> LayerFacts | None:
        return next((layer for layer in self.layers if layer.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
