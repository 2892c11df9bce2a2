"""Check a model before training: activations, initialization, regularization.

``check_model`` returns a Report (verdict None: no curves examined) with
``model.activation_mismatch`` and ``model.bad_init`` findings; ``inspect_model`` returns the plain
facts (layers, activations, weight and activation scales, regularization inventory) that
``checkup`` also reads; ``apply_init`` re-initializes Linear/Conv layers with the scheme their
activation needs.

Names are imported on first use: the checks (``model.checks``) and the facts read plain data and
import no torch, so the log path stays torch-free; the inspector and ``apply_init`` need torch.
"""
from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "check_model": ".inspect", "inspect_model": ".inspect", "describe_targets": ".inspect", "apply_init": ".init", "scheme_for": ".init",
    "expected_std": ".init", "ModelFacts": ".facts", "LayerFacts": ".facts", "ActivationFacts": ".facts",
    "OutputFacts": ".facts", "LossFacts": ".facts", "TargetFacts": ".facts", "RegularizationFacts": ".facts",
    "RecurrentCellFacts": ".facts",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
