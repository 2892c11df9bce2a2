"""Healthy control: diabetes progression (features and target standardized), a linear output, MSE."""
from _keras import diabetes, mlp

import keras

EXPECTED = "healthy"


def build():
    model = mlp(10, 1, hidden=32)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.MeanSquaredError())
    train, val = diabetes()
    return {"model": model, "train": train, "val": val, "epochs": 20, "batch_size": 32}
