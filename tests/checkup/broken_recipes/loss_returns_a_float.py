"""A loss_fn that calls .item(): it returns a Python float, which cannot be back-propagated."""
from _digits import recipe
from torch import nn

EXPECT = r"InputError: recipe: the forward and loss .* returned a Python number"


def build():
    ce = nn.CrossEntropyLoss()
    return {**recipe(), "loss_fn": lambda out, y: ce(out, y).item()}
