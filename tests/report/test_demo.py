"""The demo end to end on a small budget: faults caught live, report written, fixes converge."""
from __future__ import annotations

import math

from rich.console import Console

from lossdoctor.demo import FAULTS, run_demo

# Each checkup's ceiling: its runs are capped at the demo's epochs, so on an idle machine it ends
# well before this (the whole test takes ~20 s); the headroom keeps a busy machine from skipping probes.
DEMO_BUDGET_S = 30
DEMO_EPOCHS = 10  # the fixed network reaches a training loss near 0.01 in about 10 epochs on digits


def test_demo_catches_the_faults_writes_the_report_and_the_fixes_converge(tmp_path):
    html = tmp_path / "report.html"
    console = Console(file=open(tmp_path / "terminal.txt", "w"), width=120)
    result = run_demo(html=str(html), budget_s=DEMO_BUDGET_S, epochs=DEMO_EPOCHS, console=console)
    console.file.close()
    terminal = (tmp_path / "terminal.txt").read_text()

    # the broken run blows up, and the live monitor says so at the step it happens (not after the run)
    broken = result.broken
    assert broken.first_non_finite_step is not None
    assert broken.caught, "the live monitor caught nothing in the broken run"
    assert min(step for step, _ in broken.caught) <= broken.first_non_finite_step
    assert "monitor, step" in terminal

    # the first checkup names the learning rate and the unnormalized inputs; the too-strong dropout,
    # which can hide while the run blows up, is named by it or by the checkup of the partly fixed
    # setting (how long the checkup's runs are depends on the machine's speed)
    def flagged(report):
        return {fault for fault, codes in FAULTS.items() if any(report.has(c, "warning") for c in codes)}

    assert {"learning_rate", "standardize"} <= flagged(result.report), result.report.codes
    every_checkup = [result.report, *result.rechecks]
    assert set().union(*map(flagged, every_checkup)) == set(FAULTS), [r.codes for r in every_checkup]
    assert "not flagged by any checkup" not in terminal

    # the report is on disk, with the checkup and the fixed run, and the plots the runs produced
    text = html.read_text(encoding="utf-8")
    assert result.html_path == str(html)
    assert text.count('<section class="run"') == 3 + len(result.rechecks)  # monitor, checkups, fixed run
    for key in ("curves", "lr_range", "ablations", "feature_scales", "grad_norms", "dead_units"):
        assert f'data-plot="{key}"' in text, key

    # each fix is one more change; the last run has them all and converges
    assert len(result.fixes) == len(FAULTS)
    final = result.fixes[-1]
    assert final.setting.standardize and final.setting.dropout < 0.5
    assert math.isfinite(final.final_loss) and final.final_loss < broken.final_loss
    assert final.final_loss < 0.1 and final.val_accuracy > 0.9
    assert all(final.final_loss < run.final_loss for run in result.fixes[:-1])
    assert result.after.verdict == "converging"
