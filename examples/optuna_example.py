"""An Optuna study whose hopeless trials lossdoctor stops, with the reason (about a minute on a CPU).

    python examples/optuna_example.py [--trials 30] [--alone]

A small MLP on scikit-learn's digits, over a search space where a third of the trials cannot
learn (see digits_search.py). ``LossDoctorPruner`` wraps Optuna's ``MedianPruner``: it stops a
trial when lossdoctor is certain (NaN, a dead network at chance, a divergence, no progress for
most of the budget) and leaves the rest to the median rule. ``--alone`` runs lossdoctor without
a wrapped pruner. Each stopped trial carries its reason in ``trial.user_attrs``.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import optuna
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # digits_search.py, beside this file
import digits_search  # noqa: E402

from lossdoctor.integrations.optuna import LossDoctorPruner, summary, watch  # noqa: E402


def objective(trial: optuna.Trial) -> float:
    config = digits_search.suggest(trial)

    def report(step: int, metrics: dict, doctor) -> None:
        trial.report(metrics["accuracy"], step)
        if trial.should_prune():
            raise optuna.TrialPruned()

    # every=REPORT_EVERY: the watch reads out at each report, so the pruner sees fresh findings
    final = digits_search.train(config, seed=trial.number, on_report=report,
                                watch=lambda model, opt: watch(trial, model, opt, every=digits_search.REPORT_EVERY))
    return final["accuracy"]


def main(argv: list[str] | None = None) -> optuna.Study:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--alone", action="store_true", help="lossdoctor without a wrapped pruner")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = LossDoctorPruner(None if args.alone else optuna.pruners.MedianPruner(),
                              num_classes=digits_search.NUM_CLASSES)
    study = optuna.create_study(study_name="digits", direction="maximize", pruner=pruner,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=args.trials)
    print(summary(study))
    for t in study.trials:
        if "lossdoctor_reason" in t.user_attrs:
            print(f"  trial {t.number:3d} stopped at step {t.user_attrs['lossdoctor_step']}: "
                  f"{t.user_attrs['lossdoctor_verdict']} ({t.user_attrs['lossdoctor_code']}): {t.user_attrs['lossdoctor_reason']}")
    print(f"best accuracy {study.best_value:.3f} (trial {study.best_trial.number}: {study.best_trial.params})")
    return study


if __name__ == "__main__":
    main()
