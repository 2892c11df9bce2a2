"""Writes the committed corpus of malformed logs beside this file, and EXPECTED.json: for each file,
the outcome the readers must give: a Report (with its verdict when the file decides one, and a note
when something was left out), or a LogFormatError naming the file (its line when the file has one)
and the words that say what is wrong.

Run it only to change the corpus: ``python tests/logs/malformed/make_corpus.py`` (the event files
need torch's SummaryWriter). FIFOs, sockets and devices are made by the tests, not committed.
"""
from __future__ import annotations

import gzip
import json
import math
import shutil
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
N = 60  # rows of a well-formed part: enough for a verdict (the curve analysis needs 8 points or more)


def falling(n=N):
    return [round(2.3 * 0.95 ** i + 0.05, 6) for i in range(n)]


def csv_rows(values, start=0):
    return "".join(f"{i + start},{v}\n" for i, v in enumerate(values))


def jsonl(records):
    return "".join(json.dumps(r) + "\n" for r in records)


def steps_losses(n=N, **extra):
    return [{"step": i, "loss": v, **{k: f(i) for k, f in extra.items()}} for i, v in enumerate(falling(n))]


def nested(depth, inner="1"):
    return "[" * depth + inner + "]" * depth


def corpus() -> dict[str, tuple[bytes, dict]]:
    good = "step,loss\n" + csv_rows(falling())
    state = {"log_history": [{"step": i + 1, "loss": v, "epoch": i / 10} for i, v in enumerate(falling())],
             "global_step": N}
    state_text = json.dumps(state, indent=2)
    files: dict[str, tuple[bytes | str, dict]] = {
        # -- empty and nearly empty ------------------------------------------------------------
        "empty.csv": ("", {"error": "empty", "line": 1}),
        "whitespace_only.csv": ("\n \n\t\n", {"error": "empty", "line": 1}),
        "bom_only.csv": ("\ufeff", {"error": "empty", "line": 1}),
        "header_only.csv": ("step,loss\n", {"error": "no data rows", "line": 2}),
        "single_row.csv": ("step,loss\n0,2.3\n", {"verdict": "insufficient_data"}),
        "empty.jsonl": ("\n\n", {"error": "empty", "line": 1}),
        "empty_object.jsonl": ("{}\n{}\n", {"error": "no loss column"}),
        # -- encodings and line ends -----------------------------------------------------------
        "bom_header.csv": ("\ufeff" + good, {"verdict": "converging"}),
        "crlf.csv": (good.replace("\n", "\r\n"), {"verdict": "converging"}),
        "cr_only.csv": (good.replace("\n", "\r"), {"verdict": "converging"}),
        "latin1.csv": ("step,loss,café\n".encode("latin-1") + csv_rows(falling()).encode(),
                       {"error": "UTF-8", "line": 1}),
        "invalid_utf8_in_row.csv": (("step,loss\n" + csv_rows(falling(10))).encode() + b"11,\xff\xfe\n",
                                    {"error": "UTF-8", "line": 12}),
        "binary_junk.csv": (bytes(range(256)) * 8, {"error": "binary", "line": 1}),
        "binary_junk_no_suffix": (b"\x89PNG\r\n\x1a\n\x00\x00" * 40, {"error": "binary", "line": 1}),
        "gzipped.csv": (gzip.compress(good.encode(), mtime=0), {"error": "gzip-compressed", "line": 1}),
        "metrics.csv.gz": (gzip.compress(good.encode(), mtime=0), {"error": "gzip-compressed", "line": 1}),
        # -- cut short ---------------------------------------------------------------------------
        "truncated_mid_row.csv": ("step,loss,lr\n" + "".join(f"{i},{v},0.1\n" for i, v in enumerate(falling()))
                                  + "60,0.1", {"verdict": "converging", "note": "cut short"}),
        "truncated_mid_line.jsonl": (jsonl(steps_losses()) + '{"step": 60, "loss": 0.0', {"verdict": "converging",
                                                                                          "note": "cut short"}),
        "truncated_trainer_state.json": (state_text[: len(state_text) // 2], {"error": "truncated JSON"}),
        # -- NaN, Inf, huge numbers ------------------------------------------------------------
        "nan_only.csv": ("step,loss\n" + "".join(f"{i},nan\n" for i in range(N)), {"verdict": "non_finite"}),
        "nan_only_other_name.csv": ("iter,objective\n" + "".join(f"{i},NaN\n" for i in range(N)),
                                    {"verdict": "non_finite"}),
        "empty_loss_cells.csv": ("step,loss,acc\n" + "".join(f"{i},,0.5\n" for i in range(N)),
                                 {"error": "hold no values"}),
        "non_finite_spellings.csv": ("step,loss\n" + csv_rows(falling(40)) + "40,NaN\n41,-Infinity\n42,null\n43,N/A\n",
                                     {"verdict": "non_finite"}),
        "huge_float.csv": ("step,loss\n" + csv_rows(falling(40)) + "".join(f"{40 + i},1e400\n" for i in range(5)),
                           {"verdict": "non_finite"}),
        "huge_int_loss.jsonl": (jsonl(steps_losses(40)) + '{"step": 40, "loss": ' + "9" * 5000 + "}\n",
                                {"verdict": "non_finite"}),
        "huge_int_step.jsonl": (jsonl(steps_losses()) + '{"step": ' + "1" * 5000 + ', "loss": 0.1}\n',
                                {"verdict": "converging", "note": "left out"}),
        "nan_steps.csv": ("step,loss\n" + "".join(f"nan,{v}\n" for v in falling()), {"error": "hold no values"}),
        # -- nesting and JSON shapes ------------------------------------------------------------
        "deep_nesting.json": ('{"log_history": ' + nested(5000) + "}", {"error": "nested too deeply"}),
        "deep_nesting.jsonl": (jsonl(steps_losses(5)) + '{"step": 5, "loss": 1.0, "x": ' + nested(5000) + "}\n",
                               {"error": "nested too deeply", "line": 6}),
        "deep_objects.jsonl": ("".join('{"step": %d, "loss": %s, "a": %s}\n' % (i, v, '{"a": ' * 900 + "1" + "}" * 900)
                                       for i, v in enumerate(falling(3))) + jsonl(steps_losses()[3:]),
                               {"verdict": "converging"}),
        "json_scalar.json": ("42", {"error": "does not know"}),
        "json_string.json": ('"hello"', {"error": "does not know"}),
        "json_list_of_numbers.json": ("[1, 2, 3]", {"error": "not a list of records"}),
        "jsonl_array_line.jsonl": (jsonl(steps_losses(5)) + "[1, 2]\n", {"error": "not an object", "line": 6}),
        "jsonl_garbage_line.jsonl": (jsonl(steps_losses(5)) + "loss=2.3\n" + jsonl(steps_losses(5)),
                                     {"error": "invalid JSON", "line": 6}),
        # -- values that are not numbers -------------------------------------------------------
        "list_valued_metric.jsonl": (jsonl(steps_losses(acc=lambda i: [0.5, 0.6])), {"verdict": "converging"}),
        "list_valued_loss.jsonl": (jsonl([{"step": i, "loss": [v]} for i, v in enumerate(falling())]),
                                   {"error": "hold no values"}),
        "dict_valued_step.jsonl": (jsonl([{"step": {"n": i}, "loss": v} for i, v in enumerate(falling())]),
                                   {"verdict": "converging", "note": "record number"}),
        "bool_loss.jsonl": (jsonl([{"step": i, "loss": i % 2 == 0} for i in range(N)]),
                            {"error": "a boolean", "line": 1}),
        "bool_metric.jsonl": (jsonl(steps_losses(done=lambda i: False)), {"verdict": "converging"}),
        "text_step_in_one_record.jsonl": (jsonl(steps_losses()[:30] + [{"step": "thirty", "loss": 0.2}]
                                                + steps_losses()[31:]), {"verdict": "converging", "note": "left out"}),
        "text_in_loss.csv": ("step,loss\n" + csv_rows(falling(20)) + "20,oops\n", {"error": "'oops'", "line": 22}),
        "bool_loss.csv": ("step,loss\n" + "".join(f"{i},{i % 2 == 0}\n" for i in range(N)),
                          {"error": "not a number", "line": 2}),
        # -- table shapes ------------------------------------------------------------------------
        "no_header.csv": (csv_rows(falling()), {"error": "not a header", "line": 1}),
        "ragged_row.csv": ("step,loss\n" + csv_rows(falling(20)) + "20,1.0,7\n", {"error": "more fields", "line": 22}),
        "first_row_longer.csv": ("step,loss\n0,2.3,9\n" + csv_rows(falling(20), 1), {"error": "more fields", "line": 2}),
        "unclosed_quote.csv": ('step,loss\n0,"2.3\n1,2.2\n', {"error": "quote", "line": 2}),
        "mixed_separators.csv": ("step,loss\n" + "".join(f"{i};{v}\n" for i, v in enumerate(falling())),
                                 {"error": "not a number", "line": 2}),
        "duplicate_loss_header.csv": ("step,loss,loss\n" + "".join(f"{i},{v},{v}\n" for i, v in enumerate(falling())),
                                      {"error": "columns 'loss'", "line": 1}),
        "duplicate_other_header.csv": ("step,loss,acc,acc\n" + "".join(f"{i},{v},0.5,0.6\n" for i, v in
                                                                       enumerate(falling())), {"verdict": "converging"}),
        "case_twins.csv": ("step,Loss,loss\n" + "".join(f"{i},{v},{v}\n" for i, v in enumerate(falling())),
                           {"error": "--train"}),
        "all_steps_equal.csv": ("step,loss\n" + "".join(f"1,{v}\n" for v in falling()),
                                {"verdict": "insufficient_data", "note": "latest write"}),
        "steps_backwards.csv": ("step,loss\n" + "".join(f"{N - i},{v}\n" for i, v in enumerate(falling())),
                                {"note": "went back"}),
        "title_above_header.csv": ("model_history_log\n" + good.replace(",", ";"), {"verdict": "converging",
                                                                               "note": "title"}),
        "title_then_text_in_loss.csv": ("my run\n" + "step,loss\n" + csv_rows(falling(20)) + "20,oops\n",
                                        {"error": "'oops'", "line": 23}),
        "no_loss_column.csv": ("step,accuracy\n" + "".join(f"{i},0.5\n" for i in range(N)), {"error": "no loss column"}),
        "only_loss_scale.csv": ("step,loss_scale\n" + "".join(f"{i},65536\n" for i in range(N)),
                                {"error": "no loss column"}),
        # -- trainer_state.json shapes -----------------------------------------------------------
        "state_history_not_a_list/trainer_state.json": (json.dumps({"log_history": 5}), {"error": "not a list"}),
        "state_entries_not_objects/trainer_state.json": (json.dumps({"log_history": [1, 2, 3]}),
                                                         {"error": "other than entries"}),
        "state_eval_thresholds/trainer_state.json": (json.dumps({"log_history": [
            *state["log_history"], *[{"step": 10 * k, "eval_loss": 1.0 / k, "eval_thresholds": [0.1, 0.5]}
                                     for k in range(1, 7)]]}), {"verdict": "converging"}),
        "keras_history_uneven.json": (json.dumps({"loss": falling(), "val_loss": falling(30)}), {"verdict": None}),
        # -- exports -------------------------------------------------------------------------------
        "run-x-tag-loss.csv": ("Wall time,Step,Value\n1.0,1,2.3\n2.0,2,oops\n", {"error": "oops", "line": 3}),
        "wandb_export_no_loss.csv": ("Step,a - accuracy,a - accuracy__MIN,a - accuracy__MAX\n1,0.5,0.5,0.5\n",
                                     {"error": "no loss column"}),
        # -- TensorBoard ---------------------------------------------------------------------------
        "zero/events.out.tfevents.0.zero": (b"", {"error": "empty"}),
        "junk/events.out.tfevents.1.junk": (b"\x07\x00\x00\x00junkjunkjunk" * 20, {"error": "TensorBoard"}),
    }
    return files


def _event_files(out: dict) -> None:
    """A real SummaryWriter log, cut inside a record and with one flipped byte."""
    from torch.utils.tensorboard import SummaryWriter

    tmp = Path(tempfile.mkdtemp())
    writer = SummaryWriter(log_dir=str(tmp))
    for i, v in enumerate(falling(200)):
        writer.add_scalar("Loss/train", v, i)
    writer.close()
    data = next(tmp.glob("events.out.tfevents*")).read_bytes()
    shutil.rmtree(tmp)
    out["cut/events.out.tfevents.2.cut"] = (data[: len(data) * 2 // 3 + 5], {"verdict": "converging",
                                                                             "note": "ends inside record"})
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    out["flipped/events.out.tfevents.3.flipped"] = (bytes(flipped), {"note": "damaged"})


def main() -> None:
    files = corpus()
    _event_files(files)
    expected = {}
    for name, (content, outcome) in sorted(files.items()):
        path = HERE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        expected[name] = outcome
    (HERE / "EXPECTED.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(f"{len(files)} files")


if __name__ == "__main__":
    assert not math.isnan(falling()[0])
    main()
