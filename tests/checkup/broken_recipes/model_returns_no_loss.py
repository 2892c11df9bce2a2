"""No loss_fn, and a model that returns plain scores (no .loss): nothing to train on."""
from _digits import recipe

EXPECT = r"InputError: recipe: .* gave no loss"


def build():
    spec = recipe()
    del spec["loss_fn"]
    return spec
