"""The output layer read against the loss and the targets (model.activation_mismatch), on real
small models and the bundled data sets. Each fault is shown to hurt training (or to make it
impossible) next to a healthy twin that must come out clean, and every loss family has a healthy
model that the check leaves alone."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.preprocessing import StandardScaler
from torch import nn

from lossdoctor.model import check_model, describe_targets, inspect_model
from lossdoctor.registry import Evidence, run_checks

CODE = "model.activation_mismatch"


def standardized(X):
    return torch.tensor(StandardScaler().fit_transform(X), dtype=torch.float32)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return standardized(X), torch.tensor(y)


@pytest.fixture(scope="module")
def multi_label(digits):
    """Two labels per digit image: "is it even" and "is it greater than 4" (6 and 8, a fifth of the rows, have both)."""
    X, y = digits
    return X, torch.stack([y % 2 == 0, y > 4], dim=1).float()


@pytest.fixture(scope="module")
def wine():
    X, y = load_wine(return_X_y=True)
    return standardized(X), torch.tensor(y)


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return standardized(X), torch.tensor(y, dtype=torch.float32)[:, None]


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    return standardized(X), torch.tensor((y - y.mean()) / y.std(), dtype=torch.float32)[:, None]


def mlp(n_in, n_out, *head):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(n_in, 32), nn.ReLU(), nn.Linear(32, n_out), *head)


def train(model, X, y, loss_fn, steps=200, lr=1e-2):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(X), y).backward()
        opt.step()
    with torch.no_grad():
        return float(loss_fn(model(X), y))


def mismatch(report):
    return [f for f in report.findings if f.code == CODE]


def the_finding(report, severity="error"):
    found = mismatch(report)
    assert len(found) == 1 and found[0].severity == severity, report.to_text()
    return found[0]


# -- faults, each with its healthy twin ----------------------------------------------------------
def test_softmax_over_a_single_unit_is_constant_and_nothing_is_learned(cancer):
    X, y = cancer
    faulty = mlp(30, 1, nn.Softmax(dim=1))
    finding = the_finding(check_model(faulty, X, nn.BCELoss(), y))
    assert finding.evidence["output_width"] == 1 and finding.evidence["output_activation"] == "softmax"
    assert "BCEWithLogitsLoss" in finding.remedy and finding.where == "3"
    before = [p.detach().clone() for p in faulty.parameters()]
    loss = train(faulty, X, y, nn.BCELoss())
    assert all(torch.equal(a, b) for a, b in zip(before, faulty.parameters()))  # the gradient is exactly 0
    healthy = mlp(30, 1)
    assert not mismatch(check_model(healthy, X, nn.BCEWithLogitsLoss(), y))
    assert train(healthy, X, y, nn.BCEWithLogitsLoss()) < 0.1 < loss


def test_cross_entropy_over_one_output_unit_is_the_same_fault(cancer):
    X, y = cancer
    finding = the_finding(check_model(mlp(30, 1), X, nn.CrossEntropyLoss(), y[:, 0].long()))
    assert "CrossEntropyLoss applies a softmax over a single output unit" in finding.title
    assert finding.evidence["loss_family"] == "multiclass"


def test_softmax_on_multi_label_targets_cannot_fit_the_rows_with_two_labels(multi_label):
    X, y = multi_label
    faulty = mlp(64, 2, nn.Softmax(dim=1))
    finding = the_finding(check_model(faulty, X, nn.BCELoss(), y))
    assert finding.evidence["target_kind"] == "multi_hot" and finding.evidence["multi_hot_share"] > 0.1
    assert "BCEWithLogitsLoss" in finding.remedy
    for twin, loss_fn in ((mlp(64, 2, nn.Sigmoid()), nn.BCELoss()), (mlp(64, 2), nn.BCEWithLogitsLoss())):
        assert not mismatch(check_model(twin, X, loss_fn, y))
    assert train(faulty, X, y, nn.BCELoss()) > train(mlp(64, 2), X, y, nn.BCEWithLogitsLoss()) + 0.2
    # a softmax inside the loss is the same fault
    assert "inside CrossEntropyLoss" in the_finding(check_model(mlp(64, 2), X, nn.CrossEntropyLoss(), y)).remedy


def test_sigmoid_into_cross_entropy_cannot_go_below_its_loss_floor(wine):
    X, y = wine
    faulty = mlp(13, 3, nn.Sigmoid())
    finding = the_finding(check_model(faulty, X, nn.CrossEntropyLoss(), y))
    floor = finding.evidence["loss_floor"]
    assert floor == pytest.approx(np.log1p(2 * np.exp(-1.0)))  # logits in [0, 1], 3 classes
    assert "raw output" in finding.remedy and "CrossEntropyLoss" in finding.remedy
    assert train(faulty, X, y, nn.CrossEntropyLoss()) > floor - 1e-3  # the floor holds however long it trains
    healthy = mlp(13, 3)
    assert not mismatch(check_model(healthy, X, nn.CrossEntropyLoss(), y))
    assert train(healthy, X, y, nn.CrossEntropyLoss()) < floor / 10


def test_raw_scores_into_nll_loss_and_bce_loss_are_flagged_with_the_loss_to_use(digits, cancer):
    X, y = digits
    raw = the_finding(check_model(mlp(64, 10), X, nn.NLLLoss(), y))
    assert "log_softmax" in raw.remedy and "not log-probabilities" in raw.title
    assert train(mlp(64, 10), X, y, nn.NLLLoss(), steps=100) < -10  # it drives the raw scores to +infinity
    assert not mismatch(check_model(mlp(64, 10, nn.LogSoftmax(dim=1)), X, nn.NLLLoss(), y))
    Xc, yc = cancer
    bce = the_finding(check_model(mlp(30, 1), Xc, nn.BCELoss(), yc))
    assert "BCEWithLogitsLoss" in bce.remedy and "between 0 and 1" in bce.evidence["loss_error"]
    assert not mismatch(check_model(mlp(30, 1, nn.Sigmoid()), Xc, nn.BCELoss(), yc))


def test_mse_on_class_ids_is_flagged_and_learns_worse_than_a_classifier(digits, wine):
    X, y = wine
    one = the_finding(check_model(mlp(13, 1), X, nn.MSELoss(), y.float()[:, None]), "warning")
    assert one.evidence["classes"] == 3 and "nn.Linear(hidden, 3)" in one.remedy
    broadcast = the_finding(check_model(mlp(13, 3), X, nn.MSELoss(), y.float()))
    assert "each of the 3 outputs" in broadcast.title
    # on digits, ids as numbers generalize far worse than one logit per class (held-out half)
    X, y = digits
    half = len(y) // 2
    regression, classifier = mlp(64, 1), mlp(64, 10)
    assert the_finding(check_model(regression, X, nn.MSELoss(), y.float()[:, None]), "warning")
    train(regression, X[:half], y[:half].float()[:, None], nn.MSELoss())
    train(classifier, X[:half], y[:half], nn.CrossEntropyLoss())
    with torch.no_grad():
        regressed = regression(X[half:]).round().clamp(0, 9).squeeze(1).long()
        classified = classifier(X[half:]).argmax(1)
    assert (classified == y[half:]).float().mean() > (regressed == y[half:]).float().mean() + 0.2


def test_a_classification_loss_on_a_continuous_target_is_flagged(diabetes):
    X, y = diabetes
    for loss_fn, target in ((nn.BCEWithLogitsLoss(), y), (nn.CrossEntropyLoss(), y[:, 0])):
        finding = the_finding(check_model(mlp(10, 3 if target.dim() == 1 else 1), X, loss_fn, target))
        assert finding.evidence["target_kind"] == "continuous" and "MSELoss" in finding.remedy


def test_a_bounded_output_on_regression_targets_outside_its_range_is_flagged(diabetes):
    X, y = diabetes
    for act in (nn.Sigmoid(), nn.Tanh()):
        finding = the_finding(check_model(mlp(10, 1, act), X, nn.MSELoss(), y))
        assert finding.evidence["share_outside"] > 0.3 and "linear output" in finding.remedy
    assert train(mlp(10, 1, nn.Sigmoid()), X, y, nn.MSELoss()) > train(mlp(10, 1), X, y, nn.MSELoss()) + 0.2


# -- every loss family has a healthy model that stays clean -------------------------------------
def test_healthy_output_layers_of_every_loss_family_come_out_clean(digits, multi_label, cancer, diabetes):
    X, y = digits
    Xm, ym = multi_label
    Xc, yc = cancer
    Xd, yd = diabetes
    raw_diabetes = torch.tensor(load_diabetes(return_X_y=True)[1], dtype=torch.float32)[:, None]
    healthy = [
        (mlp(64, 10), X, nn.CrossEntropyLoss(), y),
        (mlp(64, 10), X, nn.CrossEntropyLoss(label_smoothing=0.1), y),
        (mlp(64, 10), X, nn.CrossEntropyLoss(), nn.functional.one_hot(y, 10).float()),  # probability targets
        (mlp(64, 10, nn.LogSoftmax(dim=1)), X, nn.NLLLoss(), y),
        (mlp(64, 2), Xm, nn.BCEWithLogitsLoss(), ym),
        (mlp(64, 2, nn.Sigmoid()), Xm, nn.BCELoss(), ym),
        (mlp(30, 1), Xc, nn.BCEWithLogitsLoss(), yc),
        (mlp(30, 1), Xc, nn.BCEWithLogitsLoss(), yc * 0.9 + 0.05),  # soft labels in [0, 1]
        (mlp(10, 1), Xd, nn.MSELoss(), yd),
        (mlp(10, 1), Xd, nn.L1Loss(), yd),
        (mlp(10, 1), Xd, nn.HuberLoss(), yd),
        (mlp(10, 1), Xd, nn.MSELoss(), raw_diabetes),  # whole numbers, but 200+ of them: a quantity
        (mlp(10, 1, nn.Softplus()), Xd, nn.MSELoss(), raw_diabetes),  # positive target, positive output
    ]
    for model, inputs, loss_fn, targets in healthy:
        report = check_model(model, inputs, loss_fn, targets)
        assert not mismatch(report), (loss_fn, report.to_text())


def test_the_facts_say_what_the_output_the_loss_and_the_targets_are(multi_label, digits):
    X, y = multi_label
    facts = inspect_model(mlp(64, 2, nn.Sigmoid()), X, nn.BCELoss(), y)
    assert facts.output.width == 2 and facts.output.activation == "sigmoid"
    assert (facts.loss.family, facts.loss.expects) == ("binary", "probabilities") and facts.loss.value > 0
    assert facts.targets.kind == "multi_hot" and facts.targets.columns == 2
    Xd, yd = digits
    facts = inspect_model(mlp(64, 10), Xd, nn.CrossEntropyLoss(), yd)
    assert facts.targets.kind == "class_ids" and facts.loss.value == pytest.approx(np.log(10), rel=0.2)
    assert inspect_model(mlp(64, 10), Xd, nn.MSELoss(), yd.float()).targets.kind == "integer_values"


def test_the_remedy_speaks_the_framework_of_the_facts(wine):
    """The facts are framework-neutral: an adapter that fills them for Keras gets Keras advice."""
    X, y = wine
    facts = inspect_model(mlp(13, 3), X, nn.CrossEntropyLoss(), y)
    facts.framework = "keras"
    facts.loss.name, facts.loss.family, facts.loss.expects = "sparse_categorical_crossentropy", "multiclass", "probabilities"
    facts.targets = describe_targets(y.numpy())  # what an adapter holding numpy labels would do
    assert facts.targets.kind == "class_ids" and facts.targets.n_unique == 3
    findings = [f for f in run_checks(Evidence(model=facts))[0] if f.code == CODE]
    assert len(findings) == 1 and findings[0].severity == "error"
    assert "from_logits=True" in findings[0].remedy and "nn." not in findings[0].remedy


# -- integer inputs -----------------------------------------------------------------------------
class Bag(nn.Module):
    """A bag-of-words classifier: an embedding of token ids, averaged, then a linear layer."""

    def __init__(self, vocabulary, classes):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, 16)
        self.out = nn.Linear(16, classes)

    def forward(self, ids):
        return self.out(self.embedding(ids).mean(dim=1))


def test_a_model_on_token_ids_is_traced_on_the_ids_themselves():
    from sklearn import datasets

    words = re.findall(r"[a-z]+", " ".join(load().DESCR.lower() for load in (datasets.load_wine, datasets.load_iris)))
    vocabulary = {w: i for i, w in enumerate(sorted(set(words)))}
    ids = torch.tensor([[vocabulary[w] for w in words[i:i + 12]] for i in range(0, len(words) - 12, 3)])
    labels = torch.tensor([int(i * 3 < len(words) / 2) for i in range(len(ids))])
    model = Bag(len(vocabulary), 2)
    facts = inspect_model(model, ids, nn.CrossEntropyLoss(), labels)
    assert facts.traced_via == "sample" and facts.layer("embedding").op == "embedding"
    assert facts.output.width == 2 and facts.loss.error is None
    report = check_model(model, ids, nn.CrossEntropyLoss(), labels)
    assert not report.warnings() and "float" not in report.to_text()
