"""The hint for a run that learns nothing, when the log comes with the model and its optimizer:
Adam-family optimizers move each weight by about the rate per step, so a rate above the weights'
typical size is the first suspect, not "the rate may be too low".

A real tiny BERT (benchmarks/faults/_text.py, config-built) on digits as token ids, AdamW with a
linear warm-up, watched; its evidence is judged as a log plus the model and the run's facts (the
live read-out left out: this is the hint for when the monitor saw nothing).
"""
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import lossdoctor
from lossdoctor.assemble import build_report

pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "faults"))
from _text import loaders, tiny_bert, token_digits  # noqa: E402


def bert_log_and_model(peak: float, steps: int = 240):
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(0)
    model = tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, steps // 10, steps)
    train, _ = loaders(*token_digits())
    with lossdoctor.watch(model, optimizer, every=1000) as doctor:
        done = 0
        while done < steps:
            for batch in train:
                loss = model(**batch).loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                doctor.step(loss)
                done += 1
                if done == steps:
                    break
    evidence = replace(doctor.evidence(), stats=None)
    return build_report(evidence, source="test")


def test_adamw_warmed_up_to_a_rate_above_its_weights_gets_the_rate_as_the_hint():
    report = bert_log_and_model(peak=0.05)
    assert report.verdict in ("underfitting", "stalled")
    hint = next(f for f in report.findings if f.code == "optim.lr_too_high")
    assert hint.source == "curves:no_progress_causes" and report.top is hint
    assert hint.evidence["optimizer"] == "AdamW"
    assert hint.evidence["step_over_weight"] > 2 * hint.evidence["threshold"]  # 0.05 over weights of ~0.02
    assert "0.005" in hint.remedy  # the experiment at a tenth of the peak
    assert "optim.lr_too_low" not in report.codes


def test_the_same_bert_at_a_usual_peak_learns_and_gets_no_rate_hint():
    report = bert_log_and_model(peak=2e-3)
    assert report.verdict == "converging"
    assert "optim.lr_too_high" not in report.codes and "optim.lr_too_low" not in report.codes
