"""Compiled depthwise and grouped convolution kernels (numba), imported by :mod:`.jit` on the first call.

Not part of the API: :mod:`.conv` calls these through :func:`convscope.functional.jit.kernels`,
on blocks of rows that :func:`~convscope.functional.parallel.tile_map` shares out over its
threads (the kernels release the GIL, and are never ``parallel=True``: the thread count
follows ``threadpoolctl`` like the rest of the engine).

Every spatial rank runs as 3-d: ``(N, C, L)`` is ``(N, C, 1, 1, L)`` and ``(N, C, H, W)`` is
``(N, C, 1, H, W)``. The arrays are C-contiguous:

- ``x``  ``(N·G, K·S)``: the input's planes, unpadded (``S = D·H·W`` cells), one row per
  (sample, group), ``K`` planes a row (a depthwise conv's 1, a grouped conv's channels per
  group; the input gradient's: the ``M`` output gradients);
- ``w``  ``(G, M, K·T)``: the weight, ``M`` outputs per channel (the channel multiplier), ``T``
  taps per plane; a tap ``t`` reads the padded plane at ``offsets[t]`` from a window's first cell;
- ``y``/``g`` ``(N·G, M, Do, Ho, Wo)``: the output, or the output gradient.

The zero padding is not in ``x``: a row's planes are copied into a zeroed buffer of the padded
size, ``before`` cells in (a negative ``before`` crops), a row of cells at a time as the
windows come to it (:func:`_fill`: the copies go along with the reads, in cache). The windows
then read the buffer's contiguous runs, padding included, with the padding's products (``w·0``:
NaN for an infinite weight, as a padded copy gives). Without padding the rows are copied all
the same: reading them in place, the buffer or the input chosen at run time, measured 30 %
slower at 14². A gradient with respect to a padded input comes back without its padding the
same way (:func:`grad_input_scatter`), or from a conv whose windows are the input cells.

Sums run in the arrays' dtype (float32 stays float32, like torch), without fast-math: IEEE
semantics, NaN and infinity propagate. The weight gradients' dot products alone may add in any
order (:func:`_reassociated`: the order vectorisation picks, fixed for a build). Each output
cell's sum is in a fixed order whatever the blocks and threads, so results do not depend on the
thread count or timing.

Two ways through a plane's windows (:func:`_run`): one row of windows at a time (any stride),
or, for stride 1, ``rows`` rows of windows at a time as one run of flat positions (``Wp``
apart), the cells past each row's last window computed and dropped: long vector loops for
narrow planes (14² → 14 windows a row, 222 flat positions for all of them).

The loops index flat arrays with unsigned integers: numba checks a signed index for
wrap-around (a negative index counts from the end), which stops a loop vectorising, and every
slice of an array costs a reference count (tens of ns a plane at 14²).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.core.cgutils import raw_memcpy  # semi-internal: by name, so a numba without it fails the import
from numba.extending import intrinsic

# nogil: the blocks run on tile_map's threads; cache: compiled once, kept in __pycache__ (or the
# user's cache dir); no fastmath: IEEE semantics, no reassociation or contraction.
_OPTIONS = {"nogil": True, "fastmath": False}


def _compile(fn, inline: str = "never", **options):  # noqa: ANN001, ANN003, ANN202
    """``njit`` with an on-disk cache, or without one where no cache directory is writable
    (numba refuses ``cache=True`` then; the kernels compile again in every process)."""
    options = _OPTIONS | options
    try:
        return njit(cache=True, inline=inline, **options)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return njit(cache=False, inline=inline, **options)(fn)


def _inline(fn):  # noqa: ANN001, ANN202
    """A helper compiled into each caller (no call, no array arguments passed per plane)."""
    return _compile(fn, "always")


def _reassociated(fn):  # noqa: ANN001, ANN202
    """:func:`_compile` with additions in any order (so that a sum vectorises), nothing else of
    fast-math (NaN and infinity propagate); called, never inlined: the flag is its own."""
    return _compile(fn, fastmath={"reassoc"})


@intrinsic
def _copy(typingctx, dst, at, src, start, count):  # noqa: ANN001, ANN202, ARG001
    """``dst[at:at + count] = src[start:start + count]`` for 1-d C-contiguous arrays of one
    dtype, ranges inside both and apart: LLVM's ``memcpy`` (a 14-cell row in ~2 ns, against ~5
    for a loop, which is scalar below one vector's length)."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        dst_arr, at_v, src_arr, start_v, count_v = args
        item = context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype))
        to = builder.gep(context.make_array(signature.args[0])(context, builder, dst_arr).data, [at_v])
        frm = builder.gep(context.make_array(signature.args[2])(context, builder, src_arr).data, [start_v])
        raw_memcpy(builder, to, frm, count_v, item)
        return context.get_dummy_value()

    return types.void(dst, types.intp, src, types.intp, types.intp), codegen


@_inline
def _starts(start, offsets, t):  # noqa: ANN001, ANN202
    """The nine reads ``start + offsets[t + i]`` (unsigned) of a nine-tap pass."""
    o = offsets
    return (np.uint64(start + o[t]), np.uint64(start + o[t + 1]), np.uint64(start + o[t + 2]),
            np.uint64(start + o[t + 3]), np.uint64(start + o[t + 4]), np.uint64(start + o[t + 5]),
            np.uint64(start + o[t + 6]), np.uint64(start + o[t + 7]), np.uint64(start + o[t + 8]))


@_inline
def _nine(weights, at):  # noqa: ANN001, ANN202
    """``weights[at:at + 9]`` as nine scalars."""
    w = weights
    return w[at], w[at + 1], w[at + 2], w[at + 3], w[at + 4], w[at + 5], w[at + 6], w[at + 7], w[at + 8]


@_inline
def _taps(out, at, x, start, offsets, weights, first, length):  # noqa: ANN001, ANN202
    """``out[at + q] = Σₜ weights[first + t]·x[start + offsets[t] + q]`` for ``q < length``,
    summed in tap order: nine taps a pass while nine remain (a 3×3 kernel writes ``out`` once;
    a group's eight 3×3 planes in eight passes), then three a pass (one load and store of
    ``out`` for three products). Indices unsigned: every read is inside ``x``."""
    n, taps, o = np.uint64(length), offsets.size, np.uint64(at)
    t = 0
    if taps < 9:
        for q in range(n):
            out[o + q] = 0
    while taps - t >= 9:
        s0, s1, s2, s3, s4, s5, s6, s7, s8 = _starts(start, offsets, t)
        w0, w1, w2, w3, w4, w5, w6, w7, w8 = _nine(weights, first + t)
        if t == 0:
            for q in range(n):
                out[o + q] = (w0 * x[s0 + q] + w1 * x[s1 + q] + w2 * x[s2 + q] + w3 * x[s3 + q] + w4 * x[s4 + q]
                              + w5 * x[s5 + q] + w6 * x[s6 + q] + w7 * x[s7 + q] + w8 * x[s8 + q])
        else:
            for q in range(n):
                out[o + q] = (out[o + q] + w0 * x[s0 + q] + w1 * x[s1 + q] + w2 * x[s2 + q] + w3 * x[s3 + q]
                              + w4 * x[s4 + q] + w5 * x[s5 + q] + w6 * x[s6 + q] + w7 * x[s7 + q] + w8 * x[s8 + q])
        t += 9
    while t < taps:
        sa, wa = np.uint64(start + offsets[t]), weights[first + t]
        if taps - t >= 3:
            sb, sc = np.uint64(start + offsets[t + 1]), np.uint64(start + offsets[t + 2])
            wb, wc = weights[first + t + 1], weights[first + t + 2]
            for q in range(n):
                out[o + q] = out[o + q] + wa * x[sa + q] + wb * x[sb + q] + wc * x[sc + q]
            t += 3
        else:
            for q in range(n):
                out[o + q] = out[o + q] + wa * x[sa + q]
            t += 1


@_inline
def _taps_pair(out, at, at2, x, start, offsets, weights, first, first2, length):  # noqa: ANN001, ANN202
    """:func:`_taps` for two outputs of the same planes, ``out[at + q]`` with the weights from
    ``first`` and ``out[at2 + q]`` from ``first2``: each input vector loaded once for both
    (a 3×3 group of 8 channels at 28²: 18 → 13 µs). Each output's sum in :func:`_taps`' order,
    so a channel gets the same bits in a pair or alone."""
    n, taps, o, o2 = np.uint64(length), offsets.size, np.uint64(at), np.uint64(at2)
    t = 0
    if taps < 9:
        for q in range(n):
            out[o + q] = 0
            out[o2 + q] = 0
    while taps - t >= 9:
        s0, s1, s2, s3, s4, s5, s6, s7, s8 = _starts(start, offsets, t)
        w0, w1, w2, w3, w4, w5, w6, w7, w8 = _nine(weights, first + t)
        v0, v1, v2, v3, v4, v5, v6, v7, v8 = _nine(weights, first2 + t)
        if t == 0:
            for q in range(n):
                a0, a1, a2, a3, a4 = x[s0 + q], x[s1 + q], x[s2 + q], x[s3 + q], x[s4 + q]
                a5, a6, a7, a8 = x[s5 + q], x[s6 + q], x[s7 + q], x[s8 + q]
                out[o + q] = w0 * a0 + w1 * a1 + w2 * a2 + w3 * a3 + w4 * a4 + w5 * a5 + w6 * a6 + w7 * a7 + w8 * a8
                out[o2 + q] = v0 * a0 + v1 * a1 + v2 * a2 + v3 * a3 + v4 * a4 + v5 * a5 + v6 * a6 + v7 * a7 + v8 * a8
        else:
            for q in range(n):
                a0, a1, a2, a3, a4 = x[s0 + q], x[s1 + q], x[s2 + q], x[s3 + q], x[s4 + q]
                a5, a6, a7, a8 = x[s5 + q], x[s6 + q], x[s7 + q], x[s8 + q]
                out[o + q] = (out[o + q] + w0 * a0 + w1 * a1 + w2 * a2 + w3 * a3 + w4 * a4 + w5 * a5 + w6 * a6
                              + w7 * a7 + w8 * a8)
                out[o2 + q] = (out[o2 + q] + v0 * a0 + v1 * a1 + v2 * a2 + v3 * a3 + v4 * a4 + v5 * a5 + v6 * a6
                               + v7 * a7 + v8 * a8)
        t += 9
    while t < taps:
        k = 3 if taps - t >= 3 else 1
        tb, tc = t + (k - 1) // 2, t + k - 1  # the second and third taps (k = 3), or t again
        sa, sb, sc = np.uint64(start + offsets[t]), np.uint64(start + offsets[tb]), np.uint64(start + offsets[tc])
        wa, wb, wc = weights[first + t], weights[first + tb], weights[first + tc]
        va, vb, vc = weights[first2 + t], weights[first2 + tb], weights[first2 + tc]
        if k == 3:
            for q in range(n):
                a, b, c = x[sa + q], x[sb + q], x[sc + q]
                out[o + q] = out[o + q] + wa * a + wb * b + wc * c
                out[o2 + q] = out[o2 + q] + va * a + vb * b + vc * c
        else:
            for q in range(n):
                a = x[sa + q]
                out[o + q] = out[o + q] + wa * a
                out[o2 + q] = out[o2 + q] + va * a
        t += k


@_inline
def _fill(buffer, x, start, planes, size, before, padded, done, last):  # noqa: ANN001, ANN202
    """Copy rows of cells of ``planes`` planes of ``x`` (from ``start``) into the zero-padded
    planes of ``buffer``, ``before`` cells in (cells past the padded size are dropped): those
    in the padded rows (``Dp·Hp`` a plane) from the ``done``-th to the ``last``-th, so that the
    copies go along with the reads. Returns the rows done."""
    (depth, height, width), (bd, bh, bw), (dp, hp, wp) = size, before, padded
    w0 = max(0, -bw)
    count = min(width, wp - bw) - w0
    last = min(dp * hp - 1, last)
    while done <= last and count > 0:
        d, h = (0, done) if dp == 1 else (done // hp, done % hp)
        end = min(hp, h + last - done + 1)  # this slice's rows to do
        if bd <= d < depth + bd:
            for k in range(planes):
                for row in range(max(h, bh), min(end, height + bh)):
                    _copy(buffer, ((k * dp + d) * hp + row) * wp + w0 + bw, x,
                          start + ((k * depth + d - bd) * height + row - bh) * width + w0, count)
        done += end - h
    return done


@_inline
def _run(y, cell, cell2, x, begin, pitch_h, stride_w, width, count, offsets, weights, first, first2, wide):  # noqa: ANN001, ANN202
    """``count`` rows of windows of ``width``, from ``y[cell]`` on, over the flat padded plane
    of ``x`` from ``begin``: one row straight into ``y``, or through ``wide``: rows at a time
    as one run of flat positions (stride 1), or a row at every position, every ``stride_w``-th
    kept (strided: contiguous reads beat gathers 2-4×). With ``cell2 >= 0`` a second output
    too, into ``y[cell2]`` with the weights from ``first2`` (:func:`_taps_pair`; ``wide``
    holds two runs)."""
    pair = cell2 >= 0
    if count == 1 and stride_w == 1:
        if pair:
            _taps_pair(y, cell, cell2, x, begin, offsets, weights, first, first2, width)
        else:
            _taps(y, cell, x, begin, offsets, weights, first, width)
        return
    run = (count - 1) * pitch_h + (width - 1) * stride_w + 1
    if pair:
        _taps_pair(wide, 0, run, x, begin, offsets, weights, first, first2, run)
    else:
        _taps(wide, 0, x, begin, offsets, weights, first, run)
    for at, start in ((cell, 0), (cell2, run)):
        if at < 0:
            break
        if stride_w == 1:
            for i in range(count):
                _copy(y, at + i * width, wide, start + i * pitch_h, width)
        else:
            for q in range(width):
                y[at + q] = wide[start + q * stride_w]


@_compile
def _wide(rows, pitch_h, width, stride_w):  # noqa: ANN001, ANN202
    """Elements of :func:`_run`'s ``wide`` buffer."""
    return max((rows - 1) * pitch_h + width, (width - 1) * stride_w + 1)


@_compile
def forward(x, w, y, first, last, size, before, padded, stride, offsets, rows):  # noqa: ANN001, ANN201
    """``y[r]`` for the rows ``first <= r < last``: every output of the row's channel, a sum
    over the row's ``K`` planes (each padded to ``padded``) of all ``K·T`` taps, ``rows`` rows
    of windows at a time (1: a row at a time). The input gradient of a stride-1 conv is this
    too: a conv of the output gradient's ``M`` planes, padded by the kernel's reach less the
    conv's padding, with the flipped kernel (the outputs of a channel sum as more taps)."""
    groups, per_out, taps = w.shape
    depth, height, width = y.shape[2], y.shape[3], y.shape[4]
    (stride_d, stride_h, stride_w), pitch_h = stride, padded[2]
    pitch_d = padded[1] * pitch_h
    row_cells, planes = x.shape[1], x.shape[1] // (size[0] * size[1] * size[2])
    reach = (offsets[taps // planes - 1] + (width - 1) * stride_w) // pitch_h  # padded rows a row of windows reads
    xf, wf, yf = x.reshape(-1), w.reshape(-1), y.reshape(-1)
    buffer = np.zeros(planes * padded[0] * pitch_d, x.dtype)
    cells = depth * height * width
    wide = np.empty((2 if per_out > 1 else 1) * _wide(rows, pitch_h, width, stride_w), y.dtype)
    for r in range(first, last):
        done = 0
        for m in range(0, per_out, 2):  # two outputs a pass (their input vectors loaded once), an odd last alone
            cell, weight = (r * per_out + m) * cells, ((r % groups) * per_out + m) * taps
            cell2 = cell + cells if m + 1 < per_out else -1
            for od in range(depth):
                oh = 0
                while oh < height:
                    count = min(rows, height - oh)
                    begin = od * stride_d * pitch_d + oh * stride_h * pitch_h
                    done = _fill(buffer, xf, r * row_cells, planes, size, before, padded, done,
                                 od * stride_d * padded[1] + (oh + count - 1) * stride_h + reach)
                    _run(yf, cell, cell2, buffer, begin, pitch_h, stride_w, width, count, offsets, wf, weight,
                         weight + taps, wide)
                    cell += count * width
                    if cell2 >= 0:
                        cell2 += count * width
                    oh += count


@_compile
def grad_input_scatter(g, w, gx, first, last, size, before, padded, stride, offsets, exact):  # noqa: ANN001, ANN201
    """The input gradient ``gx`` ``(N·G, S)`` (without the padding) of the rows ``first <= r <
    last``: each output gradient row added onto the padded plane's cells its windows read, tap
    by tap, then the input cells copied out. Strided rows are spread over every position (zeros
    between) and added contiguously, which adds ``0·w`` to cells no window reads; ``exact`` adds
    each product to its cell alone instead (slower: for non-finite weights, where ``0·inf``
    would be NaN and torch adds nothing)."""
    groups, per_out, taps = w.shape
    depth, height, width = g.shape[2], g.shape[3], g.shape[4]
    (stride_d, stride_h, stride_w), pitch_h = stride, padded[2]
    pitch_d = padded[1] * pitch_h
    span = (width - 1) * stride_w + 1
    gf, wf, gxf = g.reshape(-1), w.reshape(-1), gx.reshape(-1)
    target = np.empty(padded[0] * pitch_d, g.dtype)
    spread = np.zeros(span, g.dtype)
    n, jump = np.uint64(width), np.uint64(stride_w)
    for r in range(first, last):
        for i in range(target.size):
            target[i] = 0
        for m in range(per_out):
            row = np.uint64((r * per_out + m) * depth * height * width)
            for od in range(depth):
                for oh in range(height):
                    start = od * stride_d * pitch_d + oh * stride_h * pitch_h
                    if stride_w > 1 and not exact:
                        for q in range(n):
                            spread[q * jump] = gf[row + q]
                    for t in range(taps):
                        a, wt = np.uint64(start + offsets[t]), wf[((r % groups) * per_out + m) * taps + t]
                        if stride_w == 1:
                            for q in range(n):
                                target[a + q] = target[a + q] + wt * gf[row + q]
                        elif not exact:
                            for q in range(np.uint64(span)):
                                target[a + q] = target[a + q] + wt * spread[q]
                        else:
                            for q in range(n):
                                target[a + q * jump] = target[a + q * jump] + wt * gf[row + q]
                    row += n
        for d in range(size[0]):
            for h in range(size[1]):
                _copy(gxf, r * gx.shape[1] + (d * size[1] + h) * size[2], target,
                      ((d + before[0]) * padded[1] + h + before[1]) * pitch_h + before[2], size[2])


@_inline
def _sample(g, row, count, width, pitch_h, stride_w, spread):  # noqa: ANN001, ANN202
    """One sample's output gradient over a run: its row in ``g`` (from ``row``), or its ``count``
    rows at their flat positions in ``spread`` (zeros between), or a strided row at every
    position. Returns the array and the run's first cell."""
    if stride_w == 1 and count > 1:  # rows at a time
        for i in range(count):
            _copy(spread, i * pitch_h, g, row + i * width, width)
        return spread, 0
    if stride_w > 1:  # a strided row at every position
        for q in range(width):
            spread[q * stride_w] = g[row + q]
        return spread, 0
    return g, row


@_inline
def _add_three(gw, c, m, t, t1, t2, d0, d1, d2):  # noqa: ANN001, ANN202
    """``gw[c, m, ·] +=`` a pass's three dot products for its taps ``t``, ``t1``, ``t2``, each
    tap once (a last pass repeats the last tap)."""
    gw[c, m, t] += d0
    if t1 > t:
        gw[c, m, t1] += d1
    if t2 > t1:
        gw[c, m, t2] += d2


@_reassociated
def _tap_dots(a, at, b, s0, s1, s2, count, zero):  # noqa: ANN001, ANN202
    """``Σ a[at + q]·b[sᵢ + q]`` for ``q < count`` and the three starts ``sᵢ`` (four loads for
    three products), in ``zero``'s dtype (the arrays'), the additions in whatever order
    vectorises (a fixed one for a build)."""
    t0, t1, t2 = zero, zero, zero
    u, u0, u1, u2 = np.uint64(at), np.uint64(s0), np.uint64(s1), np.uint64(s2)
    for q in range(np.uint64(count)):
        v = a[u + q]
        t0 += v * b[u0 + q]
        t1 += v * b[u1 + q]
        t2 += v * b[u2 + q]
    return t0, t1, t2


@_compile
def grad_weight(x, g, gw, first, last, size, before, padded, stride, offsets, rows):  # noqa: ANN001, ANN201
    """``gw`` ``(G, M, T)`` for the channels ``first <= c < last``, summed over all samples:
    per sample its padded plane, per run of windows (``rows`` rows as one run of flat
    positions, stride 1; or a row at every position, strided) its output gradient at their
    flat positions (zeros between), then per tap one dot product with the plane's run from the
    tap's offset (:func:`_tap_dots`, three taps a pass). Samples and runs add in a fixed order
    (whatever the blocks and threads). The zeros between windows meet input cells: a
    non-finite cell there gives NaN where torch takes no product (the caller checks)."""
    groups, per_out, taps = gw.shape
    samples = g.shape[0] // groups
    depth, height, width = g.shape[2], g.shape[3], g.shape[4]
    (stride_d, stride_h, stride_w), pitch_h = stride, padded[2]
    pitch_d = padded[1] * pitch_h
    rows = min(rows, height)
    span = (width - 1) * stride_w + 1
    xf, gf, cells = x.reshape(-1), g.reshape(-1), depth * height * width
    buffer = np.zeros(padded[0] * pitch_d, x.dtype)
    spread = np.zeros(max(rows * pitch_h, span), g.dtype)  # a run's windows at their flat positions
    zero = spread[0]
    for c in range(first, last):
        for m in range(per_out):
            for t in range(taps):
                gw[c, m, t] = zero
        for n in range(samples):
            r = n * groups + c
            _fill(buffer, xf, r * x.shape[1], 1, size, before, padded, 0, padded[0] * padded[1])
            for m in range(per_out):
                row = (r * per_out + m) * cells
                for od in range(depth):
                    oh = 0
                    while oh < height:
                        count = min(rows, height - oh)
                        begin = od * stride_d * pitch_d + oh * stride_h * pitch_h
                        ours, at = _sample(gf, row, count, width, pitch_h, stride_w, spread)
                        run = (count - 1) * pitch_h + width if stride_w == 1 else span
                        for t in range(0, taps, 3):  # three taps a pass (the last pass repeats the last tap)
                            t1, t2 = min(t + 1, taps - 1), min(t + 2, taps - 1)
                            d0, d1, d2 = _tap_dots(ours, at, buffer, begin + offsets[t], begin + offsets[t1],
                                                   begin + offsets[t2], run, zero)
                            _add_three(gw, c, m, t, t1, t2, d0, d1, d2)
                        row += count * width
                        oh += count


@_reassociated
def _dots(a, a2, b, s0, s1, s2, count, zero):  # noqa: ANN001, ANN202
    """``Σ a[q]·b[sᵢ + q]`` and ``Σ a2[q]·b[sᵢ + q]`` for ``q < count`` and the three starts
    ``sᵢ`` (five loads for six products), in ``zero``'s dtype (the arrays'), the additions in
    whatever order vectorises (a fixed one for a build)."""
    t0, t1, t2, p0, p1, p2 = zero, zero, zero, zero, zero, zero
    u0, u1, u2 = np.uint64(s0), np.uint64(s1), np.uint64(s2)
    for q in range(np.uint64(count)):
        v, v2 = a[q], a2[q]
        b0, b1, b2 = b[u0 + q], b[u1 + q], b[u2 + q]
        t0 += v * b0
        t1 += v * b1
        t2 += v * b2
        p0 += v2 * b0
        p1 += v2 * b1
        p2 += v2 * b2
    return t0, t1, t2, p0, p1, p2


@_compile
def grad_weight_planes(x, g, gw, first, last, size, before, padded, offsets):  # noqa: ANN001, ANN201
    """A stride-1 conv's weight gradient with ``K`` planes a row: ``gw`` ``(G, M, K·T)`` for the
    groups ``first <= c < last``, summed over all samples. Per (sample, group) the row's planes
    padded (all of them), per output its gradient's rows at their flat positions (zeros past
    each row's windows), then per tap one dot product with the planes' run from the tap's offset.
    Samples, depths and taps add in a fixed order (whatever the blocks and threads); a dot
    product's own additions are reassociated (:func:`_dots`). The zeros between rows meet
    padded cells: a non-finite cell there gives NaN where torch takes no product (the caller
    checks)."""
    groups, per_out, taps = gw.shape
    samples = g.shape[0] // groups
    depth, height, width = g.shape[2], g.shape[3], g.shape[4]
    pitch_h = padded[2]
    pitch_d = padded[1] * pitch_h
    planes = x.shape[1] // (size[0] * size[1] * size[2])
    xf, gf = x.reshape(-1), g.reshape(-1)
    buffer = np.zeros(planes * padded[0] * pitch_d, x.dtype)
    length = (height - 1) * pitch_h + width  # a depth's windows as one run of flat positions
    spread, spread2 = np.zeros(length, g.dtype), np.zeros(length, g.dtype)
    zero = spread[0]
    for c in range(first, last):
        for m in range(per_out):
            for t in range(taps):
                gw[c, m, t] = zero
        for n in range(samples):
            r = n * groups + c
            _fill(buffer, xf, r * x.shape[1], planes, size, before, padded, 0, padded[0] * padded[1])
            for m in range(0, per_out, 2):  # two outputs a pass (an odd last one twice)
                m2 = min(m + 1, per_out - 1)
                row, row2 = (r * per_out + m) * depth * height * width, (r * per_out + m2) * depth * height * width
                for od in range(depth):
                    for i in range(height):
                        _copy(spread, i * pitch_h, gf, row + i * width, width)
                        _copy(spread2, i * pitch_h, gf, row2 + i * width, width)
                    begin = od * pitch_d
                    for t in range(0, taps, 3):  # three taps a pass (the last pass repeats the last tap)
                        t1, t2 = min(t + 1, taps - 1), min(t + 2, taps - 1)
                        d0, d1, d2, e0, e1, e2 = _dots(spread, spread2, buffer, begin + offsets[t], begin + offsets[t1],
                                                       begin + offsets[t2], length, zero)
                        _add_three(gw, c, m, t, t1, t2, d0, d1, d2)
                        if m2 > m:
                            _add_three(gw, c, m2, t, t1, t2, e0, e1, e2)
                    row, row2 = row + height * width, row2 + height * width
