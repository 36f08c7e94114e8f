"""The error function on NumPy arrays, shared by ``ops.erf`` and ``F.gelu``.

SciPy's vectorised ``erf`` when SciPy is installed, else ``math.erf`` element by element (as
accurate, only slower). SciPy is imported on first use: it costs ~0.2 s of import time.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import numpy as np

__all__ = ["erf", "erf_python", "scratch_bytes"]

_erf_scalar = np.frompyfunc(math.erf, 1, 1)
_CHUNK = 4096
_OBJECT_BYTES = 8 + sys.getsizeof(1.0)  # a slot of an object array and the Python float in it


def erf_python(a: np.ndarray, chunk: int = _CHUNK) -> np.ndarray:
    """``math.erf`` applied element-wise (the fallback when SciPy is missing), in chunks so
    the temporary Python-object arrays stay small whatever the input size."""
    flat = np.ascontiguousarray(a).reshape(-1)
    out = np.empty(flat.shape, a.dtype)
    for start in range(0, flat.size, chunk):
        out[start:start + chunk] = _erf_scalar(flat[start:start + chunk])
    return out.reshape(a.shape)


def _scipy_erf() -> Callable[[np.ndarray], np.ndarray] | None:
    try:
        from scipy.special import erf as scipy_erf
    except ImportError:
        return None
    return scipy_erf


def erf(a: np.ndarray) -> np.ndarray:
    """``erf(a)`` in ``a``'s dtype: SciPy's when installed, else :func:`erf_python`."""
    scipy_erf = _scipy_erf()
    return erf_python(a) if scipy_erf is None else scipy_erf(a)


def scratch_bytes(count: int) -> int:
    """Transient bytes :func:`erf` takes for ``count`` elements (``ops.erf``'s memory rule):
    none with SciPy; with the fallback, the object arrays of two chunks of Python floats (the
    last chunk's and the next's) are alive at once."""
    return 0 if _scipy_erf() is not None else min(count, 2 * _CHUNK) * _OBJECT_BYTES
