"""A DataLoader whose collate_fn fails on some batches."""
import torch
from _digits import digits, recipe
from torch.utils.data import DataLoader, TensorDataset

EXPECT = r"InputError: recipe: the collate function raised KeyError"


def bad_collate(items):
    if len(items) > 8:
        raise KeyError("pixel_values")
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def build():
    X, y = digits()
    return recipe(train=DataLoader(TensorDataset(X, y), batch_size=32, collate_fn=bad_collate))
