"""Healthy control: standardized wine, a tanh MLP, RMSprop 1e-3."""
from _keras import classification, mlp, tabular

import keras

EXPECTED = "healthy"


def build():
    return classification(mlp(13, 3, activation="tanh"), tabular("wine"), keras.optimizers.RMSprop(1e-3), epochs=30,
                          batch_size=16)
