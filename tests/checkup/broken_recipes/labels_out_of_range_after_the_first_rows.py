"""Class labels 0..9 except one row far down the set labelled 12, for a model with 10 outputs."""
from _digits import digits, recipe

EXPECT = r"InputError: train: label 12 at row 517 is outside \[0, 10\)"


def build():
    X, y = digits()
    y = y.clone()
    y[517] = 12
    return recipe(train=(X, y))
