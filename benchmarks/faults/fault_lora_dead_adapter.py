"""Fault: LoRA adapters initialized to zero on both sides (A and B) on a frozen tiny BERT whose
classifier trains: every gradient of the adapters is zero (dL/dA = B^T g x^T, dL/dB = g (A x)^T), so
only the classifier learns, on the frozen random features."""
import torch
from _text import bert_recipe, tiny_bert, token_digits, with_lora

EXPECTED = "model.bad_init"


def build():
    train, val = token_digits()
    model = with_lora(tiny_bert())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.zero_()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    return bert_recipe(model, optimizer, train, val, epochs=8)
