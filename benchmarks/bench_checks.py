"""check_data on 1,000,000 rows x 100 columns: total time and the share spent in the model-based
checks (no-signal baseline + label noise), median of a few repeats. Aim: under 30 s.

The data: float32 features on scales from 1e-2 to 1e3 (so data.unnormalized fires), a binary
label from a linear rule plus noise (so the baseline finds signal and label noise runs too).
``--labels nonlinear`` draws the label from a rule no linear model fits (the sign of a product of
two features, plus noise): the linear model then flags many labels, and the nonlinear model that
judges label noise in that case is timed too.
Run: .venv/bin/python benchmarks/bench_checks.py [--rows N] [--repeats R] [--labels linear|nonlinear]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from lossdoctor.data import check_data


def make_data(rows: int, cols: int, seed: int = 0, labels: str = "linear") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, cols), dtype=np.float32)
    if labels == "nonlinear":
        y = X[:, 0] * X[:, 1] + 0.3 * rng.standard_normal(rows, dtype=np.float32) > 0
    else:
        y = ((X[:, :10] @ rng.standard_normal(10).astype(np.float32)) + rng.standard_normal(rows, dtype=np.float32) > 0)
    X *= (10.0 ** rng.uniform(-2, 3, cols)).astype(np.float32)
    return X, y.astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--labels", choices=("linear", "nonlinear"), default="linear")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t = time.perf_counter()
    X, y = make_data(args.rows, args.cols, labels=args.labels)
    print(f"data: {args.rows:,} x {args.cols} float32 ({X.nbytes / 2**20:.0f} MiB), made in {time.perf_counter() - t:.1f} s")

    totals, shares, stages = [], [], []
    report = None
    for _ in range(args.repeats):
        t = time.perf_counter()
        report = check_data(X, y)
        total = time.perf_counter() - t
        timings = report.metadata["timings"]
        model_based = timings.get("baseline_s", 0.0) + timings.get("label_noise_s", 0.0)
        totals.append(total)
        shares.append(model_based / total)
        stages.append(timings)
    print(f"check_data total: median {statistics.median(totals):.2f} s over {args.repeats} runs "
          f"(min {min(totals):.2f}, max {max(totals):.2f}); aim < 30 s")
    print(f"share in the baseline + label-noise models: median {statistics.median(shares):.0%}")
    for key in stages[0]:
        print(f"  {key:<16} median {statistics.median(s.get(key, 0.0) for s in stages):7.2f} s")
    meta = report.metadata
    print(f"rows profiled: {meta['rows_profiled']:,}; rows for the baseline: {meta['rows_baseline']:,}; "
          f"sampled: {meta['sampled']}")
    print("label noise judged by:", (meta.get("label_noise") or {}).get("models_tried"))
    print("findings:", ", ".join(f"{f.code}[{f.severity}]" for f in report.findings))
    print("notes:", *meta["notes"], sep="\n  ")


if __name__ == "__main__":
    main()
