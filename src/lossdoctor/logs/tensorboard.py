"""TensorBoard event files and run directories, read with the tensorboard package's EventAccumulator.

Each directory that holds ``events.out.tfevents.*`` files is one run (as TensorBoard shows it), with one
exception: ``SummaryWriter.add_scalars("Loss", {"train": ..., "val": ...})`` writes each curve into its
own sub-directory (``Loss_train/``, ``Loss_val/``, each holding the tag ``Loss``) beside the parent's
event file; such sub-directories are read as series of the parent's run, named after the sub-directory.
Scalars written by ``torch.utils.tensorboard.SummaryWriter.add_scalar`` (simple values) and by
``tf.summary.scalar`` (scalar tensors) are both read.

An event file is a sequence of length-prefixed records. tensorboard stops silently at a damaged or
cut-short record; lossdoctor walks the record framing too and compares, so that a file read only up
to its damage says so (``meta["damaged"]`` and a note with the number of records read).
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LogFormatError
from ..evidence import Curves
from .columns import TEST_MARKS, TRAIN_MARKS, VAL_MARKS, build_curves, norm
from .files import is_regular_file, os_problem

EVENT_FILE_MARK = "tfevents"
EXPECTED = "event files written by TensorBoard/SummaryWriter"
# A TFRecord: uint64 length, uint32 CRC of the length, the data, uint32 CRC of the data.
_RECORD_OVERHEAD = 16


def is_event_file(path: Path) -> bool:
    return EVENT_FILE_MARK in path.name and is_regular_file(path)


def event_files(folder: Path) -> list[Path]:
    """The event files directly in ``folder``, in name (= creation time) order; non-regular files left out."""
    try:
        return sorted(p for p in folder.iterdir() if EVENT_FILE_MARK in p.name and is_regular_file(p))
    except OSError as exc:
        raise LogFormatError(folder, os_problem(exc), expected=EXPECTED) from None


def count_records(path: Path) -> tuple[int, bool]:
    """The number of complete records in an event file by its framing, and whether the framing ends
    exactly at the end of the file (False: cut short or damaged)."""
    size = path.stat().st_size
    if size == 0:
        return 0, True
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        pos = n = 0
        unpack = struct.Struct("<Q").unpack_from
        while pos + 8 <= size:
            (length,) = unpack(data, pos)
            end = pos + _RECORD_OVERHEAD + length
            if end > size:
                return n, False
            pos, n = end, n + 1
        return n, pos == size


def _accumulator_class():
    from tensorboard.backend.event_processing import event_accumulator as ea

    class CountingAccumulator(ea.EventAccumulator):
        """EventAccumulator that counts the records it read (it stops silently at a damaged one)."""

        events_read = 0

        def _ProcessEvent(self, event):  # noqa: N802 - tensorboard's name
            self.events_read += 1
            super()._ProcessEvent(event)

    return CountingAccumulator


@dataclass
class Scalars:
    """The scalar series of one event file or directory, and what could not be read."""

    cols: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    damaged: list[dict] = field(default_factory=list)
    files: int = 0
    parts: list[str] = field(default_factory=list)  # sub-directories joined into this run


def _read_file(path: Path, out: Scalars) -> None:
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    try:
        framed, clean = count_records(path)
    except (OSError, ValueError) as exc:
        problem = os_problem(exc) if isinstance(exc, OSError) else str(exc)
        raise LogFormatError(path, problem, expected=EXPECTED) from None
    guidance = {ea.SCALARS: 0, ea.TENSORS: 0, ea.HISTOGRAMS: 1, ea.IMAGES: 1, ea.AUDIO: 1,
                ea.COMPRESSED_HISTOGRAMS: 1}
    acc = _accumulator_class()(str(path), size_guidance=guidance)
    try:
        acc.Reload()
    except Exception as exc:  # noqa: BLE001 - a corrupt file surfaces as many exception types
        raise LogFormatError(path, f"unreadable TensorBoard event data ({type(exc).__name__}: {exc})",
                             expected=EXPECTED) from None
    out.files += 1
    read = acc.events_read
    if read < framed or not clean:
        if read < framed:
            problem = (f"record {read + 1} of {framed} is damaged: the {framed - read} records from there on "
                       "were not read")
        else:
            problem = f"the file ends inside record {read + 1} (cut short, or still being written)"
        out.damaged.append({"file": os.fspath(path), "records_read": read, "problem": problem})
        out.notes.append(f"{path.name}: {problem}; the curves hold the {read} records before it")
    tags = acc.Tags()
    for tag in tags.get(ea.SCALARS, []):
        events = acc.Scalars(tag)
        _append(out.cols, tag, np.fromiter((e.step for e in events), np.float64, len(events)),
                np.fromiter((e.value for e in events), np.float64, len(events)))
    for tag in tags.get(ea.TENSORS, []):
        events = acc.Tensors(tag)
        try:
            values = [float(np.asarray(tensor_util.make_ndarray(e.tensor_proto)).reshape(())) for e in events]
        except (ValueError, TypeError):
            continue  # not a scalar summary (text, histogram data)
        _append(out.cols, tag, np.array([e.step for e in events], np.float64), np.array(values, np.float64))


def _append(cols: dict, tag: str, steps: np.ndarray, values: np.ndarray) -> None:
    if tag in cols:  # the same tag in a later file of the run (a resumed run): later writes win in dedupe
        old_s, old_v = cols[tag]
        steps, values = np.concatenate([old_s, steps]), np.concatenate([old_v, values])
    cols[tag] = (steps, values)


def read_scalars(path: Path) -> Scalars:
    """The scalars of an event file, or of every event file directly in a directory (in creation order)."""
    out = Scalars()
    files = [path] if path.is_file() else event_files(path)
    for f in files:
        try:
            if f.stat().st_size == 0:
                if len(files) == 1:
                    raise LogFormatError(f, "the event file is empty", expected="TensorBoard records")
                out.notes.append(f"{f.name}: an empty event file, skipped")
                continue
        except OSError as exc:
            raise LogFormatError(f, os_problem(exc), expected=EXPECTED) from None
        _read_file(f, out)
    return out


def _sanitised(tag: str) -> str:
    return tag.replace("/", "_")


def add_scalars_member(parent: Path, child: Path, scalars: Scalars) -> bool:
    """Whether ``child`` is a sub-directory that ``SummaryWriter.add_scalars`` wrote for ``parent``:
    it holds one tag T and is named ``<T with / as _>_<key>``."""
    if child.parent != parent or len(scalars.cols) != 1:
        return False
    (tag,) = scalars.cols
    prefix = _sanitised(tag) + "_"
    return child.name.startswith(prefix) and len(child.name) > len(prefix)


def is_split_dir(folder: Path) -> bool:
    """A directory named for a data split (``train``, ``validation``, ``eval``...), as Keras' TensorBoard
    callback writes them (``logs/train``, ``logs/validation``, the same tags in each)."""
    return norm(folder.name) in TRAIN_MARKS | VAL_MARKS | TEST_MARKS


def group_runs(root: Path, scalars: dict[Path, Scalars]) -> dict[Path, Scalars]:
    """The runs among event directories: one per directory, except the directories that are parts of
    a run, whose series join the parent's run: an add_scalars sub-directory's one tag under the
    sub-directory's name (``Loss_train``), a split directory's tags as ``<split>/<tag>``
    (``validation/epoch_loss``)."""
    runs: dict[Path, Scalars] = {}
    parts: dict[Path, list[tuple[Path, Scalars]]] = {}
    for folder, sc in scalars.items():
        parent = folder.parent
        if folder != root and ((parent in scalars and add_scalars_member(parent, folder, sc)) or is_split_dir(folder)):
            parts.setdefault(parent, []).append((folder, sc))
        else:
            runs[folder] = sc
    for parent, members in parts.items():
        joined = Scalars()
        own = runs.get(parent)
        if own is not None:
            joined.cols.update(own.cols)
            joined.notes += own.notes
            joined.damaged += own.damaged
        for folder, sc in members:
            if is_split_dir(folder):
                joined.cols.update({f"{folder.name}/{tag}": series for tag, series in sc.cols.items()})
            else:
                (series,) = sc.cols.values()
                joined.cols[folder.name] = series
            joined.notes += sc.notes
            joined.damaged += sc.damaged
            joined.parts.append(folder.name)
        runs[parent] = joined
    return dict(sorted(runs.items(), key=lambda kv: str(kv[0])))


def curves_from_scalars(path: Path, run: str, scalars: Scalars, step: str | None = None, train: str | None = None,
                        val: str | None = None) -> Curves:
    """One run's Curves from its scalars (its parts' series already joined by :func:`group_runs`)."""
    if not scalars.cols:
        raise LogFormatError(path, "no scalar summaries in the TensorBoard data",
                             expected="scalars such as a training loss (SummaryWriter.add_scalar)")
    meta: dict = {"tags": sorted(scalars.cols), "notes": list(scalars.notes)}
    if scalars.parts:
        meta["part_dirs"] = sorted(scalars.parts)
    if scalars.damaged:
        meta["damaged"] = list(scalars.damaged)
    if step is not None:
        meta["step_ignored"] = step
    return build_curves(path, run, "tensorboard", dict(scalars.cols), train=train, val=val, meta=meta)


def read_tensorboard(path: str | os.PathLike, step: str | None = None, train: str | None = None,
                     val: str | None = None, run: str | None = None) -> Curves:
    """One run: an event file, or a directory whose own event files are read together (with its
    add_scalars and train/validation sub-directories, when it has them)."""
    path = Path(path)
    if path.is_file():
        return curves_from_scalars(path, run or path.parent.name, read_scalars(path), step, train, val)
    scalars = {path: read_scalars(path)}
    for child in sorted(p for p in path.iterdir() if p.is_dir() and event_files(p)):
        scalars[child] = read_scalars(child)
    joined = group_runs(path, scalars)[path]
    return curves_from_scalars(path, run or path.name, joined, step, train, val)
