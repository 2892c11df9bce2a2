"""The differential: the last stage of every diagnosis. It puts each root cause above the symptoms
it explains, with the reasoning, and says which experiment separates two causes that both remain.

Every entry point (``diagnose`` on a log, ``watch``, the framework callbacks, ``check_model``,
``check_data``, ``checkup``) hands its findings here through ``registry.diagnose_evidence``.

How it decides:

1. **Settled speculation goes.** A curve check that cannot decide a cause from the log alone adds
   an info finding naming the experiment that would settle it. Where that experiment has run (the
   checkup's probes found the cause, ruled it out or could not decide), the hint is dropped; a
   cause the model or data checks named from structure alone, that its experiment ruled out on a
   baseline that trains, stays as info, with ``refuted_by``.
2. **Causes explain symptoms.** ``EXPLANATIONS`` lists, for each cause, the findings it produces and
   the evidence that must hold for the link (order in time, where the problem sits, how it was
   measured): a learning rate that is too high explains exploding gradients, logit overflow, the
   first NaN and units that died after the spike; inputs on a wrong scale explain logit overflow,
   exploding gradients and saturation; a bad initialization explains vanishing or exploding
   gradients at step 0; and so on. A symptom gets ``explained_by`` = its root's code; the root
   gets ``evidence["explains"][symptom] = reason``, rises to its worst symptom's severity (the cause
   of an error is an error) and gains a little confidence for each symptom it accounts for.
3. **Two causes that both explain a symptom** are ordered by their own evidence (severity, then
   confidence), and the one ranked first carries ``evidence["separating_experiment"]``: the run
   that tells them apart.

``findings.ranked`` then lists each root followed by its symptoms.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .findings import SEVERITY_RANK, Finding, ranked
from .registry import Evidence

LR_HIGH = "optim.lr_too_high"
LR_LOW = "optim.lr_too_low"
CLIP = "optim.clipping_masks_lr"
UNNORMALIZED = "data.unnormalized"
MIXED_UNITS = "data.mixed_units"
BAD_INIT = "model.bad_init"
ACTIVATION = "model.activation_mismatch"
LOGIT_OVERFLOW = "model.logit_overflow"
EXPLODING = "grad.exploding"
VANISHING = "grad.vanishing"
GRAD_NAN = "grad.non_finite"
NOT_ZEROED = "optim.grads_not_zeroed"
DEAD = "grad.dead_relu"
SATURATED = "grad.saturated_activation"
AMP = "optim.amp_scale_collapse"
DATA_NAN = "data.non_finite"
TOO_LARGE = "data.too_large"
NO_SIGNAL = "data.no_signal"
LABEL_NOISE = "data.label_noise"

# Confidence a root gains for each symptom it accounts for: one explanation covering several
# independent observations is more likely than one covering a single one; capped so that
# corroboration never makes a cause certain on its own.
CORROBORATION_BONUS = 0.05
CORROBORATED_CONFIDENCE_CAP = 0.95

Predicate = Callable[[Finding, Finding, Evidence], bool]


def _always(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    return True


def _step(finding: Finding, *keys: str) -> float | None:
    for key in keys:
        value = finding.evidence.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


# Evidence keys the checks may write so that the differential can order events in time.
ONSET_KEYS = ("onset_step", "divergence_step", "spike_step", "first_non_finite_step", "step")
FIRST_SEEN_KEYS = ("first_seen_step", "first_dead_step", "first_saturated_step")


def _not_before_the_rate_blew_up(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    """Units killed by a too-high rate die after its spike; units dead from the first look were not."""
    if symptom.evidence.get("at_init") or symptom.evidence.get("dead_at_first_look"):
        return False
    seen, onset = _step(symptom, *FIRST_SEEN_KEYS), _step(cause, *ONSET_KEYS)
    return seen is None or onset is None or seen >= onset


def _grew_during_training(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    """A symptom measured over time (not a depth ratio at initialization, nor the untrained output);
    a depth ratio only where it was seen healthy at step 0 and went off after the cause began."""
    if symptom.evidence.get("at_init") or symptom.source.startswith("probe:initial_loss"):
        return False
    if "first_over_last_grad_norm" in symptom.evidence and "growth" not in symptom.evidence:
        return _healthy_at_first_look_then_off(cause, symptom)
    return True


def _not_from_the_inputs(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    return symptom.evidence.get("produced_by") != "inputs"


def _before_any_update(finding: Finding) -> bool:
    """A NaN the watch saw at step 0 (exactly: not a read-out window's first step), in the forward pass
    or in the gradients of that step, came from the initial weights before the first update (an
    operation such as sqrt or log fed a value outside its domain): no learning rate can have caused it."""
    ev = finding.evidence
    return finding.code == GRAD_NAN and finding.source.startswith("watch:") and ev.get("step") == 0 \
        and ev.get("step_exact") is not False and ev.get("weights_finite") is not False


def _not_from_the_inputs_after_an_update(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    return _not_from_the_inputs(cause, symptom, evidence) and not _before_any_update(symptom)


def _from_the_inputs(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    produced_by = symptom.evidence.get("produced_by")
    return produced_by == "inputs" or (produced_by in (None, "unknown") and symptom.evidence.get("step") in (0, 1))


def _feature_scale(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    """The inputs' scale, not only the target's or a heavy tail's, and more than a note."""
    return cause.severity != "info" and cause.where != "target"


def _at_init(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    """A structural init finding explains what shows from the first steps (a depth ratio, the
    untrained output, units dead from the first look); not what appeared after a spike later on."""
    if not cause.source.startswith(("model:", "integration:")):
        return False  # the re-init ablation's bad_init names no mechanism: the mechanism explains it
    if symptom.evidence.get("at_init") or symptom.evidence.get("dead_at_first_look"):
        return True
    if symptom.source.startswith("probe:initial_loss"):
        return True
    return "first_over_last_grad_norm" in symptom.evidence or symptom.code in (VANISHING, DEAD, SATURATED)


def _large_next_to_the_weights(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    """A structural init finding explains a too-high rate that rests on update-to-weight ratios alone
    (no loss that blew up or collapsed): weights far below their scale make any update large next to
    them."""
    if not cause.source.startswith(("model:", "integration:")):
        return False
    ev = symptom.evidence
    return "largest_layer_ratio" in ev and not any(k in ev for k in ("spike_step", "learned_nothing", "died"))


def _reinit_ablation_only(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    """A bad_init known only because a re-initialization helped: the mechanism it cures (dead units,
    vanishing or exploding gradients) is the more specific diagnosis, and the re-init its evidence."""
    return symptom.source.startswith("probe:bad_initialization")


def _clip_kept_it_finite(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    """The clip hides a too-high rate when the run did not blow up: it learned slowly instead. A run
    that went NaN or diverged despite the clip has a rate problem the clip did not mask."""
    ev = symptom.evidence
    if ev.get("baseline_diverged") or ev.get("baseline_blew_up") or ev.get("baseline_first_non_finite_step") is not None:
        return False
    analysis = evidence.analysis
    return analysis is None or analysis.verdict not in ("non_finite", "diverging")


def _rate_blew_up_despite_clip(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    return not _clip_kept_it_finite(symptom, cause, evidence)


# The seed: "optimal learning rate can be between 0.0001 to 0.1". A rate inside that range that the
# range test still calls too high is too high for THESE inputs: standardized, they would take it.
# A rate outside it is suspect on its own, whatever the inputs.
USUAL_LR_RANGE = (1e-4, 0.1)


def user_lr(finding: Finding, evidence: Evidence) -> float | None:
    """The learning rate the user set, from the run's facts or the finding's own evidence."""
    if evidence.run is not None and evidence.run.lr:
        return float(evidence.run.lr)
    for key in ("user_lr", "lr_at_divergence", "lr_at_non_finite", "lr_at_spike", "peak_lr", "lr"):
        value = finding.evidence.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


# The logit check's flag: the first NaN is an exp() overflow located by the watch (monitor/checks.py
# writes it, the differential reads it).
NAN_FROM_OVERFLOW = "nan_from_overflow"


def _overflow_located(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    """The watch located the first NaN in an exp() overflow (the logit check's ``nan_from_overflow``);
    a gradient norm explained by it is one that turned NaN/Inf, not one that grew."""
    if not cause.evidence.get(NAN_FROM_OVERFLOW):
        return False
    return symptom.code != EXPLODING or "first_non_finite_step" in symptom.evidence


def _usual_rate(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    """Inputs far from unit scale make a usual rate too high; an unusual rate is its own cause."""
    lr = user_lr(symptom, evidence)
    return _feature_scale(cause, symptom, evidence) and lr is not None and \
        USUAL_LR_RANGE[0] <= lr <= USUAL_LR_RANGE[1]


def _subset_probe(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    return symptom.source.startswith("probe:too_much_data")


def _healthy_at_first_look_then_off(cause: Finding, symptom: Finding) -> bool:
    """The live monitor saw the gradient across depth healthy on its first look, at step 0 (the
    symptom's ``at_init`` is False and its ``ratio_at_first_look`` within the threshold), and off only
    from ``first_seen_step`` on, not before the cause began (its ``onset_step``)."""
    ev = symptom.evidence
    first_look, ratio, threshold = ev.get("first_look_step"), ev.get("ratio_at_first_look"), ev.get("threshold")
    if ev.get("at_init") is not False or first_look != 0 or not all(
            isinstance(v, (int, float)) for v in (ratio, threshold)):
        return False
    healthy = ratio >= threshold if symptom.code == VANISHING else ratio <= threshold
    seen, onset = _step(symptom, *FIRST_SEEN_KEYS), _step(cause, *ONSET_KEYS)
    return healthy and (seen is None or onset is None or seen >= onset)


def _vanished_after_init(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    """The gradient across depth was measured at initialization and it was healthy there (above the
    symptom's own threshold): the vanishing grew during training. The checkup measures it with a
    probe, the live monitor on its first look. Without that measurement a vanishing gradient may be
    structural (depth, activations), and the rate does not explain it."""
    if _healthy_at_first_look_then_off(cause, symptom):
        return True
    probes = evidence.probes
    init = probes.get("gradients_at_init") if probes is not None else None
    ratio = init.data.get("depth_ratio") if init else None
    threshold = symptom.evidence.get("threshold")
    return isinstance(ratio, (int, float)) and isinstance(threshold, (int, float)) and \
        threshold <= ratio < float("inf")


def _full_precision_trains(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    """The checkup ran the same recipe in full precision at the user's own rate and it trained: what
    went wrong is float16/bfloat16, not the rate or the model (their symptoms are precision's)."""
    probes = evidence.probes
    if probes is None or probes.get("ablation:full_precision") is None:
        return False
    from .probes.checks import compare, failed

    cmp = compare(probes, "full_precision")
    return bool(cmp and cmp["helps"] and not cmp.get("compared_at_lr")
                and not failed(probes, probes.run("ablation:full_precision")))


# Set on a watch's optim.amp_scale_collapse when the same watch saw no too-high update: the scaler's
# overflow is then the measured mechanism of the run's non-finite values, not the rate.
NO_TOO_HIGH_UPDATE_SEEN = "no_too_high_update_seen"


def _precision_measured_to_blame(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    """float16's range is to blame where full precision trains (the checkup's experiment), or where the
    watch measured the scaler overflowing on every step and no update too large: the non-finite
    gradients are the overflows the scaler skipped."""
    return _full_precision_trains(cause, symptom, evidence) or bool(cause.evidence.get(NO_TOO_HIGH_UPDATE_SEEN))


def _precision_not_to_blame(cause: Finding, symptom: Finding, evidence: Evidence) -> bool:
    return not _full_precision_trains(cause, symptom, evidence)


@dataclass(frozen=True)
class Explanation:
    """``cause`` explains ``symptom`` when ``holds``; ``why`` is the reasoning shown to the user."""

    cause: str
    symptom: str
    why: str
    holds: Predicate = _always


EXPLANATIONS: tuple[Explanation, ...] = (
    # Gradients never zeroed: each update applies the sum of every gradient so far, a step that grows
    # with time. Everything a too-high rate does, it does, and the rate itself only looks too high.
    *(Explanation(NOT_ZEROED, symptom, "every update applies the sum of all gradients so far, so the step "
                  "grows with time as a too-high rate's would") for symptom in (
        LR_HIGH, EXPLODING, LOGIT_OVERFLOW, GRAD_NAN, DEAD, SATURATED, VANISHING, AMP, CLIP)),
    # A learning rate that is too high (the seed: a spike, then NaN; exp(100) = Inf in the softmax).
    Explanation(LR_HIGH, EXPLODING, "each oversized step overshoots, and the next gradient is larger",
                _grew_during_training),
    Explanation(LR_HIGH, LOGIT_OVERFLOW, "oversized updates grow the output weights until exp() of the "
                "largest logit overflows", _grew_during_training),
    Explanation(LR_HIGH, GRAD_NAN, "the update that overflowed wrote NaN/Inf into the weights",
                _not_from_the_inputs_after_an_update),
    Explanation(LR_HIGH, DEAD, "an oversized update pushes the units below zero for every input and they "
                "never recover", _not_before_the_rate_blew_up),
    Explanation(LR_HIGH, SATURATED, "oversized updates drive the pre-activations into the flat tails of "
                "tanh/sigmoid", _not_before_the_rate_blew_up),
    Explanation(LR_HIGH, VANISHING, "oversized updates saturate the units (softmax, tanh/sigmoid, ReLU-family "
                "pushed below zero) and the gradient through them vanishes; at initialization it did not",
                _vanished_after_init),
    Explanation(LR_HIGH, AMP, "under float16 a too-high rate overflows the gradients on every step, so the "
                "scaler keeps halving its scale", _precision_not_to_blame),
    Explanation(LR_HIGH, CLIP, "the run blew up although the clip cut most steps: the rate itself is too "
                "high", _rate_blew_up_despite_clip),
    # Mixed precision whose range the values outgrow (float16 overflows above 65504, its exp above ~11):
    # where the same recipe trains in full precision at the same rate, the rate only looks too high.
    *(Explanation(AMP, symptom, why, _precision_measured_to_blame) for symptom, why in (
        (LR_HIGH, "the NaN/Inf come from float16's range, not from oversized updates: the rate only looks "
                  "too high because float16 overflows"),
        (LOGIT_OVERFLOW, "float16's exp() overflows above ~11, float32's above ~88: the same logits are finite "
                         "in full precision"),
        (GRAD_NAN, "the value that turned Inf overflows float16's range (largest finite 65504): the scaler "
                   "skips such steps and halves its scale"),
        (EXPLODING, "the gradient norms that blow up are float16 overflows, which the scaler skips"),
    )),
    # An exp() whose logits passed their dtype's limit: the watch located the NaN in that operation.
    Explanation(LOGIT_OVERFLOW, GRAD_NAN, "exp() of a logit past its dtype's limit is Inf, and Inf/Inf is NaN: "
                "the first NaN came from that operation on finite inputs and weights", _overflow_located),
    Explanation(LOGIT_OVERFLOW, EXPLODING, "the gradient norm is NaN/Inf because the overflow's NaN reached the "
                "gradients, not because it grew", _overflow_located),
    # Gradient clipping that hides a too-high rate (the seed: it makes the optimal rate hard to find).
    Explanation(CLIP, LR_HIGH, "the clip keeps the too-high rate from blowing up and makes it learn slowly "
                "and unstably instead", _clip_kept_it_finite),
    # Inputs on a wrong scale.
    *(Explanation(scale, LR_HIGH, "with inputs this far from unit scale, a usual learning rate is too high: "
                  "standardized inputs would take it", _usual_rate) for scale in (UNNORMALIZED, MIXED_UNITS)),
    *(Explanation(scale, symptom, why, _feature_scale) for scale in (UNNORMALIZED, MIXED_UNITS)
      for symptom, why in (
          (LOGIT_OVERFLOW, "inputs far from unit scale multiply through the layers into logits of that order"),
          (EXPLODING, "gradients scale with the inputs: features far from unit scale make them that much larger"),
          (SATURATED, "inputs far from unit scale push tanh/sigmoid pre-activations into their flat tails"),
          (DEAD, "gradients scale with the inputs: the first updates on inputs this far from unit scale are that "
                 "much larger and push ReLU units below zero for every input"),
      )),
    # A bad initialization: visible from the first steps.
    *(Explanation(BAD_INIT, symptom, "weights at the wrong scale shrink or grow the signal at every layer "
                  "from the first step", _at_init) for symptom in (VANISHING, EXPLODING, DEAD, SATURATED,
                                                                     LOGIT_OVERFLOW)),
    Explanation(BAD_INIT, LR_HIGH, "weights far below their usual scale make every update large next to "
                "them: the update-to-weight ratio is high although the rate may be fine", _large_next_to_the_weights),
    # ... unless all that says "init" is that a re-initialization helped: then the mechanism it cured
    # is the diagnosis, and the re-init's gain is evidence for it.
    *(Explanation(mechanism, BAD_INIT, "a re-initialization cured it, which is what re-initializing does to "
                  f"{what}", _reinit_ablation_only)
      for mechanism, what in ((DEAD, "dead units"), (VANISHING, "vanishing gradients"),
                              (EXPLODING, "exploding gradients"), (SATURATED, "saturated units"))),
    # An output layer that does not fit the loss: tiny gradients, saturation, any rate looks too low.
    Explanation(ACTIVATION, VANISHING, "a bounded activation where the loss expects raw scores passes back "
                "almost no gradient"),
    Explanation(ACTIVATION, SATURATED, "the activation that does not fit the layer saturates"),
    Explanation(ACTIVATION, LR_LOW, "the output layer and the loss do not fit, so the gradient is tiny and "
                "any rate looks too low"),
    # NaN in the data.
    Explanation(DATA_NAN, GRAD_NAN, "a NaN/Inf in the batch propagates to every output and gradient",
                _from_the_inputs),
    # Labels that carry no signal at all: every label-noise measure reads them as noise.
    Explanation(NO_SIGNAL, LABEL_NOISE, "labels unrelated to the inputs make identical inputs carry different "
                "labels and out-of-sample predictions disagree with most of them: the labels carry no signal, "
                "which is more than some noisy labels"),
    # A subset fitted but not the full data: the data, not its size, when its labels are the problem.
    *(Explanation(code, TOO_LARGE, why, _subset_probe) for code, why in (
        ("data.label_noise", "noisy labels can be memorised on a subset but not fitted on the whole set"),
        ("data.no_signal", "features without signal can be memorised on a subset but not learned"),
        (DATA_NAN, "NaN/Inf rows spoil the full data but may be absent from the subset"),
    )),
)

def _unusual_rate(first: Finding, second: Finding, evidence: Evidence) -> bool:
    lr = user_lr(first, evidence)
    return lr is not None and not USUAL_LR_RANGE[0] <= lr <= USUAL_LR_RANGE[1]


@dataclass(frozen=True)
class Precedence:
    """When both causes are roots and both explain a symptom, ``first`` comes first if ``holds``."""

    first: str
    second: str
    why: str
    holds: Predicate = _always


PRECEDENCE: tuple[Precedence, ...] = (
    # A rate outside the seed's usual range is wrong whatever the inputs: fix it first, then the scale.
    *(Precedence(LR_HIGH, scale, "the learning rate is outside the usual 1e-4..0.1 on its own", _unusual_rate)
      for scale in (UNNORMALIZED, MIXED_UNITS)),
)


def _goes_first(a: Finding, b: Finding, evidence: Evidence) -> bool:
    return any(p.first == a.code and p.second == b.code and p.holds(a, b, evidence) for p in PRECEDENCE)


# The run that tells two remaining causes apart, by pair (either order).
SEPARATING_EXPERIMENTS: dict[frozenset[str], str] = {
    frozenset({LR_HIGH, UNNORMALIZED}): "Standardize the inputs and rerun at the same learning rate: if the "
    "loss still blows up, the rate is too high; if it trains, the inputs' scale was the cause.",
    frozenset({LR_HIGH, MIXED_UNITS}): "Normalize each group separately (lossdoctor.GroupNormalizer) and rerun "
    "at the same rate: if it still blows up, lower the rate.",
    frozenset({LR_HIGH, BAD_INIT}): "Rerun with lossdoctor.model.apply_init(model) at the same rate: if the "
    "gradients still blow up after the first steps, the rate is too high.",
    frozenset({UNNORMALIZED, BAD_INIT}): "Standardize the inputs and rerun with the same initialization: if "
    "the gradients are still off at step 0, re-initialize.",
    frozenset({LR_HIGH, ACTIVATION}): "Fix the output layer and rerun at the same rate: if it still blows up, "
    "lower the rate.",
    frozenset({BAD_INIT, ACTIVATION}): "Fix the activation first (it is structural), then re-check the "
    "gradients at step 0.",
    frozenset({AMP, LR_HIGH}): "Rerun the same recipe in float32 at the same rate (or `lossdoctor checkup`, "
    "which does): if it trains, float16's range was the cause; if it still blows up, lower the rate.",
}


def separating_experiment(a: str, b: str) -> str:
    return SEPARATING_EXPERIMENTS.get(frozenset({a, b}),
                                      f"Fix {a} alone and rerun: if the symptoms remain, {b} is the cause.")


# ------------------------------------------------------------------------------------------------


def _settled_codes(evidence: Evidence) -> set[str]:
    """Codes an experiment of the checkup has decided (found, ruled out, or found inconclusive)."""
    probes = evidence.probes
    if probes is None:
        return set()
    from .probes.checks import inconclusive, rule_out

    settled = {r.code for r in rule_out(probes)}
    settled |= {code for u in inconclusive(probes) for code in u["codes"]}
    if probes.get("lr_range"):
        settled |= {LR_HIGH, LR_LOW}
    return settled


# Causes that exclude each other: where one is established (a warning or an error), a curve check's
# hint that the other "may" be the cause is settled (a rate cannot be too high and too low at once).
EXCLUDES = {LR_HIGH: LR_LOW, LR_LOW: LR_HIGH}


def _updates_were_large(evidence: Evidence) -> bool:
    """The live monitor measured updates too large, or a blow-up: whatever else is wrong, such a run
    does not say that its rate is too low."""
    if evidence.stats is None:
        return False
    from .monitor.checks import updates_were_large

    return updates_were_large(evidence.stats)


def _drop_settled_speculation(findings: list[Finding], evidence: Evidence) -> list[Finding]:
    """A curve check's info hint ("not settled by the log: try X") is dropped once X has run, once X is
    established by a finding of its own (the hint would list the cause twice), or once a cause that
    excludes X is established (a too-low rate, also once the watch saw large updates)."""
    settled = _settled_codes(evidence) | {f.code for f in findings if f.source.startswith("probe:")}
    settled |= {f.code for f in findings if f.severity != "info"}
    settled |= {EXCLUDES[f.code] for f in findings if f.code in EXCLUDES and f.severity != "info"}
    if _updates_were_large(evidence):
        settled.add(LR_LOW)
    return [f for f in findings
            if not (f.severity == "info" and f.source.startswith("curves:") and f.code in settled)]


def _demote_refuted(findings: list[Finding], evidence: Evidence) -> None:
    """A cause the model or data checks name from structure alone, that its experiment in the checkup
    ruled out on a baseline that trains (a failing baseline may hide one cause behind another), is
    kept as the fact it is, not as a cause: it becomes info, with the experiment that refuted it (a
    zero-initialized LoRA B matrix is "all-zero weights", and the recipe trains). The comparison must
    have been made against a run that trains: the user's, or the one at the suggested rate."""
    probes = evidence.probes
    if probes is None:
        return
    from .probes.checks import failed, rule_out

    refuted = {r.code: r for r in rule_out(probes) if r.by.startswith("probe:")}
    for f in findings:
        r = refuted.get(f.code)
        if r is None or f.severity == "info" or not f.source.startswith(("model:", "data:")):
            continue
        # the run the experiment was compared against: the user's, or the one at the suggested rate
        reference = probes.run("ablation:lr_suggested" if r.evidence.get("compared_at_lr") else "baseline")
        if reference and not failed(probes, reference):
            f.severity = "info"
            f.evidence["refuted_by"] = {"experiment": r.by, **r.evidence}


def _demote_curve_guesses(findings: list[Finding], codes: set[str], refuted_by: dict) -> None:
    """A curve check's guess (``curves:`` source) at one of ``codes`` that a measurement refuted stays
    as info, with the measurement that refuted it."""
    for f in findings:
        if f.code in codes and f.source.startswith("curves:") and f.severity != "info":
            f.severity = "info"
            f.evidence["refuted_by"] = dict(refuted_by)


def _demote_nan_guesses_the_watch_refuted(findings: list[Finding]) -> None:
    """A curve only guesses why its loss became NaN (the rate, the data); the watch that located the
    first NaN settles it: produced by an operation of the model from finite inputs, it was not the
    data; at step 0, from the initial weights, it came before any update, so not the rate."""
    located = next((f for f in findings if f.code == GRAD_NAN and f.source.startswith("watch:")
                    and (f.evidence.get("inputs_finite") is True or _before_any_update(f))), None)
    if located is None:
        return
    refuted = ({DATA_NAN} if located.evidence.get("inputs_finite") is True else set()) \
        | ({LR_HIGH} if _before_any_update(located) else set())
    _demote_curve_guesses(findings, refuted, {
        "finding": located.source, "step": located.evidence.get("step"), "module": located.evidence.get("module"),
        "inputs_finite": located.evidence.get("inputs_finite"), "weights_finite": located.evidence.get("weights_finite")})


def _demote_the_rate_guess_a_measured_mechanism_explains(findings: list[Finding]) -> None:
    """The watch measures what turned a run NaN and both suspects of the curve's "a NaN loss is usually
    the rate": the mechanism (a float16 grad scaler overflowing on every step, or an exp() overflow
    its replay located in the operation that took the logits) and the updates (spikes, the
    update-to-weight ratio). When it measured the mechanism and no too-high update, the rate guess is
    one the measurements do not support: it stays as info, with what refuted it."""
    if any(f.code == LR_HIGH and f.source.startswith("watch:") for f in findings):
        return
    for f in findings:
        if not f.source.startswith("watch:"):
            continue
        if f.code == AMP and f.severity != "info":
            f.evidence[NO_TOO_HIGH_UPDATE_SEEN] = True
            refuted_by = {"separating_experiment": separating_experiment(AMP, LR_HIGH)}
        elif f.code == LOGIT_OVERFLOW and f.evidence.get(NAN_FROM_OVERFLOW):
            refuted_by = {"largest_logit": f.evidence.get("logit_at_nan"), "dtype": f.evidence.get("dtype")}
        else:
            continue
        _demote_curve_guesses(findings, {LR_HIGH}, {  # the first mechanism demotes; later ones find info
            "finding": f.source, "watched_updates": "no too-high update seen", **refuted_by})


def _rank_key(f: Finding) -> tuple:
    return f.sort_key()


def differential(findings: list[Finding], evidence: Evidence) -> list[Finding]:
    """The findings with each symptom under its root cause, ranked (see the module docstring)."""
    findings = _drop_settled_speculation(list(findings), evidence)
    _demote_refuted(findings, evidence)
    _demote_the_rate_guess_a_measured_mechanism_explains(findings)
    _demote_nan_guesses_the_watch_refuted(findings)
    for f in findings:
        f.explained_by = None
    serious = [f for f in findings if f.severity != "info"]
    # the candidate roots of each symptom, by the table; a finding is never its own cause
    candidates: dict[int, list[tuple[Finding, Explanation]]] = {}
    for rule in EXPLANATIONS:
        causes = [c for c in serious if c.code == rule.cause]
        if not causes:
            continue
        for symptom in findings:
            if symptom.code != rule.symptom:
                continue
            for cause in causes:
                if cause is not symptom and rule.holds(cause, symptom, evidence):
                    candidates.setdefault(id(symptom), []).append((cause, rule))
    # decide, most serious symptoms first, refusing links that would make a cycle
    by_id = {id(f): f for f in findings}
    root_of: dict[int, Finding] = {}

    def root(f: Finding) -> Finding:
        seen = set()
        while id(f) in root_of and id(f) not in seen:
            seen.add(id(f))
            f = root_of[id(f)]
        return f

    for sid in sorted(candidates, key=lambda i: _rank_key(by_id[i])):
        symptom = by_id[sid]
        options = sorted(candidates[sid], key=lambda cr: _rank_key(cr[0]))
        options = [(c, r) for c, r in options if root(c) is not symptom]  # no cycles
        if not options:
            continue
        for i, (c, r) in enumerate(options):  # a precedence rule overrides the plain ranking
            if i and _goes_first(c, options[0][0], evidence):
                options.insert(0, options.pop(i))
        cause, rule = options[0]
        root_of[sid] = cause
        cause.evidence.setdefault("explains", {})[symptom.code] = rule.why
        others = [c.code for c, _ in options[1:] if c.code != cause.code]
        if others:
            cause.evidence["also_possible"] = sorted(set(cause.evidence.get("also_possible", [])) | set(others))
            cause.evidence["separating_experiment"] = separating_experiment(cause.code, others[0])
    # every symptom hangs under its ultimate root; roots inherit their worst symptom's severity
    for sid, cause in root_of.items():
        symptom, top = by_id[sid], root(cause)
        symptom.explained_by = top.code
        if top is not cause:
            top.evidence.setdefault("explains", {}).setdefault(symptom.code, cause.evidence["explains"][symptom.code])
        if SEVERITY_RANK[symptom.severity] < SEVERITY_RANK[top.severity]:
            top.severity = symptom.severity
        top.confidence = min(CORROBORATED_CONFIDENCE_CAP, top.confidence + CORROBORATION_BONUS) \
            if top.confidence < CORROBORATED_CONFIDENCE_CAP else top.confidence
    _order_roots_by_precedence([f for f in findings if id(f) not in root_of], evidence)
    return ranked(findings)


def _order_roots_by_precedence(roots: list[Finding], evidence: Evidence) -> None:
    """A root that a precedence rule puts first is ranked first: it takes the other's severity and
    just more than its confidence (the ranking is by severity, then confidence)."""
    for first in roots:
        for second in roots:
            if first is second or not _goes_first(first, second, evidence) or first.sort_key() < second.sort_key():
                continue
            if SEVERITY_RANK[second.severity] < SEVERITY_RANK[first.severity]:
                first.severity = second.severity
            first.confidence = min(1.0, max(first.confidence, second.confidence + 0.01))
            first.evidence["ranked_before"] = {second.code: next(
                p.why for p in PRECEDENCE if p.first == first.code and p.second == second.code)}


__all__ = ["differential", "EXPLANATIONS", "Explanation", "SEPARATING_EXPERIMENTS", "separating_experiment"]
