"""lossdoctor in a Hugging Face Trainer run: one callback. The models are built from a config (no download).

    python examples/huggingface_example.py                  # warm-up to a peak rate far too high: it blows up
    python examples/huggingface_example.py --healthy        # the same schedule at a sound peak
    python examples/huggingface_example.py --bert           # a tiny BERT on digits as tokens, AdamW at 1.0
    python examples/huggingface_example.py --bert --healthy # the same BERT at 5e-3
    python examples/huggingface_example.py --html report.html --json report.json

Needs ``pip install 'lossdoctor[huggingface]'``.
"""
import argparse
import tempfile

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, PretrainedConfig, PreTrainedModel, Trainer, \
    TrainingArguments

from lossdoctor.integrations.huggingface import LossDoctorCallback


class DigitsConfig(PretrainedConfig):
    model_type = "digits_mlp"

    def __init__(self, hidden: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden


class DigitsMLP(PreTrainedModel):
    config_class = DigitsConfig

    def __init__(self, config):
        super().__init__(config)
        self.net = nn.Sequential(nn.Linear(64, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 10))
        self.post_init()

    def _init_weights(self, module):
        # a ReLU MLP wants He initialization, not the std 0.02 transformers give every Linear (made for
        # layers followed by LayerNorm): lossdoctor's callback reports that 0.02 as model.bad_init here
        if isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)

    def forward(self, pixel_values, labels=None):
        logits = self.net(pixel_values)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


class Digits(torch.utils.data.Dataset):
    def __init__(self, X, y, key="pixel_values"):
        self.X, self.y, self.key = X, y, key

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return {self.key: self.X[i], "labels": self.y[i]}


# Digits as "sentences" for a transformer: each 8x8 image is cut into 16 blocks of 2x2 pixels, and
# each block becomes one token, its position and which of its 4 pixels are inked (16 patterns): a
# [CLS] token and 16 block tokens per image.
CLS, INKED = 1, 5
BLOCK_PATTERNS = 16
VOCAB = 2 + 16 * BLOCK_PATTERNS


def block_tokens(X: np.ndarray) -> torch.Tensor:
    inked = (X.reshape(-1, 4, 2, 4, 2) >= INKED).transpose(0, 1, 3, 2, 4).reshape(-1, 16, 4)
    patterns = inked @ (1 << np.arange(4))
    tokens = 2 + np.arange(16) * BLOCK_PATTERNS + patterns
    return torch.tensor(np.concatenate([np.full((len(X), 1), CLS), tokens], axis=1), dtype=torch.long)


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    """A 2-layer BERT classifier with hidden size 32, built from its config."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=17, num_labels=10, pad_token_id=0)
    return BertForSequenceClassification(config)


def digits_datasets(tokens: bool = False) -> tuple[Digits, Digits]:
    X, y = load_digits(return_X_y=True)
    y = torch.tensor(y)
    if tokens:
        ids = block_tokens(X)
        return Digits(ids[:1400], y[:1400], "input_ids"), Digits(ids[1400:], y[1400:], "input_ids")
    X = torch.tensor(X / 16.0, dtype=torch.float32)
    return Digits(X[:1400], y[:1400]), Digits(X[1400:], y[1400:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--healthy", action="store_true", help="a sound peak learning rate")
    parser.add_argument("--bert", action="store_true", help="a tiny BERT on digits as tokens")
    parser.add_argument("--html", help="write the report as HTML here")
    parser.add_argument("--json", help="write the report as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, val = digits_datasets(tokens=args.bert)
    if args.bert:  # AdamW with linear decay, the Trainer's default clip (max_grad_norm=1.0)
        model, lr, schedule = tiny_bert(), 5e-3 if args.healthy else 1.0, {"warmup_steps": 10}
        clip, steps = 1.0, 300
    else:  # a linear warm-up to the peak, then constant, no clipping
        model, lr = DigitsMLP(DigitsConfig()), 0.01 if args.healthy else 1.0
        schedule, clip, steps = {"lr_scheduler_type": "constant_with_warmup", "warmup_steps": 60}, 0.0, 250

    doctor = LossDoctorCallback(html=args.html, json=args.json)
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out, max_steps=steps, per_device_train_batch_size=32, learning_rate=lr, max_grad_norm=clip,
            logging_steps=5, eval_strategy="steps", eval_steps=25, save_strategy="no", report_to=[], use_cpu=True,
            disable_tqdm=True, log_level="warning", seed=0, **schedule,
        )
        trainer = Trainer(model=model, args=training_args, train_dataset=train, eval_dataset=val, callbacks=[doctor])
        with doctor:  # takes the watch's hooks off the model even if train() fails
            trainer.train()
    print(f"verdict={doctor.report.verdict} codes={','.join(doctor.report.codes)}")


if __name__ == "__main__":
    main()
