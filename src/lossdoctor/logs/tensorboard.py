"""TensorBoard event files and run directories, read with the tensorboard package's EventAccumulator.

Each directory that holds ``events.out.tfevents.*`` files is one run (as TensorBoard shows it).
Scalars written by ``torch.utils.tensorboard.SummaryWriter.add_scalar`` (simple values) and by
``tf.summary.scalar`` (scalar tensors) are both read.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import LogFormatError
from ..evidence import Curves
from .columns import build_curves

EVENT_FILE_MARK = "tfevents"


def is_event_file(path: Path) -> bool:
    return path.is_file() and EVENT_FILE_MARK in path.name


def event_dirs(root: Path) -> list[Path]:
    """Directories under ``root`` (itself included) that hold event files, in sorted order."""
    found = {p.parent for p in root.rglob(f"*{EVENT_FILE_MARK}*") if p.is_file()}
    return sorted(found)


def read_tensorboard(path: str | os.PathLike, step: str | None = None, train: str | None = None,
                     val: str | None = None, run: str | None = None) -> Curves:
    """One run: an event file, or a directory whose own event files are read together."""
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    path = Path(path)
    if path.is_file():
        with open(path, "rb") as fh:
            if not fh.read(16):
                raise LogFormatError(path, "the event file is empty", expected="TensorBoard records")
    guidance = {ea.SCALARS: 0, ea.TENSORS: 0, ea.HISTOGRAMS: 1, ea.IMAGES: 1, ea.AUDIO: 1,
                ea.COMPRESSED_HISTOGRAMS: 1}
    acc = ea.EventAccumulator(str(path), size_guidance=guidance)
    try:
        acc.Reload()
    except Exception as exc:  # noqa: BLE001 - a corrupt file surfaces as many exception types
        raise LogFormatError(path, f"unreadable TensorBoard event data ({type(exc).__name__}: {exc})",
                             expected="event files written by TensorBoard/SummaryWriter") from None
    tags = acc.Tags()
    cols: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for tag in tags.get(ea.SCALARS, []):
        events = acc.Scalars(tag)
        cols[tag] = (np.fromiter((e.step for e in events), np.float64, len(events)),
                     np.fromiter((e.value for e in events), np.float64, len(events)))
    for tag in tags.get(ea.TENSORS, []):
        if tag in cols:
            continue
        events = acc.Tensors(tag)
        try:
            values = [float(np.asarray(tensor_util.make_ndarray(e.tensor_proto)).reshape(())) for e in events]
        except (ValueError, TypeError):
            continue  # not a scalar summary (text, histogram data)
        cols[tag] = (np.array([e.step for e in events], np.float64), np.array(values, np.float64))
    if not cols:
        raise LogFormatError(path, "no scalar summaries in the TensorBoard data",
                             expected="scalars such as a training loss (SummaryWriter.add_scalar)")
    name = run or (path.parent.name if path.is_file() else path.name)
    return build_curves(path, name, "tensorboard", cols, train=train, val=val,
                        meta={"tags": sorted(cols)} if step is None else {"tags": sorted(cols), "step_ignored": step})
