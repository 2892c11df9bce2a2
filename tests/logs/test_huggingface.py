"""Hugging Face trainer_state.json from a real (tiny) Trainer run on a model built from a config."""
import json

import numpy as np
import pytest
import torch

from lossdoctor import diagnose
from lossdoctor.logs import read_runs


@pytest.fixture(scope="module")
def hf_runs(tmp_path_factory, digits_data, load_example):
    from transformers import Trainer, TrainingArguments

    hf = load_example("huggingface_example")  # the tiny config-built model of the example
    Xtr, ytr, Xva, yva = digits_data()
    root = tmp_path_factory.mktemp("hf")
    out = {}
    # healthy: AdamW 3e-3; too high: SGD warmed up over 40 steps to lr 3 (no clipping to hide it)
    for name, kwargs in {"healthy": dict(learning_rate=3e-3),
                         "lr_too_high": dict(learning_rate=3.0, optim="sgd", warmup_steps=40,
                                             lr_scheduler_type="constant_with_warmup", max_grad_norm=0.0)}.items():
        torch.manual_seed(0)
        args = TrainingArguments(
            output_dir=str(root / name), max_steps=240, per_device_train_batch_size=32, logging_steps=4,
            eval_strategy="steps", eval_steps=24, per_device_eval_batch_size=512, save_strategy="steps",
            save_steps=120, report_to="none", disable_tqdm=True, use_cpu=True, seed=0,
            dataloader_num_workers=0, **kwargs)
        config = hf.DigitsConfig(num_labels=10)  # saved in each checkpoint's config.json (id2label)
        trainer = Trainer(model=hf.DigitsMLP(config), args=args, train_dataset=hf.Digits(Xtr, ytr),
                          eval_dataset=hf.Digits(Xva, yva))
        trainer.train()
        trainer.save_state()
        out[name] = root / name
    return root, out


def test_trainer_state_reads_loss_eval_loss_lr_and_grad_norm(hf_runs):
    _, out = hf_runs
    state = json.loads((out["healthy"] / "trainer_state.json").read_text())
    logged = [e for e in state["log_history"] if "loss" in e]
    (curves,) = read_runs(out["healthy"] / "trainer_state.json")
    assert curves.meta["format"] == "huggingface" and curves.run == "healthy"
    np.testing.assert_allclose(curves.train.values, [e["loss"] for e in logged])
    assert len(curves.val) == 240 // 24
    assert "lr" in curves.series
    assert ("grad_norm" in curves.series) == ("grad_norm" in logged[0])
    # the summary entry (train_runtime, average train_loss) is not a point on the curve
    assert curves.train.steps[-1] <= 240 and len(curves.train) == len(logged)


def test_output_dir_gives_one_run_from_the_top_level_state_not_the_checkpoints(hf_runs):
    root, out = hf_runs
    assert (out["healthy"] / "checkpoint-120" / "trainer_state.json").exists()
    runs = read_runs(root)
    assert sorted(c.run for c in runs) == ["healthy", "lr_too_high"]
    assert all(c.source.endswith("trainer_state.json") and "checkpoint" not in c.source for c in runs)


def test_a_checkpoint_dir_alone_reads_the_latest_checkpoint(hf_runs, tmp_path):
    _, out = hf_runs
    import shutil

    for ck in ("checkpoint-120", "checkpoint-240"):
        shutil.copytree(out["healthy"] / ck, tmp_path / "run" / ck)
    (curves,) = read_runs(tmp_path / "run")
    assert curves.run == "run" and "checkpoint-240" in curves.source


def test_healthy_trainer_run_converges_and_too_high_lr_is_blamed(hf_runs):
    _, out = hf_runs
    healthy = diagnose(out["healthy"] / "trainer_state.json")
    assert healthy.verdict == "converging" and healthy.warnings() == []
    bad = diagnose(out["lr_too_high"] / "trainer_state.json")
    assert bad.verdict in ("diverging", "non_finite")
    assert bad.has("optim.lr_too_high", "warning")
    assert bad.exit_code == 1


def test_the_number_of_classes_comes_from_the_models_config(hf_runs, tmp_path):
    _, out = hf_runs
    (curves,) = read_runs(out["healthy"] / "trainer_state.json")  # the top-level state: config in the checkpoints
    assert curves.meta["num_classes"] == 10 and "checkpoint-240" in curves.meta["num_classes_from"]
    (curves,) = read_runs(out["healthy"] / "checkpoint-120" / "trainer_state.json")
    assert curves.meta["num_classes"] == 10
    alone = tmp_path / "alone" / "trainer_state.json"  # the healthy twin: no config, no guess
    alone.parent.mkdir()
    alone.write_bytes((out["healthy"] / "trainer_state.json").read_bytes())
    (curves,) = read_runs(alone)
    assert "num_classes" not in curves.meta


@pytest.mark.parametrize("config", [
    {"architectures": ["GPT2LMHeadModel"], "id2label": {"0": "A", "1": "B", "2": "C"}},  # a language model
    {"problem_type": "multi_label_classification", "id2label": {"0": "A", "1": "B", "2": "C"}},
    {"problem_type": "regression", "num_labels": 1},
    {"model_type": "bert"},  # no labels saved: the 2-label default, which says nothing
])
def test_configs_whose_loss_is_not_over_the_labels_give_no_class_count(hf_runs, tmp_path, config):
    _, out = hf_runs
    state = tmp_path / "trainer_state.json"
    state.write_bytes((out["healthy"] / "trainer_state.json").read_bytes())
    (tmp_path / "config.json").write_text(json.dumps(config))
    (curves,) = read_runs(state)
    assert "num_classes" not in curves.meta


def test_list_valued_metrics_in_log_history_are_ignored(hf_runs, tmp_path):
    _, out = hf_runs
    state = json.loads((out["healthy"] / "trainer_state.json").read_text())
    for entry in state["log_history"]:
        if "eval_loss" in entry:
            entry["eval_thresholds"] = [0.25, 0.5, 0.75]
            entry["eval_report"] = {"f1": [0.5, 0.6]}
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps(state))
    (curves,) = read_runs(path)
    (plain,) = read_runs(out["healthy"] / "trainer_state.json")
    np.testing.assert_array_equal(curves.val.values, plain.val.values)
    assert "eval_thresholds" not in curves.series
