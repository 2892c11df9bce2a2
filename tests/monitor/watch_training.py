"""Small real trainings for the monitor tests: scikit-learn's digits, small MLPs, a fixed seed."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import lossdoctor

_digits = load_digits()
RAW_X = torch.tensor(_digits.data, dtype=torch.float32)  # pixel counts 0..16, not normalized
X = (RAW_X - RAW_X.mean(0)) / (RAW_X.std(0) + 1e-6)
Y = torch.tensor(_digits.target)


def mlp(depth: int = 2, width: int = 64, act=nn.ReLU, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers, d = [], X.shape[1]
    for _ in range(depth):
        layers += [nn.Linear(d, width), act()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, 10))


def batches(steps: int, batch: int = 64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, len(X), (batch,), generator=g) for _ in range(steps)]


def train(model, lr=0.02, steps=200, every=10, inputs=None, clip=None, clip_fn=None, watch=True,
          optimizer="sgd", loss_after_step=True, warmup=0, watch_optimizer=True, **watch_kwargs):
    """Train ``model``; return (report or None, watch or None). ``clip_fn`` overrides how clipping is
    called; ``warmup`` ramps the rate linearly from lr / warmup to lr over that many steps;
    ``watch_optimizer=False`` watches the model alone (each ``step()`` call is a step)."""
    inputs = X if inputs is None else inputs
    opt = (torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=lr))
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup)) if warmup else None
    doctor = lossdoctor.watch(model, opt if watch_optimizer else None, every=every, **watch_kwargs).start() \
        if watch else None
    try:
        for idx in batches(steps):
            loss = nn.functional.cross_entropy(model(inputs[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            if clip is not None:
                (clip_fn or torch.nn.utils.clip_grad_norm_)(model.parameters(), clip)
            if doctor is not None and not loss_after_step:
                doctor.step(loss)
            opt.step()
            if schedule is not None:
                schedule.step()
            if doctor is not None and loss_after_step:
                doctor.step(loss)
    finally:
        if doctor is not None:
            doctor.close()
    return (doctor.report() if doctor else None), doctor


def first_non_finite_module(model, lr, steps=200):
    """Ground truth by brute force: trace every module's output on every step (no lossdoctor)."""
    names = {id(m): n for n, m in model.named_modules() if n}
    found = []

    def hook(module, args, output):
        if not found and id(module) in names and not torch.isfinite(output).all():
            found.append(names[id(module)])

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    try:
        for step, idx in enumerate(batches(steps)):
            loss = nn.functional.cross_entropy(model(X[idx]), Y[idx])
            if found:
                return step, found[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        for h in handles:
            h.remove()
    return None, None


def warnings_of(report) -> list[tuple[str, str, str]]:
    return [(f.code, f.severity, f.title) for f in report.warnings()]


def assert_all_finite(model) -> None:
    assert all(np.isfinite(p.detach().numpy()).all() for p in model.parameters())
