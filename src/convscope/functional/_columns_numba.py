"""Compiled columns and their adjoint (numba), imported by :mod:`.jit` on the first call that runs one.

Not part of the API: :mod:`.conv` calls these through :func:`convscope.functional.jit.kernels`
(``"columns"``) for one tile at a time, on :func:`~convscope.functional.parallel.tile_map`'s
threads (the kernels release the GIL):

- :func:`planar_columns`, the planar path's columns. NumPy copies a tile's columns through
  strided views, one inner loop per (channel, tap, row): a 7×7 stem's tile of 28 rows of 112
  windows is 4,116 loops of 448 bytes, and the loop's own overhead is as long as its copy. Here
  each run is one ``memcpy``; the values are the same copies, so both give the same bits.
- :func:`split_phases`, the planar path's split of its input into stride phases, for a stride
  of 2 along the last dim: each input row read once and dealt out to its two phases' rows, a
  vector loop. NumPy copies each phase through a strided view, an element at a time (the
  stem's 8×3×224², split into four phases: 0.60 → 0.12 ms on one thread).
- :func:`add_taps`, col2im: the products of every tap added onto the cells they belong to (a
  strided conv's input gradient, a transposed conv's output), per channel through its stride
  phases' planes in cache, then interleaved into the output's rows. Each cell's sum runs in tap
  order, without fast-math.
"""

from __future__ import annotations

import numpy as np

from ._depthwise_numba import _compile, _copy  # the same options: nogil, cached, no fast-math


@_compile
def planar_columns(x, first, samples, offsets, starts, width, cols):  # noqa: ANN001, ANN201
    """Fill ``cols``, ``(C, T, samples, R·width)`` flattened (one dimensionality for every conv:
    one compiled specialisation per dtype): for channel ``c``, tap ``t``, sample ``b`` and run
    ``k``, the ``width`` cells of ``x[first + b, c]`` ``(N, C, L)`` (flat planes) from
    ``offsets[t] + starts[k]``."""
    channels, length = x.shape[1], x.shape[2]
    src, dst = x.reshape(-1), cols
    at = 0
    for c in range(channels):
        for t in range(offsets.size):
            for b in range(samples):
                base = ((first + b) * channels + c) * length + offsets[t]
                for k in range(starts.size):
                    _copy(dst, at, src, base + starts[k], width)
                    at += width


@_compile
def split_phases(x, out, rows, ranges, before, first, last):  # noqa: ANN001, ANN201
    """For the planes ``first <= p < last`` of ``x`` ``(P, R, W)`` (C-contiguous; ``R`` the rows,
    all the dims but the last): ``out[p, rows[r, ρ] + j] = x[p, r, ρ + 2·j − before]`` for the
    phases ``ρ`` 0 and 1 along W, ``ranges[ρ, 0] <= j < ranges[ρ, 1]``, and the rows ``r`` with
    ``rows[r, ρ] >= 0`` (``out`` ``(P, L)``, flat), every other cell of the planes zero. Where
    both phases have a cell ``j`` (and the row goes to both), one loop deals out the pair
    (through views: flat unsigned indices ran 2.5× slower here)."""
    lo, hi = max(ranges[0, 0], ranges[1, 0]), min(ranges[0, 1], ranges[1, 1])
    for p in range(first, last):
        planes = out[p]
        planes[:] = 0  # in cache, where np.zeros would clear the whole array in memory first
        for r in range(x.shape[1]):
            src = x[p, r]
            for rho in range(2):  # the cells of one phase only, one at a time
                if rows[r, rho] >= 0:
                    at, start, stop = rows[r, rho], ranges[rho, 0], ranges[rho, 1]
                    for j in range(start, min(lo, stop)):
                        planes[at + j] = src[rho + 2 * j - before]
                    for j in range(max(hi, start), stop):
                        planes[at + j] = src[rho + 2 * j - before]
            if hi > lo and rows[r, 0] >= 0 and rows[r, 1] >= 0:
                even = planes[rows[r, 0] + lo:rows[r, 0] + hi]
                odd = planes[rows[r, 1] + lo:rows[r, 1] + hi]
                pairs = src[2 * lo - before:2 * hi - before]
                for m in range(hi - lo):
                    even[m] = pairs[2 * m]
                    odd[m] = pairs[2 * m + 1]


@_compile
def _phase_span(out, k, s, d, b, size):  # noqa: ANN001, ANN202
    """Along one dim (``out`` cells, stride ``s``, dilation ``d``, ``b`` cells cropped before,
    ``size`` windows): tap ``k``'s products land in phase ``p`` (cells ``p + s·r``) at row
    ``r = i + shift`` of window ``i``, for the windows ``lo <= i < hi``."""
    off = k * d - b
    p = off % s
    shift = (off - p) // s
    return p, shift, max(0, -shift), min(size, (out - p + s - 1) // s - shift)


@_compile
def add_taps(z, y, kernel, size, stride, dilation, before):  # noqa: ANN001, ANN201
    """``y`` ``(C, D, H, W)`` (C-contiguous) from the products ``z`` ``(C, T, d·h·w)``: tap ``t``
    (``kernel`` ``(kd, kh, kw)`` in row-major order) of window ``(i, j, l)`` (``size`` windows per
    dim) adds onto cell ``(i·s + t·dil − before)`` per dim when that is inside ``y``. Per channel
    its stride phases' planes (zeroed) gather the taps' rows, in tap order, then the output
    rows interleave them."""
    (kd_, kh_, kw_), (d_, h_, w_), (sd, sh, sw) = kernel, size, stride
    od_, oh_, ow_ = y.shape[1], y.shape[2], y.shape[3]
    rd, rh, rw = (od_ + sd - 1) // sd, (oh_ + sh - 1) // sh, (ow_ + sw - 1) // sw
    plane = rd * rh * rw
    buf = np.zeros(sd * sh * sw * plane, z.dtype)
    zero = buf[0]
    taps, zf = kd_ * kh_ * kw_, z.reshape(-1)
    for c in range(y.shape[0]):
        for q in range(np.uint64(buf.size)):
            buf[q] = zero
        t = 0
        for kd in range(kd_):
            pd, fd, d0, d1 = _phase_span(od_, kd, sd, dilation[0], before[0], d_)
            for kh in range(kh_):
                ph, fh, h0, h1 = _phase_span(oh_, kh, sh, dilation[1], before[1], h_)
                for kw in range(kw_):
                    pw, fw, w0, w1 = _phase_span(ow_, kw, sw, dilation[2], before[2], w_)
                    base, n = ((pd * sh + ph) * sw + pw) * plane, np.uint64(max(0, w1 - w0))
                    for i in range(d0, d1):
                        for j in range(h0, h1):
                            src = np.uint64(((c * taps + t) * d_ + i) * h_ * w_ + j * w_ + w0)
                            dst = np.uint64(base + ((i + fd) * rh + j + fh) * rw + w0 + fw)
                            for q in range(n):
                                buf[dst + q] = buf[dst + q] + zf[src + q]
                    t += 1
        out = y[c].reshape(-1)
        for a in range(od_):
            for b in range(oh_):
                o = np.uint64((a * oh_ + b) * ow_)
                row = np.uint64(((a % sd) * sh + b % sh) * sw * plane + ((a // sd) * rh + b // sh) * rw)
                if sw == 1:
                    for m in range(np.uint64(ow_)):
                        out[o + m] = buf[row + m]
                elif sw == 2:  # two phases side by side: a vector loop
                    other = row + np.uint64(plane)
                    for m in range(np.uint64(ow_ // 2)):
                        out[o + 2 * m] = buf[row + m]
                        out[o + 2 * m + 1] = buf[other + m]
                    if ow_ % 2:
                        out[o + ow_ - 1] = buf[row + ow_ // 2]
                else:
                    for m in range(ow_):
                        out[o + m] = buf[row + (m % sw) * plane + m // sw]
