"""Healthy control: a small CNN with batch norm on 8x8 digits, SGD with momentum."""
import torch
from _common import digits
from torch import nn

EXPECTED = "healthy"


def build():
    torch.manual_seed(0)
    train, val = digits(images=True)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 10))
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), "batch_size": 64}
