"""lossdoctor.watch inspects the model it watches (on a copy, once, on the first training batch before
the first update), so the model room's checks take part in the live report: a real fault through
watch gives its model code first, its healthy twin stays clean, the user's run is untouched."""
import copy

import pytest
import torch
from sklearn.datasets import load_diabetes
from torch import nn
from watch_training import X, Y, batches

import lossdoctor
from lossdoctor.errors import InputError
from lossdoctor.integrations import _common

_diabetes = load_diabetes()
DX = torch.tensor(_diabetes.data, dtype=torch.float32)
DX = (DX - DX.mean(0)) / DX.std(0)
DY = torch.tensor(_diabetes.target, dtype=torch.float32).unsqueeze(1)
DY = (DY - DY.mean()) / DY.std()  # standardized: about half the targets are negative


def classifier(softmax: bool = False, zero: bool = False, dropout: float = 0.0, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers = [nn.Linear(64, 64), nn.ReLU(), nn.Dropout(dropout), nn.Linear(64, 10)]
    model = nn.Sequential(*layers, *([nn.Softmax(dim=1)] if softmax else []))
    if zero:
        with torch.no_grad():
            for m in model:
                if isinstance(m, nn.Linear):
                    m.weight.zero_()
                    m.bias.zero_()
    return model


def regressor(relu_output: bool, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1), *([nn.ReLU()] if relu_output else []))


def train(model, criterion, inputs=X, targets=Y, steps=120, lr=1e-3, watch=True, **watch_kwargs):
    """The README's loop: ``loss = criterion(model(x), y)``, Adam; returns the watch (closed) or None."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    doctor = lossdoctor.watch(model, opt, every=10, **watch_kwargs) if watch else None
    g = torch.Generator().manual_seed(1)
    with doctor if doctor is not None else _nothing():
        for _ in range(steps):
            idx = torch.randint(0, len(inputs), (64,), generator=g)
            loss = criterion(model(inputs[idx]), targets[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if doctor is not None:
                doctor.step(loss)
    return doctor


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def serious(report):
    return [(f.code, f.severity, f.title) for f in report.findings if f.severity in ("warning", "error")]


# -- faults and their healthy twins ----------------------------------------------------------------

def test_zero_initialized_classifier_is_named_as_the_cause_before_its_dead_units():
    report = train(classifier(zero=True), nn.CrossEntropyLoss(), loss_fn=nn.CrossEntropyLoss()).report()
    top = report.top
    assert (top.code, top.severity) == ("model.bad_init", "error")
    assert top.source.startswith("model:")
    # the symptoms the live watch measures hang under the init, they are not the cause
    for f in report.findings:
        if f.code in ("grad.dead_relu", "grad.vanishing", "optim.lr_too_low") and f.severity != "info":
            assert f.explained_by == "model.bad_init", (f.code, f.explained_by)


def test_default_initialized_twin_is_clean():
    doctor = train(classifier(), nn.CrossEntropyLoss(), loss_fn=nn.CrossEntropyLoss())
    report = doctor.report()
    assert doctor.evidence().model is not None  # the model was inspected, and found fine
    assert serious(report) == []


def test_double_softmax_is_found_when_the_loss_is_given():
    criterion = nn.CrossEntropyLoss()
    report = train(classifier(softmax=True), criterion, loss_fn=criterion).report()
    top = report.top
    assert (top.code, top.severity) == ("model.activation_mismatch", "error")
    assert top.evidence["output_activation"] == "softmax" and top.evidence["loss"] == "CrossEntropyLoss"


def test_the_loss_given_as_a_function_is_known_too():
    doctor = train(classifier(softmax=True), nn.functional.cross_entropy, loss_fn=nn.functional.cross_entropy)
    assert doctor.report().top.code == "model.activation_mismatch"
    run = doctor.run_facts()
    assert (run.loss, run.task, run.inputs) == ("cross_entropy", None, "features")  # no targets seen: task unknown


def _log_prob_nll(probabilities, targets):
    """A correct loss for a model that outputs probabilities."""
    return nn.functional.nll_loss(torch.log(probabilities + 1e-12), targets)


def test_without_the_loss_a_loss_pinned_at_the_double_softmax_floor_is_a_hypothesis():
    """The loss unknown, the batch losses alone show the floor of a cross-entropy on probabilities
    (1.46 for 10 classes): an info finding that names the experiment, never a confident error."""
    report = train(classifier(softmax=True), nn.CrossEntropyLoss(), steps=300).report()
    hint = [f for f in report.findings if f.code == "model.activation_mismatch"]
    assert len(hint) == 1 and hint[0].severity == "info"
    assert hint[0].source == "model:loss_pinned_at_a_double_softmax_floor"
    ev = hint[0].evidence
    assert ev["lowest_loss"] >= ev["loss_floor"] and ev["end_level"] < ev["chance_loss"]
    assert "loss_fn" in hint[0].remedy


def test_a_softmax_model_with_a_correct_loss_shows_no_floor():
    report = train(classifier(softmax=True), _log_prob_nll, steps=300).report()
    assert not any(f.code == "model.activation_mismatch" for f in report.findings)
    assert serious(report) == []


def test_with_the_loss_given_the_floor_hint_gives_way_to_the_output_check():
    criterion = nn.CrossEntropyLoss()
    report = train(classifier(softmax=True), criterion, steps=300, loss_fn=criterion).report()
    sources = [f.source for f in report.findings if f.code == "model.activation_mismatch"]
    assert sources == ["model:output_layer_mismatch"]


def test_raw_logits_twin_with_the_loss_given_is_clean():
    criterion = nn.CrossEntropyLoss()
    report = train(classifier(), criterion, loss_fn=criterion).report()
    assert not any(f.code == "model.activation_mismatch" for f in report.findings)
    assert serious(report) == []


def test_targets_reach_the_watch_through_the_loss_module():
    """A plain loop passes the targets only to the loss: observed at its first call, they show that a
    ReLU output cannot reach the negative half of a standardized regression target."""
    criterion = nn.MSELoss()
    doctor = train(regressor(relu_output=True), criterion, DX, DY, lr=3e-3, loss_fn=criterion)
    facts = doctor.evidence().model
    assert facts.targets is not None and facts.targets.kind == "continuous"
    top = doctor.report().top
    assert (top.code, top.severity) == ("model.activation_mismatch", "error")
    assert top.evidence["share_outside"] > 0.3  # about half the targets are below 0


def test_linear_output_regressor_twin_is_clean():
    criterion = nn.MSELoss()
    report = train(regressor(relu_output=False), criterion, DX, DY, lr=3e-3, loss_fn=criterion).report()
    assert serious(report) == []
    assert not any(f.code == "model.activation_mismatch" for f in report.findings)


class LabelledRegressor(nn.Module):
    """A model that takes its batch as keywords and computes its loss from ``labels`` (as Hugging
    Face models do)."""

    def __init__(self, relu_output: bool):
        super().__init__()
        self.net = regressor(relu_output)

    def forward(self, features=None, labels=None):
        prediction = self.net(features)
        return {"loss": nn.functional.mse_loss(prediction, labels), "logits": prediction}


@pytest.mark.parametrize("relu_output", [True, False])
def test_labels_passed_to_the_model_are_the_targets(relu_output):
    model = LabelledRegressor(relu_output)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    with lossdoctor.watch(model, opt, every=10) as doctor:
        for _ in range(60):
            idx = torch.randint(0, len(DX), (64,), generator=g)
            loss = model(features=DX[idx], labels=DY[idx])["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            doctor.step(loss)
    facts = doctor.evidence().model
    assert facts is not None and facts.targets.kind == "continuous"
    mismatch = [f for f in doctor.report().findings if f.code == "model.activation_mismatch"]
    if relu_output:
        assert mismatch and mismatch[0].severity == "error"
    else:
        assert mismatch == []


# -- do no harm, once, and what is skipped ------------------------------------------------------------

def test_the_inspection_leaves_weights_rng_and_hooks_as_they_were():
    """Dropout consumes the global RNG: the watched run (with the model inspected on its first batch)
    must give bit-identical weights, optimizer state and RNG to the bare run."""
    states, rngs = [], []
    for watched in (False, True):
        model = classifier(dropout=0.3)
        criterion = nn.CrossEntropyLoss()
        torch.manual_seed(123)
        doctor = train(model, criterion, steps=30, watch=watched, loss_fn=criterion)
        if watched:
            assert doctor.evidence().model is not None
            assert not criterion._forward_pre_hooks and not model._forward_pre_hooks
            assert all(not m._forward_hooks for m in model.modules())
        states.append(copy.deepcopy(model.state_dict()))
        rngs.append(torch.get_rng_state())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert torch.equal(rngs[0], rngs[1])


def test_gradients_at_the_first_step_are_untouched():
    """The facts are built just before the first update, when the gradients exist: they stay as the
    backward pass left them."""
    model, criterion = classifier(dropout=0.3), nn.CrossEntropyLoss()
    twin = copy.deepcopy(model)
    seen = {}
    for m, watched in ((twin, False), (model, True)):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        doctor = lossdoctor.watch(m, opt, loss_fn=criterion).start() if watched else None
        torch.manual_seed(5)
        loss = criterion(m(X[:64]), Y[:64])
        loss.backward()
        grads = [p.grad.clone() for p in m.parameters()]
        opt.step()  # the watch inspects the model here, before the update
        seen[watched] = grads, [p.grad for p in m.parameters()]
        if doctor is not None:
            doctor.close()
            assert doctor.evidence().model is not None
    assert all(torch.equal(a, b) for a, b in zip(seen[True][0], seen[True][1]))
    assert all(torch.equal(a, b) for a, b in zip(seen[False][0], seen[True][0]))


def test_the_model_is_inspected_once(monkeypatch):
    calls = []
    original = _common.torch_model_facts

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(_common, "torch_model_facts", counting)
    criterion = nn.CrossEntropyLoss()
    train(classifier(), criterion, steps=40, loss_fn=criterion)
    assert len(calls) == 1


def test_a_model_over_the_size_limit_is_not_copied_unless_asked(monkeypatch):
    monkeypatch.setattr(_common, "MODEL_CHECK_MAX_PARAMETERS", 100)
    assert train(classifier(zero=True), nn.CrossEntropyLoss(), steps=20).evidence().model is None
    forced = train(classifier(zero=True), nn.CrossEntropyLoss(), steps=20, check_model=True)
    assert forced.evidence().model is not None
    off = train(classifier(zero=True), nn.CrossEntropyLoss(), steps=20, check_model=False)
    assert off.evidence().model is None and not any(f.source.startswith("model:") for f in off.report().findings)


def test_the_facts_come_from_the_first_batch_before_any_update():
    """Without an optimizer and without a loss module, the watch inspects at the first forward: the
    zero weights are seen although training has moved them by the end."""
    model = classifier(zero=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with lossdoctor.watch(model, every=10) as doctor:
        for idx in batches(20):
            loss = nn.functional.cross_entropy(model(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            doctor.step(loss)
    assert any(not bool((p == 0).all()) for p in model.parameters())
    facts = doctor.evidence().model
    assert facts is not None and any(layer.all_zero for layer in facts.layers)


@pytest.mark.parametrize("bad", [nn.CrossEntropyLoss, "cross_entropy", 3])
def test_a_loss_that_is_not_a_callable_loss_is_a_clear_error(bad):
    model = classifier()
    with pytest.raises(InputError, match="loss_fn"):
        lossdoctor.watch(model, torch.optim.SGD(model.parameters(), lr=0.1), loss_fn=bad)


def test_check_model_takes_true_false_or_auto():
    model = classifier()
    with pytest.raises(InputError, match="check_model"):
        lossdoctor.watch(model, torch.optim.SGD(model.parameters(), lr=0.1), check_model="yes")


class Uncopyable(nn.Module):
    """Holds a lock (as models holding a data-loader handle or a logger do): it cannot be deep-copied."""

    def __init__(self):
        super().__init__()
        import threading

        self.net = classifier(zero=True)
        self.lock = threading.Lock()

    def forward(self, x):
        return self.net(x)


def test_a_model_that_cannot_be_copied_is_not_inspected_and_training_goes_on():
    model = Uncopyable()
    doctor = train(model, nn.CrossEntropyLoss(), steps=20)
    assert doctor.step_count == 20
    assert doctor.evidence().model is None
    assert "deep-copied" in doctor.report().metadata["model_check_skipped"]
