"""The monitor's evidence: plain numpy records read out every ``every`` steps, merged across ranks,
and summarised into one ``WatchStats`` that the ``@check("stats")`` functions read.

Nothing here touches a tensor: the watch converts device data to numpy at read-out.
"""
from __future__ import annotations

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


@dataclass
class SampleRecord:
    """What one fully instrumented step showed."""

    step: int
    grad_norms: np.ndarray  # per layer (NaN where a layer had no gradient)
    total_grad_norm: float
    update_ratios: np.ndarray | None  # per layer ||dW|| / ||W||, None without an optimizer
    units: dict[str, tuple[str, np.ndarray]]  # activation call -> (kind, per-unit mask)
    finite: list[tuple[str, bool | None, bool]]  # module, inputs finite, output finite (call order)
    logit_absmax: float | None = None
    logit_dtype: str | None = None
    ranks: int = 1
    logit_layer: str | None = None  # the output layer that produced the logits


@dataclass
class Record:
    """Everything gathered between two read-outs on one rank (or merged over ranks)."""

    loss_steps: np.ndarray
    loss_values: np.ndarray
    bad_steps: list[int]  # steps whose gradient held NaN/Inf (found from device flags at read-out)
    samples: list[SampleRecord]
    clip_steps: np.ndarray
    clip_norms: np.ndarray
    clip_max_norms: np.ndarray
    origin: dict[str, Any] | None = None
    rank: int = 0


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
    first = records[0]
    return Record(uniq.astype(np.int64), means, bad, samples, first.clip_steps, first.clip_norms,
                  first.clip_max_norms, origin, rank=0)


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
    return SampleRecord(
        step=base.step,
        grad_norms=np.nanmean(np.stack([g.grad_norms for g in group]), axis=0) if base.grad_norms.size else base.grad_norms,
        total_grad_norm=float(np.mean([g.total_grad_norm for g in group])),
        update_ratios=np.mean(np.stack(ratios), axis=0) if ratios else None,
        units=units, finite=finite, logit_absmax=logit[0], logit_dtype=logit[1], ranks=len(group),
        logit_layer=base.logit_layer,
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
    units: dict[str, dict[str, Any]]  # activation -> {"kind", "share", "units", "samples"}
    logits: list[tuple[int, float, str]]  # (step, largest |logit|, dtype) per sample
    clip: dict[str, Any]  # {"source", "steps", "norms", "max_norms"}
    declared_max_norm: float | None
    has_batchnorm: bool
    histograms: bool
    world_size: int = 1
    meta: dict[str, Any] = field(default_factory=dict)
    logit_layer: str | None = None  # the output layer whose logits ``logits`` measures

    def layer_grad_norm_medians(self) -> np.ndarray:
        if self.grad_norms.size == 0:
            return np.zeros(len(self.layers))
        with np.errstate(all="ignore"):
            finite = np.where(np.isfinite(self.grad_norms), self.grad_norms, np.nan)
            return np.array([np.nanmedian(row) if np.isfinite(row).any() else np.nan for row in finite])


def build_stats(history: list[Record], *, steps: int, every: int, layers: list[str], weight_layers: list[bool],
                layer_order: list[int],
                non_finite_weights: list[str], declared_max_norm: float | None, has_batchnorm: bool,
                histograms: bool, world_size: int, meta: dict[str, Any]) -> WatchStats:
    loss_steps = np.concatenate([r.loss_steps for r in history]) if history else np.zeros(0, np.int64)
    loss_values = np.concatenate([r.loss_values for r in history]) if history else np.zeros(0)
    loss_steps, loss_values = _mean_per_step(loss_steps, loss_values)
    samples = [s for r in history for s in r.samples]
    n_layers = len(layers)
    # records hold per-layer arrays in inventory order; the stats list layers in forward order
    grad = np.stack([s.grad_norms[layer_order] for s in samples], axis=1) if samples else np.zeros((n_layers, 0))
    ratio = np.stack([s.update_ratios[layer_order] if s.update_ratios is not None else np.full(n_layers, np.nan)
                      for s in samples], axis=1) if samples else np.zeros((n_layers, 0))

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
    return WatchStats(
        steps=steps, every=every, layers=layers, weight_layers=weight_layers,
        sample_steps=[s.step for s in samples], grad_norms=grad,
        total_grad_norms=np.array([s.total_grad_norm for s in samples]), update_ratios=ratio,
        loss_steps=loss_steps, loss_values=loss_values, first_non_finite_step=first_bad, non_finite=origin,
        non_finite_weights=non_finite_weights, units=units, logits=logits, clip=clip,
        declared_max_norm=declared_max_norm, has_batchnorm=has_batchnorm, histograms=histograms,
        world_size=world_size, meta=meta,
        logit_layer=next((s.logit_layer for s in reversed(samples) if s.logit_layer), None),
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


def _mean_per_step(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One loss per step: gradient accumulation (several losses per optimizer step) and steps an AMP
    GradScaler skipped give several; their mean keeps a NaN visible."""
    if steps.size == 0 or np.all(np.diff(steps) > 0):
        return steps, values
    uniq, inverse = np.unique(steps, return_inverse=True)
    sums = np.zeros(uniq.size)
    np.add.at(sums, inverse, values)
    return uniq, sums / np.bincount(inverse)


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


def _unit_shares(samples: list[SampleRecord]) -> dict[str, dict[str, Any]]:
    recent = samples[-UNIT_WINDOW_SAMPLES:]
    out: dict[str, dict[str, Any]] = {}
    keys = {k: v[0] for s in recent for k, v in s.units.items()}
    for key, kind in keys.items():
        masks = [s.units[key][1] for s in recent if key in s.units]
        masks = [m for m in masks if m.shape == masks[-1].shape]
        if kind == "relu":
            ever_active = np.logical_or.reduce(masks)
            silent = ~ever_active
        else:
            silent = np.logical_and.reduce(masks)
        out[key] = {"kind": kind, "share": float(silent.mean()) if silent.size else 0.0,
                    "units": int(silent.size), "silent_units": int(silent.sum()), "samples": len(masks)}
    return out
