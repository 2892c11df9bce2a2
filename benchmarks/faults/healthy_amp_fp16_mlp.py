"""Healthy control: the same float16 autocast and GradScaler recipe with the softmax computed stably
in float32 (log_softmax on float32 scores), as autocast does for its own losses."""
import torch
from _amp import SoftmaxClassifier, amp_recipe

EXPECTED = "healthy"


def build():
    torch.manual_seed(0)
    return amp_recipe(SoftmaxClassifier(hidden=128, stable=True), lr=3e-3)
