"""Fault: a 3-unit bottleneck cannot hold ten digit classes; it fits a small sample but not the set."""
import torch
from _common import digits
from torch import nn

EXPECTED = "data.too_large"


def build():
    torch.manual_seed(0)
    train, val = digits()
    model = nn.Sequential(nn.Linear(64, 3), nn.ReLU(), nn.Linear(3, 10))
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=3e-2)}
