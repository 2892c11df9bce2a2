"""The decisions both renderers share: the verdict box's tone, and which numbers sit beside which threshold."""
from __future__ import annotations

import pytest

from lossdoctor.codes import SEVERITIES, VERDICTS
from lossdoctor.report.view import clean, finding_groups, key_numbers, verdict_tone


@pytest.mark.parametrize("verdict", [None, *VERDICTS])
def test_an_error_is_never_shown_in_a_mild_tone(verdict):
    assert verdict_tone(verdict, "error") == "bad"
    assert verdict_tone(verdict, "warning") in ("caution", "bad")


@pytest.mark.parametrize("verdict", [v for v in VERDICTS if v not in ("converging", "insufficient_data", "overfitting")])
def test_a_failing_run_is_bad_whatever_its_findings(verdict):
    for worst in (None, *SEVERITIES):
        assert verdict_tone(verdict, worst) == "bad"


def test_only_a_clean_converging_run_is_good():
    assert verdict_tone("converging", None) == verdict_tone("converging", "info") == "good"
    assert verdict_tone("overfitting", None) == verdict_tone("insufficient_data", None) == "caution"
    assert verdict_tone(None, None) == "neutral"


def _pairs(evidence: dict) -> dict[str, str]:
    numbers, _ = key_numbers(evidence, limit=10)
    return {n.name: n.threshold_name for n in numbers}


def test_a_named_threshold_sits_beside_the_number_it_bounds():
    pairs = _pairs({"std_spread": 12000.0, "spread_limit": 100.0, "large_std_columns": 3,
                    "large_std_limit": 1000.0, "clip_share": 0.9, "clip_share_threshold": 0.5})
    assert pairs == {"std_spread": "spread_limit", "large_std_columns": "", "large_std_limit": "",
                     "clip_share": "clip_share_threshold"}


def test_a_bare_threshold_sits_beside_the_number_written_before_it():
    assert _pairs({"early": 0.5, "growth": 17996.0, "threshold": 100.0}) == {"early": "", "growth": "threshold"}
    # a measured share of a limit is a number, not a threshold
    assert _pairs({"largest_logit": 611.0, "fraction_of_limit": 6.9}) == {"largest_logit": "", "fraction_of_limit": ""}
    # a fractional threshold never lands beside a count
    assert _pairs({"share": 0.3, "examined": 1000, "threshold": 0.1}) == {"share": "", "examined": "", "threshold": ""}
    # nor beside one of several measures of the same quantity (which one it bounds is not written)
    assert _pairs({"grad_ratio_without_bn": 2e-5, "grad_ratio_with_bn": 0.4, "threshold": 1e-3}) == {
        "grad_ratio_without_bn": "", "grad_ratio_with_bn": "", "threshold": ""}
    assert _pairs({"full_loss": 2.3, "reference_loss": 2.3, "threshold": 2.07})["reference_loss"] == ""


def test_numbers_are_shown_to_four_significant_digits_and_nested_ones_fill_the_rest():
    numbers, left = key_numbers({"loss": 2.302585, "step": 260.0, "note": "text", "layers": {"fc1": {"share": 0.7251}},
                                 "nan_value": "nan"}, limit=4)
    assert [(n.name, n.value) for n in numbers] == [("loss", "2.303"), ("step", "260"), ("nan_value", "nan"),
                                                    ("layers.fc1.share", "0.7251")]
    assert left == 1  # "note"


def test_a_chain_of_explanations_nests_under_the_last_cause_and_a_missing_cause_leaves_a_root():
    findings = [{"code": c, "severity": "warning", "evidence": {}, "explained_by": by}
                for c, by in [("grad.dead_relu", "grad.exploding"), ("grad.exploding", "optim.lr_too_high"),
                              ("optim.lr_too_high", None), ("model.bad_init", "data.unnormalized")]]
    groups = finding_groups(findings)
    assert [(g.rank, g.finding["code"], [s.finding["code"] for s in g.symptoms]) for g in groups] == [
        ("1", "optim.lr_too_high", ["grad.dead_relu", "grad.exploding"]),
        ("2", "model.bad_init", []),
    ]
    assert groups[1].explained_by == "data.unnormalized"  # said in words, though the cause is not listed


def test_clean_removes_escape_sequences_and_shows_other_control_characters():
    assert clean("a\x1b[1;31mb\x1b[0mc") == "abc"
    assert clean("x\x1b]8;;http://e\x1b\\y") == "xy"
    assert clean("bell\x07") == "bell\\x07"
    assert clean("exp[lr=0.1]/metrics.csv") == "exp[lr=0.1]/metrics.csv"
