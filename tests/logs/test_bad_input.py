"""Bad input: one clear line on stderr naming the file, the line and what was expected; exit code 2."""
import json

import pytest

from lossdoctor.errors import LogFormatError
from lossdoctor.logs import read_runs

pytestmark = pytest.mark.slim

GOOD_ROWS = "".join(f"{i},{2.3 / (i + 1)}\n" for i in range(20))


def _trainer_state(n=20):
    history = [{"loss": 2.3 / (i + 1), "learning_rate": 1e-3, "epoch": i / 10, "step": i + 1} for i in range(n)]
    return json.dumps({"log_history": history, "global_step": n}, indent=2)


CASES = {
    # name: (file name, bytes, expected line or None, words the message must contain)
    "empty file": ("empty.csv", b"", 1, "empty"),
    "whitespace only": ("blank.csv", b"\n\n  \n", 1, "empty"),
    "header only": ("header.csv", b"step,loss\n", 2, "no data rows"),
    "truncated trainer_state": ("trainer_state.json", _trainer_state().encode()[:300], None, "truncated JSON"),
    "invalid JSON document": ("state.json", b'{"log_history": [1, 2,, 3]}', 1, "invalid JSON"),
    "binary junk": ("run.csv", bytes(range(256)) * 40, 1, "binary"),
    "binary junk, no suffix": ("events", b"\x89PNG\r\n\x1a\n\x00\x00" * 50, 1, "binary"),
    "text in the loss column": ("text.csv", ("step,loss\n" + GOOD_ROWS + "20,oops\n").encode(), 22, "'oops'"),
    "row longer than header": ("ragged.csv", ("step,loss\n" + GOOD_ROWS + "20,1.0,7\n").encode(), 22, "more fields"),
    "no loss column": ("acc.csv", b"step,accuracy\n1,0.5\n2,0.6\n", None, "no loss column"),
    "no header": ("noheader.csv", GOOD_ROWS.encode(), 1, "not a header"),
    "bad JSONL line": ("log.jsonl", b'{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.9\n{"step": 3}\n', 2, "invalid JSON"),
    "JSONL line not an object": ("log2.jsonl", b'{"step": 1, "loss": 2.0}\n[2, 1.9]\n', 2, "not an object"),
    "text loss in JSONL": ("log3.jsonl", b'{"step": 1, "loss": 2.0}\n{"step": 2, "loss": "high"}\n', 2, "'high'"),
    "empty event file": ("events.out.tfevents.1.host", b"", None, "empty"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_file_gives_one_line_error_and_exit_2(tmp_path, cli, case):
    name, data, line, words = CASES[case]
    path = tmp_path / case.replace(" ", "_") / name
    path.parent.mkdir()
    path.write_bytes(data)
    code, out, err = cli("diagnose", path)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("lossdoctor: error: ")
    assert str(path) in err and words in err and "expected" in err
    if line is not None:
        assert f"{path}:{line}:" in err
    with pytest.raises(LogFormatError) as info:
        read_runs(path)
    assert info.value.path == str(path) and (line is None or info.value.line == line)


def test_a_trainer_state_that_logged_nothing_is_insufficient_data_not_an_error(tmp_path, cli):
    """A well-formed state of a run shorter than logging_steps: 0 points, a verdict that says so."""
    path = tmp_path / "run" / "trainer_state.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"log_history": [], "global_step": 3, "logging_steps": 10}))
    code, out, err = cli("diagnose", path, "--json")
    report = json.loads(out)
    assert code == 1 and err == "" and report["verdict"] == "insufficient_data"
    assert "logging_steps=10" in " ".join(report["metadata"]["notes"])


def test_missing_path_and_log_free_directory_are_errors(tmp_path, cli):
    code, _, err = cli("diagnose", tmp_path / "nope.csv")
    assert code == 2 and "no such file" in err
    (tmp_path / "data.csv").write_text("x,y\n1,2\n")
    code, _, err = cli("diagnose", tmp_path)
    assert code == 2 and "no training log found" in err and "data.csv" in err


def test_override_naming_a_missing_column_lists_the_columns(tmp_path, cli):
    path = tmp_path / "log.csv"
    path.write_text("step,loss,val_loss\n" + "".join(f"{i},{1 / (i + 1)},{1 / (i + 1)}\n" for i in range(20)))
    code, _, err = cli("diagnose", path, "--val", "validation_loss")
    assert code == 2 and "'validation_loss'" in err and "step, loss, val_loss" in err


def test_mlflow_metric_file_with_a_bad_line(tmp_path, cli, monkeypatch):
    from lossdoctor.logs import mlflow as mlflow_reader

    monkeypatch.setattr(mlflow_reader, "client_class", lambda: None)  # the plain-text reader, as without mlflow
    metrics = tmp_path / "mlruns" / "0" / "abc" / "metrics"
    metrics.mkdir(parents=True)
    (metrics / "loss").write_text("1700000000000 2.3 0\n1700000000001 two 1\n")
    code, _, err = cli("diagnose", tmp_path / "mlruns")
    assert code == 2 and f"{metrics / 'loss'}:2:" in err and "timestamp value step" in err


def test_corrupt_event_file_is_an_error_not_a_traceback(tmp_path, cli):
    path = tmp_path / "run" / "events.out.tfevents.123.host"
    path.parent.mkdir()
    path.write_bytes(b"\x07\x00\x00\x00junkjunkjunk" * 20)
    code, _, err = cli("diagnose", path.parent)
    assert code == 2 and err.count("\n") == 1 and "TensorBoard" in err


def test_real_process_exit_codes_0_1_2_and_no_traceback(tmp_path, cli_subprocess):
    good = tmp_path / "good.csv"
    good.write_text("step,loss\n" + "".join(f"{i},{2.3 * 0.97 ** i}\n" for i in range(100)))
    bad = tmp_path / "nan.csv"
    bad.write_text("step,loss\n" + "".join(f"{i},{2.3 * 0.97 ** i if i < 50 else 'nan'}\n" for i in range(100)))
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"\x00\x01\x02" * 100)
    code, out, err = cli_subprocess("diagnose", good, "--json")
    assert code == 0 and json.loads(out)["verdict"] == "converging"
    code, out, err = cli_subprocess("diagnose", bad)
    assert code == 1 and "non_finite" in out
    code, out, err = cli_subprocess("diagnose", broken)
    assert code == 2 and "Traceback" not in err and err.strip().count("\n") == 0 and "broken.csv" in err
