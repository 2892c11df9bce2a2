"""checkup on the models people train today: a tiny BERT (built from its config) on token ids with
dict batches from a DataLoader with a padding collate_fn, the loss from the model itself; LoRA
adapters (peft) on a frozen backbone; a warm-up schedule; float16 autocast with a GradScaler. The
recipes are the fault suite's (benchmarks/faults/), so the benchmark and the tests check the same
recipes. Each fault's true cause comes first, each healthy twin has no warning."""
from pathlib import Path

import pytest

from lossdoctor._checkup import DEFAULT_BUDGET_S, checkup_from_file

FAULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "faults"
# Probe lengths come from each recipe (its epochs); the data checks' cross-validated baseline is
# tested in tests/data and skipped here (token ids are not profiled anyway).
SETTINGS = dict(cross_validate=False, progress=False)

CASES = [
    ("fault_bert_lr_too_high_adamw", "optim.lr_too_high"),
    ("fault_bert_shuffled_labels", "data.no_signal"),
    ("fault_bert_warmup_to_a_too_high_rate", "optim.lr_too_high"),
    ("fault_lora_lr_too_high", "optim.lr_too_high"),
    ("fault_lora_dead_adapter", "model.bad_init"),
    ("fault_amp_fp16_softmax_overflow", "optim.amp_scale_collapse"),
]
HEALTHY = ["healthy_bert_tokens_adamw", "healthy_lora_bert_tokens", "healthy_amp_fp16_mlp"]


@pytest.mark.parametrize("name, cause", CASES, ids=[c[0] for c in CASES])
def test_the_true_cause_is_ranked_first(name, cause):
    report = checkup_from_file(f"{FAULTS / name}.py:build", **SETTINGS)
    assert report.top is not None and report.top.code == cause, [(f.code, f.severity, f.source) for f in report.findings]
    assert report.top.severity in ("warning", "error") and report.top.remedy
    assert not report.metadata["skipped"], report.metadata["notes"]


@pytest.mark.parametrize("name", HEALTHY)
def test_the_healthy_twin_has_no_warning(name):
    report = checkup_from_file(f"{FAULTS / name}.py:build", **SETTINGS)
    assert report.warnings() == [], [(f.code, f.severity, f.source) for f in report.findings]
    assert report.verdict not in ("diverging", "non_finite")


def test_a_lora_recipe_trains_only_the_adapters_and_the_head_in_every_probe():
    report = checkup_from_file(f"{FAULTS / 'fault_lora_dead_adapter'}.py:build", **SETTINGS)
    recipe = report.metadata["recipe"]
    assert 0 < recipe["trained_parameters"] < recipe["frozen_parameters"]
    # the re-initialization touched only what the optimizer trains: the frozen backbone kept its weights
    how = report.metadata["probes"]["ablation:reinit"]["how"]
    assert "parameter tensors the optimizer does not train kept as they were" in how
    assert report.top.code == "model.bad_init"
    # the experiment behind it: re-initializing the adapters makes the loss fall
    assert report.metadata["probes"]["ablation:reinit"]["run"]["final_loss"] < \
        0.6 * report.metadata["probes"]["baseline"]["run"]["final_loss"]


def test_a_tiny_bert_checkup_with_every_default_stays_within_its_default_budget():
    report = checkup_from_file(f"{FAULTS / 'healthy_bert_tokens_adamw'}.py:build", progress=False)
    assert report.metadata["budget_s"] == DEFAULT_BUDGET_S
    assert report.metadata["elapsed_s"] < DEFAULT_BUDGET_S
    assert report.metadata["skipped"] == [] and all(p["ran"] for p in report.metadata["plan"])
