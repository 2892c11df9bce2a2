"""Fault: a Softmax layer before CrossEntropyLoss (double softmax)."""
import torch
from _common import digits
from torch import nn

EXPECTED = "model.activation_mismatch"


def build():
    torch.manual_seed(0)
    train, val = digits()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10), nn.Softmax(dim=1))
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=1e-3)}
