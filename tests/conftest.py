"""Shared test settings: strict mode (a failing check raises instead of warning), one torch
thread per xdist worker (two workers share this 2-core machine), headless matplotlib, Keras on torch."""
import os

os.environ.setdefault("LOSSDOCTOR_STRICT", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

try:  # the slim tests (make test-slim) run where torch is not installed
    import torch  # noqa: E402
except ModuleNotFoundError:
    torch = None
else:
    torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line("markers", "slim: runs without torch (make test-slim: `pip install lossdoctor` alone)")


SLIM_MARK = "pytestmark = pytest.mark.slim"


def _is_slim_module(path) -> bool:
    return path.name.startswith("test_") and path.suffix == ".py" and SLIM_MARK in path.read_text(encoding="utf-8")


def pytest_ignore_collect(collection_path, config):
    """Without torch (make test-slim) only the modules marked ``pytestmark = pytest.mark.slim`` are
    collected, and only the folders holding one (the others' modules and conftests import torch,
    Lightning or Hypothesis at the top)."""
    if torch is not None:
        return None
    if collection_path.is_dir():
        return not any(_is_slim_module(p) for p in collection_path.rglob("test_*.py"))
    if collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return not _is_slim_module(collection_path)
    return None


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same RNG state, so trainings are reproducible."""
    if torch is not None:
        torch.manual_seed(0)
    import numpy as np

    np.random.seed(0)
    yield


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

    def run(*args, timeout=120):
        proc = subprocess.run([sys.executable, "-m", "lossdoctor", *map(str, args)],
                              capture_output=True, text=True, timeout=timeout)
        return proc.returncode, proc.stdout, proc.stderr

    return run


@pytest.fixture(scope="session")
def load_example():
    """Import a file of examples/ as a module. Tests reuse the examples' models (one definition each),
    which also keeps the examples importable and true."""
    import importlib.util
    import pathlib

    folder = pathlib.Path(__file__).resolve().parents[1] / "examples"

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"lossdoctor_example_{name}", folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def _digits_training():
    """tests/curves/digits_training.py (real digits trainings with real faults), loaded on first use."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parent / "curves" / "digits_training.py"
    spec = importlib.util.spec_from_file_location("lossdoctor_test_digits_training", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_digits():
    """digits_training.train(fault, ..., on_step=, on_eval=): a real training that calls the writers."""
    return _digits_training().train


@pytest.fixture(scope="module")
def digits_data():
    return _digits_training().digits
