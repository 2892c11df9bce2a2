"""Healthy control: an MLP on wine with AdamW and its default weight decay."""
import torch
from _common import tabular
from torch import nn

EXPECTED = "healthy"


def build():
    torch.manual_seed(0)
    train, val = tabular("wine")
    model = nn.Sequential(nn.Linear(13, 32), nn.Tanh(), nn.Linear(32, 3))
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.AdamW(model.parameters(), lr=3e-3), "batch_size": 16}
