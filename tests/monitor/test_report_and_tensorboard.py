"""The read-out: Report plot data and JSON, mid-run reports, TensorBoard scalars and histograms."""
import torch
from torch import nn

import lossdoctor
from lossdoctor.findings import Report
from watch_training import X, Y, batches, mlp, train


def test_report_carries_plots_and_survives_json():
    report, doctor = train(mlp(), steps=60, every=10)
    plots = report.plots
    assert plots["curves"]["train_loss"]["steps"][:3] == [0.0, 1.0, 2.0]
    grad = plots["grad_norms"]
    assert len(grad["norms"]) == len(grad["layers"]) == 3
    assert all(len(row) == len(grad["steps"]) == 6 for row in grad["norms"])
    assert plots["dead_units"]["layers"] == ["1", "3"]
    again = Report.from_json(report.to_json())
    assert again.verdict == report.verdict and again.plots["grad_norms"]["layers"] == grad["layers"]
    assert report.source == "lossdoctor.watch" and report.metadata["steps"] == 60


def test_report_can_be_read_in_the_middle_of_a_run():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    with lossdoctor.watch(model, opt, every=50) as doctor:
        for i, idx in enumerate(batches(30)):
            loss = nn.functional.cross_entropy(model(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            doctor.step(loss)
            if i == 19:
                mid = doctor.report()
    assert len(mid.plots["curves"]["train_loss"]["steps"]) == 20  # before any scheduled read-out
    assert len(doctor.report().plots["curves"]["train_loss"]["steps"]) == 30


def test_tensorboard_gets_histograms_and_batchnorm_gets_a_note(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    report, _ = train(model, steps=40, every=10, tensorboard=tmp_path, histograms_every=20)
    events = EventAccumulator(str(tmp_path), size_guidance={"histograms": 0, "scalars": 0}).Reload()
    histograms = events.Tags()["histograms"]
    assert "gradients/0.weight" in histograms and "weights/3.bias" in histograms
    assert [e.step for e in events.Histograms("gradients/0.weight")] == [0, 20]
    assert len(events.Scalars("lossdoctor/train_loss")) == 40
    note = [f for f in report.findings if f.code == "grad.masked_by_batchnorm"]
    assert note and note[0].severity == "info" and note[0].evidence["histograms_written"] is True
    assert report.warnings() == []
