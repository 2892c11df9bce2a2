"""Fault: an internal 0.01 input scale leaves the first layer's gradients 100x smaller than the
last's; no single SGD rate suits both, Adam's per-parameter steps do."""
import torch
from _common import digits
from torch import nn

EXPECTED = "optim.optimizer_choice"


class Scaled(nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def build():
    torch.manual_seed(0)
    train, val = digits()
    model = nn.Sequential(Scaled(0.01), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                          nn.Linear(64, 10))
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)}
