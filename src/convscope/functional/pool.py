"""Pooling: max, average, LP, adaptive and max-unpooling over 1 to 3 spatial dims.

Max and average pooling share one path: a pure shape rule (:func:`pool_output_shape`)
gives the window geometry, and the input is read as windows with
:func:`~convscope.functional.windows.clipped_taps`, tap by tap over the real cells only
(padding and the ceil-mode overhang are never materialised); max scans the kernel taps,
average sums them. Average pooling's backward adds each window's share back, one strided add
per kernel tap. Max pooling records each window's winning cell as it scans (a small offset
from the window's first cell, not torch's int64 index) and its backward adds the gradients
at those cells in torch's order (:func:`_scatter_to_winners`).

Both run block by block over the ``N·C`` planes (each block's tap passes in cache, blocks
shared out over the threads, :mod:`.parallel`). With numba (:mod:`.jit`), max pooling's
backward and average pooling (forward and backward) run compiled loops over the blocks
instead (:mod:`._pool_numba`, 1.5-2× faster), which sum every cell in torch's order: float32
results are torch's bits.

Adaptive pools use bins ``[floor(i·In/Out), ceil((i+1)·In/Out))`` per dim. Bins that split
the input evenly are the windows of a max/avg pool (few cells) or one reduction over a
reshaped view (many cells); other bins reduce with ``ufunc.reduceat`` over an index table
(average) or one output cell at a time (max). LP pooling is composed, exactly as torch
composes it, from average pooling and element-wise ops.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ShapeError
from ..ops import abs as _abs
from ..ops import array_sign, kernel_dtype, unary
from ..rules import (
    FREE,
    Constraint,
    Cost,
    Field,
    Saved,
    SizeRule,
    Sizes,
    at_least,
    check,
    const,
    cost_rule,
    field_rule,
    nbytes,
    numel,
    per_element,
    same_field,
    saved_rule,
    size_rule,
)
from ..tensor import Tensor, int64, is_grad_enabled, make_result
from . import jit
from .parallel import Scratch, block_step, even_blocks, in_flight, matmul, thread_count, tile_map
from .windows import as_3d, check_input_rank, clipped_taps, ntuple, scatter_windows, span, window_count

__all__ = [
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "adaptive_output_shape",
    "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "lp_pool1d", "lp_pool2d", "lp_pool3d",
    "max_pool1d", "max_pool2d", "max_pool3d",
    "max_unpool1d", "max_unpool2d", "max_unpool3d",
    "PoolGeometry", "pool_geometry", "pool_output_shape", "unpool_output_shape",
]

Size = int | Sequence[int]


# --- shape rules ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _PoolSpec:
    """What differs between the pooling ops: spatial rank and torch's extra input check."""

    nd: int
    kernel_within_input: bool = False  # avg_pool3d (and so lp_pool3d) wants input >= kernel before padding


_POOL_SPECS: dict[str, _PoolSpec] = {
    **{f"max_pool{n}d": _PoolSpec(n) for n in (1, 2, 3)},
    **{f"avg_pool{n}d": _PoolSpec(n, kernel_within_input=n == 3) for n in (1, 2, 3)},
    **{f"lp_pool{n}d": _PoolSpec(n, kernel_within_input=n == 3) for n in (1, 2, 3)},
}
_ADAPTIVE_RANK = {f"adaptive_{kind}_pool{n}d": n for kind in ("avg", "max") for n in (1, 2, 3)}
_UNPOOL_RANK = {f"max_unpool{n}d": n for n in (1, 2, 3)}


def _spec(table: dict, op: str) -> Any:
    if op not in table:
        raise ValueError(f"unknown op {op!r}; expected one of {sorted(table)}")
    return table[op]


def _check_nonempty(shape: tuple, nd: int, op: str) -> None:
    """torch allows an empty batch, but no empty channel or spatial dim."""
    inner = shape[-nd - 1:]
    if 0 in inner:
        raise ShapeError(f"expected non-empty channel and spatial dims, got shape {shape}", layer=op)


def _dims(values: Sequence[int], nd: int) -> str:
    return str(values[0]) if nd == 1 else str(tuple(values))


@dataclass(frozen=True)
class PoolGeometry:
    """Window geometry of a max/avg pool over the last ``nd`` dims, per spatial dim.

    ``extra`` counts the cells past the right padding that the last ceil-mode window
    overhangs; the kernels pad them with the reduction's neutral value.
    """

    input: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    out: tuple[int, ...]
    extra: tuple[int, ...]

    @property
    def padded(self) -> tuple[int, ...]:
        """Spatial size of the padded input the windows are read from."""
        return tuple(n + 2 * p + e for n, p, e in zip(self.input, self.padding, self.extra, strict=True))

    def window_starts(self, dim: int) -> np.ndarray:
        """First cell of every window along ``dim``, in unpadded coordinates (may be < 0)."""
        return np.arange(self.out[dim]) * self.stride[dim] - self.padding[dim]


def pool_geometry(input_shape: Sequence[int], kernel_size: Size, stride: Size | None = None, padding: Size = 0,
                  dilation: Size = 1, ceil_mode: bool = False, *, op: str = "max_pool2d") -> PoolGeometry:
    """Validate a max/avg/LP pool configuration and return its :class:`PoolGeometry`.

    ``op`` is the torch name (``"max_pool2d"``, ``"avg_pool3d"``, ``"lp_pool1d"`` ...); it
    fixes the spatial rank and names the layer in the :class:`ShapeError`. ``stride`` of
    ``None`` (or empty) means the kernel size. Unlike the reference notes (effective kernel),
    torch limits ``padding`` to ``kernel_size // 2`` whatever the dilation; so does this rule.
    """
    spec = _spec(_POOL_SPECS, op)
    nd = spec.nd
    shape = tuple(int(s) for s in input_shape)
    kernel = ntuple(kernel_size, nd, "kernel_size", op)
    default_stride = stride is None or (not isinstance(stride, (int, np.integer)) and len(stride) == 0)
    stride_t = kernel if default_stride else ntuple(stride, nd, "stride", op)
    pad = ntuple(padding, nd, "padding", op)
    dil = ntuple(dilation, nd, "dilation", op)
    for name, values in (("kernel_size", kernel), ("stride", stride_t), ("dilation", dil)):
        if min(values) <= 0:
            raise ShapeError(f"{name} must be positive, got {_dims(values, nd)}", layer=op)
    if min(pad) < 0:
        raise ShapeError(f"padding must be non-negative, got {_dims(pad, nd)}", layer=op)
    for k, p in zip(kernel, pad, strict=True):
        if p > k // 2:
            raise ShapeError(f"padding must be at most half the kernel: kernel {k} allows padding {k // 2}, got {p}",
                             layer=op)
    check_input_rank(shape, nd, op)
    _check_nonempty(shape, nd, op)
    spatial = shape[-nd:]
    out, extra = [], []
    for i, (n, k, s, p, d) in enumerate(zip(spatial, kernel, stride_t, pad, dil, strict=True)):
        where = f" in dim {i}" if nd > 1 else ""
        if spec.kernel_within_input and n < k:
            raise ShapeError(f"input {n} is smaller than kernel {k}{where}; {op} needs input >= kernel before padding",
                             layer=op)
        o = window_count(n, k, s, p, d, ceil_mode)
        if o < 1:
            reach = f"kernel {k}" if d == 1 else f"kernel {k} with dilation {d} (span {span(k, d)})"
            raise ShapeError(f"{reach} spans more than padded input {n + 2 * p}{where}", layer=op)
        out.append(o)
        extra.append(max(0, (o - 1) * s + span(k, d) - (n + 2 * p)))
    return PoolGeometry(spatial, kernel, stride_t, pad, dil, tuple(out), tuple(extra))


def pool_output_shape(input_shape: Sequence[int], kernel_size: Size, stride: Size | None = None, padding: Size = 0,
                      dilation: Size = 1, ceil_mode: bool = False, *, op: str = "max_pool2d") -> tuple[int, ...]:
    """Output shape of a max/avg/LP pool (the analyzer's and meta tensors' rule).

    ``L_out = floor_or_ceil((L + 2p − d·(k−1) − 1) / s) + 1``, minus the ceil-mode window
    that would start in the right padding. Raises :class:`ShapeError` as the op would.

    >>> pool_output_shape((1, 3, 7, 7), 3, 2, 1, ceil_mode=True, op="max_pool2d")
    (1, 3, 4, 4)
    """
    geometry = pool_geometry(input_shape, kernel_size, stride, padding, dilation, ceil_mode, op=op)
    return tuple(input_shape[: len(input_shape) - len(geometry.out)]) + geometry.out


def _output_size(output_size: Any, shape: tuple, nd: int, op: str) -> tuple[int, ...]:
    """Normalise an adaptive ``output_size``: int or ``nd`` entries, ``None`` keeps the input size."""
    sizes = (output_size,) * nd if isinstance(output_size, (int, np.integer)) else tuple(output_size)
    if len(sizes) != nd:
        raise ShapeError(f"output_size must have {nd} entries, got {len(sizes)} ({output_size!r})", layer=op)
    resolved = []
    for size, n in zip(sizes, shape[-nd:], strict=True):
        if size is None:
            resolved.append(n)
        elif not isinstance(size, (int, np.integer)):
            raise ShapeError(f"output_size entries must be ints or None, got {output_size!r}", layer=op)
        elif size < 0:
            raise ShapeError(f"output_size entries must be >= 0, got {output_size!r}", layer=op)
        else:
            resolved.append(int(size))
    return tuple(resolved)


def adaptive_output_shape(input_shape: Sequence[int], output_size: Any, *,
                          op: str = "adaptive_avg_pool2d") -> tuple[int, ...]:
    """Output shape of an adaptive pool: the leading dims, then ``output_size`` (``None``
    entries keep the input size). Raises :class:`ShapeError` as the op would.

    >>> adaptive_output_shape((2, 8, 9, 10), (3, None), op="adaptive_max_pool2d")
    (2, 8, 3, 10)
    """
    nd = _spec(_ADAPTIVE_RANK, op)
    shape = tuple(int(s) for s in input_shape)
    check_input_rank(shape, nd, op)
    _check_nonempty(shape, nd, op)
    return shape[:-nd] + _output_size(output_size, shape, nd, op)


def unpool_output_shape(input_shape: Sequence[int], indices_shape: Sequence[int], kernel_size: Size,
                        stride: Size | None = None, padding: Size = 0, output_size: Sequence[int] | None = None, *,
                        op: str = "max_unpool2d") -> tuple[int, ...]:
    """Output shape of a max-unpool.

    The default spatial size is ``(L − 1)·s + k − 2p``, the input size of the max pool
    that could have produced ``input``; an explicit ``output_size`` (``nd`` or ``nd + 2``
    entries) must lie strictly within one stride of it.
    """
    nd = _spec(_UNPOOL_RANK, op)
    shape = tuple(int(s) for s in input_shape)
    check_input_rank(shape, nd, op)
    if tuple(indices_shape) != shape:
        raise ShapeError(f"indices must have the input's shape {shape}, got {tuple(indices_shape)}", layer=op)
    kernel = ntuple(kernel_size, nd, "kernel_size", op)
    stride_t = kernel if stride is None else ntuple(stride, nd, "stride", op)
    pad = ntuple(padding, nd, "padding", op)
    for name, values in (("kernel_size", kernel), ("stride", stride_t)):
        if min(values) <= 0:
            raise ShapeError(f"{name} must be positive, got {_dims(values, nd)}", layer=op)
    default = tuple((n - 1) * s + k - 2 * p for n, s, k, p in zip(shape[-nd:], stride_t, kernel, pad, strict=True))
    if output_size is None:
        sizes = default
    else:
        if isinstance(output_size, (int, np.integer)):
            raise ShapeError(f"output_size must be a sequence of {nd} or {nd + 2} ints, got {output_size!r}",
                             layer=op)
        sizes = tuple(int(v) for v in output_size)
        if len(sizes) == nd + 2:
            sizes = sizes[2:]
        if len(sizes) != nd:
            raise ShapeError(f"output_size must have {nd} or {nd + 2} entries, got {len(sizes)}", layer=op)
        for i, (o, d, s) in enumerate(zip(sizes, default, stride_t, strict=True)):
            if not d - s < o < d + s:
                raise ShapeError(f"output_size {sizes} out of range: dim {i} must be strictly between "
                                 f"{d - s} and {d + s} (default {d} ± stride {s})", layer=op)
    if min(sizes) < 0:
        raise ShapeError(f"output size {sizes} is negative (kernel {kernel}, stride {stride_t}, padding {pad})",
                         layer=op)
    return shape[:-nd] + sizes


# --- max and average pooling: one window path ---------------------------------------------
def _taps(geo: PoolGeometry) -> list[tuple[int, tuple[slice, ...], tuple[slice, ...]]]:
    """Per kernel tap, the windows it reaches inside the input and the cells it reads there;
    padding and the ceil-mode overhang are skipped, never materialised."""
    return clipped_taps(geo.input, geo.kernel, geo.stride, geo.padding, geo.dilation, geo.out)


def _tap_reads(xd: np.ndarray, geo: PoolGeometry, taps: list, phases: bool = True
               ) -> list[tuple[int, tuple[slice, ...], np.ndarray]]:
    """Per tap: its scan index, its windows and the input cells it reads, as views.

    With a stride ``s > 1`` along the last dim every tap would read every ``s``-th element,
    which NumPy cannot vectorise; unless ``phases`` is off, the last dim is split once into
    ``s`` contiguous phase copies (``x[..., r::s]``) so that each tap reads unit-stride rows
    (≈ 2× faster per tap at 3×3/2, for one extra pass over the input).
    """
    step = geo.stride[-1]
    if step == 1 or not phases:
        return [(t, windows, xd[(Ellipsis,) + cells]) for t, windows, cells in taps]
    phases = [np.ascontiguousarray(xd[..., r::step]) for r in range(min(step, xd.shape[-1]))]
    return [(t, windows, _in_phase(phases, cells, step)) for t, windows, cells in taps]


def _in_phase(phases: list[np.ndarray], cells: tuple[slice, ...], step: int) -> np.ndarray:
    """The view of ``cells`` (last-dim step ``step``) in the phase copies ``x[..., r::step]``."""
    last = cells[-1]
    first, count = last.start // step, len(range(last.start, last.stop, step))
    return phases[last.start % step][(Ellipsis,) + cells[:-1] + (slice(first, first + count),)]


def _scatter_to_input(values: Any, geo: PoolGeometry, lead: tuple, dtype: np.dtype) -> np.ndarray:
    """Adjoint of the window view: scatter per-tap window values, then drop the padding."""
    grad = np.zeros(lead + geo.padded, dtype)
    scatter_windows(grad, values, geo.kernel, geo.stride, geo.dilation, geo.out)
    inner = tuple(slice(p, p + n) for p, n in zip(geo.padding, geo.input, strict=True))
    return grad[(Ellipsis,) + inner]


def _first_real_tap(geo: PoolGeometry) -> np.ndarray:
    """Per window, the scan index of its first tap at or past the input's start.

    torch starts each window's running max there (value −∞), so a window of −∞ reports
    that cell. Broadcastable over the output's spatial dims.
    """
    nd = len(geo.kernel)
    tap = np.zeros((1,) * nd, np.int64)
    for i in range(nd):
        first = -(np.minimum(geo.window_starts(i), 0) // geo.dilation[i])  # ceil(cells in the padding / d)
        tap = tap * geo.kernel[i] + first.reshape((-1,) + (1,) * (nd - 1 - i))
    return tap


def _flat_offsets(geo: PoolGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Flat offsets in the unpadded input plane: of every kernel tap (by scan index) from its
    window's first cell, ``(∏kernel,)``, and of every window's first cell, ``out`` (negative
    in the padding). Tap ``t`` of a window reads cell ``starts + taps[t]``."""
    nd = len(geo.kernel)
    pitch = [math.prod(geo.input[i + 1:]) for i in range(nd)]
    taps = np.zeros((1,) * nd, np.intp)
    starts = np.zeros((1,) * nd, np.intp)
    for i in range(nd):
        shape = (-1,) + (1,) * (nd - 1 - i)
        taps = taps + (np.arange(geo.kernel[i]) * geo.dilation[i] * pitch[i]).reshape(shape)
        starts = starts + (geo.window_starts(i) * pitch[i]).reshape(shape)
    return taps.ravel(), starts


def _offset_type(kernel: Sequence[int], dilation: Sequence[int], input_size: Sequence[int]) -> np.dtype:
    """The smallest unsigned type that holds a window's largest tap offset (:func:`_flat_offsets`)."""
    pitch = [math.prod(input_size[i + 1:]) for i in range(len(kernel))]
    return np.min_scalar_type(sum((k - 1) * d * q for k, d, q in zip(kernel, dilation, pitch, strict=True)))


def _plane_index(winner: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """Winning offsets -> int64 flat indices into the unpadded input plane (torch's indices)."""
    return _flat_offsets(geo)[1] + winner.astype(np.int64)


def _lowest(dtype: np.dtype) -> Any:
    """The value no cell is below: −∞, or an integer type's minimum (the padding of a max pool)."""
    return np.iinfo(dtype).min if np.issubdtype(dtype, np.integer) else -np.inf


def _max_values(xd: np.ndarray, geo: PoolGeometry, taps: list, best: np.ndarray, phases: bool = True) -> np.ndarray:
    """Max over each window into ``best``: one in-place ``np.maximum`` per tap over the real
    cells (padding is −∞, or an integer type's minimum, and never wins; a NaN anywhere in a
    window makes it NaN, as in torch)."""
    best.fill(_lowest(best.dtype))
    for _, windows, cells in _tap_reads(xd, geo, taps, phases):
        view = best[(Ellipsis,) + windows]
        np.maximum(view, cells, out=view)
    return best


def _max_and_winner(xd: np.ndarray, geo: PoolGeometry, taps: list, best: np.ndarray, winner: np.ndarray,
                    phases: bool = True) -> None:
    """Max over each window into ``best`` and the flat offset of its winning cell from the
    window's first cell (:func:`_flat_offsets`) into ``winner``, in one scan with torch's rule:
    a tap wins when it is greater than the running max (ties keep the first), a window of −∞
    keeps its first real cell, and a window holding NaN reports its last NaN.

    The real cells of a window come in increasing flat order, so "tap ``t`` beats the running
    max" is ``winner = max(winner, offset_t·greater)``: two narrow integer passes instead of a
    masked copy (6 µs against 160 µs for ``np.copyto(where=)`` over 63k windows, a random mask).
    """
    offsets = _flat_offsets(geo)[0]
    best.fill(_lowest(best.dtype))
    # kept by a window of −∞ (or without real cells: torch's index, which its backward never uses)
    winner[...] = offsets[_first_real_tap(geo)]
    greater, beaten = np.empty(best.shape, bool), np.empty(best.shape, winner.dtype)
    reads = _tap_reads(xd, geo, taps, phases)
    for t, windows, cells in reads:
        at = (Ellipsis,) + windows
        view, won = best[at], winner[at]
        np.greater(cells, view, out=greater[at])
        np.maximum(view, cells, out=view)
        np.maximum(won, np.multiply(greater[at], winner.dtype.type(offsets[t]), out=beaten[at]), out=won)
    if np.isnan(best).any():  # once NaN, the running max beats nothing: the last NaN wins instead
        for t, windows, cells in reads:
            np.copyto(winner[(Ellipsis,) + windows], winner.dtype.type(offsets[t]), where=np.isnan(cells))


def _scatter_to_winners(g: np.ndarray, winner: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """Adjoint of the max: each window's gradient added onto its winning cell.

    ``g`` and ``winner`` (:func:`_max_and_winner`) are ``(planes, *out)``; returns
    ``(planes, ∏input)``. The gradients add at the winners in output raster order, torch's
    order, so windows that pick the same cell sum exactly as in torch. A window without real
    cells sends nothing. Block by block of planes: compiled (:mod:`.jit`), one loop over the
    windows (3×3/2 over 8×64×112² on one thread: 2.6 ms); else one ``np.add.at`` (4 ms,
    against 19 ms for a masked add per tap into phase planes), or for windows that share no
    cell one fancy write (10% faster).
    """
    planes, plane = winner.shape[0], math.prod(geo.input)
    blocks = _plane_blocks(planes, plane)
    gp = g.reshape(winner.shape)
    grad = np.empty((planes, plane), g.dtype)
    reached = _reaches_input(geo)
    kernels = jit.kernels_for(g.dtype, "pool")
    if kernels is not None:
        windows = (planes, math.prod(geo.out))
        starts = _flat_offsets(geo)[1].reshape(-1)
        sends = np.ones(windows[1], bool) if reached is None else np.ascontiguousarray(reached).reshape(-1)
        values, won = np.ascontiguousarray(gp).reshape(windows), winner.reshape(windows)
        tile_map(lambda b: kernels.scatter_winners(values, won, starts, sends, grad, b.start, b.stop), blocks)
        return grad
    # each window's first cell in a block of planes (read-only, shared by the threads)
    longest = max((b.stop - b.start for b in blocks), default=0)
    starts = _flat_offsets(geo)[1] + (np.arange(longest) * plane).reshape((-1,) + (1,) * len(geo.out))
    disjoint = reached is None and all(s >= span(k, d) for k, s, d in
                                       zip(geo.kernel, geo.stride, geo.dilation, strict=True))
    scratch = Scratch()

    def block(b: slice) -> None:
        won = winner[b]
        index = np.add(starts[: won.shape[0]], won, out=scratch.take("index", won.shape, np.intp))
        values = gp[b]
        if reached is not None:
            index[:, ~reached] = 0  # any cell of the block: the value sent is 0
            values = values * reached
        target = grad[b].reshape(-1)
        target.fill(0)
        if disjoint:
            target[index.reshape(-1)] = values.reshape(-1)
        else:
            np.add.at(target, index.reshape(-1), values.reshape(-1))

    tile_map(block, blocks)
    return grad


def _reaches_input(geo: PoolGeometry) -> np.ndarray | None:
    """Which windows read at least one real cell (``out``, bool), or None when all do (as
    without dilation: padding ≤ k // 2 and the ceil-mode drop rule keep a real cell in each)."""
    if all(d == 1 for d in geo.dilation):
        return None
    nd = len(geo.kernel)
    reached = np.ones((1,) * nd, bool)
    for i, (n, k, d) in enumerate(zip(geo.input, geo.kernel, geo.dilation, strict=True)):
        cells = geo.window_starts(i)[:, None] + np.arange(k) * d
        reached = reached & ((cells >= 0) & (cells < n)).any(axis=1).reshape((-1,) + (1,) * (nd - 1 - i))
    return None if reached.all() else np.broadcast_to(reached, geo.out)


def _scatter_taps(part: Any, geo: PoolGeometry, taps: list, grad: np.ndarray) -> np.ndarray:
    """Adjoint of the tap reads: ``grad`` set to the sum of ``part(t, windows)`` over the cells
    tap ``t`` read.

    As in the forward, the sums run in contiguous phase planes of the last dim (interleaved
    once at the end). Padding cells are never written; a window reached by no tap (without
    real cells) sends nothing.
    """
    shape = grad.shape
    step = min(geo.stride[-1], shape[-1])
    if step == 1:
        grad.fill(0)
        phases = [grad]
    else:
        phases = [np.zeros(shape[:-1] + (len(range(r, shape[-1], step)),), grad.dtype) for r in range(step)]
    for t, windows, cells in taps:
        target = _in_phase(phases, cells, step)
        np.add(target, part(t, (Ellipsis,) + windows), out=target)
    if step > 1:
        for r, phase in enumerate(phases):
            grad[..., r::step] = phase
    return grad


# Input elements per block of planes (N·C) in the max/avg pool kernels: a block's tap passes
# then run in cache, and blocks are shared out over the threads.
_POOL_BLOCK_ELEMENTS = 1 << 18


def _plane_blocks(planes: int, plane_size: int) -> list[slice]:
    """Blocks of the ``planes`` (N·C) planes of ``plane_size`` input cells, of about
    ``_POOL_BLOCK_ELEMENTS`` cells, as many for each thread (:func:`.parallel.even_blocks`)."""
    return even_blocks(planes, plane_size, _POOL_BLOCK_ELEMENTS, thread_count())


def _by_planes(work: Callable[[slice], None], planes: int, plane_size: int) -> None:
    """Run ``work`` over the blocks of :func:`_plane_blocks`, shared out over the threads."""
    tile_map(work, _plane_blocks(planes, plane_size))


# --- the compiled kernels (:mod:`.jit`) ---
def _window_args(geo: PoolGeometry) -> tuple[tuple[int, ...], ...]:
    """The windows as the compiled kernels take them: kernel, stride, padding and the padded
    plane's size (with the ceil-mode overhang), 3-d. A dim with a single window is never
    stepped along, so it is given stride 1: the kernels keep one row buffer per stride phase
    (``avg_pool2d(x, 3, 10**9)`` asked for 10⁹ of them)."""
    stride = tuple(s if o > 1 else 1 for s, o in zip(geo.stride, geo.out, strict=True))
    return as_3d(geo.kernel), as_3d(stride), as_3d(geo.padding, 0), as_3d(geo.padded)


def _divisor_grid(divisor: Any, geo: PoolGeometry, dtype: np.dtype) -> np.ndarray:
    """A window sum's divisor (a scalar or per window) as a C-contiguous 3-d ``out`` grid."""
    return np.ascontiguousarray(np.broadcast_to(np.asarray(divisor, dtype), geo.out)).reshape(as_3d(geo.out))


def _by_planes_compiled(kernel: Callable, source: np.ndarray, target: np.ndarray, geo: PoolGeometry,
                        divisor: Any) -> np.ndarray:
    """Run the compiled window sums (or their adjoint) ``kernel`` from ``source`` into ``target``
    (``(P, *spatial)`` each, viewed as 3-d) over the blocks of planes, shared out over the
    threads; returns ``target``."""
    planes = source.shape[0]
    a = np.ascontiguousarray(source).reshape((planes,) + as_3d(source.shape[1:]))
    b = target.reshape((planes,) + as_3d(target.shape[1:]))
    by, args = _divisor_grid(divisor, geo, source.dtype), _window_args(geo)
    _by_planes(lambda blk: kernel(a, b, by, *args, blk.start, blk.stop), planes, math.prod(geo.input))
    return target


def _divide(total: np.ndarray, divisor: Any) -> None:
    """``total /= divisor``; integer sums (torch's int64 average pooling) are divided as C++
    divides integers, rounding toward zero."""
    if total.dtype.kind == "f":
        np.divide(total, divisor, out=total)
        return
    floor = np.floor_divide(total, divisor)
    np.add(floor, (floor * divisor != total) & ((total < 0) != (np.asarray(divisor) < 0)), out=total)


def _pooled_sum(planes: np.ndarray, geo: PoolGeometry, taps: list, divisor: Any,
                phases: bool = True) -> np.ndarray:
    """Sum over every window of ``planes`` ``(P, *input)`` divided by ``divisor`` (a scalar,
    or per window): ``(P, *out)``, block by block, taps in torch's order; padding is skipped
    (compiled: added as zeros, which changes no sum, see :mod:`._pool_numba`)."""
    kernels = jit.kernels_for(planes.dtype, "pool")
    if kernels is not None:
        return _by_planes_compiled(kernels.window_sums, planes, np.empty((planes.shape[0],) + geo.out, planes.dtype),
                                   geo, divisor)
    out = np.zeros((planes.shape[0],) + geo.out, planes.dtype)

    def block(b: slice) -> None:
        total = out[b]
        with np.errstate(invalid="ignore"):  # inf − inf gives NaN, silently as in torch
            for _, windows, cells in _tap_reads(planes[b], geo, taps, phases):
                view = total[(Ellipsis,) + windows]
                np.add(view, cells, out=view)
        _divide(total, divisor)

    _by_planes(block, planes.shape[0], math.prod(geo.input))
    return out


def _pooled_shares(g: np.ndarray, geo: PoolGeometry, taps: list, divisor: Any) -> np.ndarray:
    """Adjoint of :func:`_pooled_sum`: each window's share ``g / divisor`` added onto the real
    cells it summed, ``(P, *out)`` -> ``(P, *input)``, block by block (compiled: a cell's
    shares in torch's order, window raster order; NumPy: tap by tap)."""
    grad = np.empty((g.shape[0],) + geo.input, g.dtype)
    kernels = jit.kernels_for(g.dtype, "pool")
    if kernels is not None:
        return _by_planes_compiled(kernels.window_shares, g, grad, geo, divisor)

    def block(b: slice) -> None:
        share = g[b] / divisor
        _scatter_taps(lambda t, w: share[w], geo, taps, grad[b])

    _by_planes(block, g.shape[0], math.prod(geo.input))
    return grad


def _pooled_max(planes: np.ndarray, geo: PoolGeometry, winners: bool,
                phases: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Max over every window of ``planes`` ``(P, *input)``: the maxima ``(P, *out)`` and, with
    ``winners``, each window's winning offset (:func:`_max_and_winner`, else None), block by block."""
    taps = _taps(geo)
    value = np.empty((planes.shape[0],) + geo.out, planes.dtype)
    winner = np.empty(value.shape, _offset_type(geo.kernel, geo.dilation, geo.input)) if winners else None

    def block(b: slice) -> None:
        if winner is None:
            _max_values(planes[b], geo, taps, value[b], phases)
        else:
            _max_and_winner(planes[b], geo, taps, value[b], winner[b], phases)

    _by_planes(block, planes.shape[0], math.prod(geo.input))
    return value, winner


def _pool_attrs(geo: PoolGeometry, **extra: Any) -> dict:
    return {"kernel_size": geo.kernel, "stride": geo.stride, "padding": geo.padding, "dilation": geo.dilation,
            **extra}


def _max_pool(op: str, x: Tensor, kernel_size: Size, stride: Size | None, padding: Size, dilation: Size,
              ceil_mode: bool, return_indices: bool) -> Tensor | tuple[Tensor, Tensor]:
    geo = pool_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode, op=op)
    kernel_dtype(op, x.dtype, "refuse" if op == "max_pool1d" else "keep")  # torch's max_pool1d has no integer kernel
    lead = x.shape[: x.ndim - len(geo.out)]
    attrs = _pool_attrs(geo, ceil_mode=ceil_mode)
    if x.is_meta:
        out = make_result(op, None, (x,), None, shape=lead + geo.out, attrs=attrs)
        return (out, Tensor.meta(out.shape, int64)) if return_indices else out
    # the winners only when asked for or when a backward will need them (torch's indices)
    keep = return_indices or (x.requires_grad and is_grad_enabled())
    value, winner = _pooled_max(x.data.reshape((-1,) + geo.input), geo, keep)
    shape = x.shape  # the backward needs neither the input nor the maxima

    def backward(g: np.ndarray) -> tuple:
        return (_scatter_to_winners(g, winner, geo).reshape(shape),)

    out = make_result(op, value.reshape(lead + geo.out), (x,), backward, attrs=attrs)
    return (out, Tensor.wrap(_plane_index(winner.reshape(lead + geo.out), geo))) if return_indices else out


def _avg_divisor(geo: PoolGeometry, count_include_pad: bool, divisor_override: int | None,
                 dtype: np.dtype) -> np.ndarray:
    """Per output position (the same for every N, C): the number each window sum is divided by.

    With ``count_include_pad`` the window clipped to ``[−p, L + p)``; otherwise the real
    input cells it covers; ``divisor_override`` replaces both.
    """
    nd = len(geo.kernel)
    if divisor_override is not None:
        return np.asarray(divisor_override, dtype)
    divisor = np.ones((1,) * nd, np.int64)
    for i, (n, k, p) in enumerate(zip(geo.input, geo.kernel, geo.padding, strict=True)):
        start = geo.window_starts(i)
        if count_include_pad:
            count = np.minimum(start + k, n + p) - start
        else:
            count = np.minimum(start + k, n) - np.maximum(start, 0)
        divisor = divisor * count.reshape((-1,) + (1,) * (nd - 1 - i))
    return divisor.astype(dtype)


def _avg_pool(op: str, x: Tensor, kernel_size: Size, stride: Size | None, padding: Size, ceil_mode: bool,
              count_include_pad: bool, divisor_override: int | None) -> Tensor:
    geo = pool_geometry(x.shape, kernel_size, stride, padding, 1, ceil_mode, op=op)
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, (int, np.integer)):
            raise TypeError(f"{op}: divisor_override must be an int, got {divisor_override!r}")
        if divisor_override == 0:
            raise ShapeError("divisor_override must be non-zero, got 0", layer=op)
    kernel_dtype(op, x.dtype, "int64")  # torch averages int64 (rounding toward zero), no other integers
    lead = x.shape[: x.ndim - len(geo.out)]
    attrs = _pool_attrs(geo, ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                        divisor_override=divisor_override)
    if x.is_meta:
        return make_result(op, None, (x,), None, shape=lead + geo.out, attrs=attrs)
    xd, taps = x.data, _taps(geo)
    divisor = _avg_divisor(geo, count_include_pad, divisor_override, x.dtype)
    planes = xd.reshape((-1,) + geo.input)
    out = _pooled_sum(planes, geo, taps, divisor)

    windows = out.shape  # the closure keeps the shape, not the output

    def backward(g: np.ndarray) -> tuple:
        return (_pooled_shares(g.reshape(windows), geo, taps, divisor).reshape(xd.shape),)

    return make_result(op, out.reshape(lead + geo.out), (x,), backward, attrs=attrs)


# --- public max / average pools --------------------------------------------------------------
def max_pool1d(input: Tensor, kernel_size: Size, stride: Size | None = None, padding: Size = 0,  # noqa: A002
               dilation: Size = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """1-d max pooling, as ``torch.nn.functional.max_pool1d``.

    ``stride`` defaults to ``kernel_size``; ``padding`` (at most ``kernel_size // 2``)
    acts as −∞. Ties go to the first maximal element in scan order, a window holding NaN
    yields NaN (its index is the window's last NaN, as in torch). With ``return_indices``
    also returns int64 flat indices into each unpadded input plane (for ``max_unpool1d``).

    Shape:
        - Input: ``(N, C, L_in)`` or ``(C, L_in)``
        - Output: ``(N, C, L_out)`` or ``(C, L_out)``, where
          ``L_out = floor_or_ceil((L_in + 2·padding − dilation·(kernel_size − 1) − 1) / stride) + 1``;
          in ceil mode a last window that would start in the right padding is dropped.

    >>> import numpy as np, convscope as cs
    >>> max_pool1d(cs.tensor(np.array([[1., 3, 3, 0]])), 2, 1, return_indices=True)[1].tolist()
    [[1, 1, 2]]
    """
    return _max_pool("max_pool1d", input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(input: Tensor, kernel_size: Size, stride: Size | None = None, padding: Size = 0,  # noqa: A002
               dilation: Size = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """2-d max pooling, as ``torch.nn.functional.max_pool2d``; rules as :func:`max_pool1d`.

    Shape:
        - Input: ``(N, C, H_in, W_in)`` or ``(C, H_in, W_in)``
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``, each spatial size by
          the :func:`max_pool1d` formula; indices are flat into ``H_in·W_in``.
    """
    return _max_pool("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool3d(input: Tensor, kernel_size: Size, stride: Size | None = None, padding: Size = 0,  # noqa: A002
               dilation: Size = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """3-d max pooling, as ``torch.nn.functional.max_pool3d``; rules as :func:`max_pool1d`.

    Shape:
        - Input: ``(N, C, D_in, H_in, W_in)`` or ``(C, D_in, H_in, W_in)``
        - Output: ``(N, C, D_out, H_out, W_out)`` or ``(C, D_out, H_out, W_out)``, each
          spatial size by the :func:`max_pool1d` formula; indices are flat into ``D_in·H_in·W_in``.
    """
    return _max_pool("max_pool3d", input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def avg_pool1d(input: Tensor, kernel_size: Size, stride: Size | None = None, padding: Size = 0,  # noqa: A002
               ceil_mode: bool = False, count_include_pad: bool = True) -> Tensor:
    """1-d average pooling, as ``torch.nn.functional.avg_pool1d``.

    Each window sum is divided by: with ``count_include_pad`` the window's size after
    clipping to ``[−padding, L_in + padding)`` (ceil-mode overhang past the padding is not
    counted); otherwise the number of real input cells in the window.

    Shape:
        - Input: ``(N, C, L_in)`` or ``(C, L_in)``
        - Output: ``(N, C, L_out)`` or ``(C, L_out)``, where
          ``L_out = floor_or_ceil((L_in + 2·padding − kernel_size) / stride) + 1`` (ceil-mode
          drop rule as :func:`max_pool1d`).

    >>> import numpy as np, convscope as cs
    >>> avg_pool1d(cs.tensor(np.array([[2., 4, 6]])), 2, padding=1).tolist()
    [[1.0, 5.0]]
    """
    return _avg_pool("avg_pool1d", input, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(input: Tensor, kernel_size: Size, stride: Size | None = None, padding: Size = 0,  # noqa: A002
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:
    """2-d average pooling, as ``torch.nn.functional.avg_pool2d``; rules as :func:`avg_pool1d`,
    and a non-zero ``divisor_override`` replaces every divisor.

    Shape:
        - Input: ``(N, C, H_in, W_in)`` or ``(C, H_in, W_in)``
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``, each spatial size by
          the :func:`avg_pool1d` formula.
    """
    return _avg_pool("avg_pool2d", input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def avg_pool3d(input: Tensor, kernel_size: Size, stride: Size | None = None, padding: Size = 0,  # noqa: A002
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:
    """3-d average pooling, as ``torch.nn.functional.avg_pool3d``; rules as :func:`avg_pool2d`.
    As torch, it also requires each input size to be at least the kernel before padding.

    Shape:
        - Input: ``(N, C, D_in, H_in, W_in)`` or ``(C, D_in, H_in, W_in)``
        - Output: ``(N, C, D_out, H_out, W_out)`` or ``(C, D_out, H_out, W_out)``, each
          spatial size by the :func:`avg_pool1d` formula.
    """
    return _avg_pool("avg_pool3d", input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


# --- LP pooling ---------------------------------------------------------------------------------
def _lp_pool(op: str, x: Tensor, norm_type: float, kernel_size: Size, stride: Size | None,
             ceil_mode: bool) -> Tensor:
    """torch's composition: ``(sign(a)·relu(|a|)·∏k) ** (1/p)`` with ``a = avg_pool(x ** p)``.

    ``sign(a)·relu(|a|)`` equals ``a`` but its gradient is ``sign(a)²`` (torch's sign of NaN
    is 0), and exactly 0 where ``a == 0``: an all-zero window gets gradient 0 instead of NaN,
    and a NaN window passes only a NaN slope on (``p = 1``: its slope is 1, so gradient 0).
    ``p = ±inf`` is a max pool of ``|x|``.
    """
    nd = _POOL_SPECS[op].nd
    if norm_type in (math.inf, -math.inf):
        sign = 1 if norm_type > 0 else -1
        return sign * _max_pool(f"max_pool{nd}d", sign * _abs(x), kernel_size, stride, 0, 1, ceil_mode, False)
    if norm_type == 0:
        raise ValueError(f"{op}: norm_type must be non-zero (the result is a 1/norm_type power)")
    avg = _avg_pool(op, x ** norm_type, kernel_size, stride, 0, ceil_mode, True, None)
    volume = math.prod(ntuple(kernel_size, nd, "kernel_size", op))
    inv = 1.0 / norm_type

    def grad(g: np.ndarray, a: np.ndarray, out: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.power(a * volume, inv - 1) * (volume * inv)
            return np.where(a != 0, g * slope * array_sign(a) ** 2, 0).astype(g.dtype, copy=False)

    def forward(a: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):  # a negative window mean to a fractional power is NaN, as in torch
            return np.power(a * volume, inv)

    return unary(op, avg, forward, grad, attrs={"norm_type": norm_type}, integers="float")


def lp_pool1d(input: Tensor, norm_type: float, kernel_size: Size, stride: Size | None = None,  # noqa: A002
              ceil_mode: bool = False) -> Tensor:
    """1-d power-average pooling, as ``torch.nn.functional.lp_pool1d``: per window
    ``(Σ x^p)^(1/p)``, computed as torch does from :func:`avg_pool1d` of ``x^p`` times the
    kernel size (so a ceil-mode window overhanging the input is scaled, not summed).
    Negative inputs with a fractional ``p`` give NaN, as in torch.

    Shape:
        - Input: ``(N, C, L_in)`` or ``(C, L_in)``
        - Output: ``(N, C, L_out)`` or ``(C, L_out)``, as :func:`avg_pool1d` with padding 0.
    """
    return _lp_pool("lp_pool1d", input, norm_type, kernel_size, stride, ceil_mode)


def lp_pool2d(input: Tensor, norm_type: float, kernel_size: Size, stride: Size | None = None,  # noqa: A002
              ceil_mode: bool = False) -> Tensor:
    """2-d power-average pooling, as ``torch.nn.functional.lp_pool2d``; see :func:`lp_pool1d`.

    Shape:
        - Input: ``(N, C, H_in, W_in)`` or ``(C, H_in, W_in)``
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``, as :func:`avg_pool2d` with padding 0.
    """
    return _lp_pool("lp_pool2d", input, norm_type, kernel_size, stride, ceil_mode)


def lp_pool3d(input: Tensor, norm_type: float, kernel_size: Size, stride: Size | None = None,  # noqa: A002
              ceil_mode: bool = False) -> Tensor:
    """3-d power-average pooling, as ``torch.nn.functional.lp_pool3d``; see :func:`lp_pool1d`.

    Shape:
        - Input: ``(N, C, D_in, H_in, W_in)`` or ``(C, D_in, H_in, W_in)``
        - Output: ``(N, C, D_out, H_out, W_out)`` or ``(C, D_out, H_out, W_out)``, as
          :func:`avg_pool3d` with padding 0.
    """
    return _lp_pool("lp_pool3d", input, norm_type, kernel_size, stride, ceil_mode)


# --- adaptive pooling -----------------------------------------------------------------------------
def _bins(n_in: int, n_out: int) -> list[slice]:
    """Bin ``i`` covers ``[floor(i·In/Out), ceil((i+1)·In/Out))``; neighbours may overlap."""
    return [slice(i * n_in // n_out, -(-(i + 1) * n_in // n_out)) for i in range(n_out)]


def _bin_means(a: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Average ``a`` over the adaptive bins along ``axis`` (one slice per output index, so
    a NaN or inf only reaches the bins that hold it)."""
    moved = np.moveaxis(a, axis, -1)
    out = np.empty(moved.shape[:-1] + (n_out,), a.dtype)
    with np.errstate(invalid="ignore"):
        for i, b in enumerate(_bins(moved.shape[-1], n_out)):
            out[..., i] = moved[..., b].sum(axis=-1) / (b.stop - b.start)
    return np.moveaxis(out, -1, axis)


def _bin_means_adjoint(g: np.ndarray, axis: int, n_in: int) -> np.ndarray:
    moved = np.moveaxis(g, axis, -1)
    grad = np.zeros(moved.shape[:-1] + (n_in,), g.dtype)
    for i, b in enumerate(_bins(n_in, moved.shape[-1])):
        grad[..., b] += (moved[..., i] / (b.stop - b.start))[..., None]
    return np.moveaxis(grad, -1, axis)


# Even bins reduce as strided passes, one per cell of the bin (the window path of max/avg
# pooling with kernel = stride = bin), except one bin per plane with more than this many
# cells: a plain view of the planes then (global pooling). NumPy reduces axes of a few
# elements slowly: 8×512×14² to 7² takes 7 ms reshaped and 1 ms in four strided passes;
# 8×2048×7² to 1² 1 ms in 49 passes, 0.4 ms as a sum over the plane, 0.06 ms as a
# matrix-vector product.
_FEW_CELLS = 16


def _phases(cells: tuple[int, ...]) -> bool:
    """Whether the window path of even bins reads through phase copies: only for bins of 2
    along the last dim (wider bins read few cells per tap; a copy of the input would cost more)."""
    return cells[-1] <= 2


def _global(cells: tuple[int, ...] | None, in_sizes: Sequence[int]) -> bool:
    """Whether even bins are one bin per plane of more than ``_FEW_CELLS`` cells."""
    return cells is not None and tuple(cells) == tuple(in_sizes) and math.prod(cells) > _FEW_CELLS


def _even_bins(in_sizes: Sequence[int], out_sizes: Sequence[int]) -> tuple[int, ...] | None:
    """Cells per bin along each dim when the bins split every dim evenly (they are then
    disjoint windows with kernel = stride), else None."""
    if any(o == 0 or n % o for n, o in zip(in_sizes, out_sizes, strict=True)):
        return None
    return tuple(n // o for n, o in zip(in_sizes, out_sizes, strict=True))


def _bin_windows(in_sizes: Sequence[int], cells: tuple[int, ...]) -> PoolGeometry:
    """Even bins as the windows of a pool (kernel = stride = bin, no padding)."""
    nd = len(cells)
    return PoolGeometry(tuple(in_sizes), cells, cells, (0,) * nd, (1,) * nd,
                        tuple(n // k for n, k in zip(in_sizes, cells, strict=True)), (0,) * nd)


def _bin_boxes(a: np.ndarray, cells: tuple[int, ...]) -> np.ndarray:
    """``a`` ``(..., *in)`` as ``(..., 1, …, 1, cells)`` for one bin per plane: each plane's
    cells in raster order."""
    nd = len(cells)
    return a.reshape(a.shape[: a.ndim - nd] + (1,) * nd + (math.prod(cells),))


def _adaptive_attrs(shape: tuple, output_size: Any, nd: int) -> dict:
    """``keep``: the dims whose ``output_size`` was None (they keep the input size)."""
    sizes = (output_size,) * nd if isinstance(output_size, (int, np.integer)) else tuple(output_size)
    return {"output_size": shape[-nd:], "keep": tuple(s is None for s in sizes)}


def _adaptive_avg_pool(op: str, x: Tensor, output_size: Any) -> Tensor:
    shape = adaptive_output_shape(x.shape, output_size, op=op)
    kernel_dtype(op, x.dtype)
    nd = _ADAPTIVE_RANK[op]
    attrs = _adaptive_attrs(shape, output_size, nd)
    if x.is_meta:
        return make_result(op, None, (x,), None, shape=shape, attrs=attrs)
    xd, in_sizes = x.data, x.shape[-nd:]
    cells = _even_bins(in_sizes, shape[-nd:])
    if cells is None:
        out = xd
        for axis in range(-nd, 0):  # averaging over a box is separable: one spatial dim at a time
            out = _bin_means(out, axis, shape[axis])
    elif _global(cells, in_sizes):  # means as a matrix-vector product: 7× faster than a sum over the last axis
        boxes = _bin_boxes(xd, cells)
        rows = boxes.reshape(-1, boxes.shape[-1])  # one matrix: a stack of rows would be one BLAS call per row
        # a vector, not a (cells, 1) matrix: BLAS's gemv (8×2048×7²: 76 → 61 µs), weighted 1/cells (no pass to divide)
        out = matmul(rows, np.full(rows.shape[-1], 1 / math.prod(cells), xd.dtype)).reshape(boxes.shape[:-1])
    else:
        geo = _bin_windows(in_sizes, cells)
        taps = _taps(geo)
        planes = xd.reshape((-1,) + geo.input)
        out = _pooled_sum(planes, geo, taps, xd.dtype.type(math.prod(cells)), _phases(cells)).reshape(shape)

    def backward(g: np.ndarray) -> tuple:
        if cells is not None:  # each cell gets its one bin's share
            share = (g / g.dtype.type(math.prod(cells))).reshape(
                g.shape[:-nd] + tuple(v for o in shape[-nd:] for v in (o, 1)))
            spread = np.broadcast_to(share, share.shape[:-2 * nd] + tuple(
                v for o, k in zip(shape[-nd:], cells, strict=True) for v in (o, k)))
            return (spread.reshape(x.shape),)
        for axis in range(-nd, 0):
            g = _bin_means_adjoint(g, axis, x.shape[axis])
        return (g,)

    return make_result(op, out, (x,), backward, attrs=attrs)


def _adaptive_cells(in_sizes: tuple, out_sizes: tuple) -> list[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """Every output cell of an adaptive pool with its input box."""
    per_dim = [list(enumerate(_bins(n, o))) for n, o in zip(in_sizes, out_sizes, strict=True)]
    return [(tuple(i for i, _ in cell), tuple(b for _, b in cell)) for cell in itertools.product(*per_dim)]


def _box_argmax(box: np.ndarray, nd: int, check_nan: bool) -> np.ndarray:
    """Per leading position, the raster index of the box's first maximum, or of its last NaN."""
    flat = box.reshape(box.shape[: box.ndim - nd] + (math.prod(box.shape[-nd:]),))
    index = np.argmax(np.where(np.isnan(flat), -np.inf, flat) if check_nan else flat, axis=-1)
    if check_nan:
        nan = np.isnan(flat)
        last_nan = flat.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
        index = np.where(nan.any(axis=-1), last_nan, index)
    return index


def _even_bin_max(xd: np.ndarray, cells: tuple[int, ...]) -> np.ndarray:
    """The maximum of every even bin (NaN where a bin holds one), as :func:`_adaptive_argmax`."""
    if _global(cells, xd.shape[xd.ndim - len(cells):]):
        return _bin_boxes(xd, cells).max(axis=-1)
    geo = _bin_windows(xd.shape[xd.ndim - len(cells):], cells)
    best, _ = _pooled_max(xd.reshape((-1,) + geo.input), geo, False, _phases(cells))
    return best.reshape(xd.shape[: xd.ndim - len(cells)] + geo.out)


def _adaptive_argmax(xd: np.ndarray, shape: tuple, nd: int, cells: tuple[int, ...] | None) -> np.ndarray:
    """Flat index into each input plane of every bin's first maximum (or last NaN), ``shape``,
    for one big even bin per plane (one search over the planes) or uneven bins (one output
    cell at a time: a small output grid). Other even bins are max-pool windows."""
    in_sizes, lead = xd.shape[-nd:], xd.shape[:-nd]
    check_nan = bool(np.isnan(xd).any())
    if _global(cells, in_sizes):
        local = np.unravel_index(_box_argmax(_bin_boxes(xd, cells), 1, check_nan), cells)
        index = np.zeros(shape, np.int64)
        for i, (coord, k, n) in enumerate(zip(local, cells, in_sizes, strict=True)):
            first = (np.arange(shape[i - nd]) * k).reshape((-1,) + (1,) * (nd - 1 - i))
            index *= n
            index += first + coord
        return index
    index = np.empty(shape, np.int64)
    for cell, box in _adaptive_cells(in_sizes, shape[-nd:]):
        local = np.unravel_index(_box_argmax(xd[(Ellipsis,) + box], nd, check_nan), [b.stop - b.start for b in box])
        flat = np.zeros(lead, np.int64)
        for b, coord, n in zip(box, local, in_sizes, strict=True):
            flat = flat * n + b.start + coord
        index[(Ellipsis,) + cell] = flat
    return index


def _adaptive_max_pool(op: str, x: Tensor, output_size: Any, return_indices: bool) -> Tensor | tuple[Tensor, Tensor]:
    shape = adaptive_output_shape(x.shape, output_size, op=op)
    kernel_dtype(op, x.dtype)
    nd = _ADAPTIVE_RANK[op]
    attrs = _adaptive_attrs(shape, output_size, nd)
    if x.is_meta:
        out = make_result(op, None, (x,), None, shape=shape, attrs=attrs)
        return (out, Tensor.meta(shape, int64)) if return_indices else out
    xd = x.data
    in_sizes, lead = x.shape[-nd:], x.shape[:-nd]
    plane = xd.reshape(lead + (math.prod(in_sizes),))
    cells = _even_bins(in_sizes, shape[-nd:])
    keep = return_indices or (x.requires_grad and is_grad_enabled())
    if cells is not None and not keep:
        return make_result(op, _even_bin_max(xd, cells), (x,), None, attrs=attrs)  # the maxima only
    if cells is not None and not _global(cells, in_sizes):  # the windows of a max pool, and its backward
        geo, x_shape = _bin_windows(in_sizes, cells), x.shape
        value, winner = _pooled_max(xd.reshape((-1,) + geo.input), geo, True, _phases(cells))
        result = make_result(op, value.reshape(shape), (x,),
                             lambda g: (_scatter_to_winners(g, winner, geo).reshape(x_shape),), attrs=attrs)
        return (result, Tensor.wrap(_plane_index(winner, geo).reshape(shape))) if return_indices else result
    index = _adaptive_argmax(xd, shape, nd, cells)
    flat_index = index.reshape(lead + (math.prod(shape[-nd:]),))
    out = np.take_along_axis(plane, flat_index, axis=-1).reshape(shape)

    def backward(g: np.ndarray) -> tuple:
        grad = np.zeros(plane.shape, g.dtype)
        g_flat = g.reshape(flat_index.shape)
        if cells is not None:  # disjoint bins: every winner is a different cell
            np.put_along_axis(grad, flat_index, g_flat, axis=-1)
            return (grad.reshape(x.shape),)
        # overlapping bins may pick the same cell; one output cell per step never repeats an index
        for j in range(flat_index.shape[-1]):
            col = flat_index[..., j:j + 1]
            np.put_along_axis(grad, col, np.take_along_axis(grad, col, axis=-1) + g_flat[..., j:j + 1], axis=-1)
        return (grad.reshape(x.shape),)

    result = make_result(op, out, (x,), backward, attrs=attrs)
    return (result, Tensor.wrap(index)) if return_indices else result


def adaptive_avg_pool1d(input: Tensor, output_size: Any) -> Tensor:  # noqa: A002
    """1-d adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool1d``: output
    cell ``i`` averages input ``[floor(i·L_in/L_out), ceil((i+1)·L_in/L_out))``.
    Unlike torch, an ``output_size`` of ``None`` (keep the input size) is also accepted in 1-d.

    Shape:
        - Input: ``(N, C, L_in)`` or ``(C, L_in)``
        - Output: ``(N, C, L_out)`` or ``(C, L_out)`` with ``L_out = output_size``.
    """
    return _adaptive_avg_pool("adaptive_avg_pool1d", input, output_size)


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:  # noqa: A002
    """2-d adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool2d``; bins
    as :func:`adaptive_avg_pool1d` per dim; ``None`` entries keep that input size.

    Shape:
        - Input: ``(N, C, H_in, W_in)`` or ``(C, H_in, W_in)``
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)`` with ``(H_out, W_out) = output_size``.
    """
    return _adaptive_avg_pool("adaptive_avg_pool2d", input, output_size)


def adaptive_avg_pool3d(input: Tensor, output_size: Any) -> Tensor:  # noqa: A002
    """3-d adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool3d``; see
    :func:`adaptive_avg_pool2d`.

    Shape:
        - Input: ``(N, C, D_in, H_in, W_in)`` or ``(C, D_in, H_in, W_in)``
        - Output: ``(N, C, *output_size)`` or ``(C, *output_size)``.
    """
    return _adaptive_avg_pool("adaptive_avg_pool3d", input, output_size)


def adaptive_max_pool1d(input: Tensor, output_size: Any,  # noqa: A002
                        return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """1-d adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool1d``; bins as
    :func:`adaptive_avg_pool1d`, ties and NaN as :func:`max_pool1d`.

    Shape:
        - Input: ``(N, C, L_in)`` or ``(C, L_in)``
        - Output: ``(N, C, L_out)`` or ``(C, L_out)`` with ``L_out = output_size``.
    """
    return _adaptive_max_pool("adaptive_max_pool1d", input, output_size, return_indices)


def adaptive_max_pool2d(input: Tensor, output_size: Any,  # noqa: A002
                        return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """2-d adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool2d``; see
    :func:`adaptive_max_pool1d`. Indices are flat into ``H_in·W_in``.

    Shape:
        - Input: ``(N, C, H_in, W_in)`` or ``(C, H_in, W_in)``
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)`` with ``(H_out, W_out) = output_size``.
    """
    return _adaptive_max_pool("adaptive_max_pool2d", input, output_size, return_indices)


def adaptive_max_pool3d(input: Tensor, output_size: Any,  # noqa: A002
                        return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """3-d adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool3d``; see
    :func:`adaptive_max_pool1d`. Indices are flat into ``D_in·H_in·W_in``.

    Shape:
        - Input: ``(N, C, D_in, H_in, W_in)`` or ``(C, D_in, H_in, W_in)``
        - Output: ``(N, C, *output_size)`` or ``(C, *output_size)``.
    """
    return _adaptive_max_pool("adaptive_max_pool3d", input, output_size, return_indices)


# --- max unpooling ----------------------------------------------------------------------------------
def _max_unpool(op: str, x: Tensor, indices: Tensor, kernel_size: Size, stride: Size | None, padding: Size,
                output_size: Sequence[int] | None) -> Tensor:
    shape = unpool_output_shape(x.shape, indices.shape, kernel_size, stride, padding, output_size, op=op)
    kernel_dtype(op, x.dtype)
    nd = _UNPOOL_RANK[op]
    attrs = {"output_size": shape[-nd:], "kernel_size": kernel_size, "stride": stride, "padding": padding,
             "explicit": output_size is not None}
    if x.is_meta or indices.is_meta:
        return make_result(op, None, (x,), None, shape=shape, dtype=x.dtype, attrs=attrs)
    idx = indices.numpy()
    if idx.dtype != np.int64:
        raise TypeError(f"{op}: indices must be int64 (as returned by max_pool), got {idx.dtype}")
    lead, cells = x.shape[: x.ndim - nd], math.prod(shape[-nd:])
    flat_index = idx.reshape(lead + (math.prod(x.shape[-nd:]),))
    bad = (flat_index < 0) | (flat_index >= cells)
    if bad.any():
        raise ShapeError(f"index {int(flat_index[bad][0])} is out of range for an output plane of "
                         f"{'x'.join(map(str, shape[-nd:]))} = {cells} cells", layer=op)
    out = np.zeros(lead + (cells,), x.dtype)
    np.put_along_axis(out, flat_index, x.data.reshape(flat_index.shape), axis=-1)

    def backward(g: np.ndarray) -> tuple:
        return (np.take_along_axis(g.reshape(lead + (cells,)), flat_index, axis=-1).reshape(x.shape),)

    return make_result(op, out.reshape(shape), (x,), backward, attrs=attrs)


def max_unpool1d(input: Tensor, indices: Tensor, kernel_size: Size, stride: Size | None = None,  # noqa: A002
                 padding: Size = 0, output_size: Sequence[int] | None = None) -> Tensor:
    """Partial inverse of :func:`max_pool1d`, as ``torch.nn.functional.max_unpool1d``:
    zeros everywhere except ``input`` written at ``indices`` of each output plane.

    Shape:
        - Input and indices: ``(N, C, L_in)`` or ``(C, L_in)``
        - Output: ``(N, C, L_out)`` or ``(C, L_out)`` with
          ``L_out = (L_in − 1)·stride + kernel_size − 2·padding`` unless ``output_size`` says
          otherwise (it must be within one stride of that).
    """
    return _max_unpool("max_unpool1d", input, indices, kernel_size, stride, padding, output_size)


def max_unpool2d(input: Tensor, indices: Tensor, kernel_size: Size, stride: Size | None = None,  # noqa: A002
                 padding: Size = 0, output_size: Sequence[int] | None = None) -> Tensor:
    """Partial inverse of :func:`max_pool2d`, as ``torch.nn.functional.max_unpool2d``; see
    :func:`max_unpool1d`.

    Shape:
        - Input and indices: ``(N, C, H_in, W_in)`` or ``(C, H_in, W_in)``
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``, each size as in :func:`max_unpool1d`.
    """
    return _max_unpool("max_unpool2d", input, indices, kernel_size, stride, padding, output_size)


def max_unpool3d(input: Tensor, indices: Tensor, kernel_size: Size, stride: Size | None = None,  # noqa: A002
                 padding: Size = 0, output_size: Sequence[int] | None = None) -> Tensor:
    """Partial inverse of :func:`max_pool3d`, as ``torch.nn.functional.max_unpool3d``; see
    :func:`max_unpool1d`.

    Shape:
        - Input and indices: ``(N, C, D_in, H_in, W_in)`` or ``(C, D_in, H_in, W_in)``
        - Output: ``(N, C, D_out, H_out, W_out)`` or ``(C, D_out, H_out, W_out)``, each size
          as in :func:`max_unpool1d`.
    """
    return _max_unpool("max_unpool3d", input, indices, kernel_size, stride, padding, output_size)


# --- analysis rules (see convscope.rules) ------------------------------------------------
_WINDOWED = [f"{kind}_pool{n}d" for kind in ("max", "avg") for n in (1, 2, 3)]


@cost_rule(*_WINDOWED)
def _window_cost(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Cost:
    window = math.prod(attrs["kernel_size"])
    n = numel(output.shape)
    return Cost(0, n * window, f"{n:,} outputs × {window} window cells (compare or add)")


@field_rule(*_WINDOWED)
def _window_field(fields: Sequence[Field], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Field:
    if fields[0] is None:
        return None
    return tuple(a.window(k, s, d, p) for a, k, s, d, p in
                 zip(fields[0], attrs["kernel_size"], attrs["stride"], attrs["dilation"], attrs["padding"]))


_ADAPTIVE = [f"adaptive_{kind}_pool{n}d" for kind in ("max", "avg") for n in (1, 2, 3)]


@cost_rule(*_ADAPTIVE)
def _adaptive_cost(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Cost:
    n = numel(inputs[0].shape)
    return Cost(0, n, f"{n:,} inputs × 1 (each read once: compare or add)")


@field_rule(*_ADAPTIVE)
def _adaptive_field(fields: Sequence[Field], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Field:
    """Input-size dependent: the widest bin at this input size."""
    if fields[0] is None:
        return None
    sizes = inputs[0].shape[-len(fields[0]):]
    return tuple(a.bins(n, o) for a, n, o in zip(fields[0], sizes, attrs["output_size"]))


cost_rule(*[f"lp_pool{n}d" for n in (1, 2, 3)])(per_element(2, "scale and root"))


@field_rule(*[f"lp_pool{n}d" for n in (1, 2, 3)])
def _lp_field(fields: Sequence[Field], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Field:
    """An LP pool records its window average (with ``kernel_size``) and then its root."""
    rule = _window_field if "kernel_size" in attrs else same_field
    return rule(fields, inputs, output, attrs)


def _busy_blocks(x: Tensor, nd: int) -> tuple[int, int]:
    """The kernels' blocks of planes of ``x`` (``nd`` spatial dims): (planes per block, blocks
    busy at once, each with its own buffers; see :func:`_plane_blocks`)."""
    planes, threads = numel(x.shape[:x.ndim - nd]), thread_count()
    step = block_step(planes, numel(x.shape[x.ndim - nd:]), _POOL_BLOCK_ELEMENTS, threads)
    return min(step, planes), in_flight(-(-planes // step), threads)


def _phase_copies(x: Tensor, nd: int, phases: bool) -> int:
    """Bytes of the contiguous phase copies ``x[..., r::s]`` the taps of a block read (with
    ``phases``: a stride ``s > 1`` along the last dim; see :func:`_tap_reads`), per busy block."""
    block, busy = _busy_blocks(x, nd)
    return busy * block * numel(x.shape[x.ndim - nd:]) * x.dtype.itemsize if phases else 0


def _winner_rule(x: Tensor, output: Tensor, kernel: Sequence[int], dilation: Sequence[int], phases: bool) -> Saved:
    """A max computed with its winners (:func:`_pooled_max`) and scattered back to them
    (:func:`_scatter_to_winners`): the closure keeps only each window's winning offset (the
    smallest unsigned type that holds one). Per busy block the scan holds the phase copies, a
    bool mask and an offset-sized array per window (and one more bool mask for the NaN check);
    the NumPy backward the windows' first cells for a block of planes and per busy block the
    flat indices, the compiled one the first cells and a flag per window of one plane."""
    nd = len(kernel)
    windows, per_plane = numel(output.shape), numel(output.shape[output.ndim - nd:])
    offset = _offset_type(kernel, dilation, x.shape[x.ndim - nd:]).itemsize
    intp = np.dtype(np.intp).itemsize
    block, busy = _busy_blocks(x, nd)
    backward = (intp + 1) * per_plane if jit.runs(x.dtype) else (1 + busy) * block * per_plane * intp
    return Saved((), False, (("winning offsets", windows * offset),),
                 workspace=_phase_copies(x, nd, phases) + busy * block * per_plane * (2 + offset),
                 backward_workspace=backward)


@saved_rule(*[f"max_pool{n}d" for n in (1, 2, 3)])
def _max_pool_saved(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
    return _winner_rule(inputs[0], output, attrs["kernel_size"], attrs["dilation"], attrs["stride"][-1] > 1)


def _compiled_window_scratch(x: Tensor, output: Tensor, attrs: dict) -> tuple[int, int]:
    """Bytes the compiled window sums allocate, forward and backward (:mod:`._pool_numba`):
    per busy block a plane's padded rows (split into the stride's row phases) and a run of
    window sums (forward) or of spread shares and a row of them (backward); and the divisors
    as a grid."""
    nd = len(attrs["kernel_size"])
    sizes, out = x.shape[x.ndim - nd:], output.shape[output.ndim - nd:]
    kernel, stride, padding = (as_3d(attrs[k], f) for k, f in (("kernel_size", 1), ("stride", 1), ("padding", 0)))
    extent = as_3d([n + 2 * p + max(0, (o - 1) * s + k - n - 2 * p) for n, o, k, s, p in
                     zip(sizes, out, attrs["kernel_size"], attrs["stride"], attrs["padding"], strict=True)])
    wide, (out_d, out_h, out_w) = extent[2], as_3d(out)
    tall = -(-extent[1] // stride[1])
    rows = stride[1] * extent[0] * tall * wide
    run = (out_h - 1) * wide + (out_w - 1) * stride[2] + 1
    reach = (kernel[1] - 1) // stride[1] * wide + kernel[2] - 1
    busy, item, grid = _busy_blocks(x, nd)[1], x.dtype.itemsize, out_d * out_h * out_w
    return (busy * (rows + run) + grid) * item, (busy * (rows + reach + tall * wide + out_w) + grid) * item


@saved_rule(*[f"avg_pool{n}d" for n in (1, 2, 3)])
def _avg_pool_saved(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
    """The closure keeps the input (for its shape) and the per-position divisors. Per busy
    block the NumPy backward divides the output gradient once (``share``) and adds it tap by
    tap (with a stride, into phase planes: the block's input's worth); the compiled kernels
    work plane by plane (:func:`_compiled_window_scratch`). The forward counts the divisors in
    int64 before it keeps them in the input's dtype."""
    x, nd = inputs[0], len(attrs["kernel_size"])
    per_plane = numel(output.shape[output.ndim - nd:])
    if jit.runs(x.dtype):
        workspace, backward = _compiled_window_scratch(x, output, attrs)
    else:
        block, busy = _busy_blocks(x, nd)
        phases = _phase_copies(x, nd, attrs["stride"][-1] > 1)  # the forward's copies, the backward's sums
        workspace, backward = phases, busy * block * per_plane * x.dtype.itemsize + phases
    counted = 8 * per_plane if attrs.get("divisor_override") is None else 0  # the divisors counted in int64 first
    return Saved((0,), extra=(("divisors", per_plane * output.dtype.itemsize),), workspace=workspace + counted,
                 backward_workspace=backward)


@saved_rule(*[f"lp_pool{n}d" for n in (1, 2, 3)])
def _lp_saved(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
    if "kernel_size" in attrs:
        return _avg_pool_saved(inputs, output, attrs)
    return Saved((0,), True, workspace=nbytes(output), backward_workspace=3 * nbytes(output))


def _adaptive_steps(shape: Sequence[int], out: Sequence[int]) -> list[int]:
    """Elements of the arrays between separable passes (one spatial dim at a time)."""
    nd, steps, current = len(out), [], list(shape)
    for k in range(nd - 1):
        current[len(shape) - nd + k] = out[k]
        steps.append(numel(current))
    return steps


@saved_rule(*[f"adaptive_avg_pool{n}d" for n in (1, 2, 3)])
def _adaptive_avg_saved(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
    """The closure reads the input's shape only. The separable passes make intermediate
    arrays (forward: the input pooled along its first spatial dims, plus a bin's sum at a
    time; backward: the gradient spread along its first dims, plus a bin's share)."""
    x, out = inputs[0], attrs["output_size"]
    nd, item = len(out), x.dtype.itemsize
    forward = max(_adaptive_steps(x.shape, out), default=0)
    backward = max(_adaptive_steps(output.shape, x.shape[x.ndim - nd:]), default=0)
    per_bin = numel(x.shape) // max(x.shape[x.ndim - nd], 1)  # one bin's sum along the first spatial dim
    line = numel(x.shape[:x.ndim - nd + 1])  # one input line's share in the backward
    return Saved((0,), workspace=(forward + 2 * per_bin) * item, backward_workspace=(backward + 2 * line) * item)


@saved_rule(*[f"adaptive_max_pool{n}d" for n in (1, 2, 3)])
def _adaptive_max_saved(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
    """Even bins (not one big bin per plane) are max-pool windows: :func:`_winner_rule`.
    Otherwise the closure keeps the input (as flat planes) and the int64 index of every
    maximum; the search copies one bin of every plane at a time (and two masks of it)."""
    x, out = inputs[0], attrs["output_size"]
    nd = len(out)
    in_sizes = x.shape[x.ndim - nd:]
    cells = _even_bins(in_sizes, out)
    if cells is not None and not _global(cells, in_sizes):
        return _winner_rule(x, output, cells, (1,) * nd, _phases(cells))
    widest = math.prod(-(-n // o) + 1 for n, o in zip(in_sizes, out))
    box = numel(x.shape[:x.ndim - nd]) * min(widest, numel(in_sizes)) * x.dtype.itemsize
    return Saved((0,), extra=(("argmax indices", numel(output.shape) * 8),), workspace=3 * box)


@saved_rule(*[f"max_unpool{n}d" for n in (1, 2, 3)])
def _unpool_saved(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
    """The closure keeps the int64 indices (the caller's array, kept alive by it)."""
    return Saved((0,), extra=(("indices", numel(inputs[0].shape) * 8),))
cost_rule(*_UNPOOL_RANK)(lambda inputs, output, attrs: FREE)


@field_rule(*_UNPOOL_RANK)
def _unpool_field(fields: Sequence[Field], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Field:
    """Input cell ``i`` lands somewhere in its pooling window ``i·s − p … i·s − p + k − 1``:
    the field of a transposed window (as a transposed convolution's)."""
    if fields[0] is None:
        return None
    nd = len(fields[0])
    op = f"max_unpool{nd}d"
    kernel = ntuple(attrs["kernel_size"], nd, "kernel_size", op)
    stride = kernel if attrs["stride"] is None else ntuple(attrs["stride"], nd, "stride", op)
    pad = ntuple(attrs["padding"], nd, "padding", op)
    return tuple(a.scatter(k, s, 1, p) for a, k, s, p in zip(fields[0], kernel, stride, pad))


def _window_sizes(spec: _PoolSpec) -> SizeRule:
    def rule(sizes: Sequence[Sizes], inputs: Sequence[Tensor], output: Tensor,
             attrs: dict) -> tuple[Sizes, list[Constraint]]:
        """Per spatial dim ``window_count`` (ceil mode included, see ``SymSize.window``)."""
        x = sizes[0]
        if "kernel_size" not in attrs:  # lp_pool's root: element-wise
            return x, []
        nd = len(attrs["kernel_size"])
        spatial, checks = [], []
        for e, k, s, p, d in zip(x[-nd:], attrs["kernel_size"], attrs["stride"], attrs["padding"], attrs["dilation"]):
            out = e.window(k, s, d, p, p, attrs.get("ceil_mode", False))
            checks += at_least(e, 1, "non-empty input {size} ≥ {bound}")
            if spec.kernel_within_input:
                checks += at_least(e, k, "input {size} ≥ kernel {bound}")
            checks += at_least(out, 1, "window count {size} ≥ {bound}")
            spatial.append(out)
        return (*x[:-nd], *spatial), checks

    return rule


for _op, _spec_of in _POOL_SPECS.items():
    size_rule(_op)(_window_sizes(_spec_of))
del _op, _spec_of


@size_rule(*_ADAPTIVE)
def _adaptive_sizes(sizes: Sequence[Sizes], inputs: Sequence[Tensor], output: Tensor,
                    attrs: dict) -> tuple[Sizes, list[Constraint]]:
    """The requested ``output_size`` (constants), or the input size where it was None."""
    x, keep = sizes[0], attrs["keep"]
    nd = len(keep)
    checks = [c for e in x[-nd:] for c in at_least(e, 1, "non-empty input {size} ≥ {bound}")]
    return (*x[:-nd], *(e if k else const(o) for e, k, o in zip(x[-nd:], keep, attrs["output_size"]))), checks


@size_rule(*_UNPOOL_RANK)
def _unpool_sizes(sizes: Sequence[Sizes], inputs: Sequence[Tensor], output: Tensor,
                  attrs: dict) -> tuple[Sizes, list[Constraint]]:
    """``(E − 1)·s + k − 2p``, or an explicit ``output_size`` within one stride of it."""
    x, nd = sizes[0], len(attrs["output_size"])
    op = f"max_unpool{nd}d"
    kernel = ntuple(attrs["kernel_size"], nd, "kernel_size", op)
    stride = kernel if attrs["stride"] is None else ntuple(attrs["stride"], nd, "stride", op)
    pad = ntuple(attrs["padding"], nd, "padding", op)
    spatial, checks = [], []
    for e, k, s, p, o in zip(x[-nd:], kernel, stride, pad, attrs["output_size"]):
        default = e.times(s).shift(k - 2 * p - s)
        if attrs["explicit"]:
            checks += check(f"output_size {o} within one stride of {default.text}",
                            lambda env, f=default, o=o, s=s: abs(f.value(env) - o) < s, default)
            spatial.append(const(o))
        else:
            checks += at_least(default, 0, "output {size} ≥ {bound}")
            spatial.append(default)
    return (*x[:-nd], *spatial), checks
