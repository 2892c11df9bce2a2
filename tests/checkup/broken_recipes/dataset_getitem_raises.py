"""A Dataset whose __getitem__ raises for some indices (a missing file on disk)."""
import torch
from _digits import digits, recipe

EXPECT = r"InputError: recipe: train: Broken\[250\] raised FileNotFoundError"


class Broken(torch.utils.data.Dataset):
    def __init__(self):
        self.X, self.y = digits()

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        if i == 250:
            raise FileNotFoundError(f"image_{i}.png")
        return self.X[i], self.y[i]


def build():
    return recipe(train=Broken())
