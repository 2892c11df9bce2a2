"""Fault: a softmax output layer into SparseCategoricalCrossentropy(from_logits=True): the loss
applies a second softmax and the scores can never be confident."""
from _keras import classification, digits, mlp

import keras

EXPECTED = "model.activation_mismatch"


def build():
    return classification(mlp(64, 10, output_activation="softmax"), digits(), keras.optimizers.Adam(1e-3))
