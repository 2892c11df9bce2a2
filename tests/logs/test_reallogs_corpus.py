"""Every log in the real-log corpus (benchmarks/reallogs) reads without a traceback.

For each MANIFEST row, ``diagnose`` returns a Report (or a list of Reports, one per run) whose
verdict is one of the known verdicts (or None), or raises a clean ``LossDoctorError``. No accuracy is
asserted here: how often the verdict matches the label is ``benchmarks/bench_reallogs.py``'s job.
"""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pytest

from lossdoctor import diagnose
from lossdoctor.errors import LossDoctorError
from lossdoctor.findings import Report

ROOT = Path(__file__).resolve().parents[2] / "benchmarks" / "reallogs"
VERDICTS = {"converging", "overfitting", "underfitting", "stalled", "diverging", "oscillating", "non_finite",
            "insufficient_data"}


def _rows() -> list[dict]:
    with open(ROOT / "MANIFEST.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


ROWS = _rows()

# Logs that raise a traceback today: the bug, not the log, is what should change. strict=True so the
# marker fails (and must be removed) once the reader handles them.
KNOWN_TRACEBACKS: dict[str, str] = {}


def _param(row):
    marks = []
    if row["id"] in KNOWN_TRACEBACKS:
        marks.append(pytest.mark.xfail(raises=ValueError, strict=True, reason=KNOWN_TRACEBACKS[row["id"]]))
    return pytest.param(row, id=row["id"], marks=marks)


def test_manifest_is_complete():
    assert len(ROWS) >= 150
    ids = [r["id"] for r in ROWS]
    assert len(ids) == len(set(ids))
    for r in ROWS:
        assert (ROOT / r["path"]).exists(), r["path"]
        assert r["label"] in VERDICTS, (r["id"], r["label"])
        assert r["repository"], r["id"]
        if r["ambiguous"]:
            assert r["ambiguous"] == "true" and r["alternative"] in VERDICTS, r["id"]


@pytest.mark.parametrize("row", [_param(r) for r in ROWS])
def test_log_reads_cleanly(row):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = diagnose(ROOT / row["path"])
    except LossDoctorError as exc:
        assert str(exc)
        return
    reports = result if isinstance(result, list) else [result]
    assert reports
    for report in reports:
        assert isinstance(report, Report)
        assert report.verdict is None or report.verdict in VERDICTS
