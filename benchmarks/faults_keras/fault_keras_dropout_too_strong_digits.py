"""Fault: dropout 0.9 before every layer (the seed: dropout that strong blinds the network): the
training loss barely falls."""
from _keras import classification, digits, mlp

import keras

EXPECTED = "model.regularization_too_strong"


def build():
    return classification(mlp(64, 10, dropout=0.9), digits(), keras.optimizers.Adam(1e-3), epochs=4)
