"""Loss columns recognised by pattern (issue 10): the names real logs use, the role told from prefixes and
suffixes, a deterministic choice among several, and the reason in meta["column_choice"].

The logs are CSV files of a real digits training written with the csv module, under the headers
real projects use."""
import csv

import numpy as np
import pytest

from lossdoctor import diagnose
from lossdoctor.errors import LogFormatError
from lossdoctor.logs import read_runs
from lossdoctor.logs.columns import loss_name


@pytest.fixture(scope="module")
def shuffled(train_digits):
    return train_digits("shuffled")


def _write(path, header, columns):
    """``columns`` maps a header name to a list (one per step) or None (an empty column)."""
    n = max(len(v) for v in columns.values() if v is not None)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i in range(n):
            w.writerow([("" if columns[h] is None or i >= len(columns[h]) or columns[h][i] is None else columns[h][i])
                        for h in header])
    return path


def _series(rec):
    """Train loss per step, validation loss at its steps (empty between), a component half its size."""
    val = dict(zip(rec["val_steps"], rec["val_loss"]))
    return {
        "step": rec["steps"],
        "train": rec["loss"],
        "val": [val.get(s) for s in rec["steps"]],
        "component": [v / 2 for v in rec["loss"]],
        "scale": [65536.0] * len(rec["steps"]),
    }


@pytest.mark.parametrize("header, train, val", [
    (("step", "train/ce", "valid/ce"), "train/ce", "valid/ce"),
    (("it", "trn_loss", "dev_loss"), "trn_loss", "dev_loss"),
    (("iteration", "nll", "val_nll"), "nll", "val_nll"),
    (("step", "trainLoss", "valLoss"), "trainLoss", "valLoss"),
    (("iteration", "main/loss", "validation/main/loss"), "main/loss", "validation/main/loss"),
    (("step", "objective", "eval_objective"), "objective", "eval_objective"),
    (("step", "mean_loss", "val_mean_loss"), "mean_loss", "val_mean_loss"),
    (("step", "data_loss", "Loss/validation"), "data_loss", "Loss/validation"),
])
def test_loss_columns_are_recognised_by_pattern(tmp_path, shuffled, header, train, val):
    s = _series(shuffled)
    path = _write(tmp_path / "log.csv", header, {header[0]: s["step"], train: s["train"], val: s["val"]})
    (curves,) = read_runs(path)
    assert curves.meta["columns"] == {"train_loss": train, "val_loss": val}
    np.testing.assert_allclose(curves.train.values, shuffled["loss"])
    assert diagnose(path).verdict == "overfitting"


def test_the_total_loss_is_chosen_over_its_components_and_the_reason_is_given(tmp_path, shuffled):
    s = _series(shuffled)
    header = ("step", "loss_cls", "loss_bbox", "loss", "val_loss")
    path = _write(tmp_path / "det.csv", header, {"step": s["step"], "loss_cls": s["component"],
                                                 "loss_bbox": s["component"], "loss": s["train"], "val_loss": s["val"]})
    (curves,) = read_runs(path)
    assert curves.meta["columns"]["train_loss"] == "loss"
    why = curves.meta["column_choice"]["train_loss"]
    assert "'loss' over 'loss_cls', 'loss_bbox'" in why and "total loss" in why
    assert "loss_cls" in curves.series  # the components stay, under their own names
    # only components: the first one is chosen, and said so
    path = _write(tmp_path / "parts.csv", ("step", "kl_loss", "recon_loss"),
                  {"step": s["step"], "kl_loss": s["component"], "recon_loss": s["train"]})
    (curves,) = read_runs(path)
    assert curves.meta["columns"]["train_loss"] == "kl_loss"
    assert "first in the log" in curves.meta["column_choice"]["train_loss"]


def test_statistics_about_a_loss_are_not_the_loss(tmp_path, shuffled):
    s = _series(shuffled)
    header = ("step", "loss_scale", "best_val_loss", "loss", "val_loss")
    path = _write(tmp_path / "amp.csv", header, {"step": s["step"], "loss_scale": s["scale"], "loss": s["train"],
                                                 "best_val_loss": s["component"], "val_loss": s["val"]})
    (curves,) = read_runs(path)
    assert curves.meta["columns"] == {"train_loss": "loss", "val_loss": "val_loss"}
    only_scale = _write(tmp_path / "scale.csv", ("step", "loss_scale"), {"step": s["step"], "loss_scale": s["scale"]})
    with pytest.raises(LogFormatError, match="no loss column"):
        read_runs(only_scale)


def test_step_level_training_loss_and_epoch_level_validation_loss_are_preferred(tmp_path, shuffled):
    s = _series(shuffled)
    header = ("step", "train_loss_epoch", "train_loss_step", "val_loss_step", "val_loss_epoch")
    cols = {"step": s["step"], "train_loss_epoch": s["component"], "train_loss_step": s["train"],
            "val_loss_step": s["val"], "val_loss_epoch": s["val"]}
    (curves,) = read_runs(_write(tmp_path / "lightning_like.csv", header, cols))
    assert curves.meta["columns"] == {"train_loss": "train_loss_step", "val_loss": "val_loss_epoch"}


def test_a_test_loss_stands_in_for_validation_only_when_there_is_none(tmp_path, shuffled):
    s = _series(shuffled)
    path = _write(tmp_path / "t.csv", ("step", "train_loss", "test_loss"),
                  {"step": s["step"], "train_loss": s["train"], "test_loss": s["val"]})
    (curves,) = read_runs(path)
    assert curves.meta["columns"]["val_loss"] == "test_loss"
    assert any("test loss" in n for n in curves.meta["notes"])
    path = _write(tmp_path / "tv.csv", ("step", "train_loss", "test_loss", "val_loss"),
                  {"step": s["step"], "train_loss": s["train"], "test_loss": s["component"], "val_loss": s["val"]})
    (curves,) = read_runs(path)
    assert curves.meta["columns"]["val_loss"] == "val_loss"
    assert not any("test loss" in n for n in curves.meta.get("notes", []))


def test_perplexity_is_read_as_its_log_and_said_so(tmp_path, shuffled):
    s = _series(shuffled)
    ppl = [float(np.exp(v)) for v in s["train"]]
    val_ppl = [None if v is None else float(np.exp(v)) for v in s["val"]]
    path = _write(tmp_path / "lm.csv", ("step", "ppl", "val_ppl"), {"step": s["step"], "ppl": ppl, "val_ppl": val_ppl})
    (curves,) = read_runs(path)
    np.testing.assert_allclose(curves.train.values, shuffled["loss"], rtol=1e-9)
    assert any("perplexity" in n for n in curves.meta["notes"])
    assert diagnose(path).verdict == "overfitting"


def test_two_columns_that_differ_only_in_case_are_refused_naming_both(tmp_path, shuffled, cli):
    s = _series(shuffled)
    path = _write(tmp_path / "twins.csv", ("step", "Loss", "loss"),
                  {"step": s["step"], "Loss": s["train"], "loss": s["component"]})
    code, out, err = cli("diagnose", path)
    assert code == 2 and out == ""
    assert "'Loss'" in err and "'loss'" in err and "--train" in err
    (curves,) = read_runs(path, train="Loss")  # naming one settles it
    np.testing.assert_allclose(curves.train.values, shuffled["loss"])


def test_a_header_naming_the_loss_column_twice_is_refused(tmp_path, cli):
    path = tmp_path / "dup.csv"
    path.write_text("step,loss,loss\n" + "".join(f"{i},{1 / (i + 1)},{2 / (i + 1)}\n" for i in range(20)))
    code, out, err = cli("diagnose", path)
    assert code == 2 and "'loss'" in err and f"{path}:1:" in err


@pytest.mark.parametrize("name, role", [
    ("loss", "train"), ("Loss/train", "train"), ("tr_loss", "train"), ("valloss", "val"), ("eval/loss", "val"),
    ("validation_loss_epoch", "val"), ("test/nll", "test"), ("train/ce", "train"), ("dev_xent", "val"),
    ("cross_entropy", "train"), ("val_perplexity", "val"),
])
def test_loss_name_roles(name, role):
    assert loss_name(name).role == role


@pytest.mark.parametrize("name", ["accuracy", "loss_scale", "best_val_loss", "grad_norm", "lr", "train_val_loss_gap",
                                  "val_accuracy", "num_loss_nan", "epoch", "time"])
def test_names_that_are_not_a_loss(name):
    assert loss_name(name) is None
