"""Winograd F(2×2, 3×3) for 3×3, stride-1, dilation-1, ungrouped 2-d convolutions (and
3×3×3 3-d ones, as sums of three 2-d ones over depth, with the compiled transforms).

Each 2×2 block of outputs (a *tile*) is computed from the 4×4 input cells under it as
``Aᵀ [(G w Gᵀ) ⊙ (Bᵀ d B)] A``: the 16 products per (output channel, input channel) are
one ``(16, C_out, C) @ (16, C, tiles)`` stack of matmuls instead of the 36 multiply-adds of
a 9-tap window per 2×2 outputs, 2.25× fewer. The transforms are additions and
subtractions only (``G``'s halves are exact), so float64 results agree with the direct sum
to rounding; in float32 the error grows by a small factor (see ``tests/test_winograd.py``).

The work is split into items of whole samples, or one sample's rows of tiles, run with
:func:`.parallel.tile_map`; every item writes its own output cells, so results do not depend
on thread timing. With numba (:mod:`.jit`) the transforms run compiled
(:mod:`._winograd_numba`, a plane's tile rows in cache), with the same bits as the NumPy
transforms here. Unlike PyTorch's CPU convolution (oneDNN picks Winograd only on some
hardware) this path is chosen by shape alone (and whether the transforms run compiled),
see ``conv._path``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import jit
from .parallel import Scratch, in_flight, matmul, thread_count, tile_map

__all__ = ["forward", "grad_input", "grad_weight", "runs", "scratch_elements", "weight_scratch_elements"]

# Tiles per item: matmuls over fewer tiles run slowly at many channels, transforms of more
# spill out of cache at few (one thread, forward, tiles per item: 512 channels at 14² 100 ms
# with 28, 62 with 98, 58 with 196; 64 at 224² 38 ms with 224, 54 with 1000), within
# ``_ITEM_BYTES`` for the transformed input and product.
_ITEM_TILES = 196
_ITEM_BYTES = 16 << 20
# Items per thread to aim for (a descheduled thread leaves its share to the others), and the
# fewest tiles an item is cut to for that.
_ITEMS_PER_THREAD = 3
_MIN_ITEM_TILES = 96


@dataclass(frozen=True)
class _Item:
    """Samples ``batch``, tile rows ``rows`` of them (all tile columns)."""

    batch: slice
    rows: slice


def _grid(size: int) -> int:
    """Tiles along a dim of ``size`` outputs."""
    return -(-size // 2)


def _items(n: int, out: tuple[int, int], channels: int, item: int, threads: int, most: int = _ITEM_TILES,
           least: int = _MIN_ITEM_TILES) -> list[_Item]:
    """Items of about ``most`` tiles (``channels`` = C + C_out: the transformed input
    and product within ``_ITEM_BYTES``): whole samples when one fits, else rows of tiles of
    one sample; with several threads about ``_ITEMS_PER_THREAD`` items each, none under
    ``least`` tiles; none for an empty batch."""
    whole, step = _item_layout(n, out, channels, item, threads, most, least)
    rows = _grid(out[0])
    if whole:
        return [_Item(slice(b, min(b + step, n)), slice(0, rows)) for b in range(0, n, step)]
    return [_Item(slice(b, b + 1), slice(r, min(r + step, rows))) for b in range(n) for r in range(0, rows, step)]


def _first_item(n: int, out: tuple[int, int], channels: int, item: int, threads: int, most: int = _ITEM_TILES,
                least: int = _MIN_ITEM_TILES) -> tuple[int, _Item]:
    """How many items :func:`_items` makes, and its first, the largest, without listing them
    (the memory rules' view: a huge input has millions); ``n`` > 0."""
    whole, step = _item_layout(n, out, channels, item, threads, most, least)
    rows = _grid(out[0])
    if whole:
        return -(-n // step), _Item(slice(0, min(step, n)), slice(0, rows))
    return n * -(-rows // step), _Item(slice(0, 1), slice(0, min(step, rows)))


def _item_layout(n: int, out: tuple[int, int], channels: int, item: int, threads: int, most: int,
                 least: int) -> tuple[bool, int]:
    """How :func:`_items` cuts the work: ``(True, samples per item)`` for whole samples, else
    ``(False, tile rows per item)``."""
    rows, cols = _grid(out[0]), _grid(out[1])
    budget = max(1, min(most, _ITEM_BYTES // (16 * channels * item)))
    if threads > 1:
        budget = min(budget, max(least, n * rows * cols // (threads * _ITEMS_PER_THREAD)))
    if rows * cols <= budget:
        step = budget // (rows * cols)
        return True, (-(-n // -(-n // step)) if n else 1)  # the same size for every item
    step = max(1, budget // cols)
    return False, -(-rows // -(-rows // step))


def _weight(w: np.ndarray, flipped: bool = False) -> np.ndarray:
    """``G w Gᵀ`` of ``w`` ``(C_out, C, 3, 3)``: ``(16, C_out, C)`` in ``w``'s dtype; of a 3-d
    kernel ``(C_out, C, 3, 3, 3)`` each depth tap's, side by side: ``(16, C_out, 3·C)`` (tap-major,
    as :func:`_convolve_volume` stacks the slices). With ``flipped`` of the kernel rotated by 180°
    in every dim, channels swapped. One matmul by ``G ⊗ G`` (NumPy's ``einsum`` over the 3×3
    blocks takes ~40× longer at 512 channels)."""
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], w.dtype)
    if flipped:
        w = np.flip(w, tuple(range(2, w.ndim))).swapaxes(0, 1)
    depth = w.shape[2] if w.ndim == 5 else 1
    taps = np.ascontiguousarray(np.moveaxis(w.reshape(*w.shape[:2], depth, 9), 2, 1))  # (C_out, depth, C, 9)
    return matmul(np.kron(g, g), taps.reshape(-1, 9).T).reshape(16, w.shape[0], depth * w.shape[1])


def _input_tiles(x: np.ndarray, pad: int, out: tuple[int, int], it: _Item, scratch: Scratch) -> np.ndarray:
    """The cells the item's tiles read, split by row and column parity: ``(S, C, 2, 2, rows + 1,
    cols + 1)``, cell ``(2i + a, 2j + b)`` of the item at ``[..., a, b, i, j]``, so that every
    tap of every tile is a contiguous run (``pad`` zero cells before each dim of ``x``
    ``(N, C, H, W)``, and zeros after it as far as the tiles reach)."""
    rows, cols = it.rows.stop - it.rows.start, _grid(out[1])
    h, w = x.shape[2:]
    patch = scratch.take("patch", (it.batch.stop - it.batch.start, x.shape[1], 2, 2, rows + 1, cols + 1), x.dtype)
    top = 2 * it.rows.start - pad
    if top < 0 or top + 2 * rows + 2 > h or pad or 2 * cols + 2 > w:
        patch.fill(0)
    for a in range(2):  # item row 2i + a is row top + a + 2i of x: those inside it
        i0, i1 = max(0, -(-(-top - a) // 2)), min(rows + 1, (h - 1 - top - a) // 2 + 1)
        for b in range(2):  # column 2j + b is column b − pad + 2j
            j0, j1 = max(0, -(-(pad - b) // 2)), min(cols + 1, (w - 1 + pad - b) // 2 + 1)
            if i1 > i0 and j1 > j0:
                r, c = top + a + 2 * i0, b - pad + 2 * j0
                patch[:, :, a, b, i0:i1, j0:j1] = x[it.batch, :, r:r + 2 * (i1 - i0) - 1:2, c:c + 2 * (j1 - j0) - 1:2]
    return patch


def _transform_input(d: np.ndarray, scratch: Scratch) -> np.ndarray:
    """``Bᵀ d B`` of every tile of ``d`` (:func:`_input_tiles`): ``(16, C, S·rows·cols)``."""
    s, c = d.shape[:2]
    rows, cols = d.shape[4] - 1, d.shape[5] - 1
    r = [d[:, :, k % 2, :, k // 2:k // 2 + rows] for k in range(4)]  # (S, C, 2, rows, cols + 1)
    t = scratch.take("rows", (4, s, c, 2, rows, cols + 1), d.dtype)
    np.subtract(r[0], r[2], out=t[0])
    np.add(r[1], r[2], out=t[1])
    np.subtract(r[2], r[1], out=t[2])
    np.subtract(r[1], r[3], out=t[3])
    v = scratch.take("input", (4, 4, c, s, rows, cols), d.dtype)
    for i in range(4):
        q = [t[i, :, :, k % 2, :, k // 2:k // 2 + cols] for k in range(4)]
        vi = v[i].transpose(0, 2, 1, 3, 4)  # (4, S, C, rows, cols) views of the (C, S, ...) blocks
        np.subtract(q[0], q[2], out=vi[0])
        np.add(q[1], q[2], out=vi[1])
        np.subtract(q[2], q[1], out=vi[2])
        np.subtract(q[1], q[3], out=vi[3])
    return v.reshape(16, c, s * rows * cols)


def _transform_output(m: np.ndarray, y: np.ndarray, shape: tuple[int, int, int], scratch: Scratch) -> None:
    """``Aᵀ m A`` of every tile of ``m`` ``(16, C_out, S·rows·cols)``, written into its 2×2
    cells of ``y`` ``(S, C_out, H_o, W_o)`` (the first of them at the item's first tile row;
    cells past ``y``'s edge dropped). ``shape`` is ``(S, rows, cols)``."""
    s, rows, cols = shape
    c_out = m.shape[1]
    mm = m.reshape(4, 4, c_out, s, rows, cols)
    q = scratch.take("rows_out", (2, 4, c_out, s, rows, cols), m.dtype)
    np.add(mm[0], mm[1], out=q[0])
    q[0] += mm[2]
    np.subtract(mm[1], mm[2], out=q[1])
    q[1] -= mm[3]
    q = q.transpose(0, 1, 3, 2, 4, 5)  # (2, 4, S, C_out, rows, cols)
    for a in range(2):
        for b in range(2):
            target = y[:, :, a::2, b::2]  # this corner of every tile
            hr, wc = target.shape[2:]
            p = [q[a, k, :, :, :hr, :wc] for k in range(4)]
            if b == 0:
                np.add(p[0], p[1], out=target)
                target += p[2]
            else:
                np.subtract(p[1], p[2], out=target)
                target -= p[3]


def _largest_first(jobs: list[tuple[np.ndarray, np.ndarray, _Item]]) -> list[tuple[np.ndarray, np.ndarray, _Item]]:
    """``(x, y, item)`` jobs with the most tiles first (in order otherwise): threads take them in
    turn, so a thread's first item is its largest and its scratch buffers (the memory rules'
    largest item) are never made again bigger (a sample's shorter last rows, a smaller phase)."""
    def tiles(job: tuple[np.ndarray, np.ndarray, _Item]) -> int:
        _, y, it = job
        return (it.batch.stop - it.batch.start) * (it.rows.stop - it.rows.start) * _grid(y.shape[3])

    return sorted(jobs, key=lambda job: -tiles(job))


def _transformed_input(x: np.ndarray, pad: int, out: tuple[int, int], it: _Item, scratch: Scratch,
                       kernels: Any) -> np.ndarray:
    """``Bᵀ d B`` of the item's tiles of ``x`` ``(N, C, H, W)`` (``pad`` zero cells before each
    spatial dim) for an output of spatial size ``out``: ``(16, C, S·rows·cols)``, by the compiled
    ``kernels`` or (``None``) NumPy."""
    if kernels is None:
        return _transform_input(_input_tiles(x, pad, out, it, scratch), scratch)
    samples, rows, cols = it.batch.stop - it.batch.start, it.rows.stop - it.rows.start, _grid(out[1])
    v = scratch.take("input", (4, 4, x.shape[1], samples, rows, cols), x.dtype)
    kernels.transform_input(x, it.batch.start, 2 * it.rows.start - pad, -pad, v,
                            scratch.take("cells", (2, 2, rows + 1, cols + 1), x.dtype),
                            scratch.take("rows", (4, 2, rows, cols + 1), x.dtype), False)
    return v.reshape(16, x.shape[1], -1)


def _convolve(parts: list[tuple[np.ndarray, np.ndarray]], pad: int, u: np.ndarray) -> None:
    """For each ``(x, y)`` of ``parts`` (a conv's dilation phases, largest first: one set of
    items over all of them), ``y`` ``(N, C_out, H_o, W_o)`` = the correlation of ``x`` ``(N, C,
    H, W)``, zero-padded by ``pad`` cells before each spatial dim (and after it as far as ``y``
    reaches), with the transformed kernel ``u`` ``(16, C_out, C)`` (:func:`_weight`)."""
    if not parts:  # no output cells (an empty batch)
        return
    c, c_out = u.shape[2], u.shape[1]
    dtype = parts[0][0].dtype
    scratch, threads = Scratch(), thread_count()
    jobs = _largest_first([(x, y, it) for x, y in parts
                           for it in _items(x.shape[0], y.shape[2:], c + c_out, x.itemsize, threads)])
    kernels = jit.kernels_for(dtype, "winograd")  # the compiled transforms, or None: NumPy's

    def run(job: tuple[np.ndarray, np.ndarray, _Item]) -> None:
        x, y, it = job
        samples, rows, cols = it.batch.stop - it.batch.start, it.rows.stop - it.rows.start, _grid(y.shape[3])
        v = _transformed_input(x, pad, y.shape[2:], it, scratch, kernels)
        m = matmul(u, v, out=scratch.take("product", (16, c_out, v.shape[2]), dtype))
        if kernels is not None:
            kernels.transform_output(m.reshape(4, 4, c_out, samples, rows, cols), y, it.batch.start,
                                     2 * it.rows.start, scratch.take("tile_row", (4, cols), dtype))
        else:
            target = y[it.batch, :, 2 * it.rows.start:2 * it.rows.stop]
            _transform_output(m, target, (samples, rows, cols), scratch)

    tile_map(run, jobs, threads)


def _transform_gradient(g: np.ndarray, top: int, it: _Item, cols: int, scratch: Scratch) -> np.ndarray:
    """``A g Aᵀ`` of every 2×2 tile of the output gradient ``g`` ``(N, C_out, H_o, W_o)`` in the
    item (its rows from row ``top``; cells past ``g``'s edge zero): ``(16, C_out, S·rows·cols)``,
    by NumPy (the compiled :func:`._winograd_numba.transform_gradient` gives the same bits)."""
    samples, rows = it.batch.stop - it.batch.start, it.rows.stop - it.rows.start
    c_out = g.shape[1]
    cells = scratch.zeros("g_cells", (2, 2, samples, c_out, rows, cols), g.dtype)  # [a, b, ...] = g[2i + a, 2j + b]
    for a in range(2):
        for b in range(2):
            part = g[it.batch, :, top + a::2, b::2][:, :, :rows, :cols]
            cells[a, b, :, :, :part.shape[2], :part.shape[3]] = part
    t = scratch.take("g_rows", (3, 2, samples, c_out, rows, cols), g.dtype)  # the row pass: g0 + g1, g0 − g1, −g1
    np.add(cells[0], cells[1], out=t[0])
    np.subtract(cells[0], cells[1], out=t[1])
    np.negative(cells[1], out=t[2])
    m = scratch.take("gradient", (4, 4, c_out, samples, rows, cols), g.dtype)
    for a, r in enumerate((cells[0], t[0], t[1], t[2])):  # the column pass
        r = r.swapaxes(1, 2)  # (2, C_out, S, rows, cols)
        m[a, 0] = r[0]
        np.add(r[0], r[1], out=m[a, 1])
        np.subtract(r[0], r[1], out=m[a, 2])
        np.negative(r[1], out=m[a, 3])
    return m.reshape(16, c_out, -1)


def grad_weight(xp: np.ndarray, g: np.ndarray, dilation: int = 1) -> np.ndarray:
    """Gradient of :func:`forward` with respect to its weight, ``(C_out, C, 3, 3)``, for the
    padded input ``xp`` ``(N, C, H, W)`` and the output gradient ``g`` ``(N, C_out, H − 2d, W −
    2d)`` (or ``(C_out, C, 3, 3, 3)`` of 3-d ones, where :func:`runs`): ``Gᵀ [Σ_tiles (A g Aᵀ) ⊙
    (Bᵀ d B)] G``, the adjoint of the forward's transforms, so the 16 products per (output,
    input channel) are one matmul over the tiles (2.25× fewer multiply-adds than the windows');
    per dilation phase with a dilation; a 3-d output depth's against its three input slices side
    by side (as :func:`_convolve_volume`). Each thread sums the partial products of a contiguous
    run of items in order, then the runs' sums are added in order: the result does not depend
    on which thread ran first."""
    c, c_out, dtype = xp.shape[1], g.shape[1], xp.dtype
    threads, scratch = thread_count(), Scratch()
    kernels = jit.kernels_for(dtype, "winograd")
    if xp.ndim == 5:
        chunks = _depth_chunks(g.shape[0], g.shape[2])
        jobs = [(chunks, it) for it in _items(len(chunks), g.shape[3:], c + c_out, xp.itemsize, threads,
                                              least=_ITEM_TILES)]
        largest = (min(_DEPTH_CHUNK, g.shape[2]) + 2, max((it.rows.stop - it.rows.start for _, it in jobs), default=0))
        depth, partial = 3, lambda job, out: _volume_weight_partial(xp, g, *job, largest, scratch, kernels, out)
    else:
        jobs = _largest_first([(x, gp, it) for x, gp in _phases(xp, g, dilation)  # none under _ITEM_TILES: K
                               for it in _items(x.shape[0], gp.shape[2:], c + c_out, xp.itemsize, threads,
                                                least=_ITEM_TILES)])
        depth, partial = 1, lambda job, out: _weight_partial(*job, scratch, kernels, out)
    if not jobs:  # an empty batch
        return np.zeros((c_out, c) + (3,) * (xp.ndim - 2), dtype)
    step = -(-len(jobs) // threads)
    shape = (16, c_out, depth * c)

    def run(first: int) -> np.ndarray:
        total = partial(jobs[first], np.empty(shape, dtype))
        for job in jobs[first + 1:first + step]:
            total += partial(job, scratch.take("partial", shape, dtype))
        return total

    summed = functools.reduce(np.add, tile_map(run, range(0, len(jobs), step), threads))
    back = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype)
    gw = matmul(summed.reshape(16, -1).T, np.kron(back, back))  # Gᵀ · G, (C_out·depth·C, 9): the result's order
    if xp.ndim == 4:
        return gw.reshape(c_out, c, 3, 3)
    return np.ascontiguousarray(gw.reshape(c_out, depth, c, 3, 3).swapaxes(1, 2))


def _transformed_pair(x: np.ndarray, gp: np.ndarray, it: _Item, scratch: Scratch, kernels: Any
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The item's transformed input ``(16, C, T)`` of ``x`` (padded) and output gradient ``(16,
    C_out, T)`` of ``gp`` (2-d)."""
    samples, rows, cols = it.batch.stop - it.batch.start, it.rows.stop - it.rows.start, _grid(gp.shape[3])
    v = _transformed_input(x, 0, gp.shape[2:], it, scratch, kernels)
    if kernels is None:
        return v, _transform_gradient(gp, 2 * it.rows.start, it, cols, scratch)
    m = scratch.take("gradient", (4, 4, gp.shape[1], samples, rows, cols), gp.dtype)
    kernels.transform_gradient(gp, it.batch.start, 2 * it.rows.start, m, scratch.take("g_rows", (5, 2, cols), gp.dtype))
    return v, m.reshape(16, gp.shape[1], -1)


def _weight_partial(x: np.ndarray, gp: np.ndarray, it: _Item, scratch: Scratch, kernels: Any,
                    out: np.ndarray) -> np.ndarray:
    """``Σ (A g Aᵀ) ⊙ (Bᵀ d B)`` over a 2-d item's tiles, into ``out`` ``(16, C_out, C)``."""
    v, m = _transformed_pair(x, gp, it, scratch, kernels)
    return matmul(m, v.swapaxes(1, 2), out=out)


def _volume_weight_partial(xp: np.ndarray, g: np.ndarray, chunks: list[tuple[int, int, int]], it: _Item,
                           largest: tuple[int, int], scratch: Scratch, kernels: Any, out: np.ndarray) -> np.ndarray:
    """Into ``out`` ``(16, C_out, 3·C)``: per output depth of the item's chunks, the transformed
    gradient of its slice times the transforms of its three input slices side by side, summed
    in order (the compiled transforms only, as :func:`_convolve_volume`). ``largest``: the most
    slices and rows of tiles of any item."""
    c, c_out, dtype = xp.shape[1], g.shape[1], xp.dtype
    rows, cols = it.rows.stop - it.rows.start, _grid(g.shape[4])
    slices, most = largest  # the largest buffers first: a sample's last chunk, or last rows, may have fewer
    scratch.take("input", (4, 4, slices, c, most, cols), dtype)
    scratch.take("gradient", (4, 4, c_out, 1, most, cols), dtype)
    total = out
    started = False
    for b, first, last in chunks[it.batch]:
        v = _transformed_slices(xp, b, first, last, 0, it, cols, scratch, kernels)
        for d in range(first, last):
            m = scratch.take("gradient", (4, 4, c_out, 1, rows, cols), dtype)
            kernels.transform_gradient(g[b:b + 1, :, d], 0, 2 * it.rows.start, m,
                                       scratch.take("g_rows", (5, 2, cols), dtype))
            stacked = v[:, d - first:d - first + 3].reshape(16, 3 * c, -1).swapaxes(1, 2)
            if not started:
                matmul(m.reshape(16, c_out, -1), stacked, out=total)
                started = True
            else:
                total += matmul(m.reshape(16, c_out, -1), stacked, out=scratch.take("depth", total.shape, dtype))
    return total


def _transformed_slices(x: np.ndarray, b: int, first: int, last: int, pad: int, it: _Item, cols: int,
                        scratch: Scratch, kernels: Any) -> np.ndarray:
    """``Bᵀ d B`` of the depth slices of sample ``b`` of ``x`` ``(N, C, D, H, W)`` (``pad`` zero
    cells before each spatial dim) that output depths ``first <= d < last`` read, over the item's
    rows of ``cols`` tiles: ``(16, last − first + 2, C, rows·cols)``, by the compiled transforms."""
    c, rows = x.shape[1], it.rows.stop - it.rows.start
    v = scratch.take("input", (4, 4, last - first + 2, c, rows, cols), x.dtype)
    kernels.transform_input(x[b].swapaxes(0, 1), first - pad, 2 * it.rows.start - pad, -pad, v,
                            scratch.take("cells", (2, 2, rows + 1, cols + 1), x.dtype),
                            scratch.take("rows", (4, 2, rows, cols + 1), x.dtype), True)
    return v.reshape(16, -1, c, rows * cols)


def _depth_chunks(n: int, depth: int) -> list[tuple[int, int, int]]:
    """``(sample, first, last)`` output depths of each 3-d item: ``_DEPTH_CHUNK`` at a time."""
    return [(b, d, min(d + _DEPTH_CHUNK, depth)) for b in range(n) for d in range(0, depth, _DEPTH_CHUNK)]


# Output depths per item of a 3-d conv: its transformed input holds two slices more, each made
# once (3×3×3 64 at 16×56², N=8, 2 threads: 341 / 334 / 338 ms with 2 / 4 / 8).
_DEPTH_CHUNK = 4


def _convolve_volume(x: np.ndarray, pad: int, u: np.ndarray, y: np.ndarray) -> None:
    """``y`` ``(N, C_out, D_o, H_o, W_o)`` = the correlation of ``x`` ``(N, C, D, H, W)``,
    zero-padded by ``pad`` cells before each spatial dim (and after it as far as ``y`` reaches),
    with the transformed 3×3×3 kernel ``u`` ``(16, C_out, 3·C)`` (:func:`_weight`), by the
    compiled transforms only.

    An output depth slice is the sum of three 2-d convs of input slices, so in the Winograd
    domain one matmul over the three transformed slices side by side (``K = 3·C``). An item
    transforms the slices of ``_DEPTH_CHUNK`` output depths (and two more) of one sample once,
    for a row range of tiles, then runs a matmul and an output transform per depth."""
    n, c, depth = x.shape[:3]
    c_out, out = u.shape[1], y.shape[3:]
    chunks = _depth_chunks(n, y.shape[2])
    if not chunks:  # an empty batch
        return
    scratch, threads = Scratch(), thread_count()
    kernels = jit.kernels("winograd")
    items = _items(len(chunks), out, c + c_out, x.itemsize, threads)
    slices = min(_DEPTH_CHUNK, y.shape[2]) + 2
    most = max(it.rows.stop - it.rows.start for it in items)

    def run(it: _Item) -> None:
        rows, cols = it.rows.stop - it.rows.start, _grid(out[1])
        # the largest buffers first: a sample's last chunk, or last rows, may have fewer
        scratch.take("input", (4, 4, slices, c, most, cols), x.dtype)
        scratch.take("product", (16, c_out, most * cols), x.dtype)
        for b, first, last in chunks[it.batch]:
            v = _transformed_slices(x, b, first, last, pad, it, cols, scratch, kernels)
            for d in range(first, last):
                m = matmul(u, v[:, d - first:d - first + 3].reshape(16, 3 * c, -1),
                           out=scratch.take("product", (16, c_out, rows * cols), x.dtype))
                kernels.transform_output(m.reshape(4, 4, c_out, 1, rows, cols), y[b:b + 1, :, d], 0, 2 * it.rows.start,
                                         scratch.take("tile_row", (4, cols), x.dtype))

    tile_map(run, items, threads)


def runs(dtype: np.dtype, ndim: int) -> bool:
    """Whether :func:`forward` and :func:`grad_input` take inputs of ``ndim`` dims (4 or 5) and
    ``dtype``: 3-d convs only with the compiled transforms (:mod:`.jit`, imported here if they
    run: a failed import leaves them off)."""
    return ndim == 4 or jit.kernels_for(dtype, "winograd") is not None


def _phases(x: np.ndarray, y: np.ndarray, dilation: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The dilation phases of ``x`` and ``y``: views of every ``dilation``-th row and column from
    each offset, the largest first; none where ``y`` has no cells (an output narrower than the
    dilation)."""
    parts = [(x[:, :, p::dilation, q::dilation], y[:, :, p::dilation, q::dilation])
             for p in range(dilation) for q in range(dilation)]
    return [(a, b) for a, b in parts if b.size]


def forward(xp: np.ndarray, w: np.ndarray, y: np.ndarray, dilation: int = 1) -> None:
    """Write into ``y`` ``(N, C_out, H − 2d, W − 2d)`` the convolution of the padded input ``xp``
    ``(N, C, H, W)`` with ``w`` ``(C_out, C, 3, 3)`` (stride 1, dilation ``d``, one group); or of
    ``(N, C, D, H, W)`` with ``(C_out, C, 3, 3, 3)`` (dilation 1, where :func:`runs`).

    With a dilation each phase of ``y`` (its cells ``p + d·i``, ``q + d·j``) is the undilated
    conv of the same phase of ``xp``: a Winograd conv over strided views, no copies."""
    if xp.ndim == 5:
        _convolve_volume(xp, 0, _weight(w), y)
    else:
        _convolve(_phases(xp, y, dilation), 0, _weight(w))


def grad_input(g: np.ndarray, w: np.ndarray, padded: tuple[int, ...], before: int = 0,
               dilation: int = 1) -> np.ndarray:
    """Gradient of :func:`forward` with respect to its padded input ``(N, C, *padded)``, for the
    output gradient ``g`` ``(N, C_out, *(padded − 2d))``: the full correlation of ``g`` (zero
    border of 2d) with the flipped kernel, input and output channels swapped, phase by phase
    with a dilation ``d``; without ``before·d`` cells at the start of each spatial dim and as
    many at the end (``before`` ≤ 2 cells of each phase), which are never made:
    ``(N, C, *(padded − 2·before·d))``."""
    gx = np.empty((g.shape[0], w.shape[1], *(p - 2 * before * dilation for p in padded)), g.dtype)
    if g.ndim == 5:
        _convolve_volume(g, 2 - before, _weight(w, flipped=True), gx)
    else:
        _convolve(_phases(g, gx, dilation), 2 - before, _weight(w, flipped=True))
    return gx


def weight_scratch_elements(n: int, c: int, c_out: int, out: tuple[int, ...], threads: int, item: int,
                            phases: int = 1) -> int:
    """Elements :func:`grad_weight` allocates besides the gradient it returns, for an output
    of spatial size ``out`` (2-d: the first of ``phases`` dilation phases; or 3-d): per busy run
    its item's transformed input and gradient with the transforms' scratch, the partial product
    (3-d: and the next depth's) and the run's sum; the sum of the runs' sums, and (3-d) the
    weight gradient before its final copy."""
    volume = len(out) == 3
    units = n * -(-out[0] // _DEPTH_CHUNK) if volume else n
    count, it = _first_item(units, out[-2:], c + c_out, item, threads, least=_ITEM_TILES)
    jobs = phases * count
    runs = -(-jobs // -(-jobs // threads))
    samples, rows, cols = it.batch.stop - it.batch.start, it.rows.stop - it.rows.start, _grid(out[-1])
    if volume:
        samples = 1  # an item's (sample, depths) one at a time
    tiles = samples * rows * cols
    slices = min(_DEPTH_CHUNK, out[0]) + 2 if volume else 1
    weight = 16 * c_out * c * (3 if volume else 1)
    # the run's sum, a partial product from its second item on, a depth's beside a 3-d item's sum
    sums = 1 + (jobs > threads) + (volume and out[0] > 1)
    per_run = 16 * (slices * c + c_out) * tiles + sums * weight
    if item in (4, 8) and jit.active():
        per_run += 4 * (rows + 1) * (cols + 1) + 8 * rows * (cols + 1) + 10 * cols
    else:
        per_run += samples * c * 4 * (rows + 1) * (cols + 1) + 8 * samples * c * rows * (cols + 1) + 10 * c_out * tiles
    return in_flight(runs, threads) * per_run + (weight if runs > 1 else 0) + (weight * 9 // 16 if volume else 0)


def scratch_elements(n: int, c: int, c_out: int, out: tuple[int, ...], threads: int, item: int,
                     flipped: bool = False, phases: int = 1) -> int:
    """Elements :func:`forward` (or with ``flipped`` :func:`grad_input`) allocates besides its
    result for ``n`` samples of ``c`` channels in, ``c_out`` out and an output of spatial size
    ``out`` (2-d or 3-d) on ``threads`` threads: the transformed weight (made beside the copies of
    the flipped or 3-d weight in tap-major order, which are gone before the items run), and per
    busy thread its item's transform and product, with the NumPy transforms' parity-split tiles
    and the row passes of both transforms, or the compiled transforms' cells of a plane, their
    row pass and a row of tiles. A 3-d item transforms ``_DEPTH_CHUNK`` + 2 slices of one sample;
    a dilated conv's items are those of ``phases`` phases (``out`` the first, the largest)."""
    depth = 1 if len(out) == 2 else min(_DEPTH_CHUNK, out[0])
    units = n if len(out) == 2 else n * -(-out[0] // depth)
    count, it = _first_item(units, out[-2:], c + c_out, item, threads)
    busy = in_flight(phases * count, threads)
    samples, rows, cols = it.batch.stop - it.batch.start, it.rows.stop - it.rows.start, _grid(out[-1])
    if len(out) == 3:
        samples = 1  # an item's (sample, depths) one at a time
    tiles = samples * rows * cols
    slices = depth + 2 if len(out) == 3 else 1
    per_item = 16 * c * slices * tiles + 16 * c_out * tiles
    if item in (4, 8) and jit.active():
        per_item += 4 * (rows + 1) * (cols + 1) + 8 * rows * (cols + 1) + 4 * cols
    else:
        per_item += samples * c * 4 * (rows + 1) * (cols + 1) + 8 * samples * c * rows * (cols + 1) + 8 * c_out * tiles
    taps = 3 ** len(out)
    transformed = 16 * c_out * c * (taps // 9)
    copies = taps * c_out * c if len(out) == 3 or flipped else 0
    return max(transformed + copies, transformed + busy * per_item)
