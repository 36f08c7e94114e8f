"""Compiled column copies of the planar path (numba), imported by :mod:`.jit` on the first call that runs one.

Not part of the API: :func:`convscope.functional.conv._planar_columns` calls this through
:func:`convscope.functional.jit.kernels` (``"columns"``) for one tile at a time, on
:func:`~convscope.functional.parallel.tile_map`'s threads (the kernel releases the GIL).

NumPy copies a tile's columns through strided views, one inner loop per (channel, tap, row):
a 7×7 stem's tile of 28 rows of 112 windows is 4,116 loops of 448 bytes, and the loop's own
overhead is as long as its copy. Here each run is one ``memcpy``; the values are the same
copies, so both give the same bits.
"""

from __future__ import annotations

from numba import njit

from ._depthwise_numba import _copy


def _compile(fn):  # noqa: ANN001, ANN202
    """``njit`` (nogil) with an on-disk cache, or without one where no cache directory is writable."""
    try:
        return njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return njit(cache=False, nogil=True)(fn)


@_compile
def planar_columns(x, first, samples, offsets, starts, width, cols):  # noqa: ANN001, ANN201
    """Fill ``cols`` ``(C, T, samples, R·width)`` (C-contiguous): for channel ``c``, tap ``t``,
    sample ``b`` and run ``k``, the ``width`` cells of ``x[first + b, c]`` ``(N, C, L)`` (flat
    planes) from ``offsets[t] + starts[k]``."""
    channels, length = x.shape[1], x.shape[2]
    src, dst = x.reshape(-1), cols.reshape(-1)
    at = 0
    for c in range(channels):
        for t in range(offsets.size):
            for b in range(samples):
                base = ((first + b) * channels + c) * length + offsets[t]
                for k in range(starts.size):
                    _copy(dst, at, src, base + starts[k], width)
                    at += width
