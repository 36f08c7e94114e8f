"""Validation of user data: one place that turns bad arrays into clear errors.

Every loader and :func:`convscope.train` pass their arrays through :func:`check_arrays`, so
wrong shapes, labels out of range and NaNs are reported with the set's name, the rule and
the numbers — never as a crash deep in NumPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ShapeError

Split = tuple[np.ndarray, np.ndarray]
"""One set of examples: inputs ``X (N, ...)`` and integer class labels ``y (N,)``."""


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0])


def check_arrays(X: Any, y: Any, *, name: str = "data", num_classes: int | None = None) -> Split:
    """Validate a classification set and return it as ``(X float, y int64)``.

    Shape:
        ``X``: ``(N, ...)`` with at least 2 dims (e.g. ``(N, C, H, W)`` images);
        ``y``: ``(N,)`` integer class labels in ``0 .. num_classes − 1``.

    Integer ``X`` becomes float32; float32/float64 ``X`` keeps its dtype (no copy).

    Raises:
        ShapeError: wrong ranks or mismatched lengths.
        ValueError: empty sets, non-integer labels, labels out of range, NaN or infinite inputs.
    """
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim < 2:
        raise ShapeError(f"expected inputs X of shape (N, ...) with at least 2 dims, got shape {X.shape}", layer=name)
    if y.ndim != 1:
        hint = " Hint: labels are class indices, not one-hot rows." if y.ndim == 2 else ""
        raise ShapeError(f"expected labels y of shape (N,), got shape {y.shape}.{hint}", layer=name)
    if X.shape[0] != y.shape[0]:
        raise ShapeError(f"X has {X.shape[0]} examples but y has {y.shape[0]} labels", layer=name)
    if X.shape[0] == 0:
        raise ValueError(f"{name}: the set is empty (0 examples)")
    if X.dtype.kind not in "fiub":
        raise ValueError(f"{name}: expected numeric inputs X, got dtype {X.dtype}")
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            hint = " Hint: y.astype(np.int64)."
        else:
            hint = ""
        raise ValueError(f"{name}: labels y must be integers, got dtype {y.dtype}.{hint}")
    if X.dtype.kind == "f":
        bad = ~np.isfinite(X)
        if bad.any():
            raise ValueError(f"{name}: inputs X contain {int(bad.sum())} NaN or infinite values "
                             f"(first in example {_first(bad)})")
    else:
        X = X.astype(np.float32)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float32)
    y = y.astype(np.int64, copy=False)
    low = int(y.min())
    high = int(y.max())
    limit = num_classes if num_classes is not None else None
    if low < 0 or (limit is not None and high >= limit):
        where = int(np.flatnonzero((y < 0) | (y >= (limit if limit is not None else np.inf)))[0])
        rule = f"0 .. {limit - 1} (the model has {limit} outputs)" if limit is not None else "0 or more"
        raise ValueError(f"{name}: labels must lie in {rule}, got {int(y[where])} at index {where}")
    return X, y
