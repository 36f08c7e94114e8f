"""Convolution and transposed convolution in 1, 2 and 3 spatial dims, as ``torch.nn.functional``.

Three private kernels do all the arithmetic, each written once for every spatial rank:

- ``_forward``:      padded input, weight         -> output
- ``_grad_input``:   output gradient, weight      -> padded-input gradient
- ``_grad_weight``:  padded input, output gradient -> weight gradient

A convolution runs ``_forward``, and the other two backward. A transposed convolution *is*
the input gradient of a convolution with the same weight, so it runs ``_grad_input``
forward and ``_forward`` + ``_grad_weight`` backward; there is no second implementation.

The matmul paths work on *column matrices* ``(G, N·P, taps·Cg)``: a row per (sample,
window position), a column per (kernel tap, input channel), so the whole batch is one
matmul per group instead of a loop of small ones (small spatial sizes stay fast). The
operands are laid out channels-last once (:func:`_layout`), which makes a tile of rows a
strided view. Each kernel takes one of three paths, chosen by the weight's shape:

- depthwise (one input channel per group): a loop over the kernel taps, each a
  multiply-add of a strided slice of the input; no matmul;
- direct (1×1 kernel, stride 1): the channels-last input already is the column matrix;
- im2col: the windows are copied into a reused column buffer, one tile of the batch (or
  of one sample's rows) at a time so the buffer stays near ``_COLUMN_BYTES``; the input
  gradient goes back onto the input through :func:`scatter_windows` (col2im, a loop over
  kernel taps).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..errors import ShapeError
from ..rules import (
    NO_FIELD,
    Constraint,
    Cost,
    Field,
    Saved,
    Sizes,
    at_least,
    cost_rule,
    field_rule,
    nbytes,
    numel,
    saved_rule,
    size_rule,
    with_spatial,
)
from ..tensor import Tensor, make_result
from .pad import constant_pad_array
from .windows import check_input_rank, kernel_taps, ntuple, scatter_windows, sliding_windows, span

__all__ = [
    "conv1d", "conv2d", "conv3d", "conv_output_shape",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "conv_transpose_output_shape",
]

_CONV_RANK = {"conv1d": 1, "conv2d": 2, "conv3d": 3}
_TRANSPOSE_RANK = {"conv_transpose1d": 1, "conv_transpose2d": 2, "conv_transpose3d": 3}

# Column buffer per tile: small enough to stay in the last-level cache between the im2col
# copy and the matmul that reads it (ResNet's 3×3 layers run 1.2-1.5× faster than with
# 64 MB tiles), big enough for the matmul to stay efficient.
_COLUMN_BYTES = 8 << 20

IntOrTuple = int | Sequence[int]


# --- shape rules ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Geometry:
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int


@dataclass(frozen=True)
class _Plan:
    """A validated call, in terms of the convolution whose kernels run.

    For a convolution, ``before``/``after`` is the zero padding added to the input; for a
    transposed convolution, the cells cropped from the full output. ``windows`` is the
    number of window positions (the conv's output, the transposed conv's input) and
    ``padded`` the spatial size the windows slide over.
    """

    geometry: _Geometry
    batched: bool
    before: tuple[int, ...]
    after: tuple[int, ...]
    windows: tuple[int, ...]
    padded: tuple[int, ...]
    output_shape: tuple[int, ...]
    attrs: dict


def _validate(op: str, transposed: bool, input_shape: Sequence[int], weight_shape: Sequence[int],
              stride: IntOrTuple, dilation: IntOrTuple, groups: int, bias_shape: Sequence[int] | None,
              dtypes: Sequence[Any]) -> tuple[_Geometry, int]:
    """Checks shared by convolution and transposed convolution; returns the geometry and C_out."""
    ranks = _TRANSPOSE_RANK if transposed else _CONV_RANK
    if op not in ranks:
        raise ShapeError(f"unknown op {op!r}; expected one of {', '.join(ranks)}", layer=op)
    nd = ranks[op]
    input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
    check_input_rank(input_shape, nd, op)
    if len(weight_shape) != nd + 2:
        dims = ", ".join(f"k{d}" for d in "DHW"[3 - nd:])
        layout = f"(C_in, C_out/groups, {dims})" if transposed else f"(C_out, C_in/groups, {dims})"
        raise ShapeError(f"expected a {nd + 2}-d weight {layout}, got shape {weight_shape}", layer=op)
    stride = ntuple(stride, nd, "stride", op)
    dilation = ntuple(dilation, nd, "dilation", op)
    if min(stride) < 1:
        raise ShapeError(f"stride must be positive, got {stride}", layer=op)
    if min(dilation) < 1:
        raise ShapeError(f"dilation must be positive, got {dilation}", layer=op)
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ShapeError(f"groups must be a positive int, got {groups!r}", layer=op)
    groups = int(groups)
    kernel = weight_shape[2:]
    if min(kernel) < 1:
        raise ShapeError(f"kernel size must be positive, got weight shape {weight_shape}", layer=op)
    for name, dtype in list(zip(("input", "weight", "bias"), dtypes, strict=False))[1:]:
        if np.dtype(dtype) != np.dtype(dtypes[0]):
            raise ShapeError(f"{name} dtype {np.dtype(dtype)} does not match input dtype {np.dtype(dtypes[0])}",
                             layer=op)
    lead = weight_shape[0]
    lead_name = "C_in" if transposed else "C_out"
    if lead < groups or lead % groups:
        raise ShapeError(f"weight dim 0 ({lead_name}) is {lead}; it must be a positive multiple of groups {groups}",
                         layer=op)
    channels = input_shape[-nd - 1]
    expected = lead if transposed else weight_shape[1] * groups
    if channels != expected:
        why = "dim 0" if transposed else f"{weight_shape[1]} per group × groups {groups}"
        hint = (f"set in_channels={channels}" if channels % groups == 0
                else f"{channels} channels cannot be split into groups={groups}")
        raise ShapeError(f"expected input with {expected} channels (weight {weight_shape}: {why}), got {channels}. "
                         f"Hint: {hint}", layer=op)
    c_out = weight_shape[1] * groups if transposed else lead
    if bias_shape is not None and tuple(bias_shape) != (c_out,):
        raise ShapeError(f"expected bias of shape ({c_out},) for {c_out} output channels, got {tuple(bias_shape)}",
                         layer=op)
    if 0 in input_shape[-nd:]:
        raise ShapeError(f"expected non-empty spatial dims, got input shape {input_shape}", layer=op)
    return _Geometry(kernel, stride, dilation, groups), c_out


def _non_negative(value: IntOrTuple, nd: int, name: str, op: str) -> tuple[int, ...]:
    values = ntuple(value, nd, name, op)
    if min(values) < 0:
        raise ShapeError(f"{name} must be non-negative, got {values}", layer=op)
    return values


def _conv_plan(op: str, input_shape: Sequence[int], weight_shape: Sequence[int], stride: IntOrTuple,
               padding: IntOrTuple | str, dilation: IntOrTuple, groups: int,
               bias_shape: Sequence[int] | None = None, dtypes: Sequence[Any] = ()) -> _Plan:
    geo, c_out = _validate(op, False, input_shape, weight_shape, stride, dilation, groups, bias_shape, dtypes)
    nd = len(geo.kernel)
    if isinstance(padding, str) and padding in ("same", "valid"):
        if padding == "same" and max(geo.stride) > 1:
            raise ShapeError(f"padding='same' needs stride 1, got stride {geo.stride}", layer=op)
        total = [d * (k - 1) if padding == "same" else 0 for k, d in zip(geo.kernel, geo.dilation, strict=True)]
        before = tuple(t // 2 for t in total)
        after = tuple(t - b for t, b in zip(total, before, strict=True))
    else:
        if isinstance(padding, str):
            raise ShapeError(f"padding must be 'same', 'valid', an int or {nd} ints, got {padding!r}", layer=op)
        before = after = _non_negative(padding, nd, "padding", op)
    padded, windows = [], []
    dims = zip(input_shape[-nd:], geo.kernel, geo.stride, geo.dilation, before, after, strict=True)
    for i, (n, k, s, d, b, a) in enumerate(dims):
        if span(k, d) > n + b + a:
            raise ShapeError(f"kernel {k} with dilation {d} spans {span(k, d)} > padded input {n + b + a} "
                             f"(spatial dim {i}: size {n} + padding {b} + {a})", layer=op)
        padded.append(n + b + a)
        windows.append((n + b + a - span(k, d)) // s + 1)
    batch = tuple(input_shape[:1]) if len(input_shape) == nd + 2 else ()
    attrs = {"stride": geo.stride, "padding": tuple(zip(before, after, strict=True)), "dilation": geo.dilation,
             "groups": geo.groups}
    return _Plan(geo, bool(batch), before, after, tuple(windows), tuple(padded), batch + (c_out, *windows), attrs)


def _conv_transpose_plan(op: str, input_shape: Sequence[int], weight_shape: Sequence[int], stride: IntOrTuple,
                         padding: IntOrTuple, output_padding: IntOrTuple, groups: int, dilation: IntOrTuple,
                         bias_shape: Sequence[int] | None = None, dtypes: Sequence[Any] = ()) -> _Plan:
    geo, c_out = _validate(op, True, input_shape, weight_shape, stride, dilation, groups, bias_shape, dtypes)
    nd = len(geo.kernel)
    pad = _non_negative(padding, nd, "padding", op)
    extra = _non_negative(output_padding, nd, "output_padding", op)
    sizes = tuple(input_shape[-nd:])
    padded, out = [], []
    for i, (n, k, s, d, p, o) in enumerate(zip(sizes, geo.kernel, geo.stride, geo.dilation, pad, extra, strict=True)):
        if o >= s and o >= d:
            raise ShapeError(f"output_padding {o} must be smaller than stride {s} or dilation {d} (spatial dim {i})",
                             layer=op)
        full = (n - 1) * s + span(k, d) + o
        if full - 2 * p < 1:
            raise ShapeError(f"output length {full - 2 * p} is not positive: ({n} − 1)·{s} − 2·{p} + {d}·({k} − 1) "
                             f"+ {o} + 1 (spatial dim {i})", layer=op)
        padded.append(full)
        out.append(full - 2 * p)
    batch = tuple(input_shape[:1]) if len(input_shape) == nd + 2 else ()
    attrs = {"stride": geo.stride, "padding": pad, "output_padding": extra, "dilation": geo.dilation,
             "groups": geo.groups}
    return _Plan(geo, bool(batch), pad, pad, sizes, tuple(padded), batch + (c_out, *out), attrs)


def conv_output_shape(input_shape: Sequence[int], weight_shape: Sequence[int], stride: IntOrTuple = 1,
                      padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1, groups: int = 1, op: str = "conv2d",
                      *, bias_shape: Sequence[int] | None = None, dtypes: Sequence[Any] = ()) -> tuple[int, ...]:
    """Output shape of ``op`` (``"conv1d"``, ``"conv2d"`` or ``"conv3d"``), validating every rule.

    The pure shape rule behind :func:`conv2d` and friends: raises :class:`ShapeError`
    (``layer=op``) for a wrong rank, channels that do not match ``weight · groups``,
    channels not divisible by ``groups``, a dilated kernel wider than the padded input,
    ``"same"`` with a stride, non-positive stride/dilation/groups, negative padding, a
    bias not of shape ``(C_out,)`` or ``dtypes`` (input, weight[, bias]) that differ.

    >>> conv_output_shape((8, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3)
    (8, 64, 112, 112)
    """
    return _conv_plan(op, input_shape, weight_shape, stride, padding, dilation, groups, bias_shape, dtypes).output_shape


def conv_transpose_output_shape(input_shape: Sequence[int], weight_shape: Sequence[int], stride: IntOrTuple = 1,
                                padding: IntOrTuple = 0, output_padding: IntOrTuple = 0, groups: int = 1,
                                dilation: IntOrTuple = 1, op: str = "conv_transpose2d", *,
                                bias_shape: Sequence[int] | None = None, dtypes: Sequence[Any] = ()
                                ) -> tuple[int, ...]:
    """Output shape of a transposed convolution, validating every rule (see :func:`conv_output_shape`).

    ``L_out = (L − 1)·s − 2p + d·(k − 1) + output_padding + 1``; ``output_padding`` must be
    smaller than the stride or the dilation, and ``L_out`` positive.

    >>> conv_transpose_output_shape((1, 128, 28, 28), (128, 64, 4, 4), stride=2, padding=1)
    (1, 64, 56, 56)
    """
    return _conv_transpose_plan(op, input_shape, weight_shape, stride, padding, output_padding, groups, dilation,
                                bias_shape, dtypes).output_shape


# --- kernels --------------------------------------------------------------------------------------
def _path(per_group: int, geo: _Geometry) -> str:
    """Which kernel path a conv with ``per_group`` input channels per group takes."""
    if per_group == 1 and len(set(geo.stride)) == 1:  # the flat tap loop needs one stride for all dims
        return "depthwise"
    if max(geo.kernel) == 1 and max(geo.stride) == 1:
        return "direct"
    return "im2col"


def _layout(x: np.ndarray, before: Sequence[int], after: Sequence[int], w: np.ndarray, geo: _Geometry
            ) -> np.ndarray:
    """Zero-pad ``x`` ``(N, C, *S)`` once, in the memory layout the kernels read fastest.

    The matmul paths get a channels-last copy, returned as an ``(N, C, *S)`` view: a tile
    of it is then a row-major ``(positions, C)`` matrix, and a window tap a run of
    contiguous channels. The depthwise path slides over whole planes, so it keeps ``x``.
    """
    if _path(w.shape[1], geo) == "depthwise":
        return constant_pad_array(x, before, after)
    n, c, *sizes = x.shape
    out = np.zeros((n, *(s + b + a for s, b, a in zip(sizes, before, after, strict=True)), c), x.dtype)
    out[(slice(None),) + tuple(slice(b, b + s) for b, s in zip(before, sizes, strict=True))] = np.moveaxis(x, 1, -1)
    return np.moveaxis(out, -1, 1)


def _crop(x: np.ndarray, before: Sequence[int], after: Sequence[int]) -> np.ndarray:
    """Remove ``before``/``after`` cells from the spatial dims; C-contiguous result."""
    return np.ascontiguousarray(constant_pad_array(x, [-b for b in before], [-a for a in after]))


def _gemm_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """``(C_out, Cg, *k)`` -> ``(G, C_out/G, taps·Cg)`` in (tap, channel) order, the column order."""
    c_out, per_group = w.shape[:2]
    taps = math.prod(w.shape[2:])
    per_out = c_out // groups
    return w.reshape(groups, per_out, per_group, taps).swapaxes(2, 3).reshape(groups, per_out, taps * per_group)


def _from_gemm_weight(gw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`_gemm_weight`."""
    groups, per_out = gw.shape[:2]
    taps = math.prod(shape[2:])
    return np.ascontiguousarray(gw.reshape(groups, per_out, taps, shape[1]).swapaxes(2, 3).reshape(shape))


class _FlatTaps:
    """Kernel taps as shifts of a flattened padded plane, for one stride ``s`` in all dims.

    Window position ``m`` (counted on the padded grid: ``m = Σ iₐ·strideₐ`` over the padded
    plane's element strides) reads cell ``offset + s·m`` for every tap, so a tap over all
    windows of a ``(rows, plane)`` array is one long 1-d slice instead of many short rows.
    The flat positions past each row's last window (``padded − windows`` per row) are computed
    and then dropped by :meth:`crop`: a few percent of extra work for long inner loops.
    """

    def __init__(self, padded: Sequence[int], geo: _Geometry, windows: tuple[int, ...]) -> None:
        pitch = [math.prod(padded[i + 1:]) for i in range(len(padded))]  # element strides of the plane
        self.pitch, self.windows, self.step = pitch, windows, geo.stride[0]
        self.offsets = [sum(t * d * p for t, d, p in zip(tap, geo.dilation, pitch, strict=True))
                        for tap in kernel_taps(geo.kernel)]
        self.length = sum((o - 1) * p for o, p in zip(windows, pitch, strict=True)) + 1

    def reads(self, offset: int) -> slice:
        """The plane cells one tap reads, in window order."""
        return slice(offset, offset + self.step * (self.length - 1) + 1, self.step)

    def crop(self, wide: np.ndarray) -> np.ndarray:
        """``(..., length)`` flat positions -> ``(..., *windows)`` view of the real windows."""
        item = wide.itemsize
        return as_strided(wide, wide.shape[:-1] + self.windows,
                          wide.strides[:-1] + tuple(p * item for p in self.pitch), writeable=False)

    def spread(self, a: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`crop`: ``(..., *windows)`` -> ``(..., length)`` with zeros between rows."""
        wide = np.zeros(a.shape[: a.ndim - len(self.windows)] + (self.length,), a.dtype)
        item = wide.itemsize
        view = as_strided(wide, a.shape, wide.strides[:-1] + tuple(p * item for p in self.pitch))
        view[...] = a
        return wide


def _depthwise_weight(w: np.ndarray, n: int, groups: int) -> np.ndarray:
    """``(C_out, 1, *k)`` -> ``(n·G, C_out/G, taps)``: the weights of every (sample, channel) row."""
    per_out = w.shape[0] // groups
    wd = w.reshape(1, groups, per_out, -1)
    return np.broadcast_to(wd, (n,) + wd.shape[1:]).reshape(n * groups, per_out, wd.shape[-1])


# Rows per block of the depthwise tap loop: the accumulator and its scratch stay in cache
# (ResNet/MobileNet planes at 112² run ~2× faster than whole-array passes).
_BLOCK_ELEMENTS = 1 << 18


def _row_blocks(wide: np.ndarray) -> tuple[list[slice], np.ndarray]:
    """Blocks of ``wide``'s first dim of about ``_BLOCK_ELEMENTS`` elements, and one scratch
    array the size of a block."""
    per_row = max(1, math.prod(wide.shape[1:]))
    step = max(1, min(wide.shape[0], _BLOCK_ELEMENTS // per_row))
    blocks = [slice(r, min(r + step, wide.shape[0])) for r in range(0, wide.shape[0], step)]
    return blocks, np.empty((step,) + wide.shape[1:], wide.dtype)


@dataclass(frozen=True)
class _Tile:
    batch: slice       # samples
    rows: slice        # window positions along the first spatial dim
    reads: slice       # input cells along the first spatial dim those windows read
    windows: tuple[int, ...]

    @property
    def samples(self) -> int:
        return self.batch.stop - self.batch.start

    @property
    def positions(self) -> int:
        return self.samples * math.prod(self.windows)


def _tiles(n: int, windows: tuple[int, ...], geo: _Geometry, position_bytes: int) -> list[_Tile]:
    """Split the batch, and if one sample is too big the first window dim, so that each
    tile's columns (``position_bytes`` per window position) take about ``_COLUMN_BYTES``."""
    rows = windows[0]
    row_bytes = max(1, position_bytes * math.prod(windows[1:]))
    if row_bytes * rows <= _COLUMN_BYTES:
        per_tile = _COLUMN_BYTES // (row_bytes * rows)
        per_tile = -(-n // -(-n // per_tile)) if n else 1  # the same size for every tile
        spans = [(b, min(b + per_tile, n), 0, rows) for b in range(0, n, per_tile)]
    else:
        step = max(1, _COLUMN_BYTES // row_bytes)
        spans = [(b, b + 1, r, min(r + step, rows)) for b in range(n) for r in range(0, rows, step)]
    s, k, d = geo.stride[0], geo.kernel[0], geo.dilation[0]
    return [_Tile(slice(b0, b1), slice(r0, r1), slice(r0 * s, (r1 - 1) * s + span(k, d)),
                  (r1 - r0,) + windows[1:]) for b0, b1, r0, r1 in spans]


def _reuse(buffer: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A C-contiguous ``shape`` array in ``buffer``'s memory when it is big enough (tiles after
    the first are never bigger), else a new one: fresh pages for every tile cost time."""
    size = math.prod(shape)
    flat = buffer if buffer.base is None else buffer.base  # the 1-d array owning the memory
    if flat.size < size:
        flat = np.empty(size, buffer.dtype)
    return flat[:size].reshape(shape)


def _rows(a: np.ndarray, t: _Tile, groups: int) -> np.ndarray:
    """The tile's cells of ``a`` ``(N, C, *windows)`` as a ``(G, positions, C/G)`` matrix;
    a view when ``a`` is channels-last (see :func:`_layout`), else a copy."""
    part = np.moveaxis(a[t.batch, :, t.rows], 1, -1)
    c = part.shape[-1]
    return part.reshape(t.positions, groups, c // groups).swapaxes(0, 1)


def _columns(xp: np.ndarray, geo: _Geometry, windows: tuple[int, ...], direct: bool) -> Iterator[
        tuple[_Tile, np.ndarray]]:
    """Each tile with its column matrix ``(G, positions, taps·Cg)``, rows in (sample, window)
    order, columns in (tap, channel) order. A 1×1 stride-1 conv reads its input directly;
    otherwise the windows are copied into one reused buffer."""
    n, c = xp.shape[:2]
    groups, taps = geo.groups, math.prod(geo.kernel)
    depth = taps * c // groups
    tiles = _tiles(n, windows, geo, depth * groups * xp.itemsize)
    if direct:
        x = xp[(Ellipsis,) + tuple(slice(0, o) for o in windows)]  # a transposed conv's output_padding tail
        for t in tiles:
            yield t, _rows(x, t, groups)
        return
    cols = np.empty(0, xp.dtype)
    for t in tiles:
        cols = _reuse(cols, (groups, t.samples, *t.windows, *geo.kernel, c // groups))
        _im2col(xp[t.batch, :, t.reads], geo, t.windows, cols)
        yield t, cols.reshape(groups, t.positions, depth)


def _im2col(x: np.ndarray, geo: _Geometry, windows: tuple[int, ...], dest: np.ndarray) -> None:
    """Copy the windows of ``x`` ``(nb, C, *L)`` into ``dest`` ``(G, nb, *windows, *kernel, Cg)``."""
    nb, c = x.shape[:2]
    nd = len(windows)
    win = sliding_windows(x, geo.kernel, geo.stride, geo.dilation, windows)
    win = win.reshape(nb, geo.groups, c // geo.groups, *win.shape[2:])
    np.copyto(dest, win.transpose(1, 0, *range(3, 3 + 2 * nd), 2))


def _col2im(cols: np.ndarray, target: np.ndarray, geo: _Geometry, windows: tuple[int, ...]) -> None:
    """Adjoint of :func:`_im2col`: add ``cols`` ``(G, nb, *windows, *kernel, Cg)`` onto ``target`` ``(nb, C, *L)``."""
    nb, c = target.shape[:2]
    nd = len(windows)
    split = target.reshape(nb, geo.groups, c // geo.groups, *target.shape[2:])
    lead = (slice(None),) * (2 + nd)
    order = (1, 0, 2 + nd, *range(2, 2 + nd))
    scatter_windows(split, lambda tap: cols[lead + tap].transpose(order), geo.kernel, geo.stride, geo.dilation,
                    windows)


def _forward(xp: np.ndarray, w: np.ndarray, geo: _Geometry, windows: tuple[int, ...]) -> np.ndarray:
    """Convolve the padded input ``xp`` ``(N, C, *L)`` with ``w`` ``(C_out, C/G, *k)``: ``(N, C_out, *windows)``."""
    n = xp.shape[0]
    c_out = w.shape[0]
    groups, per_out = geo.groups, c_out // geo.groups
    y = np.empty((n, c_out, *windows), xp.dtype)
    path = _path(w.shape[1], geo)
    if path == "depthwise":
        flat = _FlatTaps(xp.shape[2:], geo, windows)
        rows = np.ascontiguousarray(xp).reshape(n * groups, 1, -1)  # one row per (sample, channel)
        wide = np.empty((n * groups, per_out, flat.length), xp.dtype)
        weights = _depthwise_weight(w, n, groups)
        blocks, spare = _row_blocks(wide)
        for block in blocks:
            acc, scratch = wide[block], spare[: block.stop - block.start]
            for i, offset in enumerate(flat.offsets):  # two passes a tap: NumPy has no fused multiply-add
                taps = rows[block, :, flat.reads(offset)]
                np.multiply(taps, weights[block, :, i:i + 1], out=scratch if i else acc)
                if i:
                    acc += scratch
        y[...] = flat.crop(wide.reshape(n, c_out, flat.length))
        return y
    wg = _gemm_weight(w, groups)
    out = np.empty(0, y.dtype)
    for t, cols in _columns(xp, geo, windows, path == "direct"):
        # (C_out/G, positions) per group: the store below then copies whole rows of positions
        out = np.matmul(wg, cols.swapaxes(1, 2), out=_reuse(out, (groups, per_out, t.positions)))
        target = y[t.batch, :, t.rows].reshape(t.samples, groups, per_out, *t.windows)
        target[...] = out.reshape(groups, per_out, t.samples, *t.windows).swapaxes(0, 2).swapaxes(1, 2)
    return y


def _grad_input(g: np.ndarray, w: np.ndarray, geo: _Geometry, padded: tuple[int, ...]) -> np.ndarray:
    """Gradient of :func:`_forward` with respect to its padded input, ``(N, C, *padded)``,
    for the output gradient ``g`` ``(N, C_out, *windows)`` (best laid out by :func:`_layout`)."""
    n, c_out, *windows = g.shape
    windows = tuple(windows)
    per_group = w.shape[1]
    groups, per_out = geo.groups, c_out // geo.groups
    c = per_group * groups
    if _path(per_group, geo) == "depthwise":
        flat = _FlatTaps(padded, geo, windows)
        gx = np.zeros((n, c, *padded), g.dtype)
        rows = gx.reshape(n * groups, -1)
        wide = flat.spread(g).reshape(n * groups, per_out, flat.length)
        weights = _depthwise_weight(w, n, groups)
        blocks, spare = _row_blocks(wide)
        for block in blocks:  # col2im as one strided add per tap
            scratch = spare[: block.stop - block.start]
            for i, offset in enumerate(flat.offsets):
                part = np.multiply(wide[block], weights[block, :, i:i + 1], out=scratch)
                target = rows[block, flat.reads(offset)]
                np.add(target, part[:, 0] if per_out == 1 else part.sum(axis=1), out=target)
        return gx
    gx = np.moveaxis(np.zeros((n, *padded, c), g.dtype), -1, 1)  # channels-last, like the columns
    wg = _gemm_weight(w, groups)
    cols = np.empty(0, g.dtype)
    for t in _tiles(n, windows, geo, wg.shape[2] * groups * g.itemsize):
        cols = np.matmul(_rows(g, t, groups), wg, out=_reuse(cols, (groups, t.positions, wg.shape[2])))
        _col2im(cols.reshape(groups, t.samples, *t.windows, *geo.kernel, per_group), gx[t.batch, :, t.reads], geo,
                t.windows)
    return gx


def _grad_weight(xp: np.ndarray, g: np.ndarray, geo: _Geometry) -> np.ndarray:
    """Gradient of :func:`_forward` with respect to its weight, ``(C_out, C/G, *k)``."""
    n, c_out, *windows = g.shape
    windows = tuple(windows)
    c = xp.shape[1]
    groups, per_group, per_out = geo.groups, c // geo.groups, c_out // geo.groups
    shape = (c_out, per_group, *geo.kernel)
    path = _path(per_group, geo)
    if path == "depthwise":  # per tap, one dot product per (sample, channel) row
        flat = _FlatTaps(xp.shape[2:], geo, windows)
        rows = np.ascontiguousarray(xp).reshape(n, groups, 1, -1)
        wide = flat.spread(g).reshape(n, groups, per_out, flat.length)
        gw = np.empty((groups, per_out, len(flat.offsets)), g.dtype)
        for i, offset in enumerate(flat.offsets):
            gw[:, :, i] = np.matmul(wide, rows[..., flat.reads(offset)].swapaxes(-1, -2))[..., 0].sum(axis=0)
        return gw.reshape(shape)
    gw = np.zeros((groups, per_out, math.prod(geo.kernel) * per_group), g.dtype)
    for t, cols in _columns(xp, geo, windows, path == "direct"):
        gw += np.matmul(_rows(g, t, groups).swapaxes(1, 2), cols)
    return _from_gemm_weight(gw, shape)


# --- differentiable ops -----------------------------------------------------------------------
def _dtypes(*tensors: Tensor | None) -> tuple:
    return tuple(t.dtype for t in tensors if t is not None)


def _finish(op: str, plan: _Plan, y: np.ndarray | None, parents: tuple[Tensor, ...], backward: Any) -> Tensor:
    """Add the bias, drop the batch dim of an unbatched call, and record the op."""
    if y is None:
        return make_result(op, None, parents, None, shape=plan.output_shape, dtype=parents[0].dtype,
                           attrs=plan.attrs)
    if len(parents) == 3:
        y += parents[2].data.reshape((-1,) + (1,) * len(plan.windows))
    return make_result(op, y if plan.batched else y[0], parents, backward, attrs=plan.attrs)


def _grads(plan: _Plan, parents: tuple[Tensor, ...], g: np.ndarray, gx: np.ndarray | None,
           gw: np.ndarray | None) -> tuple:
    grads = (gx if gx is None or plan.batched else gx[0], gw)
    if len(parents) == 3:
        grads += (g.sum(axis=(0, *range(2, g.ndim))) if parents[2].requires_grad else None,)
    return grads


def _conv(op: str, input: Tensor, weight: Tensor, bias: Tensor | None, stride: IntOrTuple,  # noqa: A002
          padding: IntOrTuple | str, dilation: IntOrTuple, groups: int) -> Tensor:
    bias_shape = None if bias is None else bias.shape
    plan = _conv_plan(op, input.shape, weight.shape, stride, padding, dilation, groups, bias_shape,
                      _dtypes(input, weight, bias))
    parents = (input, weight) if bias is None else (input, weight, bias)
    if any(p.is_meta for p in parents):
        return _finish(op, plan, None, parents, None)
    geo, w = plan.geometry, weight.data
    xp = _layout(input.data if plan.batched else input.data[None], plan.before, plan.after, w, geo)
    y = _forward(xp, w, geo, plan.windows)

    def backward(g: np.ndarray) -> tuple:
        g = g if plan.batched else g[None]
        gl = _layout(g, (0,) * len(plan.windows), (0,) * len(plan.windows), w, geo)
        gx = _crop(_grad_input(gl, w, geo, plan.padded), plan.before, plan.after) if input.requires_grad else None
        gw = _grad_weight(xp, gl, geo) if weight.requires_grad else None
        return _grads(plan, parents, g, gx, gw)

    return _finish(op, plan, y, parents, backward)


def _conv_transpose(op: str, input: Tensor, weight: Tensor, bias: Tensor | None, stride: IntOrTuple,  # noqa: A002
                    padding: IntOrTuple, output_padding: IntOrTuple, groups: int, dilation: IntOrTuple) -> Tensor:
    bias_shape = None if bias is None else bias.shape
    plan = _conv_transpose_plan(op, input.shape, weight.shape, stride, padding, output_padding, groups, dilation,
                                bias_shape, _dtypes(input, weight, bias))
    parents = (input, weight) if bias is None else (input, weight, bias)
    if any(p.is_meta for p in parents):
        return _finish(op, plan, None, parents, None)
    geo, w = plan.geometry, weight.data
    zeros = (0,) * len(plan.windows)
    xl = _layout(input.data if plan.batched else input.data[None], zeros, zeros, w, geo)
    y = _crop(_grad_input(xl, w, geo, plan.padded), plan.before, plan.after)

    def backward(g: np.ndarray) -> tuple:
        g = g if plan.batched else g[None]
        gp = _layout(g, plan.before, plan.after, w, geo)
        gx = _forward(gp, w, geo, plan.windows) if input.requires_grad else None
        gw = _grad_weight(gp, xl, geo) if weight.requires_grad else None
        return _grads(plan, parents, g, gx, gw)

    return _finish(op, plan, y, parents, backward)


# --- public functions -----------------------------------------------------------------------------
_CONV_DOC = """{nd}-d convolution, like ``torch.nn.functional.conv{nd}d``.

Parameters
----------
input : Tensor
    ``(N, C_in, {dims})`` or unbatched ``(C_in, {dims})``.
weight : Tensor
    ``(C_out, C_in / groups, {kdims})``.
bias : Tensor, optional
    ``(C_out,)``.
stride : int or tuple of {nd} ints
padding : int, tuple of {nd} ints, "valid" or "same"
    Zeros added on both sides of each spatial dim. ``"same"`` (stride 1 only) adds
    ``d·(k − 1)`` in total, the odd cell after (right/bottom), as torch.
dilation : int or tuple of {nd} ints
groups : int
    Independent convolutions over ``groups`` slices of the channels; ``groups == C_in``
    is depthwise (``C_out / C_in`` is the channel multiplier).

Shape:
    - Input: ``(N, C_in, {dims})``
    - Output: ``(N, C_out, {out_dims})``, each ``L_out = floor((L + 2p − d·(k − 1) − 1) / s) + 1``.

Raises :class:`ShapeError` for an invalid configuration (see :func:`conv_output_shape`).
"""

_CONV_TRANSPOSE_DOC = """{nd}-d transposed convolution, like ``torch.nn.functional.conv_transpose{nd}d``.

The gradient of ``conv{nd}d`` with respect to its input: each input cell adds the kernel,
scaled by the cell, onto the output; ``padding`` crops the result.

Parameters
----------
input : Tensor
    ``(N, C_in, {dims})`` or unbatched ``(C_in, {dims})``.
weight : Tensor
    ``(C_in, C_out / groups, {kdims})``.
bias : Tensor, optional
    ``(C_out,)``.
stride, padding, output_padding, dilation : int or tuple of {nd} ints
    ``output_padding`` (extra cells at the end) must be smaller than the stride or the
    dilation.
groups : int

Shape:
    - Input: ``(N, C_in, {dims})``
    - Output: ``(N, C_out, {out_dims})``, each ``L_out = (L − 1)·s − 2p + d·(k − 1) + output_padding + 1``.

Raises :class:`ShapeError` for an invalid configuration (see :func:`conv_transpose_output_shape`).
"""


def _doc(template: str, nd: int) -> Any:
    names = "DHW"[3 - nd:]

    def apply(fn: Any) -> Any:
        fn.__doc__ = template.format(nd=nd, dims=", ".join(f"{d}_in" for d in names),
                                     kdims=", ".join(f"k{d}" for d in names),
                                     out_dims=", ".join(f"{d}_out" for d in names))
        return fn

    return apply


@_doc(_CONV_DOC, 1)
def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrTuple = 1,  # noqa: A002
           padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1, groups: int = 1) -> Tensor:
    return _conv("conv1d", input, weight, bias, stride, padding, dilation, groups)


@_doc(_CONV_DOC, 2)
def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrTuple = 1,  # noqa: A002
           padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1, groups: int = 1) -> Tensor:
    return _conv("conv2d", input, weight, bias, stride, padding, dilation, groups)


@_doc(_CONV_DOC, 3)
def conv3d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrTuple = 1,  # noqa: A002
           padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1, groups: int = 1) -> Tensor:
    return _conv("conv3d", input, weight, bias, stride, padding, dilation, groups)


@_doc(_CONV_TRANSPOSE_DOC, 1)
def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrTuple = 1,  # noqa: A002
                     padding: IntOrTuple = 0, output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1) -> Tensor:
    return _conv_transpose("conv_transpose1d", input, weight, bias, stride, padding, output_padding, groups, dilation)


@_doc(_CONV_TRANSPOSE_DOC, 2)
def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrTuple = 1,  # noqa: A002
                     padding: IntOrTuple = 0, output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1) -> Tensor:
    return _conv_transpose("conv_transpose2d", input, weight, bias, stride, padding, output_padding, groups, dilation)


@_doc(_CONV_TRANSPOSE_DOC, 3)
def conv_transpose3d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrTuple = 1,  # noqa: A002
                     padding: IntOrTuple = 0, output_padding: IntOrTuple = 0, groups: int = 1,
                     dilation: IntOrTuple = 1) -> Tensor:
    return _conv_transpose("conv_transpose3d", input, weight, bias, stride, padding, output_padding, groups, dilation)


# --- analysis rules (see convscope.rules) ------------------------------------------------
_CONVS = [f"conv{n}d" for n in (1, 2, 3)]
_TRANSPOSED = [f"conv_transpose{n}d" for n in (1, 2, 3)]


@cost_rule(*_CONVS, *_TRANSPOSED)
def _conv_cost(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Cost:
    """conv: output elements × (C_in/groups) × kernel volume; transposed: input elements ×
    (C_out/groups) × kernel volume (each input cell scatters one kernel). Bias adds are not MACs."""
    x, w = inputs[0], inputs[1]
    kernel = w.shape[2:]
    transposed = "padding" in attrs and "output_padding" in attrs
    cells = numel(x.shape if transposed else output.shape)
    per_cell = w.shape[1]
    macs = cells * per_cell * math.prod(kernel)
    what = "inputs" if transposed else "outputs"
    text = f"{cells:,} {what} × {'·'.join(map(str, (per_cell, *kernel)))} = {macs:,}"
    return Cost(macs, 2 * macs, text)


@field_rule(*_CONVS)
def _conv_field(fields: Sequence[Field], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Field:
    if fields[0] is None or fields[0] is NO_FIELD:
        return fields[0]
    kernel = inputs[1].shape[2:]
    return tuple(a.window(k, s, d, p[0]) for a, k, s, d, p in
                 zip(fields[0], kernel, attrs["stride"], attrs["dilation"], attrs["padding"]))


@field_rule(*_TRANSPOSED)
def _conv_transpose_field(fields: Sequence[Field], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Field:
    if fields[0] is None or fields[0] is NO_FIELD:
        return fields[0]
    kernel = inputs[1].shape[2:]
    return tuple(a.scatter(k, s, d, p) for a, k, s, d, p in
                 zip(fields[0], kernel, attrs["stride"], attrs["dilation"], attrs["padding"]))


def _scratch(n: int, c_in: int, c_out: int, padded: tuple[int, ...], windows: tuple[int, ...], geo: _Geometry,
             per_group: int, item: int) -> tuple[int, int, int]:
    """Bytes of the scratch arrays of one ``_forward`` over a padded ``(n, c_in, *padded)``
    input: (the kernel's own buffers, the largest column tile, the weight in GEMM layout)."""
    taps = math.prod(geo.kernel)
    weight = c_out * per_group * taps * item
    if _path(per_group, geo) == "depthwise":
        length = _FlatTaps(padded, geo, windows).length
        block = min(n * c_in, max(1, _BLOCK_ELEMENTS // (c_out // geo.groups * length))) * (c_out // geo.groups)
        return (n * c_out * length + block * length + n * c_out * taps) * item, 0, weight
    positions = max(t.positions for t in _tiles(n, windows, geo, taps * c_in * item))
    columns = 0 if _path(per_group, geo) == "direct" else positions * taps * c_in * item
    return c_out * positions * item, columns, weight


@saved_rule(*_CONVS)
def _conv_saved(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
    """The closure keeps the input and weight and ``xp``, the zero-padded input in the
    kernels' layout (a channels-last copy; the depthwise path pads only when asked). The
    forward needs a column tile and a matmul tile; the backward the output gradient in that
    layout, the padded input gradient, the weight in GEMM layout and a column tile."""
    x, w = inputs[0], inputs[1]
    nd = w.ndim - 2
    n, c_in, item = (x.shape[0] if x.ndim == nd + 2 else 1), x.shape[-nd - 1], x.dtype.itemsize
    geo = _Geometry(tuple(w.shape[2:]), attrs["stride"], attrs["dilation"], attrs["groups"])
    padded = tuple(e + b + a for e, (b, a) in zip(x.shape[-nd:], attrs["padding"]))
    windows = tuple(output.shape[-nd:])
    padded_bytes = n * c_in * math.prod(padded) * item
    depthwise = _path(w.shape[1], geo) == "depthwise"
    xp = padded_bytes if not depthwise or padded != tuple(x.shape[-nd:]) else 0
    own, columns, weight = _scratch(n, c_in, w.shape[0], padded, windows, geo, w.shape[1], item)
    g_layout = 0 if depthwise else nbytes(output)
    if depthwise:  # the padded input gradient and the spread output gradient, before the input gradient exists
        backward = padded_bytes + own - nbytes(x)
    else:
        backward = g_layout + max(padded_bytes + weight + columns, 2 * weight + columns)
    return Saved(tuple(range(len(inputs))), extra=(("padded input", xp),) if xp else (),
                 workspace=own + columns + (0 if depthwise else weight), backward_workspace=backward)


@saved_rule(*_TRANSPOSED)
def _conv_transpose_saved(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
    """A transposed convolution runs a convolution's input gradient forward: the closure
    keeps the input in the kernels' layout (a channels-last copy off the depthwise path);
    the forward holds the full (uncropped) output and a column tile, the backward the padded
    output gradient in kernel layout, a column tile and the weight in GEMM layout."""
    x, w = inputs[0], inputs[1]
    nd = w.ndim - 2
    n, c_in, item = (x.shape[0] if x.ndim == nd + 2 else 1), x.shape[-nd - 1], x.dtype.itemsize
    c_out = w.shape[1] * attrs["groups"]
    geo = _Geometry(tuple(w.shape[2:]), attrs["stride"], attrs["dilation"], attrs["groups"])
    full = tuple(o + 2 * p for o, p in zip(output.shape[-nd:], attrs["padding"]))
    depthwise = _path(w.shape[1], geo) == "depthwise"
    xl = 0 if depthwise else nbytes(x)
    full_bytes = n * c_out * math.prod(full) * item
    own, columns, weight = _scratch(n, c_out, c_in, full, tuple(x.shape[-nd:]), geo, w.shape[1], item)
    return Saved(tuple(range(len(inputs))), extra=(("input in kernel layout", xl),) if xl else (),
                 workspace=full_bytes + weight + columns + (own if depthwise else 0),
                 backward_workspace=full_bytes + max(own + columns, 2 * weight + columns))


@size_rule(*_CONVS)
def _conv_sizes(sizes: Sequence[Sizes], inputs: Sequence[Tensor], output: Tensor,
                attrs: dict) -> tuple[Sizes, list[Constraint]]:
    """Per spatial dim ``⌊(E + before + after − span)/s⌋ + 1``, valid while the padded input
    holds one dilated kernel."""
    x, kernel = sizes[0], inputs[1].shape[2:]
    spatial, checks = [], []
    for e, k, s, d, (b, a) in zip(x[-len(kernel):], kernel, attrs["stride"], attrs["dilation"], attrs["padding"]):
        checks += at_least(e, 1, "non-empty input {size} ≥ {bound}")
        checks += at_least(e.shift(b + a), span(k, d), "padded input {size} ≥ kernel span {bound}")
        spatial.append(e.window(k, s, d, b, a))
    return with_spatial(x, output, spatial), checks


@size_rule(*_TRANSPOSED)
def _conv_transpose_sizes(sizes: Sequence[Sizes], inputs: Sequence[Tensor], output: Tensor,
                          attrs: dict) -> tuple[Sizes, list[Constraint]]:
    """Per spatial dim ``(E − 1)·s − 2p + d·(k − 1) + output_padding + 1``, valid while positive."""
    x, kernel = sizes[0], inputs[1].shape[2:]
    spatial, checks = [], []
    for e, k, s, d, p, o in zip(x[-len(kernel):], kernel, attrs["stride"], attrs["dilation"], attrs["padding"],
                                attrs["output_padding"]):
        out = e.scatter(k, s, d, p, o)
        checks += at_least(e, 1, "non-empty input {size} ≥ {bound}") + at_least(out, 1, "output {size} ≥ {bound}")
        spatial.append(out)
    return with_spatial(x, output, spatial), checks
