"""Fault: breast cancer's raw features (areas in the thousands next to ratios below 1) into an MLP."""
from _keras import classification, mlp, tabular

import keras

EXPECTED = "data.unnormalized"


def build():
    return classification(mlp(30, 2), tabular("breast_cancer", standardize=False), keras.optimizers.Adam(1e-3))
