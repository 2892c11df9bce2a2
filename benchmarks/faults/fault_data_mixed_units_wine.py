"""Fault: long-format lab-style data: one value column whose unit depends on the measurement type.

Each row is (one-hot of the measurement type, value) from the 13 wine measurements; the target is
whether the value is above that measurement's median. The values of different types live on scales
from 0.1 to 1000 and are not normalized per type, so one threshold per type must be learned
across wildly different scales (the seed's lab results: one normalizer per lab type fixes it).
"""
import numpy as np
import torch
from sklearn.datasets import load_wine
from torch import nn

EXPECTED = "data.mixed_units"


def build():
    torch.manual_seed(0)
    X, _ = load_wine(return_X_y=True)
    n, k = X.shape
    kinds = np.tile(np.arange(k), n)
    values = X.reshape(-1)
    medians = np.median(X, axis=0)
    target = (values > medians[kinds]).astype(np.int64)
    features = np.column_stack([np.eye(k)[kinds], values]).astype(np.float32)
    model = nn.Sequential(nn.Linear(k + 1, 32), nn.ReLU(), nn.Linear(32, 2))
    return {"model": model, "train": (torch.tensor(features), torch.tensor(target)),
            "loss_fn": nn.CrossEntropyLoss(), "groups": kinds,
            "optimizer": torch.optim.Adam(model.parameters(), lr=1e-3)}
