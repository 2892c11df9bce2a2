"""The decisions: checks that turn probe results (plain data) into findings, and what they rule out.

Every comparison is between the user's setting (the baseline run) and one change at the same
number of steps, on the loss measured over the same training rows in eval mode (the "fit loss").
A change "helps" when it cuts the fit loss by at least HELPS_RELATIVE of its value and by at least
HELPS_ABSOLUTE of the reference loss (the expected initial loss, or the run's start).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..findings import Finding, RuledOut
from ..registry import check
from .result import ProbeResult

# A change must cut the fit loss by 40 %: short seeded runs of the same recipe differ by a few
# percent, so a 40 % cut is an effect, not noise.
HELPS_RELATIVE = 0.4
# ... and by 10 % of the reference loss (ln C for classification): on a recipe that already fits,
# going from 0.05 to 0.02 is a 60 % cut that nobody needs to act on.
HELPS_ABSOLUTE = 0.10
# The range test puts the user's rate "too low" when it sits a decade or more below the suggested
# rate (the suggestion is itself a decade below the loss minimum, so this is two decades below it).
LR_LOW_FACTOR = 10.0
# ... and only when the baseline removed less than half of its starting loss: in a short run a
# higher rate nearly always looks faster, so a run that is already making good progress is not
# called "too slow" on that evidence alone.
LR_LOW_MAX_PROGRESS = 0.5
# ... and "too high" when it is above the rate at the smoothed loss minimum (past the minimum the
# loss already rises with the rate).
LR_HIGH_FACTOR = 1.0
# A baseline above a rate past the loss minimum that ends at 90 % of its start or worse has failed:
# the rate, confirmed by the ablation, explains the symptoms the monitor sees.
LR_HIGH_NO_PROGRESS = 0.9
# Clipping "masks" the rate when it cuts the gradient on most steps.
CLIP_ACTIVE_SHARE = 0.5
# Gradient norms first-layer/last-layer beyond three orders of magnitude: the taxonomy's
# "orders of magnitude" for vanishing/exploding gradients ...
BN_MASKED_RATIO = 1e3
# ... while with batch norm in they stay within two orders: batch norm hides the problem.
BN_HEALTHY_RATIO = 1e2
# Initial loss this many times its expected value (ln C, target variance): the first predictions
# are confidently wrong, a sign of output scale or initialization.
INITIAL_LOSS_FACTOR = 3.0
# The small subset counts as fitted below 10 % of the reference loss, the full data as not fitted
# above 12 % (healthy digits recipes reach 1-4 % on the full data) and at least SUBSET_GAP times
# the subset's loss: a clear gap at equal steps.
SUBSET_FITTED = 0.10
FULL_NOT_FITTED = 0.12
SUBSET_GAP = 1.5
# "Not fitted" must mean "stopped improving", not "not finished": over the last 40 % of the run the
# full-data fit loss must have fallen by less than 25 % (a run still falling needs more steps, and
# a subset fitted at equal steps has simply seen more epochs).
PLATEAU_WINDOW = 0.4
PLATEAU_MAX_DROP = 0.25
# The full-data run "learned nothing" above 90 % of the reference loss (chance level).
NO_LEARNING = 0.90
# For "no signal" the subset need not be memorised: its loss falling below half of chance shows that
# the network and the optimizer can fit labels at these settings; at chance on the full data (and on
# validation) they then found nothing that generalizes.
SUBSET_LEARNED = 0.5
# float32 exp overflows above ~88.7; output magnitudes past half of it at initialization leave no
# head-room before a softmax computed outside the loss turns Inf.
EXP_OVERFLOW = 88.72
LOGIT_HEADROOM_SHARE = 0.5


@dataclass
class ProbeEvidence:
    """All probe results of one checkup plus the recipe facts the checks need."""

    results: dict[str, ProbeResult] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> ProbeResult | None:
        r = self.results.get(name)
        return r if r is not None and r.ran else None

    def run(self, name: str) -> dict | None:
        r = self.get(name)
        return r.data.get("run") if r else None

    @property
    def chance_loss(self) -> float | None:
        """The loss of the best constant prediction (None when the loss has no standard reference)."""
        init = self.get("initial_loss")
        v = init.data.get("chance_loss") if init else None
        return float(v) if v and math.isfinite(v) else None

    @property
    def reference_loss(self) -> float | None:
        init = self.get("initial_loss")
        if init and init.data.get("expected_loss"):
            return float(init.data["expected_loss"])
        base = self.run("baseline")
        if base and base.get("start_loss") and math.isfinite(base["start_loss"]):
            return float(base["start_loss"])
        return None


def _final(run: dict | None) -> float:
    if not run:
        return math.nan
    v = run.get("final_loss")
    return math.inf if v in ("inf", None) or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def failed(ev: ProbeEvidence, run: dict | None) -> bool:
    """A run that learned nothing: its fit loss ended non-finite or at NO_LEARNING of chance level or above."""
    if not run:
        return False
    v, chance = _final(run), ev.chance_loss
    return not math.isfinite(v) or (chance is not None and v >= NO_LEARNING * chance)


# Ablations that are re-run at the range test's suggested rate when both runs at the user's rate
# failed, and the probe result name of that re-run.
SAFE_LR_VARIANTS = ("no_regularization", "no_clipping", "reinit", "full_precision")


def safe_lr_name(variant: str) -> str:
    return f"ablation:{variant}@suggested_lr"


def confounded(ev: ProbeEvidence, variant: str) -> bool:
    """Both the user's setting and the change failed: the comparison at the user's rate proves nothing."""
    return failed(ev, ev.run("baseline")) and failed(ev, ev.run(f"ablation:{variant}"))


def compare(ev: ProbeEvidence, variant: str) -> dict[str, Any] | None:
    """Baseline vs one ablation: the numbers, whether the change helps, and whether the test was conclusive.

    When both runs failed (non-finite, or at chance level) the change is judged instead at the range
    test's suggested rate (its re-run against the ``lr_suggested`` run) when that was run; when that
    pair failed as well, or there is none, the comparison is ``inconclusive`` and helps nothing.
    """
    base_name, alt_name = "baseline", f"ablation:{variant}"
    at_lr = None
    if variant != "lr_suggested" and confounded(ev, variant):
        if ev.get(safe_lr_name(variant)) and ev.get("ablation:lr_suggested"):
            base_name, alt_name = "ablation:lr_suggested", safe_lr_name(variant)
            at_lr = ev.get("ablation:lr_suggested").data.get("lr")
    base, alt = ev.run(base_name), ev.run(alt_name)
    ref = ev.reference_loss
    if not base or not alt or not ref:
        return None
    b, a = _final(base), _final(alt)
    inconclusive = failed(ev, base) and failed(ev, alt)
    helps = not inconclusive and math.isfinite(a) and \
        (not math.isfinite(b) or (a <= (1 - HELPS_RELATIVE) * b and (b - a) >= HELPS_ABSOLUTE * ref))
    gain = 1.0 if not math.isfinite(b) and math.isfinite(a) else (max(0.0, (b - a) / ref) if math.isfinite(a) else 0.0)
    out = {"baseline_loss": b, "changed_loss": a, "reference_loss": ref, "gain": min(gain, 1.0),
           "helps": helps, "label": ev.get(alt_name).data.get("label"),
           "thresholds": {"relative_cut": HELPS_RELATIVE, "absolute_cut": HELPS_ABSOLUTE * ref}}
    if ev.chance_loss is not None:
        out["chance_loss"] = ev.chance_loss
        out["thresholds"]["failed_at"] = NO_LEARNING * ev.chance_loss
    if at_lr is not None:
        out["compared_at_lr"] = at_lr
        out["why_at_that_lr"] = "at your learning rate both runs failed (non-finite or at chance level)"
    if inconclusive:
        out["inconclusive"] = True
        out["why_inconclusive"] = ("both runs failed (non-finite or at chance level)"
                                   + (f", also at the suggested rate {at_lr:.2g}" if at_lr is not None else ""))
    return out


def _confidence(gain: float, floor: float = 0.55) -> float:
    return min(0.95, floor + 0.4 * gain)


# When the confirmation run at the suggested rate failed too (another cause also holds the loss up),
# the range test alone still convicts the user's rate if the baseline itself blew up (went
# non-finite, or its loss rose 10x above its start: an order of magnitude is no minibatch noise)
# and the rate sits at or past where the range test's loss blew up, or a decade or more past its
# loss minimum (beyond the minimum the loss rises with the rate; a decade past it is well into that
# rise, not a near-tie). A baseline that merely sits at chance (dead units, no signal) convicts
# nothing: its range test is flat. Reported with this confidence, below a confirmed one.
LR_UNCONFIRMED_PAST_MIN = 10.0
LR_UNCONFIRMED_BLEW_UP = 10.0
LR_UNCONFIRMED_CONFIDENCE = 0.6


def _baseline_blew_up(ev: ProbeEvidence) -> bool:
    base = ev.get("baseline")
    if not base:
        return False
    run, losses = base.data.get("run") or {}, np.asarray(base.data.get("losses") or [], dtype=float)
    if run.get("first_non_finite_step") is not None or (losses.size and not np.isfinite(losses).all()):
        return True
    start = run.get("start_loss")
    return bool(losses.size and start and start > 0 and losses.max() >= LR_UNCONFIRMED_BLEW_UP * start)


def _rate_past_range_test(ev: ProbeEvidence, d: dict[str, Any], cmp: dict[str, Any]) -> list[Finding]:
    user, blowup, at_min, suggested = d.get("current_lr"), d.get("blowup_lr"), d.get("min_loss_lr"), d.get("suggested_lr")
    if not cmp.get("inconclusive") or not user or not _baseline_blew_up(ev):
        return []
    past_blowup = bool(blowup) and user >= blowup
    # the range test's rates are a float geometric grid (0.1 comes out as 0.10000000000000052):
    # compare with a relative tolerance so that a rate exactly a decade past the minimum counts
    past_min = bool(at_min) and user >= LR_UNCONFIRMED_PAST_MIN * at_min * (1 - 1e-6)
    if not (past_blowup or past_min):
        return []
    evidence = {**cmp, "user_lr": user, "blowup_lr": blowup, "min_loss_lr": at_min, "suggested_lr": suggested,
                "past_min_factor": LR_UNCONFIRMED_PAST_MIN, "confirmed": False, "baseline_blew_up": True,
                "baseline_failed": True,  # "inconclusive" means both runs failed, the baseline included
                "why_unconfirmed": "the run at the suggested rate failed as well: another cause holds the loss up too"}
    where_bad = f"its loss blew up at {blowup:.2g}" if past_blowup else f"its loss minimum is at {at_min:.2g}"
    return [Finding("optim.lr_too_high", "warning", LR_UNCONFIRMED_CONFIDENCE, evidence=evidence,
                    remedy=f"Lower the learning rate from {user:.3g} (the range test, clipping off: {where_bad}"
                           f"{f'; start near {suggested:.2g}' if suggested else ''}). Fix the other findings too: "
                           "at the lower rate alone the loss still did not fall.")]


@check
def learning_rate_off(probes: ProbeEvidence) -> list[Finding]:
    """optim.lr_too_high / lr_too_low: the range test and a run at its suggested rate against the user's rate."""
    rng = probes.get("lr_range")
    cmp = compare(probes, "lr_suggested")
    if not rng or not cmp:
        return []
    d = rng.data
    if not cmp["helps"]:
        return _rate_past_range_test(probes, d, cmp)
    user, suggested, at_min = d["current_lr"], d.get("suggested_lr"), d.get("min_loss_lr")
    if not suggested or not at_min:
        return []
    base = probes.run("baseline") or {}
    evidence = {**cmp, "user_lr": user, "suggested_lr": suggested, "min_loss_lr": at_min,
                "blowup_lr": d.get("blowup_lr"), "baseline_first_non_finite_step": base.get("first_non_finite_step")}
    if user > LR_HIGH_FACTOR * at_min:
        nan = base.get("first_non_finite_step") is not None
        # diverged, or made no progress at all (stuck at chance after a jump, dead units)
        evidence["baseline_diverged"] = nan or _final(base) >= LR_HIGH_NO_PROGRESS * (base.get("start_loss") or math.inf)
        return [Finding("optim.lr_too_high", "error" if nan else "warning", 0.9 if nan else _confidence(cmp["gain"]),
                        evidence=evidence,
                        remedy=f"Lower the learning rate from {user:.3g} to about {suggested:.2g} (the range test's "
                               f"loss minimum is at {at_min:.2g}, clipping off); the fit loss went "
                               f"{_fmt(cmp['baseline_loss'])} -> {_fmt(cmp['changed_loss'])} at equal steps.")]
    start, end = base.get("start_loss"), _final(base)
    progress = (start - end) / start if start and math.isfinite(end) and start > 0 else 0.0
    evidence["baseline_progress"] = progress
    if user * LR_LOW_FACTOR <= suggested and progress < LR_LOW_MAX_PROGRESS:
        return [Finding("optim.lr_too_low", "warning", _confidence(cmp["gain"]), evidence=evidence,
                        remedy=f"Raise the learning rate from {user:.3g} to about {suggested:.2g} (the range test's "
                               f"loss minimum is at {at_min:.2g}); the fit loss went {_fmt(cmp['baseline_loss'])} -> "
                               f"{_fmt(cmp['changed_loss'])} at equal steps.")]
    return []


@check
def regularization_too_strong(probes: ProbeEvidence) -> list[Finding]:
    """The fit loss falls much further with dropout and weight decay off."""
    cmp = compare(probes, "no_regularization")
    if not cmp or not cmp["helps"]:
        return []
    f = probes.facts
    evidence = {**cmp, "dropout": f.get("dropout"), "weight_decay": f.get("weight_decay")}
    at = f" at learning rate {cmp['compared_at_lr']:.2g}" if cmp.get("compared_at_lr") else ""
    return [Finding("model.regularization_too_strong", "warning", _confidence(cmp["gain"]), evidence=evidence,
                    remedy=f"Turn dropout (now {_fmt_dropout(f.get('dropout'))}) and weight decay (now "
                           f"{f.get('weight_decay', 0):g}) off until the training loss falls "
                           f"({_fmt(cmp['baseline_loss'])} -> {_fmt(cmp['changed_loss'])} with both off{at}), then add "
                           "them back gradually (dropout 0.1, then 0.2) while watching validation.")]


@check
def clipping_masks_learning_rate(probes: ProbeEvidence) -> list[Finding]:
    """Clipping cut most steps, and the run learns much faster with it off."""
    cmp = compare(probes, "no_clipping")
    base = probes.run("baseline")
    if not cmp or not cmp["helps"] or not base or (base.get("clip_share") or 0) < CLIP_ACTIVE_SHARE:
        return []
    evidence = {**cmp, "grad_clip": probes.facts.get("grad_clip"), "clip_share": base["clip_share"],
                "clip_share_threshold": CLIP_ACTIVE_SHARE}
    return [Finding("optim.clipping_masks_lr", "warning", _confidence(cmp["gain"]), evidence=evidence,
                    remedy=f"Clipping at {probes.facts.get('grad_clip'):g} cut the gradient on {base['clip_share']:.0%} of "
                           f"the steps. Turn it off, find the highest learning rate that does not blow up "
                           f"(lossdoctor's range test suggests {_fmt(_suggested(probes))}), lower it a little, then "
                           "re-enable clipping at a threshold that rarely triggers.")]


@check
def batchnorm_masks_gradients(probes: ProbeEvidence) -> list[Finding]:
    """Gradients vanish or explode across depth only once batch norm is taken out."""
    r = probes.get("batchnorm_out")
    if not r:
        return []
    without, with_bn = r.data.get("ratio_without_bn"), r.data.get("ratio_with_bn")
    if without is None or with_bn is None:
        return []
    off = lambda x: x == 0 or not math.isfinite(x) or x < 1 / BN_MASKED_RATIO or x > BN_MASKED_RATIO
    fine = lambda x: x > 0 and math.isfinite(x) and 1 / BN_HEALTHY_RATIO <= x <= BN_HEALTHY_RATIO
    if not (off(without) and fine(with_bn)):
        return []
    kind = "vanish" if without < 1 else "explode"
    evidence = {"grad_ratio_first_last_without_bn": without, "grad_ratio_first_last_with_bn": with_bn,
                "threshold": BN_MASKED_RATIO, "batchnorm_layers": r.data["batchnorm_layers"]}
    return [Finding("grad.masked_by_batchnorm", "warning", 0.8, evidence=evidence,
                    remedy=f"With batch norm taken out, gradients {kind} across depth (first/last layer norm "
                           f"ratio {without:.2g}, {with_bn:.2g} with it). Fix the initialization and activations "
                           "(he_normal with ReLU, lossdoctor.model.apply_init) rather than relying on batch norm.")]


# A re-initialization convicts the initialization only when the run it compares against removed less
# than half of its starting loss: an init under which the loss falls well works; that another init
# falls faster in a short run (a transformer's small-std init against He/LeCun) is no fault.
INIT_MAX_PROGRESS = 0.5


def _progress(run: dict | None) -> float:
    """The share of its starting fit loss a run removed (0 when it ended non-finite or rose)."""
    if not run:
        return 0.0
    start, end = run.get("start_loss"), _final(run)
    if not start or not math.isfinite(start) or start <= 0 or not math.isfinite(end):
        return 0.0
    return max(0.0, (start - end) / start)


@check
def gradient_across_depth_at_init(probes: ProbeEvidence) -> list[Finding]:
    """The untrained network's gradient shrinks or grows by orders of magnitude from the last layer to
    the first (the seed's gradient check, before any update can be blamed). A layer with no gradient
    at all (a LoRA A matrix whose B starts at zero) is no vanishing gradient, and is left out."""
    r = probes.get("gradients_at_init")
    ratio = r.data.get("depth_ratio") if r else None
    if ratio is None or not 0 < ratio < math.inf:
        return []
    if 1 / BN_MASKED_RATIO <= ratio <= BN_MASKED_RATIO:
        return []
    code, kind = ("grad.vanishing", "shrinks") if ratio < 1 else ("grad.exploding", "grows")
    orders = abs(math.log10(ratio))
    evidence = {"first_over_last_grad_norm": ratio, "threshold": 1 / BN_MASKED_RATIO if ratio < 1 else BN_MASKED_RATIO,
                "at_init": True, "first_layer": r.data.get("first_layer"), "last_layer": r.data.get("last_layer")}
    return [Finding(code, "warning", 0.7, evidence=evidence, where=r.data.get("first_layer"),
                    remedy=f"At initialization the gradient {kind} {orders:.1f} orders of magnitude from "
                           f"{r.data.get('last_layer')} to {r.data.get('first_layer')}: re-initialize for the "
                           "activations (lossdoctor.model.apply_init(model): he_normal for ReLU, lecun_normal for "
                           "tanh/SELU), use ReLU-family activations, fewer layers or residual connections.")]


@check
def bad_initialization(probes: ProbeEvidence) -> list[Finding]:
    """A re-initialization (he_normal / lecun_normal) cuts the fit loss at equal steps."""
    cmp = compare(probes, "reinit")
    init = probes.get("initial_loss")
    ratio = init.data.get("ratio") if init else None
    reference = probes.run("ablation:lr_suggested" if cmp and cmp.get("compared_at_lr") else "baseline")
    if cmp and cmp["helps"] and _progress(reference) < INIT_MAX_PROGRESS:
        evidence = {**cmp, "initial_loss_ratio": ratio, "how": probes.get("ablation:reinit").data.get("how"),
                    "compared_run_progress": _progress(reference), "progress_threshold": INIT_MAX_PROGRESS}
        return [Finding("model.bad_init", "warning", _confidence(cmp["gain"]), evidence=evidence,
                        remedy="Re-initialize with he_normal for ReLU layers and lecun_normal for tanh/SELU "
                               f"(lossdoctor.model.apply_init(model)): the fit loss went {_fmt(cmp['baseline_loss'])} "
                               f"-> {_fmt(cmp['changed_loss'])} at equal steps.")]
    return []


@check
def initial_loss_far_off(probes: ProbeEvidence) -> list[Finding]:
    """The untrained model's loss far above its expected value (or NaN inputs/targets that make it so)."""
    init = probes.get("initial_loss")
    if not init:
        return []
    d = init.data
    if d.get("non_finite_inputs") or d.get("non_finite_targets"):
        return [Finding("data.non_finite", "error", 0.95,
                        evidence={"non_finite_inputs": d["non_finite_inputs"], "non_finite_targets": d["non_finite_targets"],
                                  "threshold": 0})]
    ratio = d.get("ratio")
    if ratio is None or ratio <= INITIAL_LOSS_FACTOR:
        return []
    evidence = {"initial_loss": d["initial_loss"], "expected_loss": d["expected_loss"], "ratio": ratio,
                "threshold": INITIAL_LOSS_FACTOR, "output_abs_max": d.get("output_abs_max")}
    if probes.facts.get("task") == "classification" and (d.get("output_abs_max") or 0) > LOGIT_HEADROOM_SHARE * EXP_OVERFLOW:
        return [Finding("model.logit_overflow", "warning", 0.7, evidence=evidence,
                        remedy=f"The untrained network already outputs logits up to {d['output_abs_max']:.3g} "
                               f"(exp overflows above {EXP_OVERFLOW}) and starts at {ratio:.1f}x the expected loss "
                               f"{d['expected_loss']:.3g}: remove the scale on the logits (temperature, a large "
                               "output init), keep the softmax inside the loss.")]
    if bad_initialization(probes):
        return []  # bad_initialization reports it with the re-initialization's evidence
    return [Finding("model.bad_init", "info", 0.4, evidence=evidence,
                    remedy=f"The initial loss is {ratio:.1f}x its expected value {d['expected_loss']:.3g}: the "
                           "first predictions are confidently wrong. Check the output activation and scale, "
                           "and the initialization (lossdoctor.model.apply_init(model)).")]


# The scaler skipped at least half of the steps: most updates were lost to non-finite gradients.
AMP_SKIPPED_SHARE = 0.5
# float16's largest finite value: activations or gradients beyond it overflow to Inf.
FLOAT16_MAX = 65504.0


@check
def mixed_precision_breaks_training(probes: ProbeEvidence) -> list[Finding]:
    """The same run in full precision trains where the mixed-precision run does not."""
    cmp = compare(probes, "full_precision")
    if not cmp or not cmp["helps"]:
        return []
    f = probes.facts
    base = probes.run("baseline") or {}
    skipped = base.get("skipped_share")
    evidence = {**cmp, "autocast": f.get("autocast"), "grad_scaler": f.get("grad_scaler"),
                "skipped_share": skipped, "skipped_share_threshold": AMP_SKIPPED_SHARE,
                "scale_start": base.get("scale_start"), "scale_end": base.get("scale_end"),
                "baseline_first_non_finite_step": base.get("first_non_finite_step")}
    lost = (skipped or 0) >= AMP_SKIPPED_SHARE or base.get("first_non_finite_step") is not None \
        or not math.isfinite(cmp["baseline_loss"])
    if f.get("grad_scaler") and skipped is not None:
        what = (f"the GradScaler skipped {skipped:.0%} of the steps (non-finite gradients) and its scale went "
                f"{_fmt(base.get('scale_start'))} -> {_fmt(base.get('scale_end'))}")
    elif f.get("autocast") == "float16":
        what = "without a GradScaler, float16 gradients below ~6e-8 round to zero and values above " \
               f"{FLOAT16_MAX:g} overflow"
    else:
        what = "bfloat16's 8-bit mantissa rounds small updates away"
    fix = ("values overflow float16 (max 65504) in the forward pass: train in bfloat16 (float32's range), or "
           "keep the overflowing part (a hand-written softmax or exp, a large sum) in float32 with "
           "torch.autocast(..., enabled=False) around it" if f.get("autocast") == "float16" else
           "keep float32 master weights (autocast over a float32 model, not model.to(torch.bfloat16))")
    return [Finding("optim.amp_scale_collapse", "error" if lost else "warning", _confidence(cmp["gain"], floor=0.6),
                    evidence=evidence,
                    remedy=f"Under {f.get('autocast')} {what}; the same run in full precision reached fit loss "
                           f"{_fmt(cmp['changed_loss'])} against {_fmt(cmp['baseline_loss'])}. The fix: {fix}.")]


@check
def optimizer_limits_progress(probes: ProbeEvidence) -> list[Finding]:
    """Another optimizer fits much better at equal steps, beyond what the learning rate alone explains."""
    cmp = compare(probes, "other_optimizer")
    if not cmp or not cmp["helps"]:
        return []
    lr_cmp = compare(probes, "lr_suggested")
    if lr_cmp and math.isfinite(lr_cmp["changed_loss"]) and cmp["changed_loss"] > (1 - HELPS_RELATIVE) * lr_cmp["changed_loss"]:
        return []  # the learning rate alone explains it
    return [Finding("optim.optimizer_choice", "info", _confidence(cmp["gain"], floor=0.5), evidence={**cmp, "user_optimizer": probes.facts.get("optimizer")},
                    remedy=f"Advisory: {cmp['label']} reached fit loss {_fmt(cmp['changed_loss'])} against "
                           f"{_fmt(cmp['baseline_loss'])} with {probes.facts.get('optimizer')} at equal steps; start with "
                           "Adam to get the loss down and consider SGD with momentum for the last epochs.")]


def _fixed_elsewhere(ev: ProbeEvidence, ref: float) -> list[str]:
    """Ablations that bring the full-data fit loss under FULL_NOT_FITTED: they explain a poor fit."""
    out = []
    for variant in ("lr_suggested", "no_regularization", "no_clipping", "reinit"):
        cmp = compare(ev, variant)
        if cmp and cmp["helps"] and cmp["changed_loss"] < FULL_NOT_FITTED * ref:
            out.append(variant)
    return out


@check
def too_much_data_for_the_model(probes: ProbeEvidence) -> list[Finding]:
    """A small subset is fitted, the full data is not, and its loss has plateaued (classification)."""
    sub, base, ref = probes.run("subset"), probes.run("baseline"), probes.reference_loss
    # Regression targets carry noise the model cannot fit at any size: a memorised subset against
    # a full-data loss at the noise floor is generalization, not capacity. Classification only.
    if not sub or not base or not ref or probes.facts.get("task") != "classification":
        return []
    s, b = _final(sub), _final(base)
    if not (s < SUBSET_FITTED * ref and math.isfinite(b) and FULL_NOT_FITTED * ref < b < NO_LEARNING * ref
            and b > SUBSET_GAP * s):
        return []
    if _fixed_elsewhere(probes, ref) or not _plateaued(base):
        return []
    val = base.get("val_loss")
    if val is not None and val >= NO_LEARNING * ref:
        return []  # nothing generalizes: no signal, not too much data (see nothing_learned_beyond_memorising)
    evidence = {"subset_rows": probes.get("subset").data["rows"], "subset_loss": s, "full_loss": b, "reference_loss": ref,
                "thresholds": {"subset_fitted": SUBSET_FITTED * ref, "full_not_fitted": FULL_NOT_FITTED * ref}}
    return [Finding("data.too_large", "warning", 0.6, evidence=evidence,
                    remedy=f"The model fits {evidence['subset_rows']} rows (loss {_fmt(s)}) but not the full data "
                           f"(loss {_fmt(b)}) at equal steps: start from a small sample and grow it, reduce the "
                           "feature or embedding size, or give the model more capacity (wider/deeper layers).")]


@check
def nothing_learned_beyond_memorising(probes: ProbeEvidence) -> list[Finding]:
    """A small subset is memorised while nothing generalizes beyond chance: the labels may not follow the inputs."""
    sub, base, ref = probes.run("subset"), probes.run("baseline"), probes.reference_loss
    if not sub or not base or not ref or probes.facts.get("task") != "classification":
        return []
    s, b = _final(sub), _final(base)
    val = base.get("val_loss")
    # with validation data: nothing generalizes beyond chance; without: the full data is not learned
    unlearned = (val >= NO_LEARNING * ref) if val is not None else (math.isfinite(b) and b >= NO_LEARNING * ref)
    if not (s < SUBSET_LEARNED * ref and unlearned) or _fixed_elsewhere(probes, ref):
        return []
    evidence = {"subset_loss": s, "full_loss": b, "val_loss": val, "reference_loss": ref, "threshold": NO_LEARNING * ref,
                "subset_learned_below": SUBSET_LEARNED * ref}
    return [Finding("data.no_signal", "warning", 0.6, evidence=evidence,
                    remedy="The model memorises a small subset but learns nothing on the full data (loss stays at "
                           f"{_fmt(b if val is None else val)}, chance {_fmt(ref)}): the labels may not follow from the features. Check the "
                           "label join and the feature extraction.")]


def _plateaued(run: dict) -> bool:
    steps, losses = run.get("fit_steps") or [], run.get("fit_losses") or []
    if len(losses) < 3 or not steps[-1]:
        return False
    cut = steps[-1] * (1 - PLATEAU_WINDOW)
    earlier = [v for s, v in zip(steps, losses) if s <= cut]
    if not earlier or not math.isfinite(losses[-1]) or not math.isfinite(earlier[-1]) or earlier[-1] <= 0:
        return False
    return (earlier[-1] - losses[-1]) / earlier[-1] < PLATEAU_MAX_DROP


def rule_out(ev: ProbeEvidence) -> list[RuledOut]:
    """Causes an experiment tested and found not to matter."""
    out: list[RuledOut] = []

    def add(code: str, by: str, evidence: dict) -> None:
        out.append(RuledOut(code, by, evidence))

    for variant, code in (("no_regularization", "model.regularization_too_strong"),
                          ("no_clipping", "optim.clipping_masks_lr"), ("reinit", "model.bad_init"),
                          ("full_precision", "optim.amp_scale_collapse")):
        cmp = compare(ev, variant)
        if cmp and not cmp["helps"] and not cmp.get("inconclusive"):
            by = f"probe:ablation:{variant}" + (f" at lr {cmp['compared_at_lr']:.2g}" if cmp.get("compared_at_lr") else "")
            add(code, by, {k: cmp[k] for k in ("baseline_loss", "changed_loss", "compared_at_lr") if k in cmp})
    cmp = compare(ev, "lr_suggested")
    if cmp and not cmp["helps"] and not cmp.get("inconclusive"):
        ev_lr = {"baseline_loss": cmp["baseline_loss"], "changed_loss": cmp["changed_loss"],
                 "suggested_lr": _suggested(ev), "user_lr": ev.facts.get("lr")}
        add("optim.lr_too_high", "probe:lr_range", ev_lr)
        add("optim.lr_too_low", "probe:lr_range", ev_lr)
    if ev.facts.get("grad_clip") is None:
        add("optim.clipping_masks_lr", "recipe", {"grad_clip": None})
    if not ev.facts.get("dropout") and not ev.facts.get("weight_decay"):
        add("model.regularization_too_strong", "recipe", {"dropout": 0, "weight_decay": 0})
    bn = ev.get("batchnorm_out")
    if bn and not batchnorm_masks_gradients(ev):
        add("grad.masked_by_batchnorm", "probe:batchnorm_out",
            {k: bn.data[k] for k in ("ratio_with_bn", "ratio_without_bn")})
    init = ev.get("initial_loss")
    if init and not init.data.get("non_finite_inputs") and not init.data.get("non_finite_targets"):
        add("data.non_finite", "probe:initial_loss", {"non_finite_inputs": 0, "non_finite_targets": 0})
    ob = ev.run("overfit_batch")
    ref = ev.reference_loss
    if ob and ref and _final(ob) > SUBSET_FITTED * ref:
        add("data.too_large", "probe:overfit_batch",
            {"one_batch_loss": _final(ob), "note": "not even one batch is fitted: the cause is the network, "
             "the loss or the optimizer, not the amount of data"})
    sub, base = ev.run("subset"), ev.run("baseline")
    if sub and base and ref and not too_much_data_for_the_model(ev) and \
            not any(r.code == "data.too_large" for r in out):
        add("data.too_large", "probe:subset", {"subset_loss": _final(sub), "full_loss": _final(base)})
    return out


INCONCLUSIVE_CODES = (("lr_suggested", ("optim.lr_too_high", "optim.lr_too_low")),
                      ("no_regularization", ("model.regularization_too_strong",)),
                      ("no_clipping", ("optim.clipping_masks_lr",)), ("reinit", ("model.bad_init",)),
                      ("full_precision", ("optim.amp_scale_collapse",)))


def inconclusive(ev: ProbeEvidence) -> list[dict[str, Any]]:
    """The experiments that could neither confirm nor rule out their cause: both runs failed."""
    out = []
    for variant, codes in INCONCLUSIVE_CODES:
        cmp = compare(ev, variant)
        if cmp and cmp.get("inconclusive"):
            out.append({"codes": list(codes), "by": f"probe:ablation:{variant}", "why": cmp["why_inconclusive"],
                        **{k: cmp[k] for k in ("baseline_loss", "changed_loss", "chance_loss", "compared_at_lr")
                           if k in cmp}})
    return out


def _suggested(ev: ProbeEvidence) -> float | None:
    r = ev.get("lr_range")
    return r.data.get("suggested_lr") if r else None


def _fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and not math.isfinite(x):
        return "non-finite"
    return f"{x:.3g}"


def _fmt_dropout(d: Any) -> str:
    if not d:
        return "none"
    return ", ".join(f"{name} {p:g}" for name, p in d)
