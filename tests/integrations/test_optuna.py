"""LossDoctorPruner on real Optuna studies of a small MLP on scikit-learn's digits.

Each study enqueues fixed configurations (examples/digits_search.py trains them), so a fault and
its healthy twin run in the same study: the fault must be pruned with its reason in user_attrs,
the twin must complete untouched.
"""
from __future__ import annotations

import math

import pytest

optuna = pytest.importorskip("optuna")

from lossdoctor.errors import InputError  # noqa: E402
from lossdoctor.integrations._pruning import REASON_KEYS, Guard, Metric, judge_trial  # noqa: E402
from lossdoctor.integrations.optuna import LossDoctorPruner, stop_reason, summary, watch  # noqa: E402

# Adam at 3e-3 on standardized inputs: above 90 % accuracy on digits within 400 steps.
HEALTHY = {"lr": 3e-3, "dropout": 0.1, "weight_decay": 1e-5, "init_scale": 1.0, "optimizer": "adam", "normalize": True}
# SGD at a rate of 5 with weights 30x too large: the loss is Inf/NaN within the first steps.
NAN = {**HEALTHY, "lr": 5.0, "init_scale": 30.0, "optimizer": "sgd"}
# SGD at 1e-5 with weights 20x too small: nothing moves in 400 steps, the accuracy stays at 1/10.
STUCK = {**HEALTHY, "lr": 1e-5, "init_scale": 0.05, "optimizer": "sgd"}
# Adam at 5e-5: learns (well above chance within 100 steps) but slowly, so at every report it is
# far behind the healthy trials: the kind of trial a median rule stops and lossdoctor must not.
SLOW = {**HEALTHY, "lr": 5e-5, "dropout": 0.0}


@pytest.fixture(scope="module")
def digits_search(load_example):
    return load_example("digits_search")


def run_study(digits_search, pruner, configs, metric="accuracy", watched=True):
    """One trial per configuration, in order; the objective reports every 20 steps."""
    direction = "maximize" if metric == "accuracy" else "minimize"
    study = optuna.create_study(direction=direction, pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
    for config in configs:
        study.enqueue_trial(config)

    def objective(trial):
        config = digits_search.suggest(trial)

        def report(step, metrics, doctor):
            trial.report(metrics[metric], step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        make_watch = (lambda m, o: watch(trial, m, o, every=digits_search.REPORT_EVERY)) if watched else None
        return digits_search.train(config, seed=trial.number, on_report=report, watch=make_watch)[metric]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=len(configs))
    return study


def state(trial) -> str:
    return trial.state.name


def test_a_nan_trial_is_pruned_live_with_its_reason_and_its_healthy_twin_completes(digits_search):
    study = run_study(digits_search, LossDoctorPruner(None, num_classes=10), [HEALTHY, NAN, HEALTHY])
    healthy, nan, healthy_again = study.trials
    assert state(nan) == "PRUNED"
    reason = stop_reason(nan)
    assert reason["lossdoctor_verdict"] == "non_finite" and reason["lossdoctor_code"] == "grad.non_finite"
    assert set(reason) == set(REASON_KEYS)
    # confirmed on two reports, not one, and long before the end
    assert len(nan.intermediate_values) == 2 and reason["lossdoctor_step"] == 40
    for twin in (healthy, healthy_again):
        assert state(twin) == "COMPLETE" and twin.value > 0.8
        assert stop_reason(twin) is None


def test_a_nan_validation_loss_is_pruned_from_the_reported_values_alone(digits_search):
    study = run_study(digits_search, LossDoctorPruner(None, num_classes=10), [HEALTHY, NAN],
                      metric="val_loss", watched=False)
    healthy, nan = study.trials
    assert state(healthy) == "COMPLETE" and healthy.value < 0.5
    assert state(nan) == "PRUNED" and nan.user_attrs["lossdoctor_verdict"] == "non_finite"
    assert len(nan.intermediate_values) == 2
    assert all(not math.isfinite(v) for v in nan.intermediate_values.values())


def test_a_trial_stuck_at_chance_is_pruned_after_most_of_the_budget_a_slow_learner_is_not(digits_search):
    # no watch: only the reported accuracies; the budget is learned from the completed first trial
    study = run_study(digits_search, LossDoctorPruner(None, num_classes=10), [HEALTHY, STUCK, SLOW], watched=False)
    healthy, stuck, slow = study.trials
    assert state(stuck) == "PRUNED"
    reason = stop_reason(stuck)
    assert reason["lossdoctor_verdict"] in ("underfitting", "stalled")
    assert "chance" in reason["lossdoctor_reason"]
    budget = healthy.last_step
    assert 0.6 * budget <= reason["lossdoctor_step"] < budget  # late (certainty first), but not at the end
    assert max(stuck.intermediate_values.values()) < 0.2  # it really sat near chance (0.1)
    assert state(slow) == "COMPLETE" and slow.value > 0.5
    assert state(healthy) == "COMPLETE"


# Adam at 0.09 on raw pixels (0..16): the first updates blow the network up, the loss spikes and
# loses all its progress, and the accuracy sits at 1/10 without ever turning NaN.
BLOWN_UP = {**HEALTHY, "lr": 0.09, "dropout": 0.28, "weight_decay": 5e-3, "init_scale": 0.5, "normalize": False}
# Its twin with no live cause: weights 10x too small under SGD at 0.08. It sits exactly at chance
# (ln 10) for its first reports, then leaves the plateau and ends above 90 %.
TINY_INIT = {**HEALTHY, "lr": 0.08, "init_scale": 0.1, "optimizer": "sgd", "dropout": 0.25, "weight_decay": 6e-4}


def test_a_run_the_rate_blew_up_is_stopped_within_3_reports_a_tiny_init_run_at_chance_is_not(digits_search):
    pruner = LossDoctorPruner(None, num_classes=10, max_steps=digits_search.STEPS)
    study = run_study(digits_search, pruner, [TINY_INIT, BLOWN_UP])
    tiny, blown = study.trials
    assert state(blown) == "PRUNED"
    reason = stop_reason(blown)
    assert reason["lossdoctor_code"] == "optim.lr_too_high" and reason["lossdoctor_verdict"] == "diverging"
    assert len(blown.intermediate_values) <= 3
    assert all(v < 0.15 for v in blown.intermediate_values.values())  # it really sat at chance
    # the slow starter sat at chance too, with no live cause: it must run on, and it learns
    assert max(list(tiny.intermediate_values.values())[:2]) < 0.15
    assert state(tiny) == "COMPLETE" and tiny.value > 0.85 and stop_reason(tiny) is None


def test_without_a_completed_trial_or_max_steps_a_run_at_chance_is_not_judged_on_progress(digits_search):
    study = run_study(digits_search, LossDoctorPruner(None, num_classes=10), [STUCK], watched=False)
    assert state(study.trials[0]) == "COMPLETE"
    study = run_study(digits_search, LossDoctorPruner(None, num_classes=10, max_steps=digits_search.STEPS),
                      [STUCK], watched=False)
    assert state(study.trials[0]) == "PRUNED"


def test_wrapping_median_defers_to_it_for_a_slow_healthy_trial_and_the_summary_counts_both(digits_search):
    # the NaN trial comes while the median rule still waits for its 2 startup trials
    configs = [HEALTHY, NAN, HEALTHY, SLOW]
    alone = run_study(digits_search, LossDoctorPruner(None, num_classes=10), configs)
    wrapped = run_study(digits_search, LossDoctorPruner(optuna.pruners.MedianPruner(n_startup_trials=2),
                                                        num_classes=10), configs)
    # lossdoctor alone keeps the slow learner (no diagnosis says it cannot learn) ...
    assert state(alone.trials[3]) == "COMPLETE"
    # ... and the median rule stops it, which lossdoctor does not claim
    slow = wrapped.trials[3]
    assert state(slow) == "PRUNED" and stop_reason(slow) is None
    for study in (alone, wrapped):
        assert stop_reason(study.trials[1])["lossdoctor_code"] == "grad.non_finite"
    text = summary(wrapped)
    assert "stopped 1 of 4 trials (1 more by the wrapped pruner)" in text
    assert "1  non_finite (grad.non_finite)" in text
    assert "stopped 1 of 4 trials" in summary(alone) and "wrapped" not in summary(alone)


def test_a_trial_lossdoctor_stopped_counts_for_the_wrapped_median_as_if_it_had_run_on(digits_search):
    # Median alone: the NaN trial completes (at chance), so after it and the healthy one the median
    # rule starts and stops the stuck trial at its first report. Wrapped, lossdoctor stops the NaN
    # trial early; the median rule must still start after two trials and stop the stuck one as early.
    configs = [NAN, HEALTHY, STUCK]
    alone = run_study(digits_search, optuna.pruners.MedianPruner(n_startup_trials=2), configs, watched=False)
    wrapped = run_study(digits_search, LossDoctorPruner(optuna.pruners.MedianPruner(n_startup_trials=2),
                                                        num_classes=10), configs)
    assert [state(t) for t in alone.trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert [state(t) for t in wrapped.trials] == ["PRUNED", "COMPLETE", "PRUNED"]
    assert stop_reason(wrapped.trials[0])["lossdoctor_verdict"] == "non_finite"
    stuck_alone, stuck_wrapped = alone.trials[2], wrapped.trials[2]
    assert stop_reason(stuck_wrapped) is None  # the median rule's stop, not lossdoctor's
    assert len(stuck_wrapped.intermediate_values) == len(stuck_alone.intermediate_values) == 1
    reports = [sum(len(t.intermediate_values) for t in study.trials) for study in (alone, wrapped)]
    assert reports[1] < reports[0]


def test_the_pruner_holds_no_watch_after_the_trial_and_pickles(digits_search):
    import gc
    import pickle

    pruner = LossDoctorPruner(None, num_classes=10)
    run_study(digits_search, pruner, [HEALTHY, NAN])
    gc.collect()
    assert all(ref() is None for ref in pruner._watches.values())
    copy = pickle.loads(pickle.dumps(pruner))
    assert copy.guard == pruner.guard and copy._watches == {}


def test_a_score_outside_zero_one_is_not_judged_and_says_why(digits_search):
    pruner = LossDoctorPruner(None, metric="score", num_classes=10)
    study = optuna.create_study(direction="maximize", pruner=pruner)

    def objective(trial):
        for step in range(1, 6):
            trial.report(50.0 + step, step)  # a percentage, not a fraction
            assert not trial.should_prune()
        return 55.0

    with pytest.warns(UserWarning, match="outside \\[0, 1\\]"):
        study.optimize(objective, n_trials=1)


@pytest.mark.parametrize("kwargs, message", [
    ({"metric": "accuracy"}, "metric must be"),
    ({"num_classes": 1}, "num_classes"),
    ({"chance": float("nan")}, "chance"),
    ({"metric": "score", "chance": 1.5}, "chance level of a score"),
    ({"min_reports": 0}, "min_reports"),
    ({"warmup_steps": -1}, "warmup_steps"),
    ({"max_steps": 0}, "max_steps"),
])
def test_bad_settings_are_refused_when_the_pruner_is_made(kwargs, message):
    with pytest.raises(InputError, match=message):
        LossDoctorPruner(None, **kwargs)


def test_a_pruner_of_another_kind_is_refused():
    with pytest.raises(InputError, match="optuna pruner"):
        LossDoctorPruner("median")


# ------------------------------------------------------------------------------------------------
# The decision's guards, on explicit report sequences (the studies above exercise the diagnosis)

ACCURACY = Metric.build("score", 10, None)


def test_one_nan_report_is_not_enough_two_are():
    steps = [20, 40, 60, 80]
    assert judge_trial(steps[:3], [0.5, 0.7, float("nan")], ACCURACY, Guard()) is None
    stop = judge_trial(steps, [0.5, 0.7, float("nan"), float("nan")], ACCURACY, Guard())
    assert stop is not None and stop.verdict == "non_finite" and stop.step == 80
    # a NaN that went away is not a NaN run
    assert judge_trial(steps, [0.5, float("nan"), 0.7, 0.8], ACCURACY, Guard()) is None


def test_a_dead_network_waits_for_the_guard_a_nan_network_does_not():
    steps, at_chance = [20, 40, 60, 80], [0.1, 0.1, 0.1, 0.1]
    guard = Guard(min_reports=4)
    assert judge_trial(steps[:2], at_chance[:2], ACCURACY, guard, live=["grad.dead_relu"]) is None
    assert judge_trial(steps, at_chance, ACCURACY, guard, live=["grad.dead_relu"]).code == "grad.dead_relu"
    assert judge_trial(steps[:2], at_chance[:2], ACCURACY, guard, live=["grad.non_finite"]).verdict == "non_finite"
    # a live finding while the objective learns is not a reason to stop
    assert judge_trial(steps, [0.3, 0.5, 0.6, 0.7], ACCURACY, guard, live=["grad.dead_relu"]) is None
    # nor before the learning-rate warm-up has ended
    warm = Guard(warmup_steps=100)
    assert judge_trial(steps, at_chance, ACCURACY, warm, live=["grad.dead_relu"]) is None
