"""Fault: 2 % of the input values are NaN (a failed join upstream)."""
import torch
from _common import digits
from torch import nn

EXPECTED = "data.non_finite"


def build():
    torch.manual_seed(0)
    (X, y), val = digits()
    X = X.clone()
    mask = torch.rand(X.shape, generator=torch.Generator().manual_seed(1)) < 0.02
    X[mask] = float("nan")
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return {"model": model, "train": (X, y), "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=1e-3)}
