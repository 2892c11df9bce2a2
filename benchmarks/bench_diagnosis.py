"""Score lossdoctor's diagnosis on the fault suite of benchmarks/faults/, per entry point.

Each recipe file has ``build()`` (the checkup recipe dict: model, train, loss, optimizer, ...) and
names its expected cause in ``EXPECTED`` (a TAXONOMY.md code, or "healthy"). A fault counts as found
at top-1 when the report's first finding has that code, at top-3 when it is among the first three
distinct codes. A healthy control is a false alarm when any finding is a warning or an error.

Entry points: how a user would get a report for that recipe. Each is a function
``(path, settings) -> Report`` registered with ``@entry_point(name)``:

- ``checkup``: ``lossdoctor checkup FILE:build`` (the experiments on copies).
- ``watch``: the recipe's own training loop, run once with ``lossdoctor.watch(model, optimizer)``,
  and ``doctor.report()`` at the end.

A framework callback (Lightning, HF Trainer, Keras) is added the same way: a function that builds
the recipe (``load_recipe(path)``), trains it through the framework with ``LossDoctorCallback()``
for ``training_steps(recipe, settings)`` steps and returns the callback's report, decorated with
``@entry_point("lightning")``. A recipe the entry point cannot train (say, a recipe with a
``forward_fn`` for Keras) raises ``NotApplicable`` and is left out of that entry point's scores.

Usage: python benchmarks/bench_diagnosis.py [--entry checkup,watch] [--steps N] [--budget S]
       [--only SUBSTRING] [--verbose]
Probe lengths come from the recipes (and ``--steps``), never from the clock: the scores are the
same on any machine; the budget only decides how many optional probes run.
"""
from __future__ import annotations

import argparse
import ast
import statistics
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
FAULTS = HERE / "faults"


@dataclass
class Settings:
    steps: int | None = None  # optimizer steps per run (None: from the recipe, as checkup decides)
    budget: float | None = None  # checkup budget in seconds (None: checkup's default)


class NotApplicable(Exception):
    """The entry point cannot run this recipe (the framework cannot express it)."""


EntryPoint = Callable[[Path, Settings], "object"]
ENTRY_POINTS: dict[str, EntryPoint] = {}


def entry_point(name: str) -> Callable[[EntryPoint], EntryPoint]:
    def register(fn: EntryPoint) -> EntryPoint:
        ENTRY_POINTS[name] = fn
        return fn

    return register


def expected_of(path: Path) -> str:
    """The EXPECTED constant of a recipe file, read without importing it."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXPECTED" for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit(f"{path}: no EXPECTED = '...' constant")


def recipes(only: str | None = None) -> list[Path]:
    return sorted(p for p in FAULTS.glob("*.py") if not p.name.startswith("_") and (not only or only in p.name))


def load_recipe(path: Path) -> dict:
    """A fresh recipe dict from the file's build() (new model and optimizer on every call)."""
    from lossdoctor._checkup import _load_build

    build, _ = _load_build(f"{path}:build")
    return build()


def training_steps(spec: dict, settings: Settings) -> int:
    """How long an entry point that trains the recipe trains it: as long as checkup's baseline run
    (the recipe's epochs, at most checkup's default run length or ``--steps``)."""
    from lossdoctor._checkup import run_length
    from lossdoctor.probes.recipe import normalize_recipe

    return run_length(normalize_recipe(**spec), settings.steps)


@entry_point("checkup")
def run_checkup(path: Path, settings: Settings):
    from lossdoctor._checkup import checkup_from_file

    return checkup_from_file(f"{path}:build", budget_s=settings.budget, progress=False, steps=settings.steps)


@entry_point("watch")
def run_watch(path: Path, settings: Settings):
    """The recipe's own loop (its batches, loss, optimizer, clipping, schedule, precision) on the
    recipe's own model and optimizer, watched by lossdoctor.watch; the watch's report."""
    import lossdoctor
    from lossdoctor._checkup import run_length
    from lossdoctor.probes.loop import train_run
    from lossdoctor.probes.recipe import normalize_recipe, set_schedule_horizon

    recipe = normalize_recipe(**load_recipe(path))
    steps = run_length(recipe, settings.steps)
    set_schedule_horizon(recipe, steps)
    holder = {}

    def start(model, optimizer):
        holder["doctor"] = lossdoctor.watch(model, optimizer, max_norm=recipe.grad_clip)
        return holder["doctor"]

    train_run(recipe, label="watched", steps=steps, model=recipe.model, optimizer=recipe.user_optimizer,
              setup=start, on_step=lambda loss: holder["doctor"].step(loss), stop_on_non_finite=False)
    return holder["doctor"].report()


def score(report, expected: str) -> tuple[bool, bool, list[str], list[str]]:
    codes = list(dict.fromkeys(f.code for f in report.findings))  # distinct causes, ranked
    serious = [f.code for f in report.warnings()]
    if expected == "healthy":
        return not serious, not serious, codes, serious
    return bool(codes) and codes[0] == expected, expected in codes[:3], codes, serious


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry", default=",".join(ENTRY_POINTS), help="entry points to score, comma-separated")
    parser.add_argument("--budget", type=float, help="checkup budget per recipe, seconds (default: checkup's)")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default: from each recipe)")
    parser.add_argument("--only", help="run only recipes whose file name contains this")
    parser.add_argument("--verbose", action="store_true", help="print the top findings of every recipe")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    settings = Settings(steps=args.steps, budget=args.budget)
    entries = [e for e in args.entry.split(",") if e]
    unknown = [e for e in entries if e not in ENTRY_POINTS]
    if unknown:
        raise SystemExit(f"unknown entry point(s) {unknown}; known: {sorted(ENTRY_POINTS)}")
    rows: dict[str, list] = defaultdict(list)
    seconds: dict[str, list[float]] = defaultdict(list)
    for path in recipes(args.only):
        expected = expected_of(path)
        for entry in entries:
            t0 = time.monotonic()
            try:
                report = ENTRY_POINTS[entry](path, settings)
            except NotApplicable as exc:
                print(f"--  {entry:<8} {path.stem:<44} not applicable: {exc}", flush=True)
                continue
            seconds[entry].append(time.monotonic() - t0)
            top1, top3, codes, serious = score(report, expected)
            rows[entry].append((path.stem, expected, top1, top3, codes[:3], serious))
            mark = "ok " if top1 else ("~3 " if top3 else "MISS")
            print(f"{mark} {entry:<8} {path.stem:<44} expected {expected:<30} got {', '.join(codes[:3]) or '-'}"
                  f"  ({seconds[entry][-1]:.1f} s, verdict {report.verdict})", flush=True)
            if args.verbose:
                for f in report.findings[:4]:
                    print(f"      {f.severity:<7} {f.confidence:.2f} {f.code:<32} {f.source}")
    print_tables(rows, seconds)
    return 0


def print_tables(rows: dict[str, list], seconds: dict[str, list[float]]) -> None:
    for entry, entry_rows in rows.items():
        by_cause = defaultdict(list)
        for _, expected, top1, top3, _, _ in entry_rows:
            by_cause[expected].append((top1, top3))
        print(f"\n[{entry}] per cause                  n  top-1  top-3")
        for cause in sorted(by_cause):
            r = by_cause[cause]
            print(f"{cause:<34} {len(r):>3}  {sum(a for a, _ in r) / len(r):5.0%}  {sum(b for _, b in r) / len(r):5.0%}")
    print("\nentry     faults  top-1  top-3  healthy  false alarms  median s  max s")
    for entry, entry_rows in rows.items():
        faults = [r for r in entry_rows if r[1] != "healthy"]
        healthy = [r for r in entry_rows if r[1] == "healthy"]
        alarms = [r for r in healthy if r[5]]
        top1 = sum(r[2] for r in faults) / len(faults) if faults else float("nan")
        top3 = sum(r[3] for r in faults) / len(faults) if faults else float("nan")
        s = seconds[entry]
        print(f"{entry:<9} {len(faults):>6}  {top1:5.0%}  {top3:5.0%}  {len(healthy):>7}  {len(alarms):>12}"
              f"  {statistics.median(s):8.1f}  {max(s):5.1f}"
              + (f"   ({', '.join(r[0] + ': ' + '/'.join(r[5]) for r in alarms)})" if alarms else ""))


if __name__ == "__main__":
    sys.exit(main())
