"""A Ray Tune search whose hopeless trials lossdoctor stops, with the reason (a minute or two on a CPU).

    python examples/ray_example.py [--trials 16] [--scheduler asha|none]

The same small MLP on scikit-learn's digits as the Optuna example (digits_search.py). Each trial
trains under ``lossdoctor.watch`` and reports its validation accuracy with the watch's live
findings (``live_metrics``); ``LossDoctorStopper`` stops a trial when lossdoctor is certain, and
the scheduler (ASHA here) decides the rest. The reason is in each stopped trial's result.
Runs on a local Ray; on a cluster, only ``ray.init`` changes.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

import numpy as np
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

HERE = str(pathlib.Path(__file__).resolve().parent)
sys.path.insert(0, HERE)  # digits_search.py, beside this file
import digits_search  # noqa: E402

from lossdoctor.integrations.ray import LossDoctorStopper, live_metrics, summary  # noqa: E402

METRIC, MODE = "accuracy", "max"


def train_trial(config: dict, configs: list[dict]) -> None:
    """Ray Tune's function trainable: trial ``config["index"]`` trains ``configs[index]``."""
    import torch

    import lossdoctor

    torch.set_num_threads(1)

    def report(step: int, metrics: dict, doctor) -> None:
        tune.report({**metrics, "step": step, **live_metrics(doctor)})

    digits_search.train(configs[config["index"]], seed=config["index"], on_report=report,
                        watch=lambda model, opt: lossdoctor.watch(model, opt, every=digits_search.REPORT_EVERY))


def init_ray(**kwargs) -> None:
    """A local Ray on 2 CPUs whose workers import this folder's modules (and whatever the driver's
    PYTHONPATH holds). On a cluster, ship them with ``runtime_env={"py_modules": [...]}`` instead."""
    path = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}}, **kwargs)


def make_stopper() -> LossDoctorStopper:
    return LossDoctorStopper(METRIC, MODE, num_classes=digits_search.NUM_CLASSES, step_key="step")


def run(configs: list[dict], scheduler=None, stopper: LossDoctorStopper | None = None,
        storage_path: str | None = None) -> tune.ResultGrid:
    """One trial per configuration, in order, one at a time (so that every run sees the same study)."""
    tuner = tune.Tuner(
        tune.with_parameters(train_trial, configs=configs),
        param_space={"index": tune.grid_search(list(range(len(configs))))},
        tune_config=tune.TuneConfig(metric=METRIC, mode=MODE, scheduler=scheduler or FIFOScheduler(),
                                    max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(stop=stopper, storage_path=storage_path, verbose=0),
    )
    return tuner.fit()


def main(argv: list[str] | None = None) -> tune.ResultGrid:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--scheduler", choices=("asha", "none"), default="asha")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    configs = [digits_search.sample(rng) for _ in range(args.trials)]
    init_ray()
    try:
        scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=digits_search.STEPS // digits_search.REPORT_EVERY)
                     if args.scheduler == "asha" else None)
        results = run(configs, scheduler, make_stopper())
    finally:
        ray.shutdown()
    print(summary(results))
    for r in results:
        if r.metrics.get("lossdoctor_verdict"):
            m = r.metrics
            print(f"  stopped at step {m['lossdoctor_step']}: {m['lossdoctor_verdict']} ({m['lossdoctor_code']}): "
                  f"{m['lossdoctor_reason']}")
    best = results.get_best_result()
    print(f"best accuracy {best.metrics[METRIC]:.3f}")
    return results


if __name__ == "__main__":
    main()
