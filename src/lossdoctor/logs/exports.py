"""Curves downloaded from the web UIs of TensorBoard and Weights & Biases.

TensorBoard ("Show data download links"): one file per run and tag, named ``run-<run>-tag-<tag>.csv``
(older versions: ``run_<run>-tag-<tag>.csv``; ``/`` in the tag written as ``_``), holding
``Wall time,Step,Value`` rows, or ``.json`` holding ``[[wall_time, step, value], ...]``. The tag comes
from the file name; the files of one run in a directory form one run.

Weights & Biases (a panel's "Export CSV"): a step column, then one column per run and metric named
``<run> - <metric>``, each with ``__MIN`` / ``__MAX`` companions (the band of grouped runs, ignored).
One file gives one run per run name.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import LogFormatError
from ..evidence import Curves
from .columns import NOT_METRICS, assign_roles, build_curves, norm
from .files import parse_json, read_text
from .table import json_column, load_csv, numeric

TB_DOWNLOAD_NAME = re.compile(r"^run[-_](?P<run>.*?)-tag-(?P<tag>.+)\.(?P<ext>csv|json)$", re.IGNORECASE)
TB_CSV_HEADER = ["wall_time", "step", "value"]
TB_EXPECTED = "a TensorBoard download: 'Wall time,Step,Value' rows, or [[wall_time, step, value], ...]"
WANDB_SEPARATOR = " - "
WANDB_COMPANIONS = ("__MIN", "__MAX")


def tb_download_name(path: Path) -> tuple[str, str] | None:
    """(run, tag) from a TensorBoard download's file name, or None when it is not named like one."""
    m = TB_DOWNLOAD_NAME.match(path.name)
    if not m:
        return None
    run = m.group("run")
    return (path.parent.name or run) if run in ("", ".") else run, m.group("tag")


def is_tb_csv_header(names: list[str]) -> bool:
    return [norm(n) for n in names] == TB_CSV_HEADER


def is_tb_json(obj) -> bool:
    return (isinstance(obj, list) and bool(obj)
            and all(isinstance(r, list) and len(r) == 3 for r in obj[:50]))


def read_tb_download(path: Path, obj=None) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values of one TensorBoard download (CSV, or JSON already parsed as ``obj``)."""
    if path.suffix.lower() == ".json":
        if obj is None:
            obj = parse_json(read_text(path, "a JSON document"), path)
        if not is_tb_json(obj) or not all(isinstance(r, list) and len(r) == 3 for r in obj):
            raise LogFormatError(path, "not a TensorBoard JSON download", expected=TB_EXPECTED)
        steps, ok_s, bad_s = json_column([r[1] for r in obj])
        values, ok_v, bad_v = json_column([r[2] for r in obj])
        bad = bad_s if bad_s is not None else bad_v
        if bad is not None:
            raise LogFormatError(path, f"entry {bad + 1} is {obj[bad]!r}", expected="[wall_time, step, value] numbers")
        keep = ok_s & ok_v & np.isfinite(steps)
        return steps[keep], values[keep]
    table = load_csv(path)
    names, df = table.names, table.df
    if not is_tb_csv_header(names):
        raise LogFormatError(path, "not a TensorBoard CSV download", line=1, expected="the header Wall time,Step,Value")
    cols = {}
    for i, what in ((1, "Step"), (2, "Value")):
        values, present, bad = numeric(df[i])
        if bad is not None:
            raise LogFormatError(path, f"{what} holds {df[i].iloc[bad]!r}, not a number", line=table.line_of(bad),
                                 expected="a number")
        cols[what] = (values, present)
    (steps, s_ok), (values, v_ok) = cols["Step"], cols["Value"]
    keep = s_ok & v_ok & np.isfinite(steps)
    return steps[keep], values[keep]


def tb_downloads_to_curves(files: list[Path], run: str, source: Path, step=None, train=None, val=None,
                           parsed: dict | None = None) -> Curves:
    """One run from TensorBoard downloads of its tags (series named after the tags)."""
    cols = {}
    for f in files:
        named = tb_download_name(f)
        tag = named[1] if named else f.stem
        cols[tag] = read_tb_download(f, (parsed or {}).get(f))
    meta = {"tags": sorted(cols), "files": [f.name for f in files]}
    if step is not None:
        meta["step_ignored"] = step
    return build_curves(source, run, "tensorboard_download", cols, train=train, val=val, meta=meta)


def is_wandb_export(names: list[str]) -> bool:
    """A W&B panel export: every metric column is ``<run> - <metric>`` (after one step column)."""
    metric_cols = [n for n in names if WANDB_SEPARATOR in n]
    others = [n for n in names if WANDB_SEPARATOR not in n and norm(n) not in NOT_METRICS]
    return bool(metric_cols) and len(others) == 1


def read_wandb_export(path: Path, step=None, train=None, val=None) -> list[Curves]:
    """One Curves per run of a W&B panel export."""
    table = load_csv(path)
    names, df, notes = table.names, table.df, table.notes
    step_col = next(n for n in names if WANDB_SEPARATOR not in n and norm(n) not in NOT_METRICS)
    steps, step_present, bad = numeric(df[names.index(step_col)])
    if bad is not None:
        raise LogFormatError(path, f"column {step_col!r} holds {df[names.index(step_col)].iloc[bad]!r}, not a number",
                             line=table.line_of(bad), expected="a number")
    step_present &= np.isfinite(steps)
    by_run: dict[str, dict[str, int]] = defaultdict(dict)
    for i, name in enumerate(names):
        if WANDB_SEPARATOR not in name or name.endswith(WANDB_COMPANIONS):
            continue
        run, metric = name.rsplit(WANDB_SEPARATOR, 1)
        by_run[run.strip()][metric.strip()] = i
    runs = []
    for run, metrics in by_run.items():
        roles = assign_roles(path, list(metrics), None, train, val, default_step=False)
        cols = {}
        for metric, i in metrics.items():
            values, present, bad = numeric(df[i])
            if bad is not None:
                if metric in roles.columns.values():
                    raise LogFormatError(path, f"column {names[i]!r} holds {df[i].iloc[bad]!r}, not a number",
                                         line=table.line_of(bad), expected="a number, nan or an empty cell")
                continue
            ok = present & step_present
            cols[metric] = (steps[ok], values[ok])
        meta = {"step_column": step_col, "rows": int(len(df)), "notes": list(notes),
                "wandb_columns": {m: names[i] for m, i in metrics.items()}}
        if step is not None:
            meta["step_ignored"] = step
        runs.append(build_curves(path, run, "wandb_export", cols, roles=roles, meta=meta, train=train, val=val))
    return runs
