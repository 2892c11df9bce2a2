"""The monitor's evidence: plain numpy records read out every ``every`` steps, merged across ranks,
and summarised into one ``WatchStats`` that the ``@check`` functions of ``monitor.checks`` read.

Nothing here touches a tensor: the measurements convert their device data to numpy at read-out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Exp overflows past log(max finite value) of the dtype: a softmax computed as exp(x)/sum(exp(x))
# returns Inf/NaN once a logit passes it (exp(100) = Inf in float32).
EXP_OVERFLOW_LIMIT = {
    "torch.float32": 88.72, "torch.bfloat16": 88.72, "torch.float16": 11.09, "torch.float64": 709.78,
}

# Dead/saturated units are judged over the last this many sampled steps (each one batch): a unit
# active on none of several batches is dead, not unlucky.
UNIT_WINDOW_SAMPLES = 5
# A layer counts as having dead/saturated units from the instrumented step on which this share of its
# units was silent (the warning level of the unit checks, which import it).
SILENT_SHARE_WARN = 0.5


@dataclass
class InputMoments:
    """Per-feature moments of what the first layer received on one instrumented step (or summed over
    several): the scale of the inputs as the network sees them."""

    layer: str  # the first parameter-owning module called
    kind: str  # "features" (its floating-point input) or "embedding output" (its input was token ids)
    rows: float  # values per feature that went into the sums
    sums: np.ndarray
    squares: np.ndarray
    absmax: np.ndarray

    def merged(self, other: "InputMoments") -> "InputMoments":
        if other.sums.shape != self.sums.shape or other.layer != self.layer:
            return self
        return InputMoments(self.layer, self.kind, self.rows + other.rows, self.sums + other.sums,
                            self.squares + other.squares, np.maximum(self.absmax, other.absmax))

    def summary(self) -> dict[str, Any]:
        rows = max(self.rows, 1.0)
        mean = self.sums / rows
        var = np.maximum(self.squares / rows - mean ** 2, 0.0)
        return {"layer": self.layer, "kind": self.kind, "rows": int(self.rows), "features": int(mean.size),
                "mean": mean, "std": np.sqrt(var), "absmax": self.absmax}


@dataclass
class SampleRecord:
    """What one fully instrumented step showed (each measurement fills its own fields)."""

    step: int
    grad_norms: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per layer (NaN: no gradient)
    total_grad_norm: float = math.nan
    update_ratios: np.ndarray | None = None  # per layer ||dW|| / ||W||, None without an optimizer
    units: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)  # activation call -> (kind, mask)
    finite: list[tuple[str, bool | None, bool]] = field(default_factory=list)  # module, inputs finite, output finite
    logit_absmax: float | None = None
    logit_dtype: str | None = None
    ranks: int = 1
    logit_layer: str | None = None  # the output layer that produced the logits
    logit_classes: int | None = None  # the width of the logits' last axis
    inputs: InputMoments | None = None
    stalled: dict[str, float] | None = None  # low-precision layer -> share of its moving elements left unchanged
    autocast: str | None = None  # the autocast dtype of the step's forward pass, if any
    # one small parameter's gradient before the update: ||(grad - this step's backward) - previous
    # step's grad||, ||previous grad||, ||grad - this step's backward||, ||this step's backward||
    grad_carry: tuple[float, float, float, float] | None = None


@dataclass
class Record:
    """Everything gathered between two read-outs on one rank (or merged over ranks)."""

    loss_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    loss_values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bad_steps: list[int] = field(default_factory=list)  # steps whose gradient/loss held NaN/Inf (device flags)
    samples: list[SampleRecord] = field(default_factory=list)
    clip_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    clip_norms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    clip_max_norms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    origin: dict[str, Any] | None = None
    rank: int = 0
    lr_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # where the rate changed
    lr_values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scaler: dict[str, np.ndarray] | None = None  # {"steps", "skipped", "scale_steps", "scales"}


def merge_records(records: list[Record]) -> Record:
    """One record from every rank's: mean losses and norms, dead only if dead on every rank,
    the largest logit, the earliest NaN origin (preferring one located in the forward pass)."""
    if len(records) == 1:
        return records[0]
    steps = np.concatenate([r.loss_steps for r in records])
    values = np.concatenate([r.loss_values for r in records])
    uniq = np.unique(steps)
    means = np.array([values[steps == s].mean() for s in uniq]) if uniq.size else np.zeros(0)
    bad = sorted({s for r in records for s in r.bad_steps})
    by_step: dict[int, list[SampleRecord]] = {}
    for r in records:
        for s in r.samples:
            by_step.setdefault(s.step, []).append(s)
    samples = [_merge_samples(group) for _, group in sorted(by_step.items())]
    origins = [r.origin for r in records if r.origin]
    origin = min(origins, key=lambda o: (o.get("step", 0), o.get("in") != "forward", o.get("produced_by") != "inputs"),
                 default=None)
    first = records[0]  # the rate, the clip and the scaler are the same on every rank
    return Record(uniq.astype(np.int64), means, bad, samples, first.clip_steps, first.clip_norms,
                  first.clip_max_norms, origin, rank=0, lr_steps=first.lr_steps, lr_values=first.lr_values,
                  scaler=first.scaler)


def _merge_samples(group: list[SampleRecord]) -> SampleRecord:
    base = group[0]
    units: dict[str, tuple[str, np.ndarray]] = {}
    for key, (kind, mask) in base.units.items():
        masks = [g.units[key][1] for g in group if key in g.units and g.units[key][1].shape == mask.shape]
        # relu masks say "active somewhere": OR over ranks; saturation masks say "always saturated": AND.
        merged = np.logical_or.reduce(masks) if kind == "relu" else np.logical_and.reduce(masks)
        units[key] = (kind, merged)
    finite = []
    for i, (name, inf, outf) in enumerate(base.finite):
        others = [g.finite[i] for g in group if len(g.finite) > i and g.finite[i][0] == name]
        ins = [o[1] for o in others if o[1] is not None]
        finite.append((name, all(ins) if ins else None, all(o[2] for o in others)))
    logits = [(g.logit_absmax, g.logit_dtype) for g in group if g.logit_absmax is not None]
    logit = max(logits, key=lambda t: t[0]) if logits else (None, None)
    ratios = [g.update_ratios for g in group if g.update_ratios is not None]
    inputs = None
    for g in group:
        if g.inputs is not None:
            inputs = g.inputs if inputs is None else inputs.merged(g.inputs)
    stalled = [g.stalled for g in group if g.stalled]
    return SampleRecord(
        step=base.step,
        grad_norms=np.nanmean(np.stack([g.grad_norms for g in group]), axis=0) if base.grad_norms.size else base.grad_norms,
        total_grad_norm=float(np.mean([g.total_grad_norm for g in group])),
        update_ratios=np.mean(np.stack(ratios), axis=0) if ratios else None,
        units=units, finite=finite, logit_absmax=logit[0], logit_dtype=logit[1], ranks=len(group),
        logit_layer=base.logit_layer, logit_classes=base.logit_classes, inputs=inputs,
        stalled={k: float(np.mean([s[k] for s in stalled if k in s])) for k in stalled[0]} if stalled else None,
        autocast=base.autocast,
        grad_carry=base.grad_carry,  # rank 0's (each rank zeroes, or fails to zero, its own gradients)
    )


@dataclass
class WatchStats:
    """The read-out statistics of a watched run: the evidence of the ``stats`` checks."""

    steps: int
    every: int
    layers: list[str]  # parameter-owning modules, in forward order
    weight_layers: list[bool]  # whether the layer has a >= 2-D weight (Linear, Conv, Embedding, RNN)
    sample_steps: list[int]
    grad_norms: np.ndarray  # layer x sample
    total_grad_norms: np.ndarray  # per sample
    update_ratios: np.ndarray  # layer x sample (NaN where unknown)
    loss_steps: np.ndarray
    loss_values: np.ndarray
    first_non_finite_step: int | None
    non_finite: dict[str, Any] | None  # the located origin of the first NaN/Inf
    non_finite_weights: list[str]  # modules whose weights are NaN/Inf at read-out
    # activation -> {"kind", "share", "units", "silent_units", "samples", "first_seen_step", "dead_at_first_look"}
    units: dict[str, dict[str, Any]]
    logits: list[tuple[int, float, str]]  # (step, largest |logit|, dtype) per sample
    clip: dict[str, Any]  # {"source", "steps", "norms", "max_norms"}
    declared_max_norm: float | None
    has_batchnorm: bool
    histograms: bool
    world_size: int = 1
    meta: dict[str, Any] = field(default_factory=dict)
    logit_layer: str | None = None  # the output layer whose logits ``logits`` measures
    num_classes: int | None = None  # the width of the logits, when the model outputs class scores
    lr_steps: np.ndarray = field(default_factory=lambda: np.zeros(0))  # steps where the rate changed ...
    lr_values: np.ndarray = field(default_factory=lambda: np.zeros(0))  # ... and the rate from there on
    inputs: dict[str, Any] | None = None  # InputMoments.summary() over the instrumented steps
    # the GradScaler: {"steps": iterations seen, "skipped_steps", "scale_steps", "scales"}; None without one
    scaler: dict[str, Any] | None = None
    # low-precision weights: layer -> {"dtype", "steps", "stalled_share"} (per instrumented step)
    low_precision: dict[str, dict[str, Any]] = field(default_factory=dict)
    autocast: str | None = None  # the autocast dtype of the instrumented forwards
    # (step, SampleRecord.grad_carry) per instrumented step that measured it
    grad_carry: list[tuple[int, tuple[float, float, float, float]]] = field(default_factory=list)

    def layer_grad_norm_medians(self) -> np.ndarray:
        if self.grad_norms.size == 0:
            return np.zeros(len(self.layers))
        with np.errstate(all="ignore"):
            finite = np.where(np.isfinite(self.grad_norms), self.grad_norms, np.nan)
            return np.array([np.nanmedian(row) if np.isfinite(row).any() else np.nan for row in finite])

    def lr_at(self, step: float) -> float | None:
        """The optimizer's (largest) learning rate at ``step``, or None when it is unknown."""
        if self.lr_steps.size == 0:
            return None
        i = int(np.searchsorted(self.lr_steps, step, side="right")) - 1
        return float(self.lr_values[max(i, 0)])


def build_stats(history: list[Record], *, steps: int, every: int, layers: list[str], weight_layers: list[bool],
                layer_order: list[int], non_finite_weights: list[str], declared_max_norm: float | None,
                has_batchnorm: bool, histograms: bool, world_size: int, meta: dict[str, Any],
                low_precision_dtypes: dict[str, str] | None = None) -> WatchStats:
    loss_steps = np.concatenate([r.loss_steps for r in history]) if history else np.zeros(0, np.int64)
    loss_values = np.concatenate([r.loss_values for r in history]) if history else np.zeros(0)
    loss_steps, loss_values = _mean_per_step(loss_steps, loss_values)
    samples = [s for r in history for s in r.samples]
    n_layers = len(layers)
    # records hold per-layer arrays in inventory order; the stats list layers in forward order
    grad = np.stack([_per_layer(s.grad_norms, n_layers)[layer_order] for s in samples], axis=1) if samples \
        else np.zeros((n_layers, 0))
    ratio = np.stack([_per_layer(s.update_ratios, n_layers)[layer_order] for s in samples], axis=1) if samples \
        else np.zeros((n_layers, 0))

    bad = [s for r in history for s in r.bad_steps]
    non_finite_losses = loss_steps[~np.isfinite(loss_values)]
    candidates = bad + ([int(non_finite_losses.min())] if non_finite_losses.size else [])
    origins = [r.origin for r in history if r.origin]
    origin = min(origins, key=lambda o: o.get("step", 0)) if origins else None
    if origin is not None:
        candidates.append(int(origin["step"]))
    first_bad = min(candidates) if candidates else None
    if origin is None and first_bad is not None:
        origin = _origin_from_samples(samples, first_bad)

    # after a NaN every comparison is False: judge units on the steps before it
    units = _unit_shares([s for s in samples if first_bad is None or s.step < first_bad])
    logits = [(s.step, s.logit_absmax, s.logit_dtype) for s in samples if s.logit_absmax is not None]
    clip_steps = np.concatenate([r.clip_steps for r in history]) if history else np.zeros(0)
    clip = {"source": "clip_grad_norm_", "steps": clip_steps,
            "norms": np.concatenate([r.clip_norms for r in history]) if history else np.zeros(0),
            "max_norms": np.concatenate([r.clip_max_norms for r in history]) if history else np.zeros(0)}
    if clip_steps.size == 0 and declared_max_norm is not None and samples:
        # No clip call observed: compare the gradient the optimizer received with the declared max_norm.
        clip = {"source": "declared max_norm", "steps": np.array([s.step for s in samples]),
                "norms": np.array([s.total_grad_norm for s in samples]),
                "max_norms": np.full(len(samples), float(declared_max_norm))}
    inputs = None
    for s in samples:
        if s.inputs is not None:
            inputs = s.inputs if inputs is None else inputs.merged(s.inputs)
    lr_steps, lr_values = _rate_changes(history)
    return WatchStats(
        steps=steps, every=every, layers=layers, weight_layers=weight_layers,
        sample_steps=[s.step for s in samples], grad_norms=grad,
        total_grad_norms=np.array([s.total_grad_norm for s in samples]), update_ratios=ratio,
        loss_steps=loss_steps, loss_values=loss_values, first_non_finite_step=first_bad, non_finite=origin,
        non_finite_weights=non_finite_weights, units=units, logits=logits, clip=clip,
        declared_max_norm=declared_max_norm, has_batchnorm=has_batchnorm, histograms=histograms,
        world_size=world_size, meta=meta,
        logit_layer=next((s.logit_layer for s in reversed(samples) if s.logit_layer), None),
        num_classes=next((s.logit_classes for s in reversed(samples) if s.logit_classes), None),
        lr_steps=lr_steps, lr_values=lr_values,
        inputs=inputs.summary() if inputs is not None else None,
        scaler=_scaler_summary(history),
        low_precision=_low_precision(samples, low_precision_dtypes or {}),
        autocast=next((s.autocast for s in reversed(samples) if s.autocast), None),
        grad_carry=[(s.step, s.grad_carry) for s in samples if s.grad_carry is not None],
    )


def stats_plots(stats: WatchStats) -> dict[str, Any]:
    """The plot data of a watch's read-out (Report.plots keys ``curves`` (grad_norm), ``grad_norms``,
    ``dead_units``)."""
    plots: dict[str, Any] = {}
    if stats.sample_steps:
        plots["curves"] = {"grad_norm": {"steps": [float(s) for s in stats.sample_steps],
                                         "values": [float(v) for v in stats.total_grad_norms]}}
        plots["grad_norms"] = {"layers": stats.layers, "steps": stats.sample_steps, "norms": stats.grad_norms.tolist()}
    if stats.units:
        plots["dead_units"] = {"layers": list(stats.units), "share": [u["share"] for u in stats.units.values()],
                               "kinds": [u["kind"] for u in stats.units.values()]}
    return plots


def _per_layer(values: np.ndarray | None, n_layers: int) -> np.ndarray:
    if values is None or values.shape != (n_layers,):
        return np.full(n_layers, np.nan)
    return values


def _mean_per_step(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One loss per step: gradient accumulation (several losses per optimizer step) and steps an AMP
    GradScaler skipped give several; their mean keeps a NaN visible."""
    if steps.size == 0 or np.all(np.diff(steps) > 0):
        return steps, values
    uniq, inverse = np.unique(steps, return_inverse=True)
    sums = np.zeros(uniq.size)
    np.add.at(sums, inverse, values)
    return uniq, sums / np.bincount(inverse)


def _rate_changes(history: list[Record]) -> tuple[np.ndarray, np.ndarray]:
    steps = np.concatenate([r.lr_steps for r in history]) if history else np.zeros(0, np.int64)
    values = np.concatenate([r.lr_values for r in history]) if history else np.zeros(0)
    if steps.size < 2:
        return steps, values
    keep = np.concatenate([[True], values[1:] != values[:-1]])  # a window's first entry may repeat the rate
    return steps[keep], values[keep]


def _scaler_summary(history: list[Record]) -> dict[str, Any] | None:
    parts = [r.scaler for r in history if r.scaler is not None]
    if not parts:
        return None
    steps = np.concatenate([p["steps"] for p in parts])
    skipped = np.concatenate([p["skipped"] for p in parts])
    return {"steps": int(steps.size), "first_step": int(steps[0]) if steps.size else 0,
            "skipped_steps": steps[skipped].astype(np.int64),
            "scale_steps": np.concatenate([p["scale_steps"] for p in parts]),
            "scales": np.concatenate([p["scales"] for p in parts])}


def _low_precision(samples: list[SampleRecord], dtypes: dict[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for s in samples:
        for layer, share in (s.stalled or {}).items():
            entry = out.setdefault(layer, {"dtype": dtypes.get(layer), "steps": [], "stalled_share": []})
            entry["steps"].append(s.step)
            entry["stalled_share"].append(share)
    return out


def _origin_from_samples(samples: list[SampleRecord], first_bad: int) -> dict[str, Any] | None:
    """Without a replay: the first module whose output was NaN/Inf on the first instrumented step at
    or after the first bad step. Precise when that step was instrumented; otherwise the weights
    are usually NaN everywhere by then and the module named is only where it was seen."""
    for s in samples:
        if s.step < first_bad:
            continue
        previous_output_finite = None
        for name, inputs_finite, output_finite in s.finite:
            if inputs_finite is None:  # recorded for the first module only: otherwise the previous output
                inputs_finite = previous_output_finite
            previous_output_finite = output_finite
            if not output_finite:
                exact = s.step == first_bad
                return {
                    "step": int(first_bad), "module": name, "in": "forward", "seen_at_step": int(s.step),
                    "produced_by": ("operation" if inputs_finite else "inputs or an earlier operation")
                    if exact else "unknown",
                    "located_by": "instrumented step" if exact else "first instrumented step after the NaN",
                }
        break
    return None


def _silent(kind: str, masks: list[np.ndarray]) -> np.ndarray:
    """Units silent on every one of ``masks``: ReLU masks say "active on some example", saturation
    masks "saturated on every example"."""
    return ~np.logical_or.reduce(masks) if kind == "relu" else np.logical_and.reduce(masks)


def _unit_shares(samples: list[SampleRecord]) -> dict[str, dict[str, Any]]:
    """Per activation call: the share of units silent over the last UNIT_WINDOW_SAMPLES samples, and
    when that began: the first sample from which the windowed share stayed at SILENT_SHARE_WARN or
    above (``first_seen_step``), and whether the very first look already showed it."""
    recent = samples[-UNIT_WINDOW_SAMPLES:]
    out: dict[str, dict[str, Any]] = {}
    keys = {k: v[0] for s in recent for k, v in s.units.items()}
    for key, kind in keys.items():
        seen = [(s.step, s.units[key][1]) for s in samples if key in s.units]
        shape = seen[-1][1].shape
        seen = [(step, m) for step, m in seen if m.shape == shape]
        masks = [m for _, m in seen]
        silent = _silent(kind, masks[-UNIT_WINDOW_SAMPLES:])
        windowed = [float(_silent(kind, masks[max(0, i + 1 - UNIT_WINDOW_SAMPLES):i + 1]).mean()) if shape[0] else 0.0
                    for i in range(len(masks))]
        first_seen = None
        for i in range(len(windowed) - 1, -1, -1):
            if windowed[i] < SILENT_SHARE_WARN:
                break
            first_seen = seen[i][0]
        out[key] = {"kind": kind, "share": float(silent.mean()) if silent.size else 0.0,
                    "units": int(silent.size), "silent_units": int(silent.sum()),
                    "samples": min(len(masks), UNIT_WINDOW_SAMPLES), "first_seen_step": first_seen,
                    "dead_at_first_look": bool(windowed and windowed[0] >= SILENT_SHARE_WARN),
                    "first_look_step": seen[0][0] if seen else None}
    return out
