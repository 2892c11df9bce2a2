"""Problems other rooms reported with the watch, each reproduced with a real small training: false
alarms on healthy runs (which must stay clean), and faults the watch missed (which it must name)."""
import math
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes
from torch import nn

import lossdoctor
from lossdoctor.evidence import RunFacts
from lossdoctor.monitor.checks import logit_overflow
from watch_training import RAW_X, X, Y, batches, mlp, train, warnings_of  # noqa: E402

FAULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "faults"


def fit(model, inputs, targets, loss_fn, optimizer, steps, every=10, batch=64):
    g = torch.Generator().manual_seed(1)
    with lossdoctor.watch(model, optimizer, every=every) as doctor:
        for _ in range(steps):
            idx = torch.randint(0, len(inputs), (batch,), generator=g)
            loss = loss_fn(model(inputs[idx]), targets[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            doctor.step(loss)
    return doctor.report(), doctor


def _standardized(loader, target_dtype):
    data, target = loader(return_X_y=True)
    data = torch.tensor((data - data.mean(0)) / data.std(0), dtype=torch.float32)
    return data, torch.tensor(target, dtype=target_dtype)


# -- model.logit_overflow ----------------------------------------------------------------------

def test_well_fitted_binary_classifier_with_stable_cross_entropy_gets_only_a_note():
    data, target = _standardized(load_breast_cancer, torch.long)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 2))
    report, _ = fit(model, data, target, nn.functional.cross_entropy, torch.optim.Adam(model.parameters(), lr=1.5e-2),
                    steps=60)
    logit = next(f for f in report.findings if f.code == "model.logit_overflow")
    assert logit.evidence["largest_logit"] > 0.5 * 88.72  # where the old rule warned
    assert logit.severity == "info"
    assert logit.where == "2"  # the output layer, not "step N"
    assert isinstance(logit.evidence["step"], int)
    assert warnings_of(report) == []


def test_raw_pixel_inputs_name_the_inputs_and_the_logits_that_follow_from_them():
    report, _ = train(mlp(), lr=0.05, inputs=RAW_X * 16)  # 0..255 pixel values, as images come
    assert report.top.code == "data.unnormalized" and report.top.where == "inputs"
    assert report.top.evidence["largest_magnitude"] > 3 * report.top.evidence["magnitude_limit"]
    for f in report.findings:
        if f is not report.top and f.severity != "info":
            assert f.explained_by == "data.unnormalized", (f.code, f.title)
    assert not report.has("grad.non_finite")


def test_logit_rule_reads_the_pace_not_one_sample():
    """Synthetic read-outs: a running maximum that merely keeps pace with the steps (a classifier
    fitting separable data) is a note wherever it is; one that runs away is a warning."""
    _, doctor = train(mlp(), steps=30)
    stats = doctor.stats()
    steps = list(range(0, 200, 10))
    steady = [(s, 0.8 * 88.72 * (s + 10) / 200, "torch.float32") for s in steps]  # linear: 2x over the last half
    runaway = [(s, 0.7 * 88.72 * 2.0 ** ((s - 190) / 20), "torch.float32") for s in steps]  # doubles every 20 steps
    assert logit_overflow(replace(stats, logits=steady))[0].severity == "info"
    warned = logit_overflow(replace(stats, logits=runaway))[0]
    assert warned.severity == "warning" and warned.evidence["growth_over_last_half"] > 8
    fp16 = [(s, 1.35 * 11.09 * (s + 10) / 200, "torch.float16") for s in steps]  # a healthy fp16 classifier
    note = logit_overflow(replace(stats, logits=fp16, autocast="torch.float16"))[0]
    assert note.severity == "info" and "float32" in note.remedy
    assert logit_overflow(replace(stats, logits=steady), run=RunFacts(task="regression")) == []


def test_huge_logits_are_printed_as_a_readable_multiple_of_the_limit():
    _, doctor = train(mlp(), lr=0.05, inputs=RAW_X, steps=30)
    stats = doctor.stats()
    huge = replace(stats, logits=[(step, value * 4e17, dtype) for step, value, dtype in stats.logits])
    title = logit_overflow(huge)[0].title
    assert "x the float32 exp overflow limit" in title and "e1" in title
    assert "%" not in title and len(title) < 110


# -- optim.lr_too_high -------------------------------------------------------------------------

@pytest.mark.parametrize("every,steps", [(20, 40), (50, 100)])
def test_healthy_lstm_with_rmsprop_is_clean_through_the_optimizer_warm_up(every, steps):
    sys.path.insert(0, str(FAULTS))
    try:
        import healthy_lstm_digits_rmsprop as recipe
    finally:
        sys.path.remove(str(FAULTS))
    built = recipe.build()
    model, optimizer = built["model"], built["optimizer"]
    data, target = built["train"]
    report, doctor = fit(model, data, target, built["loss_fn"], optimizer, steps=steps, every=every)
    assert doctor.stats().update_ratios[:, 0].max() > 0.1  # RMSprop's first step: the old false alarm
    assert not report.has("optim.lr_too_high")
    assert warnings_of(report) == []


def _linear_regression(lr):
    data, target = _standardized(load_diabetes, torch.float32)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 1))
    return fit(model, data, target[:, None], nn.functional.mse_loss, torch.optim.SGD(model.parameters(), lr=lr),
               steps=110, batch=len(data))


def test_learning_rate_past_the_stability_limit_is_still_caught_after_the_warm_up():
    report, _ = _linear_regression(lr=0.3)  # full-batch SGD past 2 / the largest curvature: the loss grows to Inf
    high = [f for f in report.findings if f.code == "optim.lr_too_high" and f.source.startswith("watch:")]
    assert high and high[0].severity == "error" and report.top is high[0]
    assert high[0].evidence["update_to_weight_ratio_before_spike"] > 1.0  # 10x the 0.1 threshold
    assert high[0].evidence["lr_at_spike"] == pytest.approx(0.3)


def test_stable_learning_rate_twin_of_the_linear_regression_is_clean():
    report, _ = _linear_regression(lr=0.01)
    assert report.verdict == "converging"
    assert warnings_of(report) == []


# -- grad.exploding ----------------------------------------------------------------------------

def _deep_tanh(init_scale, depth=40, width=64):
    torch.manual_seed(0)
    layers = [nn.Linear(64, width), nn.Tanh()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.Tanh()]
    model = nn.Sequential(*layers, nn.Linear(width, 10))
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear) and m.out_features == width:
                nn.init.normal_(m.weight, 0.0, init_scale / width ** 0.5)
                m.bias.zero_()
    return model


def test_deep_tanh_stack_with_three_times_lecun_init_has_exploding_gradients():
    report, _ = train(_deep_tanh(3.0), lr=1e-3, steps=30)
    boom = [f for f in report.findings if f.code == "grad.exploding"]
    assert boom and boom[0].severity in ("warning", "error")
    assert boom[0].where == "0"  # the input side
    assert boom[0].evidence["first_over_last_grad_norm"] > 1e3


def test_lecun_init_twin_of_the_deep_tanh_stack_has_no_gradient_finding():
    report, _ = train(_deep_tanh(1.0), lr=1e-3, steps=30)
    assert not report.has("grad.exploding") and not report.has("grad.vanishing")


# -- the NaN check without an optimizer, and a replay that cannot run -------------------------

def _manual_sgd_run(lr, steps, give_loss, clear_grads, nan_check):
    model = mlp()
    with lossdoctor.watch(model, every=10, nan_check=nan_check) as doctor:
        for idx in batches(steps):
            loss = nn.functional.cross_entropy(model(X[idx]), Y[idx])
            model.zero_grad()
            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= lr * p.grad
                    if clear_grads:
                        p.grad = None
            doctor.step(loss if give_loss else None)
    return doctor.report()


@pytest.mark.parametrize("nan_check", ["step", "readout"])
def test_without_an_optimizer_the_nan_is_found_from_the_loss_or_gradients(nan_check):
    for give_loss in (True, False):
        report = _manual_sgd_run(lr=50.0, steps=60, give_loss=give_loss, clear_grads=False, nan_check=nan_check)
        nan = [f for f in report.findings if f.code == "grad.non_finite"]
        assert nan and nan[0].severity == "error", (give_loss, report.to_text())


def test_without_an_optimizer_loss_or_gradient_the_weights_are_checked_at_read_out():
    report = _manual_sgd_run(lr=50.0, steps=60, give_loss=False, clear_grads=True, nan_check="step")
    nan = next(f for f in report.findings if f.code == "grad.non_finite")
    assert nan.evidence["step_exact"] is False
    assert nan.evidence["located_by"] == "weights inspected at read-out"


def test_healthy_run_without_an_optimizer_is_clean():
    report = _manual_sgd_run(lr=0.05, steps=60, give_loss=True, clear_grads=False, nan_check="step")
    assert not report.has("grad.non_finite")


class LockedMLP(nn.Module):
    """Holds a lock (as a model that logs from several threads may): it cannot be deep-copied."""

    def __init__(self):
        super().__init__()
        self.net = mlp()
        self.lock = threading.Lock()

    def forward(self, x):
        with self.lock:
            return self.net(x)


def test_a_replay_that_fails_never_raises_into_training_even_in_strict_mode(monkeypatch):
    monkeypatch.setenv("LOSSDOCTOR_STRICT", "1")
    model = LockedMLP()
    report, _ = train(model, lr=50.0)  # would raise TypeError (cannot pickle a lock) if the replay raised
    nan = next(f for f in report.findings if f.code == "grad.non_finite")
    assert "replay of the root module's forward failed" in nan.evidence["replay"]
    assert nan.evidence["located_by"] == "gradients of the step"
    assert nan.where and nan.where.startswith("net.")
    assert math.isfinite(nan.evidence["step"])


class TrainsThroughASubmodule(nn.Module):
    """Like a LightningModule: training calls ``self.net``; the root's own forward is not implemented."""

    def __init__(self):
        super().__init__()
        self.net = mlp()

    def forward(self, x):
        raise NotImplementedError


def _train_through_submodule(lr, inputs, steps=200):
    model = TrainsThroughASubmodule()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    with lossdoctor.watch(model, optimizer, every=10) as doctor:
        for idx in batches(steps):
            loss = nn.functional.cross_entropy(model.net(inputs[idx]), Y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            doctor.step(loss)
    return doctor.report(), doctor


def test_a_model_trained_through_a_submodule_still_gets_logits_and_dead_units_measured():
    report, doctor = _train_through_submodule(lr=0.05, inputs=RAW_X)
    stats = doctor.stats()
    assert stats.logit_layer == "net.4" and len(stats.logits) == len(stats.sample_steps) > 10
    assert stats.inputs["layer"] == "net.0" and stats.inputs["features"] == 64
    assert report.plots["dead_units"]["layers"] == ["net.1", "net.3"]


def test_a_model_trained_through_a_submodule_gets_its_nan_located_without_a_replay():
    report, _ = _train_through_submodule(lr=50.0, inputs=X)
    nan = next(f for f in report.findings if f.code == "grad.non_finite")
    assert nan.evidence["replay"].startswith("no replay: the root module's forward was not called")
    assert nan.where.startswith("net.")
