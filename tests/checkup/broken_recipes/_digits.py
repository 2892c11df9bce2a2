"""Shared pieces of the broken recipes: scikit-learn's digits, standardized, and a small MLP."""
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler
from torch import nn

ROWS = 600


def digits(rows: int = ROWS):
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    return torch.tensor(X[:rows]), torch.tensor(y[:rows])


def mlp(outputs: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, outputs))


def recipe(model=None, train=None, **extra) -> dict:
    model = model if model is not None else mlp()
    return {"model": model, "train": train if train is not None else digits(), "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=1e-3), **extra}
