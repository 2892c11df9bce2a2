"""Fault: SGD with momentum at lr 3 on digits: the loss blows up."""
import torch
from _common import digits
from torch import nn

EXPECTED = "optim.lr_too_high"


def build():
    torch.manual_seed(0)
    train, val = digits()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.SGD(model.parameters(), lr=3.0, momentum=0.9)}
