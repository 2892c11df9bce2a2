"""checkup() end to end on real small models and scikit-learn's digits: faults, healthy twins,
safety of the user's objects, the remedies, bad input."""
import copy
import json
import random

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler
from torch import nn

from lossdoctor._checkup import checkup, checkup_from_file
from lossdoctor.errors import InputError

# Every probe run is pinned to this many steps (enough for the digits MLPs to separate a fault from
# its fix), so that the outcome is the same on a fast or a slow machine; the budget only caps, and
# is generous enough that a slow, shared 2-core machine never reaches it.
STEPS = 300
BUDGET = 60.0
# The data checks' cross-validated baseline (permutation test, cleanlab) is tested in tests/data.
PINNED = dict(budget_s=BUDGET, steps=STEPS, cross_validate=False, progress=False)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    X, y = torch.tensor(X), torch.tensor(y)
    return (X[:1200], y[:1200]), (X[1200:], y[1200:])


def mlp(dropout=0.0):
    torch.manual_seed(0)
    layers = [nn.Linear(64, 64), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(64, 10))


def train_loss(model, opt, train, steps=300, clip=None, seed=0):
    """Plain training loop, as a user would run the recipe; returns the final full-data loss."""
    X, y = train
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(steps):
        idx = torch.randint(0, len(X), (64,), generator=g)
        opt.zero_grad()
        loss = loss_fn(model(X[idx]), y[idx])
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
    model.eval()
    with torch.no_grad():
        return float(loss_fn(model(X), y))


def test_checkup_leaves_model_optimizer_data_and_rng_bit_identical(digits):
    train, val = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    train_loss(model, opt, train, steps=3)  # the optimizer has state (moments, step counts)
    model.train()
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    before = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()), train[0].clone(), train[1].clone(),
              torch.get_rng_state(), np.random.get_state(), random.getstate(), model.training)
    checkup(model, train, nn.CrossEntropyLoss(), opt, val=val, grad_clip=1.0, **PINNED)
    sd, osd, X, y, trng, nrng, prng, mode = before
    assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items())
    after_opt = opt.state_dict()
    assert after_opt["param_groups"] == osd["param_groups"]
    for k, st in osd["state"].items():
        assert all(torch.equal(st[n], after_opt["state"][k][n]) for n in st)
    assert torch.equal(train[0], X) and torch.equal(train[1], y)
    assert torch.equal(torch.get_rng_state(), trng)
    assert all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
               for a, b in zip(np.random.get_state(), nrng))
    assert random.getstate() == prng
    assert model.training == mode
    assert opt.param_groups[0]["params"][0] is next(model.parameters())


def test_healthy_recipe_comes_out_without_warning_and_rules_causes_out(digits):
    train, val = digits
    model = mlp()
    report = checkup(model, train, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=1e-3),
                     val=val, **PINNED)
    assert report.warnings() == [], [f.code for f in report.warnings()]
    ruled = {r.code for r in report.ruled_out}
    assert {"optim.clipping_masks_lr", "model.regularization_too_strong", "model.bad_init"} <= ruled
    assert report.plots["lr_range"]["suggested_lr"] > 0
    assert len(report.plots["lr_range"]["lrs"]) == len(report.plots["lr_range"]["losses"])
    assert report.plots["ablations"]["baseline"]["losses"]
    assert all(r["label"] and r["losses"] for r in report.plots["ablations"]["runs"])
    # the rooms that ran along bring their plots: the data checks' and the live monitor's
    assert report.plots["feature_scales"]["features"] and len(report.plots["feature_scales"]["std"]) == 64
    assert report.plots["grad_norms"]["layers"] and report.plots["dead_units"]["layers"]
    json.loads(report.to_json())  # JSON-able, same schema as diagnose


FAULTS = {
    # cause: (build the faulty recipe, apply the top finding's remedy to it)
    "optim.lr_too_low": (
        lambda: (mlp(), dict(opt="sgd", lr=1e-4), None),
        lambda top, model, kw, clip: (model, {**kw, "lr": top.evidence["suggested_lr"]}, clip)),
    "model.regularization_too_strong": (
        lambda: (mlp(dropout=0.8), dict(opt="adamw", lr=1e-3, weight_decay=0.5), None),
        lambda top, model, kw, clip: (_no_dropout(model), {**kw, "weight_decay": 0.0}, clip)),
    "optim.clipping_masks_lr": (
        lambda: (mlp(), dict(opt="sgd", lr=0.1, momentum=0.9), 0.005),
        lambda top, model, kw, clip: (model, kw, None)),
}


def _no_dropout(model):
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


def _optimizer(model, kw):
    kw = dict(kw)
    cls = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}[kw.pop("opt")]
    return cls(model.parameters(), **kw)


@pytest.mark.parametrize("cause", sorted(FAULTS))
def test_top_finding_names_the_fault_and_its_remedy_makes_the_loss_fall(digits, cause):
    train, val = digits
    make, fix = FAULTS[cause]
    model, kw, clip = make()
    report = checkup(model, train, nn.CrossEntropyLoss(), _optimizer(model, kw), val=val, grad_clip=clip, **PINNED)
    assert report.top is not None and report.top.code == cause, report.codes
    assert report.top.evidence and report.top.remedy
    model_a, kw_a, clip_a = make()
    before = train_loss(model_a, _optimizer(model_a, kw_a), train, clip=clip_a)
    model_b, kw_b, clip_b = fix(report.top, *make())
    after = train_loss(model_b, _optimizer(model_b, kw_b), train, clip=clip_b)
    assert after < 0.6 * before, (before, after)


def test_a_tiny_budget_skips_probes_with_a_note_and_lossdoctor_checkup_is_callable(digits):
    import lossdoctor

    train, _ = digits
    model = mlp()
    report = lossdoctor.checkup(model, train, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=1e-3),
                                budget_s=0.05, progress=True)
    skipped = [n for n, p in report.metadata["probes"].items() if not p["ran"]]
    assert any("budget" in report.metadata["probes"][n]["note"] for n in skipped)
    assert any("budget" in note for note in report.metadata["notes"])


RECIPE = '''
import torch
from torch import nn
from sklearn.datasets import load_digits

def build():
    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    return {"model": model, "train": (X[:600], torch.tensor(y[:600])), "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.SGD(model.parameters(), lr=3.0, momentum=0.9)}

def broken():
    return {"model": 1}

def not_a_dict():
    return [1, 2]
'''


def test_checkup_from_file_runs_the_build_function_and_the_cli_prints_json(tmp_path, capsys):
    path = tmp_path / "recipe.py"
    path.write_text(RECIPE)
    report = checkup_from_file(f"{path}:build", **PINNED)
    assert report.top.code == "optim.lr_too_high"
    from lossdoctor.cli import main

    code = main(["checkup", f"{path}:build", "--json", "--budget", "19", "--steps", "100"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1 and data["findings"][0]["code"] == "optim.lr_too_high"
    assert {"verdict", "findings", "ruled_out", "plots", "metadata"} <= set(data)


@pytest.mark.parametrize("target, message", [
    ("{d}/missing.py:build", "file not found"),
    ("{d}/recipe.py:nope", "no function named 'nope'"),
    ("{d}/recipe.py:broken", "lacks train, optimizer"),
    ("{d}/recipe.py:not_a_dict", "must return a dict"),
    ("{d}/recipe.txt", "expected FILE.py:FUNCTION"),
])
def test_bad_recipes_raise_a_clear_input_error(tmp_path, target, message):
    (tmp_path / "recipe.py").write_text(RECIPE)
    with pytest.raises(InputError, match=message):
        checkup_from_file(target.format(d=tmp_path), budget_s=1, progress=False)


def test_bad_arguments_raise_input_error(digits):
    train, _ = digits
    model = mlp()
    other = torch.optim.SGD(mlp().parameters(), lr=0.1)
    with pytest.raises(InputError, match="not the model's"):
        checkup(model, train, nn.CrossEntropyLoss(), other, budget_s=1, progress=False)
    with pytest.raises(InputError, match="optimizer"):
        checkup(model, train, nn.CrossEntropyLoss(), "adam", budget_s=1, progress=False)
    with pytest.raises(InputError, match="X has 1200 rows but y has 10"):
        checkup(model, (train[0], train[1][:10]), nn.CrossEntropyLoss(),
                torch.optim.SGD(model.parameters(), lr=0.1), budget_s=1, progress=False)
    with pytest.raises(InputError, match="steps: expected a whole number"):
        checkup(model, train, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1), steps=5)
    with pytest.raises(InputError, match="budget_s"):
        checkup(model, train, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1), budget_s=0)
    wrong = nn.Linear(3, 10)
    with pytest.raises(InputError, match=r"mat1 and mat2 shapes cannot be multiplied.*loss_fn\(model\(inputs\), targets\)"):
        checkup(wrong, train, nn.CrossEntropyLoss(), torch.optim.SGD(wrong.parameters(), lr=0.1),
                budget_s=1, progress=False)
