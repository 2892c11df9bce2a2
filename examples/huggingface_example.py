"""lossdoctor in a Hugging Face Trainer run: one callback. The model is built from a config (no download).

    python examples/huggingface_example.py            # peak learning rate too high: diverges after warm-up
    python examples/huggingface_example.py --healthy  # the same schedule at a sound peak

Needs ``pip install 'lossdoctor[huggingface]'``.
"""
import argparse
import tempfile

import torch
from sklearn.datasets import load_digits
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel, Trainer, TrainingArguments

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

    def forward(self, pixel_values, labels=None):
        logits = self.net(pixel_values)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


class Digits(torch.utils.data.Dataset):
    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return {"pixel_values": self.X[i], "labels": self.y[i]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--healthy", action="store_true", help="peak learning rate 0.01 instead of 1.0")
    args = parser.parse_args()
    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    X, y = torch.tensor(X / 16.0, dtype=torch.float32), torch.tensor(y)

    doctor = LossDoctorCallback()
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out, max_steps=250, per_device_train_batch_size=32,
            learning_rate=0.01 if args.healthy else 1.0, lr_scheduler_type="constant_with_warmup", warmup_steps=60,
            max_grad_norm=0.0, logging_steps=5, eval_strategy="steps", eval_steps=25, save_strategy="no",
            report_to=[], use_cpu=True, disable_tqdm=True, log_level="warning", seed=0,
        )
        trainer = Trainer(model=DigitsMLP(DigitsConfig()), args=training_args,
                          train_dataset=Digits(X[:1400], y[:1400]), eval_dataset=Digits(X[1400:], y[1400:]),
                          callbacks=[doctor])
        trainer.train()
    print(f"verdict={doctor.report.verdict} codes={','.join(doctor.report.codes)}")


if __name__ == "__main__":
    main()
