"""How fast `lossdoctor diagnose` reads and judges big logs, next to merely loading the same file.

Long logs: a 1,000,000-row CSV (step, train_loss, val_loss every 1,000 steps, lr) and a 100,000-entry
trainer_state.json. Wide logs, whose cost must not grow with the width: a 100,000-column CSV (20 rows:
step, loss and per-parameter statistics) and a 30,000-key JSONL (20 records). For each, the median wall
time of ``diagnose(path)`` (read + analyse + Report) beside the floor (``pandas.read_csv`` /
``json.load`` / ``json.loads`` per line of the same file) and their ratio.
Aim: within 2x of the floor. Run: ``.venv/bin/python benchmarks/bench_logs.py [--repeat N] [--only wide]``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lossdoctor import diagnose

CSV_ROWS = 1_000_000
HF_ENTRIES = 100_000
WIDE_CSV_COLUMNS, WIDE_CSV_ROWS = 100_000, 20
WIDE_JSONL_KEYS, WIDE_JSONL_RECORDS = 30_000, 20


def noisy_loss(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n)
    return 2.3 * np.exp(-t / (n / 8)) + 0.05 + np.abs(rng.normal(0, 0.1, n))


def write_csv(path: Path, rng: np.random.Generator) -> None:
    loss = noisy_loss(CSV_ROWS, rng)
    val = np.where(np.arange(CSV_ROWS) % 1000 == 999, loss + 0.1, np.nan)
    lr = np.full(CSV_ROWS, 1e-3)
    pd.DataFrame({"step": np.arange(1, CSV_ROWS + 1), "train_loss": loss, "val_loss": val, "lr": lr}).to_csv(
        path, index=False, na_rep="")


def write_trainer_state(path: Path, rng: np.random.Generator) -> None:
    loss = noisy_loss(HF_ENTRIES, rng)
    history = []
    for i in range(HF_ENTRIES):
        step = (i + 1) * 10
        history.append({"epoch": round(step / 5000, 4), "grad_norm": float(1 + loss[i]),
                        "learning_rate": 5e-5 * (1 - i / HF_ENTRIES), "loss": round(float(loss[i]), 4),
                        "step": step})
        if i % 100 == 99:
            history.append({"epoch": round(step / 5000, 4), "eval_loss": float(loss[i] + 0.1),
                            "eval_runtime": 1.0, "eval_samples_per_second": 100.0, "eval_steps_per_second": 10.0,
                            "step": step})
    history.append({"epoch": 200.0, "step": HF_ENTRIES * 10, "total_flos": 1.0, "train_loss": 0.5,
                    "train_runtime": 100.0, "train_samples_per_second": 1.0, "train_steps_per_second": 1.0})
    state = {"global_step": HF_ENTRIES * 10, "max_steps": HF_ENTRIES * 10, "log_history": history,
             "logging_steps": 10}
    path.write_text(json.dumps(state, indent=2))


def write_wide_csv(path: Path, rng: np.random.Generator) -> None:
    columns = {"step": np.arange(WIDE_CSV_ROWS), "loss": noisy_loss(WIDE_CSV_ROWS, rng)}
    stats = rng.random((WIDE_CSV_ROWS, WIDE_CSV_COLUMNS - 2))
    frame = pd.concat([pd.DataFrame(columns), pd.DataFrame(stats, columns=[f"param_{i}/std" for i in
                                                                         range(WIDE_CSV_COLUMNS - 2)])], axis=1)
    frame.to_csv(path, index=False)


def write_wide_jsonl(path: Path, rng: np.random.Generator) -> None:
    loss = noisy_loss(WIDE_JSONL_RECORDS, rng)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(WIDE_JSONL_RECORDS):
            record = {"step": i, "loss": float(loss[i])}
            record.update({f"layer_{k}/grad_norm": float(v) for k, v in enumerate(rng.random(WIDE_JSONL_KEYS - 2))})
            fh.write(json.dumps(record) + "\n")


def load_jsonl(path: Path) -> list:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def cold_diagnose(path: Path):
    """diagnose(path) as a fresh process would run it: without the column names remembered from the
    previous run of the same file (the readers cache name recognition within a read)."""
    try:
        from lossdoctor.logs.columns import loss_name, norm
    except ImportError:  # the readers before they cached names
        pass
    else:
        norm.cache_clear()
        loss_name.cache_clear()
    return diagnose(path)


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=("long", "wide"), help="only the long or only the wide logs")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        if args.only != "wide":
            csv_path, hf_path = Path(tmp) / "big.csv", Path(tmp) / "trainer_state.json"
            write_csv(csv_path, rng)
            write_trainer_state(hf_path, rng)
            cases += [(f"CSV, {CSV_ROWS:,} rows", csv_path, "pandas.read_csv", lambda p=csv_path: pd.read_csv(p)),
                      (f"trainer_state.json, {HF_ENTRIES:,} entries", hf_path, "json.load",
                       lambda p=hf_path: json.load(open(p, encoding="utf-8")))]
        if args.only != "long":
            wide_csv, wide_jsonl = Path(tmp) / "wide.csv", Path(tmp) / "wide.jsonl"
            write_wide_csv(wide_csv, rng)
            write_wide_jsonl(wide_jsonl, rng)
            cases += [(f"CSV, {WIDE_CSV_COLUMNS:,} columns", wide_csv, "pandas.read_csv",
                       lambda p=wide_csv: pd.read_csv(p)),
                      (f"JSONL, {WIDE_JSONL_KEYS:,} keys", wide_jsonl, "json.loads/line",
                       lambda p=wide_jsonl: load_jsonl(p))]
        for _, path, _, _ in cases:
            diagnose(path)  # warm imports and caches: measure steady state
        rows = []
        for label, path, floor_name, floor in cases:
            # alternate the two measurements so that machine load affects both alike
            t_floor, t_diag = [], []
            for _ in range(args.repeat):
                t_floor.append(median_time(floor, 1))
                t_diag.append(median_time(lambda p=path: cold_diagnose(p), 1))
            mf, md = statistics.median(t_floor), statistics.median(t_diag)
            verdict = diagnose(path).verdict
            rows.append((label, f"{path.stat().st_size / 1e6:.0f} MB", floor_name, mf, md, md / mf, verdict))
    print(f"{'log':36} {'size':>7} {'floor':>16} {'floor s':>8} {'diagnose s':>10} {'ratio':>6}  verdict")
    for label, size, floor_name, mf, md, ratio, verdict in rows:
        print(f"{label:36} {size:>7} {floor_name:>16} {mf:8.3f} {md:10.3f} {ratio:5.2f}x  {verdict}")
    print(f"(median of {args.repeat} runs each, measured alternately in this process; aim: ratio <= 2)")


if __name__ == "__main__":
    main()
