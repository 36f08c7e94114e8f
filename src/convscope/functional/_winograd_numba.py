"""Compiled Winograd F(2×2, 3×3) transforms (numba), imported by :mod:`.jit` on the first call that runs one.

Not part of the API: :mod:`.winograd` calls these through
:func:`convscope.functional.jit.kernels` (``"winograd"``) for one item (samples, rows of
tiles) at a time, on :func:`~convscope.functional.parallel.tile_map`'s threads (the kernels
release the GIL): the input's transform ``Bᵀ d B``, the output's ``Aᵀ m A`` and the output
gradient's ``A g Aᵀ`` (for the weight gradient). The NumPy transforms make a parity-split copy
of the item's cells, then run a row pass and a column pass over all of it, each a dozen array
operations through memory; these read the input once, a plane at a time in cache, and write
each transformed value once. Every value is the same sum in the same order as the NumPy
transforms' (additions and subtractions only, no fast-math), so both give the same bits.
"""

from __future__ import annotations

from numba import njit

# As the other kernel modules: nogil, cached, IEEE semantics (no contraction or reassociation).
_OPTIONS = {"nogil": True, "fastmath": False, "error_model": "numpy"}


def _compile(fn):  # noqa: ANN001, ANN202
    """``njit`` with an on-disk cache, or without one where no cache directory is writable."""
    try:
        return njit(cache=True, **_OPTIONS)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return njit(cache=False, **_OPTIONS)(fn)


@_compile
def transform_input(x, first, top, left, v, cells, t, slices):  # noqa: ANN001, ANN201
    """``Bᵀ d B`` of every tile of the item into ``v`` ``(4, 4, C, S, rows, cols)`` (with
    ``slices``: ``(4, 4, S, C, rows, cols)``, a volume's depth slices before the channels):
    tile ``(i, j)`` of ``s`` reads the 4×4 cells of ``x[first + s]`` ``(C, H, W)`` from row
    ``top + 2i`` and column ``left + 2j`` (cells outside ``x``, and the whole of an ``s``
    outside it, are zero).

    A plane at a time, in two scratch arrays: ``cells`` ``(2, 2, rows + 1, cols + 1)``, the
    plane's cells split by row and column parity (cell ``(2I + a, 2J + b)`` at ``[a, b, I, J]``),
    so that the row pass reads each of its four rows as one contiguous run; ``t`` ``(4, 2, rows,
    cols + 1)``, the row pass, whose even and odd columns the column pass then reads."""
    count, h, w = x.shape[0], x.shape[2], x.shape[3]
    rows, cols = v.shape[4], v.shape[5]
    samples, channels = (v.shape[2], v.shape[3]) if slices else (v.shape[3], v.shape[2])
    run = rows * (cols + 1)
    for s in range(samples):
        inside = 0 <= first + s < count
        for c in range(channels):
            plane = x[min(max(first + s, 0), count - 1), c]  # read only when inside
            for b in range(2):  # the tile columns J whose cell left + 2J + b is inside x
                lo, hi = max(0, (1 - left - b) // 2), min(cols + 1, (w - left - b + 1) // 2)
                for a in range(2):
                    for row in range(rows + 1):
                        r = top + 2 * row + a
                        if inside and 0 <= r < h and lo < hi:
                            for q in range(lo):
                                cells[a, b, row, q] = 0
                            src = plane[r, left + b + 2 * lo:left + b + 2 * hi - 1:2]
                            for q in range(hi - lo):
                                cells[a, b, row, lo + q] = src[q]
                            for q in range(hi, cols + 1):
                                cells[a, b, row, q] = 0
                        else:
                            for q in range(cols + 1):
                                cells[a, b, row, q] = 0
            for b in range(2):  # the row pass, Bᵀ down each column of the tiles: rows 2i + k
                # flat runs, the next row's cells as their own views: an index q + cols + 1 would
                # need numba's negative-index check, which stops the loop vectorising
                d0, d1 = cells[0, b].reshape(-1), cells[1, b].reshape(-1)
                d0n, d1n = d0[cols + 1:], d1[cols + 1:]
                t0, t1, t2, t3 = t[0, b].reshape(-1), t[1, b].reshape(-1), t[2, b].reshape(-1), t[3, b].reshape(-1)
                for q in range(run):
                    t0[q] = d0[q] - d0n[q]
                    t1[q] = d1[q] + d0n[q]
                    t2[q] = d0n[q] - d1[q]
                    t3[q] = d1[q] - d1n[q]
            for a in range(4):  # the column pass, · B along each row: columns 2j + k
                for i in range(rows):
                    # rows of v indexed whole: C-contiguous runs, so that the loop vectorises
                    if slices:
                        out0, out1, out2, out3 = v[a, 0, s, c, i], v[a, 1, s, c, i], v[a, 2, s, c, i], v[a, 3, s, c, i]
                    else:
                        out0, out1, out2, out3 = v[a, 0, c, s, i], v[a, 1, c, s, i], v[a, 2, c, s, i], v[a, 3, c, s, i]
                    for j in range(cols):
                        out0[j] = t[a, 0, i, j] - t[a, 0, i, j + 1]
                        out1[j] = t[a, 1, i, j] + t[a, 0, i, j + 1]
                        out2[j] = t[a, 0, i, j + 1] - t[a, 1, i, j]
                        out3[j] = t[a, 1, i, j] - t[a, 1, i, j + 1]


@_compile
def transform_output(m, y, first, top, e):  # noqa: ANN001, ANN201
    """``Aᵀ m A`` of every tile of ``m`` ``(4, 4, C_out, S, rows, cols)`` into its 2×2 cells of
    ``y`` ``(N, C_out, H_o, W_o)``: tile ``(i, j)`` of sample ``s`` at ``y[first + s, :, top +
    2i:, 2j:]``, cells past ``y``'s edge dropped. ``e`` ``(4, cols)`` is scratch: a row of
    tiles' column pass."""
    h, w = y.shape[2], y.shape[3]
    channels, samples, rows, cols = m.shape[2], m.shape[3], m.shape[4], m.shape[5]
    pairs = min(cols, w // 2)  # tiles whose two columns are both inside y
    for c in range(channels):
        for s in range(samples):
            plane = y[first + s, c]
            for i in range(rows):
                for a in range(2):
                    r = top + 2 * i + a
                    if r >= h:
                        break
                    for k in range(4):  # Aᵀ down each column of the tiles: their row a
                        m0, m1, m2, m3 = m[0, k, c, s, i], m[1, k, c, s, i], m[2, k, c, s, i], m[3, k, c, s, i]
                        row = e[k]
                        if a == 0:
                            for j in range(cols):
                                row[j] = (m0[j] + m1[j]) + m2[j]
                        else:
                            for j in range(cols):
                                row[j] = (m1[j] - m2[j]) - m3[j]
                    out = plane[r]
                    for j in range(pairs):  # · A along the row
                        out[2 * j] = (e[0, j] + e[1, j]) + e[2, j]
                        out[2 * j + 1] = (e[1, j] - e[2, j]) - e[3, j]
                    if pairs < cols:  # an odd width: the last tile's first column only
                        out[2 * pairs] = (e[0, pairs] + e[1, pairs]) + e[2, pairs]


@_compile
def transform_gradient(g, first, top, m, t):  # noqa: ANN001, ANN201
    """``A g Aᵀ`` of every 2×2 tile of the output gradient into ``m`` ``(4, 4, C_out, S, rows,
    cols)``: tile ``(i, j)`` of sample ``s`` holds the cells of ``g[first + s]`` ``(C_out, H_o,
    W_o)`` from row ``top + 2i`` and column ``2j`` (zero past ``g``'s edge). ``t`` ``(5, 2, cols)``
    is scratch: a tile row's two rows of cells split by column parity, then their row pass."""
    h, w = g.shape[2], g.shape[3]
    channels, samples, rows, cols = m.shape[2], m.shape[3], m.shape[4], m.shape[5]
    full = min(cols, w // 2)  # tiles whose two columns are both inside g
    for s in range(samples):
        for c in range(channels):
            plane = g[first + s, c]
            for i in range(rows):
                for a in range(2):
                    r = top + 2 * i + a
                    for j in range(cols):
                        t[a, 0, j] = 0
                        t[a, 1, j] = 0
                    if r < h:
                        for j in range(full):
                            t[a, 0, j] = plane[r, 2 * j]
                            t[a, 1, j] = plane[r, 2 * j + 1]
                        if full < cols:  # an odd width: the last tile's first column only
                            t[a, 0, full] = plane[r, 2 * full]
                for j in range(cols):  # the row pass, A down each column: g0, g0 + g1, g0 − g1, −g1
                    for b in range(2):
                        t[2, b, j] = t[0, b, j] + t[1, b, j]
                        t[3, b, j] = t[0, b, j] - t[1, b, j]
                        t[4, b, j] = -t[1, b, j]
                for a in range(4):  # the column pass, · Aᵀ along each row
                    k = 0 if a == 0 else a + 1
                    out0, out1, out2, out3 = m[a, 0, c, s, i], m[a, 1, c, s, i], m[a, 2, c, s, i], m[a, 3, c, s, i]
                    for j in range(cols):
                        out0[j] = t[k, 0, j]
                        out1[j] = t[k, 0, j] + t[k, 1, j]
                        out2[j] = t[k, 0, j] - t[k, 1, j]
                        out3[j] = -t[k, 1, j]
