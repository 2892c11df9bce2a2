"""Fault: a 2-layer GRU with dropout 0.7 between layers and SGD weight decay 0.05."""
import torch
from _common import digits
from torch import nn

EXPECTED = "model.regularization_too_strong"


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(8, 64, num_layers=2, batch_first=True, dropout=0.7)
        self.drop = nn.Dropout(0.7)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(self.drop(out[:, -1]))


def build():
    torch.manual_seed(0)
    train, val = digits(seq=True)
    model = Net()
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.05)}
