"""MLflow's file store: ``mlruns/<experiment>/<run>/metrics/<key>``, each line ``timestamp value step``.

Read directly (the layout is plain text; no mlflow install needed). Metric keys with "/" are nested
directories. The run's display name comes from ``tags/mlflow.runName`` when present.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import LogFormatError
from ..evidence import Curves
from .columns import build_curves


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "metrics").is_dir()


def run_dirs(root: Path) -> list[Path]:
    """Run directories of an mlruns store, an experiment directory, or a run directory itself."""
    if is_run_dir(root):
        return [root]
    runs = []
    for exp in sorted(p for p in [root, *root.iterdir()] if p.is_dir() and not p.name.startswith(".")):
        if exp.name == ".trash":
            continue
        runs.extend(sorted(r for r in exp.iterdir() if is_run_dir(r)))
    return sorted(set(runs))


def _read_metric(file: Path) -> tuple[np.ndarray, np.ndarray]:
    steps, values = [], []
    with open(file, encoding="utf-8", errors="strict") as fh:
        try:
            lines = fh.read().splitlines()
        except UnicodeDecodeError:
            raise LogFormatError(file, "binary data, not an MLflow metric file", expected="lines of 'timestamp value step'") from None
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) not in (2, 3):
                raise ValueError
            value = float(parts[1])  # float() reads nan, inf, -inf, Infinity
            step = float(parts[2]) if len(parts) == 3 else float(len(steps))
        except ValueError:
            raise LogFormatError(file, f"cannot read {line.strip()[:60]!r}", line=no,
                                 expected="'timestamp value step' separated by spaces") from None
        if not math.isfinite(step):
            raise LogFormatError(file, f"step {parts[2]!r} is not a number", line=no, expected="an integer step")
        steps.append(step)
        values.append(value)
    return np.asarray(steps, np.float64), np.asarray(values, np.float64)


def read_mlflow_run(path: str | os.PathLike, step: str | None = None, train: str | None = None,
                    val: str | None = None, run: str | None = None) -> Curves:
    path = Path(path)
    metrics = path / "metrics"
    cols = {}
    for file in sorted(p for p in metrics.rglob("*") if p.is_file()):
        key = file.relative_to(metrics).as_posix()
        cols[key] = _read_metric(file)
    if not cols:
        raise LogFormatError(metrics, "the run has no metrics", expected="files metrics/<key> with 'timestamp value step' lines")
    name = run
    tag = path / "tags" / "mlflow.runName"
    if name is None and tag.is_file():
        name = tag.read_text(encoding="utf-8", errors="replace").strip() or None
    meta = {"experiment": path.parent.name, "run_id": path.name}
    return build_curves(path, name or path.name, "mlflow", cols, train=train, val=val, meta=meta)
