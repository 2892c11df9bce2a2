"""One way to register a check, one explicit list, one guard; a failing check is reported once and
skipped outside strict mode; the registry stamps where each finding came from."""
import warnings

import pytest

from lossdoctor import registry
from lossdoctor.findings import Event, Finding
from lossdoctor.internal import LossDoctorInternalWarning


def test_a_check_declares_its_evidence_by_its_parameters_and_unknown_kinds_fail_at_once():
    with pytest.raises(ValueError, match="not an evidence kind"):
        @registry.check
        def typo(curvez):
            return []

    @registry.check
    def both(model, data, run=None):
        """A check that needs the model and the data, and uses the run's facts when present."""
        return []

    spec = registry.spec(both)
    assert spec.needs == ("model", "data") and spec.uses == ("run",)
    assert not spec.applies(registry.Evidence(model=object()))
    assert spec.applies(registry.Evidence(model=object(), data=object()))


def test_every_listed_check_is_marked_and_every_marked_check_is_listed():
    import inspect

    listed = {c.fn for c in registry.all_checks()}
    modules = {c.fn.__module__ for c in registry.all_checks()}
    marked = {fn for name in modules for _, fn in inspect.getmembers(__import__(name, fromlist=["_"]), inspect.isfunction)
              if hasattr(fn, "__lossdoctor_check__") and fn.__module__ == name}
    assert marked == listed, marked ^ listed


def test_failing_check_is_skipped_with_one_warning_and_sources_are_stamped(monkeypatch):
    calls = []

    @registry.check
    def broken(data):
        calls.append(data)
        raise RuntimeError("boom")

    @registry.check
    def fine(data):
        return [Finding("data.class_imbalance", "info", 0.5, source="ignored"), Event("mark", 3.0)]

    checks = [registry.spec(broken), registry.spec(fine)]
    monkeypatch.delenv("LOSSDOCTOR_STRICT", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, events = registry.run_checks(registry.Evidence(data=1), checks)
        second, _ = registry.run_checks(registry.Evidence(data=2), checks)
    assert [f.code for f in first] == [f.code for f in second] == ["data.class_imbalance"]
    assert first[0].source.endswith(":fine") and [e.kind for e in events] == ["mark"]
    assert calls == [1, 2]
    internal = [w for w in caught if issubclass(w.category, LossDoctorInternalWarning)]
    assert len(internal) == 1 and "boom" in str(internal[0].message)

    monkeypatch.setenv("LOSSDOCTOR_STRICT", "1")
    with pytest.raises(RuntimeError):
        registry.run_checks(registry.Evidence(data=3), checks)
