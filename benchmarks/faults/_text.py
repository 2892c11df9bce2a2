"""Digits as token sequences, for the transformer recipes: scikit-learn's 8x8 digits, each image the
sequence of its inked rows (one token per row: the row's position and its pattern of inked pixels,
like the words of a sentence; blank rows give no token), of varying length, padded per batch by a
collate function, fed to a tiny BERT built from a config (no download) as ``input_ids`` /
``attention_mask`` / ``labels`` dicts.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset

PAD, CLS = 0, 1
INKED = 5  # a pixel (0..16) counts as inked from this value on
PATTERNS = 2 ** 8  # the inked/blank patterns of a row of 8 pixels
VOCAB = 2 + 8 * PATTERNS
BATCH = 32


def row_tokens(image: np.ndarray) -> list[int]:
    """[CLS] then one token per row with ink: 2 + row * 256 + the row's inked pixels as 8 bits."""
    rows = (image.reshape(8, 8) >= INKED).astype(int) @ (1 << np.arange(8))
    return [CLS] + [2 + r * PATTERNS + int(bits) for r, bits in enumerate(rows) if bits]


class TokenDigits(Dataset):
    """Items as a tokenized text dataset gives them: {"input_ids": [...], "labels": int}."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.ids = [torch.tensor(row_tokens(image), dtype=torch.long) for image in images]
        self.labels = [int(v) for v in labels]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def pad_collate(items: list[dict]) -> dict:
    """Dynamic padding, as DataCollatorWithPadding does: pad to the longest item, mask the padding."""
    longest = max(len(item["input_ids"]) for item in items)
    ids = torch.full((len(items), longest), PAD, dtype=torch.long)
    mask = torch.zeros((len(items), longest), dtype=torch.long)
    for row, item in enumerate(items):
        ids[row, :len(item["input_ids"])] = item["input_ids"]
        mask[row, :len(item["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([item["labels"] for item in items])}


def token_digits(shuffle_labels: bool = False, seed: int = 0) -> tuple[TokenDigits, TokenDigits]:
    X, y = load_digits(return_X_y=True)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    if shuffle_labels:  # a join gone wrong: every label belongs to another image
        rng = np.random.default_rng(seed)
        y_train, y_val = rng.permutation(y_train), rng.permutation(y_val)
    return TokenDigits(X_train, y_train), TokenDigits(X_val, y_val)


def loaders(train: TokenDigits, val: TokenDigits, batch_size: int = BATCH) -> tuple[DataLoader, DataLoader]:
    return (DataLoader(train, batch_size=batch_size, shuffle=True, collate_fn=pad_collate),
            DataLoader(val, batch_size=batch_size, collate_fn=pad_collate))


def tiny_bert(dropout: float = 0.1, seed: int = 0):
    """A 2-layer BERT classifier with hidden size 32, built from its config."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=16, num_labels=10,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, pad_token_id=PAD)
    return BertForSequenceClassification(config)


def with_lora(model, rank: int = 8, train_head: bool = True):
    """LoRA adapters (peft) on the attention's query and value: the backbone frozen, only the
    adapters (and, with ``train_head``, the classifier) train."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=["query", "value"],
                        modules_to_save=["classifier"] if train_head else None, bias="none")
    return get_peft_model(model, config)


def bert_recipe(model, optimizer, train: TokenDigits, val: TokenDigits, epochs: int = 8, **extra) -> dict:
    train_loader, val_loader = loaders(train, val)
    return {"model": model, "train": train_loader, "val": val_loader, "optimizer": optimizer, "epochs": epochs,
            **extra}
