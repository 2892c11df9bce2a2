"""Fault: a ReLU on the output of a regressor whose standardized target is half negative."""
import numpy as np
import torch
from torch import nn
from _common import digits, tabular, diabetes
from _seq import RowRNN

EXPECTED = "model.activation_mismatch"


def build():
    torch.manual_seed(0)
    train, val = diabetes()
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1), nn.ReLU())
    return {"model": model, "train": train, "val": val, "loss_fn": nn.MSELoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=3e-3), "batch_size": 32}
