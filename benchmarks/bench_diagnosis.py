"""Run lossdoctor.checkup on every recipe of benchmarks/faults/ and score the diagnosis.

Each recipe file names its expected cause in ``EXPECTED`` (a TAXONOMY.md code, or "healthy").
A fault counts as found at top-1 when the report's first finding has that code, at top-3 when it
is among the first three. A healthy control is a false alarm when any finding is a warning or
an error. Usage: python benchmarks/bench_diagnosis.py [--budget 20] [--steps N] [--only SUBSTRING] [--verbose]
(``--steps`` pins every probe run's length, so that the scores do not depend on the machine's speed.)
"""
from __future__ import annotations

import argparse
import ast
import os
import statistics
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
FAULTS = HERE / "faults"


def expected_of(path: Path) -> str:
    """The EXPECTED constant of a recipe file, read without importing it."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXPECTED" for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit(f"{path}: no EXPECTED = '...' constant")


def recipes(only: str | None = None) -> list[Path]:
    return sorted(p for p in FAULTS.glob("*.py") if not p.name.startswith("_") and (not only or only in p.name))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 20 s: the smallest budget at which checkup runs the data checks' cross-validated baseline
    # (label noise, no-signal test); most recipes finish well inside it (the runs are capped).
    parser.add_argument("--budget", type=float, default=20.0, help="checkup budget per recipe, seconds")
    parser.add_argument("--steps", type=int, help="pin every probe run to this many steps (the budget still caps)")
    parser.add_argument("--only", help="run only recipes whose file name contains this")
    parser.add_argument("--verbose", action="store_true", help="print the top findings of every recipe")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    from lossdoctor._checkup import checkup_from_file

    rows, seconds = [], []
    for path in recipes(args.only):
        expected = expected_of(path)
        t0 = time.monotonic()
        report = checkup_from_file(f"{path}:build", budget_s=args.budget, progress=False, steps=args.steps)
        seconds.append(time.monotonic() - t0)
        codes = list(dict.fromkeys(f.code for f in report.findings))  # distinct causes, ranked
        serious = [f.code for f in report.warnings()]
        if expected == "healthy":
            top1 = top3 = not serious
        else:
            top1 = bool(codes) and codes[0] == expected
            top3 = expected in codes[:3]
        rows.append((path.stem, expected, top1, top3, codes[:3], serious))
        mark = "ok " if top1 else ("~3 " if top3 else "MISS")
        print(f"{mark} {path.stem:<44} expected {expected:<32} got {', '.join(codes[:3]) or '-'}"
              f"  ({seconds[-1]:.1f} s, verdict {report.verdict})", flush=True)
        if args.verbose:
            for f in report.findings[:4]:
                print(f"      {f.severity:<7} {f.confidence:.2f} {f.code:<32} {f.source}")
    by_cause = defaultdict(list)
    for name, expected, top1, top3, _, _ in rows:
        by_cause[expected].append((top1, top3))
    print("\nper cause                          n  top-1  top-3")
    for cause in sorted(by_cause):
        r = by_cause[cause]
        print(f"{cause:<32} {len(r):>3}  {sum(a for a, _ in r) / len(r):5.0%}  {sum(b for _, b in r) / len(r):5.0%}")
    faults = [r for r in rows if r[1] != "healthy"]
    healthy = [r for r in rows if r[1] == "healthy"]
    if faults:
        print(f"\nfaults: {len(faults)}  top-1 accuracy {sum(r[2] for r in faults) / len(faults):.0%}  "
              f"top-3 accuracy {sum(r[3] for r in faults) / len(faults):.0%}")
    if healthy:
        alarms = [r for r in healthy if r[5]]
        print(f"healthy controls: {len(healthy)}  false-alarm rate {len(alarms) / len(healthy):.0%}"
              + (f"  ({', '.join(r[0] + ': ' + '/'.join(r[5]) for r in alarms)})" if alarms else ""))
    if seconds:
        print(f"checkup wall time per recipe: median {statistics.median(seconds):.1f} s, max {max(seconds):.1f} s, "
              f"total {sum(seconds):.0f} s (budget {args.budget:g} s"
              + (f", {args.steps} steps per run)" if args.steps else ")"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
