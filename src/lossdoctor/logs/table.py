"""CSV and JSON-lines logs with any header: plain CSV, Lightning's CSVLogger ``metrics.csv`` (train and
validation rows interleaved, empty cells between), Keras' CSVLogger / ``history`` CSV, JSONL, a JSON list of
records or a Keras ``history.history`` dict.

An empty cell (or a key absent from a record) means "not logged on this row"; ``nan``, ``NaN``, ``inf``,
``Infinity`` and ``null`` are values: a NaN loss is data (the ``non_finite`` verdict), not a parse error.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import LogFormatError
from ..evidence import Curves
from .columns import EPOCH_NAMES, NOT_METRICS, STEP_NAMES, TRAIN_NAMES, VAL_NAMES, build_curves, choose, norm

# Spellings of non-finite values that loggers write (Python, JavaScript, R, Java, numpy, pandas).
NON_FINITE_TOKENS = {
    "nan": math.nan, "-nan": math.nan, "+nan": math.nan, "null": math.nan, "none": math.nan, "na": math.nan,
    "n/a": math.nan, "inf": math.inf, "+inf": math.inf, "infinity": math.inf, "+infinity": math.inf,
    "-inf": -math.inf, "-infinity": -math.inf,
}
SNIFF_BYTES = 65536
_ABSENT = object()  # a key missing from a record (not logged there), unlike null (a NaN value)


def check_text(path: Path) -> str:
    """The first bytes of ``path`` as text; a clear error for an empty or binary file."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if not head.strip():
        raise LogFormatError(path, "the file is empty", line=1, expected="a header line and one row per logged step")
    if b"\x00" in head:
        raise LogFormatError(path, "binary data, not a text log", line=1,
                             expected="CSV, JSON lines, trainer_state.json or a TensorBoard event file")
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not merely a multi-byte character cut by the read size
            line = head[: exc.start].count(b"\n") + 1
            raise LogFormatError(path, "binary data, not UTF-8 text", line=line,
                                 expected="CSV, JSON lines, trainer_state.json or a TensorBoard event file") from None
        return head[: exc.start].decode("utf-8")


def _label_csv(path: Path, columns: list[str]) -> str:
    names = [norm(c) for c in columns]
    if path.name == "metrics.csv" and "step" in names and "epoch" in names:
        return "lightning"
    if names and names[0] == "epoch" and ("loss" in names or "val_loss" in names):
        return "keras"
    return "csv"


def _numeric(col: pd.Series) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Values as float64, the mask of cells present, and the row index of the first non-number (or None)."""
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        return values, ~np.isnan(values), None
    present = col.notna().to_numpy()
    text = col.astype("string").str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(values) & present
    if missing.any():
        idx = np.flatnonzero(missing)
        lowered = text.iloc[idx].str.lower()
        ok = lowered.isin(list(NON_FINITE_TOKENS)).to_numpy()
        values[idx[ok]] = [NON_FINITE_TOKENS[t] for t in lowered[ok]]
        if not ok.all():
            return values, present, int(idx[~ok][0])
    return values, present, None


def read_csv(path: str | os.PathLike, step: str | None = None, train: str | None = None,
             val: str | None = None, run: str | None = None) -> Curves:
    path = Path(path)
    head = check_text(path)
    first = head.splitlines()[0] if head.splitlines() else ""
    sep = "\t" if "\t" in first and "," not in first else (";" if ";" in first and "," not in first else ",")
    try:
        df = pd.read_csv(path, sep=sep, na_values=[""], keep_default_na=False, skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        raise LogFormatError(path, "the file is empty", line=1, expected="a header line and one row per logged step") from None
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise LogFormatError(path, "a row has more fields than the header", line=int(m.group(1)) if m else None,
                             expected=f"{len(first.split(sep))} fields per row, like the header") from None
    except UnicodeDecodeError as exc:
        raise LogFormatError(path, f"not UTF-8 text ({exc.reason})", expected="a text log") from None
    columns = [str(c) for c in df.columns]
    if all(_is_number(c) for c in columns):
        raise LogFormatError(path, "the first line is not a header", line=1,
                             expected="a header naming the columns, e.g. step,train_loss,val_loss")
    if len(df) == 0:
        raise LogFormatError(path, "a header but no data rows", line=2, expected="one row per logged step")
    fmt = _label_csv(path, columns)

    step_col = choose(path, columns, step, STEP_NAMES, "step") or choose(path, columns, None, EPOCH_NAMES, "epoch")
    wanted = {choose(path, columns, train, TRAIN_NAMES, "training-loss"), choose(path, columns, val, VAL_NAMES, "validation-loss"), step_col}
    meta: dict[str, Any] = {"rows": int(len(df))}
    converted: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in columns:
        values, present, bad_row = _numeric(df[name])
        if bad_row is not None:
            if name in wanted:
                raise LogFormatError(path, f"column {name!r} holds {df[name].iloc[bad_row]!r}, not a number",
                                     line=bad_row + 2, expected="a number, nan, inf or an empty cell")
            continue  # a text column (a run name, a date): not a metric
        converted[name] = (values, present)
    if step_col is not None:
        steps, step_present = converted[step_col]
        step_present = step_present & np.isfinite(steps)
        meta["step_column"] = step_col
    else:
        steps, step_present = np.arange(len(df), dtype=np.float64), np.ones(len(df), dtype=bool)
        meta["step_column"] = None
        meta.setdefault("notes", []).append("no step or epoch column: the row number is the step")
    cols = {}
    for name, (values, present) in converted.items():
        if name == step_col or norm(name) in EPOCH_NAMES:
            continue
        if not present.any():
            continue
        keep = present & step_present
        cols[name] = (steps, values) if keep.all() else (steps[keep], values[keep])
    return build_curves(path, run or _run_name(path), fmt, cols, train=train, val=val, meta=meta)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _run_name(path: Path) -> str:
    if path.stem in ("metrics", "log", "training", "history", "trainer_state", "progress") and path.parent.name:
        return path.parent.name
    return path.stem


def _value(v: Any) -> float | None:
    """A JSON value as a float; None when it is not a number (text, list, bool)."""
    if v is None:
        return math.nan  # null: many JSON writers turn NaN into null; a present null loss is data
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        token = NON_FINITE_TOKENS.get(v.strip().lower())
        if token is not None:
            return token
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _flatten(record: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in record.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def records_to_curves(path: Path, records: list[dict], lines: list[int] | None, fmt: str, step: str | None,
                      train: str | None, val: str | None, run: str | None = None,
                      meta: dict | None = None) -> Curves:
    """Curves from a list of flat dict records (JSONL lines, a JSON list, HF log_history entries).

    A key absent from a record is "not logged there"; a key present with null/NaN/Infinity is data.
    Columns are gathered key by key and converted by numpy in one go; only a column that numpy
    cannot convert (text, "null" strings) goes through the value-by-value path.
    """
    names = list(dict.fromkeys(itertools.chain.from_iterable(records)))  # every key, in order of appearance
    step_key = choose(path, names, step, STEP_NAMES, "step") or choose(path, names, None, EPOCH_NAMES, "epoch")
    wanted = {choose(path, names, train, TRAIN_NAMES, "training-loss"), choose(path, names, val, VAL_NAMES, "validation-loss")}
    meta = dict(meta or {})
    meta["records"] = len(records)
    meta["step_column"] = step_key
    if step_key is None:
        all_steps = np.arange(len(records), dtype=np.float64)
        meta.setdefault("notes", []).append("no step or epoch key: the record number is the step")
    else:
        all_steps = _column(path, [r.get(step_key) for r in records], step_key, None, lines, strict=False)
        all_steps[~np.isfinite(all_steps)] = np.nan
        skipped = int(np.isnan(all_steps).sum())
        if skipped:
            meta.setdefault("notes", []).append(f"{skipped} records without a {step_key!r} were skipped")
    cols = {}
    for k in names:
        if k == step_key or norm(k) in EPOCH_NAMES or norm(k) in NOT_METRICS:
            continue
        col = [r.get(k, _ABSENT) for r in records]
        present = np.array([v is not _ABSENT for v in col], dtype=bool)
        if present.all():
            idx, raw = None, col
        else:
            idx = np.flatnonzero(present)
            raw = [v for v in col if v is not _ABSENT]
        values = _column(path, raw, k, idx, lines, strict=k in wanted)
        if values is None:
            continue  # text: not a metric
        steps = all_steps if idx is None else all_steps[idx]
        ok = ~np.isnan(steps)
        cols[k] = (steps, values) if ok.all() else (steps[ok], values[ok])
    return build_curves(path, run or _run_name(path), fmt, cols, train=train, val=val, meta=meta)


def _column(path: Path, raw: list, key: str, idx: np.ndarray | None, lines: list[int] | None,
            strict: bool) -> np.ndarray | None:
    """A list of JSON values as float64 (null -> NaN); None for a text column, an error if ``strict``."""
    try:
        return np.array(raw, dtype=np.float64)  # numbers, None -> NaN, "NaN"/"Infinity" strings, bools -> 0/1
    except (TypeError, ValueError):  # text, "null" strings, lists, objects: value by value
        pass
    out = np.empty(len(raw), dtype=np.float64)
    for j, v in enumerate(raw):
        x = _value(v)
        if x is None:
            if strict and not isinstance(v, (list, dict)):
                i = int(idx[j]) if idx is not None else j
                raise LogFormatError(path, f"{key!r} is {v!r}, not a number", line=lines[i] if lines else None,
                                     expected="a number, NaN, Infinity or null")
            return None
        out[j] = x
    return out


def read_jsonl(path: str | os.PathLike, step: str | None = None, train: str | None = None,
               val: str | None = None, run: str | None = None) -> Curves:
    path = Path(path)
    check_text(path)
    records, lines = [], []
    with open(path, encoding="utf-8", errors="strict") as fh:
        try:
            for no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LogFormatError(path, f"invalid JSON ({exc.msg}, column {exc.colno})", line=no,
                                         expected="one JSON object per line") from None
                if not isinstance(obj, dict):
                    raise LogFormatError(path, f"a JSON {type(obj).__name__}, not an object", line=no,
                                         expected="one JSON object per line, like {\"step\": 1, \"loss\": 2.3}")
                records.append(_flatten(obj))
                lines.append(no)
        except UnicodeDecodeError as exc:
            raise LogFormatError(path, f"not UTF-8 text ({exc.reason})", expected="JSON lines") from None
    if not records:
        raise LogFormatError(path, "no records", line=1, expected="one JSON object per line")
    return records_to_curves(path, records, lines, "jsonl", step, train, val, run)


def read_json_records(path: Path, obj: Any, step: str | None, train: str | None, val: str | None,
                      run: str | None = None) -> Curves:
    """A JSON document that is not a trainer_state: a list of records or a Keras history dict of lists."""
    if isinstance(obj, list):
        if not obj or not all(isinstance(r, dict) for r in obj):
            raise LogFormatError(path, "a JSON list that is not a list of records",
                                 expected="a list of objects like {\"step\": 1, \"loss\": 2.3}")
        return records_to_curves(path, [_flatten(r) for r in obj], None, "json", step, train, val, run)
    if isinstance(obj, dict) and obj and all(isinstance(v, list) for v in obj.values()):
        n = max(len(v) for v in obj.values())  # Keras History.history: {"loss": [...], "val_loss": [...]}
        records = [{k: v[i] for k, v in obj.items() if i < len(v)} for i in range(n)]
        if step is None and choose(path, list(obj), None, STEP_NAMES + EPOCH_NAMES, "step") is None:
            for i, r in enumerate(records):
                r["epoch"] = i
        return records_to_curves(path, records, None, "keras_history", step, train, val, run)
    raise LogFormatError(path, "a JSON document lossdoctor does not know",
                         expected="a trainer_state.json (with log_history), a list of records, or a dict of lists")
