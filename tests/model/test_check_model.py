"""check_model on real small models: each fault trains worse than its healthy twin, and only the
fault is reported (the twin has no finding of severity warning or error)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes, load_digits
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.nn import functional as F

from lossdoctor.errors import InputError
from lossdoctor.model import apply_init, check_model, inspect_model


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y)


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    y = (y - y.mean()) / y.std()  # standardized target: half of it is negative
    return torch.tensor(X / X.std(0), dtype=torch.float32), torch.tensor(y, dtype=torch.float32)[:, None]


def train(model, X, y, loss_fn, steps=150, lr=1e-2):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(loss_fn(model(X), y))


class Classifier(nn.Module):
    def __init__(self, softmax_in_forward: bool):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, 64), nn.Linear(64, 10)
        self.softmax_in_forward = softmax_in_forward

    def forward(self, x):
        logits = self.fc2(torch.relu(self.fc1(x)))
        return F.softmax(logits, dim=1) if self.softmax_in_forward else logits


def test_functional_softmax_before_cross_entropy_is_flagged_and_trains_worse(digits):
    X, y = digits
    loss_fn = nn.CrossEntropyLoss()
    faulty, healthy = Classifier(True), Classifier(False)
    healthy.load_state_dict(faulty.state_dict())
    report = check_model(faulty, X[:64], loss_fn, y[:64])
    twin = check_model(healthy, X[:64], loss_fn, y[:64])
    assert report.has("model.activation_mismatch", "error")
    finding = report.findings[0]
    assert finding.evidence["output_activation"] == "softmax" and "softmax" in finding.where
    assert "raw logits" in finding.remedy
    assert not twin.warnings()
    # the fault is real: the double softmax leaves the loss far above the twin's
    assert train(faulty, X, y, loss_fn) > train(healthy, X, y, loss_fn) + 0.5


def test_softmax_module_and_manual_probabilities_are_both_seen(digits):
    X, y = digits
    as_module = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10), nn.Softmax(dim=1))

    class Manual(nn.Module):  # exp / sum: no softmax call anywhere, the outputs still sum to 1
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            e = self.fc(x).exp()
            return e / e.sum(dim=1, keepdim=True)

    for model in (as_module, Manual()):
        report = check_model(model, X[:32], nn.CrossEntropyLoss(), y[:32])
        assert report.has("model.activation_mismatch", "error"), model


def test_relu_output_on_standardized_regression_target_is_flagged_and_trains_worse(diabetes):
    X, y = diabetes
    faulty = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1), nn.ReLU())
    healthy = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    healthy.load_state_dict(faulty.state_dict())
    report = check_model(faulty, X, nn.MSELoss(), y)
    assert report.has("model.activation_mismatch", "error")
    ev = report.findings[0].evidence
    assert ev["output_activation"] == "relu" and ev["share_outside"] > 0.3 and ev["threshold"] == 0.01
    assert report.findings[0].where == "3"
    assert not check_model(healthy, X, nn.MSELoss(), y).warnings()
    assert train(faulty, X, y, nn.MSELoss()) > train(healthy, X, y, nn.MSELoss()) + 0.1


def test_relu_output_is_fine_when_targets_are_non_negative(diabetes):
    X, y = diabetes
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1), nn.ReLU())
    assert not check_model(model, X, nn.MSELoss(), y - y.min()).warnings()


def mlp():
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def test_zero_init_is_flagged_and_cannot_train(digits):
    X, y = digits
    model = mlp()
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.zeros_(layer.weight)
    report = check_model(model, X[:64], nn.CrossEntropyLoss(), y[:64])
    assert report.has("model.bad_init", "error")
    top = report.findings[0]
    assert top.code == "model.bad_init" and top.evidence["0"]["all_zero"] and "he_normal" in top.remedy
    # symmetric units never differentiate: the zero-initialized net stays far above a healthy one
    healthy = mlp()
    assert train(model, X, y, nn.CrossEntropyLoss(), steps=60) > train(healthy, X, y, nn.CrossEntropyLoss(), steps=60) + 0.3


def test_tiny_init_is_flagged_with_the_ratio_and_apply_init_fixes_it(digits):
    X, y = digits
    model = mlp()
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                layer.weight.mul_(1e-3)
                layer.bias.zero_()
    report = check_model(model, X[:64], nn.CrossEntropyLoss(), y[:64])
    assert report.has("model.bad_init", "error")
    scale = next(f for f in report.findings if f.code == "model.bad_init" and "scale" in f.title)
    assert scale.evidence["layers"]["0"]["ratio"] < 1e-2 and scale.evidence["layers"]["0"]["scheme"] == "he_normal"
    assert "apply_init" in scale.remedy
    same = apply_init(model)
    assert same is model
    assert not check_model(model, X[:64], nn.CrossEntropyLoss(), y[:64]).warnings()
    facts = inspect_model(model, X[:64])
    assert 0.8 < facts.layer("0").scale_ratio < 1.25  # he_normal for the ReLU layer
    assert facts.layer("4").scheme == "lecun_normal"  # linear output


def test_healthy_mlp_and_cnn_on_digits_come_out_clean(digits):
    X, y = digits
    model = mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    assert not check_model(model, X[:128], nn.CrossEntropyLoss(), y[:128], opt).warnings()

    cnn = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10))
    images = X.reshape(-1, 1, 8, 8)
    report = check_model(cnn, images[:128], nn.CrossEntropyLoss(), y[:128], torch.optim.SGD(cnn.parameters(), lr=0.1))
    assert not report.warnings(), report.to_text()
    # and it trains: the checks call healthy what actually learns
    assert train(cnn, images[:500], y[:500], nn.CrossEntropyLoss(), steps=60, lr=3e-3) < 0.6


def test_sigmoid_before_bce_with_logits_and_nll_without_log_softmax_are_flagged(digits):
    X, y = digits
    binary = (y[:64] % 2).float()[:, None]
    sig = nn.Sequential(nn.Linear(64, 1), nn.Sigmoid())
    assert check_model(sig, X[:64], nn.BCEWithLogitsLoss(), binary).has("model.activation_mismatch", "error")
    assert not check_model(nn.Linear(64, 1), X[:64], nn.BCEWithLogitsLoss(), binary).warnings()
    raw = nn.Linear(64, 10)
    assert check_model(raw, X[:64], nn.NLLLoss(), y[:64]).has("model.activation_mismatch", "error")
    logp = nn.Sequential(nn.Linear(64, 10), nn.LogSoftmax(dim=1))
    assert not check_model(logp, X[:64], nn.NLLLoss(), y[:64]).warnings()
    # a wrapped loss is identified by what it calls
    wrapped = check_model(Classifier(True), X[:64], lambda out, t: F.cross_entropy(out, t), y[:64])
    assert wrapped.has("model.activation_mismatch", "error")


def test_conv_followed_by_tanh_is_flagged_but_a_squeeze_excite_gate_is_not(digits):
    X, _ = digits
    images = X[:32].reshape(-1, 1, 8, 8)
    tanh_cnn = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Tanh(), nn.Conv2d(8, 8, 3), nn.Tanh(), nn.Flatten(),
                             nn.Linear(8 * 4 * 4, 10))
    report = check_model(tanh_cnn, images)
    assert report.has("model.activation_mismatch", "warning")
    assert report.findings[0].evidence["layers"] == {"0": "tanh", "2": "tanh"}

    class SqueezeExcite(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3, padding=1)
            self.squeeze, self.excite = nn.Conv2d(8, 2, 1), nn.Conv2d(2, 8, 1)
            self.head = nn.Linear(8, 10)

        def forward(self, x):
            x = F.relu(self.conv(x))
            gate = torch.sigmoid(self.excite(F.relu(self.squeeze(x.mean((2, 3), keepdim=True)))))
            return self.head((x * gate).mean((2, 3)))

    assert not check_model(SqueezeExcite(), images).warnings()


class TanhGateCell(nn.Module):
    """An LSTM cell written by hand with tanh on every gate (the fault) or sigmoid gates."""

    def __init__(self, n_in, n_hidden, sigmoid_gates):
        super().__init__()
        self.lin = nn.Linear(n_in + n_hidden, 4 * n_hidden)
        self.gate = torch.sigmoid if sigmoid_gates else torch.tanh

    def forward(self, x, state):
        h, c = state
        i, f, o, g = self.lin(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = self.gate(f) * c + self.gate(i) * torch.tanh(g)
        return self.gate(o) * torch.tanh(c), c


class Recurrent(nn.Module):
    def __init__(self, sigmoid_gates):
        super().__init__()
        self.cell = TanhGateCell(8, 16, sigmoid_gates)
        self.out = nn.Linear(16, 10)

    def forward(self, x):  # x: (batch, 8 steps, 8 features) = the digit's rows
        h = c = torch.zeros(x.shape[0], 16)
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
        return self.out(h)


def test_custom_recurrent_cell_gating_with_tanh_is_flagged_and_sigmoid_gates_are_not(digits):
    X, y = digits
    seq = X[:64].reshape(-1, 8, 8)
    report = check_model(Recurrent(False), seq, nn.CrossEntropyLoss(), y[:64])
    assert report.has("model.activation_mismatch", "warning")
    finding = next(f for f in report.findings if f.code == "model.activation_mismatch")
    assert finding.where == "cell" and "sigmoid" not in finding.evidence["gate_activations"]
    assert not check_model(Recurrent(True), seq, nn.CrossEntropyLoss(), y[:64]).warnings()
    lstm = nn.LSTM(8, 16, batch_first=True)
    facts = inspect_model(lstm, seq)
    assert facts.builtin_recurrent == [""] and facts.recurrent_cells == []


class GaussianNoise(nn.Module):
    def __init__(self, std):
        super().__init__()
        self.std = std

    def forward(self, x):
        return x + self.std * torch.randn_like(x) if self.training else x


class Regularized(nn.Module):
    def __init__(self):
        super().__init__()
        self.noise = GaussianNoise(0.3)
        self.fc1, self.bn, self.drop = nn.Linear(64, 64), nn.BatchNorm1d(64), nn.Dropout(0.5)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        h = self.drop(torch.relu(self.bn(self.fc1(self.noise(x)))))
        return self.fc2(F.dropout(h, p=0.25, training=self.training))


def test_regularization_inventory_lists_dropout_weight_decay_noise_and_batch_norm(digits):
    X, y = digits
    model = Regularized()
    opt = torch.optim.AdamW([{"params": [model.fc1.weight, model.fc2.weight], "weight_decay": 0.1},
                             {"params": [model.fc1.bias, model.fc2.bias, *model.bn.parameters()], "weight_decay": 0.0}],
                            lr=1e-3)
    facts = inspect_model(model, X[:64], nn.CrossEntropyLoss(label_smoothing=0.1), y[:64], opt)
    reg = facts.regularization
    assert {(d["name"], d["p"]) for d in reg.dropout} >= {("drop", 0.5)}
    assert any(d["via"] == "function" and d["p"] == 0.25 for d in reg.dropout)
    assert reg.max_dropout == 0.5
    assert [w["weight_decay"] for w in reg.weight_decay] == [0.1, 0.0]
    assert reg.weight_decay[0]["param_names"] == ["fc1.weight", "fc2.weight"] and reg.weight_decay[0]["decoupled"]
    assert reg.noise[0]["name"] == "noise" and reg.noise[0]["std"] == 0.3
    assert [b["name"] for b in reg.batch_norm] == ["bn"] and reg.has_batch_norm
    assert reg.label_smoothing == 0.1
    assert facts.layer("fc1").activation == "relu"  # seen through the batch norm


def test_check_model_leaves_the_model_rng_and_hooks_untouched(digits):
    X, y = digits
    model = Regularized()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng_before = torch.random.get_rng_state()
    check_model(model, X[:64], nn.CrossEntropyLoss(), y[:64])
    check_model(model)  # synthetic batch
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not model.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_without_a_sample_the_layers_are_still_judged():
    model = mlp()
    facts = inspect_model(model)
    assert facts.traced_via == "synthetic" and facts.layer("0").activation == "relu"
    # a model whose input shape is not evident from its first layer: fx gives the op order
    cnn = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10), nn.Sigmoid())
    facts = inspect_model(cnn)
    assert facts.traced_via == "fx"
    assert facts.layer("0").activation == "relu" and facts.output.activation == "sigmoid"
    zero = mlp()
    nn.init.zeros_(zero[2].weight)
    assert check_model(zero).has("model.bad_init", "error")


def test_bad_input_raises_a_clear_input_error(digits):
    X, _ = digits
    with pytest.raises(InputError, match="no parameters"):
        check_model(nn.Sequential(nn.ReLU()))
    with pytest.raises(InputError, match="torch.nn.Module"):
        check_model(np.zeros(3))
    with pytest.raises(InputError, match="raised on sample_input"):
        check_model(nn.Linear(10, 2), X[:4])  # 64 features into a 10-input layer
    with pytest.raises(InputError, match="instance"):
        check_model(nn.Linear(64, 2), X[:4], loss_fn=nn.CrossEntropyLoss)
    with pytest.raises(InputError, match="scheme"):
        apply_init(nn.Linear(3, 3), scheme="orthogonal_magic")


def test_report_is_json_serializable_and_has_no_verdict(digits):
    X, y = digits
    report = check_model(Classifier(True), X[:16], nn.CrossEntropyLoss(), y[:16])
    assert report.verdict is None
    again = type(report).from_json(report.to_json())
    assert again.codes == report.codes and again.metadata["loss"] == "cross_entropy"


def test_apply_init_with_a_dict_touches_only_the_named_layers():
    model = mlp()
    before = model[0].weight.detach().clone()
    apply_init(model, {"4": "glorot"})
    assert torch.equal(model[0].weight, before)
    fan_in, fan_out = 64, 10
    assert abs(model[4].weight.std().item() / (2 / (fan_in + fan_out)) ** 0.5 - 1) < 0.2
    assert torch.count_nonzero(model[4].bias) == 0
    with pytest.raises(InputError, match="no Linear/Conv layer named"):
        apply_init(model, {"head": "he_normal"})


def test_activations_shrinking_through_a_deep_stack_are_flagged_even_when_each_layer_looks_acceptable():
    deep = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(64, 64, bias=False), nn.ReLU())], nn.Linear(64, 10))
    apply_init(deep)
    with torch.no_grad():
        for layer in deep[:-1]:
            if isinstance(layer, nn.Linear):
                layer.weight.mul_(0.5)  # 0.5x He: inside the per-layer band, 0.5^11 across the stack
    x = torch.randn(128, 64)
    report = check_model(deep, x)
    assert report.codes == ["model.bad_init"]
    finding = report.findings[0]
    assert finding.where == "activations" and finding.evidence["ratio_last_to_first"] < 1e-2
    apply_init(deep)
    assert not check_model(deep, x).findings
