"""Healthy control: a tiny BERT on digits as row tokens (dict batches, padding collate_fn), AdamW with
linear warm-up and decay, the loss from the model itself (outputs.loss, given labels)."""
import torch
from _text import bert_recipe, tiny_bert, token_digits

EXPECTED = "healthy"


def build():
    train, val = token_digits()
    model = tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    return bert_recipe(model, optimizer, train, val, epochs=4)
