"""LossDoctorStopper for Ray Tune: fed the results of real digits trainings directly (as Tune's
controller does), then once through a real local Ray (examples/ray_example.py)."""
from __future__ import annotations

import pathlib
import sys

import pytest

pytest.importorskip("ray.tune")

from lossdoctor.errors import InputError  # noqa: E402
from lossdoctor.integrations._pruning import LIVE_RESULT_KEY, REASON_KEYS  # noqa: E402
from lossdoctor.integrations.ray import LossDoctorStopper, live_metrics, stop_reason, summary  # noqa: E402

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"

HEALTHY = {"lr": 3e-3, "dropout": 0.1, "weight_decay": 1e-5, "init_scale": 1.0, "optimizer": "adam", "normalize": True}
NAN = {**HEALTHY, "lr": 5.0, "init_scale": 30.0, "optimizer": "sgd"}
STUCK = {**HEALTHY, "lr": 1e-5, "init_scale": 0.05, "optimizer": "sgd"}


@pytest.fixture(scope="module")
def digits_search(load_example):
    return load_example("digits_search")


def tune_results(digits_search, config, seed, watched=True):
    """The results a Tune function trainable would report for this configuration."""
    import lossdoctor

    results = []

    def report(step, metrics, doctor):
        results.append({**metrics, "step": step, "training_iteration": len(results) + 1, "done": False,
                        **(live_metrics(doctor) if watched else {})})

    watch = (lambda m, o: lossdoctor.watch(m, o, every=digits_search.REPORT_EVERY)) if watched else None
    digits_search.train(config, seed=seed, on_report=report, watch=watch)
    return results


def feed(stopper, trial_id, results):
    """Tune's controller: the stopper sees each result until it says stop; a trial that runs to its
    end sends its last result once more, marked done. Returns the results Tune kept."""
    kept = []
    for result in results:
        result = dict(result)
        kept.append(result)
        if stopper(trial_id, result):
            return kept
    stopper(trial_id, {**kept[-1], "done": True})
    return kept


def test_a_nan_trial_is_stopped_with_the_reason_in_its_result_and_its_twin_runs_on(digits_search):
    stopper = LossDoctorStopper("accuracy", "max", num_classes=10, step_key="step")
    healthy = feed(stopper, "a", tune_results(digits_search, HEALTHY, seed=0))
    nan = feed(stopper, "b", tune_results(digits_search, NAN, seed=1))
    assert len(healthy) == digits_search.STEPS // digits_search.REPORT_EVERY and stop_reason(healthy[-1]) is None
    assert len(nan) == 2  # stopped at its second report, confirmed
    reason = stop_reason(nan[-1])
    assert set(reason) == set(REASON_KEYS)
    assert reason["lossdoctor_verdict"] == "non_finite" and reason["lossdoctor_code"] == "grad.non_finite"
    assert reason["lossdoctor_step"] == 40
    assert set(stopper.stopped) == {"b"}
    assert "1  non_finite (grad.non_finite)" in stopper.summary()


def test_a_trial_stuck_at_chance_is_stopped_once_a_finished_trial_gives_the_budget(digits_search):
    stopper = LossDoctorStopper("val_loss", "min", num_classes=10, step_key="step")
    stuck = tune_results(digits_search, STUCK, seed=1, watched=False)
    assert len(feed(stopper, "early", stuck)) == len(stuck)  # no finished trial yet: no budget, no judgement
    feed(stopper, "healthy", tune_results(digits_search, HEALTHY, seed=0, watched=False))
    kept = feed(stopper, "late", stuck)
    assert len(kept) < len(stuck)
    reason = stop_reason(kept[-1])
    assert reason["lossdoctor_verdict"] in ("underfitting", "stalled") and "chance" in reason["lossdoctor_reason"]
    assert reason["lossdoctor_step"] >= 0.6 * digits_search.STEPS


def test_a_nested_metric_is_found_by_its_flattened_name(digits_search):
    stopper = LossDoctorStopper("val/loss", "min", num_classes=10)
    nested = [{"val": {"loss": r["val_loss"]}, "training_iteration": r["training_iteration"]}
              for r in tune_results(digits_search, NAN, seed=1, watched=False)]
    kept = feed(stopper, "nan", nested)
    assert len(kept) == 2 and stop_reason(kept[-1])["lossdoctor_verdict"] == "non_finite"


def test_live_metrics_are_plain_codes_and_never_raise():
    assert live_metrics(None) == {LIVE_RESULT_KEY: ""}


@pytest.mark.parametrize("args, kwargs, message", [
    (("accuracy", "maximize"), {}, "mode"),
    (("", "max"), {}, "metric"),
    (("accuracy", "max"), {"kind": "loss"}, "does not fit"),
    (("accuracy", "max"), {"num_classes": 0}, "num_classes"),
])
def test_bad_settings_are_refused(args, kwargs, message):
    with pytest.raises(InputError, match=message):
        LossDoctorStopper(*args, **kwargs)


@pytest.mark.slow
def test_on_a_local_ray_the_nan_trial_is_stopped_and_its_reason_is_in_the_result_grid(tmp_path):
    import ray

    sys.path.insert(0, str(EXAMPLES))
    try:
        import ray_example  # by name: Ray's workers import the trainable's module themselves
    finally:
        sys.path.remove(str(EXAMPLES))
    ray_example.init_ray(logging_level="ERROR")
    try:
        results = ray_example.run([HEALTHY, NAN, HEALTHY], stopper=ray_example.make_stopper(),
                                  storage_path=str(tmp_path))
    finally:
        ray.shutdown()
    by_index = {r.config["index"]: r.metrics for r in results}
    assert by_index[1]["lossdoctor_verdict"] == "non_finite" and by_index[1]["lossdoctor_code"] == "grad.non_finite"
    assert by_index[1]["step"] == 40
    for i in (0, 2):
        assert by_index[i]["step"] == 400 and stop_reason(by_index[i]) is None and by_index[i]["accuracy"] > 0.8
    assert "stopped 1 of 3 trials" in summary(results)
