"""Fault: long-format wine data: one value column whose unit depends on the measurement type.

Each row is (one-hot of the measurement type, value) and the target is the wine's class; values
of different measurement types live on scales from 0.1 to 1000, unnormalized per type.
"""
import numpy as np
import torch
from torch import nn
from _common import digits, tabular, diabetes
from _seq import RowRNN

from sklearn.datasets import load_wine

EXPECTED = "data.mixed_units"


def build():
    torch.manual_seed(0)
    X, y = load_wine(return_X_y=True)
    n, k = X.shape
    kinds = np.tile(np.arange(k), n)
    values = X.reshape(-1)
    target = np.repeat(y, k)
    onehot = np.eye(k)[kinds]
    features = np.column_stack([onehot, values]).astype(np.float32)
    model = nn.Sequential(nn.Linear(k + 1, 32), nn.ReLU(), nn.Linear(32, 3))
    return {"model": model, "train": (torch.tensor(features), torch.tensor(target)),
            "loss_fn": nn.CrossEntropyLoss(), "groups": kinds,
            "optimizer": torch.optim.Adam(model.parameters(), lr=1e-3)}
