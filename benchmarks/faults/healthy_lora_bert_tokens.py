"""Healthy control: LoRA adapters (peft) on a frozen tiny BERT, digits as row tokens; only the adapters
and the classifier train, AdamW at a LoRA-usual rate."""
import torch
from _text import bert_recipe, tiny_bert, token_digits, with_lora

EXPECTED = "healthy"


def build():
    train, val = token_digits()
    model = with_lora(tiny_bert())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    return bert_recipe(model, optimizer, train, val, epochs=8)
