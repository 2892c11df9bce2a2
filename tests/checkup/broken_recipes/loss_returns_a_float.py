"""A loss_fn that calls .item(): it returns a Python float, which cannot be back-propagated."""
from torch import nn

from _digits import recipe

EXPECT = r"InputError: recipe: the forward and loss .* returned a Python number"


def build():
    ce = nn.CrossEntropyLoss()
    return {**recipe(), "loss_fn": lambda out, y: ce(out, y).item()}
