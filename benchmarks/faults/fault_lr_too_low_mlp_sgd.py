"""Fault: plain SGD at lr 1e-4 on digits: the loss barely moves."""
import torch
from _common import digits
from torch import nn

EXPECTED = "optim.lr_too_low"


def build():
    torch.manual_seed(0)
    train, val = digits()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.SGD(model.parameters(), lr=1e-4)}
