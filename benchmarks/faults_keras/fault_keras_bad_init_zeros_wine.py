"""Fault: hidden kernels initialized to zero: every unit of a layer gets the same gradient and they
stay identical forever."""
from _keras import classification, mlp, tabular

import keras

EXPECTED = "model.bad_init"


def build():
    return classification(mlp(13, 3, initializer="zeros"), tabular("wine"), keras.optimizers.Adam(1e-2), epochs=30,
                          batch_size=16)
