"""The terminal: the few numbers that matter per finding, root causes above their symptoms, and
user strings that can neither inject rich markup nor reach the terminal as raw escape codes."""
from __future__ import annotations

import io
import json
import re

from rich.console import Console

from lossdoctor.findings import Finding, Report
from lossdoctor.report import print_report, render_text


def _lines(text: str) -> list[str]:
    """The panel's inner lines, border characters stripped."""
    return [line.strip("│ ").rstrip() for line in text.splitlines()]


def test_evidence_is_name_value_lines_with_the_threshold_beside_its_value(full_report):
    text = render_text(full_report, width=80)
    assert all(len(line) <= 80 for line in text.splitlines())
    lines = _lines(text)
    assert "first_nan_step = 260" in lines
    assert "dead_share = 0.72   (threshold 0.5)" in lines
    assert "max_std = 104.6" in lines  # 4 significant digits of 104.57...
    assert "+1 more in --json / HTML" in lines  # the 20 feature names are left to --json and HTML
    assert "{" not in text and '"' not in text  # no cut JSON in the terminal


def test_a_threshold_is_never_put_beside_a_count_it_does_not_bound():
    """cleanlab's evidence writes the share, two counts, then the fractional threshold."""
    report = Report("converging", [Finding("data.label_noise", "warning", 0.7, evidence={
        "share_flagged": 0.31, "flagged": 310, "examined": 1000, "threshold": 0.1})])
    lines = _lines(render_text(report, width=100))
    assert "share_flagged = 0.31" in lines and "examined = 1000" in lines and "threshold = 0.1" in lines
    assert not any("(threshold" in line for line in lines)


def test_markup_in_paths_and_names_prints_as_is():
    report = Report("stalled", [Finding("optim.lr_too_low", "warning", 0.5, where="a[/]b",
                                        evidence={"[bold]x[/bold]": 1.5})],
                    source="exp[lr=0.1]/metrics.csv")
    for text in (render_text(report, width=100), report.to_text(), str(report)):
        assert "lossdoctor: exp[lr=0.1]/metrics.csv" in text
        assert "at a[/]b" in text and "[bold]x[/bold] = 1.5" in text
    buffer = io.StringIO()
    report.print(Console(file=buffer, width=100, force_terminal=True, color_system="truecolor"))
    assert "exp[lr=0.1]/metrics.csv" in buffer.getvalue()


def test_an_ansi_escape_in_a_file_name_never_reaches_the_terminal_raw():
    name = "runs/\x1b[31mred\x1b[0m\x07/metrics.csv"
    report = Report("stalled", [Finding("optim.lr_too_low", "warning", 0.5, where="\x1b]0;title\x07fc1",
                                        evidence={"esc\x1b[2Jkey": 1.0})], source=name)
    text = render_text(report, width=100)
    assert "\x1b" not in text and "\x07" not in text
    assert "runs/red\\x07/metrics.csv" in text  # the name stays recognisable
    buffer = io.StringIO()
    print_report([report.to_dict()], console=Console(file=buffer, width=100, force_terminal=True,
                                                    color_system="truecolor"))
    coloured = buffer.getvalue()
    assert "\x1b[31mred" not in coloured and "\x1b[2J" not in coloured and "\x1b]0;" not in coloured
    assert "\x1b[" in coloured  # rich's own colours are still there: only the user's escapes are gone


def test_symptoms_print_under_their_root_cause_with_the_reasoning():
    report = Report("diverging", [
        Finding("grad.exploding", "error", 0.8, explained_by="optim.lr_too_high",
                evidence={"growth": 17996.0, "threshold": 100.0}),
        Finding("optim.lr_too_high", "warning", 0.75, evidence={
            "explains": {"grad.exploding": "steps ten times too large blow the gradient up"},
            "separating_experiment": "Rerun at lr 0.1."}),
    ])
    lines = _lines(render_text(report, width=120))
    root = next(i for i, line in enumerate(lines) if line.startswith("#1 WARNING optim.lr_too_high"))
    symptom = next(i for i, line in enumerate(lines) if "#1.1 ERROR grad.exploding" in line)
    assert root < symptom
    raw = render_text(report, width=120).splitlines()
    assert raw[symptom].index("#1.1") > raw[root].index("#1")  # indented under its cause
    assert "explained by optim.lr_too_high: steps ten times too large blow the gradient up" in lines
    assert "explains grad.exploding: steps ten times too large blow the gradient up" in lines
    assert "to settle it: Rerun at lr 0.1." in lines
    assert "growth = 1.8e+04   (threshold 100)" in lines
    assert "fix first: optim.lr_too_high:" in " ".join(lines)


def test_a_converging_run_with_an_error_never_says_nothing_to_fix():
    report = Report("converging", [Finding("data.non_finite", "error", 0.9, evidence={"total": 12})])
    text = render_text(report, width=100)
    assert "The curves look fine, but 1 error needs fixing." in text
    assert "nothing to fix" not in text.lower()
    assert "no findings: nothing to fix." in render_text(Report("converging"), width=100)


def test_a_saved_json_report_prints_like_the_report(full_report):
    assert render_text(json.loads(full_report.to_json()), width=90) == full_report.to_text(width=90)


def test_a_list_of_reports_prints_one_panel_each(full_report, clean_report):
    text = render_text([full_report, clean_report], width=100)
    assert len(re.findall(r"╭─ lossdoctor: ", text)) == 2
