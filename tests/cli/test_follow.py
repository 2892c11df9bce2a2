"""``lossdoctor diagnose --follow``: a real training writes its log in a thread (the csv module, or JSON
lines, flushed after each step) while ``follow`` re-reads it; it stops with 1 at the first NaN loss and
keeps going (0 once told to stop) on the healthy twin. A half-written last line is "not written yet"."""
import csv
import json
import threading
import types

import pytest

from lossdoctor._diagnose import follow
from lossdoctor.logs import read_runs

POLL_S = 0.05


class _StopAfterFinalRead:
    """``stop`` for follow: True only after one whole read has started once the writer finished."""

    def __init__(self, done: threading.Event):
        self.done, self.armed = done, False

    def __call__(self) -> bool:
        if self.armed:
            return True
        self.armed = self.done.is_set()
        return False


def _csv_writer(path):
    fh = open(path, "w", newline="")
    w = csv.writer(fh)
    w.writerow(["step", "loss", "lr"])
    fh.flush()

    def on_step(step, loss, lr, gn):
        w.writerow([step, loss, lr])
        fh.flush()

    return fh, on_step


def _jsonl_writer(path):
    fh = open(path, "w")

    def on_step(step, loss, lr, gn):
        line = json.dumps({"step": step, "loss": loss, "lr": lr})
        fh.write(line[: len(line) // 2])  # the line reaches the file in two writes, as buffered writers do
        fh.flush()
        fh.write(line[len(line) // 2:] + "\n")
        fh.flush()

    return fh, on_step


def _follow_while_training(train_digits, fault, path, make_writer):
    done = threading.Event()
    fh, on_step = make_writer(path)

    def train():
        try:
            train_digits(fault, on_step=on_step)
        finally:
            fh.close()
            done.set()

    writer = threading.Thread(target=train, daemon=True)
    writer.start()
    lines: list[str] = []
    code = follow(path, interval=POLL_S, out=lines.append, stop=_StopAfterFinalRead(done))
    writer.join(timeout=120)
    return code, lines


@pytest.mark.parametrize("make_writer, name", [(_csv_writer, "log.csv"), (_jsonl_writer, "log.jsonl")])
def test_follow_stops_with_1_at_the_first_nan(tmp_path, train_digits, make_writer, name):
    code, lines = _follow_while_training(train_digits, "lr_nan", tmp_path / name, make_writer)
    assert code == 1
    assert lines[-1].endswith("stopping: non_finite") and any("non_finite" in line for line in lines[:-1])


@pytest.mark.parametrize("make_writer, name", [(_csv_writer, "log.csv"), (_jsonl_writer, "log.jsonl")])
def test_follow_keeps_going_on_a_healthy_run(tmp_path, train_digits, make_writer, name):
    code, lines = _follow_while_training(train_digits, "healthy", tmp_path / name, make_writer)
    assert code == 0 and not any("stopping" in line for line in lines)
    assert lines[-1].split(": ")[-1].startswith("converging")
    assert len(lines) == len(set(lines))  # one line per change, not one per read


def test_follow_waits_for_a_log_that_does_not_exist_yet(tmp_path):
    path = tmp_path / "later.csv"
    lines, calls = [], []

    def sleep(_):
        calls.append(1)
        if len(calls) == 2:
            path.write_text("step,loss\n" + "".join(f"{i},{2.3 * 0.97 ** i + 0.05}\n" for i in range(100)))

    code = follow(path, interval=1, out=lines.append, stop=lambda: len(calls) >= 3, sleep=sleep)
    assert code == 0 and lines[0].startswith("waiting:") and "no such file" in lines[0]
    assert len([line for line in lines if line.startswith("waiting")]) == 1 and "converging" in lines[-1]


def test_ctrl_c_while_following_exits_130(tmp_path, cli, monkeypatch):
    import lossdoctor._diagnose

    path = tmp_path / "log.csv"
    path.write_text("step,loss\n" + "".join(f"{i},{2.3 * 0.97 ** i + 0.05}\n" for i in range(100)))

    def interrupted(_):
        raise KeyboardInterrupt

    monkeypatch.setattr(lossdoctor._diagnose, "time", types.SimpleNamespace(sleep=interrupted))
    code, out, err = cli("diagnose", path, "--follow", "--interval", "5")
    assert code == 130 and "converging" in out and "Traceback" not in err


def test_an_unfinished_last_line_is_not_yet_written_when_live_and_a_note_otherwise(tmp_path):
    rows = "".join(f'{{"step": {i}, "loss": {2.3 * 0.97 ** i}}}\n' for i in range(50))
    jsonl = tmp_path / "log.jsonl"
    jsonl.write_text(rows + '{"step": 50, "lo')
    (live,) = read_runs(jsonl, live=True)
    assert len(live.train) == 50 and not live.meta.get("notes")
    (cut,) = read_runs(jsonl)
    assert len(cut.train) == 50 and any("cut short" in n for n in cut.meta["notes"])
    table = tmp_path / "log.csv"
    table.write_text("step,loss,lr\n" + "".join(f"{i},{2.3 * 0.97 ** i},0.1\n" for i in range(50)) + "50,2.")
    (live,) = read_runs(table, live=True)
    assert len(live.train) == 50 and not live.meta.get("notes")
    (cut,) = read_runs(table)
    assert len(cut.train) == 50 and any("cut short" in n for n in cut.meta["notes"])


def test_follow_refuses_json_and_html(tmp_path, cli):
    code, out, err = cli("diagnose", tmp_path / "x.csv", "--follow", "--json")
    assert code == 2 and "--follow" in err
