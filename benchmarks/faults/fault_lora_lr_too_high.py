"""Fault: LoRA adapters on a frozen tiny BERT trained at lr 0.5 (LoRA recipes use 1e-4..1e-2):
the adapters blow the attention up and the loss returns to chance."""
import torch
from _text import bert_recipe, tiny_bert, token_digits, with_lora

EXPECTED = "optim.lr_too_high"


def build():
    train, val = token_digits()
    model = with_lora(tiny_bert())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.5)
    return bert_recipe(model, optimizer, train, val, epochs=8)
