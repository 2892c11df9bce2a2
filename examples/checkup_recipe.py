"""A recipe for `lossdoctor checkup`: a digits classifier that will not train.

    lossdoctor checkup examples/checkup_recipe.py:build --html checkup.html
    lossdoctor checkup examples/checkup_recipe.py:build_fixed      # the same recipe, remedies applied

build() returns the dict the checkup reads (see the README): the model, the data, the loss, the
optimizer instance you train with, and optionally grad_clip, epochs, batch_size and task.
"""
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn


def _data(standardize: bool):
    X, y = load_digits(return_X_y=True)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    if standardize:
        scaler = StandardScaler().fit(X_train)
        X_train, X_val = scaler.transform(X_train), scaler.transform(X_val)
    as_tensors = lambda X, y: (torch.tensor(X, dtype=torch.float32), torch.tensor(y))  # noqa: E731
    return as_tensors(X_train, y_train), as_tensors(X_val, y_val)


def _model(dropout: float) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(128, 128), nn.ReLU(), nn.Dropout(dropout), nn.Linear(128, 10))


def build() -> dict:
    """Dropout 0.8 on every layer and a gradient clip far below the gradient norm."""
    train, val = _data(standardize=True)
    model = _model(dropout=0.8)
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
            "grad_clip": 0.01, "epochs": 20, "batch_size": 64, "task": "classification"}


def build_fixed() -> dict:
    """The same recipe with the remedies applied: dropout 0.1, clipping off."""
    train, val = _data(standardize=True)
    model = _model(dropout=0.1)
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
            "grad_clip": None, "epochs": 20, "batch_size": 64, "task": "classification"}
