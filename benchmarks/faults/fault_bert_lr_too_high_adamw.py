"""Fault: a tiny BERT on digits as row tokens, AdamW at lr 0.1 (transformers train at 1e-4..5e-3):
the attention saturates and the loss goes back to chance."""
import torch
from _text import bert_recipe, tiny_bert, token_digits

EXPECTED = "optim.lr_too_high"


def build():
    train, val = token_digits()
    model = tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.01)
    return bert_recipe(model, optimizer, train, val, epochs=4)
