"""Fault: Adam at a learning rate of 1.0 on digits (usual: 1e-4..1e-2): the loss jumps to hundreds
of times chance level in the first steps, then sits at chance."""
from _keras import classification, digits, mlp

import keras

EXPECTED = "optim.lr_too_high"


def build():
    return classification(mlp(64, 10), digits(), keras.optimizers.Adam(1.0))
