"""Per-epoch Keras CSVLogger logs from real fits on digits (torch backend), each fault beside its twin.

- a slow fall to a high floor (60 % of the labels replaced at random) is converging, while the same
  small network at a learning rate of 1e-6 is underfitting;
- a big network on 200 noisy examples overfits (validation bottoms, then rises for good while
  training keeps falling), with the onset at the real minimum epoch;
- 4 epochs of shuffled labels: every evaluation rises while training falls, overfitting even so short;
- Adam at 0.05: validation swings widely with training, which is not overfitting;
- raw pixels x16 under SGD: stuck at chance, with the accuracy column at 1/10 in the evidence.
The healthy twin (a 64-unit MLP, Adam 2e-3, 20 epochs) must converge.
"""
import os

import numpy as np
import pytest

from lossdoctor import diagnose
from lossdoctor.logs import read_runs

os.environ.setdefault("KERAS_BACKEND", "torch")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # keras on numpy 2: __array__ copy

FITS = {
    # name: (data, width, optimizer, learning rate, epochs, batch size)
    "healthy": ({}, 64, "adam", 2e-3, 20, 64),
    "label_noise": ({"noise": 0.6}, 16, "adam", 3e-4, 20, 64),
    "tiny_lr": ({}, 16, "adam", 1e-6, 20, 64),
    "small_noisy": ({"rows": 200, "noise": 0.2}, 512, "adam", 1e-3, 50, 16),
    "shuffled_4": ({"small": True, "shuffle_labels": True}, 256, "adam", 1e-2, 4, 64),
    "healthy_4": ({}, 64, "adam", 2e-3, 4, 64),
    "adam_005": ({}, 256, "adam", 5e-2, 20, 64),
    "x16_sgd": ({"raw_scale": 16.0}, 64, "sgd", 0.1, 15, 32),
}


@pytest.fixture(scope="module")
def keras_logs(tmp_path_factory, digits_data):
    import keras

    root = tmp_path_factory.mktemp("keras_verdicts")
    paths = {}
    for name, (data, width, opt, lr, epochs, batch) in FITS.items():
        noise, rows = data.pop("noise", 0.0), data.pop("rows", None)
        Xtr, ytr, Xva, yva = (t.numpy() for t in digits_data(**data))
        if rows:
            Xtr, ytr = Xtr[:rows], ytr[:rows]
        if noise:
            rng = np.random.default_rng(0)
            flip = rng.random(ytr.size) < noise
            ytr = ytr.copy()
            ytr[flip] = rng.integers(0, 10, int(flip.sum()))
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(width, activation="relu"),
                                  keras.layers.Dense(width, activation="relu"), keras.layers.Dense(10)])
        optimizer = keras.optimizers.Adam(lr) if opt == "adam" else keras.optimizers.SGD(lr, momentum=0.9)
        model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        paths[name] = root / f"{name}.csv"
        model.fit(Xtr, ytr, validation_data=(Xva, yva), epochs=epochs, batch_size=batch, verbose=0,
                  callbacks=[keras.callbacks.CSVLogger(str(paths[name]))])
    return paths


def _curves(keras_logs, name):
    (curves,) = read_runs(keras_logs[name])
    return curves


def test_healthy_twin_converges(keras_logs):
    report = diagnose(keras_logs["healthy"])
    assert report.verdict == "converging" and report.warnings() == []


def test_a_slow_fall_to_a_high_floor_converges_without_halving(keras_logs):
    curves = _curves(keras_logs, "label_noise")
    train, val = curves.train.values, curves.val.values
    assert train[-1] > 0.75 * train[0]  # the premise: far from halved ...
    assert np.all(np.diff(val) < 0)  # ... and validation improves at every epoch
    report = diagnose(keras_logs["label_noise"])
    assert report.verdict == "converging", report.metadata["curve_evidence"]


def test_a_rate_of_1e6_that_barely_moves_the_loss_is_underfitting(keras_logs):
    curves = _curves(keras_logs, "tiny_lr")
    assert abs(curves.train.values[-1] - curves.train.values[0]) < 0.02 * curves.train.values[0]
    report = diagnose(keras_logs["tiny_lr"])
    assert report.verdict == "underfitting"
    assert report.metadata["curve_evidence"]["relative_drop"] < 0.05


def test_a_big_network_on_200_noisy_examples_overfits_from_its_best_epoch(keras_logs):
    curves = _curves(keras_logs, "small_noisy")
    val = curves.val.values
    best = int(np.argmin(val))
    report = diagnose(keras_logs["small_noisy"])
    assert report.verdict == "overfitting"
    ev = report.metadata["curve_evidence"]
    assert ev["overfit_onset_step"] == curves.val.steps[best]  # the real minimum, not a smoothed one
    assert ev["val_best"] == pytest.approx(float(val[best]), rel=1e-5)
    assert ev["val_end"] > 1.15 * ev["val_best"] and ev["train_fall_after_onset"] > 0.5
    assert any(e.kind == "overfitting_onset" and e.step == curves.val.steps[best] for e in report.events)


def test_four_epochs_of_rising_evaluations_overfit_and_their_twin_converges(keras_logs):
    curves = _curves(keras_logs, "shuffled_4")
    assert np.all(np.diff(curves.val.values) > 0) and np.all(np.diff(curves.train.values) < 0)  # the premise
    report = diagnose(keras_logs["shuffled_4"])
    assert report.verdict == "overfitting"
    ev = report.metadata["curve_evidence"]
    assert ev["overfit_onset_step"] == curves.val.steps[0] and ev["val_rises_in_a_row"] == 3
    twin = diagnose(keras_logs["healthy_4"])
    assert twin.verdict == "converging" and twin.metadata["curve_evidence"]["short_log"] is True


def test_validation_swinging_with_a_rate_too_high_is_not_overfitting(keras_logs):
    curves = _curves(keras_logs, "adam_005")
    train, val = curves.train.values, curves.val.values
    late = slice(len(val) // 2, None)
    assert val[late].max() > 1.5 * val[late].min()  # the premise: validation swings widely ...
    assert np.sum(np.diff(train[late]) > 0) >= 3  # ... and training goes up and down with it
    report = diagnose(keras_logs["adam_005"])
    assert report.verdict != "overfitting"
    assert "overfit_onset_step" not in report.metadata["curve_evidence"]


def test_raw_pixels_x16_sit_at_chance_and_the_accuracy_column_says_so(keras_logs):
    report = diagnose(keras_logs["x16_sgd"])
    assert report.verdict in ("underfitting", "stalled") and report.exit_code == 1
    ev = report.metadata["curve_evidence"]
    assert ev["chance_classes"] == 10
    assert "accuracy ends at" in ev["chance_source"]


@pytest.fixture(scope="module")
def keras_regression(tmp_path_factory):
    """A linear MSE fit on two diabetes features (standardized target): it settles near 0.68."""
    import keras
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X = X[["s4", "s5"]].to_numpy()
    X, y = (X - X.mean(0)) / X.std(0), ((y - y.mean()) / y.std()).to_numpy()
    Xtr, Xva, ytr, yva = train_test_split(X, y, test_size=0.25, random_state=0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    path = tmp_path_factory.mktemp("keras_regression") / "diabetes.csv"
    model.fit(Xtr, ytr, validation_data=(Xva, yva), epochs=60, batch_size=len(Xtr), verbose=0,
              callbacks=[keras.callbacks.CSVLogger(str(path))])
    return path


def test_a_regression_settling_near_ln2_stays_converging_with_a_lower_confidence(keras_regression, keras_logs):
    curves = read_runs(keras_regression)[0]
    assert abs(curves.train.values[-1] - np.log(2)) < 0.035  # the premise: an MSE within 5 % of ln 2
    report = diagnose(keras_regression)
    assert report.verdict == "converging"
    ev = report.metadata["curve_evidence"]
    assert "ln 2" in ev["near_chance_level"] and "ended_at_chance" not in ev
    twin = diagnose(keras_logs["healthy"]).metadata["curve_evidence"]
    assert ev["verdict_confidence"] < twin["verdict_confidence"]
