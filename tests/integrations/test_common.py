"""The framework-free pieces the integrations share."""
import math

import torch

from lossdoctor.integrations._common import CurveRecorder, regularization_findings


def test_recorder_sorts_steps_averages_repeats_and_keeps_nan_visible():
    recorder = CurveRecorder()
    recorder.add("train_loss", 2, 1.0)
    recorder.add("train_loss", 1, 3.0)
    recorder.add("train_loss", 2, float("nan"))  # two values at step 2, one of them NaN
    recorder.add("grad_norm", 0, torch.tensor(2.0))  # tensors wait on their device until flushed
    recorder.add("grad_norm", 0, torch.tensor(4.0))
    curves = recorder.to_curves("run", "test")
    assert list(curves.train.steps) == [1.0, 2.0]
    assert curves.train.values[0] == 3.0 and math.isnan(curves.train.values[1])
    assert list(curves.get("grad_norm").values) == [3.0]


def test_high_dropout_is_a_finding_only_when_the_run_does_not_fit():
    rates = {"drop1": 0.9, "drop2": 0.1}
    finding, = regularization_findings(rates, "underfitting", source="test")
    assert finding.code == "model.regularization_too_strong" and finding.severity == "warning"
    assert finding.evidence["dropout_rates"] == {"drop1": 0.9}
    assert regularization_findings(rates, "converging", source="test") == []
    assert regularization_findings({"drop": 0.2}, "stalled", source="test") == []
