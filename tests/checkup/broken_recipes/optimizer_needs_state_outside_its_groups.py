"""A custom optimizer with a required constructor argument that is not a hyper-parameter: rebuilt by copy."""
import torch
from _digits import mlp, recipe

EXPECT = "Report"


class Scaled(torch.optim.SGD):
    def __init__(self, params, factor, lr=0.01):
        super().__init__(params, lr=lr * factor)
        self.factor = factor


def build():
    model = mlp()
    return {**recipe(model=model), "optimizer": Scaled(model.parameters(), 2.0)}
