"""Property-based fuzzing of every reader (Hypothesis, derandomized: the same examples on every machine
and every run, bounded in number). The contract: a list of Reports, or a LogFormatError naming the file
that was read. Never any other exception."""
import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossdoctor._diagnose import diagnose_path
from lossdoctor.errors import LogFormatError

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NAMES = st.sampled_from(["step", "epoch", "loss", "train_loss", "val_loss", "eval_loss", "Loss", "lr", "grad_norm",
                         "acc", "time", "train/ce", "valid/ce", "ppl", "loss_scale", "", " ", "a,b", "é", "\ufeffstep"])
TOKENS = st.sampled_from(["", "nan", "NaN", "inf", "-Infinity", "null", "N/A", "true", "False", "oops", "1e400",
                          "9" * 400, "-0", "0x10", "1,5", '"2.3"', "'", '"'])
NUMBERS = st.floats(allow_nan=True, allow_infinity=True, width=64).map(repr)
CELLS = st.one_of(NUMBERS, TOKENS, st.integers(-10**30, 10**30).map(str), st.text(max_size=6))
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True),
              st.integers(-10**40, 10**40), st.text(max_size=5), st.sampled_from(["NaN", "Infinity", "null"])),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(NAMES, children, max_size=3)),
    max_leaves=8,
)
RECORDS = st.lists(st.dictionaries(NAMES, JSON_VALUES, max_size=6), max_size=25)


def _check(name: str, content: bytes) -> None:
    """Write ``content`` as ``name`` in a fresh folder and diagnose it: reports or a LogFormatError only."""
    folder = Path(tempfile.mkdtemp(prefix="lossdoctor_fuzz_"))
    try:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        try:
            reports, failures = diagnose_path(path)
        except LogFormatError as exc:
            assert exc.path == str(path) or str(path) in str(exc)
            assert exc.problem
            return
        assert reports and all(r.verdict for r in reports) and failures == []
        for r in reports:
            json.dumps(r.to_dict(), allow_nan=False)  # the JSON output can always be written
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@FUZZ
@given(header=st.lists(NAMES, min_size=1, max_size=5), rows=st.lists(st.lists(CELLS, max_size=6), max_size=30),
       sep=st.sampled_from([",", ";", "\t"]), end=st.sampled_from(["\n", "\r\n", ""]))
def test_csv(header, rows, sep, end):
    text = sep.join(header) + "\n" + "".join(sep.join(r) + "\n" for r in rows)
    _check("log.csv", (text.rstrip("\n") + end).encode("utf-8", "surrogatepass"))


@FUZZ
@given(records=RECORDS, garbage=st.one_of(st.none(), st.text(max_size=20)), cut=st.integers(0, 40))
def test_jsonl(records, garbage, cut):
    lines = [json.dumps(r) for r in records]
    if garbage is not None:
        lines.insert(len(lines) // 2, garbage)
    text = "\n".join(lines)
    text = text[: max(0, len(text) - cut)]
    _check("log.jsonl", text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(history=st.one_of(RECORDS, JSON_VALUES), extra=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3),
       config=st.one_of(st.none(), st.dictionaries(st.sampled_from(["id2label", "num_labels", "problem_type",
                                                                    "architectures"]), JSON_VALUES, max_size=3)))
def test_trainer_state(history, extra, config):
    folder = Path(tempfile.mkdtemp(prefix="lossdoctor_fuzz_"))
    try:
        if config is not None:
            (folder / "config.json").write_text(json.dumps(config))
        (folder / "trainer_state.json").write_text(json.dumps({**extra, "log_history": history}))
        try:
            diagnose_path(folder / "trainer_state.json")
        except LogFormatError as exc:
            assert str(folder) in str(exc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@FUZZ
@given(doc=JSON_VALUES)
def test_json_documents(doc):
    _check("history.json", json.dumps(doc).encode())


@FUZZ
@given(rows=st.lists(st.tuples(NUMBERS, CELLS, CELLS), max_size=30), as_json=st.booleans())
def test_tensorboard_downloads(rows, as_json):
    if as_json:
        content = json.dumps([[float(w) if w not in ("nan", "inf", "-inf") else 0.0, s, v] for w, s, v in rows])
        _check("run-fuzz-tag-Loss_train.json", content.encode())
    else:
        content = "Wall time,Step,Value\n" + "".join(f"{w},{s},{v}\n" for w, s, v in rows)
        _check("run-fuzz-tag-Loss_train.csv", content.encode("utf-8", "surrogatepass"))


@FUZZ
@given(runs=st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=3),
       metrics=st.lists(NAMES, min_size=1, max_size=2), rows=st.lists(st.lists(CELLS, max_size=12), max_size=20))
def test_wandb_exports(runs, metrics, rows):
    header = ["Step"] + [f"{r} - {m}{s}" for r in runs for m in metrics for s in ("", "__MIN", "__MAX")]
    text = ",".join(json.dumps(h) for h in header) + "\n" + "".join(",".join(r) + "\n" for r in rows)
    _check("wandb_export.csv", text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(data=st.binary(max_size=400), name=st.sampled_from(["log.csv", "log.jsonl", "state.json", "log", "x.tsv",
                                                           "events.out.tfevents.1.fuzz", "run-a-tag-loss.csv"]))
def test_arbitrary_bytes(data, name):
    _check(name, data)


@pytest.fixture(scope="module")
def event_file_bytes():
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.record_writer import RecordWriter
    import io

    buffer = io.BytesIO()
    writer = RecordWriter(buffer)
    for step in range(60):
        value = 2.3 * math.exp(-step / 15) + 0.05
        event = Event(step=step, wall_time=1.0 + step,
                      summary=Summary(value=[Summary.Value(tag="Loss/train", simple_value=value)]))
        writer.write(event.SerializeToString())
    return buffer.getvalue()


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_event_files(event_file_bytes, data):
    raw = bytearray(event_file_bytes)
    cut = data.draw(st.integers(0, len(raw)))
    flips = data.draw(st.lists(st.integers(0, len(raw) - 1), max_size=3))
    for i in flips:
        raw[i] ^= 0xFF
    _check("run/events.out.tfevents.1.fuzz", bytes(raw[:cut]))
