"""The framework-free pieces the integrations share."""
import math

import torch

from lossdoctor.integrations._common import CurveRecorder


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
