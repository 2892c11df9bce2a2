"""The report's plots, drawn with matplotlib from ``report["plots"]`` (keys in the Report docstring).

Each plot function takes the plot's data and the whole report dict and returns ``(figure,
caption)`` or None when there is nothing to draw. A caption is a list of ``(kind, text)``
segments (kind ``text``, ``b`` or ``code``) that the template escapes: no HTML is built here.
User strings reach matplotlib through :func:`_mpl_text` (a ``$`` would start mathtext).
Figures are ``matplotlib.figure.Figure`` objects, never pyplot, so no global state leaks.
"""
from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..internal import report_internal_error
from .view import fmt_number

# matplotlib colours: a calm palette that stays readable when printed in grey
TRAIN_COLOUR = "#1f77b4"
VAL_COLOUR = "#e67e22"
SUGGESTED_COLOUR = "#1e8449"
CURRENT_COLOUR = "#c0392b"
NON_FINITE_COLOUR = "#c0392b"
EVENT_STYLE = {  # (keyword in the event's kind, colour, line style) - first match wins
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
NON_FINITE_EVENT_WORDS = ("nan", "non_finite", "inf")

# Sizes: PNGs are drawn at PLOT_DPI and shown at about 60% of their pixel width, so they stay
# sharp on high-density screens.
PLOT_DPI = 130
PLOT_WIDTH_IN = 6.0
PLOT_HEIGHT_IN = 3.4
WIDE_PLOT_WIDTH_IN = 11.0  # the loss curves span the page: they are what people look at first
WIDE_PLOTS = ("curves",)
# Plots are line art on white with a few dozen colours: a 256-colour palette is visually lossless
# and makes each PNG about a third of its full-colour size.
PNG_PALETTE_COLOURS = 256
MAX_LABEL_CHARS = 28  # longer layer/feature names are shortened in plot axes (full names in the tables)
MAX_HEATMAP_LAYERS = 40  # more rows than this become unreadable; the rest are noted under the plot
MAX_BAR_FEATURES = 80  # likewise for per-feature bars
HEATMAP_STEP_TICKS = 8  # about this many evenly spaced step labels under the heat map
COLORBAR_MINOR_LABEL_DECADES = 1.5  # a colour scale narrower than this gets labels between powers of ten
# Loss axes. Positive values spanning more than LOG_SCALE_DECADES get a log axis. A blow-up would
# flatten everything else, so the axis is cut above the bulk of the data when the peak passes
# OFF_SCALE_RATIO x the bulk, at AXIS_CAP_RATIO x the bulk (and the log/linear choice is made on
# what stays). The bulk is the median, over the series, of each series' BULK_PERCENTILE: one
# diverged run of seven does not move it. With fewer than MIN_POINTS_TO_CUT finite points every
# point is the story (a run that blew up at once) and nothing is cut.
LOG_SCALE_DECADES = 2.0
BULK_PERCENTILE = 75
OFF_SCALE_RATIO = 20.0
AXIS_CAP_RATIO = 4.0
MIN_POINTS_TO_CUT = 10
# A run whose loss stays NaN/Inf to the end is drawn up to a little after its first NaN/Inf when
# the empty tail would take more than NON_FINITE_TAIL_SHARE of the step axis; the margin beyond
# it is NON_FINITE_MARGIN_SHARE of the finite part (at least one step).
NON_FINITE_TAIL_SHARE = 0.25
NON_FINITE_MARGIN_SHARE = 0.1


@dataclass
class Caption:
    """A caption as escaped-later segments: ``("text", s)``, ``("b", s)``, ``("code", s)``."""

    parts: list[tuple[str, str]] = field(default_factory=list)

    def text(self, s: Any) -> Caption:
        self.parts.append(("text", str(s)))
        return self

    def b(self, s: Any) -> Caption:
        self.parts.append(("b", str(s)))
        return self

    def code(self, s: Any) -> Caption:
        self.parts.append(("code", str(s)))
        return self



@dataclass
class PlotView:
    key: str
    uri: str = ""  # a data: URI of the image, empty when the plot could not be drawn
    caption: list[tuple[str, str]] = field(default_factory=list)
    wide: bool = False
    problem: str = ""  # why the plot could not be drawn


# -- helpers -----------------------------------------------------------------------------------
def _mpl_text(value: Any, limit: int | None = MAX_LABEL_CHARS) -> str:
    """A user string made safe for a matplotlib label: ``$`` would start mathtext, so escape it."""
    text = str(value)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text.replace("$", r"\$")  # outside mathtext a backslash is shown as it is


def _floats(values: Iterable[Any] | None) -> np.ndarray:
    """Values as float64; the JSON schema stores non-finite floats as "nan"/"inf" strings."""
    out = []
    for v in values if values is not None else []:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(math.nan)
    return np.asarray(out, dtype=np.float64)


def _require(condition: bool, problem: str) -> None:
    """Plot data that contradicts itself is a bug upstream: say what is wrong (shown under the plot)."""
    if not condition:
        raise ValueError(problem)


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


def _png_uri(fig) -> str:
    """A figure as a base64 data URI of a palette PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PLOT_DPI, facecolor="white", metadata={"Software": None})
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(PNG_PALETTE_COLOURS, dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _is_wide_positive(values: np.ndarray) -> bool:
    """True when a series is all positive and spans more than LOG_SCALE_DECADES decades."""
    finite = values[np.isfinite(values)]
    if finite.size < 2 or np.any(finite <= 0):
        return False
    return math.log10(finite.max() / finite.min()) > LOG_SCALE_DECADES


@dataclass
class AxisFit:
    cap: float | None  # the top of the axis when the data was cut, else None
    note: Caption  # what the caption says about the cut


def _fit_loss_axis(ax, series: list[np.ndarray]) -> AxisFit:
    """A log or linear y axis that shows the bulk of the series, cut above a blow-up."""
    finite = [s[np.isfinite(s)] for s in series]
    finite = [f for f in finite if f.size]
    if not finite:
        return AxisFit(None, Caption())
    pooled = np.concatenate(finite)
    bulk = float(np.median([np.percentile(f, BULK_PERCENTILE) for f in finite]))
    peak = float(pooled.max())
    cap = None
    if pooled.size >= MIN_POINTS_TO_CUT and bulk > 0 and peak > OFF_SCALE_RATIO * bulk:
        cap = AXIS_CAP_RATIO * bulk
    shown = pooled[pooled <= cap] if cap is not None else pooled
    log = _is_wide_positive(shown)
    if log:
        ax.set_yscale("log")
    if cap is None:
        return AxisFit(None, Caption())
    low = float(shown.min())
    ax.set_ylim(low / 1.5 if log else min(0.0, low), cap)
    note = (Caption().text(" The axis is cut at ").b(fmt_number(cap)).text(": values up to ")
            .b(fmt_number(peak)).text(" are off the chart (a \u25b2 marks where a curve leaves it)."))
    return AxisFit(cap, note)


def _mark_off_chart(ax, steps: np.ndarray, values: np.ndarray, cap: float | None, colour: str) -> None:
    """A triangle on the top edge where a curve first leaves a cut axis."""
    if cap is None:
        return
    above = np.flatnonzero(np.isfinite(values) & (values > cap))
    if above.size:
        ax.plot([steps[above[0]]], [cap], marker="^", markersize=8, color=colour, clip_on=False, zorder=6,
                markeredgecolor="white")


def _first_non_finite(steps: np.ndarray, values: np.ndarray) -> tuple[float, str] | None:
    bad = np.flatnonzero(~np.isfinite(values))
    if not bad.size:
        return None
    value = values[bad[0]]
    return float(steps[bad[0]]), "NaN" if math.isnan(value) else ("Inf" if value > 0 else "-Inf")


def _finite_part_end(losses: dict, broken: dict, first_step: float, last_step: float) -> float | None:
    """Where to end the step axis of a run whose losses stay non-finite to the end: a little after
    the last finite loss and the first NaN/Inf, when the empty tail would take more than
    NON_FINITE_TAIL_SHARE of the axis (the finite part would be squeezed against the left edge)."""
    if not broken:
        return None
    finite_steps = [float(steps[np.isfinite(values)].max()) for steps, values in losses.values()
                    if np.isfinite(values).any()]
    tail_from = max([*finite_steps, min(broken)])
    if last_step - tail_from <= NON_FINITE_TAIL_SHARE * (last_step - first_step):
        return None
    return tail_from + max(NON_FINITE_MARGIN_SHARE * (tail_from - first_step), 1.0)


def _event_style(kind: str) -> tuple[str, str]:
    low = kind.lower()
    for key, style in EVENT_STYLE.items():
        if key in low:
            return style
    return DEFAULT_EVENT_STYLE


# -- plots ---------------------------------------------------------------------------------------
def _plot_curves(data: dict, report: dict):
    series = {str(name): (_floats(s.get("steps", [])), _floats(s.get("values", []))) for name, s in data.items()}
    for name, (steps, values) in series.items():
        _require(steps.size == values.size, f"curve {name!r} has {steps.size} steps but {values.size} values")
        _require(bool(np.all(np.isfinite(steps))), f"curve {name!r} has a step that is not a finite number")
    series = {name: (steps[order], values[order]) for name, (steps, values) in series.items()
              for order in [np.argsort(steps, kind="stable")]}
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
    colours = {}
    for i, (name, (steps, values)) in enumerate(losses.items()):
        colour = TRAIN_COLOUR if "train" in name.lower() else VAL_COLOUR if "val" in name.lower() else f"C{i + 2}"
        colours[name] = colour
        marker = "o" if steps.size <= 40 else None
        ax.plot(steps, np.where(np.isfinite(values), values, np.nan), color=colour, linewidth=1.6, marker=marker,
                markersize=3, label=_mpl_text(name))
    fit = _fit_loss_axis(ax, [v for _, v in losses.values()])
    for name, (steps, values) in losses.items():
        _mark_off_chart(ax, steps, values, fit.cap, colours[name])
    ax.set_ylabel("loss", fontsize=9.5)
    last_step = max(float(steps.max()) for steps, _ in series.values())

    # the run's first NaN/Inf, from the data itself: a line, a label, the rest shaded
    broken: dict[float, list[str]] = {}  # step -> "NaN in train_loss", for each loss that turns non-finite
    for name, (steps, values) in losses.items():
        first = _first_non_finite(steps, values)
        if first is not None:
            broken.setdefault(first[0], []).append(f"{first[1]} in {name}")
    first_step = min(float(steps.min()) for steps, _ in series.values())
    shown_until = _finite_part_end(losses, broken, first_step, last_step)
    if shown_until is not None:
        axes[-1].set_xlim(first_step - 0.02 * (shown_until - first_step), shown_until)
    if broken:
        step = min(broken)
        for a in axes:
            a.axvline(step, color=NON_FINITE_COLOUR, linewidth=1.6, zorder=4)
        ax.axvspan(step, max(last_step, step), color=NON_FINITE_COLOUR, alpha=0.07)
        # the label sits on the side of the line with more room, and never resizes the axes
        right_end = shown_until if shown_until is not None else last_step
        right_half = step > first_step + 0.5 * (right_end - first_step)
        label = ax.annotate(_mpl_text(f"first {', '.join(broken[step])} at step {fmt_number(step)}", 60),
                            xy=(step, 1.0), xycoords=("data", "axes fraction"), xytext=(-5 if right_half else 5, -4),
                            textcoords="offset points", ha="right" if right_half else "left", va="top", fontsize=8.5,
                            color=NON_FINITE_COLOUR, fontweight="bold", zorder=7,
                            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85})
        label.set_in_layout(False)

    events = [e for e in report["events"]
              if not (broken and any(w in e["kind"].lower() for w in NON_FINITE_EVENT_WORDS))]
    seen: set[str] = set()
    for event in events:
        colour, style = _event_style(event["kind"])
        label = None if event["kind"] in seen else _mpl_text(event["kind"], 40)
        seen.add(event["kind"])
        step = float(event["step"])
        for a in axes:
            a.axvline(step, color=colour, linestyle=style, linewidth=1.3, alpha=0.9, label=label if a is ax else None)
        value = _floats([event["value"]])[0] if event["value"] is not None else math.nan
        if math.isfinite(value) and (fit.cap is None or value <= fit.cap):
            ax.plot([step], [value], marker="v", color=colour, markersize=7, zorder=5)
    ax.legend(fontsize=8.5, frameon=False, loc="best")
    for a, name in zip(axes[1:], others):
        steps, values = series[name]
        _with_defaults(a)
        a.plot(steps, np.where(np.isfinite(values), values, np.nan), color="#566573", linewidth=1.2)
        if _is_wide_positive(values):
            a.set_yscale("log")
        a.set_ylabel(_mpl_text(name, 14), fontsize=8.5)
    axes[-1].set_xlabel("step", fontsize=9.5)

    caption = Caption().text(", ".join(losses)).text(" over steps.")
    if broken:
        first_bad, *later = sorted(broken.items())
        caption.text(" The red line marks the first non-finite loss: ").b(", ".join(first_bad[1]))
        caption.text(f" at step {fmt_number(first_bad[0])}")
        for step, what in later:
            caption.text("; then ").b(", ".join(what)).text(f" at step {fmt_number(step)}")
        caption.text(" (the shaded part has no finite loss to draw).")
        if shown_until is not None:
            caption.text(" The steps after ").b(fmt_number(shown_until)).text(" are not drawn: no loss is finite "
                                                                            "there, up to the last step, ")
            caption.b(fmt_number(last_step)).text(".")
    marked = list(dict.fromkeys((e["kind"], float(e["step"])) for e in events))  # one mention per event
    if marked:
        caption.text(" Vertical lines mark the events found in the curves: ")
        for i, (kind, step) in enumerate(marked):
            caption.text(", " if i else "").b(kind).text(f" at step {fmt_number(step)}")
        caption.text(".")
    elif not broken:
        caption.text(" No events were found in the curves.")
    caption.parts += fit.note.parts
    return fig, caption


def _plot_lr_range(data: dict, report: dict):
    lrs, losses = _floats(data.get("lrs", [])), _floats(data.get("losses", []))
    _require(lrs.size == losses.size, f"{lrs.size} learning rates but {losses.size} losses")
    if not lrs.size:
        return None
    fig = _figure()
    ax = fig.subplots()
    _with_defaults(ax, "Learning-rate range test")
    ok = np.isfinite(losses) & (lrs > 0)
    ax.plot(lrs[ok], losses[ok], color=TRAIN_COLOUR, linewidth=1.8, marker="o", markersize=3,
            label="loss after a short run")
    if np.any(~np.isfinite(losses) & (lrs > 0)):
        first_bad = float(lrs[~np.isfinite(losses) & (lrs > 0)].min())
        ax.axvspan(first_bad, float(lrs.max()) * 1.05, color=NON_FINITE_COLOUR, alpha=0.08, label="loss NaN/Inf")
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
    caption = Caption().text("Loss after a short run at each learning rate (gradient clipping off).")
    if math.isfinite(suggested):
        caption.text(" Suggested: ").b(f"{suggested:.3g}")
        if math.isfinite(current):
            caption.text(", current: ").b(f"{current:.3g}")
        caption.text(".")
    return fig, caption


def _step_edges(steps: np.ndarray) -> np.ndarray:
    """Cell edges halfway between recorded steps, so that each column sits over its real step; the
    outer cells reach half the usual spacing beyond the first and last step (not half a long gap)."""
    if steps.size == 1:
        return np.array([steps[0] - 0.5, steps[0] + 0.5])
    gaps = np.diff(steps)
    half = float(np.median(gaps)) / 2
    return np.concatenate([[steps[0] - half], steps[:-1] + gaps / 2, [steps[-1] + half]])


def _plot_grad_norms(data: dict, report: dict):
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import MaxNLocator

    layers = [str(x) for x in data.get("layers", [])]
    steps = _floats(data.get("steps", []))
    norms = [_floats(row) for row in data.get("norms", [])]
    if not layers or not steps.size:
        return None
    _require(len(norms) == len(layers), f"{len(layers)} layers but {len(norms)} rows of norms")
    _require(all(r.size == steps.size for r in norms), f"every row of norms must have one value per step ({steps.size})")
    _require(bool(np.all(np.isfinite(steps))), "the recorded steps must be finite numbers")
    hidden = max(0, len(layers) - MAX_HEATMAP_LAYERS)
    layers, matrix = layers[:MAX_HEATMAP_LAYERS], np.vstack(norms[:MAX_HEATMAP_LAYERS])
    # columns in step order, one per distinct step (the last record of a repeated step wins)
    order = np.argsort(steps, kind="stable")
    steps, matrix = steps[order], matrix[:, order]
    keep = np.r_[steps[1:] != steps[:-1], True]
    steps, matrix = steps[keep], matrix[:, keep]

    fig = _figure(min(9.0, max(2.8, 0.24 * len(layers) + 1.6)))
    ax = fig.subplots()
    _with_defaults(ax, "Gradient norm per layer over steps")
    ax.grid(False)
    positive = matrix[np.isfinite(matrix) & (matrix > 0)]
    masked = np.ma.masked_where(~np.isfinite(matrix) | (matrix <= 0), matrix)
    cmap = colormaps["viridis"].with_extremes(bad=NON_FINITE_COLOUR)  # NaN/Inf/zero cells show red
    norm = LogNorm(vmin=positive.min(), vmax=max(positive.max(), positive.min() * 1.0001)) if positive.size else None
    image = ax.pcolormesh(_step_edges(steps), np.arange(len(layers) + 1), masked, cmap=cmap, norm=norm,
                          shading="flat")
    ax.set_ylim(len(layers), 0)  # input side at the top
    ax.set_yticks(np.arange(len(layers)) + 0.5, [_mpl_text(n) for n in layers],
                  fontsize=7.5 if len(layers) > 15 else 8.5)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=HEATMAP_STEP_TICKS, integer=True))
    ax.set_xlabel("step", fontsize=9.5)
    if positive.size:
        bar = fig.colorbar(image, ax=ax, pad=0.01)
        bar.set_label("gradient norm (log)", fontsize=8.5)
        bar.ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:.2g}")
        narrow = math.log10(norm.vmax / norm.vmin) < COLORBAR_MINOR_LABEL_DECADES
        bar.ax.yaxis.set_minor_formatter(  # on a narrow range, label 2x and 5x between the powers of ten
            lambda v, _pos: f"{v:.2g}" if narrow and f"{v:.1e}"[:3] in ("2.0", "5.0") else "")
    caption = Caption().text("Each row is a layer (input at the top), each column a recorded step at its place "
                             "on the step axis; red cells are NaN, Inf or zero.")
    if hidden:
        caption.text(f" {hidden} more layers are not shown.")
    return fig, caption


def _unit_kind(kind: Any) -> str:
    """"saturated" (tanh/sigmoid pinned at its bounds), "dead" (ReLU never active) or "" (unknown)."""
    text = str(kind or "").lower()
    if any(word in text for word in ("saturat", "tanh", "sigmoid")):
        return "saturated"
    return "dead" if "relu" in text or text == "dead" else ""


def _unit_kinds(layers: list[str], data: dict, report: dict) -> list[str]:
    """The kind of each layer's units: from the plot data's ``kinds`` when present, else from the
    findings about the layer (a per-layer ``kind`` in the evidence, or grad.saturated_activation)."""
    kinds = data.get("kinds")
    if isinstance(kinds, list) and len(kinds) == len(layers):
        return [_unit_kind(k) for k in kinds]
    found = dict.fromkeys(layers, "")
    for f in report["findings"]:
        per_layer = f["evidence"].get("layers")
        for layer in layers:
            if isinstance(per_layer, dict) and isinstance(per_layer.get(layer), dict):
                found[layer] = found[layer] or _unit_kind(per_layer[layer].get("kind"))
            if f["code"] == "grad.saturated_activation" and f["where"] == layer:
                found[layer] = found[layer] or "saturated"
    return [found[layer] for layer in layers]


DEAD_UNITS_WORDS = {  # the kinds present -> (title, axis label, caption)
    frozenset({"dead"}): (
        "Share of units that never activate (dead ReLU), per layer", "dead units",
        ("Units whose activation was never positive on the sampled batches (a dead ReLU passes no gradient "
         "and rarely recovers)."),
    ),
    frozenset({"saturated"}): (
        "Share of saturated units (tanh/sigmoid), per layer", "saturated units",
        ("Units pinned at the bounds of their tanh/sigmoid on the sampled batches: their derivative is near "
         "zero, so they pass almost no gradient."),
    ),
}
DEAD_OR_SATURATED_WORDS = (
    "Share of dead or saturated units, per layer", "dead or saturated units",
    ("Units that pass almost no gradient on the sampled batches: ReLU units never active (dead) or "
     "tanh/sigmoid units pinned at their bounds (saturated)."),
)


def _plot_dead_units(data: dict, report: dict):
    from matplotlib import colormaps

    layers = [str(x) for x in data.get("layers", [])]
    share = _floats(data.get("share", []))
    _require(len(layers) == share.size, f"{len(layers)} layers but {share.size} shares")
    if not layers:
        return None
    kinds = _unit_kinds(layers, data, report)
    # the layers the findings name tell what the chart measures; the others fall under the same measure
    title, xlabel, text = DEAD_UNITS_WORDS.get(frozenset(kinds) - {""}, DEAD_OR_SATURATED_WORDS)
    fig = _figure(min(8.0, max(2.4, 0.3 * len(layers) + 1.2)))
    ax = fig.subplots()
    _with_defaults(ax, title)
    y = np.arange(len(layers))
    colours = colormaps["YlOrRd"](0.25 + 0.75 * np.clip(np.nan_to_num(share), 0, 1))
    mixed = len(set(kinds) - {""}) > 1
    hatches = ["//" if k == "saturated" and mixed else "" for k in kinds]
    bars = ax.barh(y, np.nan_to_num(share), color=colours, edgecolor="#7b7d7d", linewidth=0.4)
    for bar, hatch in zip(bars, hatches):
        bar.set_hatch(hatch)
    for yi, s, kind in zip(y, share, kinds):
        label = f"{s:.0%}" if math.isfinite(s) else "n/a"
        if mixed and kind:
            label += f" {kind}"
        ax.text(min(float(np.nan_to_num(s)), 1.0) + 0.01, yi, label, va="center", fontsize=8, color="#1c2833")
    ax.set_yticks(y, [_mpl_text(n) for n in layers], fontsize=8.5)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15)
    ax.xaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
    ax.set_xlabel(xlabel, fontsize=9.5)
    return fig, Caption().text(text)


def _plot_feature_scales(data: dict, report: dict):
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
    caption = Caption().text("Standard deviation and |mean| of each input feature.")
    if math.isfinite(ratio):
        caption.text(" Largest / smallest non-zero std: ").b(f"{fmt_number(float(ratio))}\u00d7").text(".")
    if hidden:
        caption.text(f" {hidden} more features are not shown.")
    return fig, caption


def _plot_group_scales(data: dict, report: dict):
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
    caption = (Caption().code(value_col).text(" per value of ").code(group_col)
               .text(": when the scale depends on the group, one normalizer per group puts them on one footing."))
    return fig, caption


def _plot_ablations(data: dict, report: dict):
    baseline = data.get("baseline") or {}
    runs = [r for r in data.get("runs", []) if isinstance(r, dict)]
    if not runs and not baseline:
        return None
    fig = _figure()
    ax = fig.subplots()
    _with_defaults(ax, "Your setting against the experiments")
    drawn = []  # (steps, losses, colour, label)
    if baseline:
        label = str(baseline.get("label", "your setting"))
        drawn.append((_floats(baseline.get("losses", [])), "#1c2833", label if "your" in label.lower()
                      else f"{label} (yours)", 2.6))
    for i, run in enumerate(runs):
        drawn.append((_floats(run.get("losses", [])), f"C{i % 10}", str(run.get("label", f"run {i + 1}")), 1.5))
    for losses, colour, label, width in drawn:
        ax.plot(np.arange(losses.size), np.where(np.isfinite(losses), losses, np.nan), color=colour,
                linewidth=width, label=_mpl_text(label, 40))
    fit = _fit_loss_axis(ax, [d[0] for d in drawn])
    top = ax.get_ylim()[1]
    for losses, colour, _, _ in drawn:
        _mark_off_chart(ax, np.arange(losses.size, dtype=float), losses, fit.cap, colour)
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:  # where a run turned NaN/Inf, an X (kept on the chart even when cut)
            before = losses[: bad[0]][np.isfinite(losses[: bad[0]])]
            y = min(float(before[-1]), top) if before.size else top
            ax.plot([bad[0]], [y], marker="X", markersize=10, color=colour, markeredgecolor="white", zorder=6,
                    clip_on=False)
    ax.set_xlabel("step of the experiment", fontsize=9.5)
    ax.set_ylabel("training loss" + (" (log scale)" if ax.get_yscale() == "log" else ""), fontsize=9.5)
    fig.legend(fontsize=8.5, frameon=False, ncol=2, loc="outside lower center")  # inside, it would hide curves
    caption = Caption().text("Short runs that each change one thing; an X marks where a run turned NaN/Inf. ")
    for i, (losses, _, label, _) in enumerate(drawn):
        finite = losses[np.isfinite(losses)]
        caption.text("; " if i else "").b(label).text(f": final {fmt_number(float(losses[-1])) if losses.size else 'n/a'}")
        if finite.size:
            caption.text(f", best {fmt_number(float(finite.min()))}")
    caption.text(".")
    caption.parts += fit.note.parts
    return fig, caption


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


def draw_plots(report: dict) -> list[PlotView]:
    """Every plot whose data the report carries, in a fixed order. A plot that fails is replaced by
    a note (and a LossDoctorInternalWarning): a broken plot must not cost the user the page."""
    from matplotlib import rc_context

    out = []
    for key, draw in PLOTS:
        data = report["plots"].get(key)
        if not data:
            continue
        try:
            with rc_context({"font.family": "DejaVu Sans", "hatch.color": "#7b7d7d"}):
                drawn = draw(data, report)
                if drawn is None:  # present but empty: nothing to show
                    continue
                fig, caption = drawn
                uri = _png_uri(fig)
        except Exception as exc:  # noqa: BLE001 - reported as lossdoctor's own failure, the page goes on
            report_internal_error(f"html plot {key}", exc)
            out.append(PlotView(key, problem=f"{type(exc).__name__}: {exc}"))
            continue
        out.append(PlotView(key, uri, caption.parts, wide=key in WIDE_PLOTS))
    return out
