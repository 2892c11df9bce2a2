"""Recurrent classifiers that read the 8 rows of a digit image as a sequence of 8 steps."""
from torch import nn


class RowRNN(nn.Module):
    def __init__(self, cell="gru", hidden=64, layers=1, dropout=0.0, n_classes=10):
        super().__init__()
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.rnn = rnn(8, hidden, num_layers=layers, batch_first=True, dropout=dropout)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])
