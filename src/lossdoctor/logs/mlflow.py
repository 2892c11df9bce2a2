"""MLflow runs, read through MLflow's own client (``mlflow.MlflowClient``: ``search_runs``,
``get_metric_history``), so that a file store (``mlruns/``), a SQLite store (``sqlite:///mlflow.db``)
and a tracking server are read alike; ``pip install 'lossdoctor[mlflow]'`` installs it.

Without mlflow installed, a file store given as a path (``mlruns/<experiment>/<run>/metrics/<key>``, each
line ``timestamp value step``) is still read as plain text. Metric keys with "/" are nested
directories there; the run's display name comes from ``tags/mlflow.runName``.
"""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LogFormatError
from ..evidence import Curves
from .columns import build_curves
from .files import is_regular_file, os_problem, read_bytes

EXPECTED_STORE = "an MLflow tracking URI (a mlruns directory, file:///..., sqlite:///..., http(s)://...)"
INSTALL_HINT = "pip install 'lossdoctor[mlflow]'"
# Runs asked of the client per page (search_runs' own maximum is larger; a page this size keeps each
# request to a server small).
RUNS_PER_PAGE = 1000


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "metrics").is_dir()


def run_dirs(root: Path) -> list[Path]:
    """Run directories of an mlruns store, an experiment directory, or a run directory itself."""
    if is_run_dir(root):
        return [root]
    runs = []
    try:
        children = sorted(p for p in [root, *root.iterdir()] if p.is_dir() and not p.name.startswith("."))
        for exp in children:
            runs.extend(sorted(r for r in exp.iterdir() if is_run_dir(r)))
    except OSError:
        return sorted(set(runs))  # an unreadable folder: the directory scan names it
    return sorted(set(runs))


def client_class():
    """``mlflow.MlflowClient``, or None when mlflow is not installed."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        return None
    return MlflowClient


@contextlib.contextmanager
def _file_store_allowed():
    """MLflow 3 refuses the file store unless MLFLOW_ALLOW_FILE_STORE is set: reading one is what the
    user asked for, so allow it for the duration of the read (and restore the variable after)."""
    old = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = old


def tracking_uri(uri: str) -> str:
    """A URI for the client: a plain path (``mlruns``, ``./runs/mlruns``) becomes a file URI."""
    if "://" in uri or uri.startswith("sqlite:") or uri.startswith("databricks"):
        return uri
    return Path(uri).expanduser().resolve().as_uri()


def _client_error(where: str, exc: Exception) -> LogFormatError:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return LogFormatError(where, f"MLflow could not read it ({type(exc).__name__}: {message[:300]})",
                          expected=EXPECTED_STORE)


def _run_curves(client, run, where: str, step, train, val) -> Curves:
    cols = {}
    for key in sorted(run.data.metrics):
        try:
            history = client.get_metric_history(run.info.run_id, key)
        except Exception as exc:  # noqa: BLE001 - a store or server error arrives as many types
            raise _client_error(where, exc) from None
        history = sorted(history, key=lambda m: (m.step, m.timestamp))  # ties: the later write last
        cols[key] = (np.fromiter((m.step for m in history), np.float64, len(history)),
                     np.fromiter((m.value for m in history), np.float64, len(history)))
    if not cols:
        raise LogFormatError(where, "the run has no metrics", expected="a run with a logged loss (mlflow.log_metric)")
    meta: dict[str, Any] = {"experiment": run.info.experiment_id, "run_id": run.info.run_id,
                            "mlflow_status": run.info.status}
    if step is not None:
        meta["step_ignored"] = step
    return build_curves(where, run.info.run_name or run.info.run_id, "mlflow", cols, train=train, val=val, meta=meta)


def read_store(uri: str, experiment: str | None = None, run_id: str | None = None, step=None, train=None,
               val=None) -> tuple[list[Curves], list[tuple[str, LogFormatError]]]:
    """Every run of an MLflow store (or of one experiment, or one run): the Curves read and, for each
    run that could not be read, its location and error."""
    Client = client_class()
    if Client is None:
        raise LogFormatError(uri, "reading an MLflow store needs mlflow", expected=f"mlflow installed: {INSTALL_HINT}")
    uri = tracking_uri(uri)
    runs, failures = [], []
    with _file_store_allowed():
        try:
            client = Client(tracking_uri=uri)
            if run_id is not None:
                found = [client.get_run(run_id)]
            else:
                if experiment is not None:
                    exp = client.get_experiment_by_name(experiment)
                    if exp is None:
                        names = sorted(e.name for e in client.search_experiments())
                        raise LogFormatError(uri, f"no experiment named {experiment!r}",
                                             expected="one of: " + (", ".join(names) or "no experiments"))
                    ids = [exp.experiment_id]
                else:
                    ids = [e.experiment_id for e in client.search_experiments()]
                found, token = [], None
                while ids:
                    page = client.search_runs(ids, max_results=RUNS_PER_PAGE, page_token=token,
                                              order_by=["attributes.start_time ASC"])
                    found.extend(page)
                    token = page.token
                    if not token:
                        break
        except LogFormatError:
            raise
        except Exception as exc:  # noqa: BLE001 - a store or server error arrives as many types
            raise _client_error(uri, exc) from None
        if not found:
            where = f" experiment {experiment!r}" if experiment else ""
            raise LogFormatError(uri, f"no runs in the MLflow store{where}",
                                 expected="runs logged with mlflow.start_run / mlflow.log_metric")
        for run in found:
            where = f"{uri}#{run.info.run_id}"
            try:
                runs.append(_run_curves(client, run, where, step, train, val))
            except LogFormatError as exc:
                failures.append((where, exc))
    return runs, failures


def read_run_dir_with_client(path: Path, step=None, train=None, val=None, run: str | None = None) -> Curves:
    """One run directory of a file store, through the client (the store is two levels up)."""
    Client = client_class()
    store = path.parent.parent
    with _file_store_allowed():
        try:
            client = Client(tracking_uri=store.resolve().as_uri())
            found = client.get_run(path.name)
        except Exception as exc:  # noqa: BLE001 - a store error arrives as many types
            raise _client_error(os.fspath(path), exc) from None
        curves = _run_curves(client, found, os.fspath(path), step, train, val)
    if run is not None:
        curves.run = run
    return curves


def _read_metric(file: Path) -> tuple[np.ndarray, np.ndarray]:
    data = read_bytes(file)
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise LogFormatError(file, "binary data, not an MLflow metric file",
                             expected="lines of 'timestamp value step'") from None
    steps, values = [], []
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
    """One run directory: through MLflow's client when it is installed, else as plain text."""
    path = Path(path)
    if client_class() is not None:
        try:
            return read_run_dir_with_client(path, step, train, val, run)
        except LogFormatError as exc:
            if not exc.problem.startswith("MLflow could not read it"):
                raise
            # MLflow's file store finds a run only with its params/ and artifacts/ folders, which a copy
            # kept in git (empty folders are not) lacks: the metrics are plain text, read them as such.
            curves = _read_plain_run(path, step, train, val, run)
            curves.meta.setdefault("notes", []).append(
                f"read as plain text: MLflow's client refused the run ({exc.problem.split(' (', 1)[-1].rstrip(')')})")
            return curves
    return _read_plain_run(path, step, train, val, run)


def _read_plain_run(path: Path, step, train, val, run) -> Curves:
    metrics = path / "metrics"
    cols = {}
    try:
        files = sorted(p for p in metrics.rglob("*") if is_regular_file(p))
    except OSError as exc:
        raise LogFormatError(metrics, os_problem(exc), expected="files metrics/<key>") from None
    for file in files:
        cols[file.relative_to(metrics).as_posix()] = _read_metric(file)
    if not cols:
        raise LogFormatError(metrics, "the run has no metrics",
                             expected="files metrics/<key> with 'timestamp value step' lines")
    name = run
    tag = path / "tags" / "mlflow.runName"
    if name is None and is_regular_file(tag):
        name = read_bytes(tag).decode("utf-8", "replace").strip() or None
    meta = {"experiment": path.parent.name, "run_id": path.name}
    return build_curves(path, name or path.name, "mlflow", cols, train=train, val=val, meta=meta)
