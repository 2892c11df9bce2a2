"""Real small trainings on scikit-learn's digits, with real faults, for the curve and log tests.

``train(fault)`` trains an MLP and calls ``on_step(step, loss, lr, grad_norm)`` after every optimizer
step and ``on_eval(step, val_loss)`` every ``eval_every`` steps, so a real writer (SummaryWriter, a
CSV file, ...) can log the values as they happen; it also returns them.

Faults: ``healthy`` (Adam 3e-3), ``lr_warmup_too_high`` (100-step linear warm-up to SGD lr 2.0),
``lr_nan`` (SGD at lr 100: the loss turns NaN), ``dropout09`` (dropout 0.9 after every layer),
``shuffled`` (shuffled labels on a small train split: memorised, validation rises).
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

FAULTS = ("healthy", "lr_warmup_too_high", "lr_nan", "dropout09", "shuffled")


def digits(small: bool = False, shuffle_labels: bool = False, seed: int = 0, raw_scale: float | None = None):
    """Train/validation tensors of digits, standardized; ``raw_scale`` instead multiplies the raw pixels
    (0..16) by it, unstandardized (x16 gives inputs up to 256, a classic input-scale bug)."""
    X, y = load_digits(return_X_y=True)
    Xtr, Xva, ytr, yva = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    if small:
        Xtr, ytr = Xtr[:300], ytr[:300]
    if raw_scale is None:
        scaler = StandardScaler().fit(Xtr)
        Xtr, Xva = scaler.transform(Xtr), scaler.transform(Xva)
    else:
        Xtr, Xva = Xtr * raw_scale, Xva * raw_scale
    if shuffle_labels:
        ytr = np.random.default_rng(seed).permutation(ytr)
    t = lambda a, dt: torch.as_tensor(a, dtype=dt)  # noqa: E731
    return t(Xtr, torch.float32), t(ytr, torch.long), t(Xva, torch.float32), t(yva, torch.long)


def mlp(hidden: int = 64, dropout: float = 0.0, depth: int = 2) -> torch.nn.Module:
    layers: list[torch.nn.Module] = []
    width = 64
    for _ in range(depth):
        if dropout:
            layers.append(torch.nn.Dropout(dropout))
        layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
        width = hidden
    if dropout:
        layers.append(torch.nn.Dropout(dropout))
    layers.append(torch.nn.Linear(width, 10))
    return torch.nn.Sequential(*layers)


def train(fault: str = "healthy", steps: int = 360, batch: int = 32, eval_every: int = 15, seed: int = 0,
          on_step=None, on_eval=None) -> dict:
    if fault not in FAULTS:
        raise ValueError(fault)
    torch.manual_seed(seed)
    Xtr, ytr, Xva, yva = digits(small=fault == "shuffled", shuffle_labels=fault == "shuffled", seed=seed)
    model = mlp(hidden=256 if fault == "shuffled" else 64, dropout=0.9 if fault == "dropout09" else 0.0)
    if fault == "lr_nan":
        opt = torch.optim.SGD(model.parameters(), lr=100.0)
    elif fault == "lr_warmup_too_high":  # plain SGD: stable up to lr ~1, breaks as warm-up passes it
        opt = torch.optim.SGD(model.parameters(), lr=2.0)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    warmup = 100 if fault == "lr_warmup_too_high" else 0
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    rec = {"steps": [], "loss": [], "lr": [], "grad_norm": [], "val_steps": [], "val_loss": []}
    order = torch.randperm(len(Xtr), generator=gen)
    pos = 0
    for step in range(1, steps + 1):
        if pos + batch > len(Xtr):
            order, pos = torch.randperm(len(Xtr), generator=gen), 0
        idx = order[pos:pos + batch]
        pos += batch
        model.train()
        lr = opt.param_groups[0]["lr"]
        loss = loss_fn(model(Xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        gn = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])))
        opt.step()
        sched.step()
        value = loss.item()
        for k, v in zip(("steps", "loss", "lr", "grad_norm"), (step, value, lr, gn)):
            rec[k].append(v)
        if on_step:
            on_step(step, value, lr, gn)
        if step % eval_every == 0:
            model.eval()
            with torch.no_grad():
                val = float(loss_fn(model(Xva), yva))
            rec["val_steps"].append(step)
            rec["val_loss"].append(val)
            if on_eval:
                on_eval(step, val)
    return rec


def to_curves(rec: dict, run: str = "digits", with_val: bool = True, with_lr: bool = True,
              with_grad: bool = True):
    from lossdoctor.evidence import Curves

    c = Curves(run=run, source="memory")
    c.add("train_loss", rec["steps"], rec["loss"])
    if with_val and rec["val_steps"]:
        c.add("val_loss", rec["val_steps"], rec["val_loss"])
    if with_lr:
        c.add("lr", rec["steps"], rec["lr"])
    if with_grad:
        c.add("grad_norm", rec["steps"], rec["grad_norm"])
    return c
