"""What every renderer shows, prepared once from a report's plain dict (``Report.to_dict()``).

The renderers (terminal, HTML, notebook) read the same schema as ``--json``, so a saved JSON
report renders again, and this package never imports ``lossdoctor.findings``. Everything here
is plain data and wording; nothing ranks or decides a cause: the order of the findings is the
report's own, and the verdict is the report's.

One place for each decision the renderers share: the tone of the verdict box
(:func:`verdict_tone`), the words beside it (:func:`summarize`), root causes with their symptoms
nested under them (:func:`finding_groups`), and the few numbers the terminal shows per finding
(:func:`key_numbers`).
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..codes import CODES, SEVERITIES, VERDICT_ADVICE, VERDICTS

# Numbers are shown to 4 significant digits: enough to compare with a threshold, short enough to read.
SIGNIFICANT_DIGITS = 4
# The terminal shows this many numbers per finding; the rest stay in --json and the HTML page.
KEY_NUMBERS_PER_FINDING = 4

# Tones of the verdict box, mildest first: the box takes the worse of the verdict's and the
# worst finding's tone, so an error is never shown in green whatever the curves say.
TONES = ("good", "neutral", "caution", "bad")
# Overfitting means training works and generalisation does not: act, but nothing is broken.
# insufficient_data means "log more", not "something is wrong". Every other verdict is a failure.
VERDICT_TONE = {"converging": "good", None: "neutral", "insufficient_data": "caution", "overfitting": "caution"}
SEVERITY_TONE = {"error": "bad", "warning": "caution", "info": "good"}

# Evidence keys the renderers put into words instead of listing them as numbers.
EXPLAINS_KEY = "explains"  # on a root cause: {symptom_code: reason} (or a list of codes)
SEPARATING_EXPERIMENT_KEY = "separating_experiment"  # a sentence naming the experiment that settles it
RELATED_KEYS = {  # evidence key -> how a person reads its list of codes or sources
    "also_seen_by": "also seen by",
    "likely_caused_by": "likely caused by",
    "more_specific": "a more specific cause",
}
WORDED_KEYS = (EXPLAINS_KEY, SEPARATING_EXPERIMENT_KEY, *RELATED_KEYS)

NON_FINITE_TEXT = ("nan", "inf", "-inf")  # how the JSON schema stores non-finite floats


# -- input -----------------------------------------------------------------------------------
def report_dict(report: Any) -> dict[str, Any]:
    """A report as the plain dict of the JSON schema: a Report (anything with ``to_dict``) or the
    dict itself (e.g. ``json.load`` of ``lossdoctor diagnose --json``). Missing parts get defaults."""
    if isinstance(report, Mapping):
        data = report
    elif callable(getattr(report, "to_dict", None)):
        data = report.to_dict()
    else:
        raise TypeError("a report must be a lossdoctor Report or its dict (Report.to_dict(), the --json output), "
                        f"got {type(report).__name__}")
    if not isinstance(data, Mapping) or "verdict" not in data:
        raise TypeError("a report dict needs at least a 'verdict' key (the schema of Report.to_dict() and --json); "
                        f"got keys {sorted(map(str, data))[:8] if isinstance(data, Mapping) else type(data).__name__}")
    verdict = data.get("verdict")
    if verdict is not None and verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r} in the report; known: {', '.join(VERDICTS)}")
    findings = [_finding_dict(f, i) for i, f in enumerate(_list(data, "findings"))]
    return {
        "verdict": verdict,
        "findings": findings,
        "source": str(data.get("source") or ""),
        "metadata": dict(data.get("metadata") or {}),
        "events": [_event_dict(e, i) for i, e in enumerate(_list(data, "events"))],
        "ruled_out": [dict(r) for r in _list(data, "ruled_out") if isinstance(r, Mapping)],
        "plots": dict(data.get("plots") or {}),
    }


def report_dicts(report_or_list: Any) -> tuple[list[dict[str, Any]], bool]:
    """(the reports as dicts, whether a list was given)."""
    many = isinstance(report_or_list, (list, tuple))
    items = list(report_or_list) if many else [report_or_list]
    return [report_dict(r) for r in items], many


def _list(data: Mapping, key: str) -> list:
    value = data.get(key) or []
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"the report's {key!r} must be a list, got {type(value).__name__}")
    return list(value)


def _finding_dict(f: Any, index: int) -> dict[str, Any]:
    if not isinstance(f, Mapping) or "code" not in f:
        raise TypeError(f"finding #{index + 1} of the report must be a dict with a 'code', got {f!r:.80}")
    code = str(f["code"])
    severity = f.get("severity", "info")
    if severity not in SEVERITIES:
        raise ValueError(f"finding #{index + 1} ({code}) has severity {severity!r}; expected one of {SEVERITIES}")
    info = CODES.get(code)
    confidence = _number(f.get("confidence", 0.0))
    return {
        "code": code,
        "severity": severity,
        "confidence": min(1.0, max(0.0, confidence)) if math.isfinite(confidence) else 0.0,
        "title": str(f.get("title") or (info.title if info else code)),
        "evidence": dict(f.get("evidence") or {}),
        "where": None if f.get("where") in (None, "") else str(f["where"]),
        "remedy": str(f.get("remedy") or (info.remedy if info else "")),
        "source": str(f.get("source") or ""),
        "explained_by": None if not f.get("explained_by") else str(f["explained_by"]),
    }


def _event_dict(e: Any, index: int) -> dict[str, Any]:
    if not isinstance(e, Mapping) or "kind" not in e or "step" not in e:
        raise TypeError(f"event #{index + 1} of the report must be a dict with 'kind' and 'step', got {e!r:.80}")
    return {"kind": str(e["kind"]), "step": _number(e["step"]), "value": e.get("value"),
            "detail": str(e.get("detail") or "")}


def _number(value: Any) -> float:
    """A float from a number or the schema's "nan"/"inf" strings (NaN for anything else)."""
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# -- text --------------------------------------------------------------------------------------
_ANSI_SEQUENCE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: Any) -> str:
    """A user string safe for a terminal: ANSI escape sequences removed, other control characters
    shown as ``\\xNN`` so that a file name with one in it stays recognisable but inert."""
    out = _ANSI_SEQUENCE.sub("", str(text))
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", out)


def fmt_number(value: Any) -> str:
    """Integers exactly, floats to SIGNIFICANT_DIGITS, non-finite as nan/inf."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == int(value) and abs(value) < 10 ** SIGNIFICANT_DIGITS:
        return str(int(value))  # a step or count stored as float: 260, not 260.0
    return f"{value:.{SIGNIFICANT_DIGITS}g}"


def is_number(value: Any) -> bool:
    """A number the evidence measured: int, float, or a non-finite float stored as text."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or value in NON_FINITE_TEXT


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def code_title(code: str) -> str:
    info = CODES.get(code)
    return info.title if info else code


# -- the verdict box ---------------------------------------------------------------------------
def worst_severity(findings: Iterable[Mapping]) -> str | None:
    present = {f["severity"] for f in findings}
    return next((s for s in SEVERITIES if s in present), None)


def verdict_tone(verdict: str | None, worst: str | None) -> str:
    """The tone of the verdict box: the worse of what the verdict and the worst finding call for."""
    tones = [VERDICT_TONE.get(verdict, "bad"), SEVERITY_TONE.get(worst or "", "good")]
    return max(tones, key=TONES.index)


@dataclass
class Summary:
    tone: str  # one of TONES
    label: str  # the verdict as words, "no verdict" without curves
    meaning: str  # what the verdict means
    qualifier: str  # what the findings add to the verdict ("the curves look fine, but ...") or ""
    advice: str  # what the verdict calls for, with the report's numbers (onset step, points needed) or ""
    tally: str  # "1 error, 2 warnings" or "no findings"
    nothing_to_fix: bool  # no warning or error and a verdict that asks for nothing


def summarize(report: Mapping[str, Any]) -> Summary:
    """The verdict box of one report (a dict from :func:`report_dict`), the same for every renderer."""
    verdict, findings = report["verdict"], report["findings"]
    worst = worst_severity(findings)
    tone = verdict_tone(verdict, worst)
    counts = {s: sum(1 for f in findings if f["severity"] == s) for s in SEVERITIES}
    tally = ", ".join(plural(n, s) if s != "info" else f"{n} info" for s, n in counts.items() if n) or "no findings"
    serious = counts["error"] + counts["warning"]
    qualifier = ""
    if verdict in ("converging", None) and serious:
        if counts["error"]:
            what, need = plural(counts["error"], "error"), "needs fixing" if counts["error"] == 1 else "need fixing"
        else:
            what, need = plural(counts["warning"], "warning"), "is" if counts["warning"] == 1 else "are"
            need += " worth a look"
        qualifier = (f"The curves look fine, but {what} {need}." if verdict == "converging"
                     else f"No loss curves were judged; the checks found {what} that {need}.")
    nothing_to_fix = not serious and verdict in ("converging", None)
    return Summary(
        tone=tone,
        label=verdict.replace("_", " ") if verdict else "no verdict",
        meaning=VERDICTS[verdict] if verdict else "no loss curves were examined",
        qualifier=qualifier,
        # a converging run's advice is "nothing to fix in the curves": beside an error it would mislead
        advice="" if nothing_to_fix or verdict == "converging" else verdict_advice(report),
        tally=tally,
        nothing_to_fix=nothing_to_fix,
    )


def verdict_advice(report: Mapping[str, Any]) -> str:
    """What the verdict calls for, with the report's own numbers where the verdict needs them: the
    step to stop at for overfitting, the number of points needed for insufficient data. Falls back
    to the report's own advice (``metadata["advice"]``) and then to the table in ``codes.py``."""
    verdict, metadata = report.get("verdict"), report.get("metadata") or {}
    if verdict == "overfitting":
        onset = next((e["step"] for e in report.get("events", []) if "overfit" in e["kind"]), None)
        if onset is not None and math.isfinite(onset):
            return (f"The validation loss was best at step {fmt_number(onset)}: stop there (early stopping, "
                    "keep that checkpoint), then regularize (dropout, weight decay, augmentation) or add data. "
                    "The training loss itself is fine.")
    if verdict == "insufficient_data":
        counts = _point_counts(report)
        if counts is not None:
            have, need = counts
            return (f"{fmt_number(have)} points were logged; at least {fmt_number(need)} are needed to judge a "
                    f"run. Log at least {fmt_number(need)} points (log more often or train longer) and run again.")
    advice = metadata.get("advice")
    if isinstance(advice, str) and advice:
        return advice
    return VERDICT_ADVICE.get(verdict, "") if verdict else ""


def _point_counts(report: Mapping[str, Any]) -> tuple[Any, Any] | None:
    """(points logged, points needed) from the curve evidence the report carries, if it does."""
    metadata = report.get("metadata") or {}
    places = [metadata.get("curve_evidence"), metadata]
    places += [f["evidence"] for f in report.get("findings", [])]
    for ev in places:
        if isinstance(ev, Mapping) and is_number(ev.get("min_points")):
            return ev.get("n_points", 0), ev["min_points"]
    return None


# -- findings: root causes first, their symptoms under them ------------------------------------
@dataclass
class KeyNumber:
    name: str
    value: str
    threshold_name: str = ""  # e.g. "threshold", "spread_limit"
    threshold: str = ""


@dataclass
class FindingView:
    rank: str  # "1", or "1.2" for the second symptom under root cause 1
    finding: dict[str, Any]
    symptoms: list[FindingView] = field(default_factory=list)
    explained_by: str | None = None  # the root cause's code, for a symptom
    explained_by_title: str = ""
    why_explained: str = ""  # the root cause's reason for this symptom, when it gave one
    explains: list[tuple[str, str]] = field(default_factory=list)  # (symptom code, reason) on a root cause
    separating_experiment: str = ""
    related: list[tuple[str, str]] = field(default_factory=list)  # ("likely caused by", "data.unnormalized")
    numbers: list[KeyNumber] = field(default_factory=list)
    more_numbers: int = 0  # evidence entries the terminal leaves to --json / HTML

    @property
    def nested(self) -> bool:
        return "." in self.rank


def finding_groups(findings: list[Mapping[str, Any]]) -> list[FindingView]:
    """Root causes in the report's order, each with the findings it explains nested under it.

    A finding whose ``explained_by`` names a code present in the report is shown under that
    finding (under the end of the chain when causes explain causes); a group takes the place of
    its highest-ranked member, so an error explained by a warning still opens the list, under its
    cause. A finding explained by a code absent from the report stays a root and says so.
    """
    first_index: dict[str, int] = {}
    for i, f in enumerate(findings):
        first_index.setdefault(f["code"], i)

    def root_of(i: int) -> int:
        seen = {i}
        while True:
            parent = findings[i].get("explained_by")
            j = first_index.get(parent) if parent else None
            if j is None or j in seen:
                return i
            seen.add(j)
            i = j

    roots: dict[int, list[int]] = {}  # root index -> its symptoms, in order of first appearance
    for i in range(len(findings)):
        r = root_of(i)
        members = roots.setdefault(r, [])
        if r != i:
            members.append(i)
    groups = []
    for n, (r, symptoms) in enumerate(roots.items(), 1):
        view = _finding_view(str(n), findings[r], findings)
        view.symptoms = [_finding_view(f"{n}.{k}", findings[s], findings) for k, s in enumerate(symptoms, 1)]
        groups.append(view)
    return groups


def fix_first(groups: list[FindingView]) -> FindingView | None:
    """The cause to fix first: the root of the first group (never a symptom of another finding)."""
    return groups[0] if groups else None


def _finding_view(rank: str, f: Mapping[str, Any], findings: list[Mapping[str, Any]]) -> FindingView:
    evidence = f["evidence"]
    numbers, more = key_numbers(evidence)
    view = FindingView(rank=rank, finding=dict(f), numbers=numbers, more_numbers=more)
    explains = evidence.get(EXPLAINS_KEY)
    if isinstance(explains, Mapping):
        view.explains = [(str(code), str(reason or "")) for code, reason in explains.items()]
    elif isinstance(explains, (list, tuple)):
        view.explains = [(str(code), "") for code in explains]
    experiment = evidence.get(SEPARATING_EXPERIMENT_KEY)
    if experiment:
        view.separating_experiment = str(experiment)
    for key, words in RELATED_KEYS.items():
        value = evidence.get(key)
        if isinstance(value, Mapping):
            value = list(value)  # also_seen_by: {source: evidence}
        if isinstance(value, (list, tuple)) and value:
            view.related.append((words, ", ".join(map(str, value))))
        elif isinstance(value, str) and value:
            view.related.append((words, value))
    cause = f.get("explained_by")
    if cause:
        view.explained_by = cause
        view.explained_by_title = code_title(cause)
        root = next((g for g in findings if g["code"] == cause), None)
        reasons = root["evidence"].get(EXPLAINS_KEY) if root is not None else None
        if isinstance(reasons, Mapping) and reasons.get(f["code"]):
            view.why_explained = str(reasons[f["code"]])
    return view


# -- the numbers that matter -------------------------------------------------------------------
_THRESHOLD_WORDS = ("threshold", "limit")


def _threshold_stem(key: str) -> str | None:
    """For a threshold key, what it bounds: "" for a bare ``threshold``, "clip_share" for
    ``clip_share_threshold`` or ``threshold_clip_share``; None for any other key.
    ``fraction_of_limit`` is a measured share of a limit, not a bound."""
    words = key.lower().split("_")
    if "of" in words:
        return None
    if words[-1] in _THRESHOLD_WORDS:
        return "_".join(words[:-1])
    if words[0] in _THRESHOLD_WORDS:
        return "_".join(words[1:])
    return None


def _pair_thresholds(items: list[tuple[str, Any]]) -> dict[str, str]:
    """Value key -> the key of the threshold it was compared with.

    A named threshold (``spread_limit``) bounds the number whose name ends with its stem
    (``std_spread``). A bare ``threshold`` bounds the number written just before it: checks write
    the measured value, then its threshold. The threshold is shown on its own line instead of
    beside a number it may not bound when that neighbour is not a number, is an integer count
    beside a fractional threshold, or has a sibling measuring the same kind of quantity (the same
    last word: ``full_loss`` and ``reference_loss``, ``..._with_bn`` and ``..._without_bn``).
    """
    pairs: dict[str, str] = {}
    for i, (key, value) in enumerate(items):
        stem = _threshold_stem(key)
        if stem is None or not is_number(value):
            continue
        if stem:
            named = [k for k, v in items if k != key and is_number(v) and _threshold_stem(k) is None
                     and (k == stem or k.endswith("_" + stem)) and k not in pairs]
            if named:
                pairs[named[0]] = key
            continue
        if i == 0:
            continue
        before, previous = items[i - 1]
        if not is_number(previous) or _threshold_stem(before) is not None or before in pairs:
            continue
        fractional = isinstance(value, float) and not float(value).is_integer()
        if fractional and isinstance(previous, int):
            continue
        kind = before.lower().split("_")[-1]
        if any(k != before and is_number(v) and k.lower().split("_")[-1] == kind for k, v in items):
            continue
        pairs[before] = key
    return pairs


def key_numbers(evidence: Mapping[str, Any], limit: int = KEY_NUMBERS_PER_FINDING) -> tuple[list[KeyNumber], int]:
    """The few numbers of a finding's evidence a person reads first, as ``name = value`` with the
    threshold beside the value it was compared with; and how many entries were left out.

    Top-level numbers come first in the evidence's own order (checks write the decisive number
    first); numbers one level down (per-layer dicts) fill the remaining places.
    """
    items = [(str(k), v) for k, v in evidence.items() if k not in WORDED_KEYS]
    pairs = _pair_thresholds(items)
    paired_thresholds = set(pairs.values())
    values = dict(items)
    shown: list[KeyNumber] = []
    used: set[str] = set()
    for key, value in items:
        if key in paired_thresholds:
            continue
        if is_number(value):
            threshold = pairs.get(key)
            shown.append(KeyNumber(key, fmt_number(value), threshold or "",
                                   fmt_number(values[threshold]) if threshold else ""))
            used.add(key)
            if threshold:
                used.add(threshold)
        if len(shown) == limit:
            break
    if len(shown) < limit:
        for key, value in items:
            if not isinstance(value, Mapping) or key in used:
                continue
            for sub, inner in _nested_numbers(key, value):
                shown.append(KeyNumber(sub, fmt_number(inner)))
                if len(shown) == limit:
                    break
            used.add(key)
            if len(shown) == limit:
                break
    left = sum(1 for key, _ in items if key not in used)
    return shown, left


def _nested_numbers(key: str, value: Mapping) -> list[tuple[str, Any]]:
    out = []
    for name, inner in value.items():
        if is_number(inner):
            out.append((f"{key}.{name}", inner))
        elif isinstance(inner, Mapping):
            out += [(f"{key}.{name}.{k}", v) for k, v in inner.items() if is_number(v)]
    return out


# -- events ------------------------------------------------------------------------------------
def merged_events(events: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (kind, step): two sources may report the same event; their details are joined."""
    merged: dict[tuple[str, float], dict[str, Any]] = {}
    for e in events:
        key = (e["kind"], float(e["step"]))
        if key not in merged:
            merged[key] = dict(e)
        elif e["detail"] and e["detail"] not in merged[key]["detail"]:
            merged[key]["detail"] = "; ".join(d for d in (merged[key]["detail"], e["detail"]) if d)
    return list(merged.values())
