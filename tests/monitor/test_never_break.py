"""Never break the run (issue 11): a compiled model trains watched, an unwritable TensorBoard
directory leaves nothing attached, and no failure inside the watch reaches the training loop."""
import warnings

import pytest
import torch
from torch import nn
from torch.amp.grad_scaler import GradScaler

import lossdoctor
from lossdoctor import internal
from lossdoctor.errors import InputError
from lossdoctor.internal import LossDoctorInternalWarning
from lossdoctor.monitor import Watch
from lossdoctor.monitor.inventory import Inventory
from lossdoctor.monitor.measurements import UnitActivity
from test_do_no_harm import assert_same_weights, hook_counts
from watch_training import X, Y, batches, mlp


def fit(model, optimizer, steps=40, every=10, watch=True, **watch_kwargs):
    doctor = lossdoctor.watch(model, optimizer, every=every, **watch_kwargs) if watch else None
    if doctor is not None:
        doctor.start()
    try:
        for idx in batches(steps):
            loss = nn.functional.cross_entropy(model(X[idx]), Y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if doctor is not None:
                doctor.step(loss)
    finally:
        if doctor is not None:
            doctor.close()
    return doctor


def _compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def test_a_compiled_model_trains_watched_and_is_not_recompiled_by_the_watch():
    torch._dynamo.reset()
    model = mlp()
    compiled = torch.compile(model, backend="eager")
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    with pytest.warns(UserWarning, match="torch.compile") as caught:
        doctor = fit(compiled, opt, steps=40, every=5)
    assert sum("torch.compile" in str(w.message) for w in caught) == 1
    assert _compiled_graphs() == 1  # instrumented steps add no hook inside the graph: no recompilation
    stats = doctor.stats()
    assert stats.meta["compiled"] and stats.sample_steps == [0, 5, 10, 15, 20, 25, 30, 35]
    assert stats.logits and stats.inputs["layer"] == "model input"  # measured at the compiled boundary
    assert stats.grad_norms.shape == (3, 8) and stats.update_ratios.shape == (3, 8)
    assert doctor.report().verdict == "converging"
    assert hook_counts(model, opt) == 0 and hook_counts(compiled, opt) == 0


def test_a_model_compiled_in_place_trains_watched():
    torch._dynamo.reset()
    model = mlp()
    model.compile(backend="eager")
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    with pytest.warns(UserWarning, match="torch.compile"):
        doctor = fit(model, opt)
    assert doctor.stats().grad_norms.shape[1] == 4
    assert hook_counts(model, opt) == 0


def test_a_model_compiled_after_the_watch_started_still_trains():
    """The watch's hooks are then inside the compiled graph: traced, they do nothing."""
    torch._dynamo.reset()
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    with lossdoctor.watch(model, opt, every=10) as doctor:
        compiled = torch.compile(model, backend="eager")
        for idx in batches(30):
            loss = nn.functional.cross_entropy(compiled(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            doctor.step(loss)
    assert doctor.stats().grad_norms.shape[1] == 3  # the optimizer's hooks still measure
    assert hook_counts(model, opt) == 0


@pytest.mark.slow
def test_a_model_compiled_with_inductor_trains_watched():
    torch._dynamo.reset()
    model = mlp()
    compiled = torch.compile(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    with pytest.warns(UserWarning, match="torch.compile"):
        doctor = fit(compiled, opt, steps=20)
    assert doctor.stats().logits


def test_an_unwritable_tensorboard_directory_is_a_clear_error_with_nothing_left_attached(tmp_path):
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("a file where the log directory should be")
    model, original_update, original_clip = mlp(), GradScaler.update, torch.nn.utils.clip_grad_norm_
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    doctor = lossdoctor.watch(model, opt, tensorboard=blocker / "runs")
    with pytest.raises(InputError, match="tensorboard=.*cannot write"):
        doctor.start()
    assert hook_counts(model, opt) == 0
    assert GradScaler.update is original_update and torch.nn.utils.clip_grad_norm_ is original_clip
    doctor.close()  # nothing to undo, and no error


def _broken(*args, **kwargs):
    raise ValueError("forced failure inside lossdoctor")


@pytest.mark.parametrize("target", [
    (UnitActivity, "on_forward"), (Watch, "_make_record"), (Watch, "_scaler_update"), (Watch, "_end_sample"),
    (Watch, "_on_first_non_finite"), (Watch, "_record_loss"),
])
def test_no_failure_inside_the_watch_reaches_the_training_loop(monkeypatch, target):
    monkeypatch.delenv("LOSSDOCTOR_STRICT", raising=False)
    monkeypatch.setattr(internal, "_reported", set())  # each failure is reported once per process
    monkeypatch.setattr(*target, _broken)
    bare = mlp()
    fit(bare, torch.optim.SGD(bare.parameters(), lr=50.0, momentum=0.9), watch=False)
    watched = mlp()
    opt = torch.optim.SGD(watched.parameters(), lr=50.0, momentum=0.9)  # a NaN run: every path is taken
    scaler = torch.amp.GradScaler("cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with lossdoctor.watch(watched, opt, every=3) as doctor:
            for idx in batches(40):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = nn.functional.cross_entropy(watched(X[idx]), Y[idx])
                opt.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                doctor.step(loss)
        doctor.report()
    assert any(issubclass(w.category, LossDoctorInternalWarning) for w in caught)
    assert hook_counts(watched, opt) == 0 and GradScaler.update is not _broken


def test_a_watch_that_cannot_start_leaves_the_run_unwatched(monkeypatch):
    monkeypatch.delenv("LOSSDOCTOR_STRICT", raising=False)
    monkeypatch.setattr(internal, "_reported", set())
    monkeypatch.setattr(Inventory, "of", classmethod(lambda cls, root: _broken()))
    bare = mlp()
    fit(bare, torch.optim.SGD(bare.parameters(), lr=0.05), watch=False)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with pytest.warns(LossDoctorInternalWarning, match="forced failure"):
        fit(model, opt)
    assert_same_weights(bare, model)
    assert hook_counts(model, opt) == 0
