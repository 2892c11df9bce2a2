"""CSV and JSON-lines logs with any header: plain CSV, Lightning's CSVLogger ``metrics.csv`` (train and
validation rows interleaved, empty cells between), Keras' CSVLogger / ``history`` CSV, JSONL, a JSON list of
records or a Keras ``history.history`` dict.

An empty cell (or a key absent from a record) means "not logged on this row"; ``nan``, ``NaN``, ``inf``,
``Infinity`` and ``null`` are values: a NaN loss is data (the ``non_finite`` verdict), not a parse error.
A boolean is not a number; a list or object where a number belongs is ignored (an extra value some
loggers attach, such as per-threshold scores).

A last line cut short (a log copied while being written, a run killed mid-write) is left out and said
so in ``meta["notes"]``; while following a live log (``live=True``) it is merely "not written yet".
"""
from __future__ import annotations

import csv
import io
import itertools
import math
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import LogFormatError
from ..evidence import Curves
from .columns import (EPOCH_NAMES, GRAD_NAMES, LR_NAMES, STEP_NAMES, assign_roles, build_curves, extra_metrics,
                      find_column, loss_name, norm)
from .files import CUT_SHORT, check_text, first_line, os_problem, parse_json, read_bytes, read_text

# Spellings of non-finite values that loggers write (Python, JavaScript, R, Java, numpy, pandas).
NON_FINITE_TOKENS = {
    "nan": math.nan, "-nan": math.nan, "+nan": math.nan, "null": math.nan, "none": math.nan, "na": math.nan,
    "n/a": math.nan, "inf": math.inf, "+inf": math.inf, "infinity": math.inf, "+infinity": math.inf,
    "-inf": -math.inf, "-infinity": -math.inf,
}
CSV_EXPECTED = "a header line and one row per logged step"
JSONL_EXPECTED = "one JSON object per line, like {\"step\": 1, \"loss\": 2.3}"
CUT_SHORT_NOTE = "the last line of the file is cut short (copied while being written?): left out"


def sniff_separator(first_line: str) -> str:
    if "\t" in first_line and "," not in first_line:
        return "\t"
    if ";" in first_line and "," not in first_line:
        return ";"
    return ","


SEPARATORS = (",", ";", "\t")


def header_fields(path: Path, head: str) -> tuple[list[str], str, int]:
    """The column names of a CSV/TSV file (cleaned of a BOM and spaces), its separator, and how many
    lines above the header are a title (``model_history_log`` alone on the first line): 0 or 1."""
    text = head.lstrip("\ufeff")
    first = first_line(path, text) if text.strip() else ""
    skip = 0
    lines = text.splitlines()
    if first.strip() and not any(c in first for c in SEPARATORS) and len(lines) > 1:
        below = next(csv.reader([lines[1]], delimiter=sniff_separator(lines[1])), [])
        if len(below) > 1 and not all(_is_number(f) for f in below):
            first, skip = lines[1], 1  # a title alone on the first line; the header is the next one
    sep = sniff_separator(first)
    names = next(csv.reader([first], delimiter=sep), [])
    names = [n.strip() for n in names]
    if not any(names):
        raise LogFormatError(path, "the first line is empty", line=1, expected=CSV_EXPECTED)
    return names, sep, skip


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


@dataclass
class CsvTable:
    """A CSV file as read: its header names, its rows (columns numbered 0..n-1, every cell as pandas
    read it), notes, and the line number of its first data row (for errors)."""

    names: list[str]
    df: pd.DataFrame
    notes: list[str]
    first_row_line: int = 2

    def line_of(self, row: int) -> int:
        return self.first_row_line + row  # blank lines between rows are rare enough not to count


def load_csv(path: Path, live: bool = False) -> CsvTable:
    """Read a CSV/TSV file. Errors name the line: a row with more fields than the header, no header,
    no rows. A last line cut short (no newline at the end and fewer fields than the header) is left
    out; a title alone above the header is skipped; both said in the notes.
    """
    head = check_text(path)
    names, sep, skip = header_fields(path, head)
    if all(_is_number(c) for c in names if c):
        raise LogFormatError(path, "the first line is not a header", line=1,
                             expected="a header naming the columns, e.g. step,train_loss,val_loss")
    notes: list[str] = []
    if skip:
        title = head.lstrip("\ufeff").splitlines()[0].strip()
        notes.append(f"the first line ({title[:60]!r}) is a title above the header: skipped")
    source: Path | io.BytesIO = path  # pandas reads a path faster than a buffer: a buffer only to cut a line
    cut = _cut_last_line(path, len(names), sep, live)
    if cut is not None:
        source = io.BytesIO(read_bytes(path)[:cut])
        if not live:
            notes.append(CUT_SHORT_NOTE)
    encoding = "utf-8-sig" if head.startswith("\ufeff") else "utf-8"  # utf-8-sig costs a third more time
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(source, sep=sep, header=0, names=list(range(len(names))), index_col=False,
                             na_values=[""], keep_default_na=False, skip_blank_lines=True, encoding=encoding,
                             skiprows=skip)
    except pd.errors.EmptyDataError:
        raise LogFormatError(path, "the file is empty", line=1, expected=CSV_EXPECTED) from None
    except pd.errors.ParserWarning:
        raise LogFormatError(path, "a row has more fields than the header", line=2 + skip,
                             expected=f"{len(names)} fields per row, like the header") from None
    except pd.errors.ParserError as exc:
        text = str(exc)
        if "EOF inside string" in text:  # "starting at row N", rows counted from the header's 0
            m = re.search(r"row (\d+)", text)
            raise LogFormatError(path, "a quote that is never closed", line=int(m.group(1)) + 1 + skip if m else None,
                                 expected="quoted cells closed on the same row") from None
        m = re.search(r"line (\d+)", text)
        raise LogFormatError(path, "a row has more fields than the header" if "fields" in text else
                             f"unreadable CSV ({text.strip().splitlines()[-1][:200]})",
                             line=int(m.group(1)) if m else None,
                             expected=f"{len(names)} fields per row, like the header") from None
    except UnicodeDecodeError as exc:
        data = read_bytes(path)  # pandas' offset is within a chunk: find the line from the file itself
        try:
            data.decode("utf-8")
            where = None
        except UnicodeDecodeError as whole:
            where = data[: whole.start].count(b"\n") + 1
        raise LogFormatError(path, f"not UTF-8 text ({exc.reason})", line=where, expected="a text log") from None
    if len(df) == 0:
        raise LogFormatError(path, "a header but no data rows", line=2 + skip, expected="one row per logged step")
    return CsvTable(names, df, notes, first_row_line=2 + skip)


# How much of a file's end is read to see whether its last line is complete.
TAIL_BYTES = 65536


def _cut_last_line(path: Path, n_fields: int, sep: str, live: bool) -> int | None:
    """Where to cut the file to leave out an unfinished last line, or None to keep everything."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - TAIL_BYTES))
            tail = fh.read()
    except OSError as exc:
        raise LogFormatError(path, os_problem(exc), expected=CSV_EXPECTED) from None
    if not tail or tail.endswith(b"\n"):
        return None
    newline = tail.rfind(b"\n")
    if newline < 0:
        return None  # only the header line (or one line longer than the tail: kept as it is)
    start = size - len(tail) + newline + 1
    if live:
        return start  # a live log's last line without its newline is still being written
    last = tail[newline + 1:].decode("utf-8", "replace")
    fields = next(csv.reader([last], delimiter=sep), [])
    return start if 0 < len(fields) < n_fields else None


def label_csv(path: Path, columns: list[str]) -> str:
    names = [norm(c) for c in columns]
    if path.name == "metrics.csv" and "step" in names and "epoch" in names:
        return "lightning"
    if names and names[0] == "epoch" and ("loss" in names or "val_loss" in names):
        return "keras"
    return "csv"


def numeric(col: pd.Series) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Values as float64, the mask of cells present, and the row index of the first non-number (or None).
    The mask is the caller's to modify; the values may be a read-only view of pandas' column."""
    if pd.api.types.is_bool_dtype(col.dtype):
        present = col.notna().to_numpy(dtype=bool, copy=True)
        return np.full(len(col), np.nan), present, int(np.argmax(present)) if present.any() else None
    if pd.api.types.is_numeric_dtype(col.dtype):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        return values, ~np.isnan(values), None
    present = col.notna().to_numpy(dtype=bool, copy=True)
    text = col.astype("string").str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    missing = np.isnan(values) & present
    if missing.any():
        idx = np.flatnonzero(missing)
        lowered = text.iloc[idx].str.lower()
        ok = lowered.isin(list(NON_FINITE_TOKENS)).to_numpy(dtype=bool)
        values[idx[ok]] = [NON_FINITE_TOKENS[t] for t in lowered[ok]]
        if not ok.all():
            return values, present, int(idx[~ok][0])
    return values, present, None


def _csv_duplicates(path: Path, names: list[str]) -> set[str]:
    """Header names given to more than one column: an error when one of them could be a column
    lossdoctor needs (which of the two is meant?), else left out."""
    dupes = {n for n, k in Counter(names).items() if k > 1}
    for col in sorted(dupes):
        if loss_name(col) is not None or norm(col) in STEP_NAMES + EPOCH_NAMES + LR_NAMES + GRAD_NAMES:
            where = [i + 1 for i, n in enumerate(names) if n == col]
            raise LogFormatError(path, f"the header names {len(where)} columns {col!r} "
                                 f"(columns {', '.join(map(str, where))})", line=1, expected="each column named once")
    return dupes


def read_csv(path: str | os.PathLike, step: str | None = None, train: str | None = None,
             val: str | None = None, run: str | None = None, *, live: bool = False) -> Curves:
    path = Path(path)
    table = load_csv(path, live)
    names, df, notes = table.names, table.df, table.notes
    dupes = _csv_duplicates(path, names)
    roles = assign_roles(path, [n for n in names if n not in dupes], step, train, val)
    position = {}
    for i, n in enumerate(names):
        position.setdefault(n, i)
    meta: dict[str, Any] = {"rows": int(len(df)), "notes": notes}
    wanted = roles.used()
    extras, n_extra = extra_metrics([n for n in names if n not in dupes], roles)
    keep = [*roles.columns.values(), *extras]
    converted: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in ([roles.step] if roles.step else []) + keep:
        values, present, bad_row = numeric(df[position[name]])
        if bad_row is not None:
            if name in wanted:
                raise LogFormatError(path, f"column {name!r} holds {df[position[name]].iloc[bad_row]!r}, not a number",
                                     line=table.line_of(bad_row), expected="a number, nan, inf or an empty cell")
            continue  # a text column (a run name, a date): not a metric
        converted[name] = (values, present)
    if roles.step is not None:
        steps, step_present = converted[roles.step]
        unusable = step_present & ~np.isfinite(steps)
        if unusable.any():
            notes.append(f"{int(unusable.sum())} rows with a non-finite {roles.step!r} were left out")
        step_present = step_present & np.isfinite(steps)
        meta["step_column"] = roles.step
    else:
        steps, step_present = np.arange(len(df), dtype=np.float64), np.ones(len(df), dtype=bool)
        meta["step_column"] = None
        notes.append("no step or epoch column: the row number is the step")
    cols = {}
    for name in keep:
        if name not in converted:
            continue
        values, present = converted[name]
        if not present.any():
            continue
        ok = present & step_present
        cols[name] = (steps, values) if ok.all() else (steps[ok], values[ok])
    return build_curves(path, run or run_name(path), label_csv(path, names), cols, roles=roles, meta=meta,
                        train=train, val=val, extra_total=n_extra)


def run_name(path: Path) -> str:
    if path.stem in ("metrics", "log", "training", "history", "trainer_state", "progress", "training_log") \
            and path.parent.name:
        return path.parent.name
    return path.stem


def _flatten(record: dict) -> dict:
    """Nested objects as "a/b" keys, in order, without recursion (a deep document cannot exhaust the stack)."""
    out: dict = {}
    stack = [("", iter(record.items()))]
    while stack:
        prefix, items = stack[-1]
        for k, v in items:
            if isinstance(v, dict):
                stack.append((f"{prefix}{k}/", iter(v.items())))
                break
            out[f"{prefix}{k}"] = v
        else:
            stack.pop()
    return out


_PLAIN_NUMBERS = frozenset({float, int})
_NUMBERS_OR_NULL = frozenset({float, int, type(None)})


def json_column(raw: list) -> tuple[np.ndarray, np.ndarray, int | None]:
    """JSON values as float64 (null -> NaN, "NaN"/"Infinity" strings read), the mask of values that are
    numbers (a list or object in a record is ignored there), and the index of the first value that is
    text or a boolean (None when all are numbers)."""
    types = set(map(type, raw))
    if types <= _NUMBERS_OR_NULL:
        try:
            values = np.array(raw, dtype=np.float64)
            return values, np.ones(len(raw), dtype=bool), None
        except OverflowError:  # an integer beyond float range: value by value below
            pass
    values = np.empty(len(raw), dtype=np.float64)
    usable = np.ones(len(raw), dtype=bool)
    bad = None
    for j, v in enumerate(raw):
        t = type(v)
        if t in _PLAIN_NUMBERS:
            try:
                values[j] = float(v)
            except OverflowError:
                values[j] = math.inf if v > 0 else -math.inf
        elif v is None:
            values[j] = math.nan  # null: many JSON writers turn NaN into null; a present null loss is data
        elif t is str:
            token = NON_FINITE_TOKENS.get(v.strip().lower())
            if token is not None:
                values[j] = token
                continue
            try:
                values[j] = float(v)
            except ValueError:
                usable[j] = False
                if bad is None:
                    bad = j
        elif t in (list, dict):
            usable[j] = False
            values[j] = math.nan
        else:  # a boolean (or anything else): not a number
            usable[j] = False
            values[j] = math.nan
            if bad is None:
                bad = j
    return values, usable, bad


def records_to_curves(path: Path, records: list[dict], lines: list[int] | None, fmt: str, step: str | None,
                      train: str | None, val: str | None, run: str | None = None,
                      meta: dict | None = None) -> Curves:
    """Curves from a list of flat dict records (JSONL lines, a JSON list, HF log_history entries).

    A key absent from a record is "not logged there"; a key present with null/NaN/Infinity is data.
    Only the columns that become series are gathered (the standard ones and the first extra metrics).
    """
    counts = Counter(itertools.chain.from_iterable(records))  # every key, in order of appearance
    names = list(counts)
    roles = assign_roles(path, names, step, train, val)
    meta = dict(meta or {})
    notes = meta.setdefault("notes", [])
    meta["records"] = len(records)
    meta["step_column"] = roles.step
    n = len(records)

    def where(i: int) -> tuple[int | None, str]:
        if lines:
            return lines[i], ""
        return None, f" (record {i + 1})"

    if roles.step is None:
        all_steps = np.arange(n, dtype=np.float64)
        notes.append("no step or epoch key: the record number is the step")
    else:
        raw = [r.get(roles.step) for r in records]
        all_steps, usable, _ = json_column(raw)
        all_steps[~usable | ~np.isfinite(all_steps)] = np.nan
        skipped = int(np.isnan(all_steps).sum())
        if skipped:
            notes.append(f"{skipped} records without a numeric {roles.step!r} were left out")
    wanted = set(roles.columns.values())
    extras, n_extra = extra_metrics(names, roles)
    keep = [*roles.columns.values(), *extras]
    cols = {}
    for k in keep:
        if counts[k] == n:  # logged in every record: no presence mask to build
            idx, raw = None, [r[k] for r in records]
        else:
            idx = np.flatnonzero(np.fromiter((k in r for r in records), dtype=bool, count=n))
            raw = [r[k] for r in records if k in r]
        values, usable, bad = json_column(raw)
        if bad is not None:
            if k in wanted:
                i = int(idx[bad]) if idx is not None else bad
                line, label = where(i)
                what = "a boolean" if isinstance(raw[bad], bool) else repr(raw[bad])
                raise LogFormatError(path, f"{k!r} is {what}, not a number{label}", line=line,
                                     expected="a number, NaN, Infinity or null")
            continue  # text: not a metric
        steps = all_steps if idx is None else all_steps[idx]
        ok = usable & ~np.isnan(steps)
        cols[k] = (steps, values) if ok.all() else (steps[ok], values[ok])
    return build_curves(path, run or run_name(path), fmt, cols, roles=roles, meta=meta, train=train, val=val,
                        extra_total=n_extra)


def read_jsonl(path: str | os.PathLike, step: str | None = None, train: str | None = None,
               val: str | None = None, run: str | None = None, *, live: bool = False) -> Curves:
    path = Path(path)
    text = read_text(path, "JSON lines")
    records, lines, notes = [], [], []
    rows = text.split("\n")
    last = len(rows)
    for no, line in enumerate(rows, 1):
        if not line.strip():
            continue
        try:
            obj = parse_json(line, path, line=no, expected=JSONL_EXPECTED)
        except LogFormatError as exc:
            if no == last and not text.endswith("\n") and (live or CUT_SHORT in exc.problem):
                if not live:
                    notes.append(CUT_SHORT_NOTE)
                break  # the last line, unfinished
            raise
        if not isinstance(obj, dict):
            raise LogFormatError(path, f"a JSON {type(obj).__name__}, not an object", line=no, expected=JSONL_EXPECTED)
        records.append(_flatten(obj) if "{" in line[line.index("{") + 1:] else obj)
        lines.append(no)
    if not records:
        raise LogFormatError(path, "no records", line=1, expected=JSONL_EXPECTED)
    return records_to_curves(path, records, lines, "jsonl", step, train, val, run, meta={"notes": notes})


# How deep a columnar history may nest its lists ({"metrics": {"train": {"loss": [...]}}}): deeper than
# that it is a document, not a log.
MAX_COLUMN_NESTING = 3


def _columns_of(obj: dict, prefix: str = "", depth: int = 0) -> dict[str, list]:
    """The list-valued entries of a dict of lists, nested dicts flattened to ``a/b`` names; {} when the
    document holds no list of at least two values, or only lists of records (then it is no history)."""
    out: dict[str, list] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, list) and len(value) >= 2 and not any(isinstance(x, (dict, list)) for x in value):
            out[name] = value
        elif isinstance(value, dict) and depth < MAX_COLUMN_NESTING:
            out.update(_columns_of(value, name + "/", depth + 1))
    return out


def read_json_records(path: Path, obj: Any, step: str | None, train: str | None, val: str | None,
                      run: str | None = None) -> Curves:
    """A JSON document that is not a trainer_state: a list of records or a Keras history dict of lists."""
    if isinstance(obj, list):
        if not obj or not all(isinstance(r, dict) for r in obj):
            raise LogFormatError(path, "a JSON list that is not a list of records",
                                 expected="a list of objects like {\"step\": 1, \"loss\": 2.3}")
        return records_to_curves(path, [_flatten(r) for r in obj], None, "json", step, train, val, run)
    columns = _columns_of(obj) if isinstance(obj, dict) else {}
    if columns:
        # Keras History.history {"loss": [...], "val_loss": [...]}, possibly nested one level or more
        # ({"epochs": [...], "metrics": {"loss": [...]}}) and beside single values (a config, a best
        # score): every list of values is a column; the rest is not a curve
        obj = columns
        n = max(len(v) for v in obj.values())
        records = [{k: v[i] for k, v in obj.items() if i < len(v)} for i in range(n)]
        if step is None and not any(norm(k) in STEP_NAMES + EPOCH_NAMES for k in obj):
            for i, r in enumerate(records):
                r["epoch"] = i
        elif step is not None:
            find_column(path, list(obj), step, "step")
        return records_to_curves(path, records, None, "keras_history", step, train, val, run)
    raise LogFormatError(path, "a JSON document lossdoctor does not know",
                         expected="a trainer_state.json (with log_history), a list of records, or a dict of lists")
