"""Every label is -100, CrossEntropyLoss's ignore_index (a masking step that masked everything)."""
import torch
from _digits import digits, recipe

EXPECT = r"InputError: train: every label equals the loss's ignore_index -100"


def build():
    X, y = digits()
    return recipe(train=(X, torch.full_like(y, -100)))
