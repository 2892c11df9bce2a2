"""Fault: float16 autocast with a GradScaler over a hand-written softmax (exp without subtracting
the maximum): once the logits pass ~11, exp() overflows float16, every step's gradient is
non-finite, the scaler skips the step and halves its scale until it collapses."""
import torch
from _amp import SoftmaxClassifier, amp_recipe

EXPECTED = "optim.amp_scale_collapse"


def build():
    torch.manual_seed(0)
    return amp_recipe(SoftmaxClassifier(hidden=128), lr=3e-3)
