"""Fault: eight ReLU layers with weights 3x above He, a LayerNorm before the head keeping the logits
sane: the gradient grows by orders of magnitude from the last layer to the first."""
import torch
from torch import nn
from _common import digits

EXPECTED = "grad.exploding"


def build():
    torch.manual_seed(0)
    train, val = digits()
    layers = [nn.Linear(64, 64), nn.ReLU()]
    for _ in range(7):
        layers += [nn.Linear(64, 64), nn.ReLU()]
    model = nn.Sequential(*layers, nn.LayerNorm(64), nn.Linear(64, 10))
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear) and m.out_features == 64:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                m.weight.mul_(3.0)
    return {"model": model, "train": train, "val": val, "loss_fn": nn.CrossEntropyLoss(),
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.01)}
