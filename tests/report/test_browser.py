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
