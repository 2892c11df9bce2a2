"""Every verdict and finding code of TAXONOMY.md, with its title and remedy, in one table.

Codes are a public interface (JSON output, tests, users' CI scripts match on them):
add new ones, never rename or reuse one.
"""
from __future__ import annotations

from dataclasses import dataclass

# Verdicts: what the loss curves show. Order is the order they are documented in.
VERDICTS: dict[str, str] = {
    "converging": "training loss still falls or has settled low; validation follows",
    "underfitting": "training loss stays high: it fluctuates or barely drops from its start",
    "overfitting": "validation stopped improving or rises while training loss keeps falling",
    "diverging": "loss fell for a while, then jumped up and stayed up, or grows without bound",
    "non_finite": "loss became NaN or Inf",
    "stalled": "loss stopped falling at a level far above what it reached or should reach",
    "oscillating": "loss swings widely with no downward trend",
    "insufficient_data": "too few points to judge",
}

SEVERITIES = ("error", "warning", "info")

# What to do about each verdict, shown with the report (the causes come as findings).
VERDICT_ADVICE: dict[str, str] = {
    "converging": "Nothing to fix in the curves.",
    "underfitting": "The model barely learns: run `lossdoctor checkup` to test the data, the learning "
    "rate and the regularization one at a time.",
    "overfitting": "Stop at the best validation step (early stopping), then add regularization or data; "
    "the training loss itself is fine.",
    "diverging": "Lower the learning rate and resume from a checkpoint taken before the divergence step.",
    "non_finite": "Find what produced the first NaN/Inf: lower the learning rate, check the inputs, "
    "keep softmax inside the loss.",
    "stalled": "The loss stopped falling while still high: a quick baseline on the data tells its floor from a "
    "stall; then test a larger learning rate and less regularization.",
    "oscillating": "Lower the learning rate (or raise the batch size) until the swings stop.",
    "insufficient_data": "Log more points (at least the number given in the evidence) and run again.",
}


@dataclass(frozen=True)
class CodeInfo:
    code: str
    title: str  # one line a person reads
    seed_cause: str  # the heading of the seed article this cause lives under
    remedy: str  # the default advice; checks refine it with numbers, layers, values


CODES: dict[str, CodeInfo] = {
    info.code: info
    for info in [
        CodeInfo(
            "data.non_finite", "NaN or Inf values in the inputs or targets", "Bad data quality",
            "Find and fix the rows with NaN/Inf before training (impute, drop, or clip); "
            "a single NaN input turns every loss after it into NaN.",
        ),
        CodeInfo(
            "data.constant_feature", "Some input columns are constant", "Bad data quality",
            "Drop the constant columns: they carry no information, and a hand-written (x - mean) / std "
            "turns them into NaN (std 0).",
        ),
        CodeInfo(
            "data.no_signal", "The features barely predict the target", "Bad data quality",
            "A quick baseline cannot beat a label-permutation null: the data may not support this "
            "prediction. Check the label join and feature extraction, collect more informative "
            "features, or reconsider whether the project is doable.",
        ),
        CodeInfo(
            "data.label_noise", "A large share of labels look wrong", "Bad data quality",
            "Review the listed examples (cleanlab's confident learning flags them); relabel or drop "
            "them, or train with a noise-robust loss.",
        ),
        CodeInfo(
            "data.too_large", "The model fits a small subset but not the full data", "Too large data size",
            "Start from a small sample and grow it once the loss falls; reduce the feature or "
            "embedding size, or give the model more capacity.",
        ),
        CodeInfo(
            "data.unnormalized", "Features are not normalized", "Data is not normalized properly",
            "Standardize each feature (sklearn.preprocessing.StandardScaler) fitted on the training "
            "split; use a log or quantile transform for heavy-tailed columns and one-hot encode "
            "categories stored as integers.",
        ),
        CodeInfo(
            "data.mixed_units", "A value column's scale depends on a group", "Data is not normalized properly",
            "Normalize per group: lossdoctor.GroupNormalizer(group_col=..., value_cols=[...]) fits one "
            "scaler per group (e.g. one per lab type).",
        ),
        CodeInfo(
            "data.class_imbalance", "One class dominates the labels", "(beyond the seed)",
            "Weight the loss by inverse class frequency (CrossEntropyLoss(weight=...)), resample, "
            "and judge with balanced accuracy or per-class recall.",
        ),
        CodeInfo(
            "model.regularization_too_strong", "Regularization keeps the model from fitting",
            "Regularization blinding your sight",
            "Turn dropout / weight decay / noise off until the training loss falls, then add them "
            "back gradually (e.g. dropout 0.1, then 0.2) while watching validation.",
        ),
        CodeInfo(
            "optim.lr_too_high", "The learning rate is too high", "Wrong learning rate",
            "Lower the learning rate (run a learning-rate range test with clipping off; take the "
            "highest rate that does not blow up and lower it a little).",
        ),
        CodeInfo(
            "optim.lr_too_low", "The learning rate is too low", "Wrong learning rate",
            "Raise the learning rate towards the value the range test suggests (typically 1e-4..1e-1).",
        ),
        CodeInfo(
            "optim.clipping_masks_lr", "Gradient clipping, not the learning rate, sets the step size",
            "Wrong learning rate (gradient clipping)",
            "Turn clipping off, find the highest learning rate that does not blow up, lower it a "
            "little, then re-enable clipping at a threshold that rarely triggers.",
        ),
        CodeInfo(
            "optim.optimizer_choice", "The optimizer, not the learning rate, limits progress",
            "Wrong learning rate (optimizer choice)",
            "Advisory: start with Adam to get the loss down, and consider switching to SGD with "
            "momentum for the last epochs.",
        ),
        CodeInfo(
            "optim.amp_scale_collapse", "Mixed precision loses the updates (grad-scaler collapse or bf16 rounding)",
            "Softmax overflow / wrong learning rate, under mixed precision",
            "Under float16: keep the loss and softmax in float32 (autocast does this for CrossEntropyLoss), lower "
            "the learning rate, and let torch.amp.GradScaler start lower (init_scale=2**10); if the scale still "
            "collapses, train in bfloat16. Under bfloat16: keep float32 master weights (autocast, not "
            "model.to(torch.bfloat16)) so that small updates are not rounded away.",
        ),
        CodeInfo(
            "optim.grads_not_zeroed", "The gradients are never zeroed between optimizer steps",
            "(beyond the seed) wrong learning rate, in effect",
            "Call optimizer.zero_grad() once per optimizer step (before the backward pass, or right after "
            "optimizer.step()): without it every update applies the sum of all gradients so far, a step that "
            "grows with time like a learning rate that rises on every step.",
        ),
        CodeInfo(
            "model.activation_mismatch", "An activation does not fit the layer or the loss",
            "Wrong activation functions",
            "Use the activation the loss expects: raw logits into CrossEntropyLoss/BCEWithLogitsLoss, "
            "no bounded activation on a regression output, ReLU-family after conv layers, sigmoid on "
            "recurrent gates.",
        ),
        CodeInfo(
            "model.logit_overflow", "Logits approach the exp overflow limit", "Wrong learning rate (softmax overflow)",
            "Lower the learning rate, keep the softmax inside the loss (log-softmax / CrossEntropyLoss "
            "on raw logits), or compute the softmax in float32.",
        ),
        CodeInfo(
            "grad.non_finite", "NaN/Inf appeared in a module's output or gradient", "Corrupted gradients",
            "Look at the named module and step: lower the learning rate, check its inputs for "
            "NaN/Inf, and guard log/sqrt/division against 0.",
        ),
        CodeInfo(
            "grad.dead_relu", "Many ReLU units never activate", "Corrupted gradients (dead ReLU)",
            "Replace ReLU with LeakyReLU(0.01) or ELU in the named layers, lower the learning rate, "
            "and check the bias initialization.",
        ),
        CodeInfo(
            "grad.saturated_activation", "Many tanh/sigmoid units are pinned at their bounds",
            "Wrong activation functions / corrupted gradients",
            "Saturated units pass almost no gradient: normalize the inputs, lower the learning rate, use "
            "Xavier/LeCun initialization for tanh/sigmoid layers, or use a ReLU-family activation in hidden layers.",
        ),
        CodeInfo(
            "grad.vanishing", "Gradients shrink by orders of magnitude towards the input",
            "Corrupted gradients / Wrong weight initialization",
            "Use ReLU-family activations with he_normal init, add residual connections or "
            "normalization, and shorten deep sigmoid/tanh stacks.",
        ),
        CodeInfo(
            "grad.exploding", "Gradient norms grow by orders of magnitude", "Corrupted gradients",
            "Lower the learning rate, fix the initialization scale, and add normalization; clip "
            "gradients only once the learning rate is right.",
        ),
        CodeInfo(
            "grad.masked_by_batchnorm", "Batch norm hides a gradient problem",
            "Corrupted gradients (remove batch normalization before the gradient check)",
            "Fix the underlying gradient problem (initialization, activations) that shows with batch "
            "norm removed; batch norm only masks it.",
        ),
        CodeInfo(
            "model.bad_init", "Weights are initialized at the wrong scale", "Wrong weight initialization",
            "Re-initialize with he_normal for ReLU layers and lecun_normal for SELU/tanh "
            "(lossdoctor.model.apply_init(model)).",
        ),
    ]
}


def code_info(code: str) -> CodeInfo:
    try:
        return CODES[code]
    except KeyError:
        raise ValueError(f"unknown finding code {code!r}; known codes: {', '.join(CODES)}") from None
