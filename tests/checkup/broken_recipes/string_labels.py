"""Class names as strings instead of class indices."""
import numpy as np
from _digits import digits, recipe

EXPECT = r"InputError: train\[1\] \(y\): an object array cannot be trained on"


def build():
    X, y = digits()
    return recipe(train=(X.numpy(), np.array([f"digit {v}" for v in y.tolist()], dtype=object)))
