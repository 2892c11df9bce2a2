"""The page agrees with itself and with the report: rendered from the plain dict, escaped by
construction, root causes above their symptoms, a verdict box whose tone matches the findings,
and a compact notebook view that styles nothing outside itself."""
from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from lossdoctor.findings import Event, Finding, Report
from lossdoctor.report import render_html

TEMPLATES = pathlib.Path(__file__).resolve().parents[2] / "src" / "lossdoctor" / "report" / "templates"


class _Tree(HTMLParser):
    """Text of the page, and the nesting of <article data-code> elements (code -> parent code)."""

    VOID = frozenset({"br", "img", "meta", "hr", "input", "link"})

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, str | None]] = []
        self.parent: dict[str, str | None] = {}
        self.text: list[str] = []
        self.tags: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag in self.VOID:
            return
        code = dict(attrs).get("data-code") if tag == "article" else None
        if code is not None:
            self.parent[code] = next((c for t, c in reversed(self.stack) if c is not None), None)
        self.stack.append((tag, code))

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        self.text.append(data)

    @property
    def plain(self) -> str:
        return re.sub(r"\s+", " ", " ".join(self.text))


def _tone(html: str) -> str:
    return re.search(r'class="summary card" data-tone="([a-z]+)"', html).group(1)


def _lr_root_with_symptoms() -> Report:
    """What the differential writes: a root cause whose evidence explains two symptoms."""
    return Report("diverging", [
        Finding("grad.exploding", "error", 0.8, evidence={"growth": 17996.0, "threshold": 100.0},
                explained_by="optim.lr_too_high", where="step 1"),
        Finding("model.logit_overflow", "warning", 0.7, evidence={"largest_logit": 611.0},
                explained_by="optim.lr_too_high", where="out"),
        Finding("optim.lr_too_high", "warning", 0.75, source="probe:lr_range", evidence={
            "min_loss_lr": 0.1, "current_lr": 1.0,
            "explains": {"grad.exploding": "steps ten times too large blow the gradient up",
                         "model.logit_overflow": "large weights make huge logits"},
            "separating_experiment": "Rerun 50 steps at lr 0.1: bounded gradients convict the rate."}),
        Finding("data.unnormalized", "warning", 0.6, evidence={"std_spread": 12000.0, "spread_limit": 100.0}),
    ], source="exp[lr=1]/metrics.csv")


# -- the plain dict ------------------------------------------------------------------------------
def test_a_saved_json_report_renders_the_same_page(tmp_path, full_report):
    path = tmp_path / "report.json"
    path.write_text(full_report.to_json(), encoding="utf-8")
    with open(path, encoding="utf-8") as fh:
        again = render_html(json.load(fh))
    assert again == render_html(full_report)


def test_a_list_of_saved_reports_renders_as_one_page(full_report, clean_report):
    saved = json.loads(json.dumps([full_report.to_dict(), clean_report.to_dict()]))  # the --json of many runs
    text = render_html(saved)
    assert text.count("<html") == 1 and 'id="run-1"' in text and 'id="run-2"' in text
    assert "healthy.csv" in text


def test_the_renderers_never_import_the_report_model(full_report):
    """lossdoctor.report works from the dict alone: no import cycle with lossdoctor.findings."""
    code = (
        "import json, sys\n"
        "from lossdoctor.report import render_html, render_text\n"
        "data = json.load(sys.stdin)\n"
        "assert render_html(data).startswith('<!DOCTYPE html>')\n"
        "assert 'verdict' in render_text(data)\n"
        "render_html(data, fragment=True)\n"
        "print(sorted(m for m in sys.modules if m.startswith('lossdoctor')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], input=full_report.to_json(), capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "lossdoctor.report.html" in proc.stdout  # the page was drawn by the module under test
    assert "lossdoctor.findings" not in proc.stdout


def test_templates_never_mark_a_string_safe():
    """Escaping by construction: no template switches autoescaping off or marks a value safe."""
    for template in TEMPLATES.iterdir():
        text = template.read_text(encoding="utf-8")
        assert "|safe" not in text.replace(" ", "") and "autoescape false" not in text, template.name
    source = (TEMPLATES.parent / "html.py").read_text(encoding="utf-8")
    assert "Markup" not in source and "autoescape=True" in source


# -- escaping ---------------------------------------------------------------------------------
def test_a_hostile_run_name_and_layer_name_are_escaped_everywhere(make_report):
    run, layer = "<script>alert(1)</script>", 'a&b"c'
    report = make_report(layer_name=layer, source=run)
    report.findings[0].evidence[layer] = {run: layer}  # user strings as evidence keys and values
    report.findings[1].remedy = f"Rename {layer} and rerun {run}."
    for text in (render_html(report), report._repr_html_()):
        assert "<script" not in text and "alert(1)</script>" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert 'a&b"c' not in text
        assert re.search(r"a&amp;b(&#34;|&quot;)c", text)
        page = _Tree(text)
        assert "script" not in page.tags
        assert run in page.plain and layer in page.plain  # shown exactly as typed


# -- root cause first -------------------------------------------------------------------------
def test_symptoms_are_nested_under_their_root_cause_with_the_reason():
    report = _lr_root_with_symptoms()
    assert report.top.code == "optim.lr_too_high"  # the ranking puts the root cause first...
    text = render_html(report)
    tree = _Tree(text)
    # ...and the page too, with the symptoms inside the cause's card
    assert tree.parent == {"optim.lr_too_high": None, "grad.exploding": "optim.lr_too_high",
                           "model.logit_overflow": "optim.lr_too_high", "data.unnormalized": None}
    order = [m.group(1) for m in re.finditer(r'<article class="finding card[^"]*" data-code="([^"]+)"', text)]
    assert order == ["optim.lr_too_high", "grad.exploding", "model.logit_overflow", "data.unnormalized"]
    plain = tree.plain
    fix_first = plain[plain.index("Fix this first"):plain.index("What the run looked like")
                      if "What the run looked like" in plain else plain.index("Findings")]
    assert "The learning rate is too high" in fix_first and "Gradient norms" not in fix_first
    assert "This explains:" in plain and "steps ten times too large blow the gradient up" in plain
    assert "Explained by The learning rate is too high optim.lr_too_high : large weights make huge logits" in plain
    assert "The experiment that settles it: Rerun 50 steps at lr 0.1" in plain


def test_without_explained_by_every_finding_is_its_own_root(full_report):
    tree = _Tree(render_html(full_report))
    assert set(tree.parent.values()) == {None} and len(tree.parent) == len(full_report.findings)
    assert "Explained by" not in tree.plain and "Symptoms of this cause" not in tree.plain


# -- the verdict box agrees with the findings ------------------------------------------------------
def test_a_converging_run_with_an_error_is_not_green_and_says_why():
    error = Report("converging", [Finding("data.non_finite", "error", 0.9, evidence={"total": 12})], source="a.csv")
    text = render_html(error)
    assert _tone(text) == "bad"
    plain = _Tree(text).plain
    assert "The curves look fine, but 1 error needs fixing." in plain
    assert "Nothing to fix" not in plain and "nothing to fix" not in plain

    healthy = Report("converging", [], source="a.csv")
    text = render_html(healthy)
    assert _tone(text) == "good" and "Nothing to fix" in _Tree(text).plain


def test_an_overfitting_page_says_to_stop_at_the_onset_then_regularize():
    report = Report("overfitting", [], source="val.csv", events=[Event("overfitting_onset", 120, 0.41)])
    text = render_html(report)
    plain = _Tree(text).plain
    assert _tone(text) == "caution"
    assert "best at step 120" in plain and "early stopping" in plain and "regularize" in plain
    assert "nothing to fix" not in plain.lower() and "No findings" not in plain


def test_insufficient_data_says_how_many_points_are_needed():
    report = Report("insufficient_data", [], source="short.csv",
                    metadata={"curve_evidence": {"n_points": 5, "min_points": 8}})
    plain = _Tree(render_html(report)).plain
    assert "5 points were logged; at least 8 are needed" in plain
    assert "nothing to fix" not in plain.lower()


# -- notebooks --------------------------------------------------------------------------------
def test_the_notebook_view_is_the_same_report_without_a_page_shell(full_report):
    fragment = full_report._repr_html_()
    page = full_report.to_html()
    assert fragment.startswith('<div class="lossdoctor compact">') and fragment.rstrip().endswith("</div>")
    for shell in ("<html", "<head", "<body", "<!DOCTYPE", "<title"):
        assert shell not in fragment
    for piece in ('data-plot="curves"', 'data-plot="ablations"', 'data-code="optim.lr_too_high"', "Fix this first"):
        assert fragment.count(piece) == page.count(piece) == 1


def test_the_notebook_css_only_styles_the_report(full_report):
    css = re.search(r"<style>(.*?)</style>", full_report._repr_html_(), re.DOTALL).group(1)
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)
    blocks = re.findall(r"([^{}]+)\{([^{}]*)\}", re.sub(r"@media[^{]*\{((?:[^{}]*\{[^{}]*\})*)\s*\}", r"\1", css))
    assert len(blocks) > 50
    for selectors, _ in blocks:
        for selector in selectors.split(","):
            assert selector.strip().startswith(".lossdoctor"), selector.strip()


def test_repr_is_one_short_line():
    report = _lr_root_with_symptoms()
    text = repr(report)
    assert text == ("<Report diverging: 4 findings, top optim.lr_too_high (warning 0.75), "
                    "source='exp[lr=1]/metrics.csv'>")
    long = Report(None, source="/very/long/" + "x" * 300 + "/metrics.csv")
    assert len(repr(long)) < 120 and repr(long).endswith("/metrics.csv'>") and "0 findings" in repr(long)


@pytest.mark.parametrize("fragment", [False, True])
def test_an_empty_list_renders_an_empty_page(fragment):
    assert "lossdoctor" in render_html([], fragment=fragment)
