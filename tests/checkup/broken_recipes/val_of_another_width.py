"""Validation features of another width (a column dropped from one split only)."""
from _digits import digits, recipe

EXPECT = r"InputError: recipe: the forward and loss \(on 4 validation rows, eval mode\) raised RuntimeError: mat1 and mat2"


def build():
    X, y = digits()
    return recipe(val=(X[:100, :60], y[:100]))
