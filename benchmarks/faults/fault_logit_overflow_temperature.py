"""Fault: logits multiplied by 100 (a temperature of 0.01 in the wrong place): near exp overflow."""
import torch
from _common import digits
from torch import nn

EXPECTED = "model.logit_overflow"


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.body(x) * 100.0


def build():
    torch.manual_seed(0)
    train, val = digits()
    model = Net()
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=1e-3)}
