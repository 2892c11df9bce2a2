"""Fault: clipping at a total gradient norm of 0.005 turns SGD's rate 0.1 into tiny steps."""
import torch
from _common import digits
from torch import nn

EXPECTED = "optim.clipping_masks_lr"


def build():
    torch.manual_seed(0)
    train, val = digits()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(), "grad_clip": 0.005,
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)}
