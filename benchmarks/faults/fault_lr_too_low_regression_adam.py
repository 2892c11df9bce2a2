"""Fault: Adam at lr 1e-6 on the diabetes regression."""
import torch
from _common import diabetes
from torch import nn

EXPECTED = "optim.lr_too_low"


def build():
    torch.manual_seed(0)
    train, val = diabetes()
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    return {"model": model, "train": train, "val": val, "loss_fn": nn.MSELoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=1e-6), "batch_size": 32}
