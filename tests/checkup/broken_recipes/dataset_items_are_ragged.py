"""A Dataset whose items have different lengths, with no collate_fn that pads them."""
import torch
from _digits import digits, recipe

EXPECT = r"InputError: train: its items cannot be batched .* pass a DataLoader with a collate_fn"


class Ragged(torch.utils.data.Dataset):
    def __init__(self):
        self.X, self.y = digits()

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i, : 64 - i % 3], self.y[i]


def build():
    return recipe(train=Ragged())
