"""The plots show what matters: a NaN run's finite part and its first NaN, the bulk of the
experiments beside a diverged one, real steps under the gradient heat map, and the right word for
units that pass no gradient. Each fault has its healthy twin, drawn from real digits trainings."""
from __future__ import annotations

import numpy as np
import pytest

from lossdoctor.findings import Finding, Report
from lossdoctor.report import plots
from lossdoctor.report.view import report_dict


def _curves_figure(report: Report):
    data = report_dict(report)
    fig, caption = plots._plot_curves(data["plots"]["curves"], data)
    return fig, "".join(text for _, text in caption.parts)


def _curves_report(digits_runs, fault: str) -> Report:
    from lossdoctor.curves import diagnose_curves

    return diagnose_curves(digits_runs.to_curves(digits_runs[fault], run=fault))


def test_a_nan_run_is_drawn_up_to_its_first_nan_with_the_step_marked(nan_run_report, digits_runs):
    losses = np.array(digits_runs["lr_nan"]["loss"], dtype=float)
    first_nan = int(digits_runs["lr_nan"]["steps"][int(np.argmax(~np.isfinite(losses)))])
    assert np.isfinite(losses[:4]).all() and not np.isfinite(losses[10:]).any()  # the fault as trained
    fig, caption = _curves_figure(nan_run_report)
    ax = fig.axes[0]
    right = ax.get_xlim()[1]
    assert first_nan < right < 0.2 * len(losses)  # the empty NaN tail is not drawn
    labels = [t.get_text() for t in ax.texts]
    assert f"first NaN in train_loss at step {first_nan}" in labels
    assert [line for line in ax.get_lines() if line.get_xdata()[0] == first_nan]  # the red line at the step
    assert f"are not drawn: no loss is finite there, up to the last step, {len(losses)}" in caption


def test_a_healthy_run_is_drawn_whole_with_no_nan_marker(digits_runs):
    fig, caption = _curves_figure(_curves_report(digits_runs, "healthy"))
    ax = fig.axes[0]
    assert ax.get_xlim()[1] >= len(digits_runs["healthy"]["loss"])
    assert not [t for t in ax.texts if "NaN" in t.get_text()]
    assert "not drawn" not in caption and "cut" not in caption


def _ablations(digits_runs, *faults: str):
    data = {"baseline": {"label": "your setting", "losses": digits_runs["dropout09"]["loss"]},
            "runs": [{"label": fault, "losses": digits_runs[fault]["loss"]} for fault in faults]}
    report = report_dict(Report("stalled", plots={"ablations": data}))
    fig, caption = plots._plot_ablations(data, report)
    return fig.axes[0], "".join(text for _, text in caption.parts)


def test_a_diverged_experiment_does_not_flatten_the_others(digits_runs):
    ax, caption = _ablations(digits_runs, "healthy", "lr_nan")
    finite_peak = np.nanmax(np.array(digits_runs["lr_nan"]["loss"], dtype=float))
    assert finite_peak > 1e20  # the diverged run reaches ~1e23 before NaN
    others = np.concatenate([digits_runs[f]["loss"] for f in ("healthy", "dropout09")])
    top = ax.get_ylim()[1]
    assert others.max() <= top < 10 * others.max()
    assert "The axis is cut at" in caption and "off the chart" in caption
    assert [line for line in ax.get_lines() if line.get_marker() == "^"]  # where lr_nan leaves the chart


def test_experiments_on_one_scale_are_not_cut(digits_runs):
    ax, caption = _ablations(digits_runs, "healthy")
    assert "cut" not in caption
    assert ax.get_ylim()[1] >= max(max(digits_runs[f]["loss"]) for f in ("healthy", "dropout09"))


def test_the_heat_map_labels_real_steps_at_even_intervals():
    steps = [0, 1, 2, 5, 20, 21, 22, 180]  # the live monitor samples densely at first, then sparsely
    norms = np.exp(np.random.default_rng(0).normal(0, 1, (3, len(steps))))
    data = {"layers": ["fc1", "fc2", "out"], "steps": steps, "norms": norms.tolist()}
    fig, _ = plots._plot_grad_norms(data, report_dict(Report(None)))
    ax = fig.axes[0]
    left, right = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if left <= t <= right]
    assert left <= 0 and right >= 180 and len(ticks) >= 4
    assert len(set(np.round(np.diff(ticks), 9))) == 1  # evenly spaced
    assert all(float(t).is_integer() for t in ticks)
    assert [label.get_text() for label in ax.get_xticklabels()
            if left <= label.get_position()[0] <= right] == [f"{int(t)}" for t in ticks]


@pytest.mark.parametrize("kind, words, not_words, explained", [
    ("saturated tanh", "saturated", "never activate", "pinned at the bounds"),
    ("relu", "never activate", "saturated", "never positive"),
])
def test_the_dead_units_chart_names_the_kind_of_unit(kind, words, not_words, explained):
    finding = Finding("grad.dead_relu", "warning", 0.7, where="h1",
                      evidence={"layers": {"h1": {"share": 0.9, "kind": kind}}, "threshold": 0.5})
    report = report_dict(Report(None, [finding], plots={"dead_units": {"layers": ["h1", "h2"], "share": [0.9, 0.1]}}))
    fig, caption = plots._plot_dead_units(report["plots"]["dead_units"], report)
    title = fig.axes[0].get_title(loc="left")
    assert words in title and not_words not in title
    assert explained in "".join(text for _, text in caption.parts)


def test_the_saturated_activation_code_or_the_plot_data_name_the_kind():
    layers = {"layers": ["t1", "t2"], "share": [0.8, 0.6]}
    by_code = report_dict(Report(None, plots={"dead_units": layers}))
    by_code["findings"] = [{"code": "grad.saturated_activation", "severity": "warning", "where": "t1",
                            "evidence": {}}, {"code": "grad.saturated_activation", "severity": "warning",
                                              "where": "t2", "evidence": {}}]
    fig, _ = plots._plot_dead_units(layers, report_dict(by_code))
    assert "saturated" in fig.axes[0].get_title(loc="left")
    with_kinds = {**layers, "kinds": ["relu", "saturated sigmoid"]}
    fig, _ = plots._plot_dead_units(with_kinds, report_dict(Report(None)))
    assert fig.axes[0].get_title(loc="left") == "Share of dead or saturated units, per layer"
    assert {t.get_text() for t in fig.axes[0].texts} == {"80% dead", "60% saturated"}
