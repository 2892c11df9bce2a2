"""TensorBoard logs written by torch.utils.tensorboard.SummaryWriter during real trainings."""
import json

import numpy as np
import pytest

from lossdoctor import diagnose
from lossdoctor.logs import read_runs


@pytest.fixture(scope="module")
def tb_dir(tmp_path_factory, train_digits):
    from torch.utils.tensorboard import SummaryWriter

    root = tmp_path_factory.mktemp("tb") / "runs"
    records = {}
    for fault in ("healthy", "lr_nan"):
        writer = SummaryWriter(log_dir=str(root / fault))

        def on_step(step, loss, lr, gn, w=writer):
            w.add_scalar("Loss/train", loss, step)
            w.add_scalar("lr", lr, step)
            w.add_scalar("grad_norm", gn, step)

        records[fault] = train_digits(fault, on_step=on_step,
                                      on_eval=lambda step, val, w=writer: w.add_scalar("Loss/val", val, step))
        writer.close()
    return root, records


def test_each_run_directory_is_one_run_with_standard_series(tb_dir):
    root, records = tb_dir
    runs = {c.run: c for c in read_runs(root)}
    assert set(runs) == {"healthy", "lr_nan"}
    healthy = runs["healthy"]
    assert healthy.meta["format"] == "tensorboard"
    assert set(healthy.series) >= {"train_loss", "val_loss", "lr", "grad_norm"}
    np.testing.assert_allclose(healthy.train.values, records["healthy"]["loss"], rtol=1e-6)
    np.testing.assert_array_equal(healthy.val.steps, records["healthy"]["val_steps"])


def test_healthy_run_converges_and_nan_run_is_non_finite(tb_dir):
    root, records = tb_dir
    reports = {r.metadata["run"]: r for r in diagnose(root)}
    assert reports["healthy"].verdict == "converging"
    assert reports["healthy"].warnings() == []
    bad = reports["lr_nan"]
    assert bad.verdict == "non_finite"
    first = records["lr_nan"]["steps"][int(np.argmax(~np.isfinite(records["lr_nan"]["loss"])))]
    assert bad.metadata["curve_evidence"]["first_non_finite_step"] == first
    assert bad.has("optim.lr_too_high", "warning")


def test_a_single_event_file_is_read_as_its_run(tb_dir):
    root, _ = tb_dir
    event_file = next((root / "healthy").glob("events.out.tfevents*"))
    (curves,) = read_runs(event_file)
    assert curves.run == "healthy" and len(curves.train) == 360


def test_cli_prints_a_list_for_several_runs_and_exits_1(tb_dir, cli):
    root, _ = tb_dir
    code, out, err = cli("diagnose", root, "--json")
    data = json.loads(out)
    assert isinstance(data, list) and len(data) == 2
    assert {d["verdict"] for d in data} == {"converging", "non_finite"}
    assert code == 1
    code, out, _ = cli("diagnose", root / "healthy", "--json")
    assert code == 0 and json.loads(out)["verdict"] == "converging"


def test_train_tag_override_picks_the_named_tag(tb_dir):
    root, records = tb_dir
    (curves,) = read_runs(root / "healthy", train="grad_norm")
    np.testing.assert_allclose(curves.train.values, records["healthy"]["grad_norm"], rtol=1e-6)


@pytest.fixture(scope="module")
def add_scalars_dir(tmp_path_factory, train_digits):
    """SummaryWriter.add_scalars: each curve in its own sub-directory (Loss_train/, Loss_val/)."""
    from torch.utils.tensorboard import SummaryWriter

    root = tmp_path_factory.mktemp("tb_add_scalars") / "runs"
    records = {}
    for fault in ("healthy", "lr_nan"):
        writer = SummaryWriter(log_dir=str(root / fault))

        def on_step(step, loss, lr, gn, w=writer):
            w.add_scalars("Loss", {"train": loss}, step)
            w.add_scalar("lr", lr, step)

        records[fault] = train_digits(fault, on_step=on_step,
                                      on_eval=lambda step, val, w=writer: w.add_scalars("Loss", {"val": val}, step))
        writer.close()
    return root, records


def test_add_scalars_sub_directories_are_series_of_one_run(add_scalars_dir, cli):
    root, records = add_scalars_dir
    assert (root / "healthy" / "Loss_train").is_dir() and (root / "healthy" / "Loss_val").is_dir()
    runs = {c.run: c for c in read_runs(root)}
    assert set(runs) == {"healthy", "lr_nan"}
    healthy = runs["healthy"]
    assert healthy.meta["columns"]["train_loss"] == "Loss_train" and healthy.meta["columns"]["val_loss"] == "Loss_val"
    assert healthy.meta["part_dirs"] == ["Loss_train", "Loss_val"] and "lr" in healthy.series
    np.testing.assert_allclose(healthy.train.values, records["healthy"]["loss"], rtol=1e-6)
    code, out, _ = cli("diagnose", root, "--json")
    assert {r["metadata"]["run"]: r["verdict"] for r in json.loads(out)} == {"healthy": "converging",
                                                                           "lr_nan": "non_finite"}
    (alone,) = read_runs(root / "healthy")  # the run directory itself: the same run
    assert alone.meta["columns"]["val_loss"] == "Loss_val"


def _copy_event_file(tb_dir, tmp_path):
    root, _ = tb_dir
    src = next((root / "healthy").glob("events.out.tfevents*"))
    dst = tmp_path / "run" / src.name
    dst.parent.mkdir()
    dst.write_bytes(src.read_bytes())
    return dst


def test_an_intact_event_file_has_no_damage_note(tb_dir, tmp_path):
    (curves,) = read_runs(_copy_event_file(tb_dir, tmp_path))
    assert "damaged" not in curves.meta and not curves.meta.get("notes")
    assert len(curves.train) == 360


def test_an_event_file_cut_short_says_how_many_records_were_read(tb_dir, tmp_path, cli):
    path = _copy_event_file(tb_dir, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 7])  # cut inside a record
    (curves,) = read_runs(path)
    (damage,) = curves.meta["damaged"]
    assert "ends inside record" in damage["problem"] and damage["records_read"] > 0
    assert any(f"{damage['records_read']} records" in n for n in curves.meta["notes"])
    assert 100 < len(curves.train) < 300  # read up to the damage, and said so
    code, out, _ = cli("diagnose", path.parent, "--json")
    assert json.loads(out)["metadata"]["damaged"][0]["records_read"] == damage["records_read"]


def test_a_damaged_record_in_the_middle_is_named(tb_dir, tmp_path):
    path = _copy_event_file(tb_dir, tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # one flipped byte: that record's checksum fails
    path.write_bytes(bytes(data))
    (curves,) = read_runs(path)
    (damage,) = curves.meta["damaged"]
    assert "damaged" in damage["problem"] and "were not read" in damage["problem"]
    assert len(curves.train) < 360


def test_train_and_validation_directories_are_one_run(tmp_path, train_digits, cli):
    """Keras' TensorBoard callback layout (logs/train, logs/validation, the tag epoch_loss in each),
    written here by SummaryWriter (Keras' callback needs TensorFlow's summary writer)."""
    from torch.utils.tensorboard import SummaryWriter

    records = {}
    for fault in ("healthy", "lr_nan"):
        logs = tmp_path / fault / "logs"
        train_w, val_w = SummaryWriter(str(logs / "train")), SummaryWriter(str(logs / "validation"))
        records[fault] = train_digits(
            fault, on_step=lambda step, loss, lr, gn, w=train_w: w.add_scalar("epoch_loss", loss, step),
            on_eval=lambda step, val, w=val_w: w.add_scalar("epoch_loss", val, step))
        train_w.close()
        val_w.close()
    runs = {c.run: c for c in read_runs(tmp_path)}
    assert set(runs) == {"healthy/logs", "lr_nan/logs"}
    healthy = runs["healthy/logs"]
    assert healthy.meta["columns"] == {"train_loss": "train/epoch_loss", "val_loss": "validation/epoch_loss"}
    assert healthy.meta["part_dirs"] == ["train", "validation"]
    np.testing.assert_array_equal(healthy.val.steps, records["healthy"]["val_steps"])
    code, out, _ = cli("diagnose", tmp_path, "--json")
    assert {r["metadata"]["run"]: r["verdict"] for r in json.loads(out)} == {"healthy/logs": "converging",
                                                                           "lr_nan/logs": "non_finite"}
    (alone,) = read_runs(tmp_path / "healthy" / "logs")
    assert alone.run == "logs" and alone.meta["columns"]["val_loss"] == "validation/epoch_loss"
