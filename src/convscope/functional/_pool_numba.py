"""Compiled pooling and batch-norm kernels (numba), imported by :mod:`.jit` on the first call that runs one.

Not part of the API: :mod:`.pool` and :mod:`.norm` call these through
:func:`convscope.functional.jit.kernels` (``"pool"``), on blocks of planes that
:func:`~convscope.functional.parallel.tile_map` shares out over its threads (the kernels
release the GIL, and are never ``parallel=True``).

Every spatial rank runs as 3-d: a plane ``(L,)`` is ``(1, 1, L)`` and ``(H, W)`` is
``(1, H, W)``. The arrays are C-contiguous:

- ``x``/``grad`` ``(P, D, H, W)``: the input planes (``P = N·C``), or their gradient;
- ``out``/``g`` ``(P, Do, Ho, Wo)``: the windows' results, or their gradient;
- ``divisor`` ``(Do, Ho, Wo)``: what each window's sum is divided by (the same for every plane).

Sums run in the arrays' dtype (float32 stays float32, like torch), without fast-math: IEEE
semantics, NaN and infinity propagate. Every cell sums in torch's order (a window's real cells
in raster order; a gradient cell's windows in raster order), whatever the blocks and threads,
so results do not depend on the thread count and match torch's float32 bits. The one exception
is training batch norm (:func:`norm_forward`, :func:`norm_backward`), whose per-channel sums
run in float64 (as torch's do) with the additions reassociated within a plane so that they
vectorise (:func:`_plane_sum`, :func:`_plane_squares`, :func:`_plane_sums`): still one fixed
order whatever the blocks and threads, NaN and infinity still propagating.

Average pooling copies a plane once into zero-padded rows, split into the phases of the
stride along H (:func:`_split`); every tap is then one contiguous run over them for all the
windows of a depth, which vectorises (the positions between windows along W, with a stride,
are computed and dropped: fewer, longer loops beat strided ones 2-3×).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._stream_numba import LINE, fence, lines, norm_grad_line, norm_line

# nogil: the blocks run on tile_map's threads; cache: compiled once, kept in __pycache__ (or the
# user's cache dir); no fastmath: IEEE semantics, no reassociation or contraction; numpy's error
# model: a float division is IEEE's (numba's default checks for zero in every division, which
# also stops loops with one from vectorising).
_OPTIONS = {"nogil": True, "fastmath": False, "error_model": "numpy"}


def _compile(fn, **options):  # noqa: ANN001, ANN003, ANN202
    """``njit`` with an on-disk cache, or without one where no cache directory is writable
    (numba refuses ``cache=True`` then; the kernels compile again in every process)."""
    options = _OPTIONS | options
    try:
        return njit(cache=True, **options)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return njit(cache=False, **options)(fn)


def _inline(fn):  # noqa: ANN001, ANN202
    """A helper compiled into each caller."""
    return _compile(fn, inline="always")


def _reassociated(fn):  # noqa: ANN001, ANN202
    """:func:`_compile` with additions in any order (so that a sum vectorises), nothing else of
    fast-math: NaN and infinity still propagate."""
    return _compile(fn, fastmath={"reassoc"})


@_compile
def scatter_winners(g, winner, starts, reached, grad, first, last):  # noqa: ANN001, ANN201
    """Max pooling's backward for the planes ``first <= p < last``: ``grad[p]`` ``(∏input,)``
    zeroed, then each window's gradient ``g[p, o]`` added onto its winning cell
    ``starts[o] + winner[p, o]``, windows in raster order (torch's order: cells that several
    windows pick sum as in torch). ``g`` and ``winner`` are ``(P, ∏out)``; a window that
    ``reached`` no real cell sends nothing."""
    windows = starts.size
    for p in range(first, last):
        target, values, won = grad[p], g[p], winner[p]
        for i in range(target.size):
            target[i] = 0
        for o in range(windows):
            if reached[o]:
                cell = starts[o] + np.int64(won[o])
                target[cell] = target[cell] + values[o]


@_compile
def _rows(stride, extent):  # noqa: ANN001, ANN202
    """Shape of a plane's row buffer ``(s_h, Dp, ⌈Hp/s_h⌉, Wp)``: the padded plane (``extent``
    cells per dim: input, padding and the ceil-mode overhang), its rows split into the
    ``s_h`` phases of the stride along H."""
    return stride[1], extent[0], (extent[1] + stride[1] - 1) // stride[1], extent[2]


@_compile
def _exchange(rows, plane, padding, into_rows):  # noqa: ANN001, ANN202
    """Row ``(d, h)`` of ``plane`` ``(D, H, W)`` and its padded place in ``rows``: row
    ``h + p_h`` of phase ``(h + p_h) % s_h``, from column ``p_w``; copied into ``rows`` (the
    padding is left alone) or, not ``into_rows``, back into ``plane``."""
    step = rows.shape[0]
    for d in range(plane.shape[0]):
        for h in range(plane.shape[1]):
            hp = h + padding[1]
            cells = plane[d, h]
            run = rows[hp % step, d + padding[0], hp // step, padding[2]:padding[2] + cells.size]
            if into_rows:
                for w in range(cells.size):
                    run[w] = cells[w]
            else:
                for w in range(cells.size):
                    cells[w] = run[w]


@_compile
def _add_runs(acc, src, base, starts):  # noqa: ANN001, ANN202
    """``acc[q] = acc[q] + src[base + starts[0] + q] + src[base + starts[1] + q] + …``, added
    left to right (the order of ``starts``), three runs a pass (one load and store of ``acc``
    for three).

    The reads are contiguous slices: ``src[a + q]`` would keep numba's negative-index check in
    the loop, which stops it vectorising."""
    length, t = acc.size, 0
    while t < starts.size:
        a = base + starts[t]
        if starts.size - t >= 3:
            b, c = base + starts[t + 1], base + starts[t + 2]
            xa, xb, xc = src[a:a + length], src[b:b + length], src[c:c + length]
            for q in range(length):
                acc[q] = acc[q] + xa[q] + xb[q] + xc[q]
            t += 3
        else:
            xa = src[a:a + length]
            for q in range(length):
                acc[q] = acc[q] + xa[q]
            t += 1


@_compile
def _gather(dst, src, step):  # noqa: ANN001, ANN202
    """``dst[j] = src[j·step]`` for every ``j`` of ``dst`` (unsigned indices: no negative-index check)."""
    stride = np.uint64(step)
    for j in range(dst.size):
        dst[j] = src[np.uint64(j) * stride]


@_compile
def _spread(dst, src, step):  # noqa: ANN001, ANN202
    """``dst[j·step] = src[j]`` for every ``j`` of ``src``."""
    stride = np.uint64(step)
    for j in range(src.size):
        dst[np.uint64(j) * stride] = src[j]


@_compile
def _taps(kernel, stride, pitch):  # noqa: ANN001, ANN202
    """Per tap ``(kh, kw)`` of a depth, in raster order: the row phase it reads and its flat
    offset there from a window's first cell (rows ``pitch`` apart)."""
    count = kernel[1] * kernel[2]
    phase, offset = np.empty(count, np.int64), np.empty(count, np.int64)
    for t in range(count):
        kh, kw = t // kernel[2], t % kernel[2]
        phase[t], offset[t] = kh % stride[1], (kh // stride[1]) * pitch + kw
    return phase, offset


@_compile
def window_sums(x, out, divisor, kernel, stride, padding, extent, first, last):  # noqa: ANN001, ANN201
    """Average pooling's forward for the planes ``first <= p < last``: each window's cells summed
    in raster order from 0, divided by ``divisor``.

    The padding adds zeros (``s + 0`` is ``s`` bit for bit: a sum that starts at +0 is never
    −0), so every tap is one run over the padded rows for all windows of a depth (window
    ``(oh, ow)`` at ``oh·Wp + ow·s_w``); the positions between windows (along a row with a
    stride, past a row's last window) are computed and dropped: contiguous runs vectorise."""
    out_h, out_w = out.shape[2], out.shape[3]
    rows = np.zeros(_rows(stride, extent), x.dtype)
    flat = rows.reshape(-1)
    pitch, step, depth_size = rows.shape[3], stride[2], rows.shape[2] * rows.shape[3]
    phase, offset = _taps(kernel, stride, pitch)
    starts = phase * (rows.shape[1] * depth_size) + offset  # in the whole buffer, from depth 0
    total = np.empty((out_h - 1) * pitch + (out_w - 1) * step + 1, x.dtype)
    for p in range(first, last):
        _exchange(rows, x[p], padding, True)
        for od in range(out.shape[1]):
            total[:] = 0
            for kd in range(kernel[0]):
                _add_runs(total, flat, (od * stride[0] + kd) * depth_size, starts)
            for oh in range(out_h):
                row, by = out[p, od, oh], divisor[od, oh]
                _gather(row, total[oh * pitch:], step)
                for q in range(out_w):
                    row[q] = row[q] / by[q]


@_compile
def window_shares(g, grad, divisor, kernel, stride, padding, extent, first, last):  # noqa: ANN001, ANN201
    """Average pooling's backward for the planes ``first <= p < last``: each window's share
    ``g / divisor`` added onto its cells, then the real cells into ``grad[p]``.

    The shares are spread out like the forward's windows, zeros between and around (+0
    leaves a sum that started at +0 unchanged); per depth of the padded rows and row phase,
    one pass adds to every cell the run of shares of each tap of the phase. A cell's shares
    add in window raster order (torch's order): depth by depth, then the taps from the last (a
    cell's windows through later taps come first)."""
    out_h, out_w = g.shape[2], g.shape[3]
    rows = np.empty(_rows(stride, extent), grad.dtype)
    cells = rows.reshape(-1)
    pitch, step = rows.shape[3], stride[2]
    phase, offset = _taps(kernel, stride, pitch)
    reach = offset.max()
    share = np.zeros(reach + rows.shape[2] * pitch, grad.dtype)  # the windows' shares from ``reach`` on
    spread = share[reach:]
    part = np.empty(out_w, grad.dtype)
    # per row phase, where its taps read ``share`` for a cell, the last tap first
    reads = [reach - offset[phase == r][::-1] for r in range(stride[1])]
    for p in range(first, last):
        cells[:] = 0
        for od in range(g.shape[1]):
            for oh in range(out_h):
                row, by = g[p, od, oh], divisor[od, oh]
                for q in range(out_w):
                    part[q] = row[q] / by[q]
                _spread(spread[oh * pitch:], part, step)
            for kd in range(kernel[0]):
                for r in range(stride[1]):
                    _add_runs(rows[r, od * stride[0] + kd].reshape(-1), share, 0, reads[r])
        _exchange(rows, grad[p], padding, False)


@_compile
def scale_shift(x, scale, shift, out, first, last, stream):  # noqa: ANN001, ANN201
    """Eval batch norm for the channels ``first <= c < last`` of every sample: ``out = x·scale[c]
    + shift[c]`` in one pass (a product rounded, then a sum rounded: the NumPy kernels' two
    passes, bit for bit; :func:`_norm_run` with no centring, ``(x − 0)·1`` being ``x``). ``x``,
    ``out`` ``(N, C, per_channel)``; ``stream``: the output's whole lines stored past the caches
    (:mod:`._stream_numba`)."""
    samples, channels, cells = x.shape
    xf, of = x.reshape(-1), out.reshape(-1)
    one, zero = x.dtype.type(1), x.dtype.type(0)
    for n in range(samples):
        for c in range(first, last):
            at = (n * channels + c) * cells
            _norm_run(of, xf, at, at + cells, zero, one, scale[c], shift[c], stream)
    if stream:
        fence()


@_reassociated
def _plane_sum(x, start, count):  # noqa: ANN001, ANN202
    """``Σ x`` over ``count`` elements from ``start`` of the flat ``x``, in float64 (called, never
    inlined: see :func:`_plane_sums`)."""
    total = 0.0
    at = np.uint64(start)
    for q in range(np.uint64(count)):
        total += np.float64(x[at + q])
    return total


@_reassociated
def _plane_squares(x, start, count, centre):  # noqa: ANN001, ANN202
    """``Σ (x − centre)²`` over ``count`` elements from ``start`` of the flat ``x``, in float64."""
    total = 0.0
    at = np.uint64(start)
    for q in range(np.uint64(count)):
        d = np.float64(x[at + q]) - centre
        total += d * d
    return total


@_compile
def norm_forward(x, weight, bias, eps, out, xhat, stats, first, last, stream):  # noqa: ANN001, ANN201
    """Training batch norm's forward for the channels ``first <= c < last`` of ``x`` ``(N, C,
    S)``: the channel's mean, then the mean square of its cells less that mean (the biased
    variance), as float64 sums sample by sample, rounded into ``stats[0, c]`` and ``stats[1, c]``
    (``x``'s dtype); then, the channel's planes read again while in cache, ``x̂ = (x − mean)·invstd``
    with ``invstd = 1/√(var + eps)`` rounded as NumPy rounds it, and ``out = x̂·weight[c] +
    bias[c]`` (``weight`` empty: ``out = x̂``), ``xhat`` (not empty) ``= x̂`` as well;
    ``stream``: the outputs' whole lines stored past the caches (:mod:`._stream_numba`)."""
    samples, channels, cells = x.shape
    xf, of, hf = x.reshape(-1), out.reshape(-1), xhat.reshape(-1)
    one, zero = x.dtype.type(1), x.dtype.type(0)
    for c in range(first, last):
        total = 0.0
        for n in range(samples):
            total += _plane_sum(xf, (n * channels + c) * cells, cells)
        centre = total / (samples * cells)
        squares = 0.0
        for n in range(samples):
            squares += _plane_squares(xf, (n * channels + c) * cells, cells, centre)
        mean, var = x.dtype.type(centre), x.dtype.type(squares / (samples * cells))
        stats[0, c], stats[1, c] = mean, var
        invstd = x.dtype.type(one / np.sqrt(var + x.dtype.type(eps)))
        a, b = (weight[c], bias[c]) if weight.size else (one, zero)
        for n in range(samples):
            at = (n * channels + c) * cells
            if hf.size:
                _norm_run(hf, xf, at, at + cells, mean, invstd, one, zero, stream)
            _norm_run(of, xf, at, at + cells, mean, invstd, a, b, stream)
    if stream:
        fence()


@_inline
def _norm_run(dst, src, first, last, mean, invstd, a, b, stream):  # noqa: ANN001, ANN202
    """``dst[q] = ((src[q] − mean)·invstd)·a + b`` for ``first <= q < last``; ``stream``: the
    whole lines streamed, the head and tail plain stores."""
    if not stream:
        _norm_cells(dst, src, first, last, mean, invstd, a, b)
        return
    start, stop = lines(dst, first, last)
    for q in range(start, stop, LINE // dst.itemsize):
        norm_line(dst, src, q, mean, invstd, a, b)
    _norm_cells(dst, src, first, start, mean, invstd, a, b)
    _norm_cells(dst, src, stop, last, mean, invstd, a, b)


@_inline
def _norm_cells(dst, src, first, last, mean, invstd, a, b):  # noqa: ANN001, ANN202
    """``dst[q] = ((src[q] − mean)·invstd)·a + b`` for ``first <= q < last`` (unsigned: the loop
    vectorises)."""
    for q in range(np.uint64(first), np.uint64(last)):
        dst[q] = ((src[q] - mean) * invstd) * a + b


@_reassociated
def _plane_sums(g, xhat, start, count):  # noqa: ANN001, ANN202
    """``(Σ g, Σ g·x̂)`` over ``count`` elements from ``start`` of the flat ``g`` and ``xhat``,
    in float64. Called, never inlined: its ``reassoc`` flag (add in any order, so the loop
    vectorises) is its own, not its caller's."""
    total, along = 0.0, 0.0
    at = np.uint64(start)
    for q in range(np.uint64(count)):
        v = np.float64(g[at + q])
        total += v
        along += v * np.float64(xhat[at + q])
    return total, along


@_compile
def norm_backward(g, xhat, scale, count, gx, sums, first, last, stream):  # noqa: ANN001, ANN201
    """Training batch norm's backward for the channels ``first <= c < last`` of ``g`` and
    ``xhat`` ``(N, C, S)``: ``sums[0, c] = Σ g``, ``sums[1, c] = Σ g·x̂`` (float64, sample by
    sample), then (``gx`` not empty) ``gx = ((g − x̂·Σ(g·x̂)/count) − Σg/count)·scale[c]``, the
    channel's planes read again while in cache; ``stream``: ``gx``'s whole lines stored past
    the caches (:mod:`._stream_numba`)."""
    samples, channels, cells = g.shape
    gf, hf, of = g.reshape(-1), xhat.reshape(-1), gx.reshape(-1)
    for c in range(first, last):
        total, along = 0.0, 0.0
        for n in range(samples):
            t, a = _plane_sums(gf, hf, (n * channels + c) * cells, cells)
            total += t
            along += a
        sums[0, c], sums[1, c] = total, along
        if of.size:
            mean_g, mean_along, k = g.dtype.type(total / count), g.dtype.type(along / count), scale[c]
            for n in range(samples):
                at = (n * channels + c) * cells
                if not stream:  # (flat indices: views of each plane cost 20 % on 14² planes)
                    _norm_grad_cells(of, gf, hf, at, at + cells, mean_along, mean_g, k)
                    continue
                start, stop = lines(of, at, at + cells)
                for q in range(start, stop, LINE // of.itemsize):
                    norm_grad_line(of, gf, hf, q, mean_along, mean_g, k)
                _norm_grad_cells(of, gf, hf, at, start, mean_along, mean_g, k)
                _norm_grad_cells(of, gf, hf, stop, at + cells, mean_along, mean_g, k)
    if stream:
        fence()


@_inline
def _norm_grad_cells(dst, g, xhat, first, last, along, mean, scale):  # noqa: ANN001, ANN202
    """``dst[q] = ((g[q] − x̂[q]·along) − mean)·scale`` for ``first <= q < last`` (unsigned: the
    loop vectorises)."""
    for q in range(np.uint64(first), np.uint64(last)):
        dst[q] = ((g[q] - xhat[q] * along) - mean) * scale
