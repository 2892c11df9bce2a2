"""Fault: SGD with momentum at a learning rate of 5 on standardized wine: the loss blows up."""
from _keras import classification, mlp, tabular

import keras

EXPECTED = "optim.lr_too_high"


def build():
    return classification(mlp(13, 3), tabular("wine"), keras.optimizers.SGD(5.0, momentum=0.9), epochs=30,
                          batch_size=16)
