"""Fault: a square root of a pre-activation that goes negative: NaN in the forward pass."""
import torch
from _common import digits
from torch import nn

EXPECTED = "grad.non_finite"


class Sqrt(nn.Module):
    def forward(self, x):
        return torch.sqrt(x)


def build():
    torch.manual_seed(0)
    train, val = digits()
    model = nn.Sequential(nn.Linear(64, 64), Sqrt(), nn.Linear(64, 10))
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=1e-3)}
