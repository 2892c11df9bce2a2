"""A model whose forward fails in train mode only (a training-only branch with a bug)."""
from _digits import mlp, recipe
from torch import nn

EXPECT = r"InputError: recipe: the forward and loss \(on 4 training rows, train mode\) raised ValueError: noise"


class TrainOnlyBug(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = mlp()

    def forward(self, x):
        if self.training:
            raise ValueError("noise branch expects a seed")
        return self.body(x)


def build():
    return recipe(model=TrainOnlyBug())
