"""Fault: twenty-four tanh layers with weights 8x the LeCun scale (the chaotic regime): activations stay
bounded by tanh, but the gradient grows by five orders of magnitude from the last layer to the first.

The root cause is the initialization (the fix is the LeCun/Xavier scale); the exploding gradient is its
symptom, present from step 0, and a report must show ``grad.exploding`` under ``model.bad_init``."""
import torch
from _common import digits
from torch import nn

EXPECTED = "model.bad_init"


def build():
    torch.manual_seed(0)
    train, val = digits()
    layers = [nn.Linear(64, 64), nn.Tanh()]
    for _ in range(23):
        layers += [nn.Linear(64, 64), nn.Tanh()]
    model = nn.Sequential(*layers, nn.Linear(64, 10))
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear) and m.out_features == 64:
                nn.init.normal_(m.weight, 0.0, 8.0 / 64 ** 0.5)
                m.bias.zero_()
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.SGD(model.parameters(), lr=1e-3)}
