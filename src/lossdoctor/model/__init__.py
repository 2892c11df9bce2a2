"""Check a model before training: activations, initialization, regularization.

``check_model`` returns a Report (verdict None: no curves examined) with
``model.activation_mismatch`` and ``model.bad_init`` findings; ``inspect_model`` returns the plain
facts (layers, activations, weight and activation scales, regularization inventory) that
``checkup`` also reads; ``apply_init`` re-initializes Linear/Conv layers with the scheme their
activation needs.
"""
from __future__ import annotations

from . import checks  # noqa: F401 - registers the model checks
from .facts import (ActivationFacts, LayerFacts, LossFacts, ModelFacts, OutputFacts, RecurrentCellFacts,
                    RegularizationFacts, TargetFacts)
from .init import apply_init, expected_std, scheme_for
from .inspect import check_model, inspect_model

__all__ = ["check_model", "inspect_model", "apply_init", "scheme_for", "expected_std", "ModelFacts",
           "LayerFacts", "ActivationFacts", "OutputFacts", "LossFacts", "TargetFacts", "RegularizationFacts",
           "RecurrentCellFacts"]
