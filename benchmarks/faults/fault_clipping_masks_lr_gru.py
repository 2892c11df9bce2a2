"""Fault: a GRU clipped at a total gradient norm of 0.01 with Adam-free SGD."""
import torch
from _common import digits
from _seq import RowRNN
from torch import nn

EXPECTED = "optim.clipping_masks_lr"


def build():
    torch.manual_seed(0)
    train, val = digits(seq=True)
    model = RowRNN("gru", hidden=48)
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(), "grad_clip": 0.01,
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)}
