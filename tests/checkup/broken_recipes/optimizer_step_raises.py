"""An optimizer whose step() fails once it has state (a bug in a custom update rule)."""
import torch
from _digits import mlp, recipe

EXPECT = r"InputError: recipe: optimizer.step\(\) \(step 2 of the run .*\) raised ZeroDivisionError"


class Buggy(torch.optim.SGD):
    def step(self, closure=None):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls >= 2:
            raise ZeroDivisionError("division by zero")
        return super().step(closure)


def build():
    model = mlp()
    return {**recipe(model=model), "optimizer": Buggy(model.parameters(), lr=0.01)}
