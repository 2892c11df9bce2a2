"""Turn what the user passes (numpy, torch tensors, pandas, a torch Dataset) into one table.

Numeric features become one 2-D array (a view where possible: a million rows are not copied),
non-numeric columns are kept apart, and ``y`` / ``groups`` may name columns of a DataFrame.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError

# Items read from a torch Dataset: each needs a __getitem__ call (often a file read and a
# transform), so a large one is sampled; 10,000 rows pin down scales and a baseline.
MAX_DATASET_ITEMS = 10_000
X_KEYS = ("x", "input", "inputs", "features", "image", "images", "pixel_values", "input_ids", "data")
Y_KEYS = ("y", "label", "labels", "target", "targets")
INPUT_KINDS = ("features", "token_ids")
# An integer matrix reads as token ids (positions x vocabulary ids, for an embedding layer) when it
# uses more distinct values than a byte holds (pixels in 0..255 stay pixels, and so do counts and
# category codes) ...
MIN_TOKEN_VOCABULARY = 256
# ... and its columns share one id space: the median column reaches at least a tenth of the largest
# id (a sequence's positions draw from the same vocabulary; a table's integer columns such as age
# and income have ranges orders of magnitude apart).
SHARED_ID_SPACE = 0.1


@dataclass
class Table:
    source: str
    numeric: np.ndarray  # (rows, numeric features), float
    names: list[str]
    y: np.ndarray | None
    groups: np.ndarray | None
    group_name: str | None
    frame: pd.DataFrame | None  # the DataFrame as given (non-numeric columns, group keys)
    categorical: dict[str, int]  # non-numeric column -> distinct values
    row_index: np.ndarray | None  # table row -> the caller's row index, when rows were sampled
    n_total: int  # rows in the caller's data
    notes: list[str] = field(default_factory=list)
    inputs: str = "features"  # features | token_ids (integer ids for an embedding, not quantities)
    vocabulary: int | None = None  # for token ids: the largest id + 1

    @property
    def n_rows(self) -> int:
        return int(self.numeric.shape[0])


def _to_numpy(obj: Any, what: str) -> np.ndarray:
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # torch tensor
        t = obj.detach().cpu()
        if str(t.dtype) in ("torch.bfloat16", "torch.float16"):
            t = t.float()
        return t.numpy()
    if isinstance(obj, (pd.Series, pd.DataFrame)):
        return obj.to_numpy()
    try:
        return np.asarray(obj)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"check_data: cannot read {what} of type {type(obj).__name__} as an array") from exc


def _is_dataset(obj: Any) -> bool:
    return (hasattr(obj, "__getitem__") and hasattr(obj, "__len__")
            and not isinstance(obj, (np.ndarray, pd.DataFrame, pd.Series, list, tuple, str, dict))
            and not (hasattr(obj, "detach") and hasattr(obj, "cpu")))


def _split_item(item: Any) -> tuple[Any, Any]:
    if isinstance(item, dict):
        x = next((item[k] for k in X_KEYS if k in item), None)
        y = next((item[k] for k in Y_KEYS if k in item), None)
        if x is None:
            raise InputError(f"check_data: dataset items are dicts without an input key; expected one of {X_KEYS}")
        return x, y
    if isinstance(item, (tuple, list)):
        if not item:
            raise InputError("check_data: dataset item is an empty tuple")
        return item[0], item[1] if len(item) > 1 else None
    return item, None


def _from_dataset(dataset: Any, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, int, list[str]]:
    n = len(dataset)
    notes = []
    if n > MAX_DATASET_ITEMS:
        idx = np.sort(rng.choice(n, MAX_DATASET_ITEMS, replace=False))
        notes.append(f"torch Dataset of {n} items: {MAX_DATASET_ITEMS} sampled at random")
    else:
        idx = np.arange(n)
    xs, ys = [], []
    for i in idx:
        x, y = _split_item(dataset[int(i)])
        xs.append(_to_numpy(x, "a dataset input").reshape(-1))
        if y is not None:
            ys.append(_to_numpy(y, "a dataset label"))
    sizes = {x.size for x in xs}
    if len(sizes) > 1:
        raise InputError(f"check_data: dataset inputs have different sizes ({sorted(sizes)[:5]}); "
                         "pad them or pass a feature matrix")
    X = np.stack(xs) if xs else np.empty((0, 0))
    y = None
    if ys:
        if len(ys) != len(xs):
            raise InputError("check_data: some dataset items have a label and some do not")
        y = np.stack([np.asarray(v).reshape(-1) for v in ys])
        y = y[:, 0] if y.shape[1] == 1 else y
    return X, y, idx if n > MAX_DATASET_ITEMS else None, n, notes


def token_vocabulary(arr: np.ndarray, inputs: str | None = None) -> int | None:
    """The vocabulary size (largest id + 1) when ``arr`` is a matrix of token ids, else None.
    ``inputs="token_ids"`` says so for any integer matrix; ``"features"`` rules it out."""
    if inputs == "features" or arr.ndim != 2 or arr.dtype.kind not in "iu" or arr.size == 0:
        return None
    column_max = arr.max(axis=0)
    largest = int(column_max.max())
    if inputs == "token_ids":
        return largest + 1
    if arr.shape[1] < 2 or int(arr.min()) < 0 or float(np.median(column_max)) < SHARED_ID_SPACE * largest:
        return None
    rows = arr[: MAX_DATASET_ITEMS]  # the distinct ids of the first rows suffice to pass a byte's 256
    return largest + 1 if np.unique(rows).size > MIN_TOKEN_VOCABULARY else None


def to_table(X: Any, y: Any = None, groups: Any = None, random_state: int = 0, inputs: str | None = None) -> Table:
    if inputs not in (None, *INPUT_KINDS):
        raise InputError(f"check_data: inputs must be one of {INPUT_KINDS} or None (inferred), got {inputs!r}")
    notes: list[str] = []
    frame = None
    categorical: dict[str, int] = {}
    row_index = None
    group_name = None
    vocabulary = None
    rng = np.random.default_rng(random_state)

    if hasattr(X, "dataset") and hasattr(X, "batch_size"):  # a DataLoader: read its dataset
        notes.append("DataLoader given: its dataset is checked (without the loader's transforms of batches)")
        X = X.dataset
    if isinstance(X, pd.Series):
        X = X.to_frame()
    if isinstance(X, pd.DataFrame):
        source = "pandas"
        frame = X
        if isinstance(y, str):
            if y not in X.columns:
                raise InputError(f"check_data: y={y!r} is not a column of X; columns: {list(X.columns)[:20]}")
            frame, y = X.drop(columns=[y]), X[y]
        if isinstance(groups, str):
            if groups not in frame.columns:
                raise InputError(f"check_data: groups={groups!r} is not a column of X; columns: {list(frame.columns)[:20]}")
            group_name, groups = groups, frame[groups]
        numeric_cols = [c for c in frame.columns if c != group_name and (
            pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))]
        other = [c for c in frame.columns if c not in numeric_cols and c != group_name]
        for c in other:
            if pd.api.types.is_datetime64_any_dtype(frame[c]) or pd.api.types.is_timedelta64_dtype(frame[c]):
                notes.append(f"column {c!r} (dates/times) not profiled")
                continue
            categorical[str(c)] = int(frame[c].nunique(dropna=True))
        block = frame[numeric_cols]
        dtypes = {np.dtype(d) if not isinstance(d, pd.api.extensions.ExtensionDtype) else np.dtype("float64")
                  for d in block.dtypes}
        dtype = np.float32 if dtypes and all(d == np.float32 for d in dtypes) else np.float64
        numeric = block.to_numpy(dtype=dtype, na_value=np.nan) if numeric_cols else np.empty((len(frame), 0))
        names = [str(c) for c in numeric_cols]
        n_total = len(frame)
    elif _is_dataset(X):
        source = "dataset"
        if y is not None:
            raise InputError("check_data: a torch Dataset carries its labels; pass y=None")
        numeric, y, row_index, n_total, ds_notes = _from_dataset(X, rng)
        notes += ds_notes
        vocabulary = token_vocabulary(numeric, inputs)
        names = [f"x{j}" for j in range(numeric.shape[1])]
    else:
        source = "torch" if hasattr(X, "detach") else "numpy"
        arr = _to_numpy(X, "X")
        if arr.dtype.names:  # a structured array: treat as a table
            return to_table(pd.DataFrame(arr), y, groups, random_state)
        if arr.ndim == 0:
            raise InputError("check_data: X is a scalar; expected rows of features")
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        elif arr.ndim > 2:
            notes.append(f"X has shape {list(arr.shape)}: each row flattened to {int(np.prod(arr.shape[1:]))} features")
            arr = arr.reshape(arr.shape[0], -1)
        if arr.dtype == object or arr.dtype.kind in "USO":
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise InputError("check_data: X holds non-numeric values; pass a DataFrame so that categorical "
                                 "columns are told apart, or encode them") from exc
        vocabulary = token_vocabulary(arr, inputs)
        if arr.dtype.kind == "b" or arr.dtype.kind in "iu" or arr.dtype == np.float16:
            arr = arr.astype(np.float32 if arr.dtype.itemsize <= 2 else np.float64)
        elif arr.dtype.kind == "c":
            raise InputError("check_data: X is complex; split it into real and imaginary features")
        numeric = arr
        names = [f"x{j}" for j in range(arr.shape[1])]
        n_total = arr.shape[0]

    n = numeric.shape[0]
    if n < 2:
        raise InputError(f"check_data: X has {n} row{'s' if n != 1 else ''}; at least 2 are needed to measure anything")
    if numeric.shape[1] == 0 and not categorical:
        raise InputError("check_data: X has no numeric or categorical columns to check")

    y_arr = None
    if y is not None:
        y_arr = _to_numpy(y, "y")
        if y_arr.ndim == 0:
            raise InputError("check_data: y is a scalar; expected one label per row")
        if y_arr.shape[0] != n and row_index is None:
            raise InputError(f"check_data: X has {n} rows but y has {y_arr.shape[0]}; they must match row for row")
        if y_arr.ndim == 2 and y_arr.shape[1] == 1:
            y_arr = y_arr[:, 0]
        elif y_arr.ndim == 2 and set(np.unique(y_arr[: min(len(y_arr), 1000)])) <= {0, 1} \
                and (y_arr.sum(axis=1) == 1).all():
            notes.append("y is one-hot: classes taken as its argmax")
            y_arr = y_arr.argmax(axis=1)
        elif y_arr.ndim >= 2:
            notes.append(f"y has shape {list(y_arr.shape)}: only its first output is checked")
            y_arr = y_arr.reshape(y_arr.shape[0], -1)[:, 0]
    g_arr = None
    if groups is not None:
        g_arr = _to_numpy(groups, "groups").reshape(-1) if not isinstance(groups, pd.Series) else groups.to_numpy()
        if g_arr.shape[0] != n:
            raise InputError(f"check_data: X has {n} rows but groups has {g_arr.shape[0]}; they must match row for row")
        group_name = group_name or (groups.name if isinstance(groups, pd.Series) and groups.name is not None else "group")
    if vocabulary is not None:
        notes.append(f"X holds token ids (integers up to {vocabulary - 1}): they index an embedding, they are not "
                     "quantities, so the input-scale checks (scales, tails, category codes) do not apply to them; "
                     "the no-signal baseline and label-noise estimate read them as a bag of tokens (the count "
                     "of each id in a row)")
    return Table(source=source, numeric=numeric, names=names, y=y_arr, groups=g_arr, group_name=str(group_name) if group_name else None,
                 frame=frame, categorical=categorical, row_index=row_index, n_total=n_total, notes=notes,
                 inputs="token_ids" if vocabulary is not None else "features", vocabulary=vocabulary)
