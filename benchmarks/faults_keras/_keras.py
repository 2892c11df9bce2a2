"""Shared pieces of the Keras recipes: scikit-learn's bundled data and small Keras models.

A Keras recipe's ``build()`` returns ``{"model": <compiled keras.Model>, "train": (X, y), "val": (X, y),
"epochs": int, "batch_size": int}``; the bench trains it with ``model.fit`` and lossdoctor's Keras
callback. Keras runs on the torch backend here (set before keras is first imported).
"""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

SEED = 0


def _split(X, y, stratify=True):
    Xtr, Xva, ytr, yva = train_test_split(X, y, test_size=0.25, random_state=SEED, stratify=y if stratify else None)
    return (Xtr, ytr), (Xva, yva)


def _standardized(train, val):
    scaler = StandardScaler().fit(train[0])
    return (scaler.transform(train[0]).astype("float32"), train[1]), (scaler.transform(val[0]).astype("float32"), val[1])


def digits():
    """Pixels scaled to [0, 1] (the 0..16 intensities divided by 16), 10 classes."""
    X, y = load_digits(return_X_y=True)
    return _split((X / 16.0).astype("float32"), y)


def tabular(name: str, standardize: bool = True):
    X, y = {"breast_cancer": load_breast_cancer, "wine": load_wine}[name](return_X_y=True)
    train, val = _split(X.astype("float32"), y)
    return _standardized(train, val) if standardize else (train, val)


def diabetes():
    """Standardized features and a standardized disease-progression target."""
    X, y = load_diabetes(return_X_y=True, scaled=False)
    train, val = _standardized(*_split(X.astype("float32"), y.astype("float32"), stratify=False))
    mean, std = train[1].mean(), train[1].std()
    return (train[0], (train[1] - mean) / std), (val[0], (val[1] - mean) / std)


def mlp(inputs: int, outputs: int, hidden: int = 64, depth: int = 2, activation: str = "relu",
        output_activation: str | None = None, dropout: float = 0.0, initializer="glorot_uniform") -> keras.Model:
    keras.utils.set_random_seed(SEED)
    layers = [keras.Input((inputs,))]
    for i in range(depth):
        if dropout:
            layers.append(keras.layers.Dropout(dropout, name=f"dropout{i}"))
        layers.append(keras.layers.Dense(hidden, activation=activation, kernel_initializer=initializer,
                                         name=f"hidden{i}"))
    if dropout:
        layers.append(keras.layers.Dropout(dropout, name=f"dropout{depth}"))
    layers.append(keras.layers.Dense(outputs, activation=output_activation, name="out"))
    return keras.Sequential(layers)


def classification(model: keras.Model, data, optimizer, from_logits: bool = True, epochs: int = 8,
                   batch_size: int = 32) -> dict:
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits))
    train, val = data
    return {"model": model, "train": train, "val": val, "epochs": epochs, "batch_size": batch_size}
