"""Fault: a linear output unit into BinaryCrossentropy() (from_logits=False): the loss reads raw
scores as probabilities and clips them into [1e-7, 1 - 1e-7]."""
from _keras import mlp, tabular

import keras

EXPECTED = "model.activation_mismatch"


def build():
    model = mlp(30, 1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy())
    train, val = tabular("breast_cancer")
    return {"model": model, "train": train, "val": val, "epochs": 8, "batch_size": 32}
