"""LossDoctorCallback in real Lightning runs on scikit-learn's diabetes and digits data (CPU)."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pl = pytest.importorskip("lightning.pytorch")
from sklearn.datasets import load_diabetes, load_digits  # noqa: E402

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from lossdoctor import Report  # noqa: E402
from lossdoctor.integrations.lightning import LossDoctorCallback  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class Regressor(pl.LightningModule):
    def __init__(self, lr: float):
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class DigitsClassifier(pl.LightningModule):
    def __init__(self, dropout: float = 0.0, lr: float | None = None):
        super().__init__()
        self.lr = lr  # None: Adam at 1e-3; else plain SGD at this rate
        layers = []
        for n_in in (64, 64):
            layers += [nn.Dropout(dropout), nn.Linear(n_in, 64), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Dropout(dropout), nn.Linear(64, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        if self.lr is None:
            return torch.optim.Adam(self.parameters(), lr=1e-3)
        return torch.optim.SGD(self.parameters(), lr=self.lr)


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    X = torch.tensor((X - X.mean(0)) / X.std(0), dtype=torch.float32)
    y = torch.tensor(y / 100.0, dtype=torch.float32)[:, None]
    return TensorDataset(X[:350], y[:350]), TensorDataset(X[350:], y[350:])


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return TensorDataset(torch.tensor(X / 16.0, dtype=torch.float32), torch.tensor(y))


def tensorboard_text(log_dir, tag="lossdoctor/report/text_summary") -> str:
    events = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    events.Reload()
    return events.Tensors(tag)[-1].tensor_proto.string_val[0].decode()


def fit(model, train, val=None, epochs=6, logger=False, every=20, print_report=False, halt_on_nan=False,
        callback_kwargs=None, **trainer_kwargs):
    torch.manual_seed(0)
    callback = LossDoctorCallback(every=every, print_report=print_report, halt_on_nan=halt_on_nan,
                                  **(callback_kwargs or {}))
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=logger, callbacks=[callback],
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         **trainer_kwargs)
    train_loader = DataLoader(train, batch_size=16, shuffle=True)
    trainer.fit(model, train_loader, DataLoader(val, batch_size=100) if val is not None else None)
    return callback, trainer


def test_far_too_high_learning_rate_is_reported_as_nan_with_its_module_and_the_learning_rate(diabetes, tmp_path):
    logger = pl.loggers.TensorBoardLogger(tmp_path, name="run")
    callback, _ = fit(Regressor(lr=1.0), *diabetes, logger=logger)
    report = callback.report
    assert isinstance(report, Report)
    assert report.verdict == "non_finite"
    assert report.has("optim.lr_too_high", "warning")
    nan = [f for f in report.findings if f.code == "grad.non_finite"]
    assert nan and nan[0].severity == "error"
    assert nan[0].where in ("net.0", "net.2")  # a layer of the user's model, named as in the model
    # the watch's step is the step of the logged loss curve's first NaN/Inf (Lightning steps through
    # optimizer.step(closure): the check must see that step's gradients, not the previous step's)
    curve = report.plots["curves"]["train_loss"]
    first_bad = next(s for s, v in zip(curve["steps"], curve["values"]) if not math.isfinite(v))
    assert nan[0].evidence["step"] == first_bad

    text = tensorboard_text(logger.log_dir)
    assert "**verdict:** `non_finite`" in text
    assert f"**fix first:** `{report.top.code}`" in text and "`grad.non_finite`" in text
    events = EventAccumulator(logger.log_dir)
    events.Reload()
    assert not [tag for tag in events.Tags()["scalars"] if tag.startswith("lossdoctor")]  # text, not metrics


def test_healthy_run_is_converging_clean_and_written_to_the_lightning_logger(diabetes, tmp_path, capsys):
    logger = pl.loggers.CSVLogger(tmp_path, name="run")
    callback, trainer = fit(Regressor(lr=0.03), *diabetes, logger=logger, print_report=True)
    report = callback.report
    assert report.verdict == "converging", report.to_text()
    assert report.warnings() == []
    assert {"train_loss", "val_loss", "lr", "grad_norm"} <= set(report.plots["curves"])
    assert "converging" in capsys.readouterr().out  # printed at the end of fit
    # the verdict goes into CSVLogger's hparams.yaml as text; no lossdoctor column that reads like a loss
    hparams = yaml.safe_load((Path(logger.log_dir) / "hparams.yaml").read_text())
    assert hparams["lossdoctor/verdict"] == "converging" and hparams["lossdoctor/top_finding"] == "none"
    header = (Path(logger.log_dir) / "metrics.csv").read_text().splitlines()[0]
    assert "lossdoctor" not in header and "val_loss" in header


def test_tiny_gradient_clip_val_is_reported_as_clipping_masking_the_learning_rate(diabetes):
    callback, _ = fit(Regressor(lr=0.03), *diabetes, gradient_clip_val=0.01)
    assert callback.report.has("optim.clipping_masks_lr", "warning")


def test_dropout_090_everywhere_is_reported_as_too_strong_regularization(digits):
    callback, _ = fit(DigitsClassifier(dropout=0.9), digits, epochs=3)
    report = callback.report
    assert report.verdict in ("underfitting", "stalled")
    finding = next(f for f in report.findings if f.code == "model.regularization_too_strong")
    assert finding.severity == "warning"
    assert len(finding.evidence["dropout_rates"]) == 3


def test_same_classifier_without_dropout_is_clean(digits):
    callback, _ = fit(DigitsClassifier(dropout=0.0), digits, epochs=3)
    assert callback.report.verdict == "converging"
    assert callback.report.warnings() == []


def test_halt_on_nan_stops_the_run_soon_after_the_loss_turns_nan(diabetes):
    callback, trainer = fit(Regressor(lr=1.0), *diabetes, every=5, halt_on_nan=True)
    assert callback.halted_at is not None
    steps_per_epoch = 22  # 350 rows, batches of 16; the loss is NaN from about step 5 on
    assert trainer.global_step < steps_per_epoch  # instead of 6 epochs
    assert callback.report.verdict == "non_finite"


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_finishes_and_only_rank_zero_reports():
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MASTER_ADDR": "127.0.0.1"}
    env.pop("LOSSDOCTOR_STRICT", None)  # as a user runs it
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "lightning_example.py"), "--ddp", "--epochs", "3"],
                         capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    verdict_lines = [line for line in out.stdout.splitlines() if line.startswith("verdict=")]
    assert len(verdict_lines) == 1  # rank 0 only
    assert verdict_lines[0].startswith("verdict=non_finite")
    assert "optim.lr_too_high" in verdict_lines[0]


def test_report_is_left_as_html_and_json_files_at_the_end_of_fit(diabetes, tmp_path):
    html, json_path = tmp_path / "out" / "report.html", tmp_path / "out" / "report.json"
    callback, _ = fit(Regressor(lr=1.0), *diabetes, epochs=2, callback_kwargs={"html": html, "json": json_path})
    saved = Report.from_json(json_path.read_text())
    assert saved.verdict == callback.report.verdict == "non_finite"
    assert saved.codes == callback.report.codes
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "grad.non_finite" in page


def test_a_directory_given_as_the_report_path_fails_before_training(tmp_path):
    from lossdoctor.errors import InputError

    with pytest.raises(InputError, match="is a directory"):
        LossDoctorCallback(html=tmp_path)


def test_findings_go_to_the_weights_and_biases_run_of_the_wandb_logger(diabetes, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)  # whatever wandb writes relative to the working directory stays in tmp
    logger = pl.loggers.WandbLogger(save_dir=str(tmp_path), offline=True, project="lossdoctor-test")
    try:
        callback, _ = fit(Regressor(lr=1.0), *diabetes, epochs=2, logger=logger)
        run = logger.experiment
        assert run.summary["lossdoctor/verdict"] == "non_finite"
        assert run.summary["lossdoctor/top_finding"] == callback.report.top.code
        table = wandb_table(run.dir, "lossdoctor/findings")
        assert table["columns"][:3] == ["rank", "code", "severity"]
        assert [row[1] for row in table["data"]] == callback.report.codes
    finally:
        logger.experiment.finish()


def wandb_table(root, key):
    """The one wandb.Table logged under ``key`` (the watch inside the callback writes none of its
    own), read back from the offline run's files directory (``run.dir``)."""
    import json

    files = list(Path(root).rglob(f"media/table/{key}_*.table.json"))
    assert len(files) == 1, f"tables {key!r} under {root}: {files}"
    return json.loads(files[0].read_text())


def test_report_goes_to_the_mlflow_logger_as_tags_and_text(diabetes, tmp_path):
    from mlflow import MlflowClient
    from mlflow.artifacts import load_text

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = pl.loggers.MLFlowLogger(experiment_name="lossdoctor", tracking_uri=uri,
                                     artifact_location=str(tmp_path / "artifacts"))
    callback, _ = fit(Regressor(lr=0.03), *diabetes, epochs=3, logger=logger)
    run = MlflowClient(tracking_uri=uri).get_run(logger.run_id)
    assert run.data.tags["lossdoctor/verdict"] == callback.report.verdict == "converging"
    assert "**verdict:** `converging`" in load_text(f"{run.info.artifact_uri}/lossdoctor/report.md")


# -- issue 15: live runs name the cause --------------------------------------------------------------


def test_a_rate_of_50_names_the_rate_first_once_with_its_symptoms_under_it(digits):
    train, val = torch.utils.data.random_split(digits, [1400, len(digits) - 1400],
                                               generator=torch.Generator().manual_seed(0))
    callback, _ = fit(DigitsClassifier(lr=50.0), train, val, epochs=4)
    report = callback.report
    assert report.verdict != "converging"
    assert report.metadata["run"]["task"] == "classification" and report.metadata["run"]["num_classes"] == 10
    assert report.top.code == "optim.lr_too_high" and report.codes.count("optim.lr_too_high") == 1
    assert "50" in report.top.remedy  # the user's own rate, and one to try
    for symptom in report.findings[1:]:
        if symptom.code in ("grad.dead_relu", "model.logit_overflow", "grad.exploding"):
            assert symptom.explained_by == "optim.lr_too_high", symptom


def test_the_same_classifier_at_a_sound_rate_is_clean(digits):
    train, val = torch.utils.data.random_split(digits, [1400, len(digits) - 1400],
                                               generator=torch.Generator().manual_seed(0))
    callback, _ = fit(DigitsClassifier(lr=0.1), train, val, epochs=4)
    assert callback.report.verdict == "converging", callback.report.to_text()
    assert callback.report.warnings() == []


def test_dropout_that_keeps_a_converging_training_loss_above_validation_is_named_as_a_hint(digits):
    # the seed's "regularization blinding your sight": the run trains, but the training loss (units
    # dropped) stays far above the validation loss (none dropped): dropout off is the experiment
    train, val = torch.utils.data.random_split(digits, [1400, 397], generator=torch.Generator().manual_seed(0))
    callback, _ = fit(DigitsClassifier(dropout=0.6), train, val, epochs=6)
    report = callback.report
    assert report.top.code == "model.regularization_too_strong", report.to_text()
    if report.verdict == "converging":  # a hint with its experiment; a run that does not fit gets the warning
        ev = report.top.evidence
        assert report.top.severity == "info" and "dropout 0" in report.top.remedy
        assert ev["train_loss_end"] > ev["val_loss_end"]
    else:
        assert report.verdict in ("underfitting", "stalled") and report.top.severity == "warning"


def test_the_same_classifier_without_dropout_gets_no_such_hint(digits):
    train, val = torch.utils.data.random_split(digits, [1400, 397], generator=torch.Generator().manual_seed(0))
    callback, _ = fit(DigitsClassifier(dropout=0.0), train, val, epochs=6)
    assert callback.report.verdict == "converging"
    assert "model.regularization_too_strong" not in callback.report.codes


class WarmedUpBert(pl.LightningModule):
    """The fault suite's tiny BERT on digits as token ids (benchmarks/faults/_text.py), AdamW with a
    linear warm-up over a tenth of the run to ``peak``, as transformers are trained."""

    def __init__(self, peak: float, steps: int):
        super().__init__()
        from _text import tiny_bert

        self.net, self.peak, self.steps = tiny_bert(), peak, steps

    def training_step(self, batch, batch_idx):
        return self.net(**batch).loss

    def configure_optimizers(self):
        from transformers import get_linear_schedule_with_warmup

        optimizer = torch.optim.AdamW(self.net.parameters(), lr=self.peak, weight_decay=0.01)
        schedule = get_linear_schedule_with_warmup(optimizer, self.steps // 10, self.steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def fit_bert(peak: float, steps: int = 300):
    sys.path.insert(0, str(ROOT / "benchmarks" / "faults"))
    try:
        from _text import loaders, token_digits

        train, _ = loaders(*token_digits())
        callback = LossDoctorCallback(every=50, print_report=False)
        pl.seed_everything(0, verbose=False)
        trainer = pl.Trainer(max_steps=steps, max_epochs=-1, accelerator="cpu", devices=1, logger=False,
                             callbacks=[callback], enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False)
        trainer.fit(WarmedUpBert(peak, steps), train)
    finally:
        sys.path.remove(str(ROOT / "benchmarks" / "faults"))
    return callback.report


# AdamW moves each weight by about its rate per step; a BERT's weights are ~0.02: a warm-up to 0.05
# takes steps larger than the weights, and the run learns next to nothing. Whether the watch, looking
# every 50 steps, sees the loss turn at the warm-up's peak depends on float noise (the thread count);
# when it does not, the log's hint names the rate (tests/curves/test_adaptive_rate_hint.py). Either
# way the rate comes first, with its numbers, and "the rate may be too low" is not said.
def test_a_bert_that_warms_up_to_a_rate_above_its_weights_and_learns_nothing_names_the_rate():
    report = fit_bert(peak=0.05)
    assert report.verdict in ("underfitting", "stalled")
    top = report.top
    assert top.code == "optim.lr_too_high", report.codes
    assert top.evidence.get("step_over_weight", 0) > 2.0 or top.evidence.get("peak_lr") == pytest.approx(0.05)
    assert report.codes.count("optim.lr_too_high") == 1 and "optim.lr_too_low" not in report.codes


def test_the_same_bert_warmed_up_to_a_usual_rate_learns_and_is_clean():
    report = fit_bert(peak=2e-3)
    assert report.verdict == "converging"
    assert not report.has("optim.lr_too_high")
    assert [f for f in report.findings if f.severity != "info"] == []
