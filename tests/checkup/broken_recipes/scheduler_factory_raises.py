"""A scheduler factory with a bug (a keyword the scheduler does not take)."""
import torch
from _digits import recipe

EXPECT = r"InputError: recipe: the scheduler factory raised TypeError"


def build():
    return recipe(scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step=10))
