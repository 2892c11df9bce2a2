"""MLflow runs from real trainings, read through MLflow's own client: a file store (``mlruns/``) and a
SQLite store, both written by mlflow itself (``mlflow.start_run`` + logged metrics). Without mlflow
installed, a file store given as a path is read as plain text: that fallback is tested on the
documented layout (one ``timestamp value step`` line per logged value) with the client hidden."""
import contextlib
import json
import os
import time
import uuid

import numpy as np
import pytest

from lossdoctor.errors import LogFormatError
from lossdoctor.logs import read_mlflow, read_runs
from lossdoctor.logs import mlflow as mlflow_reader

# MLflow's SQLite store on current SQLAlchemy: third-party noise that says nothing about lossdoctor.
pytestmark = pytest.mark.filterwarnings("ignore:.*noload.*loader strategy:DeprecationWarning")


class LayoutWriter:
    """MLflow's documented file-store layout, for the reader's fallback without mlflow."""

    def __init__(self, root, run_name):
        self.run = root / "0" / uuid.uuid4().hex
        (self.run / "metrics").mkdir(parents=True)
        (self.run / "tags").mkdir()
        (self.run / "tags" / "mlflow.runName").write_text(run_name)
        (root / "0" / "meta.yaml").write_text("experiment_id: '0'\nname: Default\n")

    def log_metric(self, key, value, step):
        path = self.run / "metrics" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(f"{int(time.time() * 1000)} {value} {step}\n")


@contextlib.contextmanager
def _tracking(uri):
    """mlflow's global tracking URI (and the file-store opt-in MLflow 3 asks for), restored after."""
    import mlflow

    old_uri, old_env = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    mlflow.set_tracking_uri(uri)
    try:
        yield mlflow
    finally:
        mlflow.set_tracking_uri(old_uri)
        if old_env is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = old_env


def _train(train_digits, fault, log_metric):
    def on_step(step, loss, lr, gn):
        if step % 3 == 0:
            log_metric("train/loss", loss, step=step)
            log_metric("lr", lr, step=step)

    return train_digits(fault, on_step=on_step,
                        on_eval=lambda step, val: log_metric("val_loss", val, step=step))


def _write_with_mlflow(uri, train_digits):
    from mlflow.entities import Metric

    records, ids = {}, {}
    with _tracking(uri) as mlflow:
        mlflow.set_experiment("digits")
        for fault in ("healthy", "lr_nan"):
            logged = []  # sent in log_batch calls: mlflow's per-call overhead is ~20 ms
            with mlflow.start_run(run_name=fault) as run:
                mlflow.log_metric("first_value", 1.0, step=0)
                records[fault] = _train(train_digits, fault, lambda key, value, step: logged.append(
                    Metric(key, value, int(time.time() * 1000), step)))
                for i in range(0, len(logged), 1000):
                    mlflow.MlflowClient().log_batch(run.info.run_id, metrics=logged[i:i + 1000])
                ids[fault] = run.info.run_id
    return records, ids


@pytest.fixture(scope="module", params=["file", "sqlite", "layout"])
def store(request, tmp_path_factory, train_digits):
    """(kind, what to read: a path or a URI, the trainings' records, run ids)."""
    if request.param != "layout":
        pytest.importorskip("mlflow", reason="mlflow-skinny not installed: the layout writer covers the reader")
    base = tmp_path_factory.mktemp(f"mlflow_{request.param}")
    if request.param == "file":
        root = base / "mlruns"
        records, ids = _write_with_mlflow(root.as_uri(), train_digits)
        return "file", root, records, ids
    if request.param == "sqlite":
        uri = f"sqlite:///{base / 'mlflow.db'}"
        records, ids = _write_with_mlflow(uri, train_digits)
        return "sqlite", uri, records, ids
    root = base / "mlruns"
    records = {fault: _train(train_digits, fault, LayoutWriter(root, fault).log_metric)
               for fault in ("healthy", "lr_nan")}
    return "layout", root, records, {}


@pytest.fixture
def reader_for(monkeypatch):
    """Read a store as its kind asks: a path through the client, a URI, or the plain-text fallback."""

    def read(kind, where, **kw):
        if kind == "layout":
            monkeypatch.setattr(mlflow_reader, "client_class", lambda: None)
        return read_mlflow(where, **kw) if kind == "sqlite" else read_runs(where, **kw)

    return read


def test_every_run_of_the_store_is_read_with_its_name_and_nested_keys(store, reader_for):
    kind, where, records, _ = store
    runs = {c.run: c for c in reader_for(kind, where)}
    assert set(runs) == {"healthy", "lr_nan"}, kind
    healthy = runs["healthy"]
    assert healthy.meta["format"] == "mlflow"
    assert healthy.meta["columns"]["train_loss"] == "train/loss"  # a nested metric key
    np.testing.assert_allclose(healthy.train.values, records["healthy"]["loss"][2::3], rtol=1e-6)
    np.testing.assert_array_equal(healthy.val.steps, records["healthy"]["val_steps"])


def test_healthy_mlflow_run_converges_and_nan_run_is_non_finite(store, cli, monkeypatch):
    kind, where, _, _ = store
    if kind == "layout":
        monkeypatch.setattr(mlflow_reader, "client_class", lambda: None)
    args = ("--mlflow", where) if kind == "sqlite" else (where,)
    code, out, err = cli("diagnose", *args, "--json")
    reports = {r["metadata"]["run"]: r for r in json.loads(out)}
    assert reports["healthy"]["verdict"] == "converging"
    assert all(f["severity"] == "info" for f in reports["healthy"]["findings"])
    assert reports["lr_nan"]["verdict"] == "non_finite"
    assert code == 1 and err == ""


def test_a_run_directory_and_a_metric_file_each_read_one_run(store, reader_for):
    kind, root, _, _ = store
    if kind == "sqlite":
        pytest.skip("a SQLite store has no run directories")
    run_dir = next(p for p in root.rglob("metrics")
                   if (p.parent / "tags" / "mlflow.runName").read_text() == "healthy").parent
    assert [c.run for c in reader_for(kind, run_dir)] == ["healthy"]
    assert [c.run for c in reader_for(kind, run_dir / "metrics" / "val_loss")] == ["healthy"]
    assert [c.run for c in reader_for(kind, run_dir / "metrics" / "train" / "loss")] == ["healthy"]


def test_experiment_and_run_narrow_the_store(store, cli):
    kind, where, _, ids = store
    if kind == "layout":
        pytest.skip("the plain-text fallback reads paths only")
    uri = where if kind == "sqlite" else where.as_uri()
    assert sorted(c.run for c in read_mlflow(uri, experiment="digits")) == ["healthy", "lr_nan"]
    assert [c.run for c in read_mlflow(uri, run=ids["healthy"])] == ["healthy"]
    code, out, err = cli("diagnose", "--mlflow", uri, "--run", ids["healthy"], "--json")
    assert code == 0 and json.loads(out)["verdict"] == "converging"
    code, out, err = cli("diagnose", "--mlflow", uri, "--experiment", "nope")
    assert code == 2 and out == "" and "no experiment named 'nope'" in err and "digits" in err
    assert err.count("\n") == 1


def test_reading_a_file_store_leaves_the_environment_as_it_was(store, reader_for):
    kind, where, _, _ = store
    before = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    reader_for(kind, where)
    assert os.environ.get("MLFLOW_ALLOW_FILE_STORE") == before


def test_without_mlflow_a_store_uri_asks_for_the_extra(monkeypatch, cli, tmp_path):
    monkeypatch.setattr(mlflow_reader, "client_class", lambda: None)
    with pytest.raises(LogFormatError, match=r"lossdoctor\[mlflow\]"):
        read_mlflow(f"sqlite:///{tmp_path / 'x.db'}")
    code, out, err = cli("diagnose", "--mlflow", f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 2 and "pip install 'lossdoctor[mlflow]'" in err and err.count("\n") == 1


def test_path_and_mlflow_are_one_or_the_other(cli, tmp_path):
    code, _, err = cli("diagnose")
    assert code == 2 and "PATH or --mlflow" in err
    code, _, err = cli("diagnose", tmp_path, "--run", "abc")
    assert code == 2 and "--mlflow" in err


def test_a_store_copied_without_its_empty_folders_is_still_read_and_said_so(store, tmp_path):
    """git keeps no empty folder: a mlruns copy from a repository lacks each run's params/ and
    artifacts/, and MLflow's client then finds no run. The metrics are plain text: read as such."""
    import shutil

    kind, root, records, _ = store
    if kind != "file":
        pytest.skip("a file store written by mlflow is what gets copied")
    copy = tmp_path / "mlruns"
    shutil.copytree(root, copy)
    for folder in list(copy.rglob("params")) + list(copy.rglob("artifacts")):
        if not any(folder.iterdir()):
            folder.rmdir()
    runs = {c.run: c for c in read_runs(copy)}
    assert set(runs) == {"healthy", "lr_nan"}
    np.testing.assert_allclose(runs["healthy"].train.values, records["healthy"]["loss"][2::3], rtol=1e-6)
    assert any("read as plain text" in n for n in runs["healthy"].meta["notes"])
