"""Mixed-precision recipes: a digits MLP trained under float16 autocast with a GradScaler."""
from __future__ import annotations

import torch
from _common import digits
from torch import nn


class SoftmaxClassifier(nn.Module):
    """An MLP that returns log-probabilities through a hand-written softmax (exp / sum of exp, without
    subtracting the maximum), as a custom attention or a ported paper implementation does."""

    def __init__(self, hidden: int = 64, stable: bool = False):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
        self.stable = stable

    def forward(self, x):
        scores = self.body(x)
        if self.stable:
            return torch.log_softmax(scores.float(), dim=-1)
        e = torch.exp(scores)
        return torch.log(e / e.sum(dim=-1, keepdim=True))


def amp_recipe(model: nn.Module, lr: float = 1e-3, dtype=torch.float16, scaler: bool = True) -> dict:
    train, val = digits()
    return {"model": model, "train": train, "val": val, "loss_fn": nn.NLLLoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=lr), "autocast": dtype,
            "grad_scaler": torch.amp.GradScaler("cpu") if scaler else None, "batch_size": 64}
