"""Healthy control: an MLP on digits scaled to [0, 1], raw logits into a from_logits loss, Adam 1e-3."""
from _keras import classification, digits, mlp

import keras

EXPECTED = "healthy"


def build():
    return classification(mlp(64, 10), digits(), keras.optimizers.Adam(1e-3))
