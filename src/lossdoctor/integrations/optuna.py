"""lossdoctor for Optuna: stop the trials that cannot converge, and say why.

``LossDoctorPruner`` wraps any Optuna pruner (``MedianPruner`` by default; ``None`` for lossdoctor
alone). At each ``trial.should_prune()`` it judges the trial's reported values with lossdoctor's
curve engine and, when the objective runs :func:`watch`, the live findings; it prunes the trial
when the diagnosis is certain (NaN, a broken network at chance, a divergence, no progress for most
of the budget far from the study's best; see :func:`lossdoctor.integrations._pruning.judge_trial`)
and otherwise defers to the wrapped pruner. The reason goes into the trial's ``user_attrs``
(``lossdoctor_verdict``, ``lossdoctor_code``, ``lossdoctor_step``, ``lossdoctor_reason``), and
:func:`summary` counts the causes over a study::

    pruner = LossDoctorPruner(optuna.pruners.MedianPruner(), num_classes=10)
    study = optuna.create_study(direction="maximize", pruner=pruner)

    def objective(trial):
        model, optimizer = build(trial)
        with lossdoctor.integrations.optuna.watch(trial, model, optimizer) as doctor:
            for step in range(1, 401):
                loss = train_step(model, optimizer)
                doctor.step(loss)
                if step % 20 == 0:
                    trial.report(accuracy(model), step)
                    if trial.should_prune():
                        raise optuna.TrialPruned()
        return accuracy(model)

    study.optimize(objective, n_trials=60)
    print(lossdoctor.integrations.optuna.summary(study))
"""
from __future__ import annotations

import math
import weakref
from typing import Any

from ..errors import InputError
from ._common import guarded, require
from ._pruning import REASON_KEYS, Guard, Metric, Stop, judge_trial, live_codes, summarize

optuna = require("optuna", "lossdoctor[optuna]")
from optuna.pruners import BasePruner, MedianPruner, NopPruner  # noqa: E402
from optuna.study import Study, StudyDirection  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

_DEFAULT = object()  # "no pruner given": wrap a MedianPruner


class LossDoctorPruner(BasePruner):
    """Prune an Optuna trial when lossdoctor's diagnosis is certain; else ask the wrapped pruner.

    Args:
        wrapped_pruner: the pruner that decides when lossdoctor is not certain (default
            ``MedianPruner()``); ``None`` for lossdoctor alone.
        metric: ``"loss"`` (lower is better), ``"score"`` (a value in [0, 1], higher is better:
            accuracy, F1, AUC) or ``"auto"``: the study's direction decides (minimize: loss,
            maximize: score).
        num_classes: for a classification objective: the chance level is ln K for a
            cross-entropy loss, 1/K for an accuracy.
        chance: the reported metric's value for an uninformed model, in its own units, when it is
            not one of those two (the target variance for an MSE). Without a chance level the
            at-chance and far-from-best rules stay silent; NaN and divergence are still judged.
        min_reports: reports before a curve is judged (the warm-up guard; NaN is judged at once).
        warmup_steps: the learning-rate warm-up: no curve is judged before this step.
        max_steps: a full trial's length, in the steps you report (default: the longest completed
            trial). A run that shows no progress is stopped only after two thirds of it.
    """

    def __init__(self, wrapped_pruner: BasePruner | None = _DEFAULT, *, metric: str = "auto",  # type: ignore[assignment]
                 num_classes: int | None = None, chance: float | None = None, min_reports: int = 3,
                 warmup_steps: float = 0, max_steps: float | None = None) -> None:
        if wrapped_pruner is _DEFAULT:
            wrapped_pruner = MedianPruner()
        if wrapped_pruner is not None and not isinstance(wrapped_pruner, BasePruner):
            raise InputError(f"wrapped_pruner must be an optuna pruner or None, got {type(wrapped_pruner).__name__}")
        if metric not in ("auto", "loss", "score"):
            raise InputError(f"metric must be 'auto', 'loss' or 'score', got {metric!r}")
        self.wrapped_pruner = wrapped_pruner if wrapped_pruner is not None else NopPruner()
        self.metric = metric
        self.guard = Guard(min_reports=min_reports, warmup_steps=warmup_steps, max_steps=max_steps)
        # validated now (bad values raise here, not inside the user's objective)
        self._metrics = {kind: Metric.build(kind, num_classes, chance) for kind in ("loss", "score")
                         if metric in ("auto", kind)}
        self._watches: dict[int, weakref.ref] = {}
        self._skipped: set[int] = set()

    # -- the Optuna interface ---------------------------------------------------------------
    def prune(self, study: "optuna.study.Study", trial: FrozenTrial) -> bool:
        stop = self._judge(study, trial)
        if stop is not None:
            self._record(study, trial, stop)
            return True
        return self.wrapped_pruner.prune(_as_if_run_on(study, trial), trial)

    # -- live findings ----------------------------------------------------------------------
    def attach(self, trial: "optuna.trial.Trial", watch: Any) -> None:
        """Let this pruner read ``watch``'s live findings when it judges ``trial``. Held weakly:
        the watch and its model are freed with the objective, as without lossdoctor."""
        self._watches[trial._trial_id] = weakref.ref(watch)

    def __getstate__(self) -> dict[str, Any]:
        # watches belong to this process's running trials (and weak references do not pickle)
        return {**self.__dict__, "_watches": {}}

    # -- internals --------------------------------------------------------------------------
    @guarded("optuna pruner")
    def _judge(self, study: "optuna.study.Study", trial: FrozenTrial) -> Stop | None:
        reported = sorted((s, v) for s, v in trial.intermediate_values.items())
        if len(reported) < 2 or trial._trial_id in self._skipped:
            return None
        maximize = study.direction == StudyDirection.MAXIMIZE
        metric = self._metrics["score" if maximize else "loss"] if self.metric == "auto" else self._metrics[self.metric]
        problem = None
        if (metric.kind == "score") != maximize:
            problem = (f"metric={metric.kind!r} does not fit a study that {'maximizes' if maximize else 'minimizes'} "
                       "(a loss is minimized, a score maximized)")
        problem = problem or next((p for p in (metric.check(v) for _, v in reported) if p), None)
        if problem:
            self._skipped.add(trial._trial_id)
            _warn_once(f"lossdoctor does not judge trial {trial.number}: {problem}")
            return None
        best, budget = _study_state(study, trial, maximize)
        return judge_trial([s for s, _ in reported], [v for _, v in reported], metric, self.guard,
                           best_value=best, budget_steps=budget, live=self._live(trial))

    def _live(self, trial: FrozenTrial) -> tuple[str, ...]:
        ref = self._watches.get(trial._trial_id)
        watch = ref() if ref is not None else None
        if watch is None:
            self._watches.pop(trial._trial_id, None)
            return ()
        return live_codes(watch)

    @guarded("optuna pruner (writing the reason)")
    def _record(self, study: "optuna.study.Study", trial: FrozenTrial, stop: Stop) -> None:
        # A pruner sees a FrozenTrial; Optuna's own pruners write trial attributes through the
        # study's storage the same way (SuccessiveHalvingPruner's rung attributes).
        for key, value in stop.attrs().items():
            study._storage.set_trial_user_attr(trial._trial_id, key, value)
        self._watches.pop(trial._trial_id, None)


def watch(trial: "optuna.trial.Trial", model: Any, optimizer: Any = None, **kwargs: Any):
    """``lossdoctor.watch(model, optimizer, **kwargs)``, attached to the study's LossDoctorPruner
    (if it has one) so that its live findings count when the trial is judged. Use it as
    ``with watch(trial, model, optimizer) as doctor: ... doctor.step(loss)``."""
    from ..monitor import watch as start_watch

    doctor = start_watch(model, optimizer, **kwargs)
    pruner = getattr(trial.study, "pruner", None)
    if isinstance(pruner, LossDoctorPruner):
        pruner.attach(trial, doctor)
    return doctor


def summary(study: "optuna.study.Study") -> str:
    """How many trials lossdoctor stopped and for which cause, and how many the wrapped pruner
    stopped (read from the trials' user_attrs, so it works on any storage)."""
    trials = study.get_trials(deepcopy=False)
    causes = {t.number: Stop(t.user_attrs["lossdoctor_verdict"], t.user_attrs.get("lossdoctor_code"),
                             t.user_attrs.get("lossdoctor_step", 0), t.user_attrs.get("lossdoctor_reason", "")).cause
              for t in trials if t.state == TrialState.PRUNED and "lossdoctor_verdict" in t.user_attrs}
    others = sum(t.state == TrialState.PRUNED for t in trials) - len(causes)
    return summarize(causes, len(trials), others, title=f"lossdoctor on study {study.study_name!r}")


def stop_reason(trial: FrozenTrial) -> dict[str, Any] | None:
    """The reason lossdoctor stopped this trial (the user_attrs it wrote), or None."""
    if "lossdoctor_verdict" not in trial.user_attrs:
        return None
    return {key: trial.user_attrs.get(key) for key in REASON_KEYS}


# ------------------------------------------------------------------------------------------------


def _study_state(study: "optuna.study.Study", trial: FrozenTrial, maximize: bool) -> tuple[float | None, float | None]:
    """The best value any other trial has reported (intermediate or final) and the longest
    completed trial's last step."""
    best: float | None = None
    budget: float | None = None
    for t in study.get_trials(deepcopy=False):
        if t.number == trial.number:
            continue
        values = list(t.intermediate_values.values())
        if t.state == TrialState.COMPLETE:
            if t.value is not None:
                values.append(t.value)
            if t.last_step is not None:
                budget = max(budget or 0.0, float(t.last_step))
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if finite:
            top = max(finite) if maximize else min(finite)
            if best is None or (top > best if maximize else top < best):
                best = top
    return best, budget


def _as_if_run_on(study: "optuna.study.Study", trial: FrozenTrial) -> "optuna.study.Study":
    """The study as the wrapped pruner would have seen it without lossdoctor.

    A ranking pruner's decision depends on the other trials: MedianPruner waits for
    ``n_startup_trials`` COMPLETE trials and compares against the completed trials' values at the
    same step. Without lossdoctor, every trial lossdoctor stopped would have run on and completed
    (or been stopped by the wrapped pruner itself); left PRUNED, it would be missing from both,
    so the wrapped pruner would wait longer for its start-up trials and compare against a pool
    without the study's worst runs: it would keep trials it would otherwise have stopped. So the
    wrapped pruner sees each trial lossdoctor stopped as completed at its last reported value,
    that value carried on to the judged trial's steps: lossdoctor stops a trial only when it is
    certain the trial will not improve. A trial stopped at NaN stays as it is (its objective would
    have failed, not completed)."""
    stopped = [t for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
               if "lossdoctor_verdict" in t.user_attrs and t.number != trial.number]
    if not stopped:
        return study
    later_steps = sorted(trial.intermediate_values)
    as_completed: dict[int, FrozenTrial] = {}
    for t in stopped:
        reported = sorted(t.intermediate_values.items())
        if not reported or not math.isfinite(reported[-1][1]):
            continue
        last_step, last = reported[-1]
        values = {**t.intermediate_values, **{s: last for s in later_steps if s > last_step}}
        as_completed[t._trial_id] = FrozenTrial(
            number=t.number, state=TrialState.COMPLETE, value=last, datetime_start=t.datetime_start,
            datetime_complete=t.datetime_complete, params=t.params, distributions=t.distributions,
            user_attrs=t.user_attrs, system_attrs=t.system_attrs, intermediate_values=values,
            trial_id=t._trial_id)
    return _StudyAsIfRunOn(study, as_completed) if as_completed else study


class _StudyAsIfRunOn(Study):
    """``study`` whose ``get_trials`` shows the trials in ``as_completed`` (trial id -> the trial as
    it would have completed) instead of their PRUNED records; everything else is the study's."""

    def __init__(self, study: "optuna.study.Study", as_completed: dict[int, FrozenTrial]) -> None:
        super().__init__(study_name=study.study_name, storage=study._storage, sampler=study.sampler,
                         pruner=study.pruner)
        self._study = study
        self._as_completed = as_completed

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        trials = [self._as_completed.get(t._trial_id, t) for t in self._study.get_trials(deepcopy=deepcopy)]
        return trials if states is None else [t for t in trials if t.state in states]

    def stop(self) -> None:
        self._study.stop()


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    import warnings

    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, UserWarning, stacklevel=3)


__all__ = ["LossDoctorPruner", "watch", "summary", "stop_reason"]
