"""Healthy control: a GRU reading digit rows as a sequence, Adam with clipping that rarely triggers."""
import torch
from _common import digits
from _seq import RowRNN
from torch import nn

EXPECTED = "healthy"


def build():
    torch.manual_seed(0)
    train, val = digits(seq=True)
    model = RowRNN("gru", hidden=64)
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=3e-3), "grad_clip": 5.0, "batch_size": 64}
