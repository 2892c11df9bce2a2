"""Healthy control: a ReLU MLP on standardized digits, Adam at its default rate."""
import torch
from _common import digits
from torch import nn

EXPECTED = "healthy"


def build():
    torch.manual_seed(0)
    train, val = digits()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=1e-3), "batch_size": 64, "epochs": 20}
