"""A self-contained HTML report: one file, plots inline as PNG, no script, no network fetch.

``render_html(report_or_list)`` only displays what a Report holds: the verdict and the cause to
fix first at the top, then the plots drawn from ``Report.plots`` (keys in the Report docstring),
the ranked findings with their evidence, and what was ruled out. A list of reports becomes one
page with an overview and a section per run.

Every string that came from the user (run names, layer names, metric tags, file names, evidence
keys and values) goes through ``html.escape`` before it reaches the page, and through
``_mpl_text`` before it reaches a matplotlib label (a ``$`` would otherwise start mathtext).
Plots use ``matplotlib.figure.Figure`` directly, never pyplot, so no global figure state leaks.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from typing import Any, Callable, Iterable

import numpy as np

from ..codes import CODES, VERDICTS
from ..findings import Event, Finding, Report
from ..internal import report_internal_error
from . import verdict_advice

# -- look ------------------------------------------------------------------------------------
SEVERITY_COLOUR = {"error": "#c0392b", "warning": "#c27c0e", "info": "#2471a3"}
VERDICT_COLOUR = {"converging": "#1e8449", "insufficient_data": "#b9770e", None: "#5d6d7e"}
VERDICT_BAD_COLOUR = "#c0392b"  # every verdict other than the ones above means "something is wrong"

# matplotlib colours for the plots: a calm palette that stays readable when printed in grey
TRAIN_COLOUR = "#1f77b4"
VAL_COLOUR = "#e67e22"
SUGGESTED_COLOUR = "#1e8449"
CURRENT_COLOUR = "#c0392b"
EVENT_STYLE = {  # (keyword in Event.kind, colour, line style) - first match wins
    "nan": ("#c0392b", "-"),
    "non_finite": ("#c0392b", "-"),
    "inf": ("#c0392b", "-"),
    "diverg": ("#922b21", "--"),
    "spike": ("#c0392b", ":"),
    "overfit": ("#af601a", "--"),
    "explosion": ("#c0392b", ":"),
    "plateau": ("#566573", "-."),
    "warmup": ("#1e8449", ":"),
    "stall": ("#566573", "-."),
}
DEFAULT_EVENT_STYLE = ("#7d3c98", ":")

# Sizes: PNGs are drawn at PLOT_DPI and shown at about half their pixel width, so they stay sharp
# on high-density screens while a six-plot report remains a few hundred kilobytes.
PLOT_DPI = 130
PLOT_WIDTH_IN = 6.0
PLOT_HEIGHT_IN = 3.4
WIDE_PLOT_WIDTH_IN = 11.0  # the loss curves span the page: they are what people look at first
WIDE_PLOTS = ("curves",)
MAX_LABEL_CHARS = 28  # longer layer/feature names are shortened in plot axes (full names in the tables)
MAX_HEATMAP_LAYERS = 40  # more rows than this become unreadable; the rest are noted under the plot
MAX_BAR_FEATURES = 80  # likewise for per-feature bars
EVIDENCE_LIST_ITEMS = 12  # lists longer than this are shown as their first items and a count
LOG_SCALE_DECADES = 2.0  # a positive series spanning more than this many decades gets a log axis
# A loss that blows up for a few steps would flatten everything else: when the peak passes
# OFF_SCALE_RATIO x the 90th percentile, the axis is cut at AXIS_CAP_RATIO x that percentile.
OFF_SCALE_RATIO = 100.0
AXIS_CAP_RATIO = 5.0

CSS = """
:root { --ink:#1c2833; --muted:#5d6d7e; --line:#e5e8ec; --bg:#f6f7f9; --card:#fff; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",Arial,sans-serif; }
main { max-width:1180px; margin:0 auto; padding:24px 28px 48px; }
header.page { display:flex; align-items:baseline; justify-content:space-between; gap:16px;
  border-bottom:1px solid var(--line); margin-bottom:20px; }
header.page h1 { font-size:22px; margin:8px 0 12px; letter-spacing:.2px; }
header.page h1 span { color:var(--muted); font-weight:400; }
header.page .gen { color:var(--muted); font-size:13px; }
section.run { margin:0 0 40px; }
h2 { font-size:19px; margin:0 0 12px; word-break:break-word; }
h3 { font-size:16px; margin:28px 0 10px; color:#34495e; text-transform:uppercase;
  letter-spacing:.6px; font-weight:600; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px;
  box-shadow:0 1px 2px rgba(0,0,0,.04); }
.summary { display:grid; grid-template-columns:minmax(220px,300px) 1fr; gap:0; overflow:hidden; }
.verdict { padding:18px 20px; color:#fff; }
.verdict .label { font-size:12px; text-transform:uppercase; letter-spacing:1px; opacity:.85; }
.verdict .value { font-size:26px; font-weight:700; margin:2px 0 6px; }
.verdict .meaning { font-size:13.5px; opacity:.95; }
.fixfirst { padding:16px 20px; }
.fixfirst .label { font-size:12px; text-transform:uppercase; letter-spacing:1px; color:var(--muted); }
.fixfirst .title { font-size:18px; font-weight:600; margin:2px 0 4px; }
.fixfirst .remedy { font-size:15px; margin-top:6px; padding:10px 12px; background:#eef6ee;
  border-left:4px solid #1e8449; border-radius:4px; }
.fixfirst.clean .remedy { background:#eef4fb; border-left-color:#2471a3; }
.meta { margin-top:10px; color:var(--muted); font-size:13px; }
.meta code { color:var(--ink); }
.chips { margin-top:8px; display:flex; flex-wrap:wrap; gap:6px; }
.notes { margin:8px 0 0; padding-left:18px; color:var(--muted); font-size:13px; }
details { margin-top:8px; font-size:13px; }
details summary { cursor:pointer; color:#2471a3; }
details table.evidence { margin-top:6px; }
.chip { font-size:12.5px; padding:2px 9px; border-radius:999px; background:#eef0f3; color:#2c3e50; }
.badge { display:inline-block; font-size:11.5px; font-weight:700; color:#fff; padding:1px 8px;
  border-radius:4px; text-transform:uppercase; letter-spacing:.5px; vertical-align:2px; }
code { font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,"Liberation Mono",monospace;
  font-size:.92em; background:#f1f3f5; padding:1px 5px; border-radius:4px; word-break:break-word; }
.plots { display:grid; grid-template-columns:repeat(auto-fit,minmax(500px,1fr)); gap:16px; }
figure.plot { margin:0; padding:12px 14px 10px; }
figure.plot.wide { grid-column:1 / -1; }
figure.plot img { width:100%; height:auto; display:block; }
figure.plot figcaption { font-size:13px; color:var(--muted); margin-top:6px; }
figure.plot figcaption b { color:var(--ink); }
.plot-missing { padding:14px; color:var(--muted); font-style:italic; }
.finding { margin:0 0 14px; border-left:6px solid var(--sev); overflow:hidden; }
.finding .head { padding:12px 16px 4px; display:flex; gap:12px; align-items:baseline; }
.finding .rank { font-weight:700; color:var(--muted); min-width:1.6em; }
.finding .ftitle { font-weight:600; font-size:16px; flex:1 1 0; min-width:0; }
.finding .code { color:var(--muted); }
.finding .fmeta { padding:2px 16px 0 calc(16px + 1.6em + 12px); display:flex; gap:14px; align-items:center;
  flex-wrap:wrap; font-size:13px; color:var(--muted); }
.finding .body { padding:4px 16px 14px 16px; }
.finding .remedy { margin:6px 0 10px; }
.finding .remedy b { color:#1e8449; }
.conf { display:inline-flex; align-items:center; gap:6px; font-size:12.5px; color:var(--muted); }
.conf .bar { width:70px; height:7px; background:#e5e8ec; border-radius:4px; overflow:hidden; }
.conf .bar i { display:block; height:100%; background:var(--sev); }
table { border-collapse:collapse; width:100%; font-size:13.5px; }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#f3f5f7; font-weight:600; color:#34495e; }
table.evidence { width:auto; min-width:50%; max-width:100%; }
table.evidence th { width:14em; background:#fafbfc; font-weight:500; font-family:ui-monospace,Menlo,Consolas,monospace; font-size:12.5px; }
table.evidence td { font-variant-numeric:tabular-nums; word-break:break-word; }
table.evidence table.evidence { min-width:0; margin:2px 0; }
table.listing tr:hover td { background:#fafbfc; }
.num { font-variant-numeric:tabular-nums; text-align:right; white-space:nowrap; }
.muted { color:var(--muted); }
.empty { padding:14px 16px; color:var(--muted); }
.clean-note { padding:14px 16px; color:#1e8449; font-weight:600; }
a { color:#2471a3; text-decoration:none; } a:hover { text-decoration:underline; }
footer { margin-top:36px; color:var(--muted); font-size:12.5px; text-align:center; }
@media (max-width:720px) { .summary { grid-template-columns:1fr; } .plots { grid-template-columns:1fr; } }
@media print { body { background:#fff; } .card { box-shadow:none; } section.run { break-before:page; } }
"""


# -- small helpers ---------------------------------------------------------------------------
def _e(value: Any) -> str:
    """Escape anything for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def _mpl_text(value: Any, limit: int | None = MAX_LABEL_CHARS) -> str:
    """A user string made safe for a matplotlib label: ``$`` would start mathtext, so escape it."""
    text = str(value)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text.replace("$", r"\$")  # outside mathtext a backslash is shown as it is


def _floats(values: Iterable[Any]) -> np.ndarray:
    """Values as float64; JSON round-trips store non-finite floats as "nan"/"inf" strings."""
    out = []
    for v in values if values is not None else []:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(math.nan)
    return np.asarray(out, dtype=np.float64)


def _fmt_number(value: float) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3e}"


def _require(condition: bool, problem: str) -> None:
    """Plot data that contradicts itself is a bug upstream: say what is wrong (shown under the plot)."""
    if not condition:
        raise ValueError(problem)


def _loss_axis(ax, values: np.ndarray) -> str:
    """Log or linear y axis for loss values, cut below a short blow-up; returns a caption note."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return ""
    typical = float(np.percentile(finite, 90))
    cap = AXIS_CAP_RATIO * typical if typical > 0 and finite.max() > OFF_SCALE_RATIO * typical else None
    shown = finite[finite <= cap] if cap is not None else finite
    if _is_wide_positive(shown):
        ax.set_yscale("log")
    if cap is None:
        return ""
    low = float(shown.min())
    bottom = low / 1.5 if ax.get_yscale() == "log" else min(0.0, low)
    ax.set_ylim(bottom, cap)
    return f" The axis is cut at {_e(_fmt_number(cap))}: peaks up to {_e(_fmt_number(float(finite.max())))} are off the chart."


def _is_wide_positive(values: np.ndarray) -> bool:
    """True when a series is all positive and spans more than LOG_SCALE_DECADES decades."""
    finite = values[np.isfinite(values)]
    if finite.size < 2 or np.any(finite <= 0):
        return False
    return math.log10(finite.max() / finite.min()) > LOG_SCALE_DECADES


def _with_defaults(ax, title: str | None = None) -> None:
    ax.grid(True, color="#e5e8ec", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#aab2bd")
    ax.tick_params(colors="#34495e", labelsize=9)
    if title:
        ax.set_title(title, fontsize=11.5, loc="left", color="#1c2833", fontweight="bold")


def _figure(height_in: float = PLOT_HEIGHT_IN, width_in: float = PLOT_WIDTH_IN):
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=PLOT_DPI, layout="constrained")


def _png(fig) -> str:
    """A figure as a base64 PNG data URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PLOT_DPI, facecolor="white", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# -- plots: each takes the plot data (and the report) and returns (figure, caption html) ------
def _event_style(kind: str) -> tuple[str, str]:
    low = kind.lower()
    for key, style in EVENT_STYLE.items():
        if key in low:
            return style
    return DEFAULT_EVENT_STYLE


def _plot_curves(data: dict, report: Report):
    series = {name: (_floats(s.get("steps", [])), _floats(s.get("values", []))) for name, s in data.items()}
    for name, (steps, values) in series.items():
        _require(steps.size == values.size, f"curve {name!r} has {steps.size} steps but {values.size} values")
    series = {k: v for k, v in series.items() if v[0].size}
    if not series:  # no points yet (a run stopped before its first step): nothing to draw
        return None
    losses = {k: v for k, v in series.items() if "loss" in k.lower()} or dict(list(series.items())[:1])
    others = [k for k in series if k not in losses][:3]  # lr, grad_norm, accuracy...: small panels below
    fig = _figure(PLOT_HEIGHT_IN + 0.2 + 0.9 * len(others), WIDE_PLOT_WIDTH_IN)
    axes = fig.subplots(1 + len(others), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [3] + [1] * len(others)})[:, 0]
    ax = axes[0]
    _with_defaults(ax, "Loss curves and detected events")
    all_loss = np.concatenate([v for _, v in losses.values()])
    for i, (name, (steps, values)) in enumerate(losses.items()):
        colour = TRAIN_COLOUR if "train" in name.lower() else VAL_COLOUR if "val" in name.lower() else f"C{i + 2}"
        shown = np.where(np.isfinite(values), values, np.nan)
        marker = "o" if steps.size <= 40 else None
        ax.plot(steps, shown, color=colour, linewidth=1.6, marker=marker, markersize=3, label=_mpl_text(name))
    axis_note = _loss_axis(ax, all_loss)
    ax.set_ylabel("loss", fontsize=9.5)
    seen: set[str] = set()
    for event in report.events:
        colour, style = _event_style(event.kind)
        label = None if event.kind in seen else _mpl_text(event.kind, 40)
        seen.add(event.kind)
        for a in axes:
            a.axvline(float(event.step), color=colour, linestyle=style, linewidth=1.3, alpha=0.9,
                      label=label if a is ax else None)
        if colour == EVENT_STYLE["nan"][0] and style == "-":  # non-finite from here on: shade the rest
            last = max(float(steps.max()) for steps, _ in series.values())
            ax.axvspan(float(event.step), max(last, float(event.step)), color=colour, alpha=0.07)
        value = _floats([event.value])[0] if event.value is not None else math.nan
        if math.isfinite(value):
            ax.plot([float(event.step)], [value], marker="v", color=colour, markersize=7, zorder=5)
    ax.legend(fontsize=8.5, frameon=False, loc="best")
    for a, name in zip(axes[1:], others):
        steps, values = series[name]
        _with_defaults(a)
        a.plot(steps, np.where(np.isfinite(values), values, np.nan), color="#566573", linewidth=1.2)
        if _is_wide_positive(values):
            a.set_yscale("log")
        a.set_ylabel(_mpl_text(name, 14), fontsize=8.5)
    axes[-1].set_xlabel("step", fontsize=9.5)
    caption = f"{_e(', '.join(losses))} over steps. Vertical lines mark the events found in the curves"
    marked = dict.fromkeys((e.kind, float(e.step)) for e in report.events)  # one mention per event
    caption += (": " + ", ".join(f"<b>{_e(kind)}</b> at step {_e(_fmt_number(step))}" for kind, step in marked)
                + "." if marked else " (none were found).") + axis_note
    return fig, caption


def _plot_lr_range(data: dict, report: Report):
    lrs, losses = _floats(data.get("lrs", [])), _floats(data.get("losses", []))
    _require(lrs.size == losses.size, f"{lrs.size} learning rates but {losses.size} losses")
    if not lrs.size:
        return None
    fig = _figure()
    ax = fig.subplots()
    _with_defaults(ax, "Learning-rate range test")
    ok = np.isfinite(losses) & (lrs > 0)
    ax.plot(lrs[ok], losses[ok], color=TRAIN_COLOUR, linewidth=1.8, marker="o", markersize=3, label="loss after a short run")
    if np.any(~np.isfinite(losses) & (lrs > 0)):
        first_bad = float(lrs[~np.isfinite(losses) & (lrs > 0)].min())
        ax.axvspan(first_bad, float(lrs.max()) * 1.05, color="#c0392b", alpha=0.08, label="loss NaN/Inf")
    ax.set_xscale("log")
    finite = losses[ok]
    if finite.size and finite.max() > 3 * finite[0] > 0:
        # the blow-up past the minimum would flatten everything else: cap the axis at 3x the first loss
        span = 3 * finite[0] - finite.min()
        ax.set_ylim(finite.min() - 0.05 * span, 3 * finite[0])
    suggested, current = _floats([data.get("suggested_lr")])[0], _floats([data.get("current_lr")])[0]
    if math.isfinite(suggested) and suggested > 0:
        ax.axvline(suggested, color=SUGGESTED_COLOUR, linewidth=2, label=f"suggested {suggested:.2g}")
    if math.isfinite(current) and current > 0:
        ax.axvline(current, color=CURRENT_COLOUR, linewidth=2, linestyle="--", label=f"current {current:.2g}")
    ax.set_xlabel("learning rate (log scale)", fontsize=9.5)
    ax.set_ylabel("loss", fontsize=9.5)
    ax.legend(fontsize=8.5, frameon=False)
    caption = "Loss after a short run at each learning rate (gradient clipping off)."
    if math.isfinite(suggested):
        caption += f" Suggested: <b>{_e(f'{suggested:.3g}')}</b>"
        caption += f", current: <b>{_e(f'{current:.3g}')}</b>." if math.isfinite(current) else "."
    return fig, caption


def _plot_grad_norms(data: dict, report: Report):
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm

    layers = [str(x) for x in data.get("layers", [])]
    steps = _floats(data.get("steps", []))
    norms = [_floats(row) for row in data.get("norms", [])]
    if not layers or not steps.size:
        return None
    _require(len(norms) == len(layers), f"{len(layers)} layers but {len(norms)} rows of norms")
    _require(all(r.size == steps.size for r in norms), f"every row of norms must have one value per step ({steps.size})")
    hidden = max(0, len(layers) - MAX_HEATMAP_LAYERS)
    layers, matrix = layers[:MAX_HEATMAP_LAYERS], np.vstack(norms[:MAX_HEATMAP_LAYERS])
    fig = _figure(min(9.0, max(2.8, 0.24 * len(layers) + 1.6)))
    ax = fig.subplots()
    _with_defaults(ax, "Gradient norm per layer over steps")
    ax.grid(False)
    positive = matrix[np.isfinite(matrix) & (matrix > 0)]
    masked = np.ma.masked_where(~np.isfinite(matrix) | (matrix <= 0), matrix)
    cmap = colormaps["viridis"].with_extremes(bad="#c0392b")  # NaN/Inf/zero cells show red
    norm = LogNorm(vmin=positive.min(), vmax=max(positive.max(), positive.min() * 1.0001)) if positive.size else None
    image = ax.imshow(masked, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm)
    ax.set_yticks(range(len(layers)), [_mpl_text(n) for n in layers], fontsize=7.5 if len(layers) > 15 else 8.5)
    ticks = np.unique(np.linspace(0, steps.size - 1, min(8, steps.size)).astype(int))
    ax.set_xticks(ticks, [_fmt_number(float(steps[i])) for i in ticks])
    ax.set_xlabel("step", fontsize=9.5)
    if positive.size:
        fig.colorbar(image, ax=ax, pad=0.01).set_label("gradient norm (log)", fontsize=8.5)
    caption = "Each row is a layer (input at the top), each column a recorded step; red cells are NaN, Inf or zero."
    if hidden:
        caption += f" {hidden} more layers are not shown."
    return fig, caption


def _plot_dead_units(data: dict, report: Report):
    from matplotlib import colormaps

    layers = [str(x) for x in data.get("layers", [])]
    share = _floats(data.get("share", []))
    _require(len(layers) == share.size, f"{len(layers)} layers but {share.size} shares")
    if not layers:
        return None
    fig = _figure(min(8.0, max(2.4, 0.3 * len(layers) + 1.2)))
    ax = fig.subplots()
    _with_defaults(ax, "Share of units that never activate, per layer")
    y = np.arange(len(layers))
    colours = colormaps["YlOrRd"](0.25 + 0.75 * np.clip(np.nan_to_num(share), 0, 1))
    ax.barh(y, np.nan_to_num(share), color=colours, edgecolor="#7b7d7d", linewidth=0.4)
    for yi, s in zip(y, share):
        ax.text(min(float(np.nan_to_num(s)), 1.0) + 0.01, yi, f"{s:.0%}" if math.isfinite(s) else "n/a",
                va="center", fontsize=8, color="#1c2833")
    ax.set_yticks(y, [_mpl_text(n) for n in layers], fontsize=8.5)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.xaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
    ax.set_xlabel("dead units", fontsize=9.5)
    return fig, "Units whose activation was never positive on the sampled batches (a dead ReLU cannot recover)."


def _plot_feature_scales(data: dict, report: Report):
    names = [str(x) for x in data.get("features", [])]
    std = _floats(data.get("std", []))
    mean = _floats(data.get("mean", [])) if data.get("mean") is not None else np.full(std.size, math.nan)
    _require(len(names) == std.size == mean.size, f"{len(names)} features, {std.size} stds, {mean.size} means")
    if not names:
        return None
    hidden = max(0, len(names) - MAX_BAR_FEATURES)
    names, std, mean = names[:MAX_BAR_FEATURES], std[:MAX_BAR_FEATURES], mean[:MAX_BAR_FEATURES]
    fig = _figure()
    ax = fig.subplots()
    _with_defaults(ax, "Feature scales (log axis)")
    x = np.arange(len(names))
    positive = np.isfinite(std) & (std > 0)
    ax.bar(x[positive], std[positive], color=TRAIN_COLOUR, alpha=0.85, width=0.75, label="std")
    abs_mean = np.abs(mean)
    shown_mean = np.isfinite(abs_mean) & (abs_mean > 0)
    if shown_mean.any():
        ax.plot(x[shown_mean], abs_mean[shown_mean], linestyle="none", marker="D", markersize=3.5,
                color=VAL_COLOUR, label="|mean|")
    ax.set_yscale("log")
    values = np.concatenate([std[positive], abs_mean[shown_mean]])
    if (~positive).any() and values.size:
        floor = float(values.min()) / 3
        ax.plot(x[~positive], np.full((~positive).sum(), floor), linestyle="none", marker="x",
                color="#7b7d7d", markersize=5, label="constant (std 0)")
    ax.axhline(1.0, color="#1e8449", linewidth=1, linestyle="--", label="std 1 (standardized)")
    if len(names) <= 30:
        ax.set_xticks(x, [_mpl_text(n, 16) for n in names], rotation=60, ha="right", fontsize=7.5)
    else:
        ax.set_xlabel(f"feature index (0..{len(names) - 1})", fontsize=9.5)
    fig.legend(fontsize=8.5, frameon=False, ncol=4, loc="outside lower center")
    ratio = std[positive].max() / std[positive].min() if positive.sum() >= 2 else math.nan
    caption = "Standard deviation and |mean| of each input feature."
    if math.isfinite(ratio):
        caption += f" Largest / smallest non-zero std: <b>{_e(_fmt_number(float(ratio)))}\u00d7</b>."
    if hidden:
        caption += f" {hidden} more features are not shown."
    return fig, caption


def _plot_group_scales(data: dict, report: Report):
    groups = [str(x) for x in data.get("groups", [])]
    std = _floats(data.get("std", []))
    mean = _floats(data.get("mean", [])) if data.get("mean") is not None else np.full(std.size, math.nan)
    _require(len(groups) == std.size == mean.size, f"{len(groups)} groups, {std.size} stds, {mean.size} means")
    if not groups:
        return None
    groups, std, mean = groups[:MAX_BAR_FEATURES], std[:MAX_BAR_FEATURES], mean[:MAX_BAR_FEATURES]
    value_col, group_col = str(data.get("value_col", "value")), str(data.get("group_col", "group"))
    fig = _figure()
    ax = fig.subplots()
    _with_defaults(ax, f"Scale of {_mpl_text(value_col)} per {_mpl_text(group_col)}")
    x = np.arange(len(groups))
    width = 0.38
    ax.bar(x - width / 2, np.where(std > 0, std, np.nan), width, color=TRAIN_COLOUR, label="std")
    ax.bar(x + width / 2, np.where(np.abs(mean) > 0, np.abs(mean), np.nan), width, color=VAL_COLOUR, label="|mean|")
    ax.set_yscale("log")  # groups differ by orders of magnitude when units are mixed
    ax.set_xticks(x, [_mpl_text(g, 16) for g in groups], rotation=30 if len(groups) > 6 else 0,
                  ha="right" if len(groups) > 6 else "center", fontsize=8)
    ax.set_xlabel(_mpl_text(group_col), fontsize=9.5)
    ax.legend(fontsize=8.5, frameon=False)
    caption = (f"<code>{_e(value_col)}</code> per value of <code>{_e(group_col)}</code>: when the scale "
               "depends on the group, one normalizer per group puts them on one footing.")
    return fig, caption


def _plot_ablations(data: dict, report: Report):
    baseline = data.get("baseline") or {}
    runs = [r for r in data.get("runs", []) if isinstance(r, dict)]
    if not runs and not baseline:
        return None
    fig = _figure()
    ax = fig.subplots()
    _with_defaults(ax, "Your setting against the experiments")
    drawn = []  # (losses, colour)
    if baseline:
        losses = _floats(baseline.get("losses", []))
        label = str(baseline.get("label", "your setting"))
        label = label if "your" in label.lower() else f"{label} (yours)"
        ax.plot(np.arange(losses.size), np.where(np.isfinite(losses), losses, np.nan), color="#1c2833",
                linewidth=2.6, label=_mpl_text(label, 40))
        drawn.append((losses, "#1c2833"))
    for i, run in enumerate(runs):
        losses = _floats(run.get("losses", []))
        ax.plot(np.arange(losses.size), np.where(np.isfinite(losses), losses, np.nan), color=f"C{i % 10}",
                linewidth=1.5, label=_mpl_text(run.get("label", f"run {i + 1}"), 40))
        drawn.append((losses, f"C{i % 10}"))
    axis_note = _loss_axis(ax, np.concatenate([d[0] for d in drawn]) if drawn else np.array([]))
    top = ax.get_ylim()[1]
    for losses, colour in drawn:  # where a run turned NaN/Inf, an X (kept on the chart even when cut)
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            before = losses[: bad[0]][np.isfinite(losses[: bad[0]])]
            y = min(float(before[-1]), top) if before.size else top
            ax.plot([bad[0]], [y], marker="X", markersize=10, color=colour, markeredgecolor="white", zorder=6,
                    clip_on=False)
    ax.set_xlabel("step of the experiment", fontsize=9.5)
    ax.set_ylabel("training loss", fontsize=9.5)
    fig.legend(fontsize=8.5, frameon=False, ncol=2, loc="outside lower center")  # inside, it would hide curves
    rows = []
    for run in ([baseline] if baseline else []) + runs:
        losses = _floats(run.get("losses", []))
        finite = losses[np.isfinite(losses)]
        last = _fmt_number(float(losses[-1])) if losses.size else "n/a"
        rows.append(f"<b>{_e(run.get('label', 'run'))}</b>: final {_e(last)}"
                    + (f", best {_e(_fmt_number(float(finite.min())))}" if finite.size else ""))
    return fig, ("Short runs that each change one thing; an X marks where a run turned NaN/Inf. " + "; ".join(rows)
                 + "." + axis_note)


PLOTS: list[tuple[str, Callable]] = [
    ("curves", _plot_curves),
    ("lr_range", _plot_lr_range),
    ("grad_norms", _plot_grad_norms),
    ("dead_units", _plot_dead_units),
    ("feature_scales", _plot_feature_scales),
    ("group_scales", _plot_group_scales),
    ("ablations", _plot_ablations),
]
PLOT_KEYS = tuple(key for key, _ in PLOTS)


def _plots_html(report: Report) -> str:
    from matplotlib import rc_context

    figures = []
    for key, draw in PLOTS:
        data = report.plots.get(key)
        if not data:
            continue
        try:
            with rc_context({"font.family": "DejaVu Sans"}):
                drawn = draw(data, report)
                if drawn is None:  # present but empty: nothing to show
                    continue
                fig, caption = drawn
                uri = _png(fig)
        except Exception as exc:  # a broken plot must not cost the user the rest of the report
            report_internal_error(f"html plot {key}", exc)
            figures.append(f'<figure class="plot card" data-plot="{_e(key)}"><div class="plot-missing">'
                           f"The {_e(key)} plot could not be drawn ({_e(type(exc).__name__)}: {_e(exc)}).</div></figure>")
            continue
        alt = _e(f"{key} plot")
        wide = " wide" if key in WIDE_PLOTS else ""
        figures.append(f'<figure class="plot card{wide}" data-plot="{_e(key)}"><img alt="{alt}" src="{uri}">'
                       f"<figcaption>{caption}</figcaption></figure>")
    if not figures:
        return ""
    return "<h3>What the run looked like</h3>" + f'<div class="plots">{"".join(figures)}</div>'


# -- tables ----------------------------------------------------------------------------------
def _value_html(value: Any, depth: int = 0) -> str:
    if isinstance(value, bool) or value is None:
        return f"<code>{_e(value)}</code>"
    if isinstance(value, (int, float)):
        return _e(_fmt_number(value))
    if isinstance(value, str):
        return _e(value)
    if isinstance(value, dict):
        if depth >= 2:
            text = json.dumps(value, default=str)
            return f"<code>{_e(text if len(text) < 200 else text[:197] + '...')}</code>"
        return _evidence_table(value, depth + 1)
    if isinstance(value, (list, tuple)):
        items = list(value)
        shown = items[:EVIDENCE_LIST_ITEMS]
        if all(isinstance(v, (int, float, str, bool)) or v is None for v in shown):
            text = ", ".join(_value_html(v, depth + 1) for v in shown)
        else:
            text = "<br>".join(_value_html(v, depth + 1) for v in shown)
        if len(items) > EVIDENCE_LIST_ITEMS:
            text += f' <span class="muted">\u2026 ({len(items)} items)</span>'
        return text or '<span class="muted">(empty)</span>'
    return _e(value)


def _evidence_table(evidence: dict, depth: int = 0) -> str:
    if not evidence:
        return '<span class="muted">no numbers recorded</span>'
    rows = []
    for key, value in evidence.items():
        label = "also seen by" if key == "also_seen_by" else key
        rows.append(f"<tr><th>{_e(label)}</th><td>{_value_html(value, depth)}</td></tr>")
    return f'<table class="evidence">{"".join(rows)}</table>'


def _finding_html(rank: int, f: Finding) -> str:
    colour = SEVERITY_COLOUR.get(f.severity, "#5d6d7e")
    where = f'<span>where <code>{_e(f.where)}</code></span>' if f.where else ""
    source = f'<span class="muted">from {_e(f.source)}</span>' if f.source else ""
    return (
        f'<article class="finding card" style="--sev:{colour}">'
        f'<div class="head"><span class="rank">#{rank}</span>'
        f'<span class="badge" style="background:{colour}">{_e(f.severity)}</span>'
        f'<span class="ftitle">{_e(f.title)}</span></div>'
        f'<div class="fmeta"><code class="code">{_e(f.code)}</code>'
        f'<span class="conf">confidence <span class="bar"><i style="width:{f.confidence * 100:.0f}%"></i></span>'
        f"{f.confidence:.0%}</span>{where}{source}</div>"
        f'<div class="body"><div class="remedy"><b>Do this:</b> {_e(f.remedy)}</div>'
        f"{_evidence_table(f.evidence)}</div></article>"
    )


def _events_html(events: list[Event]) -> str:
    if not events:
        return ""
    merged: dict[tuple[str, float], Event] = {}  # two sources may report the same event: one row
    for e in events:
        key = (e.kind, float(e.step))
        if key not in merged:
            merged[key] = Event(e.kind, e.step, e.value, e.detail)
        elif e.detail and e.detail not in merged[key].detail:
            merged[key].detail = f"{merged[key].detail}; {e.detail}" if merged[key].detail else e.detail
    rows = "".join(
        f'<tr><td>{_e(e.kind)}</td><td class="num">{_e(_fmt_number(e.step))}</td>'
        f'<td class="num">{_e(_fmt_number(_floats([e.value])[0])) if e.value is not None else ""}</td>'
        f"<td>{_e(e.detail)}</td></tr>"
        for e in merged.values()
    )
    return ('<h3>Events in the curves</h3><div class="card"><table class="listing"><tr><th>event</th>'
            f'<th class="num">step</th><th class="num">value</th><th>detail</th></tr>{rows}</table></div>')


def _ruled_out_html(report: Report) -> str:
    if not report.ruled_out:
        return ""
    rows = []
    for r in report.ruled_out:
        title = CODES[r.code].title if r.code in CODES else r.code
        rows.append(f"<tr><td><b>{_e(title)}</b><br><code>{_e(r.code)}</code></td><td>{_e(r.by)}</td>"
                    f"<td>{_evidence_table(r.evidence)}</td></tr>")
    return ('<h3>Ruled out</h3><div class="card"><table class="listing"><tr><th>cause</th><th>ruled out by</th>'
            f'<th>evidence</th></tr>{"".join(rows)}</table></div>')


MAX_CHIPS = 10  # short scalar facts shown as chips; everything else goes into "run details"
SHOWN_ELSEWHERE = ("advice", "notes")  # metadata keys the summary shows in their own place


def _metadata_html(metadata: dict) -> str:
    chips, details = [], {}
    for key, value in metadata.items():
        if key in SHOWN_ELSEWHERE or value in (None, "", [], {}):
            continue
        if isinstance(value, (str, int, float, bool)) and len(chips) < MAX_CHIPS and len(str(value)) <= 80:
            shown = _fmt_number(value) if isinstance(value, float) else value
            chips.append(f'<span class="chip">{_e(key)}: <b>{_e(shown)}</b></span>')
        else:
            details[key] = value
    out = f'<div class="chips">{"".join(chips)}</div>' if chips else ""
    notes = metadata.get("notes")
    if isinstance(notes, list) and notes:
        out += '<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"
    if details:
        out += f'<details><summary>Run details</summary>{_evidence_table(details)}</details>'
    return out


def _verdict_colour(verdict: str | None) -> str:
    return VERDICT_COLOUR.get(verdict, VERDICT_BAD_COLOUR)


def _summary_html(report: Report) -> str:
    verdict = report.verdict
    meaning = VERDICTS.get(verdict, "no loss curves were examined") if verdict else "no loss curves were examined"
    label = verdict.replace("_", " ") if verdict else "no verdict"
    top = report.top
    if top is not None:
        where = f' <span class="muted">at</span> <code>{_e(top.where)}</code>' if top.where else ""
        fix = (f'<div class="fixfirst"><div class="label">Fix this first</div>'
               f'<div class="title"><span class="badge" style="background:{SEVERITY_COLOUR.get(top.severity)}">'
               f"{_e(top.severity)}</span> {_e(top.title)}{where}</div>"
               f'<code>{_e(top.code)}</code> <span class="muted">confidence {top.confidence:.0%}</span>'
               f'<div class="remedy">{_e(top.remedy)}</div>')
    elif verdict in (None, "converging"):
        fix = ('<div class="fixfirst clean"><div class="label">Fix this first</div>'
               '<div class="title">Nothing to fix</div>'
               '<div class="remedy">No check found a cause worth acting on.</div>')
    else:  # the curves look wrong but no check named a cause: say what the verdict calls for
        advice = verdict_advice(report) or "Run lossdoctor checkup to test the likely causes one at a time."
        fix = ('<div class="fixfirst"><div class="label">What to do</div>'
               '<div class="title">No specific cause found; the verdict calls for this</div>'
               f'<div class="remedy">{_e(advice)}</div>')
    counts = {s: sum(1 for f in report.findings if f.severity == s) for s in SEVERITY_COLOUR}
    tally = ", ".join(f"{n} {s}{'s' if n != 1 and s != 'info' else ''}" for s, n in counts.items() if n)
    fix += f'<div class="meta">{_e(tally or "no findings")}</div>{_metadata_html(report.metadata)}</div>'
    return (f'<div class="summary card"><div class="verdict" style="background:{_verdict_colour(verdict)}">'
            f'<div class="label">Verdict</div><div class="value">{_e(label)}</div>'
            f'<div class="meaning">{_e(meaning)}</div></div>{fix}</div>')


def _report_section(report: Report, index: int | None) -> str:
    anchor = f' id="run-{index}"' if index is not None else ""
    name = report.source or "report"
    heading = f"<h2>{_e(name)}</h2>" if index is not None else ""
    findings = "".join(_finding_html(i, f) for i, f in enumerate(report.findings, 1))
    findings_html = ("<h3>Findings, most urgent first</h3>" + findings if findings else
                     '<h3>Findings</h3><div class="card clean-note">No findings: nothing to fix.</div>')
    return (f'<section class="run"{anchor}>{heading}{_summary_html(report)}{_plots_html(report)}'
            f"{findings_html}{_ruled_out_html(report)}{_events_html(report.events)}</section>")


def _overview_html(reports: list[Report]) -> str:
    rows = []
    for i, r in enumerate(reports, 1):
        top = r.top
        verdict = r.verdict.replace("_", " ") if r.verdict else "no verdict"
        rows.append(
            f'<tr><td><a href="#run-{i}">{_e(r.source or f"run {i}")}</a></td>'
            f'<td><span class="badge" style="background:{_verdict_colour(r.verdict)}">{_e(verdict)}</span></td>'
            f"<td>{_e(top.title) + ' <code>' + _e(top.code) + '</code>' if top else '<span class=muted>nothing to fix</span>'}</td>"
            f'<td class="num">{len(r.findings)}</td></tr>'
        )
    return ('<h3>Runs</h3><div class="card" style="margin-bottom:28px"><table class="listing"><tr><th>run</th>'
            f'<th>verdict</th><th>fix first</th><th class="num">findings</th></tr>{"".join(rows)}</table></div>')


def render_html(report_or_list: Report | list[Report]) -> str:
    """The whole report as one self-contained HTML page (a list of reports: one section per run)."""
    from .. import __version__

    many = isinstance(report_or_list, (list, tuple))
    reports = list(report_or_list) if many else [report_or_list]
    for r in reports:
        if not isinstance(r, Report):
            raise TypeError(f"render_html expects a Report or a list of Reports, got {type(r).__name__}")
    if many:
        body = _overview_html(reports) + "".join(_report_section(r, i) for i, r in enumerate(reports, 1))
        title = f"{len(reports)} runs"
    else:
        body = _report_section(reports[0], None)
        title = reports[0].source or "report"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>lossdoctor: {_e(title)}</title><style>{CSS}</style></head><body><main>"
        f'<header class="page"><h1>lossdoctor <span>\u00b7 {_e(title)}</span></h1>'
        f'<div class="gen">why won\'t the loss converge, and what to change</div></header>'
        f"{body}<footer>lossdoctor {_e(__version__)} \u00b7 self-contained report: no scripts, "
        "nothing loaded from the network</footer></main></body></html>\n"
    )
