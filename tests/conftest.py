"""Shared test settings: strict mode (a failing check raises instead of warning), one torch
thread per xdist worker (two workers share this 2-core machine), headless matplotlib, Keras on torch."""
import os

os.environ.setdefault("LOSSDOCTOR_STRICT", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same RNG state, so trainings are reproducible."""
    torch.manual_seed(0)
    import numpy as np

    np.random.seed(0)
    yield


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
