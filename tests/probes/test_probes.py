"""The probes one by one: recipe normalisation, the range test, the initial loss, the batch-norm
gradient check, the subset probe, and the decisions on their plain results."""
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lossdoctor.errors import InputError
from lossdoctor.probes.batchnorm import run_batchnorm_gradient_check
from lossdoctor.probes.checks import (
    ProbeEvidence,
    batchnorm_masks_gradients,
    initial_loss_far_off,
)
from lossdoctor.probes.initial_loss import run_initial_loss
from lossdoctor.probes.loop import train_run
from lossdoctor.probes.lr_range import run_lr_range
from lossdoctor.probes.recipe import normalize_recipe, recipe_from_dict
from lossdoctor.probes.subset import run_subset


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    return torch.tensor(X), torch.tensor(y)


def mlp():
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def test_dataloader_and_dataset_are_materialised_with_the_loaders_batch_size(digits):
    X, y = digits
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    r = normalize_recipe(model, DataLoader(TensorDataset(X, y), batch_size=32), nn.CrossEntropyLoss(), opt)
    assert r.batch_size == 32 and r.n_train == len(X) and r.task == "classification" and r.n_classes == 10

    class Pairs(Dataset):
        def __len__(self):
            return 100

        def __getitem__(self, i):
            return X[i], y[i]

    r = normalize_recipe(model, Pairs(), nn.CrossEntropyLoss(), opt, batch_size=16)
    assert r.n_train == 100 and torch.equal(r.train.batch(torch.arange(100))[0], X[:100]) and r.batch_size == 16


def test_rebuilt_optimizer_keeps_class_hyperparameters_and_group_ratios(digits):
    model = mlp()
    opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.1},
                           {"params": model[2].parameters(), "lr": 0.01}], momentum=0.9, weight_decay=1e-3)
    r = normalize_recipe(model, digits, nn.CrossEntropyLoss(), opt)
    copy = r.fresh_model()
    rebuilt = r.make_optimizer(copy, lr=1.0, weight_decay=0.0)
    assert type(rebuilt) is torch.optim.SGD
    assert [g["lr"] for g in rebuilt.param_groups] == pytest.approx([1.0, 0.1])
    assert all(g["momentum"] == 0.9 and g["weight_decay"] == 0.0 for g in rebuilt.param_groups)
    assert rebuilt.param_groups[0]["params"][0] is copy[0].weight
    assert r.lr == 0.1 and r.weight_decay == 1e-3


def test_recipe_dict_needs_the_required_keys_and_no_unknown_ones():
    with pytest.raises(InputError, match="lacks train"):
        recipe_from_dict({"model": 1, "loss_fn": 2, "optimizer": 3})
    with pytest.raises(InputError, match="unknown key"):
        recipe_from_dict({"model": 1, "train": 0, "loss_fn": 2, "optimizer": 3, "lr": 0.1})


def test_integer_features_into_a_linear_layer_and_a_bad_clip_are_rejected_with_a_clear_message(digits):
    X, y = digits
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(InputError, match="integer inputs reached a layer that expects floating point"):
        normalize_recipe(model, (X.long(), y), nn.CrossEntropyLoss(), opt)
    with pytest.raises(InputError, match="grad_clip"):
        normalize_recipe(model, (X, y), nn.CrossEntropyLoss(), opt, grad_clip=-1)


def test_range_test_finds_a_rate_between_the_decades_that_work_and_blow_up(digits):
    torch.manual_seed(0)
    model = mlp()
    r = normalize_recipe(model, digits, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=1e-4))
    res = run_lr_range(r, 120)
    d = res.data
    assert d["stopped"] in ("blew up", "non-finite loss")
    assert all(b > a for a, b in zip(d["lrs"], d["lrs"][1:]))
    assert 1e-3 < d["suggested_lr"] < 1.0 < d["blowup_lr"]
    assert d["min_loss"] < 0.5 * d["start_loss"]
    assert d["user_lr_ratio"] < 0.01


def test_initial_loss_is_ln_c_for_a_fresh_network_and_far_off_for_scaled_logits(digits):
    torch.manual_seed(0)
    model = mlp()
    r = normalize_recipe(model, digits, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters()))
    res = run_initial_loss(r)
    assert res.data["expected_loss"] == pytest.approx(math.log(10))
    assert 0.8 < res.data["ratio"] < 1.3
    assert initial_loss_far_off(ProbeEvidence({"initial_loss": res}, {"task": "classification"})) == []

    class Hot(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = mlp()

        def forward(self, x):
            return self.body(x) * 100

    hot = Hot()
    r = normalize_recipe(hot, digits, nn.CrossEntropyLoss(), torch.optim.Adam(hot.parameters()))
    res = run_initial_loss(r)
    found = initial_loss_far_off(ProbeEvidence({"initial_loss": res}, {"task": "classification"}))
    assert res.data["ratio"] > 3 and [f.code for f in found] == ["model.logit_overflow"]


def test_batchnorm_out_reveals_a_vanishing_gradient_that_batchnorm_hides(digits):
    torch.manual_seed(0)
    layers = [nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Sigmoid()]
    for _ in range(9):
        layers += [nn.Linear(32, 32), nn.BatchNorm1d(32), nn.Sigmoid()]
    deep = nn.Sequential(*layers, nn.Linear(32, 10))
    r = normalize_recipe(deep, digits, nn.CrossEntropyLoss(), torch.optim.Adam(deep.parameters()))
    res = run_batchnorm_gradient_check(r)
    assert res.data["ratio_without_bn"] < 1e-3 < res.data["ratio_with_bn"]
    assert [f.code for f in batchnorm_masks_gradients(ProbeEvidence({"batchnorm_out": res}))] == \
        ["grad.masked_by_batchnorm"]

    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))
    r = normalize_recipe(cnn, digits, nn.CrossEntropyLoss(), torch.optim.Adam(cnn.parameters()))
    res = run_batchnorm_gradient_check(r)
    assert batchnorm_masks_gradients(ProbeEvidence({"batchnorm_out": res})) == []


def test_a_three_unit_bottleneck_fits_the_subset_but_not_the_full_data(digits):
    torch.manual_seed(0)
    narrow = nn.Sequential(nn.Linear(64, 3), nn.ReLU(), nn.Linear(3, 10))
    r = normalize_recipe(narrow, digits, nn.CrossEntropyLoss(), torch.optim.Adam(narrow.parameters(), lr=1e-2))
    sub = run_subset(r, 400)
    full = train_run(r, label="full", steps=400)
    assert sub.data["run"]["final_loss"] < 0.5 * full.final_loss


def test_training_loop_records_the_first_non_finite_step_and_stops(digits):
    torch.manual_seed(0)
    model = mlp()
    r = normalize_recipe(model, digits, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=1e4))
    run = train_run(r, label="huge lr", steps=100)
    assert run.first_non_finite_step is not None and run.steps_done == run.first_non_finite_step < 100
    assert run.final_loss == math.inf


def test_the_gradient_check_at_init_names_an_exploding_depth_and_stays_quiet_on_a_sound_net(digits):
    from lossdoctor.probes.checks import gradient_across_depth_at_init
    from lossdoctor.probes.gradients import run_gradients_at_init

    torch.manual_seed(0)
    layers = []
    for i in range(24):
        layers += [nn.Linear(64, 64), nn.Tanh()]
    chaotic = nn.Sequential(*layers, nn.Linear(64, 10))
    with torch.no_grad():
        for m in chaotic[:-1]:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 8.0 / 64 ** 0.5)  # 8x the LeCun scale: the chaotic regime
    r = normalize_recipe(chaotic, digits, nn.CrossEntropyLoss(), torch.optim.Adam(chaotic.parameters()))
    found = gradient_across_depth_at_init(ProbeEvidence({"gradients_at_init": run_gradients_at_init(r)}))
    assert [f.code for f in found] == ["grad.exploding"] and found[0].evidence["first_over_last_grad_norm"] > 1e4
    assert found[0].evidence["at_init"] is True
    sound = mlp()
    r = normalize_recipe(sound, digits, nn.CrossEntropyLoss(), torch.optim.Adam(sound.parameters()))
    assert gradient_across_depth_at_init(ProbeEvidence({"gradients_at_init": run_gradients_at_init(r)})) == []
