"""Checks that need the evidence of several rooms at once (the curves with the run's settings)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .findings import Finding
from .registry import check

if TYPE_CHECKING:
    from .curves.verdict import CurveAnalysis
    from .evidence import RunFacts
    from .model.facts import ModelFacts

# The seed: dropout 0.5 on every fully connected layer kept the training loss within 0.2 of its
# start until dropout was removed. At 0.5 and above, half or more of the units are dropped.
HIGH_DROPOUT_RATE = 0.5
# Verdicts that say the model does not fit its training data (what too strong regularization does).
NOT_FITTING_VERDICTS = ("underfitting", "stalled")
# On a run that trains, high dropout can still hide how well the model fits (the seed's "regularization
# blinding your sight"): the training loss is measured with units dropped, the validation loss without.
# Two signs that it does, either enough for a hint (only the experiment, dropout off, settles it):
# the training loss ends 20 % or more above the validation loss (a model fits its own training data at
# least as well as held-out data, so a training loss above it is the dropout's doing) ...
DROPOUT_HIDES_FIT_GAP = 1.2
# ... or it fell by less than half from its start (a network that trains on a learnable task usually
# falls much further; the floor is unknown, so this alone is a hint, never a verdict).
LITTLE_PROGRESS_SHARE = 0.5


def dropout_rates(run: "RunFacts | None", model: "ModelFacts | None") -> dict[str, float]:
    """Dropout rate by layer, from the run's facts or the inspected model (whichever knows)."""
    rates: dict[str, float] = dict(run.dropout) if run is not None else {}
    if model is not None:
        for d in model.regularization.dropout:
            rates.setdefault(str(d.get("name")), float(d.get("p", 0.0)))
    return rates


@check
def dropout_keeps_the_model_from_fitting(analysis: "CurveAnalysis", run: "RunFacts | None" = None,
                                         model: "ModelFacts | None" = None) -> list[Finding]:
    """``model.regularization_too_strong`` when the run did not fit its data and dropout is high
    (seen with the model and the curves together: neither shows it alone)."""
    rates = dropout_rates(run, model)
    high = {name: rate for name, rate in rates.items() if rate >= HIGH_DROPOUT_RATE}
    if not high:
        return []
    names = sorted(high)
    shown = ", ".join(f"{n} ({high[n]:g})" for n in names[:6]) + (" ..." if len(names) > 6 else "")
    share = len(high) / max(len(rates), 1)
    if analysis.verdict == "converging":
        return _dropout_may_hide_the_fit(analysis, high, shown)
    if analysis.verdict not in NOT_FITTING_VERDICTS:
        return []
    return [Finding(
        "model.regularization_too_strong", "warning", min(0.9, 0.5 + 0.4 * share),
        title=(f"The loss does not fall ({analysis.verdict}) and {len(high)} dropout layer(s) drop half or more "
               "of their units"),
        evidence={"verdict": analysis.verdict, "dropout_rates": dict(high), "threshold": HIGH_DROPOUT_RATE,
                  "dropout_layers": len(rates)},
        remedy=(f"Set dropout to 0 in {shown} until the training loss falls, then add it back gradually "
                "(0.1, then 0.2) while watching the validation loss."),
    )]


def _dropout_may_hide_the_fit(analysis: "CurveAnalysis", high: dict[str, float], shown: str) -> list[Finding]:
    """A converging run with high dropout whose training loss stays above its validation loss, or fell
    little: a hint with the experiment that settles it (see DROPOUT_HIDES_FIT_GAP)."""
    ev = analysis.evidence
    train_end, val_end, drop = ev.get("end_level"), ev.get("val_end"), ev.get("relative_drop")
    above_val = isinstance(train_end, (int, float)) and isinstance(val_end, (int, float)) and val_end > 0 \
        and train_end >= DROPOUT_HIDES_FIT_GAP * val_end
    little = isinstance(drop, (int, float)) and drop < LITTLE_PROGRESS_SHARE
    if not (above_val or little):
        return []
    evidence = {"verdict": analysis.verdict, "dropout_rates": dict(high), "threshold": HIGH_DROPOUT_RATE,
                "train_loss_end": train_end, "relative_drop": drop,
                "thresholds": {"train_over_val": DROPOUT_HIDES_FIT_GAP, "relative_drop": LITTLE_PROGRESS_SHARE}}
    if isinstance(val_end, (int, float)):
        evidence["val_loss_end"] = val_end
    seen = (f"the training loss ends at {train_end:.3g}, above the validation loss ({val_end:.3g}) that runs "
            "without dropout" if above_val else f"the training loss fell only {drop:.0%} from its start")
    return [Finding(
        "model.regularization_too_strong", "info", 0.45,
        title=f"Dropout may be hiding how well the model fits: {seen}",
        evidence=evidence,
        remedy=(f"Experiment that settles it: train a few hundred steps with dropout 0 in {shown}. If the "
                "training loss then falls well below where it is now, the dropout is too strong: bring it back "
                "gradually (0.1, then 0.2) while watching the validation loss."),
    )]
