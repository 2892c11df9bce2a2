"""A custom optimizer whose constructor requires its hyper-parameters (no defaults): a valid recipe."""
import torch
from _digits import mlp, recipe

EXPECT = "Report"


class SignSGD(torch.optim.Optimizer):
    def __init__(self, params, lr, decay):
        super().__init__(params, {"lr": lr, "decay": decay})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.mul_(1 - group["decay"]).add_(p.grad.sign(), alpha=-group["lr"])


def build():
    model = mlp()
    return {**recipe(model=model), "optimizer": SignSGD(model.parameters(), 1e-3, 0.0)}
