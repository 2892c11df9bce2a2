"""LossDoctorCallback in real Keras 3 fits (torch backend, set in tests/conftest.py) on scikit-learn data."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
from sklearn.datasets import load_diabetes, load_digits  # noqa: E402

from lossdoctor import Report  # noqa: E402
from lossdoctor.integrations.keras import LossDoctorCallback, batch_loss_from_running_mean  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype("float32"), y


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    return ((X - X.mean(0)) / X.std(0)).astype("float32"), (y / 100.0).astype("float32")


def classifier(output_activation=None, initializer="glorot_uniform"):
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(64, activation="relu", kernel_initializer=initializer, name="hidden1"),
        keras.layers.Dense(64, activation="relu", kernel_initializer=initializer, name="hidden2"),
        keras.layers.Dense(10, activation=output_activation, name="out"),
    ])


def fit(model, data, loss, optimizer, epochs=4, batch_size=32, **callback_kwargs):
    X, y = data
    model.compile(optimizer=optimizer, loss=loss)
    callback = LossDoctorCallback(print_report=False, **callback_kwargs)
    split = int(0.8 * len(X))
    model.fit(X[:split], y[:split], validation_data=(X[split:], y[split:]), batch_size=batch_size,
              epochs=epochs, verbose=0, callbacks=[callback])
    return callback


def sparse_ce(from_logits=True):
    return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)


def test_softmax_output_into_a_from_logits_loss_is_reported_as_double_softmax(digits):
    callback = fit(classifier("softmax"), digits, sparse_ce(), keras.optimizers.Adam(1e-3))
    report = callback.report
    assert isinstance(report, Report)
    finding = next(f for f in report.findings if f.code == "model.activation_mismatch")
    assert finding.severity == "error" and finding.where == "out"
    assert finding.evidence["output_activation"] == "softmax" and finding.evidence["loss_expects"] == "logits"
    assert "activation=None" in finding.remedy and "from_logits=True" in finding.remedy
    assert_keras_words(report)


def assert_keras_words(report):
    """Remedies a Keras user can apply: no PyTorch advice anywhere in the report."""
    for f in report.findings:
        for pytorch in ("nn.", "torch", "forward()", "CrossEntropyLoss()", "apply_init"):
            assert pytorch not in f.remedy, (f.code, f.remedy)


def test_logits_into_a_from_logits_loss_train_clean(digits):
    callback = fit(classifier(None), digits, sparse_ce(), keras.optimizers.Adam(1e-3))
    assert callback.report.verdict == "converging", callback.report.to_text()
    assert callback.report.warnings() == []


def test_raw_outputs_into_a_probability_loss_are_reported(digits):
    callback = fit(classifier(None), digits, sparse_ce(from_logits=False), keras.optimizers.Adam(1e-3), epochs=1)
    assert callback.report.top.code == "model.activation_mismatch" and callback.report.top.severity == "error"
    assert "from_logits=True" in callback.report.top.remedy
    assert_keras_words(callback.report)


def test_kernels_initialized_a_thousand_times_too_small_are_reported(digits):
    tiny = keras.initializers.RandomNormal(stddev=1e-4)
    callback = fit(classifier(None, initializer=tiny), digits, sparse_ce(), keras.optimizers.Adam(1e-3), epochs=1)
    finding = callback.report.top
    assert finding.code == "model.bad_init" and finding.source == "model:weight_scale_off"  # the model room's check
    assert set(finding.evidence["layers"]) == {"hidden1", "hidden2"}  # the output layer may start small
    assert "kernel_initializer" in finding.remedy and "he_normal for hidden1, hidden2 (relu)" in finding.remedy
    assert_keras_words(callback.report)


def test_kernels_at_keras_default_scale_are_not_reported(digits):
    callback = fit(classifier(None), digits, sparse_ce(), keras.optimizers.Adam(1e-3), epochs=1)
    assert not callback.report.has("model.bad_init")


def regressor():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((10,)), keras.layers.Dense(32, activation="relu", name="hidden"),
                             keras.layers.Dense(1, name="out")])


def test_far_too_high_learning_rate_gives_nan_loss_and_nan_weights(diabetes):
    callback = fit(regressor(), diabetes, "mse", keras.optimizers.SGD(1.0), batch_size=16)
    report = callback.report
    assert report.verdict == "non_finite"
    assert report.has("optim.lr_too_high", "warning")
    nan_weights = next(f for f in report.findings if f.code == "grad.non_finite"
                       and f.source == "integration:keras_weights")
    assert nan_weights.where == "hidden"  # the first layer, in model order


def test_same_regression_at_a_sound_learning_rate_is_clean(diabetes):
    callback = fit(regressor(), diabetes, "mse", keras.optimizers.SGD(0.03), batch_size=16)
    assert callback.report.verdict == "converging", callback.report.to_text()
    assert callback.report.warnings() == []
    assert {"train_loss", "val_loss", "lr"} <= set(callback.report.plots["curves"])
    assert callback.report.metadata["watch"]["instrumented_steps"] >= 2  # torch backend: the model was hooked


def test_halt_on_nan_stops_fit_in_the_first_epoch(diabetes):
    callback = fit(regressor(), diabetes, "mse", keras.optimizers.SGD(1.0), batch_size=16, epochs=6, halt_on_nan=True)
    assert callback.halted_at is not None and callback.halted_at < 22  # 353 rows / 16 per batch


def test_batch_losses_are_recovered_from_keras_running_means():
    rng = np.random.default_rng(0)
    losses = rng.uniform(0.5, 3.0, 40).astype(np.float32)
    means = np.cumsum(losses, dtype=np.float32) / np.arange(1, 41, dtype=np.float32)
    recovered = [batch_loss_from_running_mean(k, float(means[k]), float(means[k - 1]) if k else None)
                 for k in range(40)]
    np.testing.assert_allclose(recovered, losses, rtol=1e-3)


def test_after_a_huge_spike_the_running_mean_is_kept_rather_than_cancelled_digits():
    means = np.cumsum(np.array([1.0, 7e8, 2.0, 2.5], dtype=np.float32)) / np.arange(1, 5, dtype=np.float32)
    value = batch_loss_from_running_mean(3, float(means[3]), float(means[2]))
    assert value == pytest.approx(float(means[3]))  # not a garbage (possibly negative) difference


def test_a_failure_inside_lossdoctor_is_reported_once_and_training_goes_on(digits, monkeypatch):
    import lossdoctor.integrations.keras as integration
    from lossdoctor.internal import LossDoctorInternalWarning

    monkeypatch.delenv("LOSSDOCTOR_STRICT", raising=False)  # as in a user's run

    def broken(model, fresh=True):
        raise RuntimeError("a bug in lossdoctor")

    monkeypatch.setattr(integration, "keras_model_facts", broken)
    model = classifier(None)
    with pytest.warns(LossDoctorInternalWarning, match="a bug in lossdoctor"):
        callback = fit(model, digits, sparse_ce(), keras.optimizers.Adam(1e-3), epochs=2)
    assert int(model.optimizer.iterations.value) == 2 * 45  # every batch of both epochs trained
    assert callback.report is not None and callback.report.verdict is not None


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


def test_close_after_a_crash_inside_fit_removes_every_hook(digits):
    """Keras gives callbacks no event on an exception: close() is the user's way to clean up."""

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 3:
                raise RuntimeError("the user's own callback failed")

    model = classifier()
    X, y = digits
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=sparse_ce())
    before = _hook_count(model)
    doctor = LossDoctorCallback(print_report=False, every=2)
    with pytest.raises(RuntimeError, match="own callback"):
        model.fit(X, y, batch_size=32, epochs=1, verbose=0, callbacks=[doctor, Crash()])
    assert _hook_count(model) > before  # the premise: the crash left the watch attached
    doctor.close()
    assert _hook_count(model) == before
    doctor.close()  # idempotent


# -- issue 15: live runs name the cause --------------------------------------------------------------


def test_a_rate_of_1_names_the_rate_first_in_keras_words(digits):
    callback = fit(classifier(None), digits, sparse_ce(), keras.optimizers.Adam(1.0))
    report = callback.report
    assert report.verdict != "converging"  # it jumped far above chance (ln 10) and sat at chance
    assert report.metadata["run"]["framework"] == "keras" and report.metadata["run"]["num_classes"] == 10
    assert report.top.code == "optim.lr_too_high" and report.codes.count("optim.lr_too_high") == 1
    assert not report.has("data.unnormalized")  # the pixels are already in [0, 1]
    assert_keras_words(report)
    # the healthy twin is test_logits_into_a_from_logits_loss_train_clean (the same model at 1e-3)


def test_the_report_goes_beside_the_logs_of_keras_tensorboard_callback(digits, tmp_path):
    pytest.importorskip("tensorflow")  # Keras' TensorBoard callback writes through tf.summary
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    X, y = digits
    model = classifier(None)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=sparse_ce())
    doctor = LossDoctorCallback(print_report=False)
    model.fit(X, y, batch_size=32, epochs=1, verbose=0,
              callbacks=[keras.callbacks.TensorBoard(str(tmp_path)), doctor])
    events = EventAccumulator(str(tmp_path / "train"), size_guidance={"tensors": 0})
    events.Reload()
    text = events.Tensors("lossdoctor/report/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert f"**verdict:** `{doctor.report.verdict}`" in text


def test_html_and_json_are_written_at_the_end_of_fit(digits, tmp_path):
    callback = fit(classifier("softmax"), digits, sparse_ce(), keras.optimizers.Adam(1e-3), epochs=1,
                   html=tmp_path / "k.html", json=tmp_path / "k.json")
    assert Report.from_json((tmp_path / "k.json").read_text()).codes == callback.report.codes
    assert "model.activation_mismatch" in (tmp_path / "k.html").read_text()


def test_findings_go_to_the_active_wandb_run(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)  # whatever wandb writes relative to the working directory stays in tmp
    wandb = pytest.importorskip("wandb")
    import json
    from pathlib import Path

    run = wandb.init(project="lossdoctor-test", dir=str(tmp_path))
    try:
        callback = fit(classifier("softmax"), digits, sparse_ce(), keras.optimizers.Adam(1e-3), epochs=1)
        assert run.summary["lossdoctor/top_finding"] == "model.activation_mismatch"
        (table_file,) = Path(run.dir).rglob("media/table/lossdoctor/findings_*.table.json")
        assert [row[1] for row in json.loads(table_file.read_text())["data"]] == callback.report.codes
    finally:
        run.finish()
