"""A model whose forward raises on its 30th call (a shape it does not expect, a cache that overflows)."""
from _digits import mlp, recipe
from torch import nn

EXPECT = r"InputError: recipe: the forward and loss \(.*\) raised RuntimeError: cache full .*forward_raises_after_a_few_calls.py:\d+"


class Flaky(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = mlp()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls >= 30:
            raise RuntimeError("cache full")
        return self.body(x)


def build():
    return recipe(model=Flaky())
