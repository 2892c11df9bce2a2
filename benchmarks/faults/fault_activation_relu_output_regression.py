"""Fault: a ReLU on the output of a regressor whose standardized target is half negative."""
import torch
from _common import diabetes
from torch import nn

EXPECTED = "model.activation_mismatch"


def build():
    torch.manual_seed(0)
    train, val = diabetes()
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1), nn.ReLU())
    return {"model": model, "train": train, "val": val, "loss_fn": nn.MSELoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=3e-3), "batch_size": 32}
