"""How often `lossdoctor.diagnose` gives the verdict a person gives, on logs people published.

Reads ``benchmarks/reallogs/MANIFEST.csv`` (162 public training logs with hand-written labels, see
``benchmarks/reallogs/README.md``), runs ``diagnose`` on each and compares the verdict with the label.

Scored on the unambiguous logs, against ``adjudicated`` where a disagreement of the two blind
labelling passes was settled, else ``label``: a log is ambiguous when either pass flagged it
(``ambiguous``/``ambiguous2``) or ``label2`` differs from ``label``, unless it was adjudicated. A directory that yields several runs (a
TensorBoard ``logs/train`` + ``logs/validation`` pair, say) counts as correct only when every
report's verdict equals the label. A log that raises (a ``LossDoctorError`` or anything else) is a
miss. Prints accuracy overall, per format and per label, the confusion matrix (label x verdict),
the misses, the error count, and, for information, the ambiguous logs scored against label or
alternative.

Run: ``PYTHONPATH=$PWD/src .venv/bin/python benchmarks/bench_reallogs.py [--all] [--verbose]``
(``--all`` also prints the confusion matrix of the ambiguous logs).
"""
from __future__ import annotations

import argparse
import csv
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

from lossdoctor import diagnose
from lossdoctor.errors import LossDoctorError

ROOT = Path(__file__).resolve().parent / "reallogs"
LABELS = ["converging", "overfitting", "underfitting", "stalled", "diverging", "oscillating", "non_finite",
          "insufficient_data"]


def load_manifest(root: Path = ROOT) -> list[dict]:
    with open(root / "MANIFEST.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        label2 = row.get("label2", "").strip()
        adjudicated = row.get("adjudicated", "").strip()
        # unambiguous: both blind passes call it clear and agree, or a disagreement was adjudicated
        flagged = row["ambiguous"].strip().lower() == "true" or row.get("ambiguous2", "").strip().lower() == "true"
        row["truth"] = adjudicated or row["label"]
        row["is_ambiguous"] = not adjudicated and (flagged or (bool(label2) and label2 != row["label"]))
        row["acceptable"] = {v for v in (row["label"], row.get("alternative", ""), label2,
                                         row.get("alternative2", ""), adjudicated) if v and v.strip()}
    return rows


def run_one(root: Path, row: dict) -> dict:
    """Diagnose one log: its verdicts (one per report), or the error it raised."""
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = diagnose(root / row["path"])
        reports = result if isinstance(result, list) else [result]
        verdicts = [r.verdict for r in reports]
        error = None
    except LossDoctorError as exc:
        verdicts, error = [], f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - a traceback is a bug, but the rest still gets scored
        verdicts, error = [], f"CRASH {type(exc).__name__}: {exc}"
    return {"verdicts": verdicts, "error": error, "seconds": time.perf_counter() - t0}


def shown(res: dict) -> str:
    if res["error"]:
        return "error"
    return "+".join(str(v) for v in res["verdicts"]) if res["verdicts"] else "no report"


def correct(res: dict, label: str) -> bool:
    return not res["error"] and bool(res["verdicts"]) and all(v == label for v in res["verdicts"])


def pct(hit: int, n: int) -> str:
    return f"{hit}/{n} = {100 * hit / n:.1f}%" if n else "-"


def confusion(rows: list[dict], results: dict[str, dict]) -> str:
    got_cols = LABELS + ["mixed", "error"]
    counts: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        res = results[row["id"]]
        if res["error"]:
            got = "error"
        elif len(set(res["verdicts"])) == 1:
            got = res["verdicts"][0]
        else:
            got = "mixed"
        counts[row["truth"]][got] += 1
    used_cols = [c for c in got_cols if any(counts[l][c] for l in counts)]
    short = {c: c[:11] for c in used_cols}
    width = max(len(l) for l in LABELS) + 2
    lines = ["label \\ verdict".ljust(width) + "".join(short[c].rjust(12) for c in used_cols) + "   n".rjust(6)]
    for label in LABELS:
        if label not in counts:
            continue
        n = sum(counts[label].values())
        lines.append(label.ljust(width) + "".join(str(counts[label][c] or ".").rjust(12) for c in used_cols)
                     + str(n).rjust(6))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true", help="also print the confusion matrix of the ambiguous logs")
    ap.add_argument("--verbose", action="store_true", help="print every log's label and verdicts")
    args = ap.parse_args(argv)

    rows = load_manifest()
    t0 = time.perf_counter()
    results = {row["id"]: run_one(ROOT, row) for row in rows}
    elapsed = time.perf_counter() - t0

    clear = [r for r in rows if not r["is_ambiguous"]]
    ambiguous = [r for r in rows if r["is_ambiguous"]]
    hits = [r for r in clear if correct(results[r["id"]], r["truth"])]
    errors = [r for r in rows if results[r["id"]]["error"]]
    crashes = [r for r in errors if results[r["id"]]["error"].startswith("CRASH")]

    print(f"real-log corpus: {len(rows)} logs, {len(clear)} unambiguous, {len(ambiguous)} ambiguous; "
          f"diagnosed in {elapsed:.1f} s (slowest {max(results.values(), key=lambda x: x['seconds'])['seconds']:.2f} s)")
    print(f"\naccuracy (unambiguous): {pct(len(hits), len(clear))}")

    print("\nper format (unambiguous):")
    for fmt in sorted({r["format"] for r in rows}):
        sub = [r for r in clear if r["format"] == fmt]
        print(f"  {fmt:18s} {pct(sum(correct(results[r['id']], r['truth']) for r in sub), len(sub))}")

    print("\nper label (unambiguous):")
    for label in LABELS:
        sub = [r for r in clear if r["truth"] == label]
        if sub:
            print(f"  {label:18s} {pct(sum(correct(results[r['id']], r['truth']) for r in sub), len(sub))}")
        elif any(r["truth"] == label for r in rows):
            print(f"  {label:18s} - (only ambiguous logs)")
        else:
            print(f"  {label:18s} - (no log)")

    print("\nconfusion, unambiguous logs (rows: label, columns: verdict; 'mixed' = a multi-run "
          "directory whose runs disagree):")
    print(confusion(clear, results))
    if args.all:
        print("\nconfusion, ambiguous logs (label column = the primary label):")
        print(confusion(ambiguous, results))

    misses = [r for r in clear if not correct(results[r["id"]], r["truth"])]
    print(f"\nmisses (unambiguous): {len(misses)}")
    for r in misses:
        print(f"  {r['id']:45s} label={r['truth']:18s} got={shown(results[r['id']])}")

    print(f"\nerrors (all logs; an error counts as a miss): {len(errors)}, of which tracebacks: {len(crashes)}")
    for r in errors:
        print(f"  {r['id']:45s} {results[r['id']]['error'][:110]}")

    amb_hits = sum(any(correct(results[r["id"]], v) for v in r["acceptable"])
                   for r in ambiguous)
    print(f"\nambiguous logs, either pass's label or alternative (information only): {pct(amb_hits, len(ambiguous))}")

    if args.verbose:
        print("\nall logs:")
        for r in rows:
            flag = "ok " if correct(results[r["id"]], r["truth"]) else "   "
            amb = f" (ambiguous, alt {r['alternative']})" if r["is_ambiguous"] else ""
            print(f"  {flag}{r['id']:45s} {r['format']:15s} label={r['truth']:18s} got={shown(results[r['id']])}{amb}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
