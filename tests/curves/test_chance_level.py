"""Chance level: a run that ends at ln K learned nothing, whatever its drop from a first-batch spike.

Real logs: Lightning CSVLogger runs of an MLP on digits with raw pixels x16 (the input-scale bug: a
first batch at a loss near 22, then ln 10 for the rest of the run) beside the same MLP on standardized
inputs, and SummaryWriter runs of dropout 0.9 everywhere (validation pinned at ln 10 while training
falls from an inflated start) beside the healthy run.
"""
import math

import numpy as np
import pytest
import torch

from lossdoctor import diagnose
from lossdoctor.curves import analyze_curves
from lossdoctor.curves.verdict import (
    CONFIDENCE_FULL,
    NUM_CLASSES_META,
    NUM_CLASSES_SOURCE_META,
)
from lossdoctor.logs import read_runs

LN10 = math.log(10)


@pytest.fixture(scope="module")
def lightning_x16(tmp_path_factory, digits_data, digits_mlp):
    """metrics.csv of SGD (lr 0.02, momentum 0.9) on raw pixels x16 and on standardized pixels."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    class DigitsMLP(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = digits_mlp()

        def training_step(self, batch, _):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.02, momentum=0.9)

    root = tmp_path_factory.mktemp("lightning_chance")
    paths = {}
    for name, raw_scale in (("x16", 16.0), ("standardized", None)):
        Xtr, ytr, Xva, yva = digits_data(raw_scale=raw_scale)
        train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(Xtr, ytr), batch_size=32, shuffle=True)
        val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(Xva, yva), batch_size=512)
        L.seed_everything(0, verbose=False)
        logger = CSVLogger(root, name=name)
        trainer = L.Trainer(max_epochs=8, logger=logger, log_every_n_steps=5, enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=False, accelerator="cpu", devices=1,
                            num_sanity_val_steps=0)
        trainer.fit(DigitsMLP(), train, val)
        paths[name] = root / name / f"version_{logger.version}" / "metrics.csv"
    return paths


def test_inputs_x16_stuck_at_chance_is_not_converging_whatever_the_first_batch(lightning_x16):
    (curves,) = read_runs(lightning_x16["x16"])
    first = float(curves.train.values[0])
    assert first > 5 * LN10  # the premise: the first logged batch is a spike far above chance
    report = diagnose(lightning_x16["x16"])
    assert report.verdict in ("underfitting", "stalled") and report.exit_code == 1
    ev = report.metadata["curve_evidence"]
    assert ev["ended_at_chance"] is True and ev["chance_classes"] == 10
    assert ev["chance_text"] == f"ln 10 = {LN10:.4g}"
    assert set(ev["chance_at"]) == {"train_loss", "val_loss"}
    assert "matching ln 10" in ev["chance_source"]  # inferred from the curves: the log does not say K
    # the drop is measured from a start the spike does not set
    assert abs(ev["start_level"] - LN10) < 0.2 * LN10 and ev["relative_drop"] < 0.2
    assert any(e.kind == "plateau" and "chance level" in e.detail for e in report.events)


def test_standardized_twin_converges_and_is_not_at_chance(lightning_x16):
    report = diagnose(lightning_x16["standardized"])
    assert report.verdict == "converging" and report.exit_code == 0
    assert "ended_at_chance" not in report.metadata["curve_evidence"]


def test_a_class_count_given_with_the_curves_is_used_and_named(lightning_x16):
    (stuck,) = read_runs(lightning_x16["x16"])
    stuck.meta[NUM_CLASSES_META] = 10
    stuck.meta[NUM_CLASSES_SOURCE_META] = "the model's output width (10)"
    told = analyze_curves(stuck)
    assert told.verdict in ("underfitting", "stalled")
    assert told.evidence["chance_source"] == "the model's output width (10)"
    inferred = analyze_curves(read_runs(lightning_x16["x16"])[0])
    assert told.confidence == CONFIDENCE_FULL > inferred.confidence  # a given K leaves less to chance
    (fine,) = read_runs(lightning_x16["standardized"])
    fine.meta[NUM_CLASSES_META] = 10
    healthy = analyze_curves(fine)
    assert healthy.verdict == "converging"
    assert healthy.evidence["chance_level"] == pytest.approx(LN10, rel=1e-5)
    assert "ended_at_chance" not in healthy.evidence


@pytest.fixture(scope="module")
def tb_dropout(tmp_path_factory, train_digits):
    """SummaryWriter runs: dropout 0.9 after every layer, and the healthy run."""
    from torch.utils.tensorboard import SummaryWriter

    root = tmp_path_factory.mktemp("tb_chance")
    for fault in ("dropout09", "healthy"):
        writer = SummaryWriter(log_dir=str(root / fault))
        train_digits(fault, on_step=lambda step, loss, lr, gn, w=writer: w.add_scalar("Loss/train", loss, step),
                     on_eval=lambda step, val, w=writer: w.add_scalar("Loss/val", val, step))
        writer.close()
    return root


def test_validation_at_chance_vetoes_a_falling_training_loss(tb_dropout):
    (curves,) = read_runs(tb_dropout / "dropout09")
    train, val = curves.train.values, curves.val.values
    assert np.median(train[:30]) > 1.3 * np.median(train[-30:])  # training does fall (from dropout's inflated start)
    assert np.all(np.abs(val - LN10) < 0.02)  # ... while validation never leaves ln 10
    report = diagnose(tb_dropout / "dropout09")
    assert report.verdict in ("underfitting", "stalled")
    ev = report.metadata["curve_evidence"]
    assert "val_loss" in ev["chance_at"] and ev["chance_classes"] == 10
    healthy = diagnose(tb_dropout / "healthy")
    assert healthy.verdict == "converging" and "ended_at_chance" not in healthy.metadata["curve_evidence"]


@pytest.fixture(scope="module")
def tb_adam_rates(tmp_path_factory, digits_data, digits_mlp):
    """SummaryWriter runs of Adam on standardized digits: lr 0.3 (the first step throws the loss from
    ln 10 to ~50, the network collapses and the loss settles back at chance) and lr 1e-3."""
    from torch.utils.tensorboard import SummaryWriter

    Xtr, ytr, _, _ = digits_data()
    root = tmp_path_factory.mktemp("adam_rates")
    for name, lr in (("adam_lr0.3", 0.3), ("adam_lr1e-3", 1e-3)):
        torch.manual_seed(0)
        model = digits_mlp()
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(0)
        with SummaryWriter(str(root / name)) as writer:
            for step in range(300):
                idx = torch.randint(0, len(Xtr), (32,), generator=gen)
                loss = torch.nn.functional.cross_entropy(model(Xtr[idx]), ytr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                writer.add_scalar("train/loss", loss.item(), step)
                writer.add_scalar("lr", lr, step)
    return root


def test_a_blow_up_that_settles_back_at_chance_is_not_converging_and_names_the_rate(tb_adam_rates):
    report = diagnose(tb_adam_rates / "adam_lr0.3")
    ev = report.metadata["curve_evidence"]
    assert report.verdict in ("stalled", "underfitting") and report.exit_code == 1
    assert ev["ended_at_chance"] and ev["chance_classes"] == 10 and "first logged value" in ev["chance_source"]
    assert report.top.code == "optim.lr_too_high"
    assert report.top.evidence["peak_loss"] > 10 * LN10  # far above the 3x-chance line, not near it
    assert report.top.evidence["lr_at_spike"] == pytest.approx(0.3)


def test_the_healthy_adam_twin_converges_with_nothing_to_fix(tb_adam_rates):
    report = diagnose(tb_adam_rates / "adam_lr1e-3")
    assert report.verdict == "converging" and report.exit_code == 0
    assert "ended_at_chance" not in report.metadata["curve_evidence"] and not report.warnings()
