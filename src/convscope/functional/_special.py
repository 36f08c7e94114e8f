"""The error function on NumPy arrays, shared by ``ops.erf`` and ``F.gelu``.

SciPy's vectorised ``erf`` when SciPy is installed, else ``math.erf`` element by element (as
accurate, only slower). SciPy is imported on first use: it costs ~0.2 s of import time.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["erf", "erf_python"]

_erf_scalar = np.frompyfunc(math.erf, 1, 1)


def erf_python(a: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """``math.erf`` applied element-wise (the fallback when SciPy is missing), in chunks so
    the temporary Python-object arrays stay small whatever the input size."""
    flat = np.ascontiguousarray(a).reshape(-1)
    out = np.empty(flat.shape, a.dtype)
    for start in range(0, flat.size, chunk):
        out[start:start + chunk] = _erf_scalar(flat[start:start + chunk])
    return out.reshape(a.shape)


def erf(a: np.ndarray) -> np.ndarray:
    """``erf(a)`` in ``a``'s dtype: SciPy's when installed, else :func:`erf_python`."""
    try:
        from scipy.special import erf as scipy_erf
    except ImportError:
        return erf_python(a)
    return scipy_erf(a)
