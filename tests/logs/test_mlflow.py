"""MLflow's file store (mlruns/<experiment>/<run>/metrics/<key>) from real trainings.

Written by mlflow itself when it is installed (``mlflow-skinny``; the file store needs
MLFLOW_ALLOW_FILE_STORE=true since MLflow 3), otherwise by a writer of the documented layout
(one ``timestamp value step`` line per logged value) so that the reader is still tested.
"""
import json
import os
import time
import uuid

import numpy as np
import pytest

from lossdoctor.logs import read_runs


class LayoutWriter:
    """MLflow's documented file-store layout, for machines without mlflow."""

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


def _write_runs(root, train_digits, writer):
    records = {}
    for fault in ("healthy", "lr_nan"):
        if writer == "mlflow":
            import mlflow

            old = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 refuses the file store without it
            try:
                mlflow.set_tracking_uri(root.as_uri())
                mlflow.set_experiment("digits")
                from mlflow.entities import Metric

                logged = []  # sent in one log_batch call: mlflow's per-call overhead is ~20 ms
                with mlflow.start_run(run_name=fault) as run:
                    records[fault] = _train(train_digits, fault, lambda key, value, step: logged.append(
                        Metric(key, value, int(time.time() * 1000), step)))
                    for i in range(0, len(logged), 1000):
                        mlflow.MlflowClient().log_batch(run.info.run_id, metrics=logged[i:i + 1000])
            finally:
                if old is None:
                    os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
                else:
                    os.environ["MLFLOW_ALLOW_FILE_STORE"] = old
        else:
            records[fault] = _train(train_digits, fault, LayoutWriter(root, fault).log_metric)
    return records


def _train(train_digits, fault, log_metric):
    def on_step(step, loss, lr, gn):
        if step % 3 == 0:
            log_metric("train/loss", loss, step=step)
            log_metric("lr", lr, step=step)

    return train_digits(fault, on_step=on_step,
                        on_eval=lambda step, val: log_metric("val_loss", val, step=step))


@pytest.fixture(scope="module", params=["mlflow", "layout"])
def mlruns(request, tmp_path_factory, train_digits):
    if request.param == "mlflow":
        pytest.importorskip("mlflow", reason="mlflow-skinny not installed: the layout writer covers the reader")
    root = tmp_path_factory.mktemp("mlflow") / "mlruns"
    records = _write_runs(root, train_digits, request.param)
    return root, request.param, records


def test_every_run_of_the_store_is_read_with_its_name_and_nested_keys(mlruns):
    root, writer, records = mlruns
    runs = {c.run: c for c in read_runs(root)}
    assert set(runs) == {"healthy", "lr_nan"}, writer
    healthy = runs["healthy"]
    assert healthy.meta["format"] == "mlflow"
    assert healthy.meta["columns"]["train_loss"] == "train/loss"  # a nested metric key
    np.testing.assert_allclose(healthy.train.values, records["healthy"]["loss"][2::3], rtol=1e-6)
    np.testing.assert_array_equal(healthy.val.steps, records["healthy"]["val_steps"])


def test_healthy_mlflow_run_converges_and_nan_run_is_non_finite(mlruns, cli):
    root, _, _ = mlruns
    code, out, err = cli("diagnose", root, "--json")
    reports = {r["metadata"]["run"]: r for r in json.loads(out)}
    assert reports["healthy"]["verdict"] == "converging"
    assert all(f["severity"] == "info" for f in reports["healthy"]["findings"])
    assert reports["lr_nan"]["verdict"] == "non_finite"
    assert code == 1


def test_a_run_directory_and_a_metric_file_each_read_one_run(mlruns):
    root, _, _ = mlruns
    run_dir = next(p for p in root.rglob("metrics") if (p.parent / "tags" / "mlflow.runName").read_text() == "healthy").parent
    assert [c.run for c in read_runs(run_dir)] == ["healthy"]
    assert [c.run for c in read_runs(run_dir / "metrics" / "val_loss")] == ["healthy"]
    assert [c.run for c in read_runs(run_dir / "metrics" / "train" / "loss")] == ["healthy"]
