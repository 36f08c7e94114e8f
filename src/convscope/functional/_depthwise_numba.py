"""Compiled depthwise convolution kernels (numba), imported by :mod:`.jit` on the first depthwise call.

Not part of the API: :mod:`.conv` calls these through :func:`convscope.functional.jit.kernels`,
on blocks of rows that :func:`~convscope.functional.parallel.tile_map` shares out over its
threads (the kernels release the GIL, and are never ``parallel=True``: the thread count
follows ``threadpoolctl`` like the rest of the engine).

Every spatial rank runs as 3-d: ``(N, C, L)`` is ``(N, C, 1, 1, L)`` and ``(N, C, H, W)`` is
``(N, C, 1, H, W)``. The arrays are C-contiguous:

- ``x``  ``(N·G, P)``: the padded input's planes, flattened (``P = Dp·Hp·Wp``), one row per
  (sample, channel);
- ``w``  ``(G, M, T)``: the weight, ``M`` outputs per channel (the channel multiplier), ``T``
  taps; a tap ``t`` reads the plane at ``offsets[t]`` from a window's first cell;
- ``y``/``g`` ``(N·G, M, Do, Ho, Wo)``: the output, or the output gradient.

Sums run in the arrays' dtype (float32 stays float32, like torch), without fast-math: IEEE
semantics, NaN and infinity propagate. Each output cell's sum is in a fixed order whatever the
blocks and threads, so results do not depend on the thread count or timing.

Two ways through a plane's windows (:func:`_plane`): one row of windows at a time (any stride),
or, for stride 1, ``rows`` rows of windows at a time as one run of flat positions (``Wp``
apart), the cells past each row's last window computed and dropped: long vector loops for
narrow planes (14² → 14 windows a row, 222 flat positions for all of them).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# nogil: the blocks run on tile_map's threads; cache: compiled once, kept in __pycache__ (or the
# user's cache dir); no fastmath: IEEE semantics, no reassociation or contraction.
_OPTIONS = {"nogil": True, "fastmath": False}


def _compile(fn):  # noqa: ANN001, ANN202
    """``njit`` with an on-disk cache, or without one where no cache directory is writable
    (numba refuses ``cache=True`` then; the kernels compile again in every process)."""
    try:
        return njit(cache=True, **_OPTIONS)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return njit(cache=False, **_OPTIONS)(fn)


@_compile
def _taps(out, x, start, offsets, weights):  # noqa: ANN001, ANN202
    """``out[q] = Σₜ weights[t]·x[start + offsets[t] + q]`` for every ``q``, summed in tap
    order: the first nine taps in one pass when there are nine or more (a 3×3 kernel writes
    ``out`` once), then three a pass (one load and store of ``out`` for three products).

    The reads are contiguous views, one loop per kind of view: ``x[a + q]`` keeps numba's
    negative-index check in the loop, and a loop over a view that may be strided is compiled
    for strides; either stops it vectorising (5-10× slower)."""
    length, taps = out.size, offsets.size
    t = 0
    if taps >= 9:
        s0, s1, s2 = start + offsets[0], start + offsets[1], start + offsets[2]
        s3, s4, s5 = start + offsets[3], start + offsets[4], start + offsets[5]
        s6, s7, s8 = start + offsets[6], start + offsets[7], start + offsets[8]
        x0, x1, x2 = x[s0:s0 + length], x[s1:s1 + length], x[s2:s2 + length]
        x3, x4, x5 = x[s3:s3 + length], x[s4:s4 + length], x[s5:s5 + length]
        x6, x7, x8 = x[s6:s6 + length], x[s7:s7 + length], x[s8:s8 + length]
        w0, w1, w2, w3, w4 = weights[0], weights[1], weights[2], weights[3], weights[4]
        w5, w6, w7, w8 = weights[5], weights[6], weights[7], weights[8]
        for q in range(length):
            out[q] = (w0 * x0[q] + w1 * x1[q] + w2 * x2[q] + w3 * x3[q] + w4 * x4[q] + w5 * x5[q] + w6 * x6[q]
                      + w7 * x7[q] + w8 * x8[q])
        t = 9
    else:
        for q in range(length):
            out[q] = 0
    while t < taps:
        a = start + offsets[t]
        wa = weights[t]
        if taps - t >= 3:
            b, c = start + offsets[t + 1], start + offsets[t + 2]
            wb, wc = weights[t + 1], weights[t + 2]
            xa, xb, xc = x[a:a + length], x[b:b + length], x[c:c + length]
            for q in range(length):
                out[q] = out[q] + wa * xa[q] + wb * xb[q] + wc * xc[q]
            t += 3
        else:
            xa = x[a:a + length]
            for q in range(length):
                out[q] = out[q] + wa * xa[q]
            t += 1


@_compile
def _copy(dst, src):  # noqa: ANN001, ANN202
    """``dst[:] = src[:dst.size]`` as an explicit loop: numba's slice copies cost ~20 ns more
    a row (inlined by LLVM, like a written-out loop)."""
    for q in range(dst.size):
        dst[q] = src[q]


@_compile
def _plane(out, x, pitch_d, pitch_h, stride_d, stride_h, stride_w, offsets, weights, rows, wide):  # noqa: ANN001, ANN202
    """One plane of windows ``out`` ``(Do, Ho, Wo)`` over the flat plane ``x`` (pitches
    ``pitch_d``, ``pitch_h``): a row at a time straight into ``out``, or through ``wide``:
    ``rows`` rows at a time as one run of flat positions (stride 1), or a row at every
    position, every ``stride_w``-th kept (strided: contiguous reads beat gathers 2-4×)."""
    depth, height, width = out.shape
    flat = out.reshape(-1)
    span = (width - 1) * stride_w + 1
    for od in range(depth):
        oh = 0
        while oh < height:
            count = min(rows, height - oh)
            start = od * stride_d * pitch_d + oh * stride_h * pitch_h
            first = (od * height + oh) * width
            direct = count == 1 and stride_w == 1
            dst = flat[first:first + width] if direct else wide[:(count - 1) * pitch_h + span]
            _taps(dst, x, start, offsets, weights)
            if not direct and stride_w == 1:
                for i in range(count):
                    _copy(flat[first + i * width:first + (i + 1) * width], wide[i * pitch_h:])
            elif not direct:
                _copy(flat[first:first + width], wide[:span:stride_w])
            oh += count


@_compile
def _wide(rows, pitch_h, width, stride_w):  # noqa: ANN001, ANN202
    """Elements of :func:`_plane`'s ``wide`` buffer."""
    return max((rows - 1) * pitch_h + width, (width - 1) * stride_w + 1)


@_compile
def forward(x, w, y, first, last, pitch_d, pitch_h, stride_d, stride_h, stride_w, offsets, rows):  # noqa: ANN001, ANN201
    """``y[r]`` for the rows ``first <= r < last``: every output of the row's channel."""
    groups, per_out = w.shape[0], w.shape[1]
    wide = np.empty(_wide(rows, pitch_h, y.shape[4], stride_w), y.dtype)
    for r in range(first, last):
        g = r % groups
        for m in range(per_out):
            _plane(y[r, m], x[r], pitch_d, pitch_h, stride_d, stride_h, stride_w, offsets, w[g, m], rows, wide)


@_compile
def grad_input_gather(g, w, gx, first, last, reach_d, reach_h, reach_w, offsets, rows):  # noqa: ANN001, ANN201
    """Stride 1: the padded input gradient ``gx`` ``(N·G, Dp, Hp, Wp)`` of the rows
    ``first <= r < last`` as a forward conv of the output gradient, zero-padded by the kernel's
    reach, with the flipped kernel: ``w`` ``(G, M·T)`` holds every output's flipped taps and
    ``offsets`` their cells in the padded gradient ``(M, Dp + reach_d, …)`` (one plane per
    output: the outputs of a channel sum as more taps). Only for finite weights: a window's
    padding cells add ``0·w`` where the conv has no product (torch: none)."""
    per_out = g.shape[1]
    depth, height, width = g.shape[2], g.shape[3], g.shape[4]
    groups = w.shape[0]
    # the gradient's windows at [reach, reach + windows), zeros around them and up to the input
    # gradient's size + reach (more than windows + 2·reach after a transposed conv's output_padding)
    padded = np.zeros((per_out, gx.shape[1] + reach_d, gx.shape[2] + reach_h, gx.shape[3] + reach_w), g.dtype)
    flat = padded.reshape(-1)
    pitch_h = padded.shape[3]
    pitch_d = padded.shape[2] * pitch_h
    wide = np.empty(_wide(rows, pitch_h, gx.shape[3], 1), g.dtype)
    for r in range(first, last):
        for m in range(per_out):
            for od in range(depth):
                for oh in range(height):
                    _copy(padded[m, reach_d + od, reach_h + oh, reach_w:reach_w + width], g[r, m, od, oh])
        _plane(gx[r], flat, pitch_d, pitch_h, 1, 1, 1, offsets, w[r % groups], rows, wide)


@_compile
def grad_input_scatter(g, w, gx, first, last, pitch_d, pitch_h, stride_d, stride_h, stride_w, offsets, exact):  # noqa: ANN001, ANN201
    """The padded input gradient ``gx`` ``(N·G, P)`` of the rows ``first <= r < last``: each
    output gradient row added onto the cells its windows read, tap by tap. Strided rows are
    spread over every position (zeros between) and added contiguously, which adds ``0·w`` to
    cells no window reads; ``exact`` adds each product to its cell alone instead (slower: for
    non-finite weights, where ``0·inf`` would be NaN and torch adds nothing)."""
    groups, per_out, taps = w.shape[0], w.shape[1], w.shape[2]
    depth, height, width = g.shape[2], g.shape[3], g.shape[4]
    span = (width - 1) * stride_w + 1
    spread = np.zeros(span, g.dtype)
    for r in range(first, last):
        target = gx[r]
        for i in range(target.size):
            target[i] = 0
        wr = w[r % groups]
        for m in range(per_out):
            for od in range(depth):
                for oh in range(height):
                    row = g[r, m, od, oh]
                    start = od * stride_d * pitch_d + oh * stride_h * pitch_h
                    if stride_w > 1 and not exact:
                        _copy(spread[:span:stride_w], row)
                    for t in range(taps):
                        a = start + offsets[t]
                        wt = wr[m, t]
                        if stride_w == 1:
                            cells = target[a:a + width]
                            for q in range(width):
                                cells[q] = cells[q] + wt * row[q]
                        elif not exact:
                            run = target[a:a + span]
                            for q in range(span):
                                run[q] = run[q] + wt * spread[q]
                        else:
                            strided = target[a:a + span:stride_w]
                            for q in range(width):
                                strided[q] = strided[q] + wt * row[q]


@_compile
def grad_weight(x, g, gw, first, last, pitch_d, pitch_h, stride_d, stride_h, stride_w, offsets, rows):  # noqa: ANN001, ANN201
    """``gw`` ``(G, M, T)`` for the channels ``first <= c < last``, summed over all samples:
    per tap, lane ``q`` of a row, or of a run of flat positions (stride 1), or of a row at every
    position (strided), sums its products over the samples and rows, contiguous reads; then
    the lanes of real windows are added up (the other lanes hold products of no window and are
    left out, so a non-finite input cell there changes nothing)."""
    groups, per_out, taps = gw.shape[0], gw.shape[1], gw.shape[2]
    samples = g.shape[0] // groups
    depth, height, width = g.shape[2], g.shape[3], g.shape[4]
    rows = min(rows, height)
    span = (width - 1) * stride_w + 1
    across = pitch_h if rows > 1 else span  # a row's lanes (rows > 1: stride 1, pitch_h ≥ width)
    length = rows * across  # the lanes of the last row past its windows too: the fold reads whole rows
    lanes = np.empty((taps, length), g.dtype)
    spread = np.zeros(length, g.dtype)  # output-gradient rows at their flat positions, zeros between
    fold = np.empty(across, g.dtype)
    zero = spread[0]
    for c in range(first, last):
        for m in range(per_out):
            for t in range(taps):
                lane = lanes[t]
                for q in range(length):
                    lane[q] = 0
            for n in range(samples):
                r = n * groups + c
                xr = x[r]
                for od in range(depth):
                    oh = 0
                    while oh < height:
                        count = min(rows, height - oh)
                        start = od * stride_d * pitch_d + oh * stride_h * pitch_h
                        if count == 1 and stride_w == 1:
                            src = g[r, m, od, oh]
                        elif stride_w == 1:  # rows at a time
                            for i in range(count):
                                _copy(spread[i * pitch_h:i * pitch_h + width], g[r, m, od, oh + i])
                            src = spread[:(count - 1) * pitch_h + width]
                        else:  # a strided row at every position
                            _copy(spread[:span:stride_w], g[r, m, od, oh])
                            src = spread[:span]
                        size = src.size
                        for t in range(taps):
                            lane, a = lanes[t, :size], start + offsets[t]
                            cells = xr[a:a + size]
                            for q in range(size):
                                lane[q] = lane[q] + src[q] * cells[q]
                        oh += count
            for t in range(taps):  # the rows' lanes added up lane by lane (whole rows: vector adds), then a row's
                _copy(fold[:across], lanes[t, :across])
                for i in range(1, rows):
                    row = lanes[t, i * across:(i + 1) * across]
                    for q in range(across):
                        fold[q] = fold[q] + row[q]
                total = zero
                for q in range(width):
                    total += fold[q * stride_w]
                gw[c, m, t] = total
