"""Short logs and evaluation-rich logs from a real (tiny) Hugging Face Trainer on digits.

A log with one row per epoch is judged when its points agree (and says it is short); one with 2
rows is insufficient and says how many are needed. A log with 3 training rows and 33 evaluations is
judged on its evaluations: converging for the healthy run, overfitting for shuffled labels.
"""
import numpy as np
import pytest
import torch

from lossdoctor import diagnose
from lossdoctor.curves import analyze_curves
from lossdoctor.curves.verdict import (
    CONFIDENCE_FULL,
    SHORT_DISAGREE_MIN_POINTS,
    SHORT_MIN_POINTS,
)
from lossdoctor.evidence import Curves
from lossdoctor.logs import read_runs


@pytest.fixture(scope="module")
def hf_logs(tmp_path_factory, digits_data, load_example):
    from transformers import Trainer, TrainingArguments

    hf = load_example("huggingface_example")
    root = tmp_path_factory.mktemp("hf_short")
    runs = {
        # one log row and one evaluation per epoch
        "epochs4": {"data": {}, "args": {"num_train_epochs": 4, "logging_strategy": "epoch", "eval_strategy": "epoch"}},
        "epochs2": {"data": {}, "args": {"num_train_epochs": 2, "logging_strategy": "epoch", "eval_strategy": "epoch"}},
        # 3 training rows, 33 evaluations
        "eval_heavy": {"data": {}, "args": {"max_steps": 330, "logging_steps": 110, "eval_strategy": "steps", "eval_steps": 10}},
        "eval_heavy_shuffled": {"data": {"small": True, "shuffle_labels": True}, "hidden": 256, "lr": 1e-2,
                                    "args": {"max_steps": 330, "logging_steps": 110, "eval_strategy": "steps", "eval_steps": 10}},
    }
    out = {}
    for name, spec in runs.items():
        Xtr, ytr, Xva, yva = digits_data(**spec["data"])
        torch.manual_seed(0)
        args = TrainingArguments(output_dir=str(root / name), learning_rate=spec.get("lr", 3e-3),
                                 per_device_train_batch_size=32, per_device_eval_batch_size=512, save_strategy="no",
                                 report_to="none", disable_tqdm=True, use_cpu=True, seed=0, dataloader_num_workers=0,
                                 **spec["args"])
        trainer = Trainer(model=hf.DigitsMLP(hf.DigitsConfig(hidden=spec.get("hidden", 64))), args=args,
                          train_dataset=hf.Digits(Xtr, ytr), eval_dataset=hf.Digits(Xva, yva))
        trainer.train()
        trainer.save_state()
        out[name] = root / name / "trainer_state.json"
    return out


def test_four_epochs_that_all_fall_converge_as_a_short_log(hf_logs):
    (curves,) = read_runs(hf_logs["epochs4"])
    assert len(curves.train) == 4 and len(curves.val) == 4
    assert np.all(np.diff(curves.train.values) < 0)  # the premise: every epoch lower
    report = diagnose(hf_logs["epochs4"])
    assert report.verdict == "converging" and report.exit_code == 0
    ev = report.metadata["curve_evidence"]
    assert ev["short_log"] is True and ev["n_points"] == 4
    assert ev["verdict_confidence"] < CONFIDENCE_FULL  # the confidence says it is short


def test_two_epochs_are_insufficient_and_say_how_many_points_are_needed(hf_logs):
    report = diagnose(hf_logs["epochs2"])
    assert report.verdict == "insufficient_data"
    ev = report.metadata["curve_evidence"]
    assert ev["n_points"] == 2 and ev["min_points"] == SHORT_MIN_POINTS
    assert f"at least {SHORT_MIN_POINTS}" in ev["problem"]


def test_three_points_that_disagree_are_insufficient(trainings):
    # three consecutive minibatch losses of the real healthy run that go down, then up
    loss = np.asarray(trainings["healthy"]["loss"])
    i = int(np.flatnonzero((np.diff(loss)[:-1] < 0) & (np.diff(loss)[1:] > 0))[0])
    curves = Curves(run="three", source="memory")
    curves.add("train_loss", [1, 2, 3], loss[i:i + 3])
    analysis = analyze_curves(curves)
    assert analysis.verdict == "insufficient_data"
    assert analysis.evidence["min_points"] == SHORT_DISAGREE_MIN_POINTS
    assert "disagree" in analysis.evidence["problem"]
    # the same run's first three logged points agree (all fall): a verdict, marked short
    agree = Curves(run="agree", source="memory")
    j = int(np.flatnonzero((np.diff(loss)[:-1] < 0) & (np.diff(loss)[1:] < 0))[0])
    agree.add("train_loss", [1, 2, 3], loss[j:j + 3])
    assert analyze_curves(agree).verdict == "converging" and analyze_curves(agree).evidence["short_log"] is True


def test_three_training_rows_beside_33_evaluations_are_judged_on_the_evaluations(hf_logs):
    (curves,) = read_runs(hf_logs["eval_heavy"])
    assert len(curves.train) == 3 and len(curves.val) == 33
    report = diagnose(hf_logs["eval_heavy"])
    assert report.verdict == "converging"
    ev = report.metadata["curve_evidence"]
    assert ev["loss"] == "val_loss" and "33 points" in ev["judged_on"]
    assert "short_log" not in ev


def test_shuffled_labels_with_three_training_rows_overfit_on_the_evaluations(hf_logs):
    (curves,) = read_runs(hf_logs["eval_heavy_shuffled"])
    val = curves.val.values
    report = diagnose(hf_logs["eval_heavy_shuffled"])
    assert report.verdict == "overfitting"
    ev = report.metadata["curve_evidence"]
    # the onset is the step of the real minimum evaluation, and its value a real evaluation
    assert ev["overfit_onset_step"] == curves.val.steps[int(np.argmin(val))]
    assert ev["val_best"] == pytest.approx(float(val.min()), rel=1e-5)
    assert ev["val_end"] > 1.5 * ev["val_best"]
