"""Checks that need several rooms' evidence at once."""
from lossdoctor.curves import CurveAnalysis
from lossdoctor.evidence import RunFacts
from lossdoctor.run_checks import dropout_keeps_the_model_from_fitting


def test_high_dropout_is_a_finding_only_when_the_run_does_not_fit():
    run = RunFacts(dropout={"drop1": 0.9, "drop2": 0.1})
    finding, = dropout_keeps_the_model_from_fitting(CurveAnalysis("underfitting"), run)
    assert finding.code == "model.regularization_too_strong" and finding.severity == "warning"
    assert finding.evidence["dropout_rates"] == {"drop1": 0.9}
    assert dropout_keeps_the_model_from_fitting(CurveAnalysis("converging"), run) == []
    assert dropout_keeps_the_model_from_fitting(CurveAnalysis("stalled"), RunFacts(dropout={"drop": 0.2})) == []
