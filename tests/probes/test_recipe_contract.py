"""The recipe contract: batches of every common shape, the model's own loss, gradient accumulation,
learning-rate schedules replayed at any peak rate, frozen parameters left alone."""
import sys
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler
from torch import nn

from lossdoctor.probes.ablations import _reinit, run_ablation
from lossdoctor.probes.loop import train_run
from lossdoctor.probes.recipe import normalize_recipe, set_schedule_horizon

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "faults"))
from _text import loaders, tiny_bert, token_digits


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return torch.tensor(StandardScaler().fit_transform(X), dtype=torch.float32), torch.tensor(y)


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def test_a_dict_batch_loader_with_a_padding_collate_fn_feeds_a_bert_that_computes_its_own_loss():
    train, val = token_digits()
    train_loader, val_loader = loaders(train, val)
    model = tiny_bert()
    recipe = normalize_recipe(model, train_loader, None, torch.optim.AdamW(model.parameters(), lr=3e-3),
                              val=val_loader)
    assert recipe.loss_kind == "cross_entropy" and recipe.output_width == 10 and recipe.n_classes == 10
    assert recipe.integer_inputs and recipe.batch_size == 32 and recipe.n_train == len(train)
    batch = recipe.batch(torch.tensor([0, 1, 2]))
    lengths = [len(train[i]["input_ids"]) for i in range(3)]
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == (3, max(lengths))  # padded by the recipe's own collate_fn
    assert batch["attention_mask"].sum(1).tolist() == lengths
    run = train_run(recipe, label="bert", steps=60)
    assert run.final_loss < 0.9 * run.start_loss


def test_a_hugging_face_dataset_with_dict_rows_and_a_loss_fn(digits):
    datasets = pytest.importorskip("datasets")
    X, y = digits
    ds = datasets.Dataset.from_dict({"pixels": X[:600].tolist(), "label": y[:600].tolist(), "note": ["x"] * 600})

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = mlp()

        def forward(self, pixels):
            return self.body(pixels)

    model = Net()
    recipe = normalize_recipe(model, ds, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=3e-3))
    batch = recipe.batch(torch.arange(5))
    assert set(batch) == {"pixels", "label"} and batch["pixels"].shape == (5, 64)  # the string column is left out
    run = train_run(recipe, label="hf dataset", steps=100)
    assert run.final_loss < 0.5 * run.start_loss


def test_gradient_accumulation_takes_that_many_micro_batches_per_optimizer_step(digits):
    model = mlp()
    recipe = normalize_recipe(model, digits, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1),
                              batch_size=16, gradient_accumulation_steps=3)
    copy = recipe.fresh_model()
    rows = []
    copy.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]) if torch.is_grad_enabled() else None)
    steps = []
    optimizer = recipe.make_optimizer(copy)
    optimizer.register_step_post_hook(lambda *a: steps.append(1))
    train_run(recipe, label="accumulated", steps=5, model=copy, optimizer=optimizer)
    assert len(steps) == 5 and rows == [16] * 15
    assert recipe.steps_per_epoch == -(-len(digits[0]) // 48)


@pytest.mark.parametrize("as_instance", [False, True])
def test_a_warm_up_schedule_is_replayed_on_every_copy_and_scaled_to_the_peak_rate(digits, as_instance):
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.02)
    warmup = lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20))
    scheduler = warmup(optimizer) if as_instance else warmup
    recipe = normalize_recipe(model, digits, nn.CrossEntropyLoss(), optimizer, scheduler=scheduler)
    set_schedule_horizon(recipe, 60)
    assert recipe.lr == pytest.approx(0.02) and recipe.base_lr == pytest.approx(0.02)
    run = train_run(recipe, label="user's rate", steps=60)
    assert run.lrs[0] == pytest.approx(0.001) and run.lrs[19] == pytest.approx(0.02) and max(run.lrs) == pytest.approx(0.02)
    lowered = run_ablation(recipe, "lr_suggested", 60, suggested_lr=0.002)
    assert lowered.data["run"]["lr_max"] == pytest.approx(0.002) and lowered.data["run"]["lr_min"] == pytest.approx(1e-4)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.001 if as_instance else 0.02)  # the user's, untouched


def test_re_initialization_touches_only_the_parameters_the_optimizer_trains(digits):
    model = mlp()
    for p in model[0].parameters():
        p.requires_grad_(False)
    frozen = [p.detach().clone() for p in model[0].parameters()]
    recipe = normalize_recipe(model, digits, nn.CrossEntropyLoss(),
                              torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3))
    assert recipe.trained_indices == {2, 3}
    result = run_ablation(recipe, "reinit", 40)
    assert "2 parameter tensors the optimizer does not train kept as they were" in result.data["how"]
    copy = recipe.fresh_model()
    _reinit(copy, recipe.trained_indices)
    assert all(torch.equal(a, b) for a, b in zip(frozen, copy[0].parameters()))
    assert not torch.equal(copy[2].weight, model[2].weight)
    rebuilt = recipe.make_optimizer(recipe.fresh_model())
    assert sum(p.numel() for g in rebuilt.param_groups for p in g["params"]) == 32 * 10 + 10
    assert all(torch.equal(a, b) for a, b in zip(frozen, model[0].parameters()))
