"""LossDoctorCallback in real transformers.Trainer runs: a model built from a config (no download),
trained on scikit-learn's digits on CPU."""
from types import SimpleNamespace

import pytest
import torch

transformers = pytest.importorskip("transformers")
from sklearn.datasets import load_digits  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402

from lossdoctor import Report  # noqa: E402
from lossdoctor.integrations.huggingface import LossDoctorCallback, curves_from_log_history  # noqa: E402


@pytest.fixture(scope="module")
def hf(load_example):
    """The tiny config-built model and dataset of examples/huggingface_example.py."""
    return load_example("huggingface_example")


@pytest.fixture(scope="module")
def digits(hf):
    X, y = load_digits(return_X_y=True)
    X, y = torch.tensor(X / 16.0, dtype=torch.float32), torch.tensor(y)
    return SimpleNamespace(train=hf.Digits(X[:1400], y[:1400]), val=hf.Digits(X[1400:], y[1400:]), example=hf)


def train(digits, tmp_path, lr, optim="adamw_torch", warmup_steps=60, max_grad_norm=0.0, steps=250, report_to=(),
          callbacks=(), **callback_kwargs):
    """A linear warm-up to ``lr`` over ``warmup_steps``, then constant."""
    callback = LossDoctorCallback(print_report=False, **callback_kwargs)
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=32, learning_rate=lr,
        optim=optim, lr_scheduler_type="constant_with_warmup", warmup_steps=warmup_steps,
        max_grad_norm=max_grad_norm, logging_steps=5, eval_strategy="steps", eval_steps=25, save_strategy="no",
        report_to=list(report_to), use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, seed=0,
    )
    model = digits.example.DigitsMLP(digits.example.DigitsConfig())
    trainer = Trainer(model=model, args=args, train_dataset=digits.train, eval_dataset=digits.val,
                      callbacks=[callback, *callbacks])
    trainer.train()
    return callback, trainer


def test_divergence_right_after_warm_up_is_reported_as_a_too_high_learning_rate(digits, tmp_path):
    callback, _ = train(digits, tmp_path, lr=1.0)  # AdamW: the loss falls during warm-up, then breaks
    report = callback.report
    assert isinstance(report, Report)
    assert report.verdict == "diverging"
    finding = next(f for f in report.findings if f.code == "optim.lr_too_high")
    assert finding.severity == "error"
    assert finding.evidence["warmup_end_step"] == pytest.approx(60, abs=5)  # read from the LR schedule
    assert report.metadata["warmup_steps"] == 60


def test_same_schedule_at_a_sound_peak_learning_rate_is_clean(digits, tmp_path):
    callback, _ = train(digits, tmp_path, lr=0.01)
    report = callback.report
    assert report.verdict == "converging", report.to_text()
    assert report.warnings() == []
    assert {"train_loss", "val_loss", "lr", "grad_norm"} <= set(report.plots["curves"])
    assert report.plots["curves"]["train_loss"]["steps"][:3] == [1, 2, 3]  # every step's loss, not logged means
    assert len(report.plots["curves"]["train_loss"]["steps"]) == 250
    assert report.metadata["run"]["lr"] == 0.01 and report.metadata["run"]["num_classes"] == 10
    assert report.metadata["watch"]["instrumented_steps"] >= 4  # the model's hooks ran (every 50 of 250 steps)


def test_tiny_max_grad_norm_is_reported_as_clipping_masking_the_learning_rate(digits, tmp_path):
    callback, _ = train(digits, tmp_path, lr=0.5, optim="sgd", max_grad_norm=0.01, steps=120)
    assert callback.report.has("optim.clipping_masks_lr", "warning")


def test_log_history_becomes_curves_with_the_warm_up_in_meta():
    history = [
        {"loss": 2.3, "grad_norm": 1.5, "learning_rate": 0.01, "epoch": 0.1, "step": 5},
        {"eval_loss": 2.1, "epoch": 0.1, "step": 5},
        {"loss": 1.9, "grad_norm": 1.2, "learning_rate": 0.02, "epoch": 0.2, "step": 10},
        {"train_runtime": 1.0, "train_loss": 2.1, "epoch": 0.2, "step": 10},  # the run's summary, not a point
    ]
    curves = curves_from_log_history(history, meta={"warmup_steps": 10})
    assert list(curves.train.values) == [2.3, 1.9]
    assert list(curves.val.steps) == [5.0]
    assert list(curves.get("lr").values) == [0.01, 0.02]
    assert curves.meta["warmup_steps"] == 10
    assert len(curves_from_log_history([]).series) == 0  # nothing logged yet: empty, not an error


def test_the_report_goes_to_the_trainers_tensorboard_run_as_text_and_to_html_and_json(digits, tmp_path):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    callback, _ = train(digits, tmp_path / "out", lr=1.0, steps=120, report_to=["tensorboard"],
                        html=tmp_path / "report.html", json=tmp_path / "report.json")
    report = callback.report
    runs = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "out"))
    runs.Reload()
    texts = [runs.Tensors(run, "lossdoctor/report/text_summary")[-1].tensor_proto.string_val[0].decode()
             for run, tags in runs.Runs().items() if "lossdoctor/report/text_summary" in tags["tensors"]]
    assert len(texts) == 1  # in the Trainer's own TensorBoard run directory
    assert f"**verdict:** `{report.verdict}`" in texts[0] and f"**fix first:** `{report.top.code}`" in texts[0]
    assert any("train/loss" in tags["scalars"] for tags in runs.Runs().values())  # the Trainer's run, same dir
    assert Report.from_json((tmp_path / "report.json").read_text()).codes == report.codes
    assert report.top.code in (tmp_path / "report.html").read_text()


def test_the_findings_go_to_the_wandb_run_the_trainer_reports_to(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)  # whatever wandb writes relative to the working directory stays in tmp
    import wandb

    try:
        callback, _ = train(digits, tmp_path / "out", lr=1.0, steps=120, report_to=["wandb"])
        run = wandb.run
        assert run.summary["lossdoctor/verdict"] == callback.report.verdict
        assert run.summary["lossdoctor/top_finding"] == callback.report.top.code
        table = wandb_table(run.dir, "lossdoctor/findings")
        assert [row[1] for row in table["data"]] == callback.report.codes
    finally:
        wandb.finish()


def wandb_table(root, key):
    """The one wandb.Table logged under ``key`` (the watch inside the callback writes none of its
    own), read back from the offline run's files directory (``run.dir``)."""
    import json
    from pathlib import Path

    files = list(Path(root).rglob(f"media/table/{key}_*.table.json"))
    assert len(files) == 1, f"tables {key!r} under {root}: {files}"
    return json.loads(files[0].read_text())


def test_the_report_goes_to_the_mlflow_run_the_trainer_reports_to(digits, tmp_path, monkeypatch):
    import mlflow
    from mlflow.artifacts import load_text

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("lossdoctor", artifact_location=str(tmp_path / "artifacts"))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment)
    callback, _ = train(digits, tmp_path / "out", lr=0.01, steps=100, report_to=["mlflow"])
    (run,) = mlflow.search_runs(experiment_ids=[experiment], output_format="list")
    assert run.data.tags["lossdoctor/verdict"] == callback.report.verdict
    assert f"**verdict:** `{callback.report.verdict}`" in load_text(f"{run.info.artifact_uri}/lossdoctor/report.md")


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


def test_close_after_a_crash_inside_train_removes_every_hook(digits, tmp_path):
    """The Trainer gives callbacks no event on an exception: close() is the user's way to clean up."""
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise RuntimeError("the user's own callback failed")

    model = digits.example.DigitsMLP(digits.example.DigitsConfig())
    before = _hook_count(model)
    doctor = LossDoctorCallback(print_report=False, every=2)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=20, per_device_train_batch_size=32, report_to=[],
                             use_cpu=True, disable_tqdm=True, save_strategy="no")
    trainer = Trainer(model=model, args=args, train_dataset=digits.train, callbacks=[doctor, Crash()])
    with pytest.raises(RuntimeError, match="own callback"):
        trainer.train()
    assert _hook_count(model) > before  # the premise: the crash left the watch attached
    doctor.close()
    assert _hook_count(model) == before
    doctor.close()  # idempotent
    with pytest.raises(RuntimeError, match="own callback"), doctor:  # the same, as a context manager
        trainer.train()
    assert _hook_count(model) == before


# -- issue 15: live runs name the cause --------------------------------------------------------------


def test_a_warm_up_to_a_too_high_rate_names_the_rate_first_once_with_the_dead_units_under_it(digits, tmp_path):
    report = train(digits, tmp_path, lr=1.0)[0].report  # the example's run (healthy twin: lr 0.01, above)
    assert report.top.code == "optim.lr_too_high"
    assert report.codes.count("optim.lr_too_high") == 1
    for symptom in report.findings[1:]:
        if symptom.code in ("grad.dead_relu", "model.logit_overflow", "grad.exploding"):
            assert symptom.explained_by == "optim.lr_too_high", symptom


def train_bert(hf, tmp_path, lr):
    """The example's tiny BERT on digits as tokens: AdamW, linear decay, the Trainer's default clip."""
    callback = LossDoctorCallback(print_report=False)
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=300, per_device_train_batch_size=32, learning_rate=lr, warmup_steps=10,
        logging_steps=5, eval_strategy="steps", eval_steps=25, save_strategy="no", report_to=[], use_cpu=True,
        disable_tqdm=True, seed=0,
    )
    assert args.max_grad_norm == 1.0  # the Trainer's default clip, not set by the test
    train_set, val_set = hf.digits_datasets(tokens=True)
    Trainer(model=hf.tiny_bert(), args=args, train_dataset=train_set, eval_dataset=val_set,
            callbacks=[callback]).train()
    return callback.report


def test_a_tiny_bert_at_a_far_too_high_rate_names_the_rate_and_its_saturated_pooler(hf, tmp_path):
    report = train_bert(hf, tmp_path, lr=1.0)  # the loss climbs to ~10x chance level, then falls back to it
    assert report.verdict != "converging"  # it blew up to several times chance level and came back to it
    assert report.metadata["curve_evidence"]["chance_level"] == pytest.approx(2.3026, abs=1e-3)  # ln 10 labels
    assert report.top.code == "optim.lr_too_high" and report.codes.count("optim.lr_too_high") == 1
    pooler = [f for f in report.findings if f.where and "pooler" in f.where]
    assert pooler and {f.code for f in pooler} == {"grad.saturated_activation"}  # tanh: saturated, not "dead ReLU"
    assert all(f.explained_by == "optim.lr_too_high" for f in pooler)
    assert "LeakyReLU" not in pooler[0].remedy


def test_a_healthy_tiny_bert_under_the_default_clip_is_clean(hf, tmp_path):
    report = train_bert(hf, tmp_path, lr=5e-3)
    assert report.verdict == "converging", report.to_text()
    assert report.warnings() == []  # the default max_grad_norm=1.0 firing on a healthy run is not a fault
    assert all(f.severity == "info" for f in report.findings if f.code == "optim.clipping_masks_lr")
