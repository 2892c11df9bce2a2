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
    if not high or analysis.verdict not in NOT_FITTING_VERDICTS:
        return []
    names = sorted(high)
    shown = ", ".join(f"{n} ({high[n]:g})" for n in names[:6]) + (" ..." if len(names) > 6 else "")
    share = len(high) / max(len(rates), 1)
    return [Finding(
        "model.regularization_too_strong", "warning", min(0.9, 0.5 + 0.4 * share),
        title=(f"The loss does not fall ({analysis.verdict}) and {len(high)} dropout layer(s) drop half or more "
               "of their units"),
        evidence={"verdict": analysis.verdict, "dropout_rates": dict(high), "threshold": HIGH_DROPOUT_RATE,
                  "dropout_layers": len(rates)},
        remedy=(f"Set dropout to 0 in {shown} until the training loss falls, then add it back gradually "
                "(0.1, then 0.2) while watching the validation loss."),
    )]
