"""Fault: a tiny BERT on digits as row tokens whose labels were shuffled (a join gone wrong): no
signal between the inputs and the labels."""
import torch
from _text import bert_recipe, tiny_bert, token_digits

EXPECTED = "data.no_signal"


def build():
    train, val = token_digits(shuffle_labels=True)
    model = tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    return bert_recipe(model, optimizer, train, val, epochs=4)
