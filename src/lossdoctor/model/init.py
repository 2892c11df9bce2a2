"""Initialization schemes: the scale each layer's weights should have, and ``apply_init``.

The expected standard deviation of a weight matrix with fan-in ``n_in`` and fan-out ``n_out``:

- he_normal (ReLU family; He et al. 2015): ``sqrt(2 / n_in)`` keeps the activation variance
  constant through ReLU layers, which zero half their inputs;
- lecun_normal (SELU, tanh, and linear outputs; LeCun et al. 1998): ``sqrt(1 / n_in)``;
- glorot_normal (sigmoid/softmax outputs; Glorot & Bengio 2010): ``sqrt(2 / (n_in + n_out))``.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn

from ..errors import InputError

RELU_FAMILY = {"relu", "relu6", "leaky_relu", "prelu", "rrelu", "elu", "celu", "gelu", "silu", "mish",
               "hardswish", "softplus"}
GLOROT_ACTIVATIONS = {"sigmoid", "hardsigmoid", "softmax", "log_softmax", "logsigmoid", "glu"}
SCHEMES = ("he_normal", "lecun_normal", "glorot_normal")
SCHEME_ALIASES = {"he": "he_normal", "kaiming": "he_normal", "kaiming_normal": "he_normal",
                  "lecun": "lecun_normal", "glorot": "glorot_normal", "xavier": "glorot_normal",
                  "xavier_normal": "glorot_normal"}
# the layers whose weights apply_init and the scale check handle: dense and convolutional
INIT_LAYER_TYPES = (nn.Linear, nn.modules.conv._ConvNd)


def scheme_for(activation: str | None) -> str:
    """The initializer that fits the activation applied to a layer's output."""
    if activation in RELU_FAMILY:
        return "he_normal"
    if activation in GLOROT_ACTIVATIONS:
        return "glorot_normal"
    return "lecun_normal"  # SELU, tanh and its kin, and linear (no activation) outputs


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) with PyTorch's convention: dim 1 (x kernel) in, dim 0 (x kernel) out."""
    if weight.dim() < 2:
        return int(weight.numel()), int(weight.numel())
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    return int(weight.shape[1] * receptive), int(weight.shape[0] * receptive)


def expected_std(scheme: str, fan_in: int, fan_out: int) -> float:
    if scheme == "he_normal":
        return math.sqrt(2.0 / fan_in)
    if scheme == "lecun_normal":
        return math.sqrt(1.0 / fan_in)
    if scheme == "glorot_normal":
        return math.sqrt(2.0 / (fan_in + fan_out))
    raise InputError(f"unknown init scheme {scheme!r}; one of {', '.join(SCHEMES)} or 'auto'")


def _canonical(scheme: str) -> str:
    scheme = SCHEME_ALIASES.get(scheme, scheme)
    if scheme not in SCHEMES:
        raise InputError(f"unknown init scheme {scheme!r}; one of {', '.join(SCHEMES)} or 'auto'")
    return scheme


def apply_init(model: nn.Module, scheme: str | Mapping[str, str] = "auto", sample_input=None) -> nn.Module:
    """Re-initialize the Linear and Conv layers of ``model`` in place, and return it.

    ``scheme="auto"`` picks per layer from the activation observed after it (on ``sample_input``
    when given, else on a synthetic batch, a torch.fx trace or the order of declaration):
    he_normal after ReLU-family activations, lecun_normal after SELU/tanh or none (a linear
    output), glorot_normal before sigmoid/softmax. A single name ("he_normal", "lecun_normal",
    "glorot_normal") applies to every layer; a dict {layer name: scheme} to the named layers only.
    Biases are set to zero. Weights are drawn from torch's global RNG, like ``torch.nn.init``.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"apply_init expects a torch.nn.Module, got {type(model).__name__}")
    layers = {name: m for name, m in model.named_modules() if isinstance(m, INIT_LAYER_TYPES)}
    if not layers:
        raise InputError(f"apply_init: {type(model).__name__} has no Linear or Conv layer to initialize")
    if isinstance(scheme, Mapping):
        unknown = sorted(set(scheme) - set(layers))
        if unknown:
            raise InputError(f"apply_init: no Linear/Conv layer named {', '.join(unknown)}; "
                             f"layers: {', '.join(layers)}")
        plan = {name: _canonical(s) for name, s in scheme.items()}
    elif scheme == "auto":
        from .inspect import inspect_model

        facts = inspect_model(model, sample_input=sample_input)
        by_name = {layer.name: layer for layer in facts.layers}
        plan = {name: scheme_for(by_name[name].activation) if name in by_name else "lecun_normal"
                for name in layers}
    else:
        plan = {name: _canonical(scheme) for name in layers}
    with torch.no_grad():
        for name, scheme_name in plan.items():
            weight = layers[name].weight
            fan_in, fan_out = fans(weight)
            weight.normal_(0.0, expected_std(scheme_name, fan_in, fan_out))
            if getattr(layers[name], "bias", None) is not None:
                layers[name].bias.zero_()
    return model
