"""Remedies that fit the run: the framework that owns the watch (``RunFacts.framework``), the task,
and the user's own numbers (the rate now and the one to try). Plain text, no torch."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..evidence import RunFacts

REGRESSION_LOSSES = ("mse", "mae", "l1", "huber", "smooth_l1", "mean_squared_error", "mean_absolute_error")


def framework(run: "RunFacts | None") -> str:
    return (run.framework if run is not None and run.framework else "pytorch").lower()


def is_regression(run: "RunFacts | None") -> bool:
    if run is None:
        return False
    return run.task == "regression" or (run.loss or "").lower() in REGRESSION_LOSSES


def number(x: float) -> str:
    return f"{x:.2g}"


def lower_rate(rate: float | None, factor: float = 10.0) -> str:
    """'Lower the learning rate from 0.5 to about 0.05' (or '10x' when the rate is unknown)."""
    if rate is None or rate <= 0:
        return f"Lower the learning rate {factor:.0f}x"
    return f"Lower the learning rate from {number(rate)} to about {number(rate / factor)}"


def raise_rate(rate: float | None, factor: float) -> str:
    if rate is None or rate <= 0:
        return f"Raise the learning rate about {factor:.0f}x"
    return f"Raise the learning rate from {number(rate)} to about {number(rate * factor)}"


def stable_loss(run: "RunFacts | None") -> str:
    """How to keep exp() of the logits out of reach: the loss computes it stably from raw logits."""
    if is_regression(run):
        return ""
    if framework(run) == "keras":
        return ("give the loss raw scores (no softmax on the last layer, and from_logits=True in the loss), "
                "which computes the softmax stably")
    return "keep the softmax inside the loss (CrossEntropyLoss / log_softmax on raw logits)"


def standardize_inputs(run: "RunFacts | None", layer: str | None) -> str:
    where = f" before {layer!r}" if layer and layer != "model input" else ""
    if framework(run) == "keras":
        return (f"Standardize the inputs{where}: a keras.layers.Normalization() layer adapted on the training "
                "data (layer.adapt(x_train)), or scale images to [0, 1]")
    return (f"Standardize the inputs{where}: subtract the training set's per-feature mean and divide by its "
            "std (sklearn's StandardScaler, or torchvision.transforms.Normalize per image channel), fitted on "
            "the training split only")


def leaky_activation(run: "RunFacts | None") -> str:
    if framework(run) == "keras":
        return "activation='leaky_relu' (or 'elu')"
    return "nn.LeakyReLU(0.01) or nn.ELU()"


def tanh_sigmoid_init(run: "RunFacts | None") -> str:
    if framework(run) == "keras":
        return "kernel_initializer='glorot_uniform' (or 'lecun_normal')"
    return "Xavier/LeCun initialization (nn.init.xavier_uniform_)"


def master_weights(run: "RunFacts | None") -> str:
    if framework(run) == "keras":
        return ("keep float32 variables: keras.mixed_precision.set_global_policy('mixed_bfloat16') computes in "
                "bfloat16 and keeps the weights in float32")
    return ("keep float32 master weights: train the float32 model under torch.autocast(dtype=torch.bfloat16) "
            "instead of model.to(torch.bfloat16)")
