"""The one Finding/Report model: validation, ranking, JSON round-trip, rendering, exit codes."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from lossdoctor.codes import CODES, VERDICTS
from lossdoctor.findings import Event, Finding, Report, RuledOut, ranked


def _taxonomy_codes():
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[2] / "shared" / "TAXONOMY.md")
    if not text.exists():
        pytest.skip("shared/TAXONOMY.md is not beside this checkout")
    body = text.read_text()
    causes = set(re.findall(r"^\| `([a-z]+\.[a-z_]+)` \|", body, flags=re.M))
    verdicts = set(re.findall(r"^\| `([a-z_]+)` \|", body, flags=re.M)) - causes
    return causes, verdicts


def test_every_taxonomy_code_and_verdict_is_known():
    causes, verdicts = _taxonomy_codes()
    assert causes and verdicts
    assert causes <= set(CODES), causes - set(CODES)
    assert verdicts <= set(VERDICTS), verdicts - set(VERDICTS)


def test_unknown_code_severity_or_verdict_is_rejected():
    with pytest.raises(ValueError, match="unknown finding code"):
        Finding("optim.lr_too_hihg", "error", 0.5)
    with pytest.raises(ValueError, match="severity"):
        Finding("optim.lr_too_high", "fatal", 0.5)
    with pytest.raises(ValueError, match="unknown verdict"):
        Report("fine")
    with pytest.raises(ValueError):
        RuledOut("nope.code", by="probe")


def test_finding_defaults_come_from_the_code_table_and_confidence_is_clamped():
    f = Finding("grad.dead_relu", "warning", 1.7)
    assert f.title == CODES["grad.dead_relu"].title
    assert f.remedy == CODES["grad.dead_relu"].remedy
    assert f.confidence == 1.0


def test_ranking_puts_errors_first_then_confidence_and_merges_duplicates():
    findings = [
        Finding("grad.dead_relu", "info", 0.9, source="a"),
        Finding("optim.lr_too_low", "warning", 0.4),
        Finding("optim.lr_too_high", "error", 0.6, where="fc1", source="monitor"),
        Finding("optim.lr_too_high", "warning", 0.9, where="fc1", source="probe"),
        Finding("optim.lr_too_high", "warning", 0.9, where="fc2"),
    ]
    out = ranked(findings)
    assert [(f.code, f.where) for f in out] == [
        ("optim.lr_too_high", "fc1"),
        ("optim.lr_too_high", "fc2"),
        ("optim.lr_too_low", None),
        ("grad.dead_relu", None),
    ]
    assert out[0].severity == "error"
    assert "probe" in out[0].evidence["also_seen_by"]


def test_report_json_round_trip_keeps_non_finite_evidence_readable():
    report = Report(
        "non_finite",
        [Finding("optim.lr_too_high", "error", 0.8, evidence={"first_nan_step": 12, "loss": float("nan"),
                                                                "norms": np.array([1.0, np.inf])})],
        source="run.csv",
        events=[Event("first_non_finite", 12, float("inf"))],
        ruled_out=[RuledOut("data.non_finite", by="check_data", evidence={"nan_cells": 0})],
        plots={"curves": {"train_loss": {"steps": [0, 1], "values": [1.0, math.nan]}}},
    )
    text = report.to_json()
    data = json.loads(text)  # strict JSON: no bare NaN
    assert data["findings"][0]["evidence"]["loss"] == "nan"
    assert data["findings"][0]["evidence"]["norms"] == [1.0, "inf"]
    back = Report.from_json(text)
    assert back.to_dict() == report.to_dict()
    assert back.exit_code == 1
    assert Report("converging").exit_code == 0


def test_text_rendering_names_verdict_top_cause_and_remedy():
    report = Report("diverging", [Finding("optim.lr_too_high", "error", 0.8, evidence={"jump": 12.5})])
    text = str(report)
    assert "diverging" in text and "optim.lr_too_high" in text and "jump = 12.5" in text
    assert "fix first" in text
    assert "nothing to fix" in str(Report("converging"))


def test_importing_lossdoctor_imports_no_framework():
    code = (
        "import sys, lossdoctor, lossdoctor.integrations; "
        "bad = [m for m in ('lightning', 'pytorch_lightning', 'transformers', 'keras', 'tensorflow') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_diagnose_and_checkup_are_plain_functions_of_the_package(tmp_path):
    """Their modules are private, so no submodule import can shadow the public functions."""
    import inspect

    import lossdoctor
    import lossdoctor._checkup  # noqa: F401
    import lossdoctor._diagnose  # noqa: F401

    assert inspect.isfunction(lossdoctor.diagnose) and inspect.isfunction(lossdoctor.checkup)
    log = tmp_path / "log.csv"
    log.write_text("step,loss\n" + "".join(f"{i},{2.0 / (i + 1) + 0.01}\n" for i in range(50)))
    assert lossdoctor.diagnose(str(log)).verdict == "converging"


def test_a_report_without_its_own_advice_gets_the_verdicts_advice_in_the_terminal():
    """Checkup and watch reports carry no metadata["advice"]; both renderers fall back to one table."""
    from lossdoctor.codes import VERDICT_ADVICE

    text = Report("stalled", source="checkup").to_text(width=400)
    assert f"advice: {VERDICT_ADVICE['stalled']}" in text


@pytest.mark.parametrize("text, words", [
    ("[]", "the report is a list"),
    ('{"findings": {}}', "findings is an object"),
    ('{"findings": [[1]]}', "findings[0] is a list"),
    ('{"findings": [{"code": "grad.dead_relu", "severity": "error", "confidence": 0.5, "evidence": []}]}',
     "findings[0].evidence is a list"),
    ('{"findings": [{"code": "nope.code", "severity": "error", "confidence": 0.5}]}', "unknown finding code"),
    ('{"events": [{"kind": "spike"}]}', "events[0] has no 'step'"),
    ('{"plots": []}', "plots is a list"),
    ('{"verdict": 3}', "verdict is a number"),
    ("[" * 100_000, "invalid JSON"),
    ("1" * 5000, "invalid JSON"),
])
def test_a_malformed_saved_report_is_one_clear_input_error(text, words):
    """Report.from_json on anything but a report: an InputError naming the field, never AttributeError,
    TypeError or RecursionError, and never a report that loads and then breaks the renderers."""
    from lossdoctor.errors import InputError

    with pytest.raises(InputError, match="not a lossdoctor report") as info:
        Report.from_json(text)
    assert words in str(info.value)


def test_a_saved_report_round_trips_through_the_validation():
    report = Report("diverging", [Finding("optim.lr_too_high", "warning", 0.7, evidence={"lr": 1.0}, where="step 3")],
                    source="a.csv", events=[Event("divergence", 3.0, 2.5)],
                    ruled_out=[RuledOut("optim.lr_too_low", by="probe", evidence={"x": 1})])
    back = Report.from_json(report.to_json())
    assert back.to_dict() == report.to_dict()
