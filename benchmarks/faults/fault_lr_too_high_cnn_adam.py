"""Fault: Adam at lr 0.3 on a small CNN: the loss jumps up and stays up."""
import torch
from _common import digits
from torch import nn

EXPECTED = "optim.lr_too_high"


def build():
    torch.manual_seed(0)
    train, val = digits(images=True)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(128, 10))
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=0.3)}
