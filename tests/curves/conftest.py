"""Fixtures for the curve-analysis tests: real digits trainings, each run once per test module."""
import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("lossdoctor_test_digits_training",
                                               Path(__file__).with_name("digits_training.py"))
digits_training = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(digits_training)


@pytest.fixture(scope="module")
def trainings():
    """fault -> the recorded run (steps, loss, lr, grad_norm, val_steps, val_loss); trained on first use."""
    cache = {}

    class Runs(dict):
        def __missing__(self, fault):
            cache[fault] = digits_training.train(fault)
            self[fault] = cache[fault]
            return cache[fault]

    return Runs()


@pytest.fixture(scope="module")
def to_curves():
    return digits_training.to_curves


@pytest.fixture(scope="module")
def train_digits():
    return digits_training.train


@pytest.fixture(scope="module")
def digits_data():
    """digits(small=, shuffle_labels=, seed=, raw_scale=) -> Xtr, ytr, Xva, yva tensors."""
    return digits_training.digits


@pytest.fixture(scope="module")
def digits_mlp():
    """mlp(hidden=64, dropout=0.0, depth=2): the MLP the digits trainings use."""
    return digits_training.mlp
