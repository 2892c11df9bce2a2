"""Fault: a tiny BERT whose linear warm-up climbs to a peak rate of 0.05 (transformers peak at
1e-4..5e-3): it learns during the warm-up, then falls apart at the peak."""
import torch
from _text import bert_recipe, tiny_bert, token_digits
from transformers import get_linear_schedule_with_warmup

EXPECTED = "optim.lr_too_high"
EPOCHS = 8


def build():
    train, val = token_digits()
    model = tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.01)
    recipe = bert_recipe(model, optimizer, train, val, epochs=EPOCHS)
    total = EPOCHS * len(recipe["train"])
    recipe["scheduler"] = lambda opt: get_linear_schedule_with_warmup(opt, num_warmup_steps=total // 10,
                                                                      num_training_steps=total)
    return recipe
