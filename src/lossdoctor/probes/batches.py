"""The training data as rows the probes draw batches from, and what a batch means to the model.

A recipe's data comes in many shapes: ``(X, y)`` tensors or arrays, several input tensors and a
target, a dict of columns (``input_ids``, ``attention_mask``, ``labels``), a ``Dataset`` whose
items are tuples or dicts, a ``DataLoader`` with its own ``collate_fn`` (padding), a Hugging Face
``datasets.Dataset``. ``load_examples`` turns each into ``Examples``: ``n`` rows and
``batch(indices)``, the batch the user's loop would get for those rows. Column data is indexed
directly (fast); a list of items goes through the collate function.

A batch is split the way the common loops split it (``split_batch``): a pair ``(inputs, targets)``;
a tuple whose last element is the target; a dict whose ``labels`` (``label``, ``targets``, ...) is
the target and whose other keys are the model's keyword arguments.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from ..errors import InputError
from .usercode import describe, user_code

# A Dataset is read into memory for the probes; beyond this many rows a seeded sample is used (the
# probes run a few hundred steps of a few dozen rows, so they never see more rows than this).
MAX_MATERIALIZED_ROWS = 20_000
# Keys of a dict batch that hold the target, in the order they are looked for (Hugging Face's
# "labels" first, then the usual spellings).
TARGET_KEYS = ("labels", "label", "targets", "target", "y")
# Rows collated at a time when the whole set is read through a collate function.
CHUNK_ROWS = 256


def _is_array(value: Any) -> bool:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return True
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        return False
    return isinstance(value, (pd.DataFrame, pd.Series))


def as_tensor(value: Any, what: str) -> torch.Tensor:
    """An array-like as a tensor (numpy and pandas shared, not copied); an InputError when it is not one."""
    if isinstance(value, torch.Tensor):
        return value
    try:
        import pandas as pd

        if isinstance(value, (pd.DataFrame, pd.Series)):
            value = value.to_numpy()
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise InputError(f"{what}: an object array cannot be trained on (expected numbers)")
        return torch.from_numpy(value)
    if isinstance(value, (list, tuple)):
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{what}: cannot be turned into a tensor ({exc})") from None
        if array.dtype == object:
            raise InputError(f"{what}: its rows have different lengths or types (expected numbers of one shape)")
        return torch.as_tensor(array)
    raise InputError(f"{what}: expected a tensor or array, got {type(value).__name__}")


def map_tensors(structure: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """``fn`` applied to every tensor of a (nested) tuple/list/dict; other leaves unchanged."""
    if isinstance(structure, torch.Tensor):
        return fn(structure)
    if isinstance(structure, dict):
        return {k: map_tensors(v, fn) for k, v in structure.items()}
    if isinstance(structure, tuple) and hasattr(structure, "_fields"):  # namedtuple
        return type(structure)(*(map_tensors(v, fn) for v in structure))
    if isinstance(structure, (tuple, list)):
        return type(structure)(map_tensors(v, fn) for v in structure)
    if hasattr(structure, "items") and hasattr(structure, "keys"):  # BatchEncoding and other mappings
        return {k: map_tensors(v, fn) for k, v in structure.items()}
    return structure


def tensors_of(structure: Any) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    map_tensors(structure, lambda t: out.append(t))
    return out


def split_batch(batch: Any) -> tuple[Any, Any]:
    """``(inputs, targets)`` of a batch; targets None when the batch carries none."""
    if hasattr(batch, "items") and hasattr(batch, "keys") and not isinstance(batch, torch.Tensor):
        key = next((k for k in TARGET_KEYS if k in batch), None)
        if key is None:
            return dict(batch), None
        return {k: v for k, v in batch.items() if k != key}, batch[key]
    if isinstance(batch, (tuple, list)):
        if len(batch) == 1:
            return batch[0], None
        if len(batch) == 2:
            return batch[0], batch[1]
        return tuple(batch[:-1]), batch[-1]
    return batch, None


def input_matrix(batch: Any) -> torch.Tensor | None:
    """A batch's inputs as one (rows, features) tensor on the host, for the data checks: the input
    tensor of (X, y) data, or a dict's ``input_ids``; None for inputs that are several tensors."""
    inputs, _ = split_batch(batch)
    if isinstance(inputs, dict):
        inputs = inputs.get("input_ids", next(iter(inputs.values()), None) if len(inputs) == 1 else None)
    if not isinstance(inputs, torch.Tensor) or inputs.dim() == 0:
        return None
    inputs = inputs.detach().cpu()
    return inputs.reshape(inputs.shape[0], -1)


def call_model(model: torch.nn.Module, inputs: Any) -> Any:
    """The model on its inputs: keyword arguments for a dict, positional for a tuple of inputs."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


def loss_of(output: Any) -> Any:
    """The loss a model returned itself: ``output.loss`` (Hugging Face), ``output["loss"]``, the first
    element of a tuple when it is a scalar, or the output itself when it is a scalar."""
    loss = getattr(output, "loss", None)
    if loss is None and isinstance(output, dict):
        loss = output.get("loss")
    if loss is None and isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor) \
            and output[0].dim() == 0:
        loss = output[0]
    if loss is None and isinstance(output, torch.Tensor) and output.dim() == 0:
        loss = output
    return loss


def logits_of(output: Any) -> torch.Tensor | None:
    """The scores a model output carries (``.logits``, ``["logits"]``, the tensor itself, or the first
    non-scalar tensor of a tuple)."""
    if isinstance(output, torch.Tensor):
        return output if output.dim() > 0 else None
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, dict):
        logits = output.get("logits")
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)):
        return next((t for t in output if isinstance(t, torch.Tensor) and t.dim() > 0), None)
    return None


@dataclass
class Examples:
    """``n`` rows; ``batch(idx)`` is the batch of those rows, as the user's loop would receive it."""

    n: int
    columns: Any = None  # a tuple or dict of tensors with n rows each (indexed directly), or ...
    items: Sequence[Any] | None = None  # ... the items, batched by ``collate``
    collate: Callable[[list], Any] | None = None

    def batch(self, idx: torch.Tensor | Sequence[int]) -> Any:
        if self.columns is not None:
            index = idx if isinstance(idx, torch.Tensor) else torch.as_tensor(list(idx), dtype=torch.long)
            return map_tensors(self.columns, lambda t: t[index])
        rows = [self.items[int(i)] for i in idx]
        with user_code("the collate function", "expected it to turn a list of items into one batch"):
            return self.collate(rows)

    def chunks(self, rows: int = CHUNK_ROWS):
        """The whole set, batch by batch (for statistics over every row)."""
        for start in range(0, self.n, rows):
            yield self.batch(torch.arange(start, min(start + rows, self.n)))


def _columns(data: Any, what: str) -> Any:
    """(X, y), (X1, X2, y) or {name: column} of arrays -> a tuple/dict of tensors; None otherwise."""
    if isinstance(data, dict) and data and all(_is_array(v) or isinstance(v, list) for v in data.values()):
        return {k: as_tensor(v, f"{what}[{k!r}]") for k, v in data.items()}
    if isinstance(data, (tuple, list)) and not isinstance(data, torch.utils.data.Dataset) and data:
        if all(_is_array(v) for v in data) or (len(data) == 2 and all(isinstance(v, list) for v in data)):
            names = ("X", "y") if len(data) == 2 else tuple(f"[{i}]" for i in range(len(data)))
            return tuple(as_tensor(v, f"{what}[{i}] ({names[i] if i < len(names) else i})")
                         for i, v in enumerate(data))
    return None


def _check_rows(columns: Any, what: str) -> int:
    tensors = tensors_of(columns)
    if not tensors:
        raise InputError(f"{what}: holds no tensors or arrays")
    scalars = [t for t in tensors if t.dim() == 0]
    if scalars:
        raise InputError(f"{what}: a column is a single number, not one value per row")
    lengths = [int(t.shape[0]) for t in tensors]
    if len(set(lengths)) > 1:
        if isinstance(columns, tuple) and len(columns) == 2:
            raise InputError(f"{what}: X has {lengths[0]} rows but y has {lengths[1]}")
        raise InputError(f"{what}: its columns have different numbers of rows ({', '.join(map(str, lengths))})")
    return lengths[0]


def _read_items(data: Any, what: str, notes: list[str]) -> list[Any]:
    try:
        n = len(data)
    except TypeError:
        raise InputError(f"{what}: an iterable Dataset without len() cannot be probed; "
                         "pass (X, y) tensors or a map-style Dataset") from None
    idx = np.arange(n)
    if n > MAX_MATERIALIZED_ROWS:
        idx = np.sort(np.random.default_rng(0).choice(n, MAX_MATERIALIZED_ROWS, replace=False))
        notes.append(f"{what}: {n} rows, probes use a seeded sample of {MAX_MATERIALIZED_ROWS}")
    items = []
    for i in idx:
        with user_code(f"{what}: {type(data).__name__}[{int(i)}]",
                       "expected every index below len() to return an item"):
            items.append(data[int(i)])
    return items


def _hf_dataset(data: Any) -> bool:
    """A Hugging Face ``datasets.Dataset`` (recognised without importing ``datasets``)."""
    return type(data).__module__.startswith("datasets.") and hasattr(data, "with_format") \
        and hasattr(data, "column_names")


def load_examples(data: Any, what: str) -> tuple[Examples, int | None, list[str]]:
    """Any supported form of training data -> (Examples, the loader's batch size or None, notes)."""
    notes: list[str] = []
    batch_size = None
    collate = None
    if isinstance(data, torch.utils.data.DataLoader):
        batch_size = data.batch_size
        if data.collate_fn is not default_collate and data.collate_fn is not None:
            collate = data.collate_fn
        data = data.dataset
    if _hf_dataset(data):
        numeric = [c for c, f in data.features.items()
                   if getattr(f, "dtype", None) not in ("string", "large_string")] if hasattr(data, "features") \
            else data.column_names
        data = data.with_format("torch", columns=numeric)
    columns = _columns(data, what)
    if columns is None and isinstance(data, torch.utils.data.TensorDataset):
        columns = tuple(data.tensors)
    if columns is not None and collate is None:
        return Examples(n=_check_rows(columns, what), columns=columns), batch_size, notes
    if columns is not None:  # a collate_fn over column data: batch the rows through it
        n = _check_rows(columns, what)
        items = [map_tensors(columns, lambda t, i=i: t[i]) for i in range(n)]
        return Examples(n=n, items=items, collate=collate), batch_size, notes
    if not isinstance(data, torch.utils.data.Dataset) and not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise InputError(f"{what}: expected (X, y) tensors or arrays, a dict of columns, a Dataset or a DataLoader, "
                         f"got {type(data).__name__}")
    items = _read_items(data, what, notes)
    if len(items) < 2:
        raise InputError(f"{what}: needs at least 2 rows, got {len(items)}")
    if collate is not None:
        return Examples(n=len(items), items=items, collate=collate), batch_size, notes
    try:
        stacked = default_collate(items)
    except Exception as exc:  # noqa: BLE001 - ragged or odd items: say which, and what would batch them
        raise InputError(f"{what}: its items cannot be batched by torch's default_collate ({describe(exc)}); "
                         f"{_ragged_hint(items)}pass a DataLoader with a collate_fn that pads or stacks them") from None
    if tensors_of(stacked) and all(isinstance(t, torch.Tensor) for t in _leaves(stacked)):
        return Examples(n=_check_rows(stacked, what), columns=stacked), batch_size, notes
    # strings or other non-tensor fields: batch them as default_collate would, a few rows at a time
    return Examples(n=len(items), items=items, collate=default_collate), batch_size, notes


def _leaves(structure: Any) -> list[Any]:
    if isinstance(structure, dict):
        return [leaf for v in structure.values() for leaf in _leaves(v)]
    if isinstance(structure, (tuple, list)) and not isinstance(structure, torch.Tensor):
        return [leaf for v in structure for leaf in _leaves(v)]
    return [structure]


def _ragged_hint(items: list[Any]) -> str:
    """'item 0 has shape [64], item 17 has [63]; ' for the first field whose shape differs."""
    def shapes(item: Any) -> list[tuple]:
        return [tuple(torch.as_tensor(leaf).shape) if isinstance(leaf, (torch.Tensor, np.ndarray)) else ()
                for leaf in _leaves(item)]

    try:
        first = shapes(items[0])
        for i, item in enumerate(items[1:], start=1):
            other = shapes(item)
            if len(other) != len(first):
                return f"item 0 has {len(first)} fields, item {i} has {len(other)}; "
            for field, (a, b) in enumerate(zip(first, other)):
                if a != b:
                    return f"field {field} of item 0 has shape {list(a)}, of item {i} {list(b)}; "
    except Exception:  # noqa: BLE001 - the hint is a courtesy
        return ""
    return ""
