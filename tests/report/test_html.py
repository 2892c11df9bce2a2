"""The HTML report: self-contained, escaped, every plot drawn when its data is there."""
from __future__ import annotations

import base64
import io
import re
import warnings
from html.parser import HTMLParser

import pytest
from PIL import Image

from lossdoctor.findings import Finding, Report
from lossdoctor.internal import LossDoctorInternalWarning
from lossdoctor.report.html import PLOT_KEYS, render_html


class _Page(HTMLParser):
    """Collects tags, attributes and text of a page."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str) -> list[dict]:
        return [attrs for t, attrs in self.tags if t == tag]

    @property
    def plain(self) -> str:
        return " ".join(self.text)


def _plot_images(page: _Page) -> dict[str, Image.Image]:
    """data-plot key -> decoded PNG of the <img> that follows its <figure>."""
    images, current = {}, None
    for tag, attrs in page.tags:
        if tag == "figure" and "data-plot" in attrs:
            current = attrs["data-plot"]
        elif tag == "img" and current is not None:
            assert attrs["src"].startswith("data:image/png;base64,")
            raw = base64.b64decode(attrs["src"].split(",", 1)[1], validate=True)
            images[current] = Image.open(io.BytesIO(raw))
            images[current].load()
            current = None
    return images


def test_page_is_self_contained_with_no_script_and_nothing_fetched(full_html):
    text = full_html
    page = _Page(text)
    assert not page.all("script") and not page.all("link") and not page.all("iframe")
    for attrs in page.tags:
        for name in ("src", "href"):
            value = attrs[1].get(name)
            if value is not None:
                assert value.startswith(("data:", "#")), f"{attrs[0]} {name}={value[:60]} would be fetched"
    assert "@import" not in text and "url(" not in text


def test_every_plot_is_drawn_when_its_data_is_present(full_html):
    page = _Page(full_html)
    images = _plot_images(page)
    assert sorted(images) == sorted(PLOT_KEYS)
    for key, image in images.items():
        assert image.width > 300 and image.height > 150, key
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert len(colours) > 20, f"{key} plot is blank"


@pytest.mark.parametrize("key", PLOT_KEYS)
def test_a_plot_appears_exactly_when_its_data_is_present(key, make_report):
    full = make_report()
    only = Report(full.verdict, full.findings, source="one plot", events=full.events,
                  plots={key: full.plots[key]})
    assert list(_plot_images(_Page(render_html(only)))) == [key]


def test_malicious_layer_metric_and_file_names_are_escaped(hostile_report, hostile):
    HOSTILE = hostile
    hostile_report.plots["curves"][HOSTILE] = hostile_report.plots["curves"]["val_loss"]  # a hostile metric tag
    hostile_report.metadata[HOSTILE] = HOSTILE
    hostile_report.findings[0].evidence[HOSTILE] = [HOSTILE]
    text = render_html(hostile_report)
    page = _Page(text)
    assert not page.all("script")
    assert "<script>" not in text and 'alert("x")' not in text
    assert re.search(r"&lt;script&gt;alert\((&quot;|&#34;)x(&quot;|&#34;)\)&lt;/script&gt;", text)
    assert "&amp;amp;" in text  # the entity in the name is shown as typed, not decoded
    assert HOSTILE in page.plain  # the reader sees the name exactly as it is
    # a "$" in a name would start matplotlib mathtext; every plot must still be drawn
    assert "could not be drawn" not in text
    assert sorted(_plot_images(page)) == sorted(PLOT_KEYS)


def test_verdict_and_the_cause_to_fix_first_open_the_page(full_report, full_html):
    text = full_html
    plain = _Page(text).plain
    top = full_report.top
    assert top.code == "optim.lr_too_high"
    fix_first = plain.index("Fix this first")
    assert plain.index("non finite") < fix_first < plain.index(top.title) < plain.index("Findings, most urgent first")
    assert top.remedy in plain[fix_first: plain.index("Findings, most urgent first")]


def test_findings_are_listed_in_rank_order_with_their_evidence(full_report, full_html):
    text = full_html
    findings_part = text[text.index("Findings, most urgent first"):]
    positions = [findings_part.index(f"<code class=\"code\">{f.code}</code>") for f in full_report.findings]
    assert positions == sorted(positions)
    assert findings_part.count('<article class="finding card') == len(full_report.findings)
    for f in full_report.findings:
        for key in f.evidence:
            assert f"<th>{key}</th>" in findings_part, key
    assert "first_nan_step</th><td>260</td>" in findings_part


def test_ruled_out_causes_and_events_are_listed(full_report, full_html):
    plain = _Page(full_html).plain
    assert "Ruled out" in plain
    for r in full_report.ruled_out:
        assert r.code in plain and r.by in plain
    for e in full_report.events:
        assert e.kind in plain


def test_a_report_with_no_findings_says_there_is_nothing_to_fix(clean_report):
    text = render_html(clean_report)
    plain = _Page(text).plain
    assert "converging" in plain and "Nothing to fix" in plain and "No findings" in plain
    assert '<article class="finding' not in text and "Ruled out" not in plain
    assert list(_plot_images(_Page(text))) == ["curves"]


def test_a_report_without_plots_or_verdict_still_renders():
    report = Report(None, [Finding("model.bad_init", "warning", 0.6, where="fc1", evidence={"ratio": 12.0})],
                    source="check_model")
    text = render_html(report)
    assert "<figure" not in text and "no verdict" in text and "model.bad_init" in text


def test_a_list_of_reports_is_one_page_with_a_section_per_run(full_report, clean_report):
    text = render_html([full_report, clean_report])
    page = _Page(text)
    assert text.count("<html") == 1
    sections = [a["id"] for a in page.all("section")]
    assert sections == ["run-1", "run-2"]
    links = [a["href"] for a in page.all("a")]
    assert links == ["#run-1", "#run-2"]
    assert "runs/exp1/metrics.csv" in page.plain and "healthy.csv" in page.plain
    assert len(_plot_images(page)) >= len(PLOT_KEYS)  # dict keyed by plot: both runs drew curves
    assert text.count('data-plot="curves"') == 2


def test_a_json_round_trip_renders_the_same_plots(full_report):
    again = Report.from_json(full_report.to_json())  # NaN became the string "nan"
    assert sorted(_plot_images(_Page(render_html(again)))) == sorted(PLOT_KEYS)


def test_malformed_plot_data_is_noted_and_the_rest_of_the_page_survives(full_report):
    plots = {key: full_report.plots[key] for key in ("curves", "dead_units")}
    plots["grad_norms"] = {"layers": ["a", "b"], "steps": [1, 2], "norms": [[1.0, 2.0]]}  # one row short
    with pytest.warns(LossDoctorInternalWarning, match="html plot grad_norms"):
        text = render_html(Report(full_report.verdict, full_report.findings, plots=plots))
    assert "The grad_norms plot could not be drawn" in text and "2 layers but 1 rows" in text
    assert sorted(_plot_images(_Page(text))) == ["curves", "dead_units"]
    assert "Findings, most urgent first" in text


def test_rendering_leaves_no_pyplot_figures_behind(full_report):
    from matplotlib import pyplot

    before = pyplot.get_fignums()
    render_html(full_report)
    assert pyplot.get_fignums() == before


def test_report_to_html_writes_the_page(tmp_path, clean_report):
    path = tmp_path / "report.html"
    text = clean_report.to_html(str(path))
    assert path.read_text(encoding="utf-8") == text and text.startswith("<!DOCTYPE html>")


def test_cli_writes_html_for_a_list_of_runs(tmp_path, clean_report, capsys):
    """The CLI's --html path hands lists straight to render_html."""
    from argparse import Namespace

    from lossdoctor import cli

    out = tmp_path / "runs.html"
    stalled = Report("stalled", [Finding("optim.lr_too_low", "warning", 0.7)], source="slow.csv")
    code = cli._emit([stalled, clean_report], Namespace(json=True, html=str(out)))
    assert code == 1
    text = out.read_text(encoding="utf-8")
    assert re.search(r'id="run-2"', text) and "slow.csv" in text and "healthy.csv" in text


def test_anything_but_a_report_or_its_dict_is_refused_with_what_was_expected():
    with pytest.raises(TypeError, match="Report or its dict"):
        render_html([42])
    with pytest.raises(TypeError, match="'verdict'"):
        render_html({"findings": []})
    with pytest.raises(ValueError, match="unknown verdict 'fine'"):
        render_html({"verdict": "fine"})
    with pytest.raises(ValueError, match="severity 'fatal'"):
        render_html({"verdict": None, "findings": [{"code": "optim.lr_too_high", "severity": "fatal"}]})


def test_a_bad_verdict_without_findings_shows_what_the_verdict_calls_for():
    report = Report("overfitting", [], source="val.csv", metadata={"advice": "Stop at the best validation step."})
    plain = _Page(render_html(report)).plain
    assert "No specific cause found" in plain and "Stop at the best validation step." in plain
    assert "Nothing to fix" not in plain


def test_an_empty_curve_is_skipped_quietly():
    report = Report("insufficient_data", [], source="stopped at once",
                    plots={"curves": {"train_loss": {"steps": [], "values": []}}})
    with warnings.catch_warnings():
        warnings.simplefilter("error", LossDoctorInternalWarning)  # an empty curve is not an error
        text = render_html(report)
    assert "<figure" not in text and "could not be drawn" not in text
