"""Plain CSV / TSV / JSONL / JSON logs with any header, written with the standard library and pandas
from real trainings: column recognition, overrides, resumed runs, NaN spellings as data."""
import csv
import json

import numpy as np
import pandas as pd
import pytest

from lossdoctor import diagnose
from lossdoctor.errors import LogFormatError
from lossdoctor.logs import read_runs


@pytest.fixture(scope="module")
def runs(train_digits):
    return {fault: train_digits(fault) for fault in ("healthy", "shuffled", "lr_nan")}


def _write_csv(path, header, rows, delimiter=","):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def _per_step_rows(rec):
    val = dict(zip(rec["val_steps"], rec["val_loss"]))
    return [(s, loss, val.get(s, "")) for s, loss in zip(rec["steps"], rec["loss"])]


@pytest.mark.parametrize("header", [
    ("step", "train_loss", "val_loss"),
    ("global_step", "loss", "eval_loss"),
    ("Iteration", "Train Loss", "Validation Loss"),
    ("iter", "train/loss", "val/loss"),
    ("step", "loss/train", "loss/valid"),
])
def test_common_column_names_are_recognised(tmp_path, runs, header):
    rec = runs["shuffled"]
    path = _write_csv(tmp_path / "log.csv", header, _per_step_rows(rec))
    (curves,) = read_runs(path)
    assert curves.meta["step_column"] == header[0]
    assert curves.meta["columns"]["train_loss"] == header[1] and curves.meta["columns"]["val_loss"] == header[2]
    np.testing.assert_allclose(curves.train.values, rec["loss"])
    np.testing.assert_array_equal(curves.val.steps, rec["val_steps"])
    assert diagnose(path).verdict == "overfitting"


def test_csv_saved_by_excel_with_a_byte_order_mark_is_read(tmp_path, runs):
    path = tmp_path / "excel.csv"
    pd.DataFrame({"Step": runs["healthy"]["steps"], "Loss": runs["healthy"]["loss"]}).to_csv(
        path, index=False, encoding="utf-8-sig")
    (curves,) = read_runs(path)
    assert curves.meta["step_column"].endswith("Step") and len(curves.train) == len(runs["healthy"]["loss"])


def test_tsv_and_semicolon_files_are_read(tmp_path, runs):
    rows = _per_step_rows(runs["healthy"])
    for name, delim in (("log.tsv", "\t"), ("log_semicolon.csv", ";")):
        (curves,) = read_runs(_write_csv(tmp_path / name, ("step", "loss", "val_loss"), rows, delim))
        assert len(curves.train) == len(rows)


def test_overrides_pick_unusual_columns(tmp_path, runs, cli):
    rec = runs["shuffled"]
    rows = [(i, s, loss, v) for i, (s, loss, v) in enumerate(_per_step_rows(rec))]
    path = _write_csv(tmp_path / "odd.csv", ("row", "when", "metric_a", "holdout"), rows)
    with pytest.raises(LogFormatError, match="no loss column"):
        read_runs(path)
    (curves,) = read_runs(path, step="when", train="metric_a", val="holdout")
    np.testing.assert_array_equal(curves.train.steps, rec["steps"])
    code, out, _ = cli("diagnose", path, "--json", "--step", "when", "--train", "metric_a", "--val", "holdout")
    assert json.loads(out)["verdict"] == "overfitting" and code == 1


def test_without_step_column_the_row_number_is_the_step(tmp_path, runs):
    path = tmp_path / "losses.csv"
    pd.DataFrame({"loss": runs["healthy"]["loss"]}).to_csv(path, index=False)
    (curves,) = read_runs(path)
    np.testing.assert_array_equal(curves.train.steps, np.arange(len(runs["healthy"]["loss"])))
    assert any("row number" in n for n in curves.meta["notes"])
    assert diagnose(path).verdict == "converging"


def test_resumed_run_keeps_the_latest_write_of_each_step_and_says_so(tmp_path, runs, train_digits):
    # a run that crashed at step 250, resumed from its step-150 checkpoint with another seed
    first, second = runs["healthy"], train_digits("healthy", seed=1)
    rows = [(s, l) for s, l in zip(first["steps"], first["loss"]) if s <= 250]
    rows += [(s, l) for s, l in zip(second["steps"], second["loss"]) if s > 150]
    path = _write_csv(tmp_path / "resumed.csv", ("step", "loss"), rows)
    (curves,) = read_runs(path)
    assert np.all(np.diff(curves.train.steps) > 0) and len(curves.train) == 360
    kept = dict(zip(curves.train.steps, curves.train.values))
    assert kept[200] == pytest.approx(second["loss"][199]) and kept[100] == pytest.approx(first["loss"][99])
    assert curves.meta["duplicate_steps_dropped"] == {"train_loss": 100}
    assert curves.meta["steps_went_back"] == ["train_loss"]
    assert any("latest write" in n for n in curves.meta["notes"])


@pytest.mark.parametrize("spelling", ["nan", "NaN", "Infinity", "inf", "null", "-inf"])
def test_non_finite_spellings_in_csv_are_data_not_errors(tmp_path, runs, spelling, cli):
    rec = runs["lr_nan"]
    bad = int(np.argmax(~np.isfinite(rec["loss"])))
    rows = [(s, spelling if not np.isfinite(l) else l) for s, l in zip(rec["steps"], rec["loss"])]
    path = _write_csv(tmp_path / "nan.csv", ("step", "loss"), rows)
    code, out, err = cli("diagnose", path, "--json")
    assert code == 1 and err == ""
    report = json.loads(out)
    assert report["verdict"] == "non_finite"
    assert report["metadata"]["curve_evidence"]["first_non_finite_step"] == rec["steps"][bad]


def test_jsonl_with_nan_infinity_and_null_is_read_as_data(tmp_path, runs):
    rec = runs["lr_nan"]
    path = tmp_path / "log.jsonl"
    with open(path, "w") as fh:
        for s, l, lr in zip(rec["steps"], rec["loss"], rec["lr"]):
            fh.write(json.dumps({"step": s, "train": {"loss": l}, "lr": lr}) + "\n")  # json writes NaN
    (curves,) = read_runs(path)
    assert curves.meta["columns"]["train_loss"] == "train/loss"
    assert np.isnan(curves.train.values).sum() == np.isnan(rec["loss"]).sum()
    assert diagnose(path).verdict == "non_finite"
    path.write_text('{"step": 1, "loss": 2.3}\n{"step": 2, "loss": null}\n' * 1)
    (curves,) = read_runs(path)
    assert np.isnan(curves.train.values[-1])


def test_json_list_of_records_and_keras_history_dict(tmp_path, runs):
    rec = runs["shuffled"]
    records = [{"epoch": i, "loss": l} for i, l in enumerate(rec["loss"])]
    (tmp_path / "records.json").write_text(json.dumps(records))
    (curves,) = read_runs(tmp_path / "records.json")
    assert len(curves.train) == len(records)
    history = {"loss": rec["loss"][:40], "val_loss": rec["val_loss"]}
    (tmp_path / "history.json").write_text(json.dumps(history))
    (curves,) = read_runs(tmp_path / "history.json")
    assert curves.meta["format"] == "keras_history" and len(curves.val) == len(rec["val_loss"])


def test_text_columns_are_not_metrics(tmp_path, runs):
    rows = [(s, l, "run-a") for s, l in zip(runs["healthy"]["steps"], runs["healthy"]["loss"])]
    path = _write_csv(tmp_path / "named.csv", ("step", "loss", "run_name"), rows)
    (curves,) = read_runs(path)
    assert set(curves.series) == {"train_loss"}


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_very_wide_log_keeps_the_losses_and_64_other_metrics_and_says_so(tmp_path, runs, kind):
    rec = runs["healthy"]
    n = len(rec["steps"])
    stats = {f"layer_{k:05d}/weight_std_over_a_long_name": np.full(n, 0.01 * k) for k in range(3000)}
    frame = pd.DataFrame({"step": rec["steps"], **stats, "loss": rec["loss"]})  # the loss after a >64 KB header
    path = tmp_path / f"wide.{kind}"
    if kind == "csv":
        frame.to_csv(path, index=False)
        assert len(path.read_text().splitlines()[0]) > 65536
    else:
        frame.to_json(path, orient="records", lines=True)
    (curves,) = read_runs(path)
    np.testing.assert_allclose(curves.train.values, rec["loss"])
    assert len(curves.series) == 1 + 64 and curves.meta["metrics_not_kept"] == 3000 - 64
    assert any("3000 other metrics" in note for note in curves.meta["notes"])
