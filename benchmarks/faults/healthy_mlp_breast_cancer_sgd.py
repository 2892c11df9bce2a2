"""Healthy control: a small MLP with mild dropout and weight decay on breast cancer, SGD with momentum."""
import torch
from _common import tabular
from torch import nn

EXPECTED = "healthy"


def build():
    torch.manual_seed(0)
    train, val = tabular("breast_cancer")
    model = nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 2))
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4),
            "batch_size": 32}
