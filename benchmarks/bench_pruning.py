"""Diagnosis-driven pruning against Optuna's and Ray Tune's own pruners, on one real search.

The search (examples/digits_search.py): a small MLP on scikit-learn's digits, 400 steps per trial,
the validation accuracy reported every 20 steps, over a space that holds the usual reasons a run
never converges (learning rate 1e-5..10, dropout 0..0.95, weight decay 1e-6..1, init scale
0.01x..100x, SGD or Adam, inputs standardized or not). Every variant sees the same trials in the
same order (Optuna's RandomSampler with one seed; one fixed list of configurations for Ray Tune),
so the no-pruning run gives each trial's full outcome.

Per variant: the training steps and wall time, the best final accuracy and when it was reached
(cumulative steps), how many trials were stopped and why, and the **good trials killed**: stopped
trials whose full run ended in the top 10 %. For lossdoctor variants also: of the trials whose full
run ends at chance (NaN weights predict one class, so they end at chance too), how many were
stopped and at which report.

Run: .venv/bin/python benchmarks/bench_pruning.py [--trials 60] [--ray-trials 30] [--no-ray]
About 5 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
import digits_search  # noqa: E402

from lossdoctor.integrations._pruning import Metric  # noqa: E402

ACCURACY = Metric.build("score", digits_search.NUM_CLASSES, None)
TOP_SHARE = 0.10
OTHER_PRUNER = ("wrapped pruner", "scheduler")  # the cause of a stop lossdoctor did not make


@dataclass
class Outcome:
    """What one variant did with the study."""

    name: str
    steps: int = 0
    seconds: float = 0.0
    best: float = float("nan")
    best_at_steps: int = 0
    finals: dict[int, float] = field(default_factory=dict)  # completed trial -> final accuracy
    stopped: dict[int, tuple[int, str]] = field(default_factory=dict)  # trial -> (reports run, cause)
    cpu_seconds: float | None = None  # this process's CPU time (Optuna trains in-process)

    def by_doctor(self, trial: int) -> bool:
        return self.stopped[trial][1] not in OTHER_PRUNER


def top_trials(full: Outcome) -> set[int]:
    n = max(1, round(TOP_SHARE * len(full.finals)))
    return set(sorted(full.finals, key=lambda t: -full.finals[t])[:n])


# ------------------------------------------------------------------------------------------------
# Optuna


def run_optuna(name: str, pruner, n_trials: int, seed: int, watched: bool) -> Outcome:
    import optuna

    from lossdoctor.integrations import optuna as ld_optuna

    out = Outcome(name)
    # a fixed name: HyperbandPruner assigns brackets from a hash of the study name
    study = optuna.create_study(study_name="bench_pruning", direction="maximize", pruner=pruner,
                                sampler=optuna.samplers.RandomSampler(seed=seed))

    def objective(trial: optuna.Trial) -> float:
        def report(step: int, metrics: dict, doctor) -> None:
            out.steps += digits_search.REPORT_EVERY
            trial.report(metrics["accuracy"], step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        watch = (lambda m, o: ld_optuna.watch(trial, m, o, every=digits_search.REPORT_EVERY)) if watched else None
        final = digits_search.train(digits_search.suggest(trial), seed=trial.number, on_report=report, watch=watch)
        return final["accuracy"]

    def note(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            out.finals[trial.number] = trial.value
            if not trial.value <= out.best:  # first best (NaN-safe)
                out.best, out.best_at_steps = trial.value, out.steps
        elif trial.state == optuna.trial.TrialState.PRUNED:
            cause = trial.user_attrs.get("lossdoctor_verdict")
            if cause:
                code = trial.user_attrs.get("lossdoctor_code")
                cause = f"{cause} ({code})" if code else cause
            out.stopped[trial.number] = (len(trial.intermediate_values), cause or "wrapped pruner")

    start, cpu = time.perf_counter(), time.process_time()
    study.optimize(objective, n_trials=n_trials, callbacks=[note])
    out.seconds, out.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return out


def optuna_variants(max_steps: int):
    import optuna

    from lossdoctor.integrations.optuna import LossDoctorPruner

    def hyperband():
        return optuna.pruners.HyperbandPruner(min_resource=digits_search.REPORT_EVERY, max_resource=max_steps)

    def doctor(wrapped):
        return LossDoctorPruner(wrapped, num_classes=digits_search.NUM_CLASSES)

    return [
        ("no pruning", lambda: optuna.pruners.NopPruner(), False),
        ("MedianPruner", lambda: optuna.pruners.MedianPruner(), False),
        ("HyperbandPruner", hyperband, False),
        ("lossdoctor alone", lambda: doctor(None), True),
        ("lossdoctor + Median", lambda: doctor(optuna.pruners.MedianPruner()), True),
        ("lossdoctor + Hyperband", lambda: doctor(hyperband()), True),
    ]


# ------------------------------------------------------------------------------------------------
# Ray Tune


def run_ray(name: str, configs: list[dict], scheduler, with_doctor: bool, storage: str) -> Outcome:
    import ray_example

    out = Outcome(name)
    start = time.perf_counter()
    results = ray_example.run(configs, scheduler, ray_example.make_stopper() if with_doctor else None,
                              storage_path=storage)
    out.seconds = time.perf_counter() - start
    by_index = sorted(results, key=lambda r: r.config["index"])
    for r in by_index:
        i, m = r.config["index"], r.metrics or {}
        step = int(m.get("step", 0))
        out.steps += step
        if step >= digits_search.STEPS:
            out.finals[i] = m[ray_example.METRIC]
            if not out.finals[i] <= out.best:
                out.best, out.best_at_steps = out.finals[i], out.steps
        else:
            verdict, code = m.get("lossdoctor_verdict"), m.get("lossdoctor_code")
            cause = (f"{verdict} ({code})" if code else verdict) if verdict else "scheduler"
            out.stopped[i] = (step // digits_search.REPORT_EVERY, cause)
    return out


def ray_variants():
    from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule

    max_t = digits_search.STEPS // digits_search.REPORT_EVERY

    def asha():
        return ASHAScheduler(time_attr="training_iteration", max_t=max_t)

    def median():  # Ray's default grace period is 60 s of wall time: count reports instead
        return MedianStoppingRule(time_attr="training_iteration", grace_period=1)

    return [
        ("no pruning", lambda: None, False),
        ("ASHA", asha, False),
        ("MedianStoppingRule", median, False),
        ("lossdoctor alone", lambda: None, True),
        ("lossdoctor + ASHA", asha, True),
        ("lossdoctor + Median", median, True),
    ]


# ------------------------------------------------------------------------------------------------
# The table


def _listed(trials: list[int]) -> str:
    return f"{len(trials)} {trials}" if trials else "0"


def print_table(title: str, outcomes: list[Outcome], n_trials: int) -> None:
    full = outcomes[0]
    top = top_trials(full)
    chance_enders = {t for t, acc in full.finals.items() if ACCURACY.at_chance(acc)}
    print(f"\n{title}: {n_trials} trials x {digits_search.STEPS} steps; top 10 % = trials {sorted(top)} "
          f"(final accuracy >= {min(full.finals[t] for t in top):.3f}); {len(chance_enders)} trials end at chance")
    cpu = full.cpu_seconds is not None
    head = (f"{'variant':<24}{'steps':>7}{'share':>6}{'wall s':>8}" + (f"{'cpu s':>7}{'ratio':>6}" if cpu else f"{'ratio':>6}")
            + f"{'best':>7}{'at steps':>9}{'stopped':>8}  {'good killed: by lossdoctor / by the other':<42}"
            "at-chance enders stopped by lossdoctor (at report: median / max)")
    print(head)
    print("-" * len(head))
    for o in outcomes:
        killed = sorted(set(o.stopped) & top)
        mine = [t for t in killed if o.by_doctor(t)]
        others = [t for t in killed if not o.by_doctor(t)]
        caught = [o.stopped[t][0] for t in chance_enders if t in o.stopped and o.by_doctor(t)]
        chance_text = (f"{len(caught)}/{len(chance_enders)} ({statistics.median(caught):g} / {max(caught)})"
                       if caught else f"0/{len(chance_enders)}")
        timing = (f"{o.seconds:>8.1f}{o.cpu_seconds:>7.1f}{o.cpu_seconds / full.cpu_seconds:>6.2f}" if cpu
                  else f"{o.seconds:>8.1f}{o.seconds / full.seconds:>6.2f}")
        print(f"{o.name:<24}{o.steps:>7}{o.steps / full.steps:>6.0%}{timing}{o.best:>7.3f}{o.best_at_steps:>9}"
              f"{len(o.stopped):>8}  {_listed(mine) + ' / ' + _listed(others):<42}{chance_text}")
    for o in outcomes[1:]:
        causes = Counter(cause for _, cause in o.stopped.values())
        if causes:
            print(f"  {o.name}: " + ", ".join(f"{n} {c}" for c, n in causes.most_common()))
    # lossdoctor never changes training: a trial it watched and let finish ends exactly as unwatched
    same = [abs(o.finals[t] - full.finals[t]) < 1e-9 for o in outcomes for t in o.finals if t in full.finals]
    print(f"  completed trials identical to their no-pruning run: {sum(same)}/{len(same)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--ray-trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    outcomes = []
    for name, make, watched in optuna_variants(digits_search.STEPS):
        outcomes.append(run_optuna(name, make(), args.trials, args.seed, watched))
        print(f"  optuna {name}: {outcomes[-1].seconds:.0f} s", flush=True)
    print_table(f"Optuna (RandomSampler, seed {args.seed})", outcomes, args.trials)

    if args.no_ray:
        return
    import ray

    import ray_example

    rng = np.random.default_rng(args.seed)
    configs = [digits_search.sample(rng) for _ in range(args.ray_trials)]
    ray_example.init_ray(logging_level="ERROR")
    try:
        outcomes = []
        with tempfile.TemporaryDirectory() as storage:
            for name, make, with_doctor in ray_variants():
                outcomes.append(run_ray(name, configs, make(), with_doctor, storage))
                print(f"  ray {name}: {outcomes[-1].seconds:.0f} s", flush=True)
    finally:
        ray.shutdown()
    print_table("Ray Tune (one fixed list of configurations, one trial at a time)", outcomes, args.ray_trials)


if __name__ == "__main__":
    main()
