"""Fault: dropout 0.8 and weight decay 0.05 keep an MLP from fitting digits."""
import torch
from _common import digits
from torch import nn

EXPECTED = "model.regularization_too_strong"


def build():
    torch.manual_seed(0)
    train, val = digits()
    model = nn.Sequential(nn.Dropout(0.5), nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.8), nn.Linear(64, 10))
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.5)}
