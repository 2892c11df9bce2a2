"""lossdoctor in a PyTorch Lightning run: one callback.

    python examples/lightning_example.py            # a learning rate 30x too high: NaN
    python examples/lightning_example.py --healthy  # the same run at a sound learning rate
    python examples/lightning_example.py --digits   # a digits classifier at SGD lr 50: blows up, then sits at chance
    python examples/lightning_example.py --ddp      # two CPU processes (DDP, gloo); rank 0 reports
    python examples/lightning_example.py --html report.html --json report.json

Needs ``pip install 'lossdoctor[lightning]'``.
"""
import argparse

import lightning.pytorch as pl
import torch
from sklearn.datasets import load_diabetes, load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lossdoctor.integrations.lightning import LossDoctorCallback


class Regressor(pl.LightningModule):
    def __init__(self, lr: float):
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class DigitsClassifier(pl.LightningModule):
    def __init__(self, lr: float):
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def digits_loaders():
    X, y = load_digits(return_X_y=True)
    X, y = torch.tensor(X / 16.0, dtype=torch.float32), torch.tensor(y)
    train, val = TensorDataset(X[:1400], y[:1400]), TensorDataset(X[1400:], y[1400:])
    return DataLoader(train, batch_size=32, shuffle=True), DataLoader(val, batch_size=200)


def loaders():
    X, y = load_diabetes(return_X_y=True)
    X = torch.tensor((X - X.mean(0)) / X.std(0), dtype=torch.float32)
    y = torch.tensor(y / 100.0, dtype=torch.float32)[:, None]  # targets around 1.5
    train, val = TensorDataset(X[:350], y[:350]), TensorDataset(X[350:], y[350:])
    return DataLoader(train, batch_size=16, shuffle=True), DataLoader(val, batch_size=100)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--healthy", action="store_true", help="use a sound learning rate (0.03)")
    parser.add_argument("--digits", action="store_true", help="a digits classifier at SGD lr 50 (healthy: 0.1)")
    parser.add_argument("--ddp", action="store_true", help="train on two CPU processes with DDP")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--html", help="write the report as HTML here")
    parser.add_argument("--json", help="write the report as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pl.seed_everything(0, verbose=False)

    doctor = LossDoctorCallback(every=20, html=args.html, json=args.json)
    trainer = pl.Trainer(
        max_epochs=args.epochs, accelerator="cpu", devices=2 if args.ddp else 1,
        strategy="ddp" if args.ddp else "auto", callbacks=[doctor],
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    if args.digits:
        train, val = digits_loaders()
        model = DigitsClassifier(lr=0.1 if args.healthy else 50.0)
    else:
        train, val = loaders()
        model = Regressor(lr=0.03 if args.healthy else 1.0)
    trainer.fit(model, train, val)
    if trainer.is_global_zero:  # doctor.report is printed at the end of fit; it stays on the callback
        print(f"verdict={doctor.report.verdict} codes={','.join(doctor.report.codes)}")


if __name__ == "__main__":
    main()
