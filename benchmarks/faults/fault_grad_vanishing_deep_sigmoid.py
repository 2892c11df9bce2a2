"""Fault: ten sigmoid layers deep: the gradient shrinks by orders of magnitude towards the input."""
import torch
from _common import digits
from torch import nn

EXPECTED = "grad.vanishing"


def build():
    torch.manual_seed(0)
    train, val = digits()
    layers = [nn.Linear(64, 32), nn.Sigmoid()]
    for _ in range(9):
        layers += [nn.Linear(32, 32), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(32, 10))
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)}
