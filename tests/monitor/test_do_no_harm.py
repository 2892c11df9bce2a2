"""The monitor must not change the run: same weights bit for bit, same RNG, hooks gone on exit,
its own failures reported once while training goes on."""
import copy
import io
import warnings

import pytest
import torch
from torch import nn

import lossdoctor
from lossdoctor.errors import InputError, TrainingHalted
from lossdoctor.internal import LossDoctorInternalWarning
from lossdoctor.monitor import Watch
from watch_training import X, Y, assert_all_finite, batches, mlp, train


def dropout_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 10))


def run(watch_it: bool, lr=0.05, steps=60, clip=1.0, **kw):
    """Train a model with dropout (it consumes the global RNG) with clipping; return weights and RNG."""
    model = dropout_mlp()
    torch.manual_seed(123)
    report, _ = train(model, lr=lr, steps=steps, every=4, clip=clip, watch=watch_it, **kw)
    return model, torch.get_rng_state(), report


def assert_same_weights(a, b):
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(torch.nan_to_num(p, 1.0), torch.nan_to_num(q, 1.0))
        assert torch.equal(p.isnan(), q.isnan())


def test_watched_training_gives_bit_identical_weights_and_rng_state():
    bare, bare_rng, _ = run(False)
    watched, watched_rng, report = run(True, tensorboard=None)
    assert report.plots["grad_norms"]["steps"]  # the monitor did instrument steps
    assert_same_weights(bare, watched)
    assert torch.equal(bare_rng, watched_rng)


def test_nan_replay_leaves_weights_and_rng_untouched():
    bare, bare_rng, _ = run(False, lr=50.0, clip=None)
    watched, watched_rng, report = run(True, lr=50.0, clip=None)
    assert report.has("grad.non_finite", "error")
    assert_same_weights(bare, watched)
    assert torch.equal(bare_rng, watched_rng)


def hook_counts(model, optimizer):
    counts = [len(getattr(m, attr)) for m in model.modules() for attr in
              ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")]
    counts += [len(optimizer._optimizer_step_pre_hooks), len(optimizer._optimizer_step_post_hooks)]
    counts += [len(getattr(p, "_post_accumulate_grad_hooks", None) or {}) for p in model.parameters()]
    return sum(counts)


@pytest.mark.parametrize("every", [1, 3])
def test_hooks_and_clip_patch_are_removed_on_exit_even_after_an_error(every):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    original_clip = torch.nn.utils.clip_grad_norm_
    with pytest.raises(RuntimeError, match="user code failed"):
        with lossdoctor.watch(model, opt, every=every) as doctor:
            assert hook_counts(model, opt) > 0
            assert torch.nn.utils.clip_grad_norm_ is not original_clip
            for i, idx in enumerate(batches(5)):
                loss = nn.functional.cross_entropy(model(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                doctor.step(loss)
                if i == 3:
                    raise RuntimeError("user code failed")
    assert hook_counts(model, opt) == 0
    assert torch.nn.utils.clip_grad_norm_ is original_clip
    doctor.close()  # idempotent
    assert doctor.step_count == 4


def test_internal_failure_is_reported_once_and_training_goes_on(monkeypatch):
    monkeypatch.delenv("LOSSDOCTOR_STRICT", raising=False)

    def broken(self, *args):
        raise ValueError("forced failure inside lossdoctor")

    monkeypatch.setattr(Watch, "_on_forward", broken)
    monkeypatch.setattr(Watch, "_before_update", broken)
    bare, _, _ = run(False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        watched, _, report = run(True)
    ours = [w for w in caught if issubclass(w.category, LossDoctorInternalWarning)]
    assert len(ours) == 2  # one per failing place, not one per step
    assert "forced failure inside lossdoctor" in str(ours[0].message)
    assert_same_weights(bare, watched)
    assert report.verdict is not None


def test_halt_on_nan_stops_before_the_bad_update_and_saves_finite_weights(tmp_path):
    model = mlp()
    path = tmp_path / "last_finite.pt"
    with pytest.raises(TrainingHalted) as halted:
        train(model, lr=50.0, halt_on_nan=True, save_last_finite=path)
    finding = halted.value.finding
    assert finding.code == "grad.non_finite" and finding.where
    assert finding.where in dict(model.named_modules())
    assert_all_finite(model)  # the NaN gradient was never applied
    saved = torch.load(path)
    assert saved["step"] == finding.evidence["step"]
    fresh = mlp(seed=1)
    fresh.load_state_dict(saved["model"])
    assert_all_finite(fresh)


def test_steps_are_counted_once_whether_the_loss_comes_before_or_after_the_optimizer_step():
    for after in (True, False):
        report, doctor = train(mlp(), steps=30, every=7, loss_after_step=after)
        stats = doctor.stats()
        assert doctor.step_count == 30
        assert stats.loss_steps.tolist() == list(range(30))


def test_without_an_optimizer_each_step_call_is_a_step():
    report, doctor = train(mlp(), lr=0.02, steps=20, every=5, watch_optimizer=False)
    assert doctor.step_count == 20
    assert len(report.plots["grad_norms"]["steps"]) == 4


def test_copies_and_pickles_of_a_watched_model_work_and_do_not_feed_the_watch():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    with lossdoctor.watch(model, opt, every=1) as doctor:
        twin = copy.deepcopy(model)
        torch.save(model, io.BytesIO())
        assert doctor._sample is not None  # step 0 is instrumented: the hooks are armed now
        twin(X[:8])
        assert not doctor._sample.states and not doctor._sample.order  # the copy fed nothing
    assert hook_counts(model, opt) == 0


def test_bad_arguments_get_clear_errors():
    with pytest.raises(InputError, match="every"):
        lossdoctor.watch(mlp(), every=0)
    with pytest.raises(InputError, match="nn.Module"):
        lossdoctor.watch("model")
    with pytest.raises(InputError, match="tensorboard"):
        lossdoctor.watch(mlp(), histograms_every=10)
    with pytest.raises(InputError, match="no parameters"):
        lossdoctor.watch(torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Softmax(dim=1)))


def test_closure_optimizers_are_checked_after_the_closure_ran():
    """Lightning and LBFGS call optimizer.step(closure): gradients exist only once the closure ran."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=50.0)
    with lossdoctor.watch(model, opt, every=5) as doctor:
        for idx in batches(40):
            def closure():
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(X[idx]), Y[idx])
                loss.backward()
                return loss

            loss = opt.step(closure)
            doctor.step(loss)
    report = doctor.report()
    assert doctor.step_count == 40
    assert report.plots["grad_norms"]["steps"] == [0, 5, 10, 15, 20, 25, 30, 35]
    nan = [f for f in report.findings if f.code == "grad.non_finite"]
    assert nan and nan[0].evidence["located_by"].startswith("replay")
    assert all(x == x for x in report.plots["grad_norms"]["norms"][0][:1])  # step 0 was measured (not NaN)


def test_gradient_accumulation_gives_one_loss_per_optimizer_step():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    with lossdoctor.watch(model, opt, every=4) as doctor:
        for i, idx in enumerate(batches(24)):
            loss = nn.functional.cross_entropy(model(X[idx]), Y[idx]) / 3
            loss.backward()
            doctor.step(loss)
            if i % 3 == 2:
                opt.step()
                opt.zero_grad()
    stats = doctor.stats()
    assert doctor.step_count == 8
    assert stats.loss_steps.tolist() == list(range(8))


def test_read_out_mode_saves_the_snapshot_of_the_last_clean_read_out(tmp_path):
    path = tmp_path / "last_finite.pt"
    report, _ = train(mlp(), lr=50.0, steps=30, every=2, nan_check="readout", save_last_finite=path)
    first_nan = [f for f in report.findings if f.code == "grad.non_finite"][0].evidence["step"]
    saved = torch.load(path)
    assert saved["step"] <= first_nan
    fresh = mlp(seed=1)
    fresh.load_state_dict(saved["model"])
    assert_all_finite(fresh)
