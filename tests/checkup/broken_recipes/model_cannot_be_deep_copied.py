"""A model that holds an open generator, which deepcopy cannot copy."""
from _digits import mlp, recipe
from torch import nn

EXPECT = r"InputError: model: cannot be deep-copied"


class HoldsAGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = mlp()
        self.stream = (i for i in range(10))

    def forward(self, x):
        return self.body(x)


def build():
    return recipe(model=HoldsAGenerator())
