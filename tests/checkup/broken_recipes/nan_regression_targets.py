"""Regression targets with NaN in them (missing measurements kept as NaN): a data.non_finite finding."""
import numpy as np
import torch
from sklearn.datasets import load_diabetes
from sklearn.preprocessing import StandardScaler
from torch import nn

EXPECT = "Report: data.non_finite"


def build():
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    y[::25] = np.nan
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    return {"model": model, "train": (torch.tensor(X), torch.tensor(y).unsqueeze(1)), "loss_fn": nn.MSELoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=1e-3)}
