"""lossdoctor for Ray Tune: stop the trials that cannot converge, and say why.

``LossDoctorStopper`` is a Tune ``Stopper``. Tune asks the stopper about every result before it
asks the scheduler, so the stopper composes with any scheduler (ASHA, HyperBand, the median
stopping rule, or none) the way a wrapper would: lossdoctor stops a trial when its diagnosis is
certain (:func:`lossdoctor.integrations._pruning.judge_trial`), and the scheduler decides the rest.
The reason is written into the trial's last result (``lossdoctor_verdict``, ``lossdoctor_code``,
``lossdoctor_step``, ``lossdoctor_reason``), so it is in ``ResultGrid`` and the result logs::

    from lossdoctor.integrations.ray import LossDoctorStopper, live_metrics, summary

    def train(config):
        model, optimizer = build(config)
        with lossdoctor.watch(model, optimizer) as doctor:
            for step in range(1, 401):
                doctor.step(train_step(model, optimizer))
                if step % 20 == 0:
                    tune.report({"accuracy": accuracy(model), "step": step, **live_metrics(doctor)})

    stopper = LossDoctorStopper("accuracy", "max", num_classes=10, step_key="step")
    tuner = tune.Tuner(train, param_space=space,
                       tune_config=tune.TuneConfig(metric="accuracy", mode="max", scheduler=ASHAScheduler()),
                       run_config=tune.RunConfig(stop=stopper))
    print(summary(tuner.fit()))

On a cluster nothing changes: the stopper runs in the driver with Tune's controller, and everything
it decides on comes in the reported results (the worker's live findings included, as plain codes
through :func:`live_metrics`); no worker reads any state of the driver.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

from ..errors import InputError
from ._common import guarded, require
from ._pruning import (LIVE_RESULT_KEY, REASON_KEYS, Guard, Metric, Stop, judge_trial, live_codes,
                       parse_live_codes, summarize)

require("ray.tune", "lossdoctor[ray]")
from ray.tune import Stopper  # noqa: E402


def live_metrics(watch: Any) -> dict[str, str]:
    """The live findings of a ``lossdoctor.watch`` (or a Report) as one result entry: the codes of
    its error-level findings, comma-separated (empty when there are none). Merge it into the dict
    you pass to ``tune.report`` so that the stopper, in the driver, can read them."""
    return _live_entry(watch) or {LIVE_RESULT_KEY: ""}


@guarded("ray live_metrics")
def _live_entry(watch: Any) -> dict[str, str]:
    return {LIVE_RESULT_KEY: ",".join(live_codes(watch))}


class _TrialRecord:
    __slots__ = ("steps", "values", "live", "done")

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.values: list[float] = []
        self.live: tuple[str, ...] = ()
        self.done = False


class LossDoctorStopper(Stopper):
    """Stop a Tune trial when lossdoctor's diagnosis of its reported values is certain.

    Args:
        metric: the reported metric to judge (the one ``TuneConfig(metric=...)`` optimizes).
        mode: ``"min"`` or ``"max"``, as in ``TuneConfig``.
        kind: ``"loss"``, ``"score"`` (a value in [0, 1]: accuracy, F1) or ``"auto"`` (from ``mode``).
        num_classes, chance, min_reports, warmup_steps, max_steps: as for the Optuna
            ``LossDoctorPruner`` (steps are counted in ``step_key`` units).
        step_key: the result key that counts steps (default Tune's ``training_iteration``).
    """

    def __init__(self, metric: str, mode: str, *, kind: str = "auto", num_classes: int | None = None,
                 chance: float | None = None, min_reports: int = 3, warmup_steps: float = 0,
                 max_steps: float | None = None, step_key: str = "training_iteration") -> None:
        if not isinstance(metric, str) or not metric:
            raise InputError(f"metric must be the name of a reported metric, got {metric!r}")
        if mode not in ("min", "max"):
            raise InputError(f"mode must be 'min' or 'max', got {mode!r}")
        if kind == "auto":
            kind = "loss" if mode == "min" else "score"
        if (kind == "score") != (mode == "max"):
            raise InputError(f"kind={kind!r} does not fit mode={mode!r} (a loss is minimized, a score maximized)")
        self.metric, self.mode, self.step_key = metric, mode, step_key
        self.judged_as = Metric.build(kind, num_classes, chance)
        self.guard = Guard(min_reports=min_reports, warmup_steps=warmup_steps, max_steps=max_steps)
        self.stopped: dict[str, Stop] = {}
        self._trials: dict[str, _TrialRecord] = {}
        self._skipped: set[str] = set()

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        stop = self._judge(trial_id, result)
        if stop is None:
            return False
        self.stopped[trial_id] = stop
        result.update(stop.attrs())  # the dict Tune stores as the trial's last result
        return True

    def stop_all(self) -> bool:
        return False

    def summary(self, n_trials: int | None = None) -> str:
        """How many trials this stopper stopped, by cause (the trials it saw, unless given)."""
        return summarize({k: s.cause for k, s in self.stopped.items()}, n_trials or len(self._trials))

    @guarded("ray stopper")
    def _judge(self, trial_id: str, result: dict[str, Any]) -> Stop | None:
        record = self._trials.setdefault(trial_id, _TrialRecord())
        value, step = _lookup(result, self.metric), _lookup(result, self.step_key)
        if value is None or step is None or trial_id in self._skipped:
            return None
        value, step = float(value), float(step)
        if record.steps and step <= record.steps[-1]:  # Tune's repeated final result of a finished trial
            record.done = record.done or bool(result.get("done"))
            return None
        problem = self.judged_as.check(value)
        if problem:
            self._skipped.add(trial_id)
            import warnings

            warnings.warn(f"lossdoctor does not judge trial {trial_id}: {problem}", UserWarning, stacklevel=2)
            return None
        record.steps.append(step)
        record.values.append(value)
        record.live = parse_live_codes(result.get(LIVE_RESULT_KEY))
        record.done = bool(result.get("done"))
        best, budget = self._study_state(trial_id)
        return judge_trial(record.steps, record.values, self.judged_as, self.guard, best_value=best,
                           budget_steps=budget, live=record.live)

    def _study_state(self, trial_id: str) -> tuple[float | None, float | None]:
        """The best value another trial has reported, and the longest finished trial's last step."""
        best: float | None = None
        budget: float | None = None
        pick = max if self.mode == "max" else min
        for other, record in self._trials.items():
            if record.done and other not in self.stopped and record.steps:
                budget = max(budget or 0.0, record.steps[-1])
            if other == trial_id:
                continue
            finite = [v for v in record.values if math.isfinite(v)]
            if finite:
                best = pick(finite) if best is None else pick(best, pick(finite))
        return best, budget


def _lookup(result: dict[str, Any], key: str) -> Any:
    """``result[key]``, or a nested entry named the way Tune flattens it (``"val/acc"``)."""
    if key in result:
        return result[key]
    node: Any = result
    for part in key.split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def stop_reason(result: Any) -> dict[str, Any] | None:
    """The reason lossdoctor stopped a trial (from a ``ray.tune.Result`` or a result dict), or None."""
    metrics = getattr(result, "metrics", result) or {}
    if not metrics.get("lossdoctor_verdict"):
        return None
    return {key: metrics.get(key) for key in REASON_KEYS}


def summary(results: Iterable[Any]) -> str:
    """How many trials of a ``ResultGrid`` (or of Results / result dicts) lossdoctor stopped, by cause."""
    results = list(results)
    causes = {}
    for i, r in enumerate(results):
        reason = stop_reason(r)
        if reason:
            causes[i] = Stop(reason["lossdoctor_verdict"], reason["lossdoctor_code"],
                             reason["lossdoctor_step"] or 0, reason["lossdoctor_reason"] or "").cause
    return summarize(causes, len(results), title="lossdoctor on Ray Tune")


__all__ = ["LossDoctorStopper", "live_metrics", "stop_reason", "summary"]
