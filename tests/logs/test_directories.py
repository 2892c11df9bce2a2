"""A directory of runs where some logs cannot be read: every readable run is reported, each unreadable
log is named in one line (stderr, and ``metadata["unreadable"]`` in the JSON); exit 2 only when no
run could be read. Paths that are no regular file (FIFO, socket, device, directory) are refused
before any open: nothing blocks."""
import json
import os
import socket

import pytest

from lossdoctor import diagnose
from lossdoctor.errors import LogFormatError, NoRunReadable, UnreadableLogWarning
from lossdoctor.logs import read_runs

pytestmark = pytest.mark.slim


def _good_csv(path, n=120):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("step,loss\n" + "".join(f"{i},{2.3 * 0.97 ** i + 0.05}\n" for i in range(n)))
    return path


def _bad_csv(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("step,loss\n1,2.3\n2,oops\n")
    return path


def test_readable_runs_are_reported_and_each_unreadable_one_named(tmp_path, cli):
    _good_csv(tmp_path / "a" / "metrics.csv")
    bad = _bad_csv(tmp_path / "b" / "metrics.csv")
    runs = read_runs(tmp_path)
    assert [c.run for c in runs] == ["a"]
    (failure,) = runs.failures
    assert failure.path == str(bad) and failure.error.line == 3
    code, out, err = cli("diagnose", tmp_path, "--json")
    report = json.loads(out)
    assert code == 0 and report["verdict"] == "converging"  # the exit code is the readable runs' verdict
    assert report["metadata"]["unreadable"] == [failure.to_dict()]
    assert report["metadata"]["unreadable"][0]["path"] == str(bad)
    assert err.count("\n") == 1 and "skipped" in err and f"{bad}:3:" in err


def test_diagnose_in_python_warns_about_the_unreadable_logs(tmp_path):
    _good_csv(tmp_path / "a" / "metrics.csv")
    bad = _bad_csv(tmp_path / "b" / "metrics.csv")
    with pytest.warns(UnreadableLogWarning, match=str(bad)):
        report = diagnose(tmp_path)
    assert report.verdict == "converging" and report.metadata["unreadable"][0]["line"] == 3


def test_no_readable_run_is_exit_2_naming_each_log(tmp_path, cli):
    first, second = _bad_csv(tmp_path / "a" / "metrics.csv"), _bad_csv(tmp_path / "b" / "metrics.csv")
    with pytest.raises(NoRunReadable) as info:
        read_runs(tmp_path)
    assert [f.path for f in info.value.failures] == [str(first), str(second)]
    code, out, err = cli("diagnose", tmp_path)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 3 and str(first) in lines[0] and str(second) in lines[1] and "none of the 2" in lines[2]


def test_a_healthy_directory_has_no_unreadable_list(tmp_path):
    _good_csv(tmp_path / "a" / "metrics.csv")
    report = diagnose(tmp_path)
    assert "unreadable" not in report.metadata


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_given_as_the_log_is_refused_without_blocking(tmp_path, cli_subprocess):
    # in a fresh interpreter with a time limit: a reader that blocked on the FIFO would hang the test run
    fifo = tmp_path / "metrics.csv"
    os.mkfifo(fifo)
    code, out, err = cli_subprocess("diagnose", fifo)
    assert code == 2 and "named pipe" in err and "Traceback" not in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_named_trainer_state_json_in_a_directory_is_named_not_opened(tmp_path, cli_subprocess):
    good = tmp_path / "good" / "trainer_state.json"
    good.parent.mkdir()
    good.write_text(json.dumps({"log_history": [{"step": i + 1, "loss": 2.3 * 0.97 ** i + 0.05} for i in range(120)]}))
    (tmp_path / "stuck").mkdir()
    os.mkfifo(tmp_path / "stuck" / "trainer_state.json")
    code, out, err = cli_subprocess("diagnose", tmp_path, "--json")
    assert code == 0 and json.loads(out)["metadata"]["run"] == "good"
    assert "stuck/trainer_state.json" in err and "named pipe" in err


def test_a_directory_named_trainer_state_json_is_named(tmp_path, cli):
    (tmp_path / "run" / "trainer_state.json").mkdir(parents=True)
    code, out, err = cli("diagnose", tmp_path)
    assert code == 2 and "trainer_state.json: a directory, not a file" in err
    with pytest.raises(LogFormatError):
        read_runs(tmp_path / "run" / "trainer_state.json")  # given directly: a directory with no log in it


@pytest.mark.parametrize("special", ["/dev/null", "socket"])
def test_devices_and_sockets_are_refused(tmp_path, cli, special):
    if special == "socket":
        if not hasattr(socket, "AF_UNIX"):
            pytest.skip("no unix sockets")
        path = tmp_path / "log.csv"
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        try:
            code, out, err = cli("diagnose", path)
        finally:
            sock.close()
        assert code == 2 and "a socket, not a log file" in err
    else:
        code, out, err = cli("diagnose", special)
        assert code == 2 and "a character device, not a log file" in err


def test_a_name_too_long_for_the_file_system_is_a_clear_error(tmp_path, cli):
    code, out, err = cli("diagnose", tmp_path / ("x" * 300 + ".csv"))
    assert code == 2 and "too long" in err and err.count("\n") == 1


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_files_and_folders_are_named(tmp_path, cli):
    _good_csv(tmp_path / "a" / "metrics.csv")
    locked_file = _good_csv(tmp_path / "b" / "metrics.csv")
    locked_dir = tmp_path / "c"
    _good_csv(locked_dir / "metrics.csv")
    locked_file.chmod(0)
    locked_dir.chmod(0)
    try:
        runs = read_runs(tmp_path)
        assert [c.run for c in runs] == ["a"]
        problems = {f.path: f.error.problem for f in runs.failures}
        assert problems == {str(locked_file): "permission denied", str(locked_dir): "permission denied"}
        code, _, err = cli("diagnose", locked_file)
        assert code == 2 and "permission denied" in err
    finally:
        locked_file.chmod(0o644)
        locked_dir.chmod(0o755)
