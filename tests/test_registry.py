"""One way to register a check; a failing check is reported once and skipped outside strict mode."""
import warnings

import pytest

from lossdoctor import registry
from lossdoctor.findings import Finding
from lossdoctor.internal import LossDoctorInternalWarning


def test_unknown_evidence_kind_fails_at_registration():
    with pytest.raises(ValueError, match="unknown evidence kind"):
        registry.check("curvez")


def test_failing_check_is_skipped_with_one_warning(monkeypatch):
    calls = []

    def broken(evidence, **ctx):
        calls.append(evidence)
        raise RuntimeError("boom")

    def fine(evidence, **ctx):
        return [Finding("data.class_imbalance", "info", 0.5)]

    monkeypatch.setitem(registry._CHECKS, "data", [broken, fine])
    monkeypatch.delenv("LOSSDOCTOR_STRICT", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = registry.run_checks("data", 1)
        second = registry.run_checks("data", 2)
    assert [f.code for f in first] == [f.code for f in second] == ["data.class_imbalance"]
    assert calls == [1, 2]
    internal = [w for w in caught if issubclass(w.category, LossDoctorInternalWarning)]
    assert len(internal) == 1 and "boom" in str(internal[0].message)

    monkeypatch.setenv("LOSSDOCTOR_STRICT", "1")
    with pytest.raises(RuntimeError):
        registry.run_checks("data", 3)
