"""Fault: a CNN whose layers were all initialized to zero: symmetric units that training cannot split."""
import torch
from _common import digits
from torch import nn

EXPECTED = "model.bad_init"


def build():
    torch.manual_seed(0)
    train, val = digits(images=True)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        for m in model:
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.zero_()
                m.bias.zero_()
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=1e-3)}
