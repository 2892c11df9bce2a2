"""GroupNormalizer: one scaler per group, for long-format data whose units depend on a key column.

The seed's example: lab results in one ``value`` column, where a blood count is in thousands and
a clotting time in seconds; "I created individual normalizers for each lab type".

Policies (both configurable):

- **unseen groups** (a key at transform time that was not in the fitted data):
  ``unseen="global"`` (default) scales them with the statistics of all training rows;
  ``"error"`` raises; ``"passthrough"`` leaves their values unchanged.
- **small groups** (fewer than ``min_group_size`` training rows with a value, too few to estimate
  a scale): ``small="global"`` (default) uses the global statistics for them; ``"error"`` raises;
  ``"own"`` uses their own statistics anyway.

A group whose values are all equal gets scale 1 (its values become 0), like scikit-learn's scalers.
Missing values stay missing and are ignored when fitting.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..errors import InputError

METHODS = ("standard", "robust")
UNSEEN_POLICIES = ("global", "error", "passthrough")
SMALL_POLICIES = ("global", "error", "own")


class GroupNormalizer(TransformerMixin, BaseEstimator):
    """Standard or robust scaling of value column(s), fitted separately for each group.

    Parameters
    ----------
    group_col : column name (DataFrame) or column index (array) holding the group key.
        ``None``: every row is one group (a plain scaler).
    value_cols : the columns to scale; default: every numeric column except ``group_col``.
    method : "standard" ((x - mean) / std) or "robust" ((x - median) / IQR).
    min_group_size : groups with fewer fitted values than this follow ``small``.
    unseen, small : the policies described in the module docstring.
    quantile_range : percentiles of the IQR for ``method="robust"``.

    Works on DataFrames (returns a DataFrame, other columns untouched) and 2-D arrays (returns an
    array). Fitted attributes: ``groups_``, ``center_`` and ``scale_`` (DataFrames indexed by group,
    one column per value column), ``global_center_``, ``global_scale_``, ``counts_``,
    ``small_groups_``, ``value_cols_``, ``n_features_in_``, ``feature_names_in_`` (DataFrames).
    """

    def __init__(self, group_col: Any = None, value_cols: Any = None, method: str = "standard",
                 min_group_size: int = 10, unseen: str = "global", small: str = "global",
                 quantile_range: tuple[float, float] = (25.0, 75.0)):
        self.group_col = group_col
        self.value_cols = value_cols
        self.method = method
        self.min_group_size = min_group_size
        self.unseen = unseen
        self.small = small
        self.quantile_range = quantile_range

    # -- helpers -------------------------------------------------------------------------------
    def _validate_params(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"GroupNormalizer: method must be one of {METHODS}, got {self.method!r}")
        if self.unseen not in UNSEEN_POLICIES:
            raise InputError(f"GroupNormalizer: unseen must be one of {UNSEEN_POLICIES}, got {self.unseen!r}")
        if self.small not in SMALL_POLICIES:
            raise InputError(f"GroupNormalizer: small must be one of {SMALL_POLICIES}, got {self.small!r}")
        if int(self.min_group_size) < 1:
            raise InputError(f"GroupNormalizer: min_group_size must be >= 1, got {self.min_group_size}")

    def _frame(self, X: Any) -> tuple[pd.DataFrame, bool]:
        if isinstance(X, pd.DataFrame):
            return X, True
        if hasattr(X, "detach") and hasattr(X, "cpu"):
            X = X.detach().cpu().numpy()
        arr = np.asarray(X)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2:
            raise InputError(f"GroupNormalizer: expected a 2-D array or a DataFrame, got shape {arr.shape}")
        return pd.DataFrame(arr), False

    def _keys(self, frame: pd.DataFrame) -> pd.Series:
        if self.group_col is None:
            return pd.Series("__all__", index=frame.index)
        if self.group_col not in frame.columns:
            raise InputError(f"GroupNormalizer: group_col {self.group_col!r} is not a column; "
                             f"columns: {list(frame.columns)[:20]}")
        return frame[self.group_col].astype(str)

    def _stats(self, values: pd.DataFrame, keys: pd.Series | None) -> tuple[pd.DataFrame, pd.DataFrame]:
        grouped = values.groupby(keys) if keys is not None else None
        if self.method == "standard":
            center = grouped.mean() if grouped is not None else values.mean().to_frame().T
            scale = grouped.std(ddof=0) if grouped is not None else values.std(ddof=0).to_frame().T
        else:
            lo, hi = (q / 100.0 for q in self.quantile_range)
            center = grouped.median() if grouped is not None else values.median().to_frame().T
            upper = grouped.quantile(hi) if grouped is not None else values.quantile(hi).to_frame().T
            lower = grouped.quantile(lo) if grouped is not None else values.quantile(lo).to_frame().T
            scale = upper - lower
        scale = scale.where(scale > 0, 1.0).fillna(1.0)  # constant groups: scale 1, like sklearn
        return center, scale

    # -- scikit-learn API ------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> "GroupNormalizer":
        self._validate_params()
        frame, is_frame = self._frame(X)
        if len(frame) == 0:
            raise InputError("GroupNormalizer: cannot fit on 0 rows")
        if self.value_cols is None:
            cols = [c for c in frame.columns if c != self.group_col and pd.api.types.is_numeric_dtype(frame[c])]
        else:
            cols = list(self.value_cols) if isinstance(self.value_cols, (list, tuple, np.ndarray, pd.Index)) \
                else [self.value_cols]
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise InputError(f"GroupNormalizer: value column(s) {missing} not found; columns: {list(frame.columns)[:20]}")
        if not cols:
            raise InputError("GroupNormalizer: no numeric value column to scale")
        try:
            values = frame[cols].astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"GroupNormalizer: value columns {cols} must be numeric") from exc
        keys = self._keys(frame)
        center, scale = self._stats(values, keys)
        counts = values.notna().groupby(keys).sum()
        g_center, g_scale = self._stats(values, None)
        small = counts.min(axis=1) < int(self.min_group_size)
        if small.any() and self.small == "error":
            raise InputError(f"GroupNormalizer: group(s) {list(small[small].index)[:10]} have fewer than "
                             f"{self.min_group_size} values (small='error')")
        if self.small == "global" and small.any():
            shape = (int(small.sum()), len(cols))
            center.loc[small] = np.broadcast_to(g_center.to_numpy(), shape)
            scale.loc[small] = np.broadcast_to(g_scale.to_numpy(), shape)
        self.value_cols_ = cols
        self.groups_ = np.asarray(center.index)
        self.center_, self.scale_, self.counts_ = center, scale, counts
        self.global_center_ = g_center.iloc[0]
        self.global_scale_ = g_scale.iloc[0]
        self.small_groups_ = list(small[small].index)
        self.n_features_in_ = frame.shape[1]
        if is_frame:
            self.feature_names_in_ = np.asarray([str(c) for c in frame.columns], dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self

    def _apply(self, X: Any, inverse: bool) -> Any:
        check_is_fitted(self, "center_")
        frame, is_frame = self._frame(X)
        if frame.shape[1] != self.n_features_in_:
            raise InputError(f"GroupNormalizer: X has {frame.shape[1]} columns, fitted on {self.n_features_in_}")
        keys = self._keys(frame)
        known = keys.isin(self.center_.index)
        if not known.all() and self.unseen == "error":
            raise InputError(f"GroupNormalizer: unseen group(s) {sorted(keys[~known].unique())[:10]} (unseen='error')")
        center = self.center_.reindex(keys.to_numpy())
        scale = self.scale_.reindex(keys.to_numpy())
        if self.unseen == "global":
            center = center.fillna(self.global_center_)
            scale = scale.fillna(self.global_scale_)
        else:  # passthrough: leave unseen rows as they are
            center = center.fillna(0.0)
            scale = scale.fillna(1.0)
        values = frame[self.value_cols_].astype(np.float64).to_numpy()
        c, s = center[self.value_cols_].to_numpy(), scale[self.value_cols_].to_numpy()
        result = values * s + c if inverse else (values - c) / s
        out = frame.copy()
        if is_frame:
            for j, col in enumerate(self.value_cols_):
                out[col] = result[:, j]
            return out
        arr = out.to_numpy()
        arr = arr.astype(np.float64) if arr.dtype != object else arr
        for j, col in enumerate(self.value_cols_):
            arr[:, col] = result[:, j]
        return arr

    def transform(self, X: Any) -> Any:
        """Scale the value columns with their group's statistics (policies for unseen/small groups apply)."""
        return self._apply(X, inverse=False)

    def inverse_transform(self, X: Any) -> Any:
        """Undo ``transform``: values back in their original units."""
        return self._apply(X, inverse=True)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The output columns are the input columns (same order, value columns scaled in place)."""
        check_is_fitted(self, "center_")
        if input_features is not None:
            return np.asarray([str(f) for f in input_features], dtype=object)
        if hasattr(self, "feature_names_in_"):
            return self.feature_names_in_.copy()
        return np.asarray([f"x{i}" for i in range(self.n_features_in_)], dtype=object)
