"""The one Finding / Report model of lossdoctor: severity, ranking, JSON round-trip.

Evidence flows one way: readers/inspectors/monitor/probes produce plain evidence, checks turn
evidence into Findings, and a Report ranks and renders them. Nothing here decides a verdict.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np

from .codes import CODES, SEVERITIES, VERDICTS, code_info

SEVERITY_RANK = {name: i for i, name in enumerate(SEVERITIES)}  # error first

# Every finding carries the threshold it crossed in its evidence, under a key named by this
# convention: ``threshold`` (one number, or for a categorical rule a short phrase of it),
# ``thresholds`` (a dict of several), or a name ending in ``_threshold(s)`` / ``_limit(s)`` beside
# the value it bounds (``spread_limit`` next to ``scale_spread``). Renderers show it beside the value.
THRESHOLD_SUFFIXES = ("threshold", "thresholds", "limit", "limits")


def is_threshold_key(key: str) -> bool:
    """Whether an evidence key holds a threshold, by the convention above."""
    return key in THRESHOLD_SUFFIXES or key.endswith(tuple(f"_{suffix}" for suffix in THRESHOLD_SUFFIXES))


def _plain(value: Any) -> Any:
    """Convert numpy/torch scalars and arrays, tuples and sets to JSON-able Python values.

    Non-finite floats become the strings "nan", "inf", "-inf" so that the JSON stays valid and a
    NaN loss remains visible as evidence.
    """
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


@dataclass
class Finding:
    """One cause, with the numbers that led to it and what to do about it."""

    code: str
    severity: str
    confidence: float
    title: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    where: str | None = None
    remedy: str = ""
    source: str = ""  # the check or probe that produced it, e.g. "curves", "probe:lr_range"
    # The code of the root-cause finding that explains this one (set by the differential): this
    # finding is a symptom, shown under its cause. None for a root cause or an unexplained finding.
    explained_by: str | None = None

    def __post_init__(self) -> None:
        info = code_info(self.code)
        if self.severity not in SEVERITY_RANK:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")
        self.confidence = float(min(1.0, max(0.0, self.confidence)))
        self.title = self.title or info.title
        self.remedy = self.remedy or info.remedy
        self.evidence = _plain(self.evidence)

    def sort_key(self) -> tuple:
        return (SEVERITY_RANK[self.severity], -self.confidence, self.code)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Finding":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class Event:
    """Something that happened at a step of a curve: overfitting onset, spike, first NaN, plateau."""

    kind: str
    step: float
    value: float | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))


@dataclass
class RuledOut:
    """A cause that was considered and excluded, and the experiment or check that excluded it."""

    code: str
    by: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        code_info(self.code)
        self.evidence = _plain(self.evidence)


@dataclass
class Report:
    """A verdict on the curves (None when no curves were examined) and the ranked findings.

    ``plots`` holds plain, JSON-able data for the HTML report. Keys in use:
    ``curves`` {name: {"steps": [...], "values": [...]}}, ``lr_range`` {"lrs", "losses",
    "suggested_lr", "current_lr"}, ``grad_norms`` {"layers", "steps", "norms" (layer x step)},
    ``dead_units`` {"layers", "share"}, ``feature_scales`` {"features", "std", "mean"},
    ``group_scales`` {"value_col", "group_col", "groups", "std", "mean"}, ``ablations``
    {"baseline": {"label", "losses"}, "runs": [{"label", "losses"}, ...]}.
    """

    verdict: str | None
    findings: list[Finding] = field(default_factory=list)
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    ruled_out: list[RuledOut] = field(default_factory=list)
    plots: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict is not None and self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; known: {', '.join(VERDICTS)}")
        self.findings = ranked(self.findings)

    # -- queries -------------------------------------------------------------------------
    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    @property
    def top(self) -> Finding | None:
        """The cause to fix first."""
        return self.findings[0] if self.findings else None

    def worst_severity(self) -> str | None:
        return self.findings[0].severity if self.findings else None

    def has(self, code: str, min_severity: str = "info") -> bool:
        limit = SEVERITY_RANK[min_severity]
        return any(f.code == code and SEVERITY_RANK[f.severity] <= limit for f in self.findings)

    def warnings(self) -> list[Finding]:
        """Findings of severity warning or error: what a healthy run must not have."""
        return [f for f in self.findings if f.severity != "info"]

    @property
    def exit_code(self) -> int:
        """The CLI's contract: 0 for a converging run with nothing to fix (no warning, no error), 1 for
        any other verdict or any diagnosed problem (a converging curve with 100 % dead units is not
        a healthy run)."""
        return 0 if self.verdict in (None, "converging") and not self.warnings() else 1

    def add(self, findings: Iterable[Finding]) -> None:
        self.findings = ranked([*self.findings, *findings])

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "findings": [f.to_dict() for f in self.findings],
            "source": self.source,
            "metadata": _plain(self.metadata),
            "events": [e.to_dict() for e in self.events],
            "ruled_out": [_plain(asdict(r)) for r in self.ruled_out],
            "plots": _plain(self.plots),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Report":
        """A Report from its ``to_dict()`` form. Anything else is an ``InputError`` that names the
        field and what it expected (a saved report edited by hand, another tool's JSON)."""
        _expect(data, dict, "the report")
        findings = _expect(data.get("findings", []), list, "findings")
        events = _expect(data.get("events", []), list, "events")
        ruled_out = _expect(data.get("ruled_out", []), list, "ruled_out")
        try:
            return cls(
                verdict=_expect(data.get("verdict"), (str, type(None)), "verdict"),
                findings=[Finding.from_dict(_finding_dict(f, f"findings[{i}]")) for i, f in enumerate(findings)],
                source=_expect(data.get("source", ""), str, "source"),
                metadata=_expect(data.get("metadata", {}), dict, "metadata"),
                events=[Event(**_fields(e, Event, f"events[{i}]", required=("kind", "step")))
                        for i, e in enumerate(events)],
                ruled_out=[RuledOut(**_fields(r, RuledOut, f"ruled_out[{i}]", required=("code", "by")))
                           for i, r in enumerate(ruled_out)],
                plots=_expect(data.get("plots", {}), dict, "plots"),
            )
        except ValueError as exc:  # an unknown code, severity or verdict
            from .errors import InputError

            if isinstance(exc, InputError):
                raise
            raise InputError(f"not a lossdoctor report: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> "Report":
        from .errors import InputError

        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # bad JSON, a huge integer, nesting too deep
            raise InputError(f"not a lossdoctor report: invalid JSON ({type(exc).__name__}: {str(exc)[:120]})") from None
        return cls.from_dict(data)

    # -- rendering: thin delegates to lossdoctor.report, which works from to_dict() ----------
    def to_text(self, width: int = 100) -> str:
        from .report import render_text

        return render_text(self.to_dict(), width=width)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        """One line: the verdict, how many findings, the top one, the source."""
        verdict = self.verdict or "no verdict"
        top = self.top
        first = f", top {top.code} ({top.severity} {top.confidence:.2f})" if top is not None else ""
        source = self.source if len(self.source) <= REPR_SOURCE_CHARS else "\u2026" + self.source[-REPR_SOURCE_CHARS:]
        count = f"{len(self.findings)} finding{'' if len(self.findings) == 1 else 's'}"
        return f"<Report {verdict}: {count}{first}, source={source!r}>"

    def print(self, console=None) -> None:
        from .report import print_report

        print_report(self.to_dict(), console=console)

    def to_html(self, path: str | None = None) -> str:
        from .report import render_html

        html = render_html(self.to_dict())
        if path is not None:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(html)
        return html

    def _repr_html_(self) -> str:
        """The same page, compact, for a notebook cell (scoped CSS, no <html> shell)."""
        from .report import render_html

        return render_html(self.to_dict(), fragment=True)


REPR_SOURCE_CHARS = 60  # repr(report) stays one line: a longer source keeps its end (the file name)


_JSON_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", type(None): "null", float: "a number",
                    int: "a number", bool: "true/false"}


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    """``value`` when it is of ``kind``, else an InputError naming the field and what it expected."""
    if isinstance(value, kind):
        return value
    from .errors import InputError

    kinds = kind if isinstance(kind, tuple) else (kind,)
    wanted = " or ".join(dict.fromkeys(_JSON_TYPE_NAMES.get(k, k.__name__) for k in kinds))
    got = _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
    raise InputError(f"not a lossdoctor report: {where} is {got} (expected {wanted})")


_FINDING_TYPES: dict[str, type | tuple[type, ...]] = {
    "code": str, "severity": str, "confidence": (int, float), "title": str, "evidence": dict,
    "where": (str, type(None)), "remedy": str, "source": str, "explained_by": (str, type(None))}


def _finding_dict(data: Any, where: str) -> dict[str, Any]:
    _expect(data, dict, where)
    for key in ("code", "severity", "confidence"):
        if key not in data:
            from .errors import InputError

            raise InputError(f"not a lossdoctor report: {where} has no {key!r}")
    for key, kind in _FINDING_TYPES.items():
        if key in data:
            _expect(data[key], kind, f"{where}.{key}")
    return data


def _fields(data: Any, cls: type, where: str, required: tuple[str, ...]) -> dict[str, Any]:
    """The fields of ``cls`` in ``data`` (a dict holding the required ones); extra keys are ignored."""
    _expect(data, dict, where)
    missing = [k for k in required if k not in data]
    if missing:
        from .errors import InputError

        raise InputError(f"not a lossdoctor report: {where} has no {missing[0]!r}")
    out = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
    if "evidence" in out:
        _expect(out["evidence"], dict, f"{where}.evidence")
    if "step" in out:
        _expect(out["step"], (int, float), f"{where}.step")
    return out


# ``where`` of a finding dated at a step of the run ("step 40"): merged per code by ``ranked``.
STEP_WHERE = "step"
STEP_WHERE_PATTERN = re.compile(r"^step -?\d+(\.\d+)?$")


def ranked(findings: Iterable[Finding]) -> list[Finding]:
    """Root causes first, each followed by the symptoms it explains; errors before warnings before
    info, and within a severity the most confident first.

    One finding per (code, where): when two sources report the same cause at the same place, the
    more severe / more confident one is kept and the other's evidence is merged under its source.
    A cause located at a step (``where="step N"``) is one event of the run: the curves and the live
    watch may date the same spike a step or two apart, so such findings of one code are one finding.
    A finding whose ``explained_by`` names a code that no kept finding has is ranked as a root.
    """
    best: dict[tuple[str, str | None], Finding] = {}
    for f in sorted(findings, key=Finding.sort_key):
        key = (f.code, STEP_WHERE if f.where and STEP_WHERE_PATTERN.match(f.where) else f.where)
        if key not in best:
            best[key] = f
        elif f.source and f.source != best[key].source:
            best[key].evidence.setdefault("also_seen_by", {})[f.source] = f.evidence
    kept = sorted(best.values(), key=Finding.sort_key)
    codes = {f.code for f in kept}
    roots = [f for f in kept if f.explained_by is None or f.explained_by not in codes or f.explained_by == f.code]
    out: list[Finding] = []
    placed: set[int] = set()
    for root in roots:
        if id(root) in placed:
            continue
        out.append(root)
        placed.add(id(root))
        for symptom in kept:  # the symptoms of this root's code, in rank order, right under it
            if symptom.explained_by == root.code and id(symptom) not in placed and symptom.code != root.code:
                out.append(symptom)
                placed.add(id(symptom))
    out.extend(f for f in kept if id(f) not in placed)  # a chain (a symptom of a symptom) keeps its rank
    return out
