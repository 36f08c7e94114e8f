"""The window primitive shared by convolution, pooling and tracing.

A layer that slides a kernel over its input views the (already padded) input as windows,
``(N, C, *out, *kernel)``, without copying; convolution multiplies-and-sums the windows,
pooling reduces them, the tracer asks which cells a window read. The adjoint, scattering
per-window values back onto the input, loops over kernel taps (a handful of strided adds)
instead of over pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..errors import ShapeError


def ntuple(value: Any, n: int, name: str, op: str) -> tuple[int, ...]:
    """Normalise an int or a length-``n`` sequence to an ``n``-tuple of ints."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    values = tuple(value)
    if len(values) == 1 and n > 1:
        values = values * n
    if len(values) != n or not all(isinstance(v, (int, np.integer)) for v in values):
        raise ShapeError(f"{name} must be an int or {n} ints, got {value!r}", layer=op)
    return tuple(int(v) for v in values)


def as_3d(sizes: Sequence[int], fill: int = 1) -> tuple[int, int, int]:
    """Spatial sizes (or strides, or paddings with ``fill=0``) of rank 1 to 3 as 3-d, leading
    ``fill``s: the shape the compiled kernels (:mod:`.jit`) take every rank in."""
    return (fill,) * (3 - len(sizes)) + tuple(int(s) for s in sizes)  # type: ignore[return-value]


def check_input_rank(shape: tuple, nd: int, op: str, *, allow_unbatched: bool = True) -> None:
    """Require ``(N, C, *spatial)`` (or ``(C, *spatial)`` when unbatched is allowed)."""
    ranks = (nd + 1, nd + 2) if allow_unbatched else (nd + 2,)
    if len(shape) not in ranks:
        spatial = ", ".join("DHW"[3 - nd:]) if nd <= 3 else "..."
        want = f"(N, C, {spatial})" + (f" or (C, {spatial})" if allow_unbatched else "")
        raise ShapeError(f"expected a {' or '.join(map(str, ranks))}-d input {want}, got shape {shape}", layer=op)


def span(kernel: int, dilation: int) -> int:
    """Extent of a dilated kernel: ``d·(k − 1) + 1``."""
    return dilation * (kernel - 1) + 1


def window_count(length: int, kernel: int, stride: int, padding: int, dilation: int,
                 ceil_mode: bool = False) -> int:
    """Number of window positions, PyTorch's rule, including the ceil-mode drop.

    ``floor_or_ceil((L + 2p − d·(k−1) − 1) / s) + 1``; in ceil mode the last window is
    dropped when it would start inside the right padding.
    """
    reach = length + 2 * padding - span(kernel, dilation)
    out = (-(-reach // stride) if ceil_mode else reach // stride) + 1
    if ceil_mode and (out - 1) * stride >= length + padding:
        out -= 1
    return out


def sliding_windows(x: np.ndarray, kernel: Sequence[int], stride: Sequence[int],
                    dilation: Sequence[int], out: Sequence[int] | None = None) -> np.ndarray:
    """Read-only view of ``x`` ``(N, C, *L)`` as ``(N, C, *out, *kernel)`` windows.

    Window ``o`` along a dim starts at ``o·stride`` and reads every ``dilation``-th cell.
    ``out`` defaults to the number of windows that fit; the caller guarantees they fit.
    """
    nd = len(kernel)
    lead = x.shape[: x.ndim - nd]
    if out is None:
        out = [(n - span(k, d)) // s + 1 for n, k, s, d in zip(x.shape[-nd:], kernel, stride, dilation)]
    strides = x.strides
    sp = strides[-nd:]
    view_strides = strides[:-nd] + tuple(a * s for a, s in zip(sp, stride)) + tuple(a * d for a, d in zip(sp, dilation))
    return as_strided(x, lead + tuple(out) + tuple(kernel), view_strides, writeable=False)


def kernel_taps(kernel: Sequence[int]) -> list[tuple[int, ...]]:
    """All kernel offsets in scan order (last dim fastest), as torch scans windows."""
    return list(np.ndindex(*kernel))


def tap_slices(tap: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
               out: Sequence[int]) -> tuple[slice, ...]:
    """The cells that kernel offset ``tap`` reads across all windows, as slices of the
    padded input's spatial dims."""
    return tuple(slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, s, o in zip(tap, dilation, stride, out))


def clipped_taps(input: Sequence[int], kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],  # noqa: A002
                 dilation: Sequence[int], out: Sequence[int]) -> list[tuple[int, tuple[slice, ...], tuple[slice, ...]]]:
    """The windows over a padded input, tap by tap, without making the padded copy.

    Tap ``t`` of window ``o`` reads unpadded cell ``o·s − p + t·d``. Per kernel tap (scan
    index, as :func:`kernel_taps`) this gives the slice of windows whose tap lands inside
    the input and the slice of input cells they read there; windows whose tap falls in the
    padding or a ceil-mode overhang are left out, and taps that read no real cell at all
    are dropped. A reduction then runs one strided pass per tap over the real cells only.
    """
    per_dim = []
    for n, k, s, p, d, o in zip(input, kernel, stride, padding, dilation, out, strict=True):
        options: list[tuple[slice, slice] | None] = []
        for t in range(k):
            start = t * d - p
            lo, hi = max(0, -(start // s)), min(o - 1, (n - 1 - start) // s)
            options.append((slice(lo, hi + 1), slice(lo * s + start, hi * s + start + 1, s)) if lo <= hi else None)
        per_dim.append(options)
    taps = []
    for index, tap in enumerate(np.ndindex(*kernel)):
        parts = [per_dim[i][t] for i, t in enumerate(tap)]
        if all(parts):
            taps.append((index, tuple(q[0] for q in parts), tuple(q[1] for q in parts)))
    return taps


def scatter_windows(target: np.ndarray, values: Any, kernel: Sequence[int], stride: Sequence[int],
                    dilation: Sequence[int], out: Sequence[int]) -> np.ndarray:
    """Adjoint of :func:`sliding_windows`: add each window's values back onto ``target``.

    ``values(tap)`` (a callable) or ``values[..., *tap]`` gives an ``(N, C, *out)`` array
    for one kernel offset; it is added onto the cells that offset read. Loops over the
    ``∏kernel`` taps, never over pixels.
    """
    nd = len(kernel)
    lead = (slice(None),) * (target.ndim - nd)
    for tap in kernel_taps(kernel):
        part = values(tap) if callable(values) else values[(Ellipsis,) + tap]
        target[lead + tap_slices(tap, stride, dilation, out)] += part
    return target


def kernel_volume(kernel: Sequence[int]) -> int:
    return math.prod(kernel)
