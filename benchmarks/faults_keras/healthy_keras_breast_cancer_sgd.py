"""Healthy control: standardized breast cancer features, a sigmoid unit into BinaryCrossentropy, SGD."""
from _keras import mlp, tabular

import keras

EXPECTED = "healthy"


def build():
    model = mlp(30, 1, hidden=32, output_activation="sigmoid")
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss=keras.losses.BinaryCrossentropy())
    train, val = tabular("breast_cancer")
    return {"model": model, "train": train, "val": val, "epochs": 10, "batch_size": 32}
