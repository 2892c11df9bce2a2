"""LBFGS, whose step() needs a closure: a valid recipe the probes must step with one."""
import torch
from _digits import mlp, recipe

EXPECT = "Report"


def build():
    model = mlp()
    return {**recipe(model=model), "optimizer": torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=2)}
