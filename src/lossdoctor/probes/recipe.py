"""The recipe: what the user trains with, normalised once so every probe reads the same thing.

A recipe is a model, training data, a loss, an optimizer (its class and hyper-parameters), and
optionally validation data, a gradient-clipping threshold, epochs, a batch size and the task.
``normalize_recipe`` checks every piece and raises ``InputError`` with a clear message; the probes
then build fresh copies of the model and of the optimizer from it and never touch the originals.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError

RECIPE_KEYS = ("model", "train", "val", "loss_fn", "optimizer", "grad_clip", "epochs", "batch_size", "task", "groups")
REQUIRED_KEYS = ("model", "train", "loss_fn", "optimizer")

# A Dataset is materialised into tensors for the probes; beyond this many rows a seeded sample is
# used (the probes run a few hundred steps, so they never see more rows than this anyway).
MAX_MATERIALIZED_ROWS = 20_000
# Batch size when the recipe gives none and the data is not a DataLoader: a common default.
DEFAULT_BATCH_SIZE = 64

CLASSIFICATION_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss, nn.BCEWithLogitsLoss, nn.BCELoss,
                         nn.MultiMarginLoss, nn.MultiLabelSoftMarginLoss)
REGRESSION_LOSSES = (nn.MSELoss, nn.L1Loss, nn.HuberLoss, nn.SmoothL1Loss)
DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass
class Recipe:
    """The user's training setup, normalised. Tensors are the user's own (read, never written)."""

    model: nn.Module
    X: torch.Tensor
    y: torch.Tensor
    loss_fn: Any
    optimizer_class: type
    param_groups: list[dict[str, Any]]  # hyper-parameters per group, with "param_index" lists
    X_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    grad_clip: float | None = None
    epochs: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    task: str = "classification"
    groups: Any = None
    notes: list[str] = field(default_factory=list)

    @property
    def n_train(self) -> int:
        return int(self.X.shape[0])

    @property
    def lr(self) -> float:
        """The user's learning rate (the first parameter group's)."""
        return float(self.param_groups[0].get("lr", 0.0)) if self.param_groups else 0.0

    @property
    def weight_decay(self) -> float:
        return max((float(g.get("weight_decay", 0.0) or 0.0) for g in self.param_groups), default=0.0)

    @property
    def n_classes(self) -> int | None:
        if self.task != "classification":
            return None
        if isinstance(self.loss_fn, (nn.BCEWithLogitsLoss, nn.BCELoss)):
            return 2
        if self.y.dtype.is_floating_point:
            return None
        return int(self.y.max().item()) + 1 if self.y.numel() else None

    def fresh_model(self) -> nn.Module:
        """A deep copy of the user's model (same weights), in training mode."""
        model = copy.deepcopy(self.model)
        model.train()
        return model

    def make_optimizer(self, model: nn.Module, *, optimizer_class: type | None = None, lr: float | None = None,
                       weight_decay: float | None = None, extra: dict[str, Any] | None = None):
        """The user's optimizer class and hyper-parameters, rebuilt on ``model`` (a copy).

        ``lr`` replaces every group's learning rate, keeping their ratios to the first group's;
        ``weight_decay`` replaces every group's weight decay; ``optimizer_class`` swaps the
        optimizer, keeping only the learning rate, weight decay and ``extra``.
        """
        params = list(model.parameters())
        groups = []
        base_lr = self.lr
        for g in self.param_groups:
            hyper = {k: v for k, v in g.items() if k != "param_index"}
            if optimizer_class is not None and optimizer_class is not self.optimizer_class:
                hyper = {k: hyper[k] for k in ("lr", "weight_decay") if k in hyper}
                hyper.update(extra or {})
            if lr is not None:
                ratio = (float(g.get("lr", base_lr)) / base_lr) if base_lr > 0 else 1.0
                hyper["lr"] = lr * ratio
            if weight_decay is not None and "weight_decay" in hyper:
                hyper["weight_decay"] = weight_decay
            groups.append({"params": [params[i] for i in g["param_index"]], **hyper})
        return (optimizer_class or self.optimizer_class)(groups)


# -- helpers on model copies -------------------------------------------------------------------
def dropout_layers(model: nn.Module) -> list[tuple[str, float]]:
    return [(name, float(m.p)) for name, m in model.named_modules() if isinstance(m, DROPOUT_TYPES)]


def recurrent_dropouts(model: nn.Module) -> list[tuple[str, float]]:
    return [(name, float(m.dropout)) for name, m in model.named_modules()
            if isinstance(m, nn.RNNBase) and m.dropout > 0]


def batchnorm_layers(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, BATCHNORM_TYPES)]


def without_dropout(model: nn.Module) -> nn.Module:
    """Set every dropout rate of ``model`` (a copy) to 0, in place; return it."""
    for m in model.modules():
        if isinstance(m, DROPOUT_TYPES):
            m.p = 0.0
        elif isinstance(m, nn.RNNBase):
            m.dropout = 0.0
    return model


def without_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every batch-norm layer of ``model`` (a copy) by Identity, in place; return it."""
    for name, child in list(model.named_children()):
        if isinstance(child, BATCHNORM_TYPES):
            setattr(model, name, nn.Identity())
        else:
            without_batchnorm(child)
    return model


# -- normalisation -------------------------------------------------------------------------------
def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        import pandas as pd

        if isinstance(value, (pd.DataFrame, pd.Series)):
            value = value.to_numpy()
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise InputError(f"{what}: an object array cannot be trained on (expected numbers)")
        return torch.from_numpy(value)
    if isinstance(value, (list, tuple)):
        try:
            return torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as exc:
            raise InputError(f"{what}: cannot be turned into a tensor ({exc})") from None
    raise InputError(f"{what}: expected a tensor or array, got {type(value).__name__}")


def _prepare_inputs(X: torch.Tensor, what: str) -> torch.Tensor:
    if not X.dtype.is_floating_point:
        raise InputError(f"{what}: inputs must be floating point, got {X.dtype} (cast with .float())")
    return X


def _materialize(data: Any, what: str) -> tuple[torch.Tensor, torch.Tensor, int | None, list[str]]:
    """(X, y), a Dataset or a DataLoader -> (X, y, loader batch size or None, notes)."""
    notes: list[str] = []
    batch_size = None
    if isinstance(data, torch.utils.data.DataLoader):
        batch_size = data.batch_size
        data = data.dataset
    if isinstance(data, (tuple, list)) and len(data) == 2 and not isinstance(data, torch.utils.data.Dataset):
        X, y = _as_tensor(data[0], f"{what}[0] (X)"), _as_tensor(data[1], f"{what}[1] (y)")
    elif isinstance(data, torch.utils.data.TensorDataset) and len(data.tensors) == 2:
        X, y = data.tensors
    elif isinstance(data, torch.utils.data.Dataset):
        try:
            n = len(data)  # type: ignore[arg-type]
        except TypeError:
            raise InputError(f"{what}: an iterable Dataset without len() cannot be probed; "
                             "pass (X, y) tensors or a map-style Dataset") from None
        idx = np.arange(n)
        if n > MAX_MATERIALIZED_ROWS:
            idx = np.sort(np.random.default_rng(0).choice(n, MAX_MATERIALIZED_ROWS, replace=False))
            notes.append(f"{what}: {n} rows, probes use a seeded sample of {MAX_MATERIALIZED_ROWS}")
        xs, ys = [], []
        for i in idx:
            item = data[int(i)]
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise InputError(f"{what}: Dataset items must be (x, y) pairs, got {type(item).__name__}")
            xs.append(torch.as_tensor(item[0]))
            ys.append(torch.as_tensor(item[1]))
        X, y = torch.stack(xs), torch.stack(ys)
    else:
        raise InputError(f"{what}: expected (X, y) tensors, a Dataset or a DataLoader, got {type(data).__name__}")
    if X.shape[0] != y.shape[0]:
        raise InputError(f"{what}: X has {X.shape[0]} rows but y has {y.shape[0]}")
    if X.shape[0] < 2:
        raise InputError(f"{what}: needs at least 2 rows, got {X.shape[0]}")
    return _prepare_inputs(X, f"{what} X"), y, batch_size, notes


def infer_task(loss_fn: Any, y: torch.Tensor) -> str:
    if isinstance(loss_fn, CLASSIFICATION_LOSSES):
        return "classification"
    if isinstance(loss_fn, REGRESSION_LOSSES):
        return "regression"
    return "regression" if y.dtype.is_floating_point else "classification"


def _param_groups(optimizer: torch.optim.Optimizer, model: nn.Module) -> list[dict[str, Any]]:
    index = {id(p): i for i, p in enumerate(model.parameters())}
    groups = []
    for g in optimizer.param_groups:
        missing = [p for p in g["params"] if id(p) not in index]
        if missing:
            raise InputError("optimizer: it holds parameters that are not the model's; build it with "
                             "optimizer_class(model.parameters(), ...)")
        hyper = {}
        for k, v in g.items():
            if k == "params":
                continue
            hyper[k] = v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else copy.deepcopy(v)
        hyper["param_index"] = [index[id(p)] for p in g["params"]]
        groups.append(hyper)
    return groups


def normalize_recipe(model, train, loss_fn, optimizer, val=None, grad_clip=None, task=None, epochs=None,
                     batch_size=None, groups=None) -> Recipe:
    """Check every piece of a recipe and return a ``Recipe``; raise ``InputError`` when one is wrong."""
    if not isinstance(model, nn.Module):
        raise InputError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise InputError("model: it has no trainable parameters")
    if not callable(loss_fn):
        raise InputError(f"loss_fn: expected a callable such as nn.CrossEntropyLoss(), got {type(loss_fn).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise InputError("optimizer: expected an optimizer instance bound to the model's parameters "
                         f"(e.g. torch.optim.Adam(model.parameters(), lr=1e-3)), got {type(optimizer).__name__}")
    X, y, loader_bs, notes = _materialize(train, "train")
    X_val = y_val = None
    if val is not None:
        X_val, y_val, _, more = _materialize(val, "val")
        notes += more
    if grad_clip is not None:
        if isinstance(grad_clip, bool) or not isinstance(grad_clip, (int, float)) or not grad_clip > 0 \
                or not math.isfinite(grad_clip):
            raise InputError(f"grad_clip: expected a positive max gradient norm or None, got {grad_clip!r}")
        grad_clip = float(grad_clip)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise InputError(f"epochs: expected a positive integer or None, got {epochs!r}")
    bs = batch_size if batch_size is not None else (loader_bs or DEFAULT_BATCH_SIZE)
    if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
        raise InputError(f"batch_size: expected a positive integer, got {bs!r}")
    bs = min(bs, int(X.shape[0]))
    if task is None:
        task = infer_task(loss_fn, y)
    if task not in ("classification", "regression"):
        raise InputError(f"task: expected 'classification' or 'regression', got {task!r}")
    recipe = Recipe(
        model=model, X=X, y=y, loss_fn=loss_fn, optimizer_class=type(optimizer),
        param_groups=_param_groups(optimizer, model), X_val=X_val, y_val=y_val, grad_clip=grad_clip,
        epochs=epochs, batch_size=bs, task=task, groups=groups, notes=notes,
    )
    # One forward pass on two rows, on a copy, so that a shape mismatch is an InputError now and
    # not a crash inside a probe.
    probe = copy.deepcopy(model)
    try:
        with torch.no_grad():
            out = probe(X[:2])
            loss_fn(out, y[:2])
    except Exception as exc:  # noqa: BLE001 - any failure here is the recipe's, reported as input
        raise InputError(f"recipe: model(X) followed by loss_fn(output, y) fails on two training rows "
                         f"({type(exc).__name__}: {exc})") from None
    return recipe


def recipe_from_dict(spec: Any, origin: str = "build()") -> dict[str, Any]:
    """Validate the dict a ``build()`` function returned; return the keyword arguments of checkup."""
    if not isinstance(spec, dict):
        raise InputError(f"{origin}: must return a dict with keys {', '.join(REQUIRED_KEYS)}, "
                         f"got {type(spec).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in spec]
    if missing:
        raise InputError(f"{origin}: the returned dict lacks {', '.join(missing)} "
                         f"(expected keys: {', '.join(RECIPE_KEYS)})")
    unknown = sorted(set(spec) - set(RECIPE_KEYS))
    if unknown:
        raise InputError(f"{origin}: unknown key(s) {', '.join(unknown)} (expected keys: {', '.join(RECIPE_KEYS)})")
    return dict(spec)
