"""The checkup judges against chance level: a baseline that ends there is not "converging", and an
ablation whose two runs both failed is re-run at the suggested rate or reported inconclusive, never
"ruled out". Its probe lengths can be pinned so that the outcome does not depend on the machine."""
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

from lossdoctor._checkup import checkup
from lossdoctor.curves import analyze_curves
from lossdoctor.evidence import Curves
from lossdoctor.probes.checks import (
    ProbeEvidence,
    compare,
    inconclusive,
    regularization_too_strong,
    rule_out,
)
from lossdoctor.probes.result import ProbeResult

STEPS = 200
PINNED = dict(budget_s=60.0, steps=STEPS, cross_validate=False, progress=False)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X.astype(np.float32), y, test_size=0.2, random_state=0, stratify=y)


def _broken_demo_recipe(digits):
    """lossdoctor's demo network: pixels x16 unstandardized, dropout 0.9, SGD momentum at lr 1.0."""
    X_train, _, y_train, _ = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.9), nn.Linear(128, 128), nn.ReLU(),
                          nn.Dropout(0.9), nn.Linear(128, 10))
    X = torch.tensor(X_train * 16.0)
    return model, (X, torch.tensor(y_train)), torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)


def test_a_baseline_that_blows_up_and_settles_at_chance_is_not_converging_and_proves_no_ablation(digits):
    model, train, opt = _broken_demo_recipe(digits)
    report = checkup(model, train, nn.CrossEntropyLoss(), opt, epochs=15, batch_size=64, **PINNED)
    chance = report.metadata["chance_loss"]
    assert chance == pytest.approx(math.log(10), rel=0.01)
    base = report.metadata["probes"]["baseline"]["run"]
    assert base["final_loss"] >= 0.9 * chance  # the premise: the run learned nothing
    assert report.verdict in ("stalled", "underfitting", "diverging"), report.verdict
    assert report.metadata["curve_evidence"]["chance_level"] == pytest.approx(chance, rel=1e-4)
    # both runs of the dropout ablation failed at lr 1.0: never "ruled out" on that evidence
    ruled = {r.code: r for r in report.ruled_out}
    undecided = {c for u in report.metadata["inconclusive"] for c in u["codes"]}
    reg = "model.regularization_too_strong"
    by = ruled[reg].by if reg in ruled else ""
    assert reg not in ruled or "at lr" in by
    assert reg in undecided or report.has(reg, "warning") or "at lr" in by
    # the re-run at the range test's suggested rate happened, and its curves are in the report
    assert report.metadata["probes"]["ablation:no_regularization@suggested_lr"]["ran"]
    assert not ({"optim.lr_too_high", "optim.lr_too_low"} & set(ruled))
    # ... and the range test alone still names the rate: lr 1.0 is a decade past its loss minimum
    high = [f for f in report.findings if f.code == "optim.lr_too_high" and f.source == "probe:learning_rate_off"]
    assert high and high[0].severity == "error", report.codes  # ranked above the symptoms it produces
    assert report.top.code == "optim.lr_too_high"
    past = high[0].evidence["user_lr"] / high[0].evidence["min_loss_lr"]
    assert past == pytest.approx(high[0].evidence["past_min_factor"], rel=1e-6) or past > high[0].evidence["past_min_factor"]
    assert high[0].evidence["confirmed"] is False
    # the range test ran: the curve analysis' "an LR range test would settle it" advice is dropped,
    # so the report never says "too high" and "maybe too low" at once
    assert not report.has("optim.lr_too_low"), [(f.code, f.source) for f in report.findings]


def test_a_healthy_recipe_with_light_dropout_still_rules_regularization_out_by_experiment(digits):
    X_train, X_val, y_train, y_val = digits
    scaler = StandardScaler().fit(X_train)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10))
    report = checkup(model, (torch.tensor(scaler.transform(X_train), dtype=torch.float32), torch.tensor(y_train)),
                     nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=1e-3),
                     val=(torch.tensor(scaler.transform(X_val), dtype=torch.float32), torch.tensor(y_val)), **PINNED)
    assert report.verdict == "converging" and report.warnings() == []
    assert report.metadata["curve_evidence"]["chance_level"] > report.metadata["curve_evidence"]["end_level"]
    by = {r.code: r.by for r in report.ruled_out}
    assert by["model.regularization_too_strong"] == "probe:ablation:no_regularization"
    assert report.metadata["inconclusive"] == []


def _curve(values, chance=None):
    curves = Curves(run="r", source="test", meta={"chance_loss": chance} if chance is not None else {})
    curves.add("train_loss", np.arange(1, len(values) + 1), values)
    return analyze_curves(curves)


def test_the_curve_verdict_uses_the_chance_level_it_is_given():
    rng = np.random.default_rng(0)
    steps = np.arange(300)
    # a start inflated by unscaled inputs, a blow-up, then flat at ln 10 with minibatch noise
    blown = np.where(steps < 20, 15.0, np.where(steps < 80, 1e30, math.log(10))) + rng.normal(0, 0.02, 300)
    # without the context the fall from 15 would look like progress: the long flat stretch at ln 10 gives
    # the chance level away, at a lower confidence than when it is given
    inferred = _curve(blown)
    assert inferred.verdict == "stalled" and inferred.evidence["chance_classes"] == 10
    told = _curve(blown, chance=math.log(10))
    assert told.verdict == "stalled" and told.evidence["chance_level"] == pytest.approx(math.log(10), rel=1e-5)
    assert told.evidence["ended_at_chance"] is True
    assert told.evidence["verdict_confidence"] > inferred.evidence["verdict_confidence"]
    healthy = 2.3 * np.exp(-steps / 40) + 0.05 + rng.normal(0, 0.02, 300)
    fine = _curve(healthy, chance=math.log(10))
    assert fine.verdict == "converging" and "ended_at_chance" not in fine.evidence


def _run(name, final, **data):
    return ProbeResult(name, data={"run": {"final_loss": final, "start_loss": 15.0}, "label": name, **data})


def test_an_ablation_where_both_runs_fail_is_judged_at_the_suggested_rate_or_left_inconclusive():
    chance = math.log(10)
    base = {"initial_loss": ProbeResult("initial_loss", data={"expected_loss": chance, "chance_loss": chance}),
            "baseline": _run("baseline", 2.35), "ablation:no_regularization": _run("no_reg", 2.35),
            "ablation:lr_suggested": _run("lr", 2.30, lr=0.01)}
    facts = {"dropout": [("drop1", 0.9)], "weight_decay": 0.0}
    # no re-run: inconclusive, neither found nor ruled out
    ev = ProbeEvidence(dict(base), facts)
    assert compare(ev, "no_regularization")["inconclusive"] and regularization_too_strong(ev) == []
    assert "model.regularization_too_strong" not in {r.code for r in rule_out(ev)}
    assert [u["codes"] for u in inconclusive(ev)][:2] == [["optim.lr_too_high", "optim.lr_too_low"],
                                                          ["model.regularization_too_strong"]]
    # the re-run at the suggested rate fits: dropout is the cause, with the rate in the evidence
    ev = ProbeEvidence({**base, "ablation:no_regularization@suggested_lr": _run("no_reg@lr", 0.3)}, facts)
    found = regularization_too_strong(ev)
    assert [f.code for f in found] == ["model.regularization_too_strong"]
    assert found[0].evidence["compared_at_lr"] == 0.01 and "0.01" in found[0].remedy
    # the re-run fails too: still inconclusive
    ev = ProbeEvidence({**base, "ablation:no_regularization@suggested_lr": _run("no_reg@lr", math.inf)}, facts)
    assert compare(ev, "no_regularization")["inconclusive"] and regularization_too_strong(ev) == []
    # the twin: a baseline that learned and a change that does not help is ruled out as before
    ev = ProbeEvidence({**base, "baseline": _run("baseline", 0.2), "ablation:no_regularization": _run("n", 0.19)},
                       facts)
    assert "model.regularization_too_strong" in {r.code for r in rule_out(ev)}


def test_pinned_steps_give_the_same_diagnosis_whatever_the_budget(digits):
    X_train, _, y_train, _ = digits
    X = torch.tensor(StandardScaler().fit_transform(X_train), dtype=torch.float32)
    outcomes = []
    for budget in (30.0, 90.0):  # the unpinned planner would size the runs 3x longer in the second
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.8), nn.Linear(64, 10))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.5)
        report = checkup(model, (X, torch.tensor(y_train)), nn.CrossEntropyLoss(), opt,
                         **{**PINNED, "budget_s": budget})
        probes = report.metadata["probes"]
        outcomes.append((report.metadata["steps_per_run"], report.codes, report.verdict,
                         {n: p["run"]["final_loss"] for n, p in probes.items() if "run" in p}))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == STEPS and outcomes[0][1][0] == "model.regularization_too_strong"
