"""Fault: wine's raw features (proline in the hundreds to thousands, hue near 1) into an MLP."""
from _keras import classification, mlp, tabular

import keras

EXPECTED = "data.unnormalized"


def build():
    return classification(mlp(13, 3), tabular("wine", standardize=False), keras.optimizers.Adam(1e-3), epochs=30,
                          batch_size=16)
