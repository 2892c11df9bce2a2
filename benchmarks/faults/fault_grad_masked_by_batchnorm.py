"""Fault: a deep sigmoid stack whose vanishing gradient is hidden by batch norm after every layer."""
import torch
from _common import digits
from torch import nn

EXPECTED = "grad.masked_by_batchnorm"


def build():
    torch.manual_seed(0)
    train, val = digits()
    layers = [nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Sigmoid()]
    for _ in range(9):
        layers += [nn.Linear(32, 32), nn.BatchNorm1d(32), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(32, 10))
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=1e-3)}
