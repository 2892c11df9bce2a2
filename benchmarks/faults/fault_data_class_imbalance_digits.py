"""Fault: "is it a 3?" on digits with only 2 % positives kept: the majority class dominates."""
import torch
from _common import digits
from torch import nn

EXPECTED = "data.class_imbalance"


def build():
    torch.manual_seed(0)
    (X, y), _ = digits()
    pos = torch.nonzero(y == 3).flatten()[:25]
    neg = torch.nonzero(y != 3).flatten()
    idx = torch.cat([pos, neg])
    X, y = X[idx], (y[idx] == 3).long()
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))
    return {"model": model, "train": (X, y), "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=1e-3)}
