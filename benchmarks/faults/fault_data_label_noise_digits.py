"""Fault: 40 % of the training labels were replaced by random classes."""
import torch
from _common import digits
from torch import nn

EXPECTED = "data.label_noise"


def build():
    torch.manual_seed(0)
    (X, y), val = digits()
    g = torch.Generator().manual_seed(3)
    flip = torch.rand(len(y), generator=g) < 0.4
    y = torch.where(flip, torch.randint(0, 10, y.shape, generator=g), y)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return {"model": model, "train": (X, y), "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=1e-3)}
