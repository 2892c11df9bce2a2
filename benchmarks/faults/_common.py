"""Shared data loaders for the fault-suite recipes (scikit-learn's bundled data, standardized)."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler


def _split(X, y, seed=0, stratify=True):
    return train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y if stratify else None)


def digits(standardize=True, images=False, seq=False):
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    Xtr, Xva, ytr, yva = _split(X, y)
    if standardize:
        Xtr, Xva = X_scale(Xtr, Xva, per_feature=not (images or seq))
    Xtr, Xva = torch.tensor(Xtr), torch.tensor(Xva)
    if images:
        Xtr, Xva = Xtr.reshape(-1, 1, 8, 8), Xva.reshape(-1, 1, 8, 8)
    if seq:
        Xtr, Xva = Xtr.reshape(-1, 8, 8), Xva.reshape(-1, 8, 8)
    return (Xtr, torch.tensor(ytr)), (Xva, torch.tensor(yva))


def X_scale(Xtr, Xva, per_feature=True):
    if per_feature:
        s = StandardScaler().fit(Xtr)
        return s.transform(Xtr).astype(np.float32), s.transform(Xva).astype(np.float32)
    m, sd = Xtr.mean(), Xtr.std()
    return ((Xtr - m) / sd).astype(np.float32), ((Xva - m) / sd).astype(np.float32)


def tabular(name, standardize=True):
    loader = {"breast_cancer": load_breast_cancer, "wine": load_wine}[name]
    X, y = loader(return_X_y=True)
    Xtr, Xva, ytr, yva = _split(X.astype(np.float32), y)
    if standardize:
        Xtr, Xva = X_scale(Xtr, Xva)
    return (torch.tensor(Xtr, dtype=torch.float32), torch.tensor(ytr)), \
        (torch.tensor(Xva, dtype=torch.float32), torch.tensor(yva))


def diabetes(standardize_target=True):
    X, y = load_diabetes(return_X_y=True, scaled=False)
    Xtr, Xva, ytr, yva = _split(X.astype(np.float32), y.astype(np.float32), stratify=False)
    Xtr, Xva = X_scale(Xtr, Xva)
    if standardize_target:
        m, s = ytr.mean(), ytr.std()
        ytr, yva = (ytr - m) / s, (yva - m) / s
    return (torch.tensor(Xtr), torch.tensor(ytr).unsqueeze(1)), (torch.tensor(Xva), torch.tensor(yva).unsqueeze(1))
