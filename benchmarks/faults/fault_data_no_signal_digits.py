"""Fault: the labels were shuffled against the images (a broken label join): nothing to learn."""
import torch
from _common import digits
from torch import nn

EXPECTED = "data.no_signal"


def build():
    torch.manual_seed(0)
    (X, y), (Xv, yv) = digits()
    g = torch.Generator().manual_seed(2)
    y = y[torch.randperm(len(y), generator=g)]
    yv = yv[torch.randperm(len(yv), generator=g)]
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    return {"model": model, "train": (X, y), "val": (Xv, yv), "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=1e-3)}
