"""Keras CSVLogger files (epoch, loss, val_loss, ...) from real Keras fits on the torch backend."""
import os

import numpy as np
import pytest

from lossdoctor import diagnose
from lossdoctor.logs import read_runs

os.environ.setdefault("KERAS_BACKEND", "torch")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # keras on numpy 2: __array__ copy


@pytest.fixture(scope="module")
def keras_logs(tmp_path_factory, digits_data):
    import keras

    root = tmp_path_factory.mktemp("keras")
    paths = {}
    for name, shuffled in (("healthy", False), ("shuffled", True)):
        Xtr, ytr, Xva, yva = (t.numpy() for t in digits_data(small=shuffled, shuffle_labels=shuffled))
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256 if shuffled else 64, activation="relu"),
                                  keras.layers.Dense(256 if shuffled else 64, activation="relu"),
                                  keras.layers.Dense(10)])
        model.compile(optimizer=keras.optimizers.Adam(1e-2 if shuffled else 2e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        paths[name] = root / f"{name}.csv"
        model.fit(Xtr, ytr, validation_data=(Xva, yva), epochs=25 if shuffled else 10, batch_size=64, verbose=0,
                  callbacks=[keras.callbacks.CSVLogger(str(paths[name]))])
    return paths


def test_csvlogger_file_is_recognised_with_epochs_as_steps(keras_logs):
    (curves,) = read_runs(keras_logs["healthy"])
    assert curves.meta["format"] == "keras"
    assert curves.meta["step_column"] == "epoch"
    np.testing.assert_array_equal(curves.train.steps, np.arange(10))
    assert len(curves.val) == 10 and curves.meta["columns"] == {"train_loss": "loss", "val_loss": "val_loss"}


def test_healthy_fit_converges_and_shuffled_labels_overfit_from_best_epoch(keras_logs):
    healthy = diagnose(keras_logs["healthy"])
    assert healthy.verdict == "converging" and healthy.warnings() == []
    report = diagnose(keras_logs["shuffled"])
    assert report.verdict == "overfitting"
    ev = report.metadata["curve_evidence"]
    (curves,) = read_runs(keras_logs["shuffled"])
    best_epoch = curves.val.steps[int(np.argmin(curves.val.values))]
    assert abs(ev["overfit_onset_step"] - best_epoch) <= 1  # a running median of 3 epochs
    assert ev["val_end"] > 1.1 * ev["val_best"]
    assert report.events[0].kind == "overfitting_onset"


def test_directory_of_csv_logs_gives_one_report_per_file(keras_logs):
    reports = diagnose(keras_logs["healthy"].parent)
    assert sorted(r.metadata["run"] for r in reports) == ["healthy.csv", "shuffled.csv"]
