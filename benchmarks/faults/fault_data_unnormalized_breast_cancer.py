"""Fault: raw breast-cancer features (scales from 0.001 to 4000) fed to an SGD-trained MLP."""
import torch
from _common import tabular
from torch import nn

EXPECTED = "data.unnormalized"


def build():
    torch.manual_seed(0)
    train, val = tabular("breast_cancer", standardize=False)
    model = nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 2))
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)}
