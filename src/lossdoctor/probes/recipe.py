"""The recipe: what the user trains with, normalised once so every probe reads the same thing.

A recipe is a model, training data, how a batch becomes a loss (``loss_fn(outputs, targets)``,
the model's own ``outputs.loss`` as Hugging Face models return it when given ``labels``, or a
``forward_fn(model, batch) -> loss``), an optimizer (its class and hyper-parameters, and which
parameters it trains), and optionally validation data, gradient clipping, gradient accumulation, a
learning-rate schedule, mixed precision (an ``autocast`` dtype and a ``GradScaler``), epochs, a
batch size and the task. ``normalize_recipe`` checks every piece on a copy and raises
``InputError`` with a clear message; the probes then build fresh copies of the model and of the
optimizer from it, on the model's device, and never touch the originals.
"""
from __future__ import annotations

import copy
import inspect
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .batches import (
    Examples,
    as_tensor,
    call_model,
    load_examples,
    logits_of,
    loss_of,
    map_tensors,
    split_batch,
    tensors_of,
)
from .schedule import Schedule
from .usercode import RecipeError, describe, user_code

RECIPE_KEYS = ("model", "train", "val", "loss_fn", "forward_fn", "optimizer", "grad_clip", "epochs", "batch_size",
               "task", "groups", "scheduler", "scheduler_interval", "gradient_accumulation_steps", "autocast",
               "grad_scaler")
REQUIRED_KEYS = ("model", "train", "optimizer")

# Batch size when the recipe gives none and the data is not a DataLoader: a common default.
DEFAULT_BATCH_SIZE = 64
# Rows the recipe is tried on before any probe runs (train and eval mode): a shape, dtype or label
# mistake shows on a few rows, and a few rows keep batch norm and attention masks meaningful.
VALIDATION_ROWS = 4
# Hugging Face models ignore this label in their own cross-entropy (padding, masked tokens).
HF_IGNORE_INDEX = -100

CLASSIFICATION_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss, nn.BCEWithLogitsLoss, nn.BCELoss,
                         nn.MultiMarginLoss, nn.MultiLabelSoftMarginLoss)
REGRESSION_LOSSES = (nn.MSELoss, nn.L1Loss, nn.HuberLoss, nn.SmoothL1Loss)
LOSS_KINDS = ((nn.CrossEntropyLoss, "cross_entropy"), (nn.NLLLoss, "cross_entropy"),
              (nn.BCEWithLogitsLoss, "bce"), (nn.BCELoss, "bce"), (nn.MSELoss, "mse"),
              (nn.L1Loss, "l1"), (nn.SmoothL1Loss, "l1"), (nn.HuberLoss, "l1"))
DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
AUTOCAST_DTYPES = {torch.float16: "float16", torch.bfloat16: "bfloat16"}
# Settings of a GradScaler that a fresh scaler for each copy takes over (read through its getters).
SCALER_SETTINGS = ("init_scale", "growth_factor", "backoff_factor", "growth_interval")


@dataclass
class Recipe:
    """The user's training setup, normalised. Data are the user's own (read, never written)."""

    model: nn.Module
    train: Examples
    optimizer_class: type
    param_groups: list[dict[str, Any]]  # hyper-parameters per group, with "param_index" lists
    user_optimizer: torch.optim.Optimizer
    loss_fn: Any = None
    forward_fn: Callable | None = None
    val: Examples | None = None
    grad_clip: float | None = None
    epochs: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    task: str = "classification"
    groups: Any = None
    accumulation: int = 1
    schedule: Schedule | None = None
    autocast: torch.dtype | None = None
    scaler: dict[str, Any] | None = None  # GradScaler settings, None when no scaler is used
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cast_to: torch.dtype | None = None  # float64 data cast to the model's float dtype
    loss_kind: str | None = None  # cross_entropy | bce | mse | l1 | None (unknown)
    output_width: int | None = None  # the last dimension of the model's scores
    ignore_index: int | None = None
    integer_inputs: bool = False  # token ids or categorical codes
    peak_factor: float = 1.0  # the schedule's highest rate over a run / the base rate
    notes: list[str] = field(default_factory=list)
    _targets: Any = field(default=None, repr=False)

    # -- facts -------------------------------------------------------------------------------
    @property
    def n_train(self) -> int:
        return self.train.n

    @property
    def base_lr(self) -> float:
        """The first parameter group's rate as set (before any schedule)."""
        return float(self.param_groups[0].get("lr", 0.0)) if self.param_groups else 0.0

    @property
    def lr(self) -> float:
        """The user's learning rate: the highest the schedule reaches over a run (the base without one)."""
        return self.base_lr * self.peak_factor

    @property
    def weight_decay(self) -> float:
        return max((float(g.get("weight_decay", 0.0) or 0.0) for g in self.param_groups), default=0.0)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one pass over the training data."""
        return max(1, math.ceil(self.n_train / (self.batch_size * self.accumulation)))

    @property
    def total_steps(self) -> int | None:
        """The optimizer steps of the user's whole training, when the recipe gives its epochs."""
        return self.epochs * self.steps_per_epoch if self.epochs else None

    @property
    def targets(self) -> torch.Tensor | None:
        """Every training target (ignored labels left out), flattened per row where items differ in
        length; None when the batches carry none."""
        if self._targets is None:
            self._targets = _all_targets(self)
        return self._targets if isinstance(self._targets, torch.Tensor) else None

    @property
    def n_classes(self) -> int | None:
        if self.task != "classification":
            return None
        if self.loss_kind == "bce":
            return 2
        if self.output_width and self.output_width > 1 and self.loss_kind == "cross_entropy":
            return self.output_width
        y = self.targets
        if y is None or y.dtype.is_floating_point or not y.numel():
            return None
        return int(y.max().item()) + 1

    @property
    def trained_indices(self) -> set[int]:
        """Indices (in ``model.parameters()`` order) of the parameters the user's optimizer trains."""
        return {i for g in self.param_groups for i in g["param_index"]}

    # -- copies ------------------------------------------------------------------------------
    def fresh_model(self) -> nn.Module:
        """A deep copy of the user's model (same weights), in training mode."""
        model = copy.deepcopy(self.model)
        model.train()
        return model

    def make_optimizer(self, model: nn.Module, *, optimizer_class: type | None = None, lr: float | None = None,
                       weight_decay: float | None = None, extra: dict[str, Any] | None = None):
        """The user's optimizer class and hyper-parameters, rebuilt on ``model`` (a copy), over the
        parameters the user's optimizer trains.

        ``lr`` is a peak rate: every group's rate is scaled by ``lr / self.lr``, keeping their ratios
        (the schedule, when there is one, then scales each step by the same factor);
        ``weight_decay`` replaces every group's weight decay; ``optimizer_class`` swaps the
        optimizer, keeping only the rates, weight decay and ``extra``.
        """
        params = list(model.parameters())
        scale = (lr / self.lr) if lr is not None and self.lr > 0 else None
        swap = optimizer_class is not None and optimizer_class is not self.optimizer_class
        groups = []
        for g in self.param_groups:
            hyper = {k: v for k, v in g.items() if k not in ("param_index", "initial_lr")}
            if swap:
                hyper = {k: hyper[k] for k in ("lr", "weight_decay") if k in hyper}
                hyper.update(extra or {})
            if lr is not None:
                hyper["lr"] = float(g.get("lr", 0.0)) * scale if scale is not None else lr
            if weight_decay is not None and "weight_decay" in hyper:
                hyper["weight_decay"] = weight_decay
            groups.append({"params": [params[i] for i in g["param_index"]], **hyper})
        cls = optimizer_class or self.optimizer_class
        if swap:
            return cls(groups)
        return self._rebuild(cls, groups, model)

    def _rebuild(self, cls: type, groups: list[dict[str, Any]], model: nn.Module):
        """The user's optimizer class on new groups. Constructors that require arguments get them from
        the optimizer's defaults; one that still cannot be called is copied from the user's optimizer
        with its parameters mapped onto the copy's (its state left behind)."""
        try:
            with user_code(f"rebuilding the optimizer {cls.__name__}(param_groups)"):
                return cls(groups, **_constructor_defaults(cls, self.user_optimizer))
        except RecipeError as first:
            try:
                return _rebind_copy(self.user_optimizer, self.model, model, groups)
            except Exception:  # noqa: BLE001 - say why the constructor failed, not the fallback
                raise InputError(f"{first} (lossdoctor rebuilds your optimizer on a copy of the model: it must "
                                 f"be constructible as {cls.__name__}(param_groups, **defaults) or deep-copyable)"
                                 ) from None

    def new_scaler(self):
        if self.scaler is None:
            return None
        return torch.amp.GradScaler(self.device.type, **self.scaler)

    # -- batches and the loss ------------------------------------------------------------------
    def batch(self, idx, val: bool = False) -> Any:
        """The batch of rows ``idx`` (of the training set, or of the validation set), on the model's
        device (float64 cast to the model's dtype when the recipe's data is float64)."""
        examples = self.val if val else self.train
        batch = examples.batch(idx)
        device, cast = self.device, self.cast_to

        def move(t: torch.Tensor) -> torch.Tensor:
            if cast is not None and t.dtype == torch.float64:
                t = t.to(cast)
            return t.to(device, non_blocking=True) if t.device != device else t

        return map_tensors(batch, move)

    def autocast_context(self):
        return torch.autocast(device_type=self.device.type, dtype=self.autocast or torch.float32,
                              enabled=self.autocast is not None)

    def forward(self, model: nn.Module, batch: Any) -> tuple[Any, Any]:
        """(loss, model output or None) of one batch, in the recipe's precision. The user's code."""
        with self.autocast_context():
            if self.forward_fn is not None:  # returns the loss, or an output that carries it (.loss)
                result = self.forward_fn(model, batch)
                return (result if isinstance(result, (torch.Tensor, float, int)) else loss_of(result)), None
            if self.loss_fn is None:  # the model computes its loss: a dict batch goes in whole (labels included)
                out = call_model(model, dict(batch) if _is_mapping(batch) else split_batch(batch)[0])
                return loss_of(out), out
            inputs, targets = split_batch(batch)
            out = call_model(model, inputs)
            scores = logits_of(out) if not isinstance(out, torch.Tensor) else out
            return self.loss_fn(scores if scores is not None else out, targets), out

    def loss(self, model: nn.Module, batch: Any, what: str) -> tuple[torch.Tensor, Any]:
        """``forward`` under the user-code guard: a failure names ``what`` (run, step, mode)."""
        with user_code(f"the forward and loss ({what})", f"lossdoctor computes the loss as {self.contract}"):
            loss, out = self.forward(model, batch)
        _check_loss_value(loss, f"the forward and loss ({what})", needs_grad=torch.is_grad_enabled())
        return loss, out

    @property
    def contract(self) -> str:
        """How a batch becomes a loss, in words (for error messages)."""
        if self.forward_fn is not None:
            return "forward_fn(model, batch)"
        if self.loss_fn is None:
            return "model(**batch).loss for a dict batch (labels included), model(inputs).loss otherwise"
        return "loss_fn(model(inputs), targets), a batch being (inputs, targets) or a dict with 'labels'"

    def inputs_of(self, batch: Any) -> Any:
        return split_batch(batch)[0]


def _is_mapping(batch: Any) -> bool:
    return hasattr(batch, "items") and hasattr(batch, "keys") and not isinstance(batch, torch.Tensor)


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


# -- the optimizer -----------------------------------------------------------------------------
def _constructor_defaults(cls: type, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's defaults that its constructor takes by name (a custom optimizer may require
    them: ``MyOpt(params, lr, alpha)``); group values override them anyway."""
    try:
        parameters = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return {}
    names = [n for n, p in parameters.items() if n not in ("self", "params")
             and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    required = [n for n in names if parameters[n].default is inspect.Parameter.empty]
    if not required:
        return {}
    defaults = getattr(optimizer, "defaults", {}) or {}
    return {n: defaults[n] for n in names if n in defaults}


def _rebind_copy(user_optimizer: torch.optim.Optimizer, user_model: nn.Module, model: nn.Module,
                 groups: list[dict[str, Any]]):
    """A deep copy of the user's optimizer whose parameters are the copy's, with a fresh state."""
    memo: dict[int, Any] = {id(p): q for p, q in zip(user_model.parameters(), model.parameters())}
    for state in user_optimizer.state.values():
        for t in state.values():
            if isinstance(t, torch.Tensor):
                memo[id(t)] = None
    clone = copy.deepcopy(user_optimizer, memo)
    clone.state = defaultdict(dict)
    clone._optimizer_step_pre_hooks.clear()
    clone._optimizer_step_post_hooks.clear()
    for target, source in zip(clone.param_groups, groups):
        target.update({k: v for k, v in source.items() if k != "params"})
        target["params"] = list(source["params"])
    return clone


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
        if "initial_lr" in hyper:  # a scheduler built on the user's optimizer moved "lr" (warm-up from 0)
            hyper["lr"] = hyper.pop("initial_lr")
        hyper["param_index"] = [index[id(p)] for p in g["params"]]
        groups.append(hyper)
    return groups


def _scaler_settings(scaler: Any) -> dict[str, Any] | None:
    if scaler is None or scaler is False:
        return None
    if scaler is True:
        return {}
    if not isinstance(scaler, torch.amp.GradScaler):
        raise InputError(f"grad_scaler: expected a torch.amp.GradScaler, True or None, got {type(scaler).__name__}")
    if not scaler.is_enabled():
        return None
    getters = {"init_scale": scaler.get_scale, "growth_factor": scaler.get_growth_factor,
               "backoff_factor": scaler.get_backoff_factor, "growth_interval": scaler.get_growth_interval}
    return {k: getters[k]() for k in SCALER_SETTINGS}


# -- normalisation -------------------------------------------------------------------------------
def infer_loss_kind(loss_fn: Any) -> str | None:
    return next((kind for cls, kind in LOSS_KINDS if isinstance(loss_fn, cls)), None)


def infer_task(loss_fn: Any, y: torch.Tensor | None, loss_kind: str | None = None) -> str:
    if isinstance(loss_fn, CLASSIFICATION_LOSSES) or loss_kind in ("cross_entropy", "bce"):
        return "classification"
    if isinstance(loss_fn, REGRESSION_LOSSES) or loss_kind in ("mse", "l1"):
        return "regression"
    return "regression" if y is not None and y.dtype.is_floating_point else "classification"


def _all_targets(recipe: Recipe) -> torch.Tensor | bool:
    """Every target of the training set (ignore_index left out), or False when there are none."""
    examples = recipe.train
    if examples.columns is not None:
        _, y = split_batch(examples.columns)
        parts = [y] if isinstance(y, torch.Tensor) else []
    else:
        parts = []
        for batch in examples.chunks():
            _, y = split_batch(batch)
            if not isinstance(y, torch.Tensor):
                return False
            parts.append(y)
    if not parts:
        return False
    try:
        y = torch.cat([p.reshape(p.shape[0], -1) if p.dim() > 1 else p for p in parts]) if len(parts) > 1 \
            else parts[0]
    except RuntimeError:  # padded to a different length per chunk: the values are what counts
        y = torch.cat([p.reshape(-1) for p in parts])
    if recipe.ignore_index is not None and not y.dtype.is_floating_point:
        y = y[y != recipe.ignore_index] if y.dim() == 1 else y.reshape(-1)[y.reshape(-1) != recipe.ignore_index]
    return y


def _first_rows(examples: Examples, rows: int) -> torch.Tensor:
    return torch.arange(min(rows, examples.n))


def _check_loss_value(loss: Any, what: str, needs_grad: bool = True) -> None:
    if loss is None:
        raise InputError(f"recipe: {what} gave no loss: the model's output has no .loss and the recipe has no "
                         "loss_fn (give loss_fn=nn.CrossEntropyLoss(), pass labels in the batch to a model that "
                         "computes its loss, or give forward_fn=lambda model, batch: loss)")
    if isinstance(loss, (float, int)) and not isinstance(loss, bool):
        raise InputError(f"recipe: {what} returned a Python number ({loss!r}), not a tensor: the loss must stay a "
                         "tensor connected to the model's parameters (no .item() or float() inside loss_fn)")
    if not isinstance(loss, torch.Tensor):
        raise InputError(f"recipe: {what} returned {type(loss).__name__}, expected a scalar loss tensor")
    if loss.numel() != 1:
        raise InputError(f"recipe: {what} returned a tensor of shape {list(loss.shape)}, expected a scalar loss "
                         "(a loss built with reduction='none' must be reduced: use reduction='mean', or a forward_fn "
                         "that returns loss.mean())")
    if not loss.dtype.is_floating_point:
        raise InputError(f"recipe: {what} returned a {loss.dtype} tensor, expected a floating-point loss")
    if needs_grad and not loss.requires_grad:
        raise InputError(f"recipe: {what} returned a loss that does not depend on the trained parameters "
                         "(computed under torch.no_grad(), detached, or from frozen parameters only)")


def _check_labels(recipe: Recipe, examples: Examples, what: str) -> None:
    """Class labels inside [0, outputs) for a cross-entropy; a clear error naming the first one that is not."""
    if recipe.loss_kind != "cross_entropy" or not recipe.output_width or recipe.output_width < 2:
        return
    width, ignore = recipe.output_width, recipe.ignore_index
    offset = 0
    seen = 0
    parts = [examples.columns] if examples.columns is not None else examples.chunks()
    for batch in parts:
        _, y = split_batch(batch)
        if not isinstance(y, torch.Tensor) or y.dtype.is_floating_point or y.dtype == torch.bool:
            return
        valid = (y >= 0) & (y < width)
        if ignore is not None:
            valid |= y == ignore
            seen += int((y != ignore).sum())
        else:
            seen += y.numel()
        if not bool(valid.all()):
            bad = (~valid).nonzero()[0]
            row = offset + int(bad[0])
            value = int(y[tuple(bad)])
            raise InputError(f"{what}: label {value} at row {row} is outside [0, {width}) (the model has {width} "
                             "outputs): give the model one output per class, or map the labels to 0..C-1")
        offset += int(y.shape[0])
    if seen == 0:
        raise InputError(f"{what}: every label equals the loss's ignore_index {ignore}: there is nothing to learn "
                         "(check the label column and the padding/masking)")


def _infer_from_output(recipe: Recipe, out: Any, targets: Any) -> None:
    scores = logits_of(out) if out is not None else None
    if isinstance(scores, torch.Tensor) and scores.dim() > 0:
        recipe.output_width = int(scores.shape[-1])
    if recipe.loss_kind is not None or recipe.loss_fn is not None or not isinstance(targets, torch.Tensor):
        return
    # the model computes its own loss (Hugging Face): read its kind from the targets and the scores
    problem = getattr(getattr(recipe.model, "config", None), "problem_type", None)
    if problem == "multi_label_classification":
        recipe.loss_kind = "bce"
    elif not targets.dtype.is_floating_point and recipe.output_width and recipe.output_width > 1:
        recipe.loss_kind = "cross_entropy"
        recipe.ignore_index = HF_IGNORE_INDEX
    elif targets.dtype.is_floating_point and isinstance(scores, torch.Tensor) and \
            scores.numel() == targets.numel():
        recipe.loss_kind = "mse"


def _validate(recipe: Recipe) -> None:
    """The recipe on a few rows of a copy, in train and eval mode: every mistake an InputError now,
    not a crash inside a probe."""
    try:
        model = copy.deepcopy(recipe.model)
    except Exception as exc:  # noqa: BLE001 - locks, open files, generators held by the model
        raise InputError(f"model: cannot be deep-copied ({describe(exc)}); the checkup trains copies of your model "
                         "and never the model itself: keep such objects outside the module") from None
    rows = _first_rows(recipe.train, VALIDATION_ROWS)
    batch = recipe.batch(rows)
    model.train()
    where = f"on {rows.numel()} training rows, train mode"
    loss, out = recipe.loss(model, batch, where)
    with user_code(f"backward of the loss ({where})"):
        loss.backward()
    if not any(p.grad is not None for p in model.parameters() if p.requires_grad):
        raise InputError("recipe: the loss's backward reached none of the trained parameters")
    _, targets = split_batch(batch)
    _infer_from_output(recipe, out, targets)
    model.eval()
    with torch.no_grad():
        recipe.loss(model, batch, f"on {rows.numel()} training rows, eval mode")
    if recipe.val is not None:
        vrows = _first_rows(recipe.val, VALIDATION_ROWS)
        with torch.no_grad():
            recipe.loss(model, recipe.batch(vrows, val=True), f"on {vrows.numel()} validation rows, eval mode")


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    return next((p.dtype for p in model.parameters() if p.dtype.is_floating_point), None)


def normalize_recipe(model, train, loss_fn=None, optimizer=None, val=None, grad_clip=None, task=None, epochs=None,
                     batch_size=None, groups=None, forward_fn=None, scheduler=None, scheduler_interval="step",
                     gradient_accumulation_steps=1, autocast=None, grad_scaler=None) -> Recipe:
    """Check every piece of a recipe and return a ``Recipe``; raise ``InputError`` when one is wrong."""
    if not isinstance(model, nn.Module):
        raise InputError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise InputError("model: it has no trainable parameters")
    if loss_fn is not None and not callable(loss_fn):
        raise InputError(f"loss_fn: expected a callable such as nn.CrossEntropyLoss(), got {type(loss_fn).__name__}")
    if forward_fn is not None and not callable(forward_fn):
        raise InputError(f"forward_fn: expected a function (model, batch) -> loss, got {type(forward_fn).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise InputError("optimizer: expected an optimizer instance bound to the model's parameters "
                         f"(e.g. torch.optim.Adam(model.parameters(), lr=1e-3)), got {type(optimizer).__name__}")
    train_examples, loader_bs, notes = load_examples(train, "train")
    if train_examples.n < 2:
        raise InputError(f"train: needs at least 2 rows, got {train_examples.n}")
    val_examples = None
    if val is not None:
        val_examples, _, more = load_examples(val, "val")
        notes += more
    if grad_clip is not None:
        if isinstance(grad_clip, bool) or not isinstance(grad_clip, (int, float)) or not grad_clip > 0 \
                or not math.isfinite(grad_clip):
            raise InputError(f"grad_clip: expected a positive max gradient norm or None, got {grad_clip!r}")
        grad_clip = float(grad_clip)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise InputError(f"epochs: expected a positive integer or None, got {epochs!r}")
    accumulation = gradient_accumulation_steps if gradient_accumulation_steps is not None else 1
    if isinstance(accumulation, bool) or not isinstance(accumulation, int) or accumulation < 1:
        raise InputError(f"gradient_accumulation_steps: expected a positive integer, got {accumulation!r}")
    bs = batch_size if batch_size is not None else (loader_bs or DEFAULT_BATCH_SIZE)
    if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
        raise InputError(f"batch_size: expected a positive integer, got {bs!r}")
    bs = min(bs, train_examples.n)
    if autocast is not None and autocast not in AUTOCAST_DTYPES:
        raise InputError(f"autocast: expected torch.float16, torch.bfloat16 or None, got {autocast!r}")
    params = list(model.parameters())
    device = params[0].device
    dtype = _model_dtype(model)
    data_dtypes = {t.dtype for ex in (train_examples, val_examples) if ex is not None
                   for t in tensors_of(ex.columns if ex.columns is not None else ex.batch(_first_rows(ex, 2)))}
    cast_to = None
    if torch.float64 in data_dtypes and dtype is not None and dtype != torch.float64:
        cast_to = dtype
        notes.append(f"data: float64 tensors are cast to the model's {str(dtype).replace('torch.', '')} for the probes "
                     "(model(X) on float64 data raises 'expected ... Double ... Float': cast them in your pipeline)")
    recipe = Recipe(
        model=model, train=train_examples, val=val_examples, loss_fn=loss_fn, forward_fn=forward_fn,
        optimizer_class=type(optimizer), param_groups=_param_groups(optimizer, model), user_optimizer=optimizer,
        grad_clip=grad_clip, epochs=epochs, batch_size=bs, groups=groups, accumulation=accumulation,
        autocast=autocast, scaler=_scaler_settings(grad_scaler), device=device, cast_to=cast_to,
        loss_kind=infer_loss_kind(loss_fn), ignore_index=getattr(loss_fn, "ignore_index", None), notes=notes,
    )
    if recipe.scaler is not None and autocast is None:
        notes.append("grad_scaler without autocast: the loss is scaled but computed in full precision")
    _validate(recipe)
    first_inputs = tensors_of(recipe.inputs_of(recipe.batch(_first_rows(train_examples, 2))))
    recipe.integer_inputs = bool(first_inputs) and not first_inputs[0].dtype.is_floating_point
    recipe.task = task if task is not None else infer_task(loss_fn, recipe.targets, recipe.loss_kind)
    if recipe.task not in ("classification", "regression"):
        raise InputError(f"task: expected 'classification' or 'regression', got {recipe.task!r}")
    _check_labels(recipe, train_examples, "train")
    if val_examples is not None:
        _check_labels(recipe, val_examples, "val")
    if groups is not None:
        try:
            n_groups = len(groups)
        except TypeError:
            raise InputError(f"groups: expected one key per training row, got {type(groups).__name__}") from None
        if n_groups != train_examples.n:
            raise InputError(f"groups: {n_groups} keys for {train_examples.n} training rows (expected one per row)")
    if scheduler is not None:
        recipe.schedule = Schedule(scheduler, lambda: _shadow_optimizer(recipe), scheduler_interval,
                                   recipe.steps_per_epoch, optimizer)
    return recipe


def set_schedule_horizon(recipe: Recipe, steps: int) -> None:
    """The schedule's peak over ``steps`` optimizer steps (a warm-up longer than the run never reaches
    its peak: the rate the run actually trains at is what the probes compare)."""
    if recipe.schedule is None or recipe.base_lr <= 0:
        return
    rates = recipe.schedule.rates(steps)
    peak = max((r for r in rates if math.isfinite(r)), default=0.0)
    recipe.peak_factor = peak / recipe.base_lr if peak > 0 else 1.0


def _shadow_optimizer(recipe: Recipe) -> torch.optim.Optimizer:
    """The user's optimizer class and groups over one dummy parameter per group (for the schedule)."""
    dummies = [nn.Parameter(torch.zeros(1)) for _ in recipe.param_groups]
    groups = [{"params": [d], **{k: v for k, v in g.items() if k not in ("param_index", "initial_lr")}}
              for d, g in zip(dummies, recipe.param_groups)]
    try:
        return recipe.optimizer_class(groups, **_constructor_defaults(recipe.optimizer_class, recipe.user_optimizer))
    except Exception:  # noqa: BLE001 - any optimizer class carries a schedule's rates
        return torch.optim.SGD(groups, lr=recipe.base_lr or 1e-3)


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


__all__ = ["Recipe", "RecipeError", "as_tensor", "normalize_recipe", "recipe_from_dict"]
