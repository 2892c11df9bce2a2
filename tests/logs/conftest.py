"""Fixtures for the log-reader tests: the digits trainings of tests/curves, and a CLI runner."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "lossdoctor_test_digits_training", Path(__file__).parents[1] / "curves" / "digits_training.py")
digits_training = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(digits_training)


@pytest.fixture(scope="module")
def train_digits():
    """digits_training.train(fault, ..., on_step=, on_eval=): a real training that calls the writers."""
    return digits_training.train


@pytest.fixture(scope="module")
def digits_data():
    return digits_training.digits


@pytest.fixture
def cli(capsys):
    """Run ``lossdoctor ARGS`` in-process; returns (exit code, stdout, stderr)."""
    from lossdoctor.cli import main

    def run(*args):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="session")
def cli_subprocess():
    """Run ``python -m lossdoctor ARGS`` in a fresh interpreter, as a user or CI would."""

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "lossdoctor", *map(str, args)],
                              capture_output=True, text=True, timeout=120)
        return proc.returncode, proc.stdout, proc.stderr

    return run
