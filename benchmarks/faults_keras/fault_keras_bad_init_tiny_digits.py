"""Fault: three ReLU layers initialized at std 1e-4 (He asks ~0.18): the signal shrinks ~1000x per
layer and the network starts with no gradient to speak of."""
from _keras import classification, digits, mlp

import keras

EXPECTED = "model.bad_init"


def build():
    tiny = keras.initializers.RandomNormal(stddev=1e-4, seed=0)
    return classification(mlp(64, 10, depth=3, initializer=tiny), digits(), keras.optimizers.SGD(0.05), epochs=4)
