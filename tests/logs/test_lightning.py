"""Lightning's CSVLogger metrics.csv (train and validation rows interleaved) from real Lightning trainings."""
import json

import numpy as np
import pytest
import torch

from lossdoctor.logs import read_runs


@pytest.fixture(scope="module")
def lightning_logs(tmp_path_factory, digits_data):
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger

    Xtr, ytr, Xva, yva = digits_data()

    class DigitsMLP(L.LightningModule):
        def __init__(self, dropout):
            super().__init__()
            layers = []
            for d_in, d_out in ((64, 64), (64, 64)):
                layers += [torch.nn.Dropout(dropout), torch.nn.Linear(d_in, d_out), torch.nn.ReLU()] if dropout \
                    else [torch.nn.Linear(d_in, d_out), torch.nn.ReLU()]
            self.net = torch.nn.Sequential(*layers, *([torch.nn.Dropout(dropout)] if dropout else []),
                                           torch.nn.Linear(64, 10))

        def training_step(self, batch, _):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=3e-3)

    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(Xtr, ytr), batch_size=32, shuffle=True)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(Xva, yva), batch_size=512)
    root = tmp_path_factory.mktemp("lightning")
    for dropout in (0.0, 0.9):  # version_0: healthy, version_1: dropout 0.9 everywhere
        L.seed_everything(0, verbose=False)
        trainer = L.Trainer(max_epochs=8, logger=CSVLogger(root, name="digits"), log_every_n_steps=5,
                            callbacks=[LearningRateMonitor()], enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=False, accelerator="cpu",
                            devices=1, num_sanity_val_steps=0)
        trainer.fit(DigitsMLP(dropout), train, val)
    return root / "digits"


def test_metrics_csv_interleaved_rows_become_train_and_val_series(lightning_logs):
    csv = lightning_logs / "version_0" / "metrics.csv"
    (curves,) = read_runs(csv)
    assert curves.meta["format"] == "lightning"
    assert curves.run == "version_0"
    # every logged train row and every validation row, none of the empty cells
    assert len(curves.val) == 8
    assert len(curves.train) >= 8 * 42 // 5 - 1
    assert np.isfinite(curves.train.values).all() and np.isfinite(curves.val.values).all()
    assert "lr" in curves.series  # LearningRateMonitor's "lr-Adam"
    assert np.all(np.diff(curves.train.steps) > 0)


def test_each_version_is_a_run_healthy_converges_dropout_does_not(lightning_logs, cli):
    runs = {c.run: c for c in read_runs(lightning_logs)}
    assert set(runs) == {"version_0", "version_1"}
    code, out, err = cli("diagnose", lightning_logs, "--json")
    reports = {r["metadata"]["run"]: r for r in json.loads(out)}
    healthy, dropout = reports["version_0"], reports["version_1"]
    assert healthy["verdict"] == "converging"
    assert all(f["severity"] == "info" for f in healthy["findings"])
    assert dropout["verdict"] in ("underfitting", "stalled")
    assert dropout["metadata"]["curve_evidence"]["plateau_level"] > 3 * healthy["metadata"]["curve_evidence"]["end_level"]
    assert "model.regularization_too_strong" in {f["code"] for f in dropout["findings"]}
    assert code == 1
