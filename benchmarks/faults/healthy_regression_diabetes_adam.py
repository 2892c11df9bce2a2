"""Healthy control: an MLP regressor on diabetes (standardized features and target), Adam."""
import torch
from _common import diabetes
from torch import nn

EXPECTED = "healthy"


def build():
    torch.manual_seed(0)
    train, val = diabetes()
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    return {"model": model, "train": train, "val": val, "loss_fn": nn.MSELoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=3e-3), "batch_size": 32}
