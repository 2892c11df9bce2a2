"""Check a dataset before training: NaN/Inf, normalization, per-group units, class balance,
signal (baseline vs permutation null) and label noise (confident learning).

``check_data`` returns a Report (verdict None) with data.* findings; ``profile_data`` returns the
plain DataFacts it is built from; ``GroupNormalizer`` fits one scaler per group.
"""
from __future__ import annotations

from .facts import (BaselineFacts, ColumnFacts, DataFacts, DuplicateFacts, GroupScaleFacts, LabelNoiseFacts,
                    TargetFacts)
from .normalize import GroupNormalizer
from .profile import check_data, profile_data

__all__ = ["check_data", "profile_data", "GroupNormalizer", "DataFacts", "ColumnFacts", "TargetFacts",
           "DuplicateFacts", "GroupScaleFacts", "BaselineFacts", "LabelNoiseFacts"]
