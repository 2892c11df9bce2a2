"""Curves downloaded from web UIs: TensorBoard's CSV and JSON downloads (made by TensorBoard's own
scalars plugin from SummaryWriter logs of real trainings, saved under the names its "download"
links give) and a Weights & Biases panel export (written in W&B's documented column layout from a
real training: W&B's web app is not available offline)."""
import csv
import json

import numpy as np
import pytest

from lossdoctor import diagnose
from lossdoctor.errors import LogFormatError
from lossdoctor.logs import read_runs

# TensorBoard's plugin machinery imports a vendored html5lib that warns on import: noise for these tests.
pytestmark = pytest.mark.filterwarnings("ignore:html5lib's sanitizer is deprecated:DeprecationWarning")


def _tensorboard_downloads(logdir, out, runs, tags):
    """Save what TensorBoard's scalars plugin serves for each run and tag, as its download links name it."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.scalar.scalars_plugin import OutputFormat, ScalarsPlugin

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    plugin = ScalarsPlugin(base_plugin.TBContext(data_provider=provider, sampling_hints={"scalars": 100_000}))
    for run in runs:
        for tag in tags:
            name = f"run-{run}-tag-{tag.replace('/', '_')}"
            body, _ = plugin.scalars_impl(context.RequestContext(), tag, run, "", OutputFormat.CSV)
            (out / "csv").mkdir(exist_ok=True)
            (out / "csv" / f"{name}.csv").write_text(body, newline="")
            values, _ = plugin.scalars_impl(context.RequestContext(), tag, run, "", OutputFormat.JSON)
            (out / "json").mkdir(exist_ok=True)
            (out / "json" / f"{name}.json").write_text(json.dumps([list(v) for v in values]))


@pytest.fixture(scope="module")
def downloads(tmp_path_factory, train_digits):
    from torch.utils.tensorboard import SummaryWriter

    base = tmp_path_factory.mktemp("tb_downloads")
    records = {}
    for fault in ("healthy", "lr_nan"):
        writer = SummaryWriter(log_dir=str(base / "logs" / fault))
        records[fault] = train_digits(
            fault, on_step=lambda step, loss, lr, gn, w=writer: w.add_scalar("Loss/train", loss, step),
            on_eval=lambda step, val, w=writer: w.add_scalar("Loss/val", val, step))
        writer.close()
    _tensorboard_downloads(base / "logs", base, ("healthy", "lr_nan"), ("Loss/train", "Loss/val"))
    return base, records


@pytest.mark.parametrize("kind", ["csv", "json"])
def test_one_tensorboard_download_is_a_run_named_by_the_file(downloads, kind):
    base, records = downloads
    (curves,) = read_runs(base / kind / f"run-healthy-tag-Loss_train.{kind}")
    assert curves.run == "healthy" and curves.meta["format"] == "tensorboard_download"
    assert curves.meta["columns"] == {"train_loss": "Loss_train"}
    np.testing.assert_allclose(curves.train.values, records["healthy"]["loss"], rtol=1e-6)
    np.testing.assert_array_equal(curves.train.steps, records["healthy"]["steps"])


@pytest.mark.parametrize("kind", ["csv", "json"])
def test_a_folder_of_downloads_gives_one_run_per_run_with_its_tags(downloads, kind, cli):
    base, records = downloads
    runs = {c.run: c for c in read_runs(base / kind)}
    assert set(runs) == {"healthy", "lr_nan"}
    assert runs["healthy"].meta["columns"] == {"train_loss": "Loss_train", "val_loss": "Loss_val"}
    np.testing.assert_array_equal(runs["healthy"].val.steps, records["healthy"]["val_steps"])
    code, out, _ = cli("diagnose", base / kind, "--json")
    verdicts = {r["metadata"]["run"]: r["verdict"] for r in json.loads(out)}
    assert verdicts == {"healthy": "converging", "lr_nan": "non_finite"} and code == 1


def test_a_download_with_text_in_the_values_names_the_line(tmp_path):
    path = tmp_path / "run-x-tag-loss.csv"
    path.write_text("Wall time,Step,Value\n1.0,1,2.3\n2.0,2,oops\n")
    with pytest.raises(LogFormatError) as info:
        read_runs(path)
    assert info.value.line == 3 and "oops" in info.value.problem


def _wandb_export(path, records, metric="train/loss"):
    """A W&B panel "Export CSV": Step, then '<run> - <metric>' with its __MIN/__MAX companions per run."""
    runs = list(records)
    header = ["Step"] + [f"{r} - {metric}{suffix}" for r in runs for suffix in ("", "__MIN", "__MAX")]
    steps = sorted({s for rec in records.values() for s in rec["steps"]})
    by_run = {r: dict(zip(rec["steps"], rec["loss"])) for r, rec in records.items()}
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for s in steps:
            row = [s]
            for r in runs:
                v = by_run[r].get(s, "")
                row += [v, v, v]
            w.writerow(row)
    return path


def test_a_wandb_panel_export_gives_one_run_per_run_name(tmp_path, train_digits, cli):
    records = {"bright-sun-1": train_digits("healthy"), "lr 100 - sgd": train_digits("lr_nan")}
    path = _wandb_export(tmp_path / "wandb_export_2024.csv", records)
    runs = {c.run: c for c in read_runs(path)}
    assert set(runs) == {"bright-sun-1", "lr 100 - sgd"}  # a run name holding " - " is kept whole
    healthy = runs["bright-sun-1"]
    assert healthy.meta["format"] == "wandb_export" and set(healthy.series) == {"train_loss"}  # __MIN/__MAX ignored
    np.testing.assert_allclose(healthy.train.values, records["bright-sun-1"]["loss"])
    reports = {r.metadata["run"]: r.verdict for r in diagnose(path)}
    assert reports == {"bright-sun-1": "converging", "lr 100 - sgd": "non_finite"}
    code, out, err = cli("diagnose", path, "--json")
    assert code == 1 and len(json.loads(out)) == 2


def test_a_plain_csv_with_a_dash_in_a_column_name_is_not_a_wandb_export(tmp_path, train_digits):
    rec = train_digits("healthy")
    path = tmp_path / "log.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "loss", "acc - top1"])
        w.writerows([(s, v, 0.5) for s, v in zip(rec["steps"], rec["loss"])])
    (curves,) = read_runs(path)
    assert curves.meta["format"] == "csv" and curves.meta["columns"]["train_loss"] == "loss"
