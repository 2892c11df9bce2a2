"""A loop that never calls optimizer.zero_grad(): each update applies the sum of all gradients so far.

Real SGD trainings on scikit-learn's digits; the healthy twins zero their gradients every step, or
accumulate them over micro-batches as gradient accumulation does (zeroed once per optimizer step).
"""
import torch
from torch import nn

import lossdoctor
from watch_training import X, Y, batches, mlp, warnings_of


def train_loop(zero_grad: bool, micro_batches: int = 1, steps: int = 120, lr: float = 0.01, clip=None):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    idx = batches(steps * micro_batches)
    with lossdoctor.watch(model, opt, every=10, loss_fn=nn.CrossEntropyLoss()) as doctor:
        for step in range(steps):
            if zero_grad:
                opt.zero_grad()
            for micro in range(micro_batches):
                batch = idx[step * micro_batches + micro]
                loss = nn.functional.cross_entropy(model(X[batch]), Y[batch]) / micro_batches
                loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            doctor.step(loss)
    return doctor.report()


def test_a_loop_without_zero_grad_is_named_first_with_the_rate_under_it():
    report = train_loop(zero_grad=False)
    top = report.top
    assert top.code == "optim.grads_not_zeroed" and top.severity == "error", report.codes
    assert len(top.evidence["steps_matched"]) >= 5 and top.evidence["steps_zeroed"] == []
    assert "zero_grad()" in top.remedy
    for f in report.findings:  # whatever the summed gradients did, they are its symptoms
        if f.code in ("optim.lr_too_high", "grad.exploding", "grad.non_finite", "model.logit_overflow") \
                and f.severity != "info":
            assert f.explained_by == "optim.grads_not_zeroed"


def test_the_same_loop_with_zero_grad_is_clean():
    report = train_loop(zero_grad=True)
    assert "optim.grads_not_zeroed" not in report.codes
    assert warnings_of(report) == []


def test_gradient_accumulation_over_micro_batches_zeroed_once_per_step_is_not_flagged():
    report = train_loop(zero_grad=True, micro_batches=4)
    assert "optim.grads_not_zeroed" not in report.codes
    assert warnings_of(report) == []


def test_a_clip_that_rescales_the_gradient_in_place_is_not_mistaken_for_a_carried_one():
    report = train_loop(zero_grad=True, clip=0.05)
    assert "optim.grads_not_zeroed" not in report.codes
