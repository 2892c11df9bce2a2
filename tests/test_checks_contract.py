"""One contract for every registered check, whatever its room (curves, model, data, watch, probe, run).

A zoo of evidence is built once per session from real small runs on scikit-learn's bundled data:
a healthy wine MLP (its ModelFacts, DataFacts, the watch's WatchStats, its curves and their analysis,
its RunFacts) and faulty runs (NaN from a huge rate, raw unnormalized inputs, dropout 0.9, a double
softmax, zero init, a deep sigmoid stack, label noise, ...). Against it:

- every check has a docstring;
- every check fires on at least one member of the zoo (a check that never fires is untested);
- every finding has a known code, a title, a remedy, and the threshold it crossed in its evidence
  (a key ``threshold``/``thresholds``/``limit``/``limits`` or ending in ``_threshold(s)``/``_limit(s)``:
  ``lossdoctor.findings.THRESHOLD_KEY``);
- on the healthy run's evidence no check returns anything above ``info``.

The checkup's experiments (``ProbeEvidence``) are the one kind not produced by real runs here: a
checkup trains a dozen copies for minutes, so the zoo's ProbeEvidence is built from plain
``ProbeResult`` data, shaped as the probes write it (``ProbeResult.data`` with the run summaries of
``probes.loop``), with numbers of the size real checkups of these recipes give.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.preprocessing import StandardScaler
from torch import nn

import lossdoctor
from lossdoctor.codes import CODES
from lossdoctor.data import profile_data
from lossdoctor.evidence import GRAD_NORM, LEARNING_RATE, TRAIN_LOSS, Curves
from lossdoctor.findings import SEVERITY_RANK, Finding, is_threshold_key
from lossdoctor.model import inspect_model
from lossdoctor.probes.checks import ProbeEvidence
from lossdoctor.probes.result import ProbeResult
from lossdoctor.registry import Evidence, all_checks, diagnose_evidence

HEALTHY = "healthy"


# -- real small runs ------------------------------------------------------------------------------
def _standardized(X):
    return torch.tensor(StandardScaler().fit_transform(X), dtype=torch.float32)


def _digits(rows=600):
    X, y = load_digits(return_X_y=True)
    return X[:rows], y[:rows]


def _wine():
    return load_wine(return_X_y=True)


def _mlp(n_in, n_out, hidden=(32, 32), act=nn.ReLU, dropout=0.0, head=(), seed=0):
    torch.manual_seed(seed)
    layers, width = [], n_in
    for h in hidden:
        layers += [nn.Linear(width, h), act()] + ([nn.Dropout(dropout)] if dropout else [])
        width = h
    return nn.Sequential(*layers, nn.Linear(width, n_out), *head)


def _train(model, X, y, loss_fn, opt, steps, *, batch=None, lr_at=None, clip=None, every=5, seed=0,
           zero_grad=True):
    """Train ``model`` under ``lossdoctor.watch``, logging loss, learning rate and gradient norm the
    way a training script writes its log; returns the watch's evidence with those curves."""
    torch.manual_seed(seed)
    n_classes = int(y.max()) + 1 if not y.is_floating_point() else None
    curves = Curves(run="zoo", source="zoo", meta={"format": "zoo"})
    if n_classes:
        curves.meta["chance_loss"] = math.log(n_classes)
    steps_seen, losses, lrs, norms = [], [], [], []
    with lossdoctor.watch(model, opt, every=every, max_norm=clip) as doctor:
        for step in range(steps):
            if lr_at is not None:
                for group in opt.param_groups:
                    group["lr"] = lr_at(step)
            rows = slice(None) if batch is None else torch.randint(0, len(y), (batch,))
            loss = loss_fn(model(X[rows]), y[rows])
            if zero_grad:
                opt.zero_grad()
            loss.backward()
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            doctor.step(loss)
            steps_seen.append(step)
            losses.append(loss.item())
            lrs.append(opt.param_groups[0]["lr"])
            norms.append(norm)
    curves.add(TRAIN_LOSS, steps_seen, losses)
    curves.add(LEARNING_RATE, steps_seen, lrs)
    curves.add(GRAD_NORM, steps_seen, norms)
    run = doctor.run_facts()
    run = replace(run, task="classification" if n_classes else "regression", num_classes=n_classes,
                  loss=type(loss_fn).__name__, grad_clip=clip)
    return doctor.evidence(curves=curves, run=run)


def _member(model, X, y, loss_fn, opt=None, steps=0, *, data=None, baseline=False, **train):
    """The evidence of one zoo member: the model inspected before training, the data profiled, then
    (``steps`` > 0) the watched run's curves, analysis, statistics and facts."""
    facts = inspect_model(model, X[:256], loss_fn, y[:256], opt)
    data_facts = profile_data(*(data if data is not None else (X.numpy(), y.numpy())), baseline=baseline)
    if not steps:
        return Evidence(model=facts, data=data_facts)
    watched = _train(model, X, y, loss_fn, opt, steps, **train)
    watched.model, watched.data = facts, data_facts
    return watched


def _amp_member(model, X, y, *, lr, dtype, steps=120):
    """A watched mixed-precision run: float16 autocast with torch.amp.GradScaler("cpu") (SGD with
    momentum), or a model kept in bfloat16 (Adam, no scaler); the watch's evidence."""
    torch.manual_seed(0)
    scaler = torch.amp.GradScaler("cpu") if dtype is torch.float16 else None
    opt = (torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9) if scaler is not None
           else torch.optim.Adam(model.parameters(), lr=lr))
    with lossdoctor.watch(model, opt, every=10) as doctor:
        for _ in range(steps):
            rows = torch.randint(0, len(y), (64,))
            with torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext():
                loss = nn.functional.cross_entropy(model(X[rows]), y[rows])
            opt.zero_grad()
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            doctor.step(loss)
    return doctor.evidence()


# -- plain probe results (see the module docstring) ----------------------------------------------
def _run(start, final, *, steps=300, clip_share=None, first_non_finite_step=None, val_loss=None):
    fit_steps = [0, steps // 4, steps // 2, 3 * steps // 4, steps]
    fit_losses = [start + (final - start) * f for f in (0.0, 0.7, 0.9, 0.97, 1.0)]
    return {"final_loss": final, "start_loss": start, "steps": steps, "first_non_finite_step": first_non_finite_step,
            "clip_share": clip_share, "val_loss": val_loss, "fit_steps": fit_steps, "fit_losses": fit_losses}


def _probes(facts, **results):
    chance = math.log(10)
    base = {"initial_loss": ProbeResult("initial_loss", data={
        "initial_loss": 2.31, "expected_loss": chance, "chance_loss": chance, "ratio": 2.31 / chance,
        "output_abs_max": 0.9, "non_finite_inputs": 0, "non_finite_targets": 0, "n_classes": 10})}
    for name, data in results.items():
        base[name.replace("__", ":")] = ProbeResult(name.replace("__", ":"), data=data)
    return ProbeEvidence(base, {"task": "classification", **facts})


def _ablation(label, start, final, **data):
    return {"run": _run(start, final), "label": label, **data}


def _probe_members() -> dict[str, ProbeEvidence]:
    sgd = {"optimizer": "SGD", "lr": 0.01}
    return {
        HEALTHY: _probes({"optimizer": "Adam", "lr": 1e-3},
                         baseline={"run": _run(2.3, 0.05)},
                         lr_range={"current_lr": 1e-3, "suggested_lr": 2e-3, "min_loss_lr": 2e-2, "blowup_lr": 0.3},
                         ablation__lr_suggested=_ablation("lr 2e-3", 2.3, 0.04),
                         subset={"rows": 64, "run": _run(2.3, 0.01)}),
        "probe: rate too low": _probes({**sgd, "lr": 1e-5}, baseline={"run": _run(2.3, 2.25)},
                                        lr_range={"current_lr": 1e-5, "suggested_lr": 1e-2, "min_loss_lr": 0.1,
                                                  "blowup_lr": 1.0},
                                        ablation__lr_suggested=_ablation("lr 1e-2", 2.3, 0.2)),
        "probe: dropout 0.9": _probes({**sgd, "dropout": [("2", 0.9), ("5", 0.9)], "weight_decay": 0.0},
                                      baseline={"run": _run(2.3, 2.1)},
                                      ablation__no_regularization=_ablation("dropout off", 2.3, 0.3)),
        "probe: clip 0.01": _probes({**sgd, "grad_clip": 0.01}, baseline={"run": _run(2.3, 1.9, clip_share=1.0)},
                                    ablation__no_clipping=_ablation("clipping off", 2.3, 0.2),
                                    lr_range={"current_lr": 0.01, "suggested_lr": 0.02, "min_loss_lr": 0.2}),
        "probe: batch norm hides vanishing": _probes(sgd, batchnorm_out={
            "ratio_without_bn": 2e-5, "ratio_with_bn": 0.4, "batchnorm_layers": ["1", "4"]}),
        "probe: zero init": _probes(sgd, baseline={"run": _run(2.3, 2.29)},
                                    ablation__reinit=_ablation("he_normal", 2.3, 0.3, how="apply_init(model)")),
        "probe: logits x100 at init": ProbeEvidence({"initial_loss": ProbeResult("initial_loss", data={
            "initial_loss": 95.0, "expected_loss": math.log(10), "chance_loss": math.log(10), "ratio": 41.3,
            "output_abs_max": 210.0, "non_finite_inputs": 0, "non_finite_targets": 0})}, {"task": "classification"}),
        "probe: NaN in the inputs": ProbeEvidence({"initial_loss": ProbeResult("initial_loss", data={
            "initial_loss": math.nan, "expected_loss": math.log(10), "ratio": None, "non_finite_inputs": 12,
            "non_finite_targets": 0})}, {"task": "classification"}),
        "probe: plain SGD on a deep tanh net": _probes(sgd, baseline={"run": _run(2.3, 1.8)},
                                                       ablation__other_optimizer=_ablation("Adam", 2.3, 0.2)),
        "probe: 40% flipped labels": _probes(
            {**sgd, "optimizer": "Adam"}, baseline={"run": {**_run(2.3, 1.2), "val_loss": 1.0}},
            subset={"rows": 64, "run": _run(2.3, 0.05)}),
        "probe: deep sigmoid at init": _probes(sgd, gradients_at_init={
            "depth_ratio": 3e-6, "first_layer": "0", "last_layer": "16"}),
        "probe: float16 scaler collapsing": _probes(
            {**sgd, "autocast": "float16", "grad_scaler": True},
            baseline={"run": {**_run(2.3, 2.3), "skipped_share": 0.95, "scale_start": 65536.0, "scale_end": 1e-4}},
            ablation__full_precision=_ablation("float32", 2.3, 0.2)),
        "probe: shuffled labels": _probes(
            {**sgd, "optimizer": "Adam"}, baseline={"run": {**_run(2.3, 1.5), "val_loss": 2.4}},
            subset={"rows": 64, "run": _run(2.3, 0.05)}),
    }


# -- the zoo --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def zoo() -> dict[str, Evidence]:
    members: dict[str, Evidence] = {}
    wine_X, wine_y = _wine()
    Xw, yw = _standardized(wine_X), torch.tensor(wine_y)
    Xd_raw, yd_np = _digits()
    Xd, yd = _standardized(Xd_raw), torch.tensor(yd_np)
    ce = nn.CrossEntropyLoss()

    model = _mlp(13, 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    members[HEALTHY] = _member(model, Xw, yw, ce, opt, 150, baseline=True)

    # NaN from a huge rate: SGD with momentum at lr 1e5 on digits pixels stored as bytes (0..255)
    bytes_ = torch.tensor(Xd_raw * 16.0, dtype=torch.float32)
    model = _mlp(64, 10, hidden=(64, 64))
    members["NaN from a huge rate"] = _member(model, bytes_, yd, ce, torch.optim.SGD(model.parameters(), lr=1e5,
                                                                                     momentum=0.9), 30, every=1)
    # raw wine features (proline ~1,000): logits in the thousands from the first step
    model = _mlp(13, 3)
    raw_wine = torch.tensor(wine_X, dtype=torch.float32)
    members["raw unnormalized inputs"] = _member(model, raw_wine, yw, ce, torch.optim.Adam(model.parameters(), 1e-3),
                                                 60)
    model = _mlp(64, 10, hidden=(64, 64), dropout=0.9)
    members["dropout 0.9"] = _member(model, Xd, yd, ce, torch.optim.SGD(model.parameters(), lr=1e-3), 120)
    model = _mlp(64, 10, head=(nn.Softmax(dim=1),))
    members["double softmax"] = _member(model, Xd, yd, ce)
    # the same model watched without its loss: only the losses, pinned at the floor, hint at it
    model = _mlp(64, 10, head=(nn.Softmax(dim=1),))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    facts = inspect_model(model, Xd[:256], None, yd[:256], opt)
    members["double softmax, the loss unknown"] = replace(_train(model, Xd, yd, ce, opt, 200), model=facts)
    model = _mlp(64, 10)
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.zeros_(layer.weight)
    members["zero init"] = _member(model, Xd, yd, ce)
    model = _mlp(64, 10)
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                layer.weight.mul_(1e-3)
                layer.bias.zero_()
    members["tiny init"] = _member(model, Xd, yd, ce)
    model = _mlp(64, 10, hidden=(32,) * 8, act=nn.Sigmoid)
    members["deep sigmoid"] = _member(model, Xd, yd, ce, torch.optim.SGD(model.parameters(), lr=0.1), 60)
    model = _mlp(64, 10)
    with torch.no_grad():
        model[0].bias.fill_(-20.0)  # every unit of the first layer starts below zero for every input
    members["dead ReLUs"] = _member(model, Xd, yd, ce, torch.optim.Adam(model.parameters(), 1e-3), 60)
    model = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))
    members["clip far below the gradient"] = _member(model, Xd, yd, ce, torch.optim.SGD(model.parameters(), 0.1), 80,
                                                     clip=1e-3)
    model = _mlp(64, 10)
    members["rate too low"] = _member(model, Xd, yd, ce, torch.optim.SGD(model.parameters(), lr=1e-7), 120)
    model = _mlp(64, 10, hidden=(64, 64))
    warmup = lambda step: 1.0 * min(1.0, (step + 1) / 60)  # linear warm-up to a rate far too high
    members["warm-up to a rate too high"] = _member(model, Xd, yd, ce, torch.optim.SGD(model.parameters(), lr=0.1,
                                                                                        momentum=0.9),
                                                    200, lr_at=warmup, batch=64)
    model = _mlp(64, 10, hidden=(64, 64))
    members["no zero_grad in the loop"] = _member(model, Xd, yd, ce, torch.optim.SGD(model.parameters(), lr=1e-3,
                                                                                      momentum=0.9),
                                                  60, batch=64, zero_grad=False)
    model = _mlp(64, 10, hidden=(64, 64))
    members["a spike, then stuck at chance"] = _member(model, Xd, yd, ce, torch.optim.Adam(model.parameters(), 3.0),
                                                       150, batch=64)

    # activations and precision
    model = _mlp(64, 10, hidden=(64, 64), act=nn.Tanh)
    members["tanh saturated by a rate too high"] = _member(model, Xd, yd, ce, torch.optim.SGD(
        model.parameters(), lr=30.0, momentum=0.9), 120, batch=64, every=10)
    members["float16 grad scaler collapsing"] = _amp_member(_mlp(64, 10, hidden=(64, 64)), Xd, yd, lr=5.0,
                                                            dtype=torch.float16)
    members["bfloat16 weights a small rate cannot move"] = _amp_member(
        _mlp(64, 10, hidden=(64, 64)).to(torch.bfloat16), Xd.to(torch.bfloat16), yd, lr=1e-4, dtype=None)

    # architecture faults seen by the inspector
    images = Xd.reshape(-1, 1, 8, 8)
    tanh_cnn = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Tanh(), nn.Conv2d(8, 8, 3), nn.Tanh(), nn.Flatten(),
                             nn.Linear(8 * 4 * 4, 10))
    members["tanh after conv layers"] = Evidence(model=inspect_model(tanh_cnn, images[:128], ce, yd[:128]))
    members["recurrent cell gating with tanh"] = Evidence(model=inspect_model(_TanhGated(), Xd[:128].reshape(-1, 8, 8),
                                                                              ce, yd[:128]))

    # data faults
    flipped = np.random.default_rng(0).random(len(wine_y)) < 0.3
    noisy = wine_y.copy()
    noisy[flipped] = (noisy[flipped] + 1) % 3
    members["label noise"] = Evidence(data=profile_data(StandardScaler().fit_transform(wine_X), noisy))
    members["shuffled labels"] = Evidence(data=profile_data(StandardScaler().fit_transform(wine_X),
                                                            np.random.default_rng(0).permutation(wine_y)))
    with_nan = StandardScaler().fit_transform(wine_X)
    with_nan[[3, 50], 2] = np.nan
    duplicated = np.vstack([with_nan, with_nan[:30]])
    relabelled = np.concatenate([wine_y, (wine_y[:30] + 1) % 3])
    members["NaN and relabelled duplicates"] = Evidence(data=profile_data(duplicated, relabelled, baseline=False))
    cancer_X, cancer_y = load_breast_cancer(return_X_y=True)
    members["raw breast cancer"] = Evidence(data=profile_data(cancer_X, cancer_y, baseline=False))
    keep = np.concatenate([np.flatnonzero(cancer_y == 1), np.flatnonzero(cancer_y == 0)[:20]])
    members["imbalanced classes"] = Evidence(data=profile_data(StandardScaler().fit_transform(cancer_X[keep]),
                                                               cancer_y[keep], baseline=False))
    long = _lab_table(wine_X)
    members["one scale per lab type"] = Evidence(data=profile_data(long, baseline=False))
    members["lab types coded as integers"] = Evidence(data=profile_data(
        long.assign(lab=long["lab"].astype("category").cat.codes), baseline=False))
    diabetes_X, diabetes_y = load_diabetes(return_X_y=True)
    members["regression target in raw units"] = Evidence(data=profile_data(diabetes_X, diabetes_y, baseline=False))

    for name, probes in _probe_members().items():
        if name == HEALTHY:
            members[HEALTHY].probes = probes
        else:
            members[name] = Evidence(probes=probes)
    return members


class _TanhGated(nn.Module):
    """An LSTM-like cell written by hand whose gates use tanh (they must lie in [0, 1]: sigmoid)."""

    def __init__(self):
        super().__init__()
        self.cell = _Cell()
        self.out = nn.Linear(16, 10)

    def forward(self, x):
        h = c = torch.zeros(x.shape[0], 16)
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], h, c)
        return self.out(h)


class _Cell(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8 + 16, 64)

    def forward(self, x, h, c):
        i, f, o, g = self.lin(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.tanh(f) * c + torch.tanh(i) * torch.tanh(g)
        return torch.tanh(o) * torch.tanh(c), c


def _lab_table(wine_X):
    """The wine measurements in long format, one row per (sample, measurement): the value column's
    scale depends on the measurement (the seed's lab results, one normalizer per lab type)."""
    names = load_wine().feature_names
    rows = [(names[j], float(wine_X[i, j])) for i in range(len(wine_X)) for j in range(wine_X.shape[1])]
    return pd.DataFrame(rows, columns=["lab", "value"])


# -- the contract ---------------------------------------------------------------------------------
def _findings(check, evidence) -> list[Finding]:
    return [f for f in check(evidence) if isinstance(f, Finding)] if check.applies(evidence) else []


def test_every_registered_check_has_a_docstring():
    missing = [c.source for c in all_checks() if not (c.fn.__doc__ or "").strip()]
    assert not missing, missing


def test_every_check_fires_on_some_member_of_the_zoo(zoo):
    fired = {c.source: [name for name, ev in zoo.items() if _findings(c, ev)] for c in all_checks()}
    silent = [source for source, names in fired.items() if not names]
    assert not silent, silent


def test_every_finding_has_a_known_code_a_title_a_remedy_and_its_threshold(zoo):
    bad = []
    for c in all_checks():
        for name, ev in zoo.items():
            for f in _findings(c, ev):
                problems = [p for p, ok in (
                    ("unknown code", f.code in CODES), ("no title", bool(f.title.strip())),
                    ("no remedy", bool(f.remedy.strip())),
                    ("no threshold in the evidence", any(is_threshold_key(k) for k in f.evidence)),
                ) if not ok]
                if problems:
                    bad.append(f"{c.source} on {name!r}: {', '.join(problems)} ({f.code}, {sorted(f.evidence)})")
    assert not bad, "\n".join(bad)


def test_no_check_raises_anything_above_info_on_the_healthy_run(zoo):
    healthy = zoo[HEALTHY]
    assert healthy.kinds() == {"curves", "analysis", "model", "data", "stats", "probes", "run"}
    assert healthy.analysis.verdict == "converging"
    said = [(c.source, f) for c in all_checks() for f in _findings(c, healthy)]
    loud = [f"{source}: {f.code} {f.severity} {f.title}" for source, f in said
            if SEVERITY_RANK[f.severity] < SEVERITY_RANK["info"]]
    assert not loud, "\n".join(loud)
    # nothing at all is the honest answer here: standardized wine, no constant column, no batch norm
    assert not said, [f"{source}: {f.code} {f.title}" for source, f in said]
    assert not diagnose_evidence(healthy).findings


