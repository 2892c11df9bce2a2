"""LossDoctorCallback in real Lightning runs on scikit-learn's diabetes and digits data (CPU)."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pl = pytest.importorskip("lightning.pytorch")
from sklearn.datasets import load_diabetes, load_digits  # noqa: E402

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
    def __init__(self, dropout: float):
        super().__init__()
        layers = []
        for n_in in (64, 64):
            layers += [nn.Dropout(dropout), nn.Linear(n_in, 64), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Dropout(dropout), nn.Linear(64, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


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


def fit(model, train, val=None, epochs=6, logger=False, every=20, print_report=False, halt_on_nan=False,
        **trainer_kwargs):
    torch.manual_seed(0)
    callback = LossDoctorCallback(every=every, print_report=print_report, halt_on_nan=halt_on_nan)
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

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(logger.log_dir, size_guidance={"tensors": 0})
    events.Reload()
    assert "lossdoctor/grad.non_finite" in events.Tags()["scalars"]
    text = events.Tensors("lossdoctor/report/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "`non_finite`" in text and "`grad.non_finite`" in text


def test_healthy_run_is_converging_clean_and_written_to_the_lightning_logger(diabetes, tmp_path, capsys):
    logger = pl.loggers.CSVLogger(tmp_path, name="run")
    callback, trainer = fit(Regressor(lr=0.03), *diabetes, logger=logger, print_report=True)
    report = callback.report
    assert report.verdict == "converging", report.to_text()
    assert report.warnings() == []
    assert {"train_loss", "val_loss", "lr", "grad_norm"} <= set(report.plots["curves"])
    assert "converging" in capsys.readouterr().out  # printed at the end of fit
    metrics = (Path(logger.log_dir) / "metrics.csv").read_text()
    assert "lossdoctor/converging" in metrics.splitlines()[0]


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
