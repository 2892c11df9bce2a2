"""``lossdoctor.watch`` leaves its report behind at close: HTML/JSON files and the active W&B run."""
import json
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import lossdoctor
from lossdoctor import Report


def train_digits(lr, steps=60, **watch_kwargs):
    X, y = load_digits(return_X_y=True)
    X, y = torch.tensor(X / 16.0, dtype=torch.float32), torch.tensor(y)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    with lossdoctor.watch(model, optimizer, every=10, **watch_kwargs) as doctor:
        for step in range(steps):
            i = torch.arange(step * 32, step * 32 + 32) % len(X)
            loss = nn.functional.cross_entropy(model(X[i]), y[i])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            doctor.step(loss)
    return doctor


def test_watch_writes_html_and_json_when_the_block_ends(tmp_path):
    doctor = train_digits(lr=0.1, html=tmp_path / "watch.html", json=tmp_path / "watch.json")
    saved = Report.from_json((tmp_path / "watch.json").read_text())
    assert saved.codes == doctor.report().codes and saved.verdict == doctor.report().verdict
    assert (tmp_path / "watch.html").read_text().startswith("<!DOCTYPE html>")


def test_watch_writes_nothing_when_not_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train_digits(lr=0.1)
    assert list(tmp_path.iterdir()) == []


def test_watch_writes_its_findings_to_the_active_wandb_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)  # whatever wandb writes relative to the working directory stays in tmp
    wandb = pytest.importorskip("wandb")
    run = wandb.init(project="lossdoctor-test", dir=str(tmp_path))
    try:
        doctor = train_digits(lr=0.1)
        report = doctor.report()
        assert run.summary["lossdoctor/verdict"] == report.verdict
        (table_file,) = Path(run.dir).rglob("media/table/lossdoctor/findings_*.table.json")
        table = json.loads(table_file.read_text())
        assert [row[1] for row in table["data"]] == report.codes
    finally:
        run.finish()


def test_watch_leaves_wandb_alone_when_told(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)  # whatever wandb writes relative to the working directory stays in tmp
    wandb = pytest.importorskip("wandb")
    run = wandb.init(project="lossdoctor-test", dir=str(tmp_path))
    try:
        train_digits(lr=0.1, wandb=False)
        assert "lossdoctor/verdict" not in dict(run.summary)
        assert not list(Path(run.dir).rglob("media/table/lossdoctor"))
    finally:
        run.finish()
