"""The HTML report as a person sees it: rendered by headless Chromium, offline.

The page is loaded twice: once with a strict Content-Security-Policy and a small probe script
added (a copy of the page, so the report itself stays script-free) whose results Chromium writes
into the dumped DOM, and once to save a screenshot. Any console message means an error: the
report has no script of its own, so a message can only be a blocked fetch or a broken resource.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from PIL import Image

from lossdoctor.report.html import PLOT_KEYS, render_html

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
]
CHROMIUM_TIMEOUT_S = 60  # a cold start on a busy 2-core machine takes a few seconds; this is a hang

# Nothing may be fetched: images only from data: URIs, styles only inline, no other source at all.
# The probe script is allowed by its hash-free 'unsafe-inline' because it is ours, added to a copy.
OFFLINE_POLICY = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                  "script-src 'unsafe-inline'; font-src 'none'; connect-src 'none'")
PROBE = """<script>
window.addEventListener("load", () => {
  const plots = [...document.querySelectorAll("figure[data-plot]")].map(f => {
    const img = f.querySelector("img");
    const box = img ? img.getBoundingClientRect() : {width: 0, height: 0};
    return [f.dataset.plot, img ? img.naturalWidth : 0, img ? img.naturalHeight : 0,
            Math.round(box.width), Math.round(box.height)].join(":");
  });
  document.body.setAttribute("data-probe", plots.join(" "));
  document.body.setAttribute("data-probe-done", "yes");
});
</script>"""

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (`make browser` installs it); "
    "the HTML report cannot be checked in a browser here")


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)


def _console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@needs_chromium
def test_report_loads_offline_in_chromium_with_every_plot_visible(tmp_path, full_report, clean_report):
    page = render_html([full_report, clean_report])
    probed = page.replace("<head>", f'<head><meta http-equiv="Content-Security-Policy" content="{OFFLINE_POLICY}">', 1)
    probed = probed.replace("</body>", PROBE + "</body>", 1)
    probe_file = tmp_path / "probed.html"
    probe_file.write_text(probed, encoding="utf-8")

    result = _chromium(tmp_path, "--dump-dom", probe_file.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert _console_messages(result.stderr) == []
    body = re.search(r'<body[^>]*data-probe="([^"]*)"[^>]*data-probe-done="yes"', result.stdout)
    assert body, "the page did not finish loading"
    plots = [item.split(":") for item in body.group(1).split()]
    assert sorted({p[0] for p in plots}) == sorted(PLOT_KEYS)
    assert len(plots) == len(PLOT_KEYS) + 1  # the healthy run draws its loss curve too
    for key, natural_w, natural_h, shown_w, shown_h in plots:
        assert int(natural_w) > 300 and int(natural_h) > 150, f"{key}: image did not decode"
        assert int(shown_w) > 300 and int(shown_h) > 100, f"{key}: image laid out too small to read"


@needs_chromium
def test_report_screenshot_shows_the_page(tmp_path, full_report):
    page_file = tmp_path / "report.html"
    full_report.to_html(str(page_file))
    shot = tmp_path / "report.png"
    result = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", page_file.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert _console_messages(result.stderr) == []
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2000)
    # the verdict banner of a non-finite run is red: the top of the page must show it
    top = image.crop((0, 0, 1280, 400))
    reds = sum(n for n, (r, g, b) in top.getcolors(1_000_000) if r > 170 and g < 90 and b < 80)
    assert reds > 10_000, "the red verdict banner is missing from the top of the page"
    assert len(image.getcolors(1_000_000)) > 500, "the screenshot is nearly blank"
    keep = os.environ.get("LOSSDOCTOR_SCREENSHOT")
    if keep:  # e.g. LOSSDOCTOR_SCREENSHOT=report.png make test: keep it to look at
        shutil.copy(shot, keep)


def _keep(shot, name: str) -> None:
    """LOSSDOCTOR_SCREENSHOT_DIR=dir keeps the screenshots to look at."""
    folder = os.environ.get("LOSSDOCTOR_SCREENSHOT_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        shutil.copy(shot, os.path.join(folder, name))


def _reds(image: Image.Image) -> int:
    return sum(n for n, (r, g, b) in image.getcolors(1_000_000) if r > 170 and g < 90 and b < 80)


# A notebook's own page: its headings, tables and text must look the same with the report in it.
NOTEBOOK = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body { margin:16px; font-family: serif; }
</style></head><body><h2 id="cell-in">In [1]: report</h2>
<table id="theirs"><tr><th>their</th><td>table</td></tr></table><p id="theirs-text">Their text, before.</p>
<div class="output">FRAGMENT</div><p id="after">In [2]: their text, after.</p></body></html>"""
STYLE_PROBE = """<script>
window.addEventListener("load", () => {
  const props = ["font-family", "font-size", "color", "text-align", "padding-top", "background-color", "margin-top"];
  const ids = ["cell-in", "theirs", "theirs-text", "after"];
  const styles = ids.map(id => {
    const el = document.getElementById(id), cell = el.querySelector("td") || el;
    return id + "=" + props.map(p => getComputedStyle(cell).getPropertyValue(p)).join("|");
  });
  const imgs = [...document.querySelectorAll(".lossdoctor img")].filter(i => i.naturalWidth > 300).length;
  const box = document.querySelector(".lossdoctor .verdict");
  document.body.setAttribute("data-styles", encodeURIComponent(styles.join(";")));
  document.body.setAttribute("data-images", String(imgs));
  document.body.setAttribute("data-verdict", box ? getComputedStyle(box).backgroundColor : "none");
  document.body.setAttribute("data-probe-done", "yes");
});
</script>"""


def _probe(tmp_path, name: str, page: str) -> dict[str, str]:
    path = tmp_path / name
    path.write_text(page.replace("</body>", STYLE_PROBE + "</body>", 1), encoding="utf-8")
    result = _chromium(tmp_path, "--dump-dom", path.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert _console_messages(result.stderr) == []
    body = re.search(r"<body([^>]*)>", result.stdout).group(1)
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body))
    assert attrs.get("probe-done") == "yes", "the page did not finish loading"
    return attrs


@needs_chromium
def test_the_notebook_view_renders_in_a_page_and_leaves_the_page_alone(tmp_path, nan_run_report):
    fragment = nan_run_report._repr_html_()
    with_report = _probe(tmp_path, "with.html", NOTEBOOK.replace("FRAGMENT", fragment))
    without = _probe(tmp_path, "without.html", NOTEBOOK.replace("FRAGMENT", ""))
    assert with_report["styles"] == without["styles"]  # the notebook's own elements are not restyled
    assert int(with_report["images"]) == len(re.findall(r"<img ", fragment)) >= 1
    assert with_report["verdict"] == "rgb(192, 57, 43)"  # a NaN run: the red verdict box

    page = tmp_path / "notebook.html"
    page.write_text(NOTEBOOK.replace("FRAGMENT", fragment), encoding="utf-8")
    shot = tmp_path / "notebook.png"
    result = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1000,1400", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert _reds(image.crop((0, 0, 1000, 450))) > 10_000, "the red verdict box is missing near the top"
    assert len(image.getcolors(1_000_000)) > 500, "the screenshot is nearly blank"
    _keep(shot, "notebook.png")


@needs_chromium
def test_a_nan_run_page_shows_the_finite_part_and_the_first_nan(tmp_path, nan_run_report):
    page = tmp_path / "nan.html"
    nan_run_report.to_html(str(page))
    shot = tmp_path / "nan.png"
    result = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1300", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert _console_messages(result.stderr) == []
    image = Image.open(shot).convert("RGB")
    assert _reds(image.crop((0, 0, 1280, 400))) > 10_000, "the red verdict banner is missing"
    # the loss plot (below the summary) carries the red first-NaN line and its shaded tail
    assert _reds(image.crop((0, 450, 1280, 1300))) > 500, "no first-NaN marker in the loss plot"
    assert len(image.getcolors(1_000_000)) > 500, "the screenshot is nearly blank"
    _keep(shot, "nan_run.png")
