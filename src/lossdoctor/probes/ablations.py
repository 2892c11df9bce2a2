"""Ablations: the user's setting with one thing changed, at the same number of steps.

Each variant is one of the seed's experiments: the suggested learning rate, dropout and weight
decay off, clipping off, a principled re-initialization (of the weights the user trains: frozen
weights and a pretrained backbone stay as they are), the other optimizer family, and full precision
for a mixed-precision recipe.
"""
from __future__ import annotations

import dataclasses
import time

import torch
from torch import nn

from .checks import SAFE_LR_VARIANTS
from .loop import RunResult, train_run
from .recipe import Recipe, without_dropout
from .result import ProbeResult

ADAM_LR = 1e-3  # Adam's default rate, the usual first try
SGD_MOMENTUM = 0.9  # the usual SGD momentum when switching away from Adam


def _reinit(model: nn.Module, trained: set[int]) -> tuple[nn.Module, str]:
    """Re-initialize the parameters the user trains (indices ``trained``); the others keep their values."""
    params = list(model.parameters())
    kept = {i: p.detach().clone() for i, p in enumerate(params) if i not in trained}
    model, how = _reinit_all(model)
    with torch.no_grad():
        for i, value in kept.items():
            params[i].copy_(value)
    if kept:
        how += f"; {len(kept)} parameter tensors the optimizer does not train kept as they were"
    return model, how


def _reinit_all(model: nn.Module) -> tuple[nn.Module, str]:
    """he_normal for ReLU-family networks, lecun_normal otherwise (lossdoctor.model.apply_init when present)."""
    try:
        from ..model import apply_init

        info = apply_init(model, scheme="auto")
        return model, f"apply_init(auto){': ' + str(info) if isinstance(info, str) else ''}"
    except Exception as exc:  # noqa: BLE001 - the model room may not be there yet: use the fallback
        note = f"lossdoctor.model.apply_init unavailable ({type(exc).__name__}); built-in he/lecun used"
    relu_like = any(isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU)) for m in model.modules())
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            if relu_like:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            else:
                fan_in = nn.init._calculate_fan_in_and_fan_out(m.weight)[0]
                nn.init.normal_(m.weight, 0.0, fan_in ** -0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.RNNBase):
            for name, p in m.named_parameters():
                if name.startswith("weight"):
                    nn.init.normal_(p, 0.0, p.shape[1] ** -0.5)
                elif name.startswith("bias"):
                    nn.init.zeros_(p)
    return model, note


def _is_adam_family(cls: type) -> bool:
    return issubclass(cls, (torch.optim.Adam, torch.optim.AdamW, torch.optim.Adamax, torch.optim.NAdam,
                            torch.optim.RAdam, torch.optim.Adagrad, torch.optim.RMSprop, torch.optim.Adadelta))


VARIANTS = ("lr_suggested", "no_regularization", "no_clipping", "reinit", "other_optimizer", "full_precision")


def run_ablation(recipe: Recipe, variant: str, steps: int, *, suggested_lr: float | None = None,
                 seed: int = 0, at_lr: float | None = None) -> ProbeResult:
    """Run one variant; ``suggested_lr`` (from the range test) is needed by lr_suggested.

    ``at_lr`` runs the variant at that learning rate instead of the user's (the re-run of an
    ablation whose runs at the user's rate both failed); the result is named ``ablation:VARIANT@suggested_lr``.
    """
    if at_lr is not None and variant not in SAFE_LR_VARIANTS:
        raise ValueError(f"at_lr applies to {', '.join(SAFE_LR_VARIANTS)}, not {variant!r}")
    t0 = time.monotonic()
    model = recipe.fresh_model()
    data: dict = {"variant": variant}
    clip = "recipe"
    lr_kw = {} if at_lr is None else {"lr": at_lr}
    if variant == "lr_suggested":
        optimizer = recipe.make_optimizer(model, lr=suggested_lr)
        label = f"lr {suggested_lr:.2g} (suggested)"
        data["lr"] = suggested_lr
    elif variant == "no_regularization":
        without_dropout(model)
        optimizer = recipe.make_optimizer(model, weight_decay=0.0, **lr_kw)
        label = "dropout 0, weight decay 0"
    elif variant == "no_clipping":
        optimizer = recipe.make_optimizer(model, **lr_kw)
        clip = None
        label = "clipping off"
    elif variant == "reinit":
        model, how = _reinit(model, recipe.trained_indices)
        optimizer = recipe.make_optimizer(model, **lr_kw)
        label = "re-initialized (he/lecun normal)"
        data["how"] = how
    elif variant == "other_optimizer":
        if _is_adam_family(recipe.optimizer_class):
            lr = suggested_lr if suggested_lr else recipe.lr
            optimizer = recipe.make_optimizer(model, optimizer_class=torch.optim.SGD, lr=lr,
                                              extra={"momentum": SGD_MOMENTUM})
            label = f"SGD momentum {SGD_MOMENTUM}, lr {lr:.2g}"
        else:
            optimizer = recipe.make_optimizer(model, optimizer_class=torch.optim.Adam, lr=ADAM_LR)
            label = f"Adam lr {ADAM_LR:g}"
        data["optimizer"] = type(optimizer).__name__
    elif variant == "full_precision":
        optimizer = recipe.make_optimizer(model)
        label = "full precision (no autocast, no grad scaler)"
        recipe = dataclasses.replace(recipe, autocast=None, scaler=None)
    else:
        raise ValueError(f"unknown ablation {variant!r}; one of {VARIANTS}")
    name = f"ablation:{variant}"
    if at_lr is not None:
        label, name = f"{label}, lr {at_lr:.2g}", f"{name}@suggested_lr"
        data["lr"] = at_lr
    run: RunResult = train_run(recipe, label=label, steps=steps, model=model, optimizer=optimizer,
                               grad_clip=clip, seed=seed)
    data["run"] = run.summary()
    data["losses"] = run.losses
    data["label"] = label
    return ProbeResult(name, data=data, seconds=time.monotonic() - t0)
