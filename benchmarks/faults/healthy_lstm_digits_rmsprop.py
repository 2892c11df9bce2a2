"""Healthy control: an LSTM reading digit rows as a sequence, RMSprop."""
import torch
from _common import digits
from _seq import RowRNN
from torch import nn

EXPECTED = "healthy"


def build():
    torch.manual_seed(0)
    train, val = digits(seq=True)
    model = RowRNN("lstm", hidden=48)
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.RMSprop(model.parameters(), lr=2e-3), "batch_size": 64}
