"""Convolution and transposed convolution in 1, 2 and 3 spatial dims, as ``torch.nn.functional``.

Three private kernels do all the arithmetic, each written once for every spatial rank:

- ``_forward``:      padded input, weight         -> output
- ``_grad_input``:   output gradient, weight      -> padded-input gradient
- ``_grad_weight``:  padded input, output gradient -> weight gradient

A convolution runs ``_forward``, and the other two backward. A transposed convolution *is*
the input gradient of a convolution with the same weight, so it runs ``_grad_input``
forward and ``_forward`` + ``_grad_weight`` backward; there is no second implementation.

The work is split into tiles (samples, or one sample's window rows) that run on the
threads NumPy's BLAS may use, each with single-threaded BLAS (:mod:`.parallel`). Each kernel
takes one of four paths, chosen by the weight's shape and the padded input's size
(:func:`_path`):

- depthwise (one input channel per group): a loop over the kernel taps, each a
  multiply-add of a strided slice of the input's flat planes; no matmul (with numba
  installed, compiled loops instead, nine or three taps a pass, each plane zero-padded in
  cache as it is read: :mod:`.jit`);
- direct (1×1 kernel, stride 1): the input's planes already are the matmul's operand, so
  each tile is one matmul straight into the output;
- planar (few channels per group, or stride 1 and little waste, or a strided 1×1 kernel):
  *columns* ``(G, Cg·taps, positions)`` copied as long runs of the flat padded planes (a tap
  is a shift of the flat plane; the cells past each row's last window are computed and
  dropped), or for wide rows the windows alone, row by row; one matmul per group with the
  weight in its own ``(C_out/G, Cg·taps)`` order. A strided conv's input is split into its
  stride phases first, where each tap reads one phase at stride 1;
- im2col (the rest: strided convs with many channels; many channels on small planes): the
  input laid out channels-last once
  (:func:`_layout`), a tile's windows copied into columns ``(G, positions, taps·Cg)``, a
  column per (kernel tap, input channel).

The column buffers are reused per thread and hold about ``_COLUMN_BYTES`` (less when tiles
are shared out over threads). Input gradients go back through a col2im, a loop over the
kernel taps (:func:`scatter_windows`, or flat shifts for the depthwise path); the planar
path's of stride 1 instead is a forward planar conv of the padded output gradient with the
flipped kernel.
A strided conv with enough channels per group (and so a transposed conv, its input gradient)
splits the input gradient by stride phase instead: per phase one stride-1 conv of the output
gradient with the taps that reach it (:mod:`.subpixel`), no col2im; or, with the compiled
kernels over enough windows, one matmul per sample for the products of every tap, added onto
their cells by a compiled col2im (:func:`_grad_input_taps`).
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..errors import ShapeError
from ..ops import kernel_dtype
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
from . import jit, subpixel, winograd
from .pad import constant_pad_array
from .parallel import Scratch, in_flight, matmul, thread_count, tile_map
from .windows import as_3d, check_input_rank, kernel_taps, ntuple, scatter_windows, sliding_windows, span

__all__ = [
    "conv1d", "conv2d", "conv3d", "conv_output_shape",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "conv_transpose_output_shape",
]

_CONV_RANK = {"conv1d": 1, "conv2d": 2, "conv3d": 3}
_TRANSPOSE_RANK = {"conv_transpose1d": 1, "conv_transpose2d": 2, "conv_transpose3d": 3}

# Columns per tile: about _TILE_POSITIONS window positions, within 2 MB.._COLUMN_BYTES. Per-core
# matmuls run fastest with a few hundred positions per tile whatever the depth (forward on 2
# threads: 3×3 64 at 224² 31 ms with 900 positions, 47 ms with 3600; 3×3 512 at 14² 48 ms with
# 450, 62 ms with 113; 3×3×3 64 at 16·56² best near 300-500).
_COLUMN_BYTES = 8 << 20
_TILE_POSITIONS = 512

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
    if dtypes:  # torch convolves every integer dtype, transposes int64 only, and refuses bool
        kernel_dtype(op, dtypes[0], "int64" if transposed else "keep")
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
# The planar path (columns as whole rows of flat padded planes) is taken for stride-1 convs
# with few channels per group, or when the flat rows waste little (the cells past each row's
# last window are computed and dropped). Measured (one thread, forward): grouped 3×3 g32 with
# 8 channels per group at 28² 3.5× faster than channels-last columns; 3×3 at 224² and
# 3×3×3 at 16×56² (1-7 % waste) 12-20 % faster; at 14² (14 % waste) 5-8 % slower.
_PLANAR_CHANNELS = 32
_PLANAR_WASTE = 1.1
# Strided convs take it (over the input split into its stride phases) with fewer channels per
# group than this, where channels-last columns copy runs of a few floats, or with a 1×1 kernel
# (the split is the subsampling: a quarter of the input, where im2col lays out all of it). Measured
# (forward, N=8, one thread, im2col → planar): 7×7/2 3→64 at 224² 35.0 → 27.5 ms, 3×3/2 3→32
# at 224² 7.5 → 4.9, 3×3/2 4→32 at 112² 2.5 → 1.9, 7×7/2 8→32 at 112² 14.7 → 12.6, 1×1/2 256→512
# at 56² 27.2 → 21.0, 512→1024 at 28² 21.7 → 18.8; but with 16-128 channels 3×3/2 as fast or
# up to 20 % slower (64 at 112²: 36.9 → 44.7): the split, rows of a few dozen strided floats
# each, costs more than channels-last columns of 64-byte runs.
_STRIDED_PLANAR_CHANNELS = 8
# Of the planar path's convs, the 2-d 3×3 dilation-1 ungrouped ones with at least this many
# input channels run Winograd F(2×2, 3×3) (:mod:`.winograd`) instead; the weight gradient
# stays planar. Measured on 2 threads on the idle machine (best of 5), forward / input
# gradient against planar: 128 at 28² 9.6 / 13.1 ms vs 12.0 / 14.6, 128 at 56² 37 / 37 vs 45 / 52,
# 256 at 28² 31 / 36 vs 44 / 55, 128 at 112² (N=1) 19 / 19 vs 23 / 25; but 96 at 28² mixed
# (6.9 / 9.6 vs 7.8 / 8.6), 64 at 56² 15 / 16 vs 14 / 15 and 64 at 224² (N=1) 38 / 37 vs 28 / 30:
# the transforms, memory-bound, outweigh the smaller matmuls there. Not taken where im2col is
# (planes ≤ 14²): the weight gradient is 3-20 % slower planar than channels-last.
_WINOGRAD_CHANNELS = 128
# Planes of 14² (the im2col path's) take Winograd too from this many channels: forward,
# N=8, 2 threads, im2col → Winograd: 3×3 256 at 14² 19.1 → 14.5 ms, 512 at 14² 44.7 → 36.7, the
# input gradient 17.4 → 17.7 and 52.2 → 44.0, the weight gradient (planar) 20.6 → 21.6 and
# 53.3 → 53.2; but 128 at 14² 5.9 → 6.6 and 7² planes 14 → 18 (512 at 7²): the tiles' edges cost.
_WINOGRAD_SMALL_CHANNELS = 256
_WINOGRAD_SMALL_PLANE = 14
# With the compiled transforms (:mod:`._winograd_numba`: one pass over a tile row in cache,
# bit for bit the NumPy transforms' sums), Winograd pays from fewer channels: (channels,
# smallest plane) pairs from which it is taken. Measured (N=8 unless stated, 2 threads,
# forward / input and weight gradients, the weight's then still planar's; the path before →
# Winograd): 3×3 64 at 224² (N=1)
# 28.5 / 49.9 → 17.9 / 41.1 ms, 64 at 56² 15.3 / 29.4 → 11.6 / 23.2, 48 at 56² 9.8 / 18.4 →
# 8.5 / 15.6, 96 at 28² 8.8 / 16.7 → 5.9 / 13.5, 64 at 28² 4.4 / 7.7 → 3.2 / 7.1, 128 at 14²
# 4.1 / 7.8 → 3.8 / 7.1; but 32 at 56² 5.5 → 5.7 forward, 64 at 14² even, 128 at 14² (N=1)
# 0.75 → 0.83 and 256 at 7² 3.4 → 3.9 forward: the matmuls too thin, or the tiles' edges.
# A dilated 3×3 conv is a 3×3 conv per dilation phase (:func:`.winograd.forward`), so it takes
# the same rule on its phases' planes: (forward / both gradients, the path before → Winograd)
# d2 256 at 28² 46.8 / 93.3 → 32.7 / 85.3 ms, d2 128 at 28² 13.5 / 26.9 → 12.4 / 18.9, d2 64 at
# 56² 16.2 / 28.6 → 14.4 / 22.9; but d2 256 at 14² 12.8 / 25.8 → 16.2 / 36.3 (7² phases).
_WINOGRAD_COMPILED = ((48, 28), (128, 14))
# 3×3×3 convs (stride and dilation 1, one group) take it, with the compiled transforms, from
# (channels, smallest plane): three slices' transforms side by side make one matmul of 3·C
# (:func:`.winograd._convolve_volume`). Measured (N=8, 2 threads, planar → Winograd, forward /
# both gradients): 64 at 16×56² 652 / 1279 → 357 / 974 ms, 32 at 16×56² 193 / 397 → 100 / 302,
# 16 at 16×56² 64 / 126 → 40 / 94, 16 at 8×28² 14.8 / 20.7 → 8.0 / 17.7, 64 at 8×14² 24 / 53 →
# 15 / 32; but 8 at 8×14² 1.2 → 1.5 forward, 3 at 16×112² 8.9 → 10.7, 64 at 4×7² (N=1) 0.7 → 1.0.
_WINOGRAD_VOLUME = (16, 14)
# With the compiled kernels (:mod:`.jit`), stride-1 grouped convs with at most this many input
# channels per group take the depthwise path too: its kernels sum a group's planes tap by tap,
# nine taps a pass over a plane in cache, with no columns. Measured (forward, N=8, 2 threads,
# planar → compiled, 2 / 4 / 8 / 16 channels per group): 3×3 256 at 28² 7.8 / 3.8 / 4.4 / 7.5 ms
# → 0.9 / 1.5 / 3.1 / 5.5; 128 at 56² 8.3 / 7.9 / 9.0 / 13.0 → 2.3 / 3.5 / 5.7 / 10.2; 512 at 14²
# 2.4 / 3.4 / 2.1 / 2.8 → 0.6 / 0.9 / 1.7 / 3.1; 5×5 256 at 28² 1.9-5.3× faster. The weight
# gradient is compiled too (dot products of the gradient's rows with the padded planes).
_GROUPED_CHANNELS = 8


def _path(per_group: int, geo: _Geometry, padded: Sequence[int] | None = None, compiled: bool = False) -> str:
    """Which kernel path a conv with ``per_group`` input channels per group takes over a padded
    input of spatial size ``padded`` (without it, never the planar or Winograd path);
    ``compiled``: whether the compiled kernels run for its dtype (:func:`_jit_runs`)."""
    if per_group == 1 and len(set(geo.stride)) == 1:  # the flat tap loop needs one stride for all dims
        return "depthwise"
    if max(geo.kernel) == 1 and max(geo.stride) == 1:
        return "direct"
    if compiled and _grouped(per_group, geo):
        return "depthwise"
    if padded is not None and max(geo.stride) > 1:
        return "planar" if per_group < _STRIDED_PLANAR_CHANNELS or max(geo.kernel) == 1 else "im2col"
    if padded is not None:
        windows = tuple(p - span(k, d) + 1 for p, k, d in zip(padded, geo.kernel, geo.dilation, strict=True))
        length = _flat_length(padded, windows)
        planar = per_group < _PLANAR_CHANNELS or length <= _PLANAR_WASTE * math.prod(windows)
        if _winograd(per_group, geo, windows, planar, compiled):
            return "winograd"
        if planar:
            return "planar"
    return "im2col"


def _winograd(per_group: int, geo: _Geometry, windows: Sequence[int], planar: bool, compiled: bool) -> bool:
    """Whether a stride-1 conv takes Winograd over ``windows`` that the planar path would take
    (``planar``) or im2col, with its transforms compiled or not: ungrouped, 3×3 (a dilated one,
    compiled, as a conv per dilation phase: :func:`.winograd.forward`) or 3×3×3 (compiled)."""
    if geo.groups > 1 or len(set(geo.dilation)) > 1 or geo.kernel not in ((3, 3), (3, 3, 3)):
        return False
    if len(geo.kernel) == 3:
        return compiled and geo.dilation[0] == 1 and per_group >= _WINOGRAD_VOLUME[0] and \
            min(windows[1:]) >= _WINOGRAD_VOLUME[1]
    if compiled:
        phases = [-(-o // geo.dilation[0]) for o in windows]
        return any(per_group >= c and min(phases) >= size for c, size in _WINOGRAD_COMPILED)
    if geo.dilation[0] > 1:
        return False
    if planar:
        return per_group >= _WINOGRAD_CHANNELS
    return per_group >= _WINOGRAD_SMALL_CHANNELS and min(windows) >= _WINOGRAD_SMALL_PLANE


def _grouped(per_group: int, geo: _Geometry) -> bool:
    """Whether a conv with ``per_group`` (> 1) input channels per group takes the depthwise path
    when the compiled kernels run: stride 1, groups, few channels per group."""
    return geo.groups > 1 and per_group <= _GROUPED_CHANNELS and max(geo.stride) == 1


def _layout(x: np.ndarray, before: Sequence[int], after: Sequence[int], path: str, strided: bool = False
            ) -> np.ndarray | _ZeroPadded:
    """Zero-pad ``x`` ``(N, C, *S)`` once, in the memory layout the kernels of ``path`` read
    fastest (``strided``: for a conv with a stride above 1).

    The im2col path gets a channels-last copy, returned as an ``(N, C, *S)`` view: a tile
    of it is then a row-major ``(positions, C)`` matrix, and a window tap a run of
    contiguous channels. The other paths read whole planes, so they keep ``x`` (padded).
    Two get ``x`` itself in a :class:`_ZeroPadded` (no copy): the depthwise path's compiled
    kernels, which pad each plane as they read it, and the strided planar path, whose split
    into stride phases (:meth:`_FlatTaps.planes`) pads as it copies.
    """
    if (any(before) or any(after)) and _reads_padded(path, x.dtype.itemsize, strided):
        return _ZeroPadded(x, tuple(before), tuple(after))
    if path != "im2col":
        return constant_pad_array(x, before, after)
    n, c, *sizes = x.shape
    out = np.moveaxis(np.zeros((n, *(s + b + a for s, b, a in zip(sizes, before, after, strict=True)), c), x.dtype),
                      -1, 1)
    _copy(out[(slice(None), slice(None)) + tuple(slice(b, b + s) for b, s in zip(before, sizes, strict=True))], x)
    return out


def _reads_padded(path: str, item: int, strided: bool) -> bool:
    """Whether the kernels of ``path`` pad the input as they read it (``item`` bytes per
    element, ``strided``: a stride above 1), so that :func:`_layout` gives them a :class:`_ZeroPadded`."""
    return path == "depthwise" and _jit_runs(item) or path == "planar" and strided


@dataclass(frozen=True)
class _ZeroPadded:
    """``data`` ``(N, C, *S)`` with ``before``/``after`` zero cells around its spatial dims, not
    copied: the padded input of the compiled depthwise kernels (:func:`_layout`), which read
    ``data`` and pad each plane in cache. ``np.asarray`` makes the padded array (the NumPy kernels)."""

    data: np.ndarray
    before: tuple[int, ...]
    after: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape[:2] + tuple(s + b + a for s, b, a in zip(self.data.shape[2:], self.before, self.after,
                                                                          strict=True))

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        padded = constant_pad_array(self.data, self.before, self.after)
        return padded if dtype is None else padded.astype(dtype, copy=False)


def _unpadded(xp: np.ndarray | _ZeroPadded) -> tuple[np.ndarray, tuple[int, ...]]:
    """The input cells of a padded input from :func:`_layout`, and the zero cells before them."""
    if isinstance(xp, _ZeroPadded):
        return xp.data, xp.before
    return xp, (0,) * (xp.ndim - 2)


def _crop(x: np.ndarray, before: Sequence[int], after: Sequence[int]) -> np.ndarray:
    """Remove ``before``/``after`` cells from the spatial dims; C-contiguous result."""
    inner = constant_pad_array(x, [-b for b in before], [-a for a in after])
    if inner.flags.c_contiguous:
        return inner
    out = np.empty(inner.shape, inner.dtype)
    _copy(out, inner)
    return out


# Channels per pass of a layout change whose planes alias: when a channel plane is a multiple
# of 4 KiB (224², 16·56²), the planes read (or written) together map to the same cache sets and
# a pass over all channels at once thrashes (64 channels at 224²: 9.3 ms whole, 3.6 ms in passes
# of 16; for other plane sizes the whole copy is as fast or faster).
_CHANNELS_PER_COPY = 16
# Window positions per chunk of such a layout change, one chunk per thread at a time.
_POSITIONS_PER_COPY = 4096


def _copy(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[...] = src`` for ``(N, C, *S)`` arrays of which one is channels-last; in chunks of
    rows and of ``_CHANNELS_PER_COPY`` channels, spread over the threads, when the planes alias."""
    n, c, *sizes = src.shape
    plane_bytes = max(abs(src.strides[1]), abs(dst.strides[1]))
    if plane_bytes % 4096 or c <= _CHANNELS_PER_COPY or src.size < _POSITIONS_PER_COPY * _CHANNELS_PER_COPY:
        dst[...] = src
        return
    rows, per_row = sizes[0], math.prod(sizes[1:])
    step = max(1, _POSITIONS_PER_COPY // per_row)

    def chunk(part: tuple[int, slice]) -> None:
        b, r = part
        for c0 in range(0, c, _CHANNELS_PER_COPY):
            channels = slice(c0, c0 + _CHANNELS_PER_COPY)
            dst[b, channels, r] = src[b, channels, r]

    tile_map(chunk, [(b, slice(r, r + step)) for b in range(n) for r in range(0, rows, step)])


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


def _flat_length(sizes: Sequence[int], windows: Sequence[int]) -> int:
    """Flat positions from the first window to the last, inclusive, of row-major planes of
    ``sizes`` (:class:`_FlatTaps`' runs, unsplit: those of the windows and of the cells past
    each row's last window)."""
    return sum((o - 1) * math.prod(sizes[i + 1:]) for i, o in enumerate(windows)) + 1


class _FlatTaps:
    """Kernel taps as shifts of a flattened padded plane, for one stride ``s`` in all dims (or,
    split into stride phases, any strides).

    Window position ``m`` (counted on the padded grid: ``m = Σ iₐ·strideₐ`` over the padded
    plane's element strides) reads cell ``offset + s·m`` for every tap, so a tap over all
    windows of a ``(rows, plane)`` array is one long 1-d slice instead of many short rows.
    The flat positions past each row's last window (``padded − windows`` per row) are computed
    and then dropped by :meth:`crop`: a few percent of extra work for long inner loops.

    With ``split`` (the planar path) the strides may differ and the reads are contiguous: the
    padded plane is split into its stride phases first (space-to-depth, :meth:`planes`). Along
    a dim, phase ``r`` holds the cells ``r + s·q`` and tap ``k`` reads phase ``k·d mod s``
    shifted by ``⌊k·d/s⌋`` at stride 1, so a strided conv's taps are long runs again and the
    columns keep their depth ``C·taps``. The phases some tap reads lie side by side, each of
    ``sizes`` cells (the windows and the largest shift); :attr:`blocks` lists each phase's taps
    as a strided set (see :func:`.subpixel.phase_taps`). Without strides the one phase is the plane.
    """

    def __init__(self, padded: Sequence[int], geo: _Geometry, windows: tuple[int, ...], split: bool = False) -> None:
        self.key = (tuple(padded), geo, windows, split)  # what it is made of (:func:`_split_plan`'s cache key)
        by = geo.stride if split else (1,) * len(padded)  # the strides the plane is split by
        sizes = tuple(padded) if not split else tuple(
            o + (k - 1) * d // s for o, k, s, d in zip(windows, geo.kernel, by, geo.dilation, strict=True))
        pitch = [math.prod(sizes[i + 1:]) for i in range(len(sizes))]  # element strides of a phase's plane
        self.sizes, self.pitch, self.windows, self.split_by = sizes, pitch, windows, by
        self.step = 1 if split else geo.stride[0]
        axes = [subpixel.phase_taps(k, s, d) for k, s, d in zip(geo.kernel, by, geo.dilation, strict=True)]
        self.phases = list(itertools.product(*axes))
        plane = math.prod(sizes)
        # per phase: its taps (slices of the kernel dims), the flat offset of the first, the steps between them
        self.blocks = [(tuple(a.taps for a in phase), i * plane + sum(a.shift * p for a, p in zip(phase, pitch)),
                        tuple(a.jump * p for a, p in zip(phase, pitch))) for i, phase in enumerate(self.phases)]
        self._geo, self._counts, self._plane = geo, [len(axis) for axis in axes], plane
        self.length = _flat_length(sizes, windows)

    @functools.cached_property
    def offsets(self) -> list[int]:
        """The flat offset of every tap, in kernel_taps order: built when a kernel runs, not for
        the memory rules, which only size the plan (a 10001×10001 kernel has 10⁸ taps)."""
        geo, counts, plane = self._geo, self._counts, self._plane
        # per dim and tap t: its share of the tap's offset, the phase (of index t mod phases along the
        # dim; phases in row-major order) and the shift
        shares = [[t % c * math.prod(counts[i + 1:]) * plane + t * d // s * p for t in range(k)]
                  for i, (k, c, d, s, p) in enumerate(zip(geo.kernel, counts, geo.dilation, self.split_by, self.pitch,
                                                          strict=True))]
        return [sum(parts) for parts in itertools.product(*shares)]

    @functools.cached_property
    def offset_array(self) -> np.ndarray:
        """:attr:`offsets` as an int64 array (the compiled kernels')."""
        return np.array(self.offsets, np.int64)

    def planes(self, xp: np.ndarray | _ZeroPadded, groups: int) -> np.ndarray:
        """``(N, C, *padded)`` -> ``(N, G, C/G, flat)``, C-contiguous: the padded planes (a copy
        only if ``xp`` is not), or split into the phases, in blocks of planes spread over the
        threads, each phase zero past the cells its taps read (and past the end of ``xp``, which
        the input gradient of a stride-1 transposed conv with output padding reaches); a
        :class:`_ZeroPadded` ``xp`` is padded as it is split."""
        n, c = xp.shape[:2]
        flat = (n, groups, c // groups, len(self.phases) * math.prod(self.sizes))
        if not self.copies(xp.shape[2:]):
            return np.ascontiguousarray(xp).reshape(flat)
        x, before = _unpadded(xp)
        parts, rows, ranges = _split_plan(self.key, xp.shape[2:], x.shape[2:], before)
        kernels = jit.kernels_for(x.dtype, "columns") if rows is not None and x.flags.c_contiguous else None
        out = (np.empty if kernels is not None else np.zeros)((n, c, len(self.phases), *self.sizes), xp.dtype)

        def split(block: tuple[int, slice]) -> None:
            b, channels = block
            if kernels is not None:  # planes b·C + channels of (N·C, rows, W)
                kernels.split_phases(x.reshape(n * c, -1, x.shape[-1]), out.reshape(n * c, -1), rows, ranges,
                                     before[-1], b * c + channels.start, b * c + min(channels.stop, c))
                return
            for i, (inside, cells) in enumerate(parts):
                out[(b, channels, i, *inside)] = x[(b, channels, *cells)]

        step = max(1, _BLOCK_ELEMENTS // math.prod(out.shape[2:]))  # channels per block
        tile_map(split, [(b, slice(c0, c0 + step)) for b in range(n) for c0 in range(0, c, step)])
        return out.reshape(flat)

    def copies(self, padded: Sequence[int]) -> bool:
        """Whether :meth:`planes` splits (copies) an input of spatial size ``padded``."""
        return len(self.phases) > 1 or self.sizes != tuple(padded)

    def reads(self, offset: int) -> slice:
        """The plane cells one tap reads, in window order."""
        return slice(offset, offset + self.step * (self.length - 1) + 1, self.step)

    def crop(self, wide: np.ndarray, windows: tuple[int, ...] | None = None, writeable: bool = False) -> np.ndarray:
        """``(..., length)`` flat positions -> ``(..., *windows)`` view of the real windows
        (``windows`` of a tile, default all)."""
        windows = self.windows if windows is None else windows
        item = wide.itemsize
        return as_strided(wide, wide.shape[:-1] + windows, wide.strides[:-1] + tuple(p * item for p in self.pitch),
                          writeable=writeable)

    def tile_span(self, t: _Tile) -> tuple[int, int]:
        """First flat position and number of flat positions of a tile's windows."""
        start = sum(q.start * p for q, p in zip(t.box, self.pitch))
        return start, sum((o - 1) * p for o, p in zip(t.windows, self.pitch, strict=True)) + 1

    def spread(self, a: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`crop`: ``(..., *windows)`` -> ``(..., length)`` with zeros between rows."""
        wide = np.zeros(a.shape[: a.ndim - len(self.windows)] + (self.length,), a.dtype)
        item = wide.itemsize
        view = as_strided(wide, a.shape, wide.strides[:-1] + tuple(p * item for p in self.pitch))
        view[...] = a
        return wide


_SplitParts = tuple[tuple[tuple[slice, ...], tuple[slice, ...]], ...]  # per phase: (inside, cells)


@functools.lru_cache(maxsize=256)
def _split_plan(key: tuple, padded: tuple[int, ...], size: tuple[int, ...], before: tuple[int, ...]
                ) -> tuple[_SplitParts, np.ndarray | None, np.ndarray | None]:
    """How :meth:`_FlatTaps.planes` (of the :class:`_FlatTaps` made of ``key``) splits an input
    of ``size`` cells with ``before`` zero cells, ``padded`` in all: per phase the cells it
    fills (``inside``) and the input cells they are (``cells``). For the compiled split
    (``_columns_numba.split_phases``: a stride of 2 along the last dim, both of whose phases
    some tap reads) also each input row's flat offset in its phases' planes (per last-dim
    phase; -1: a row no tap reads) and each last-dim phase's range of cells; else None, None.
    Computed once per shape (a tenth of a millisecond of Python)."""
    flat = _FlatTaps(*key)
    parts = []
    for phase in flat.phases:
        inside, cells = [], []
        for o, a, p, s, b, n in zip(flat.windows, phase, padded, flat.split_by, before, size, strict=True):
            reach = min(o + a.last, -(-(p - a.phase) // s))  # the phase's cells q: padded cell a.phase + s·q
            first, stop = -(-(b - a.phase) // s), -(-(b + n - a.phase) // s)  # those inside the input
            first, stop = max(first, 0), max(min(stop, reach), max(first, 0))
            inside.append(slice(first, stop))
            cells.append(slice(a.phase + s * first - b, a.phase + s * (stop - 1) - b + 1, s) if stop > first
                         else slice(0, 0))
        parts.append((tuple(inside), tuple(cells)))
    parts = tuple(parts)  # shared by every call of this shape: read-only
    if flat.split_by[-1] != 2 or sorted({phase[-1].phase for phase in flat.phases}) != [0, 1]:
        return parts, None, None
    lead = size[:-1]
    rows = np.full((math.prod(lead), 2), -1, np.int64)
    ranges = np.zeros((2, 2), np.int64)
    plane = math.prod(flat.sizes)
    for i, (phase, (inside, cells)) in enumerate(zip(flat.phases, parts, strict=True)):
        rho = phase[-1].phase
        ranges[rho] = inside[-1].start, inside[-1].stop
        source, target = np.zeros((), np.int64), np.full((), i * plane, np.int64)  # row-major, dim by dim
        for n, q, cl, pitch in zip(lead, inside, cells, flat.pitch, strict=False):
            source = np.add.outer(source * n, np.arange(cl.start, cl.stop, cl.step))
            target = np.add.outer(target, np.arange(q.start, q.stop) * pitch)
        rows[source.reshape(-1), rho] = target.reshape(-1)
    rows.flags.writeable = ranges.flags.writeable = False
    return parts, rows, ranges


def _depthwise_weight(w: np.ndarray, n: int, groups: int) -> np.ndarray:
    """``(C_out, 1, *k)`` -> ``(n·G, C_out/G, taps)``: the weights of every (sample, channel) row."""
    per_out = w.shape[0] // groups
    wd = w.reshape(1, groups, per_out, -1)
    return np.broadcast_to(wd, (n,) + wd.shape[1:]).reshape(n * groups, per_out, wd.shape[-1])


# Rows per block of the depthwise tap loop: the accumulator and its scratch stay in cache
# (ResNet/MobileNet planes at 112² run ~2× faster than whole-array passes).
_BLOCK_ELEMENTS = 1 << 18


def _row_blocks(wide: np.ndarray) -> list[slice]:
    """Blocks of ``wide``'s first dim of about ``_BLOCK_ELEMENTS`` elements."""
    per_row = max(1, math.prod(wide.shape[1:]))
    step = max(1, min(wide.shape[0], _BLOCK_ELEMENTS // per_row))
    return [slice(r, min(r + step, wide.shape[0])) for r in range(0, wide.shape[0], step)]


# --- the compiled depthwise kernels (:mod:`.jit`) ---
# Elements (read and written) per block of the compiled kernels, and the fewest blocks per
# thread: blocks of a few hundred µs, enough of them that a descheduled thread leaves its
# share to the other.
_JIT_BLOCK_ELEMENTS = 1 << 18
# Narrower windows rows than this (stride 1) run as runs of flat positions, _JIT_FLAT_LENGTH
# or so at a time, the cells past each row's last window computed and dropped: long vector
# loops on small planes (14²: 2-3× faster than row by row).
_JIT_FLAT_WIDTH = 64
_JIT_FLAT_LENGTH = 1024


def _jit_runs(item: int) -> bool:
    """Whether a depthwise conv of ``item``-byte floats runs the compiled kernels (the memory rules)."""
    return item in (4, 8) and jit.active()


def _jit_blocks(count: int, per_item: int, threads: int) -> list[tuple[int, int]]:
    """``[first, last)`` ranges of ``count`` items (``per_item`` elements each) for the compiled
    kernels: about ``_JIT_BLOCK_ELEMENTS`` each, at least ``_TILES_PER_THREAD`` per thread, as
    many for each thread (7 blocks on 2 threads leave one thread 4/7 of the work, 8 blocks 4/8)."""
    parts = max(threads * _TILES_PER_THREAD if threads > 1 else 1, count * per_item // _JIT_BLOCK_ELEMENTS)
    parts = -(-parts // threads) * threads
    step = -(-count // max(1, min(count, parts))) if count else 1
    return [(i, min(i + step, count)) for i in range(0, count, step)]


def _jit_rows(windows: Sequence[int], pitch: int, stride: Sequence[int]) -> int:
    """Rows of windows a compiled kernel takes as one run of flat positions (``pitch`` apart):
    1 (row by row) for strided or wide windows."""
    if max(stride) > 1 or windows[-1] >= _JIT_FLAT_WIDTH:
        return 1
    return max(1, min(windows[-2] if len(windows) > 1 else 1, _JIT_FLAT_LENGTH // pitch))


@functools.lru_cache(maxsize=256)
def _tap_offsets(kernel: tuple[int, int, int], dilation: tuple[int, int, int], padded: tuple[int, int, int],
                 planes: int) -> np.ndarray:
    """Flat offsets of every tap of each of ``planes`` padded planes in a row (3-d sizes): what
    the compiled kernels add to a window's first cell, computed once per shape (tens of µs of
    Python, a tenth of a small depthwise conv's time)."""
    pitch, cells = (padded[1] * padded[2], padded[2], 1), math.prod(padded)
    offsets = np.array([k * cells + sum(t * d * p for t, d, p in zip(tap, dilation, pitch, strict=True))
                        for k in range(planes) for tap in kernel_taps(kernel)], np.int64)
    offsets.flags.writeable = False
    return offsets


class _JitPlan:
    """A depthwise conv's arrays and numbers in the compiled kernels' terms (3-d, rows of
    (sample, channel) planes; see :mod:`._depthwise_numba`): ``planes`` input planes a row of
    ``size`` cells, zero-padded to ``padded`` with ``before`` cells in (by the kernels, as they
    read them), taps over all of them."""

    def __init__(self, n: int, geo: _Geometry, per_out: int, size: Sequence[int], before: Sequence[int],
                 padded: Sequence[int], windows: Sequence[int], planes: int = 1) -> None:
        self.n, self.groups, self.per_out = n, geo.groups, per_out
        self.size, self.before, self.padded = as_3d(size), as_3d(before, 0), as_3d(padded)
        self.windows, self.stride = as_3d(windows), as_3d(geo.stride)
        self.kernel, self.dilation, self.planes_in_row = as_3d(geo.kernel), as_3d(geo.dilation), planes
        self.taps = planes * math.prod(geo.kernel)  # of a row's planes: the size of ``offsets``
        self.rows = _jit_rows(self.windows, self.padded[2], self.stride)
        self.cells = planes * math.prod(self.padded)  # of a row's padded planes

    @functools.cached_property
    def offsets(self) -> np.ndarray:
        """``(taps,)`` flat offsets of every tap of a row's planes: built when a kernel runs,
        not for the memory rules, which only size the plan (a shape too large to run has
        offsets past int64, and a million planes take seconds to list)."""
        return _tap_offsets(self.kernel, self.dilation, self.padded, self.planes_in_row)

    @property
    def args(self) -> tuple:
        """The kernels' shape arguments: sizes, padding before, padded sizes, stride, tap offsets."""
        return (self.size, self.before, self.padded, self.stride, self.offsets)

    def planes(self, a: np.ndarray) -> np.ndarray:
        """``(N, G·K, *S)`` -> ``(N·G, K·S)``: the rows' planes, C-contiguous (a copy only if ``a`` is not)."""
        return np.ascontiguousarray(a).reshape(self.n * self.groups, math.prod(a.shape[1:]) // self.groups)

    def outputs(self, a: np.ndarray) -> np.ndarray:
        """``(N, C_out, *windows)`` -> ``(N·G, M, Do, Ho, Wo)``, C-contiguous (a copy only if
        ``a`` is not: for inputs, never for arrays the kernels write)."""
        return np.ascontiguousarray(a).reshape(self.n * self.groups, self.per_out, *self.windows)

    def weights(self, w: np.ndarray) -> np.ndarray:
        """``(C_out, 1, *k)`` -> ``(G, M, taps)``."""
        return np.ascontiguousarray(w).reshape(self.groups, self.per_out, -1)

    def row_blocks(self, threads: int) -> list[tuple[int, int]]:
        """Blocks of (sample, channel) rows (a row: its padded planes and its outputs)."""
        return _jit_blocks(self.n * self.groups, self.cells + self.per_out * math.prod(self.windows), threads)

    def channel_blocks(self, threads: int) -> list[tuple[int, int]]:
        """Blocks of channels, each with all its samples."""
        return _jit_blocks(self.groups, self.n * (self.cells + self.per_out * math.prod(self.windows)), threads)

    def forward(self, kernels: Any, x: np.ndarray, w: np.ndarray, y: np.ndarray) -> None:
        """The forward kernel on blocks of rows: ``y`` ``(N·G, M, *windows)`` from the rows'
        planes ``x`` and the weight ``w`` ``(G, M, K·T)``."""
        tile_map(lambda b: kernels.forward(x, w, y, *b, *self.args, self.rows), self.row_blocks(thread_count()))


@dataclass(frozen=True)
class _Tile:
    """Samples ``batch``, and within them the window positions ``box`` along the leading
    spatial dims (the rest whole): one index along all but the last of them, a range along
    the last. ``reads`` are the input cells those windows read along the same dims."""

    batch: slice
    box: tuple[slice, ...]
    reads: tuple[slice, ...]
    windows: tuple[int, ...]

    @property
    def samples(self) -> int:
        return self.batch.stop - self.batch.start

    @property
    def positions(self) -> int:
        return self.samples * math.prod(self.windows)

    def of_windows(self) -> tuple[slice, ...]:
        """Index of the tile's windows in an ``(N, C, *windows)`` array."""
        return (self.batch, slice(None)) + self.box

    def of_input(self) -> tuple[slice, ...]:
        """Index of the cells the tile reads in an ``(N, C, *padded)`` array."""
        return (self.batch, slice(None)) + self.reads


# Smallest tile worth a thread of its own, in multiply-adds (~0.1 ms of matmul on one core):
# below it the per-tile overhead (tens of µs: waking a thread, handing the GIL over) shows.
_MIN_TILE_MACS = 8 << 20
# Fewest window positions per tile (the matmul's narrow side below that runs slowly); fewer
# positions than threads × this run as one tile whose matmul is split by output channels.
_MIN_TILE_POSITIONS = 128
# Tiles per thread to aim for: enough that a thread the OS deschedules leaves its share to
# the others, few enough that each matmul stays large.
_TILES_PER_THREAD = 3


def _tiles(n: int, windows: tuple[int, ...], geo: _Geometry, position_bytes: int, threads: int = 1,
           position_macs: int = 0, per_thread: int = _TILES_PER_THREAD) -> tuple[_Tile, ...]:
    """Split the work into tiles of about ``_TILE_POSITIONS`` window positions whose columns
    (``position_bytes`` per position) take at most ``_COLUMN_BYTES``, or fewer positions when
    ``threads`` threads share the work: about ``per_thread`` tiles each, none under
    ``_MIN_TILE_MACS`` multiply-adds (``position_macs`` per position).

    Whole samples when one fits; otherwise one sample's rows along the first window dim; when
    even one row is too big (3-d volumes) one row at a time and a range along the next dim,
    and so on. A tile's positions are then contiguous in a channels-last array. Computed once
    per shape (the stem's 32 tiles took 0.16 ms of Python, in every call)."""
    return _tile_plan(*_tile_key(n, windows, geo, position_bytes, threads, position_macs, per_thread))


def _tile_ends(n: int, windows: tuple[int, ...], geo: _Geometry, position_bytes: int, threads: int = 1,
               position_macs: int = 0, per_thread: int = _TILES_PER_THREAD) -> tuple[int, tuple[_Tile, ...]]:
    """How many tiles :func:`_tiles` makes, and its first and last tile, without listing the
    others (the memory rules' view: every tile but the last of a row has the first's shape, and
    those last ones the last's; a huge input has millions of tiles)."""
    windows = tuple(windows)
    level, step = _tile_layout(*_tile_key(n, windows, geo, position_bytes, threads, position_macs, per_thread))
    if n == 0:
        return 0, ()
    if level == 0:
        count = -(-n // step)
        return count, (_tile_at(n, windows, geo, 0, step, 0), _tile_at(n, windows, geo, 0, step, (count - 1) * step))
    lead = windows[:level - 1]
    per_row = -(-windows[level - 1] // step)
    last = _tile_at(n, windows, geo, level, step, n - 1, tuple(w - 1 for w in lead), (per_row - 1) * step)
    return n * math.prod(lead) * per_row, (_tile_at(n, windows, geo, level, step, 0, (0,) * len(lead)), last)


def _tile_key(n: int, windows: Sequence[int], geo: _Geometry, position_bytes: int, threads: int, position_macs: int,
              per_thread: int) -> tuple:
    """The arguments of :func:`_tile_layout`, with the module's limits in force (a test may change them)."""
    return (n, tuple(windows), geo, position_bytes, threads, position_macs, per_thread,
            (_COLUMN_BYTES, _TILE_POSITIONS, _MIN_TILE_MACS, _MIN_TILE_POSITIONS))


@functools.lru_cache(maxsize=1024)
def _tile_layout(n: int, windows: tuple[int, ...], geo: _Geometry, position_bytes: int, threads: int,
                 position_macs: int, per_thread: int, limits: tuple[int, int, int, int]) -> tuple[int, int]:
    """How :func:`_tiles` cuts the work: ``(0, samples per tile)`` for whole samples, else
    ``(level, step)``: one index along the window dims before ``level - 1``, ``step`` along
    that one, the dims after it whole."""
    column_bytes, tile_positions, min_macs, min_positions = limits
    budget = min(column_bytes, max(2 << 20, tile_positions * position_bytes))
    positions = n * math.prod(windows)
    parts = min(threads * per_thread, positions * position_macs // min_macs,
                positions // min_positions) if threads > 1 else 1
    if parts > 1:
        budget = min(budget, max(1, positions * position_bytes // parts))
    unit = [max(1, position_bytes * math.prod(windows[k:])) for k in range(len(windows) + 1)]  # one index of dims < k
    if unit[0] <= budget:
        per_tile = budget // unit[0]
        return 0, (-(-n // -(-n // per_tile)) if n else 1)  # the same size for every tile
    level = next((k for k in range(1, len(windows) + 1) if unit[k] <= budget), len(windows))
    count = windows[level - 1]
    step = max(1, budget // unit[level])
    return level, -(-count // -(-count // step))


def _tile_at(n: int, windows: tuple[int, ...], geo: _Geometry, level: int, step: int, b: int,
             lead: tuple[int, ...] = (), r: int = 0) -> _Tile:
    """The tile of :func:`_tile_layout`'s ``(level, step)`` that starts at sample ``b`` (and,
    within a sample, at index ``lead`` of the dims before ``level - 1`` and ``r`` along it)."""
    if level == 0:
        return _Tile(slice(b, min(b + step, n)), (), (), windows)
    count = windows[level - 1]
    box = tuple(slice(i, i + 1) for i in lead) + (slice(r, min(r + step, count)),)
    reads = tuple(slice(q.start * s, (q.stop - 1) * s + span(k, d))
                  for q, s, k, d in zip(box, geo.stride, geo.kernel, geo.dilation))
    sizes = tuple(q.stop - q.start for q in box)
    return _Tile(slice(b, b + 1), box, reads, sizes + windows[level:])


@functools.lru_cache(maxsize=1024)
def _tile_plan(n: int, windows: tuple[int, ...], geo: _Geometry, position_bytes: int, threads: int,
               position_macs: int, per_thread: int, limits: tuple[int, int, int, int]) -> tuple[_Tile, ...]:
    """:func:`_tiles` for :func:`_tile_key`'s arguments."""
    level, step = _tile_layout(n, windows, geo, position_bytes, threads, position_macs, per_thread, limits)
    if level == 0:
        return tuple(_tile_at(n, windows, geo, 0, step, b) for b in range(0, n, step))
    return tuple(_tile_at(n, windows, geo, level, step, b, lead, r) for b in range(n)
                 for lead in np.ndindex(*windows[:level - 1]) for r in range(0, windows[level - 1], step))


def _rows(a: np.ndarray, t: _Tile, groups: int) -> np.ndarray:
    """The tile's cells of ``a`` ``(N, C, *windows)`` as a ``(G, positions, C/G)`` matrix;
    a view when ``a`` is channels-last (see :func:`_layout`), else a copy."""
    part = np.moveaxis(a[t.of_windows()], 1, -1)
    c = part.shape[-1]
    return part.reshape(t.positions, groups, c // groups).swapaxes(0, 1)


def _tile_columns(xp: np.ndarray, geo: _Geometry, windows: tuple[int, ...], t: _Tile, scratch: Scratch
                  ) -> np.ndarray:
    """The tile's column matrix ``(G, positions, taps·Cg)``, rows in (sample, window) order,
    columns in (tap, channel) order: the windows of the channels-last ``xp`` copied into this
    thread's reused buffer."""
    c, groups = xp.shape[1], geo.groups
    cols = scratch.take("columns", (groups, t.samples, *t.windows, *geo.kernel, c // groups), xp.dtype)
    _im2col(xp[t.of_input()], geo, t.windows, cols)
    return cols.reshape(groups, t.positions, -1)


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


# Windows rows at least this wide give the planar path columns of the windows alone (a copy
# per row) instead of flat runs (whose cells past each row's last window are computed, then
# dropped): a tile inside one sample then multiplies straight into the output, and its weight
# gradient reads the output gradient in place. A row costs more to copy than a stretch of a
# run (rows of 56 floats 2.2×, of 112 and 224 1.4× the time), what it saves is bigger. Measured
# on one thread, flat runs → windows, forward / weight gradient: 7×7/2 3→64 at 224² (N=8) 28.0
# → 26.1 / 32.2 → 28.7 ms, 3×3/2 3→32 at 224² (N=8) 5.2 → 4.6 / 7.1 → 6.2, 3×3 16→32 at 112²
# (N=8) 15.7 → 14.9 / 16.7 → 15.2, 3×3 64 at 224² (N=1) 47.8 → 47.4 / 47.5 → 45.6, 3×3 3→64 at
# 224² (N=1) 3.6 → 3.9 / 5.2 → 4.2.
_EXACT_WIDTH = 64


def _exact(windows: Sequence[int]) -> bool:
    """Whether the planar path's columns hold only the windows (see ``_EXACT_WIDTH``)."""
    return windows[-1] >= _EXACT_WIDTH


def _planar_columns(xf: np.ndarray, flat: _FlatTaps, geo: _Geometry, t: _Tile, scratch: Scratch,
                    kernels: Any = None) -> np.ndarray:
    """The planar path's columns of a tile, ``(G, Cg·taps, samples·positions)``: per (channel,
    tap) a run of the flat planes ``xf`` ``(N, G, Cg, flat)`` (:meth:`_FlatTaps.planes`), one long
    copy each, or only its windows (:func:`_exact`, a copy per row); by the compiled ``kernels``
    (``jit.kernels_for(dtype, "columns")``, asked on the caller's thread: a ``memcpy`` a run, the
    stem's 7×7/2 3→64 at 224², N=8, one thread 3.0 → 1.9 ms of its 25), or a phase's taps at a
    time through strided views."""
    start, length = flat.tile_span(t)
    src = xf[t.batch, :, :, flat.step * start:]
    item = xf.itemsize
    positions, pitch = (t.windows, flat.pitch) if _exact(flat.windows) else ((length,), [1])
    cols = scratch.take("columns", (*src.shape[1:3], *geo.kernel, t.samples, *positions), xf.dtype)
    if kernels is not None and flat.step == 1:
        starts = np.array(start, np.int64)  # the first cell of each row of positions
        for count, p in zip(positions[:-1], pitch[:-1]):
            starts = np.add.outer(starts, np.arange(count, dtype=np.int64) * p)
        kernels.planar_columns(xf.reshape(xf.shape[0], -1, xf.shape[-1]), t.batch.start, t.samples,
                               flat.offset_array, starts.reshape(-1), positions[-1], cols.reshape(-1))
        return cols.reshape(xf.shape[1], -1, t.samples * math.prod(positions))
    for taps, offset, steps in flat.blocks:
        part = cols[(slice(None), slice(None), *taps)]
        strides = (*(s * item for s in steps), src.strides[0], *(flat.step * p * item for p in pitch))
        np.copyto(part, as_strided(src[..., offset:], part.shape, src.strides[1:3] + strides, writeable=False))
    return cols.reshape(xf.shape[1], -1, t.samples * math.prod(positions))


def _planar_rows(a: np.ndarray, flat: _FlatTaps, t: _Tile, groups: int, scratch: Scratch) -> np.ndarray:
    """A tile of ``a`` ``(N, C_out, *windows)`` at the positions of its columns: ``(G, C_out/G,
    samples·positions)``, the planar path's operand of the output side; spread over the flat
    positions with zeros between rows, or (:func:`_exact`) the tile itself (a view for one sample)."""
    part = a[t.of_windows()].reshape(t.samples, groups, -1, *t.windows)
    if _exact(flat.windows):
        return np.moveaxis(part, 0, 2).reshape(groups, part.shape[2], t.positions)
    _, length = flat.tile_span(t)
    wide = scratch.zeros("wide", (groups, part.shape[2], t.samples, length), a.dtype)
    flat.crop(wide, t.windows, writeable=True)[...] = np.moveaxis(part, 0, 2)
    return wide.reshape(groups, -1, t.samples * length)


def _forward(xp: np.ndarray, w: np.ndarray, geo: _Geometry, windows: tuple[int, ...], path: str) -> np.ndarray:
    """Convolve the padded input ``xp`` ``(N, C, *L)`` (laid out by :func:`_layout` for ``path``)
    with ``w`` ``(C_out, C/G, *k)``: ``(N, C_out, *windows)``."""
    y = np.empty((xp.shape[0], w.shape[0], *windows), xp.dtype)
    _FORWARD[path](xp, w, geo, y)
    return y


def _forward_depthwise(xp: np.ndarray | _ZeroPadded, w: np.ndarray, geo: _Geometry, y: np.ndarray) -> None:
    """Into ``y`` (C-contiguous): the compiled kernels on blocks of (sample, group) rows, each
    plane padded as it is read, or NumPy's tap loop, two passes a tap over blocks of the rows'
    flat padded planes (a grouped conv: the planar path)."""
    kernels = jit.kernels_for(xp.dtype)
    if kernels is not None:
        x, before = _unpadded(xp)
        plan = _JitPlan(x.shape[0], geo, w.shape[0] // geo.groups, x.shape[2:], before, xp.shape[2:], y.shape[2:],
                        planes=w.shape[1])
        plan.forward(kernels, plan.planes(x), plan.weights(w), plan.outputs(y))
        return
    xp = np.asarray(xp)
    if w.shape[1] > 1:  # the compiled kernels' grouped conv, its backward run without them
        _forward_planar(xp, w, geo, y)
        return
    n, groups = xp.shape[0], geo.groups
    per_out = w.shape[0] // groups
    flat = _FlatTaps(xp.shape[2:], geo, y.shape[2:])
    rows = np.ascontiguousarray(xp).reshape(n * groups, 1, math.prod(xp.shape[2:]))  # a row per (sample, channel)
    wide = np.empty((n * groups, per_out, flat.length), xp.dtype)
    weights = _depthwise_weight(w, n, groups)
    scratch = Scratch()

    def block_sum(block: slice) -> None:
        acc = wide[block]
        spare = scratch.take("tap", acc.shape, acc.dtype)
        for i, offset in enumerate(flat.offsets):  # two passes a tap: NumPy has no fused multiply-add
            np.multiply(rows[block, :, flat.reads(offset)], weights[block, :, i:i + 1], out=spare if i else acc)
            if i:
                acc += spare
        y.reshape(n * groups, per_out, *y.shape[2:])[block] = flat.crop(acc)

    tile_map(block_sum, _row_blocks(wide))


def _forward_direct(xp: np.ndarray, w: np.ndarray, geo: _Geometry, y: np.ndarray) -> None:
    """1×1, stride 1: per tile one matmul of the weight with the input's planes, into ``y``."""
    n, c = xp.shape[:2]
    windows = y.shape[2:]
    x = xp[(Ellipsis,) + tuple(slice(0, o) for o in windows)]  # a transposed conv's output_padding tail
    wg = w.reshape(geo.groups, w.shape[0] // geo.groups, w.shape[1])
    threads = thread_count()

    def tile(t: _Tile) -> None:
        xt = x[t.of_windows()].reshape(t.samples, geo.groups, w.shape[1], -1)
        _matmul_into(wg, xt, y[t.of_windows()])

    tile_map(tile, _tiles(n, windows, geo, c * xp.itemsize, threads, w.size), threads)


def _matmul_into(a: np.ndarray, b: np.ndarray, target: np.ndarray) -> None:
    """``target[...] = a @ b``, written in place when ``target`` can be viewed in the product's shape."""
    shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    view = target.view()
    try:
        view.shape = shape  # a view, or AttributeError when it would need a copy
    except AttributeError:
        target[...] = matmul(a, b).reshape(target.shape)
        return
    matmul(a, b, out=view)


def _forward_planar(xp: np.ndarray | _ZeroPadded, w: np.ndarray, geo: _Geometry, y: np.ndarray | _PhaseCells) -> None:
    """Per tile, the weight in its own ``(C_out/G, Cg·taps)`` order times the tile's columns
    (:func:`_planar_columns`): straight into a C-contiguous ``y`` for a tile inside one sample
    with columns of the windows alone, else into a buffer then copied (into the phase cells of
    a :class:`_PhaseCells` ``y``)."""
    n, c = xp.shape[:2]
    groups, per_out, windows = geo.groups, w.shape[0] // geo.groups, y.shape[2:]
    flat = _FlatTaps(xp.shape[2:], geo, windows, split=True)
    xf = flat.planes(xp, groups)
    wg = w.reshape(groups, per_out, -1)  # (channel, tap) columns: the weight's own order
    scratch, threads, exact = Scratch(), thread_count(), _exact(windows)
    columns = jit.kernels_for(xf.dtype, "columns")
    direct = exact and isinstance(y, np.ndarray) and y.flags.c_contiguous

    def tile(t: _Tile) -> None:
        cols = _planar_columns(xf, flat, geo, t, scratch, columns)
        if direct and t.samples == 1:
            _matmul_into(wg, cols, y[t.of_windows()])
            return
        out = matmul(wg, cols, out=scratch.take("out", (groups, per_out, cols.shape[-1]), y.dtype))
        out = out.reshape(groups, per_out, t.samples, -1)
        real = np.moveaxis(out.reshape(out.shape[:3] + t.windows) if exact else flat.crop(out, t.windows), 2, 0)
        if isinstance(y, _PhaseCells):
            y.store(t, real)
        else:
            y[t.of_windows()].reshape(real.shape)[...] = real

    tile_map(tile, _tiles(n, windows, geo, wg.shape[2] * groups * xp.dtype.itemsize, threads, w.size), threads)


# With at most this many outputs per group the im2col path multiplies columns × weight, a
# (positions, C_out/G) product then stored transposed, instead of weight × columns: BLAS runs
# the thin-output product that way round faster. Measured (forward, N=8 unless stated, two
# threads, weight × columns → columns × weight): the digits CNN's 3×3 32 at 8² (N=64) 3.0 →
# 2.4 ms, 3×3/2 128 at 56² 18.4 → 16.4, 4×4/2 64→128 at 56² 15.7 → 14.7; but 3×3/2 128→256
# at 28² 10.3 → 10.8, 3×3 256 at 7² 6.1 → 6.6, 3×3/2 256→512 at 14² 7.5 → 8.4.
_IM2COL_POSITIONS_FIRST = 128
# Up to this many input channels per group a stride-1 im2col conv's input gradient is a flipped
# conv on the im2col path's forward kernel (whose product is then columns × weight, see above):
# copies of the gradient's windows instead of a col2im's strided adds. Measured (the input
# gradient's backward, N=8 unless stated, two threads, col2im → flipped conv): the digits CNN's
# 3×3 32 at 8² (N=64) 2.8 → 1.8 ms, 3×3 64 at 14² 2.4 → 1.7, 128 at 7² 1.6 → 1.4; 3×3 d2 256
# at 28² 55 → 54 (even), but 512 at 7² 14.7 → 19.0.
_FLIPPED_IM2COL_CHANNELS = 128


def _forward_im2col(xp: np.ndarray, w: np.ndarray, geo: _Geometry, y: np.ndarray) -> None:
    n, windows = xp.shape[0], y.shape[2:]
    groups, per_out = geo.groups, w.shape[0] // geo.groups
    wg = _gemm_weight(w, groups)
    scratch, threads = Scratch(), thread_count()

    def tile(t: _Tile) -> None:
        cols = _tile_columns(xp, geo, windows, t, scratch)
        if per_out <= _IM2COL_POSITIONS_FIRST:
            out = matmul(cols, wg.swapaxes(1, 2), out=scratch.take("out", (groups, t.positions, per_out), y.dtype))
            real = np.moveaxis(out.reshape(groups, t.samples, *t.windows, per_out), (0, -1), (1, 2))
        else:
            out = matmul(wg, cols.swapaxes(1, 2), out=scratch.take("out", (groups, per_out, t.positions), y.dtype))
            real = out.reshape(groups, per_out, t.samples, *t.windows).swapaxes(0, 2).swapaxes(1, 2)
        y[t.of_windows()].reshape(real.shape)[...] = real

    tile_map(tile, _tiles(n, windows, geo, wg.shape[2] * groups * xp.itemsize, threads, w.size), threads)


def _forward_winograd(xp: np.ndarray, w: np.ndarray, geo: _Geometry, y: np.ndarray) -> None:
    """Winograd's F(2×2, 3×3) (:mod:`.winograd`), or where its output is not all finite the
    planar path's: the transforms add and subtract a tile's cells, so an infinite cell makes NaN
    of outputs whose windows do not read it, and large finite cells can overflow (torch sums each
    window's products alone). A finite output is right: a non-finite input or weight leaves NaN
    or infinity in every tile that reads it."""
    if not winograd.runs(xp.dtype, xp.ndim):  # a 3-d conv's kernels switched off after its path was chosen
        _forward_planar(xp, w, geo, y)
        return
    winograd.forward(xp, w, y, geo.dilation[0])
    if not np.isfinite(y.sum()):  # (a sum that overflows: planar too, still right)
        _forward_planar(xp, w, geo, y)


# Each path's forward kernel, writing into its last argument ``y`` (a view with any strides).
_FORWARD: dict[str, Callable[[np.ndarray, np.ndarray, _Geometry, np.ndarray], None]] = {
    "depthwise": _forward_depthwise, "direct": _forward_direct, "planar": _forward_planar, "im2col": _forward_im2col,
    "winograd": _forward_winograd}


def _grad_input(g: np.ndarray, w: np.ndarray, geo: _Geometry, padded: tuple[int, ...], path: str) -> np.ndarray:
    """Gradient of :func:`_forward` with respect to its padded input, ``(N, C, *padded)``, for
    the output gradient ``g`` ``(N, C_out, *windows)`` laid out by :func:`_layout` for ``path``
    (the result is in that layout too). The depthwise, planar and Winograd paths' are
    :func:`_grad_input_depthwise`, :func:`_grad_input_planar` and :func:`_grad_input_winograd`,
    which leave the padding out."""
    return {"direct": _grad_input_direct, "im2col": _grad_input_im2col}[path](g, w, geo, padded)


def _grad_input_winograd(g: np.ndarray, w: np.ndarray, geo: _Geometry, padded: tuple[int, ...],
                         before: Sequence[int], after: Sequence[int]) -> np.ndarray:
    """The input gradient without the ``before``/``after`` padding, ``(N, C, *S)``: Winograd's,
    made without the padding when it is the same on every side, ≤ 2 cells of each dilation
    phase (a 3×3 conv's ``padding=1``; 3×3 128 at 28², N=8, 2 threads: 13.5 → 9.9 ms), else
    made padded and cropped; where it is not all finite, the planar path's (see
    :func:`_forward_winograd`)."""
    if not winograd.runs(g.dtype, g.ndim):  # a 3-d conv's kernels switched off since its forward
        return _grad_input_planar(g, w, geo, padded, before, after)
    if _winograd_unpadded(geo, before, after):
        gx = winograd.grad_input(g, w, padded, before[0] // geo.dilation[0], geo.dilation[0])
    else:
        gx = _crop(winograd.grad_input(g, w, padded, dilation=geo.dilation[0]), before, after)
    return gx if np.isfinite(gx.sum()) else _grad_input_planar(g, w, geo, padded, before, after)


def _winograd_unpadded(geo: _Geometry, before: Sequence[int], after: Sequence[int]) -> bool:
    """Whether Winograd's input gradient is made without the conv's padding (see
    :func:`.winograd.grad_input`): the same on every side, ≤ 2 cells of each dilation phase."""
    d = geo.dilation[0]
    return len(set(before) | set(after)) == 1 and before[0] % d == 0 and 0 <= before[0] // d <= 2


def _grad_input_depthwise(g: np.ndarray, w: np.ndarray, geo: _Geometry, padded: tuple[int, ...],
                          before: Sequence[int], after: Sequence[int]) -> np.ndarray:
    """The input gradient without the ``before``/``after`` padding, ``(N, C, *S)`` C-contiguous.
    The compiled kernels write those cells only: for stride 1 and finite weights a forward conv
    of the output gradient, padded by the kernel's reach less the conv's padding, with the
    flipped kernel, whose windows are the input cells; otherwise each output gradient row added
    onto the padded plane's cells its windows read, tap by tap, the input cells then copied out
    (for non-finite weights only the products the conv made: torch adds no ``0·inf``). NumPy's
    tap loop fills the padded gradient, which is then cropped; a grouped conv's (several
    channels per group) is the planar path's then."""
    kernels = jit.kernels_for(g.dtype)
    finite = bool(np.isfinite(w).all())
    if kernels is not None and max(geo.stride) == 1 and finite:
        return _grad_input_flipped(kernels, g, w, geo, padded, before, after)
    if w.shape[1] > 1:
        return _grad_input_planar(g, w, geo, padded, before, after)
    if kernels is not None:
        return _grad_input_scatter(kernels, g, w, geo, padded, before, after, finite)
    # the zeros between rows would add 0·inf = NaN onto real cells (torch adds none)
    return _crop((_grad_input_depthwise_numpy if finite else _grad_input_im2col)(g, w, geo, padded), before, after)


def _grad_input_depthwise_numpy(g: np.ndarray, w: np.ndarray, geo: _Geometry, padded: tuple[int, ...]) -> np.ndarray:
    """The padded input gradient, one strided add per tap (col2im) over blocks of rows."""
    n, groups, per_out = g.shape[0], geo.groups, g.shape[1] // geo.groups
    flat = _FlatTaps(padded, geo, g.shape[2:])
    gx = np.zeros((n, groups, *padded), g.dtype)
    rows = gx.reshape(n * groups, math.prod(padded))
    wide = flat.spread(g).reshape(n * groups, per_out, flat.length)
    weights = _depthwise_weight(w, n, groups)
    scratch = Scratch()

    def block_sum(block: slice) -> None:  # col2im as one strided add per tap
        spare = scratch.take("tap", wide[block].shape, g.dtype)
        for i, offset in enumerate(flat.offsets):
            part = np.multiply(wide[block], weights[block, :, i:i + 1], out=spare)
            target = rows[block, flat.reads(offset)]
            np.add(target, part[:, 0] if per_out == 1 else part.sum(axis=1), out=target)

    tile_map(block_sum, _row_blocks(wide))
    return gx


def _unpadded_size(padded: Sequence[int], before: Sequence[int], after: Sequence[int]) -> tuple[int, ...]:
    """The input's spatial size: ``padded`` less ``before``/``after``."""
    return tuple(p - b - a for p, b, a in zip(padded, before, after, strict=True))


def _grad_input_flipped(kernels: Any, g: np.ndarray, w: np.ndarray, geo: _Geometry, padded: tuple[int, ...],
                        before: Sequence[int], after: Sequence[int]) -> np.ndarray:
    """Stride 1: the compiled forward kernel over the output gradient's ``C_out/G`` planes of
    each group with the weight flipped and transposed, ``(G, C/G, C_out/G·taps)``."""
    n, groups, per_group, per_out = g.shape[0], geo.groups, w.shape[1], g.shape[1] // geo.groups
    size = _unpadded_size(padded, before, after)
    gx = np.empty((n, groups * per_group, *size), g.dtype)
    reach = [span(k, d) - 1 for k, d in zip(geo.kernel, geo.dilation, strict=True)]
    plan = _JitPlan(n, geo, per_group, g.shape[2:], [r - b for r, b in zip(reach, before, strict=True)],
                    [s + r for s, r in zip(size, reach, strict=True)], size, planes=per_out)
    spatial = tuple(range(3, 3 + len(geo.kernel)))
    flipped = np.flip(w.reshape(groups, per_out, per_group, *geo.kernel), spatial).swapaxes(1, 2)
    plan.forward(kernels, plan.planes(g), np.ascontiguousarray(flipped).reshape(groups, per_group, -1),
                 plan.outputs(gx))
    return gx


def _grad_input_scatter(kernels: Any, g: np.ndarray, w: np.ndarray, geo: _Geometry, padded: tuple[int, ...],
                        before: Sequence[int], after: Sequence[int], finite: bool) -> np.ndarray:
    """One input channel per group: the compiled scatter of each output gradient row onto the
    padded plane (``finite``: ``0·w`` added to cells no window reads too)."""
    n, groups, per_out = g.shape[0], geo.groups, g.shape[1] // geo.groups
    gx = np.empty((n, groups, *_unpadded_size(padded, before, after)), g.dtype)
    plan = _JitPlan(n, geo, per_out, gx.shape[2:], before, padded, g.shape[2:])
    go, planes, wd = plan.outputs(g), plan.planes(gx), plan.weights(w)
    tile_map(lambda b: kernels.grad_input_scatter(go, wd, planes, *b, *plan.args, not finite),
             plan.row_blocks(thread_count()))
    return gx


def _grad_input_direct(g: np.ndarray, w: np.ndarray, geo: _Geometry, padded: tuple[int, ...]) -> np.ndarray:
    n, windows = g.shape[0], g.shape[2:]
    groups, per_group = geo.groups, w.shape[1]
    gx = (np.empty if tuple(windows) == tuple(padded) else np.zeros)((n, groups * per_group, *padded), g.dtype)
    inner = gx[(Ellipsis,) + tuple(slice(0, o) for o in windows)]
    wt = w.reshape(groups, -1, per_group).swapaxes(1, 2)
    threads = thread_count()

    def tile(t: _Tile) -> None:
        _matmul_into(wt, g[t.of_windows()].reshape(t.samples, groups, wt.shape[2], -1), inner[t.of_windows()])

    tile_map(tile, _tiles(n, windows, geo, g.shape[1] * g.itemsize, threads, w.size), threads)
    return gx


def _overlapping(tiles: Sequence[_Tile], threads: int) -> bool:
    """Whether tiles run at the same time may add onto the same input cells: tiles inside one
    sample read overlapping rows. Such tiles sum into a buffer of their own, added in tile order
    (an extra pass over the tile's input cells, in cache)."""
    return threads > 1 and any(t.box for t in tiles)


def _grad_input_planar(g: np.ndarray, w: np.ndarray, geo: _Geometry, padded: tuple[int, ...],
                       before: Sequence[int], after: Sequence[int], path: str = "planar") -> np.ndarray:
    """The input gradient without the ``before``/``after`` padding, ``(N, C, *S)`` C-contiguous.
    A stride-1 conv's is the full correlation of ``g`` with the flipped kernel, channels in and
    out swapped per group: a forward planar conv over ``g`` padded by the kernel's span − 1
    less the conv's padding, whose windows are the input cells (no padded gradient, no crop:
    3×3×3 64 at 16·56², N=8, 2 threads: 1021 → 662 ms). Its columns are copies and its tiles
    write disjoint outputs, where a col2im adds per tap and tiles inside one sample overlap
    (2 threads against a planar col2im: grouped 3×3 g32 at 28² 20-30 % faster, 3×3 64 at 224²
    20 %, 3×3×3 64 at 16·56² 40 %, 3×3 128 at 28² 10 %; for depthwise convs 5-15 % slower, so
    they keep their own). A strided
    conv's (the planar path's over stride phases) goes through im2col's col2im, channels-last;
    so does one with a non-finite weight, which the flipped conv would multiply by ``g``'s zero
    border (``0·inf``: NaN in cells torch adds no such product to).

    The im2col path's stride-1 gradient with few channels (``path``, ``g`` channels-last; see
    ``_FLIPPED_IM2COL_CHANNELS``) is the same flipped conv on its own forward kernel over a
    channels-last copy."""
    if max(geo.stride) > 1 or not np.isfinite(w).all():
        return _crop(_grad_input_im2col(g, w, geo, padded), before, after)
    groups, per_group = geo.groups, w.shape[1]
    per_out, nd = w.shape[0] // groups, len(geo.kernel)
    flipped = np.flip(w.reshape(groups, per_out, per_group, *geo.kernel).swapaxes(1, 2), tuple(range(3, 3 + nd)))
    reach = [span(k, d) - 1 for k, d in zip(geo.kernel, geo.dilation, strict=True)]
    # g padded by the reach less the padding (cropped where the padding is past the reach)
    gp = _reach(g, [b - r for b, r in zip(before, reach, strict=True)],
                [o + 2 * r - b - a for o, r, b, a in zip(g.shape[2:], reach, before, after, strict=True)], path)
    gx = np.empty((g.shape[0], groups * per_group, *_unpadded_size(padded, before, after)), g.dtype)
    _FORWARD[path](gp, flipped.reshape(groups * per_group, per_out, *geo.kernel), geo, gx)
    return gx


def _grad_input_im2col(g: np.ndarray, w: np.ndarray, geo: _Geometry, padded: tuple[int, ...]) -> np.ndarray:
    n, windows = g.shape[0], tuple(g.shape[2:])
    groups, per_group = geo.groups, w.shape[1]
    c = groups * per_group
    gx = np.moveaxis(np.zeros((n, *padded, c), g.dtype), -1, 1)  # channels-last, like the columns
    wg = _gemm_weight(w, groups)
    scratch, threads = Scratch(), thread_count()
    tiles = _tiles(n, windows, geo, wg.shape[2] * groups * g.itemsize, threads, w.size)
    shared, turn = _overlapping(tiles, threads), threading.Condition()
    added = 0  # tiles whose box is in gx: boxes go in in tile order, for a result independent of timing

    def tile(i: int) -> None:
        nonlocal added
        t, box = tiles[i], None
        target = gx[t.of_input()]
        try:
            cols = matmul(_rows(g, t, groups), wg, out=scratch.take("columns", (groups, t.positions, wg.shape[2]),
                                                                         g.dtype))
            cols = cols.reshape(groups, t.samples, *t.windows, *geo.kernel, per_group)
            if not shared:
                _col2im(cols, target, geo, t.windows)
                return
            box = np.moveaxis(scratch.zeros("box", (t.samples, *target.shape[2:], c), g.dtype), -1, 1)
            _col2im(cols, box, geo, t.windows)
        finally:
            if shared:  # a failed tile still takes its turn, or the next ones would wait forever
                with turn:
                    turn.wait_for(lambda: added == i)
                    if box is not None:
                        target += box
                    added += 1
                    turn.notify_all()

    tile_map(tile, range(len(tiles)), threads)
    return gx


# Fewest input channels per group for which a strided conv's input gradient runs one stride-1
# conv per stride phase (:func:`_grad_input_phased`) instead of a matmul into columns and a
# col2im. Measured on one thread, float32, N=8 (phased vs col2im): transposed k4/2 128→64 at 28²
# 25 vs 28 ms, 3×3/2 128 at 56² 24 vs 31, 1×1/2 256→512 at 56² 21 vs 38, 3×3/2 8→32 at 112²
# 4.3 vs 6.0; ResNet's stem (3 channels, 7×7/2) 164 vs 109: a phase's matmul has as many rows
# as the conv has input channels, so few channels make thin matmuls over deep columns.
_PHASED_CHANNELS = 8


# With the compiled kernels, a strided conv's input gradient (a transposed conv's output) is
# instead one matmul per sample for the products of every tap, ``(Cg·taps, C_out/G) @ (C_out/G,
# positions)``: ``g`` itself is its operand (no padded copy, no columns, no product of a zero
# border: none of the stacked phases' waste), and the products are added onto the cells by the
# compiled col2im (per channel, through its stride phases' planes in cache). From this many
# windows per sample: smaller planes make thin matmuls. Measured (N=8, 2 threads, phases → taps,
# best of 12 alternating): transposed k4/2 128→64 at 28² 14.0 → 10.6 ms, 256→128 at 14² 17.0 →
# 11.3, 64→32 at 56² 13.5 → 11.2, k2/2 128→64 at 28² 3.7 → 3.1; the input gradient of 3×3/2 128
# at 56² 38 → 32, 256 at 28² 35 → 28, of 1×1/2 256→512 at 56² 26 → 25, 3×3/2 64 at 112² (N=1)
# 7.6 → 5.1; but over 7² windows k4/2 512→256 17.3 → 18.4, 256→128 (N=1) 1.9 → 2.4, the input
# gradient of 3×3/2 512 at 14² 34 → 35.
#
# With fewer than ``_PHASED_CHANNELS`` channels per group its matmul is no thinner (its rows are
# Cg·taps), where NumPy's col2im adds each tap's products in a strided pass over the whole
# gradient. Measured (N=8, 2 threads, col2im → taps, best of 15): ResNet's stem 7×7/2 3→64 at
# 224² 53 → 14 ms, 3×3/2 3→32 at 224² 9.5 → 2.2, 4→16 at 56² 1.3 → 0.4, grouped 3×3/2 32→32
# g16 at 112² 29 → 2.2, 64→64 g32 at 56² 14.5 → 3.5.
_TAPS_POSITIONS = 100
# Bytes of products per tile at most: a sample's channels in blocks that stay in cache.
_TAPS_BYTES = 4 << 20
# With one input channel per group (the depthwise path's compiled scatter otherwise), fewest
# output channels per group for the taps: each tile's matmul is ``(taps, C_out/G) @ (C_out/G,
# positions)``, which one or a few outputs reduce to a scaled copy per tap. Measured as above
# (scatter → taps): 3×3/2 1→16 at 112² 1.4 → 0.5 ms (5×5), 4→64 g4 at 112² 2.2 → 0.9, 2→64 g2
# at 56² 0.8 → 0.3; 8→64 g8 at 56² 1.1 → 1.2, 16→64 g16 1.0 → 2.1, depthwise 32 at 112² 1.7 →
# 6.4.
_TAPS_DEPTHWISE_OUTPUTS = 16


def _by_taps(per_group: int, per_out: int, geo: _Geometry, windows: Sequence[int], item: int) -> bool:
    """Whether the input gradient of a conv with ``per_group`` input and ``per_out`` output
    channels per group over ``windows`` (the output gradient's spatial size), for
    ``item``-byte floats, takes :func:`_grad_input_taps` (when the compiled kernels import)."""
    return (max(geo.stride) > 1 and _jit_runs(item) and math.prod(windows) >= _TAPS_POSITIONS
            and (per_group > 1 or per_out >= _TAPS_DEPTHWISE_OUTPUTS))


def _grad_input_taps(kernels: Any, g: np.ndarray, w: np.ndarray, geo: _Geometry, padded: tuple[int, ...],
                     before: Sequence[int], after: Sequence[int]) -> np.ndarray:
    """The input gradient without the ``before``/``after`` padding, ``(N, C, *S)`` C-contiguous,
    per tile (a sample's block of channels of one group) one matmul for the products of every
    tap, ``(Cg·taps, C_out/G)`` (the weight, transposed) times the sample's output gradient
    ``(C_out/G, positions)``, added onto the cells by the compiled col2im
    (``kernels.add_taps``). Every product torch takes and no other: a non-finite weight reaches
    torch's cells."""
    n, groups, per_group = g.shape[0], geo.groups, w.shape[1]
    per_out, taps, windows = w.shape[0] // groups, math.prod(geo.kernel), g.shape[2:]
    positions, region = math.prod(windows), _unpadded_size(padded, before, after)
    gx = np.empty((n, groups * per_group, *region), g.dtype)
    if gx.size == 0:
        return gx
    wt = np.ascontiguousarray(w.reshape(groups, per_out, per_group * taps).swapaxes(1, 2))
    gs = np.ascontiguousarray(g).reshape(n, groups, per_out, positions)
    threads = thread_count()
    step = _taps_step(n, groups, per_group, taps * positions * g.itemsize, threads)
    tiles = [(b, grp, c0) for b in range(n) for grp in range(groups) for c0 in range(0, per_group, step)]
    out = gx.reshape(n, groups, per_group, *as_3d(region))
    sizes = (as_3d(geo.kernel), as_3d(windows), as_3d(geo.stride), as_3d(geo.dilation), as_3d(before, 0))
    scratch = Scratch()

    def tile(t: tuple[int, int, int]) -> None:
        b, grp, c0 = t
        c1 = min(c0 + step, per_group)
        z = matmul(wt[grp, c0 * taps:c1 * taps], gs[b, grp],
                   out=scratch.take("products", ((c1 - c0) * taps, positions), g.dtype))
        kernels.add_taps(z.reshape(c1 - c0, taps, positions), out[b, grp, c0:c1], *sizes)

    tile_map(tile, tiles, threads)
    return gx


def _taps_step(n: int, groups: int, per_group: int, channel_bytes: int, threads: int) -> int:
    """Channels per tile of :func:`_grad_input_taps` (``channel_bytes`` of products each): at
    most ``_TAPS_BYTES`` of products, and about ``_TILES_PER_THREAD`` tiles per thread."""
    return max(1, min(per_group, _TAPS_BYTES // channel_bytes,
                      -(-per_group * n * groups // (threads * _TILES_PER_THREAD))))


def _phased(per_group: int, geo: _Geometry) -> bool:
    """Whether the input gradient of a conv with ``per_group`` input channels per group (or a
    transposed conv's forward) runs per stride phase."""
    return max(geo.stride) > 1 and per_group >= _PHASED_CHANNELS


def _phase_plan(geo: _Geometry, per_out: int, padded: Sequence[int], before: Sequence[int],
                after: Sequence[int]) -> list[tuple[subpixel.Phase, _Geometry, str]]:
    """The phases some tap reaches, each with its stride-1 conv's geometry and kernel path (its
    input: ``per_out`` output-gradient channels per group)."""
    region = [(b, p - a) for b, p, a in zip(before, padded, after, strict=True)]
    plan = []
    for ph in subpixel.phases(geo.kernel, geo.stride, geo.dilation, region):
        if not ph.empty:
            sub = _Geometry(ph.kernel, (1,) * len(geo.kernel), ph.dilation, geo.groups)
            plan.append((ph, sub, _path(per_out, sub, ph.length)))
    return plan


def _grad_input_phased(g: np.ndarray, w: np.ndarray, geo: _Geometry, padded: tuple[int, ...],
                       before: Sequence[int], after: Sequence[int]) -> np.ndarray:
    """The input gradient of a strided conv without its ``before``/``after`` cells,
    ``(N, C, *region)`` C-contiguous: per stride phase a stride-1 conv (on its own path) of the
    output gradient ``g`` ``(N, C_out, *windows)`` with the phase's taps of the kernel,
    reversed, channels swapped per group (:mod:`.subpixel`), written into the phase's cells;
    or all phases as one conv when they stack (:func:`_stacked`)."""
    groups, per_group, per_out = geo.groups, w.shape[1], w.shape[0] // geo.groups
    plan = _phase_plan(geo, per_out, padded, before, after)
    region = _unpadded_size(padded, before, after)
    filled = len(plan) == math.prod(min(s, size) for s, size in zip(geo.stride, region, strict=True))
    gx = (np.empty if filled else np.zeros)((g.shape[0], groups * per_group, *region), g.dtype)
    swapped = w.reshape(groups, per_out, per_group, *geo.kernel).swapaxes(1, 2)
    stack = _stacked(plan, per_out)
    if stack is not None:
        _run_stacked(g, swapped, plan, stack, gx)
        return gx
    for ph, sub, path in plan:
        _run_phase(g, swapped[(Ellipsis,) + np.ix_(*ph.taps)], ph, sub, path, gx)
    return gx


def _reach(g: np.ndarray, start: Sequence[int], length: Sequence[int], path: str) -> np.ndarray | _ZeroPadded:
    """``g`` over ``[start, start + length)`` per spatial dim, zero outside it, in ``path``'s
    layout (``g`` itself when that is exactly ``g``)."""
    inside = tuple(slice(max(s, 0), min(s + n, o)) for s, n, o in zip(start, length, g.shape[2:], strict=True))
    gp = _layout(g[(slice(None), slice(None)) + inside], [q.start - s for q, s in zip(inside, start)],
                 [s + n - q.stop for q, s, n in zip(inside, start, length)], path)
    return gp if path == "im2col" else np.ascontiguousarray(gp)  # the planar kernels read whole planes


def _run_phase(g: np.ndarray, taps: np.ndarray, ph: subpixel.Phase, sub: _Geometry, path: str,
               gx: np.ndarray) -> None:
    """One phase: ``g`` over the phase's reach (:func:`_reach`) convolved with ``taps``
    ``(G, C/G, C_out/G, *k')`` into the phase's cells of ``gx``. A function of its own so that
    each phase's buffers are freed before the next phase allocates its own."""
    gp = _reach(g, ph.start, ph.length, path)
    weight, cells = taps.reshape(-1, *taps.shape[2:]), gx[(slice(None), slice(None)) + ph.cells]
    if path == "depthwise":  # (one output channel per group) its kernels write C-contiguous outputs
        cells[...] = _forward(gp, weight, sub, ph.size, path)
    else:
        _FORWARD[path](gp, weight, sub, cells)


class _Stack(NamedTuple):
    """The phases of a strided conv's input gradient as one stride-1 conv (:func:`_stacked`):
    its input is ``g`` over ``[start, start + length)``, its geometry ``sub``, ``windows`` its
    output's size, ``path`` its kernel path."""

    start: tuple[int, ...]
    length: tuple[int, ...]
    windows: tuple[int, ...]
    sub: _Geometry
    path: str


# The phases of an input gradient run as one conv (:func:`_stacked`) while its windows, which
# cover every phase's, are at most this many times the phases' cells: a kernel of k = 2s (a
# transposed k4/2 conv's phases are 2×2 convs whose reaches start one cell apart) computes
# (29/28)² = 7 % more at 28², and saves each phase's padded copy of g and columns; its matmul
# has the phases' outputs as rows. Measured (transposed convs, N=8, phases one by one →
# stacked, planar tiles copied into the cells, one thread unless stated, best of 9-15): k4/2
# 128→64 at 28² 28.8 → 22.3 ms (two threads 17.0 → 12.8), 64→32 at 56² 36.1 → 23.1, 32→16 at
# 20² (waste 1.10) 1.70 → 1.13, 256→128 at 20² (1.10) 48.3 → 43.5, 512→256 at 28² 367 → 333;
# k2/2 128→64 at 28² 9.2 → 8.0; but at 14² (1.15) 128→64 7.9 → 7.9, 512→256 97 → 104, and at
# 12² (1.17) 256→128 19.1 → 21.2, 64→64 3.1 → 3.5.
_STACK_WASTE = 1.12


def _stacked(plan: list[tuple[subpixel.Phase, _Geometry, str]], per_out: int) -> _Stack | None:
    """The phases of ``plan`` (:func:`_phase_plan`) as one conv over the union of their reaches,
    with the phases' taps stacked as its output channels: when there are several, all with one
    kernel and dilation, and their union wastes at most ``_STACK_WASTE``; else ``None``."""
    if len(plan) < 2 or len({(ph.kernel, ph.dilation) for ph, _, _ in plan}) > 1:
        return None
    start = tuple(map(min, zip(*(ph.start for ph, _, _ in plan))))
    stop = tuple(map(max, zip(*((s + n for s, n in zip(ph.start, ph.length)) for ph, _, _ in plan))))
    length = tuple(b - a for a, b in zip(start, stop))
    sub = plan[0][1]
    windows = tuple(n - span(k, d) + 1 for n, k, d in zip(length, sub.kernel, sub.dilation, strict=True))
    if len(plan) * math.prod(windows) > _STACK_WASTE * sum(math.prod(ph.size) for ph, _, _ in plan):
        return None
    return _Stack(start, length, windows, sub, _path(per_out, sub, length))


def _run_stacked(g: np.ndarray, swapped: np.ndarray, plan: list[tuple[subpixel.Phase, _Geometry, str]],
                 stack: _Stack, gx: np.ndarray) -> None:
    """All phases as one conv (:func:`_stacked`): ``g`` over their union reach with the
    phases' taps of ``swapped`` ``(G, C/G, C_out/G, *k)`` stacked per group, ``(G, phase,
    C/G)`` output channels, into the phases' cells of ``gx`` (:class:`_PhaseCells`): by the
    planar path tile by tile, by the others through their whole output, copied afterwards in
    blocks of samples and channels on the threads."""
    groups, per_group, per_out = swapped.shape[:3]
    taps = np.empty((groups, len(plan), per_group, per_out, *stack.sub.kernel), swapped.dtype)
    for i, (ph, _, _) in enumerate(plan):
        taps[:, i] = swapped[(Ellipsis,) + np.ix_(*ph.taps)]
    gp, weight = _reach(g, stack.start, stack.length, stack.path), taps.reshape(-1, *taps.shape[3:])
    cells = _PhaseCells(gx, groups, [ph for ph, _, _ in plan], stack)
    if stack.path == "planar":
        _forward_planar(gp, weight, stack.sub, cells)
        return
    out = _forward(gp, weight, stack.sub, stack.windows, stack.path)
    n = g.shape[0]
    threads = thread_count()
    per_block = per_group if n >= 2 * threads else -(-per_group * n // (2 * threads))  # channels per block
    blocks = [(b, slice(c0, c0 + per_block)) for b in range(n) for c0 in range(0, per_group, per_block)]

    def copy(block: tuple[int, slice]) -> None:
        b, channels = block
        cells.store(_Tile(slice(b, b + 1), (), (), stack.windows), out[b:b + 1], channels)

    tile_map(copy, blocks)


class _PhaseCells:
    """The phase cells of an input gradient ``gx`` ``(N, C, *region)`` as the output of the
    phases' stacked conv (:func:`_run_stacked`), whose output channels are ``(G, phase, C/G)``
    and whose window ``m`` is cell ``m − offset`` of each phase (outside a phase's cells:
    dropped). Only :meth:`store` writes it."""

    def __init__(self, gx: np.ndarray, groups: int, phases: list[subpixel.Phase], stack: _Stack) -> None:
        self.target = gx.reshape(gx.shape[0], groups, gx.shape[1] // groups, *gx.shape[2:])  # not -1: N may be 0
        self.phases, self.start = phases, stack.start
        self.shape = (gx.shape[0], gx.shape[1] * len(phases), *stack.windows)
        self.dtype = gx.dtype

    def store(self, t: _Tile, part: np.ndarray, channels: slice = slice(None)) -> None:
        """Copy a tile's outputs ``part`` ``(samples, C_out, *t.windows)`` (of windows ``t.box``
        along the leading dims, all along the rest) into the phases' cells (``channels``: of
        each phase, only these)."""
        groups, per_group = self.target.shape[1:3]
        part = part.reshape(t.samples, groups, len(self.phases), per_group, *t.windows)
        box = t.box + tuple(slice(0, w) for w in self.shape[2 + len(t.box):])
        for i, ph in enumerate(self.phases):
            src, dst = [], []
            for q, cells, start, lo, size in zip(box, ph.cells, ph.start, self.start, ph.size, strict=True):
                first, stop = max(q.start, start - lo), min(q.stop, start - lo + size)  # windows of this phase
                if first >= stop:
                    break
                src.append(slice(first - q.start, stop - q.start))
                at = cells.start + cells.step * (first - start + lo)
                dst.append(slice(at, at + cells.step * (stop - first - 1) + 1, cells.step))
            else:
                each = slice(None)
                self.target[(t.batch, each, channels, *dst)] = part[(each, each, i, channels, *src)]


def _grad_weight(xp: np.ndarray, g: np.ndarray, geo: _Geometry, path: str) -> np.ndarray:
    """Gradient of :func:`_forward` with respect to its weight, ``(C_out, C/G, *k)``, from the
    padded input and the output gradient laid out by :func:`_layout` for ``path``."""
    shape = (g.shape[1], xp.shape[1] // geo.groups, *geo.kernel)
    return {"depthwise": _grad_weight_depthwise, "direct": _grad_weight_direct, "planar": _grad_weight_planar,
            "im2col": _grad_weight_im2col, "winograd": _grad_weight_winograd}[path](xp, g, geo).reshape(shape)


def _grad_weight_winograd(xp: np.ndarray, g: np.ndarray, geo: _Geometry) -> np.ndarray:
    """Winograd's (:func:`.winograd.grad_weight`, per dilation phase), or where it is not all
    finite the planar path's (as :func:`_forward_winograd`). Convs on small planes
    (:func:`_small_winograd`) take im2col's kernel over channels-last copies of ``xp`` and
    ``g`` instead. Measured (N=8 unless said, 2 threads): planar → Winograd 3×3 128 at 28²
    13.8 → 8.0 ms, 64 at 56² 13.2 → 10.1, 48 at 56² 8.4 → 6.7, 64 at 224² (N=1) 23.7 → 21.1, d2
    256 at 28² 50.8 → 39.8, 3×3×3 64 at 16×56² 645 → 493; but 256 at 14² 12.6 → 17.3, where
    im2col's kernel takes 11.5 (planar 14.6)."""
    if xp.ndim == 5 and not winograd.runs(xp.dtype, xp.ndim):  # its kernels switched off since the forward
        return _grad_weight_planar(xp, g, geo)
    if _small_winograd(g.shape[2:]):
        zeros = (0,) * (g.ndim - 2)
        return _grad_weight_im2col(_layout(xp, zeros, zeros, "im2col"), _layout(g, zeros, zeros, "im2col"), geo)
    gw = winograd.grad_weight(xp, g, geo.dilation[0])
    return gw if np.isfinite(gw).all() else _grad_weight_planar(xp, g, geo)


def _dilation_phase(sizes: Sequence[int], geo: _Geometry) -> tuple[int, ...]:
    """The first (largest) dilation phase of ``sizes``: the cells a Winograd conv per phase
    takes at a time (:func:`.winograd.forward`)."""
    return tuple(-(-s // d) for s, d in zip(sizes, geo.dilation, strict=True))


def _phase_count(geo: _Geometry) -> int:
    """How many dilation phases a Winograd conv runs (one without a dilation)."""
    return math.prod(geo.dilation)


def _small_winograd(windows: Sequence[int]) -> bool:
    """Whether a Winograd conv's windows are the small planes :func:`_path` gives it from
    ``_WINOGRAD_SMALL_CHANNELS`` channels (the others have the planar path's flat runs)."""
    return min(windows[-2:]) <= _WINOGRAD_SMALL_PLANE


def _grad_weight_depthwise(xp: np.ndarray | _ZeroPadded, g: np.ndarray, geo: _Geometry) -> np.ndarray:
    """Per tap, one dot product per (sample, channel) row: ``(G, C_out/G, taps)``. The compiled
    kernels sum each channel's products over all samples in one block (blocks of channels),
    each plane padded as it is read, the output gradient's rows at their flat positions (dot
    products over runs of rows: 8×512×14², 2 threads, 0.71 → 0.52 ms against per-position
    lanes; 8×32×112² 2.4 → 1.9). A grouped conv's (several channels per group): compiled,
    per (sample, group) and output the dot products of its gradient's rows with the group's
    padded planes at each tap (3×3 g32 256 at 28², N=8, 2 threads: 2.6 ms, the planar path's
    4.0-4.5). A compiled result that is not all finite is made again by im2col's kernel (the
    zeros between the gradient's rows meet input cells: ``0·inf``); without the kernels, the
    planar path's."""
    n, groups, per_out = g.shape[0], geo.groups, g.shape[1] // geo.groups
    kernels = jit.kernels_for(g.dtype)
    if xp.shape[1] > groups:
        if kernels is None:
            return _grad_weight_planar(np.asarray(xp), g, geo)
        x, before = _unpadded(xp)
        plan = _JitPlan(n, geo, per_out, x.shape[2:], before, xp.shape[2:], g.shape[2:], planes=x.shape[1] // groups)
        gw = np.empty((groups, per_out, plan.offsets.size), g.dtype)
        xs, go = plan.planes(x), plan.outputs(g)
        tile_map(lambda b: kernels.grad_weight_planes(xs, go, gw, *b, *plan.args[:3], plan.offsets),
                 plan.channel_blocks(thread_count()))
        return _exact_if_non_finite(gw, xp, g, geo)
    if kernels is not None:
        x, before = _unpadded(xp)
        plan = _JitPlan(n, geo, per_out, x.shape[2:], before, xp.shape[2:], g.shape[2:])
        xs, go = plan.planes(x), plan.outputs(g)
        gw = np.empty((groups, per_out, plan.offsets.size), g.dtype)
        tile_map(lambda b: kernels.grad_weight(xs, go, gw, *b, *plan.args, plan.rows),
                 plan.channel_blocks(thread_count()))
        return _exact_if_non_finite(gw, xp, g, geo)
    xp = np.asarray(xp)
    # The zeros between rows would take 0·inf = NaN from cells no window reads (torch takes none).
    # A sum is non-finite if any cell is (or on overflow: the exact path then, still right), no temporary.
    if not np.isfinite(xp.sum()):
        return _grad_weight_im2col(xp, g, geo)
    flat = _FlatTaps(xp.shape[2:], geo, g.shape[2:])
    rows = np.ascontiguousarray(xp).reshape(n, groups, 1, math.prod(xp.shape[2:]))
    wide = flat.spread(g).reshape(n, groups, per_out, flat.length)
    gw = np.empty((groups, per_out, len(flat.offsets)), g.dtype)

    def tap(i: int) -> None:
        gw[:, :, i] = matmul(wide, rows[..., flat.reads(flat.offsets[i])].swapaxes(-1, -2))[..., 0].sum(axis=0)

    tile_map(tap, range(len(flat.offsets)))
    return gw


def _sum_tiles(part: Callable[[_Tile], np.ndarray], tiles: Sequence[_Tile], threads: int, shape: tuple[int, ...],
               dtype: Any) -> np.ndarray:
    """``Σ part(t)`` over the tiles (each of ``shape``): each thread sums a contiguous run of
    tiles in order, then the runs' sums are added in order, so the result does not depend on
    which thread ran first. Each tile's matmul makes a whole weight-sized partial sum, so the
    weight gradients ask :func:`_tiles` for one tile per thread (the column budget still
    splits big inputs further)."""
    if not tiles:
        return np.zeros(shape, dtype)
    step = -(-len(tiles) // max(1, threads))

    def run(first: int) -> np.ndarray:
        total = part(tiles[first]).copy()
        for t in tiles[first + 1:first + step]:
            total += part(t)
        return total

    return functools.reduce(np.add, tile_map(run, range(0, len(tiles), step), threads))


# Below this many positions per sample the 1×1 weight gradient puts a tile's samples side by
# side (two copies) for one matmul instead of one per sample and a sum (2048→512 at 7²: 1.9×
# faster; at 56² the copies cost more than they save).
_MERGE_POSITIONS = 256


def _grad_weight_direct(xp: np.ndarray, g: np.ndarray, geo: _Geometry) -> np.ndarray:
    n, windows = g.shape[0], g.shape[2:]
    x = xp[(Ellipsis,) + tuple(slice(0, o) for o in windows)]
    groups = geo.groups
    threads = thread_count()

    def part(t: _Tile) -> np.ndarray:
        xt = x[t.of_windows()].reshape(t.samples, groups, x.shape[1] // groups, -1)
        gt = g[t.of_windows()].reshape(t.samples, groups, g.shape[1] // groups, -1)
        if t.samples == 1 or xt.shape[-1] >= _MERGE_POSITIONS:
            return matmul(gt, xt.swapaxes(-1, -2)).sum(axis=0)
        # small planes: the samples side by side, one matmul over all their positions
        gm, xm = (np.moveaxis(a, 0, 2).reshape(groups, a.shape[2], -1) for a in (gt, xt))
        return matmul(gm, xm.swapaxes(-1, -2))

    macs = g.shape[1] * x.shape[1] // groups
    return _sum_tiles(part, _tiles(n, windows, geo, x.shape[1] * x.itemsize, threads, macs, 1), threads,
                      (groups, g.shape[1] // groups, x.shape[1] // groups), g.dtype)


def _grad_weight_planar(xp: np.ndarray | _ZeroPadded, g: np.ndarray, geo: _Geometry) -> np.ndarray:
    """Per tile, the columns times the output gradient at their positions, transposed: the
    product ``(Cg·taps, C_out/G)`` per group, row-major columns times a transposed operand,
    runs faster in BLAS than ``(C_out/G, Cg·taps)`` (one thread, N=8 unless said: stem 7×7/2
    3→64 34 → 29 ms, 3×3 16→32 at 56² 5.3 → 4.1, 3×3 64 at 224² (N=1) 57 → 54; grouped 3×3
    g32 256 at 28² 7.2 → 7.4). A result that is not all finite is made again by im2col's
    kernel, which takes only the products of real windows: the flat runs' cells past each row's
    last window meet zeros of the spread output gradient (``0·inf``: NaN where torch is finite).
    A finite result is right: every product torch takes is among the planar path's."""
    return _exact_if_non_finite(_grad_weight_planar_runs(xp, g, geo), xp, g, geo)


def _exact_if_non_finite(gw: np.ndarray, xp: np.ndarray | _ZeroPadded, g: np.ndarray, geo: _Geometry) -> np.ndarray:
    """``gw`` from flat runs, or where it is not all finite im2col's weight gradient (only the
    products of real windows: the runs' extra cells met zeros of the spread gradient, ``0·inf``),
    in ``gw``'s shape."""
    return gw if np.isfinite(gw).all() else _grad_weight_im2col(np.asarray(xp), g, geo).reshape(gw.shape)


def _grad_weight_planar_runs(xp: np.ndarray | _ZeroPadded, g: np.ndarray, geo: _Geometry) -> np.ndarray:
    """:func:`_grad_weight_planar`'s products, ``(G, C_out/G, Cg·taps)``."""
    n, c = xp.shape[:2]
    groups, windows, per_out = geo.groups, g.shape[2:], g.shape[1] // geo.groups
    flat = _FlatTaps(xp.shape[2:], geo, windows, split=True)
    xf = flat.planes(xp, groups)
    depth = c // groups * len(flat.offsets)
    scratch, threads, columns = Scratch(), thread_count(), jit.kernels_for(xf.dtype, "columns")

    def part(t: _Tile) -> np.ndarray:
        cols = _planar_columns(xf, flat, geo, t, scratch, columns)
        rows = _planar_rows(g, flat, t, groups, scratch)  # flat runs: zeros where no window is
        return matmul(cols, rows.swapaxes(1, 2), out=scratch.take("part", (groups, depth, per_out), g.dtype))

    tiles = _tiles(n, windows, geo, depth * groups * xp.dtype.itemsize, threads, g.shape[1] * depth, 1)
    return _sum_tiles(part, tiles, threads, (groups, depth, per_out), g.dtype).swapaxes(1, 2)


def _grad_weight_im2col(xp: np.ndarray, g: np.ndarray, geo: _Geometry) -> np.ndarray:
    n, windows = g.shape[0], tuple(g.shape[2:])
    groups = geo.groups
    depth = math.prod(geo.kernel) * xp.shape[1] // groups
    scratch, threads = Scratch(), thread_count()

    def part(t: _Tile) -> np.ndarray:
        cols = _tile_columns(xp, geo, windows, t, scratch)
        return matmul(_rows(g, t, groups).swapaxes(1, 2), cols,
                         out=scratch.take("part", (groups, g.shape[1] // groups, depth), g.dtype))

    gw = _sum_tiles(part, _tiles(n, windows, geo, depth * groups * xp.itemsize, threads, g.shape[1] * depth, 1),
                    threads,
                    (groups, g.shape[1] // groups, depth), g.dtype)
    return _from_gemm_weight(gw, (g.shape[1], xp.shape[1] // groups, *geo.kernel))


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


def _input_gradient(g: np.ndarray, gl: np.ndarray | None, w: np.ndarray, geo: _Geometry, plan: _Plan,
                    path: str) -> np.ndarray:
    """A conv's input gradient (a transposed conv's output) without the padding, ``(N, C, *S)``
    C-contiguous, from the output gradient ``g`` ``(N, C_out, *windows)`` and the same in
    ``path``'s layout ``gl`` (unused when the gradient runs by taps or per phase, and None
    only for a transposed conv's that runs per phase)."""
    if _by_taps(w.shape[1], w.shape[0] // geo.groups, geo, g.shape[2:], g.dtype.itemsize):
        kernels = jit.kernels_for(g.dtype, "columns")
        if kernels is not None:
            return _grad_input_taps(kernels, g, w, geo, plan.padded, plan.before, plan.after)
    if _phased(w.shape[1], geo):
        if np.isfinite(w).all():
            return _grad_input_phased(g, w, geo, plan.padded, plan.before, plan.after)
        # the phases' convs would multiply g's zero border by the non-finite weight (0·inf: NaN)
        return _crop(_grad_input_im2col(g, w, geo, plan.padded), plan.before, plan.after)
    if path == "depthwise":
        return _grad_input_depthwise(gl, w, geo, plan.padded, plan.before, plan.after)
    if path == "winograd":
        return _grad_input_winograd(gl, w, geo, plan.padded, plan.before, plan.after)
    if path == "planar" or _unpadded_gradient(path, geo, plan.before, plan.after, w.shape[1]):
        return _grad_input_planar(gl, w, geo, plan.padded, plan.before, plan.after, path)
    return _crop(_grad_input(gl, w, geo, plan.padded, path), plan.before, plan.after)


def _conv(op: str, input: Tensor, weight: Tensor, bias: Tensor | None, stride: IntOrTuple,  # noqa: A002
          padding: IntOrTuple | str, dilation: IntOrTuple, groups: int) -> Tensor:
    bias_shape = None if bias is None else bias.shape
    plan = _conv_plan(op, input.shape, weight.shape, stride, padding, dilation, groups, bias_shape,
                      _dtypes(input, weight, bias))
    parents = (input, weight) if bias is None else (input, weight, bias)
    if any(p.is_meta for p in parents):
        return _finish(op, plan, None, parents, None)
    geo, w = plan.geometry, weight.data
    path = _path(w.shape[1], geo, plan.padded, _jit_runs(w.dtype.itemsize))
    strided = max(geo.stride) > 1
    xp = _layout(input.data if plan.batched else input.data[None], plan.before, plan.after, path, strided)
    y = _forward(xp, w, geo, plan.windows, path)

    def backward(g: np.ndarray) -> tuple:
        g = g if plan.batched else g[None]
        gl = _layout(g, (0,) * len(plan.windows), (0,) * len(plan.windows), path)
        gx = _input_gradient(g, gl, w, geo, plan, path) if input.requires_grad else None
        gw = _grad_weight(xp, gl, geo, path) if weight.requires_grad else None
        return _grads(plan, parents, g, gx, gw)

    return _finish(op, plan, y, parents, backward)


def _reached(plan: _Plan) -> tuple[_Plan, tuple[int, ...]]:
    """A transposed conv's plan without the ``output_padding`` cells at the end of its full
    output: no input cell reaches them (the last one reaches ``(L − 1)·s + d·(k − 1)``), so
    they are zeros, and at stride 1 the kernels expect every cell reached. Also, per spatial
    dim, the zeros the cropped result then lacks at its end (where ``output_padding`` exceeds
    the crop ``padding``)."""
    extra = plan.attrs["output_padding"]
    if not any(extra):
        return plan, extra
    after = [a - o for a, o in zip(plan.after, extra)]
    run = replace(plan, after=tuple(max(a, 0) for a in after),
                  padded=tuple(p - o for p, o in zip(plan.padded, extra)))
    return run, tuple(max(-a, 0) for a in after)


def _conv_transpose(op: str, input: Tensor, weight: Tensor, bias: Tensor | None, stride: IntOrTuple,  # noqa: A002
                    padding: IntOrTuple, output_padding: IntOrTuple, groups: int, dilation: IntOrTuple) -> Tensor:
    bias_shape = None if bias is None else bias.shape
    plan = _conv_transpose_plan(op, input.shape, weight.shape, stride, padding, output_padding, groups, dilation,
                                bias_shape, _dtypes(input, weight, bias))
    parents = (input, weight) if bias is None else (input, weight, bias)
    if any(p.is_meta for p in parents):
        return _finish(op, plan, None, parents, None)
    geo, w = plan.geometry, weight.data
    run, zeros_after = _reached(plan)
    x = input.data if plan.batched else input.data[None]
    if any(n - b - a <= 0 for n, b, a in zip(run.padded, run.before, run.after)):
        # ``padding`` crops every cell an input reaches: only output_padding's zeros (and the bias) are left
        y = np.zeros((len(x), *plan.output_shape[-len(plan.windows) - 1:]), x.dtype)
        return _finish(op, plan, y, parents, lambda g: _grads(plan, parents, g if plan.batched else g[None],
                                                              np.zeros_like(x), np.zeros_like(w)))
    path = _path(w.shape[1], geo, run.padded, _jit_runs(w.dtype.itemsize))
    zeros = (0,) * len(plan.windows)
    # in kernel layout; for the phased path only when the weight gradient needs it
    xl = None if _phased(w.shape[1], geo) else _layout(x, zeros, zeros, path)
    y = _input_gradient(x, xl, w, geo, run, path)
    if any(zeros_after):
        y = np.pad(y, [(0, 0), (0, 0), *((0, z) for z in zeros_after)])

    def backward(g: np.ndarray) -> tuple:
        g = g if plan.batched else g[None]
        # the appended zeros depend on neither input nor weight (the bias, added to them too, sees all of g)
        reached = g[(..., *(slice(0, n - z) for n, z in zip(g.shape[2:], zeros_after)))] if any(zeros_after) else g
        gp = _layout(reached, run.before, run.after, path, max(geo.stride) > 1)
        gx = _forward(gp, w, geo, plan.windows, path) if input.requires_grad else None
        gw = (_grad_weight(gp, _layout(x, zeros, zeros, path) if xl is None else xl, geo, path)
              if weight.requires_grad else None)
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


def _tile_extent(count: int, tiles: Sequence[_Tile], threads: int, flat: _FlatTaps | None = None) -> tuple[int, int]:
    """(tiles in flight, positions of the largest tile) of ``count`` tiles whose shapes are
    those of ``tiles`` (:func:`_tile_ends`): window positions, or with ``flat`` the planar
    path's column positions (flat runs: the cells past each row's last window included)."""
    if flat is None or _exact(flat.windows):
        size = max(t.positions for t in tiles)
    else:
        size = max(t.samples * flat.tile_span(t)[1] for t in tiles)
    return in_flight(count, threads), size


def _scratch_rule(rule: Callable[..., int]) -> Callable[..., int]:
    """``rule(path, n, c, c_out, padded, windows, geo, threads, item, compiled)`` cached, called
    without ``compiled``: whether a depthwise conv runs the compiled kernels (:mod:`.jit`),
    which allocate other buffers than the NumPy ones, is asked at each call."""
    cached = functools.lru_cache(maxsize=4096)(rule)

    @functools.wraps(rule)
    def scratch(path: str, n: int, c: int, c_out: int, padded: tuple[int, ...], windows: tuple[int, ...],
                geo: _Geometry, threads: int, item: int) -> int:
        return cached(path, n, c, c_out, padded, windows, geo, threads, item, path == "depthwise" and _jit_runs(item))

    return scratch


@_scratch_rule
def _forward_scratch(path: str, n: int, c: int, c_out: int, padded: tuple[int, ...], windows: tuple[int, ...],
                     geo: _Geometry, threads: int, item: int, compiled: bool) -> int:
    """Elements :func:`_forward` allocates besides its output, for a padded ``(n, c, *padded)``
    input of ``item``-byte elements (the tiles' byte budgets) and ``c_out`` outputs with
    ``threads`` threads, each holding its tile's buffers (``compiled``: the depthwise kernels of
    :mod:`.jit`)."""
    taps, per_group = math.prod(geo.kernel), c // geo.groups
    weight = c_out * per_group * taps
    if compiled:  # per busy thread a group's padded planes and a run of flat positions
        return _depthwise_jit_scratch("forward", n, c, c_out, padded, windows, geo, threads)
    if path == "depthwise":  # the wide rows, a block-sized product per thread, the weights per row
        wide, spare, _ = _depthwise_rows(n, c_out, padded, windows, geo, threads)
        return wide + spare + (n * c_out * taps if n > 1 else 0)  # weights broadcast over samples: a copy
    if path == "direct":  # matmuls straight into the output
        return 0
    if path == "winograd":  # a dilated conv's phases share the items' buffers: the first phase's are the largest
        return winograd.scratch_elements(n, c, c_out, _dilation_phase(windows, geo), threads, item,
                                         phases=_phase_count(geo))
    count, tiles = _tile_ends(n, windows, geo, c * taps * item, threads, weight)
    if path == "planar":  # the input split into stride phases, per busy thread columns (and an output tile)
        flat = _FlatTaps(padded, geo, windows, split=True)
        busy, size = _tile_extent(count, tiles, threads, flat)
        return _split_copy(flat, n, c, padded) + busy * size * (c * taps + _planar_copy(tiles, windows, c_out))
    busy, positions = _tile_extent(count, tiles, threads)
    return busy * positions * (c * taps + c_out) + _gemm_copy(geo, per_group, weight)


@_scratch_rule
def _grad_input_scratch(path: str, n: int, c: int, c_out: int, padded: tuple[int, ...], windows: tuple[int, ...],
                        geo: _Geometry, threads: int, item: int, compiled: bool) -> int:
    """Elements an input gradient made with its padding allocates besides it (:func:`_grad_input`'s
    col2im, Winograd's, the depthwise kernels'); the ones made without it (a stride-1 planar or
    im2col conv's, finite weights) are :func:`_unpadded_gradient_scratch`'s."""
    taps, per_group = math.prod(geo.kernel), c // geo.groups
    weight = c_out * per_group * taps
    if compiled:  # per busy thread a padded plane (stride 1: the output gradient's of a group) and a run
        return _depthwise_jit_scratch("grad_input", n, c, c_out, padded, windows, geo, threads)
    if path == "depthwise":  # the spread output gradient, per thread a product (and its channel sum)
        wide, spare, summed = _depthwise_rows(n, c_out, padded, windows, geo, threads)
        return wide + spare + (summed if c_out > geo.groups else 0) + (n * c_out * taps if n > 1 else 0)
    if path == "direct":
        return 0
    if path == "winograd":  # a Winograd conv of g (per dilation phase), flipped weight
        return winograd.scratch_elements(n, c_out, c, _dilation_phase(padded, geo), threads, item, flipped=True,
                                         phases=_phase_count(geo))
    count, tiles = _tile_ends(n, windows, geo, c * taps * item, threads, weight)
    busy, positions = _tile_extent(count, tiles, threads)
    box = 0
    if _overlapping(tiles, threads):  # tiles inside a sample sum their input cells apart
        t = max(tiles, key=lambda t: t.positions)
        box = t.samples * c * math.prod(q.stop - q.start for q in t.reads) * math.prod(padded[len(t.reads):])
    rows = positions * c_out if path == "planar" else 0  # a planar conv's g, not channels-last: tiles copied
    return busy * (positions * c * taps + box + rows) + _gemm_copy(geo, per_group, weight)


@_scratch_rule
def _grad_weight_scratch(path: str, n: int, c: int, c_out: int, padded: tuple[int, ...], windows: tuple[int, ...],
                         geo: _Geometry, threads: int, item: int, compiled: bool) -> int:
    """Elements :func:`_grad_weight` allocates besides the weight gradient it returns: per busy
    thread its tile's operands, a weight-sized partial product and running sum."""
    taps, per_group = math.prod(geo.kernel), c // geo.groups
    weight = c_out * per_group * taps
    if compiled:  # per busy thread a lane per tap and the output gradient spread over a run (or two)
        return _depthwise_jit_scratch("grad_weight", n, c, c_out, padded, windows, geo, threads)
    if path == "depthwise":
        return _depthwise_rows(n, c_out, padded, windows, geo, threads)[0]
    if path == "direct":
        count, tiles = _tile_ends(n, windows, geo, c * item, threads, c_out * per_group, 1)
        busy, positions = _tile_extent(count, tiles, threads)
        samples = max(t.samples for t in tiles)
        merged = samples > 1 and math.prod(windows) < _MERGE_POSITIONS  # the samples side by side: copies
        return busy * ((positions * (c + c_out) if merged else samples * weight) + weight)
    if path == "winograd" and _small_winograd(windows):  # im2col's, over channels-last copies of xp and g
        return n * (c * math.prod(padded) + c_out * math.prod(windows)) + _grad_weight_scratch(
            "im2col", n, c, c_out, padded, windows, geo, threads, item)
    if path == "winograd":  # per dilation phase: the first is the largest
        return winograd.weight_scratch_elements(n, c, c_out, _dilation_phase(windows, geo), threads, item,
                                                _phase_count(geo))
    count, tiles = _tile_ends(n, windows, geo, c * taps * item, threads, weight, 1)
    if path == "planar":  # stride phases; columns, the output gradient spread to flat positions
        flat = _FlatTaps(padded, geo, windows, split=True)
        busy, size = _tile_extent(count, tiles, threads, flat)
        return _split_copy(flat, n, c, padded) + busy * (size * (c * taps + _planar_copy(tiles, windows, c_out))
                                                         + 2 * weight)
    busy, positions = _tile_extent(count, tiles, threads)
    return busy * (positions * c * taps + 2 * weight) + weight  # + the sum in GEMM layout


def _strided_scratch(n: int, c: int, c_out: int, padded: tuple[int, ...], windows: tuple[int, ...], geo: _Geometry,
                     threads: int, item: int, before: tuple[int, ...], after: tuple[int, ...]) -> int | None:
    """Elements a strided conv's input gradient allocates besides the gradient it returns when
    it runs by taps (:func:`_taps_scratch`) or per phase (:func:`_phased_scratch`); None when
    it runs neither way."""
    per_group, per_out = c // geo.groups, c_out // geo.groups
    if _by_taps(per_group, per_out, geo, windows, item):
        return _taps_scratch(n, c, c_out, windows, geo, threads, item)
    if _phased(per_group, geo):
        return _phased_scratch(n, c, c_out, padded, windows, geo, threads, item, before, after)
    return None


@functools.lru_cache(maxsize=1024)
def _phased_scratch(n: int, c: int, c_out: int, padded: tuple[int, ...], windows: tuple[int, ...], geo: _Geometry,
                    threads: int, item: int, before: tuple[int, ...], after: tuple[int, ...]) -> int:
    """Elements :func:`_grad_input_phased` allocates besides the gradient it returns, its
    phases one at a time: the output gradient over the phase's reach in its path's layout
    (none when that is ``g`` itself), the phase's taps of the weight, its conv's scratch; or
    the same for the phases' stacked conv (:func:`_stacked_scratch`)."""
    per_out = c_out // geo.groups
    plan = _phase_plan(geo, per_out, padded, before, after)
    stack = _stacked(plan, per_out)
    if stack is not None:
        return _stacked_scratch(n, c, c_out, windows, len(plan), stack, threads, item)
    peak = 0
    for ph, sub, path in plan:
        taps = c * per_out * math.prod(ph.kernel)
        out = n * c * math.prod(ph.size) if path == "depthwise" else _cells_copy(path, n, c, c_out, ph.size, sub,
                                                                               threads, item)
        peak = max(peak, _reach_copy(path, n, c_out, ph.start, ph.length, windows) + taps + out
                   + _forward_scratch(path, n, c_out, c, ph.length, ph.size, sub, threads, item))
    return peak


def _taps_scratch(n: int, c: int, c_out: int, windows: tuple[int, ...], geo: _Geometry, threads: int,
                  item: int) -> int:
    """Elements :func:`_grad_input_taps` allocates: the transposed weight, and each busy
    thread's products (the compiled col2im's phase planes are not NumPy's)."""
    taps, positions, per_group = math.prod(geo.kernel), math.prod(windows), c // geo.groups
    step = _taps_step(n, geo.groups, per_group, taps * positions * item, threads)
    tiles = n * geo.groups * -(-per_group // step)
    return c * (c_out // geo.groups) * taps + in_flight(tiles, threads) * step * taps * positions


def _stacked_scratch(n: int, c: int, c_out: int, windows: tuple[int, ...], phases: int, stack: _Stack, threads: int,
                     item: int) -> int:
    """Elements :func:`_run_stacked` allocates: the stacked taps (and one phase's, while they
    are gathered), ``g`` over the union reach, the stacked conv's scratch and, off the planar
    path, its whole output (copied into the cells afterwards)."""
    taps = c * (c_out // stack.sub.groups) * math.prod(stack.sub.kernel)
    stacked = phases * c
    out = (_cells_copy(stack.path, n, stacked, c_out, stack.windows, stack.sub, threads, item, always=True)
           if stack.path == "planar" else n * stacked * math.prod(stack.windows))
    work = (_reach_copy(stack.path, n, c_out, stack.start, stack.length, windows) + out
            + _forward_scratch(stack.path, n, c_out, stacked, stack.length, stack.windows, stack.sub, threads, item))
    return phases * taps + max(taps, work)


def _reach_copy(path: str, n: int, c_out: int, start: tuple[int, ...], length: tuple[int, ...],
                windows: tuple[int, ...]) -> int:
    """Elements of :func:`_reach`'s copy of ``g`` ``(n, c_out, *windows)`` (none when it is ``g``)."""
    whole = path != "im2col" and start == (0,) * len(windows) and length == windows
    return 0 if whole else n * c_out * math.prod(length)


def _cells_copy(path: str, n: int, c: int, c_out: int, size: tuple[int, ...], sub: _Geometry, threads: int,
                item: int, always: bool = False) -> int:
    """Elements of the output tiles a planar phase conv (``c`` outputs from ``c_out`` channels over
    windows ``size``) copies into the gradient's cells where :func:`_forward_scratch` has its
    products go straight into the output (``always``: into :class:`_PhaseCells`, every tile)."""
    if path != "planar" or not (_exact(size) or always):
        return 0
    taps = math.prod(sub.kernel)
    count, tiles = _tile_ends(n, size, sub, c_out * taps * item, threads, c * (c_out // sub.groups) * taps)
    if _planar_copy(tiles, size, c):
        return 0
    busy, extent = _tile_extent(count, tiles, threads)
    return busy * extent * c


def _unpadded_gradient(path: str, geo: _Geometry, before: Sequence[int], after: Sequence[int],
                       per_group: int) -> bool:
    """Whether the input gradient of a conv on ``path`` with ``per_group`` input channels per
    group is made without its padding (finite weights): a stride-1 planar conv's always, an
    im2col one's up to ``_FLIPPED_IM2COL_CHANNELS``, a Winograd conv's for the same ≤ 2 cells a
    side."""
    if path == "planar":
        return max(geo.stride) == 1
    if path == "im2col":
        return max(geo.stride) == 1 and per_group <= _FLIPPED_IM2COL_CHANNELS
    return path == "winograd" and _winograd_unpadded(geo, before, after)


def _unpadded_gradient_scratch(path: str, n: int, c: int, c_out: int, padded: tuple[int, ...],
                               windows: tuple[int, ...], geo: _Geometry, threads: int, item: int,
                               before: tuple[int, ...], after: tuple[int, ...]) -> int:
    """Elements an input gradient made without the padding (:func:`_unpadded_gradient`)
    allocates besides the gradient it returns."""
    if path in ("planar", "im2col"):
        return _flipped_scratch(path, n, c, c_out, padded, windows, geo, threads, item, before, after)
    size = _dilation_phase(_unpadded_size(padded, before, after), geo)
    return winograd.scratch_elements(n, c_out, c, size, threads, item, flipped=True, phases=_phase_count(geo))


@functools.lru_cache(maxsize=1024)
def _flipped_scratch(path: str, n: int, c: int, c_out: int, padded: tuple[int, ...], windows: tuple[int, ...],
                     geo: _Geometry, threads: int, item: int, before: tuple[int, ...], after: tuple[int, ...]) -> int:
    """Elements :func:`_grad_input_planar` allocates besides the gradient it returns for a
    stride-1 conv on ``path`` with ``before``/``after`` padding (finite weights): a forward conv
    of ``g`` padded by the kernel's reach less the padding in the path's layout (a planar conv
    makes no copy when that is none), with the flipped weight (a copy)."""
    reach = [span(k, d) - 1 for k, d in zip(geo.kernel, geo.dilation, strict=True)]
    g_padded = tuple(o + 2 * r - b - a for o, r, b, a in zip(windows, reach, before, after, strict=True))
    size = _unpadded_size(padded, before, after)
    same = path == "planar" and g_padded == windows and min(before + after, default=0) >= 0
    copy = 0 if same else n * c_out * math.prod(g_padded)
    weight = c_out * (c // geo.groups) * math.prod(geo.kernel)
    return copy + weight + _forward_scratch(path, n, c_out, c, g_padded, size, geo, threads, item)


def _split_copy(flat: _FlatTaps, n: int, c: int, padded: tuple[int, ...]) -> int:
    """Elements of :meth:`_FlatTaps.planes`' copy of an ``(n, c, *padded)`` input (none when
    the planes are the padded input's own)."""
    return n * c * len(flat.phases) * math.prod(flat.sizes) if flat.copies(padded) else 0


def _planar_copy(tiles: Sequence[_Tile], windows: tuple[int, ...], c_out: int) -> int:
    """Elements per column position of the planar path's output-side tile copy: ``c_out``, or
    none when every tile's columns are its windows inside one sample (:func:`_exact`): those
    multiply straight into the output and read the output gradient in place (for an output
    that is not C-contiguous, a strided view, :func:`_forward_planar` copies: ``c_out``)."""
    return 0 if _exact(windows) and all(t.samples == 1 for t in tiles) else c_out


def _gemm_copy(geo: _Geometry, per_group: int, weight: int) -> int:
    """Elements of the weight's copy in GEMM layout (none when the reorder is a view)."""
    return weight if math.prod(geo.kernel) > 1 and per_group > 1 else 0


def _depthwise_rows(n: int, c_out: int, padded: tuple[int, ...], windows: tuple[int, ...], geo: _Geometry,
                    threads: int) -> tuple[int, int, int]:
    """Elements of the depthwise tap loop's wide rows ``(n·G, C_out/G, flat)``, of the busy
    threads' block-sized products, and of their per-row sums."""
    length = _flat_length(padded, windows)
    rows, row = n * geo.groups, c_out // geo.groups * length
    step = max(1, min(rows, _BLOCK_ELEMENTS // row))
    busy = in_flight(-(-rows // step), threads)
    return rows * row, busy * step * row, busy * step * length


def _depthwise_jit_scratch(kernel: str, n: int, c: int, c_out: int, padded: tuple[int, ...],
                           windows: tuple[int, ...], geo: _Geometry, threads: int) -> int:
    """Elements the compiled depthwise ``kernel`` allocates (see :mod:`._depthwise_numba`): each
    busy thread's buffers, as :class:`_JitPlan` sizes them; the results are written in place.
    The rules do not see the padding: for the stride-1 input gradient they count the output
    gradient's planes padded by the kernel's whole reach (less by the conv's padding): the most,
    and the flipped weight. (For finite weights: the input gradient for non-finite ones
    allocates a padded plane and a row.)"""
    per_group, per_out = c // geo.groups, c_out // geo.groups
    plan = _JitPlan(n, geo, per_out, padded, (0,) * len(padded), padded, windows, planes=per_group)
    width, stride = plan.windows[2], plan.stride[2]
    strided = (width - 1) * stride + 1  # a row of windows at every position
    flipped = 0
    if kernel == "grad_input" and stride == 1:  # a forward conv of the output gradient's planes, padded
        reach = [span(k, d) - 1 for k, d in zip(geo.kernel, geo.dilation, strict=True)]
        plan = _JitPlan(n, geo, per_group, windows, reach, [p + r for p, r in zip(padded, reach, strict=True)],
                        padded, planes=per_out)
        kernel, width, flipped = "forward", plan.windows[2], c_out * per_group * math.prod(geo.kernel)
    rows_busy = in_flight(len(plan.row_blocks(threads)), threads)
    if kernel == "forward":  # the padded planes, a run of flat positions (rows at a time) or a strided row: two
        runs = 2 if plan.per_out > 1 else 1  # with two outputs a pass
        return flipped + rows_busy * (plan.cells + runs * max((plan.rows - 1) * plan.padded[2] + width, strided))
    if kernel == "grad_input":  # added onto a padded plane, a strided row spread out first
        return rows_busy * (plan.cells + strided)
    channels_busy = in_flight(len(plan.channel_blocks(threads)), threads)
    if per_group > 1:  # a group's padded planes, two outputs' gradients over a depth's run
        return channels_busy * (plan.cells + 2 * ((plan.windows[1] - 1) * plan.padded[2] + width))
    rows = min(plan.rows, plan.windows[1])
    across = plan.padded[2] if rows > 1 else strided  # a row of lanes
    # per busy thread two samples' padded planes and spread rows, a lane per (output, tap) over a run
    return channels_busy * (2 * plan.cells + (per_out * plan.taps + 2) * rows * across)


_SCRATCH = (_forward_scratch, _grad_input_scratch, _grad_weight_scratch)


def _pads(path: str, before: Sequence[int], after: Sequence[int], item: int, strided: bool) -> bool:
    """Whether :func:`_layout` copies an input to add ``before``/``after`` for the kernels of
    ``path`` (the im2col path's layout is channels-last, so always; see :func:`_reads_padded`)."""
    return path == "im2col" or (any(before) or any(after)) and not _reads_padded(path, item, strided)


def _crops(path: str, before: Sequence[int], after: Sequence[int], item: int, geo: _Geometry) -> bool:
    """Whether removing ``before``/``after`` from an input gradient made with the padding (not
    :func:`_unpadded_gradient`) for the kernels of ``path`` makes a copy: the im2col path's is
    channels-last and a strided planar conv's comes from im2col's col2im, so always; never for
    the compiled depthwise kernels, which write the cells inside the padding only."""
    if path == "depthwise" and _jit_runs(item):
        return False
    return path == "im2col" or path == "planar" and max(geo.stride) > 1 or any(before) or any(after)


@saved_rule(*_CONVS)
def _conv_saved(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
    """The closure keeps the input and weight and ``xp``, the zero-padded input in the
    kernels' layout: a channels-last copy on the im2col path, the padded input on the others
    (the input itself without padding, or for kernels that pad as they read: :func:`_reads_padded`).
    The forward needs each busy thread's column and output tiles; the backward the output
    gradient in kernel layout, then the padded input gradient with its kernel's tiles, then the
    weight gradient's tiles and partial sums."""
    x, w = inputs[0], inputs[1]
    nd = w.ndim - 2
    n, c_in, item = (x.shape[0] if x.ndim == nd + 2 else 1), x.shape[-nd - 1], x.dtype.itemsize
    geo = _Geometry(tuple(w.shape[2:]), attrs["stride"], attrs["dilation"], attrs["groups"])
    before, after = (tuple(p) for p in zip(*attrs["padding"]))
    padded = tuple(e + b + a for e, b, a in zip(x.shape[-nd:], before, after))
    windows = tuple(output.shape[-nd:])
    path = _path(w.shape[1], geo, padded, _jit_runs(item))
    padded_bytes = n * c_in * math.prod(padded) * item
    xp = padded_bytes if _pads(path, before, after, item, max(geo.stride) > 1) else 0
    shape = (path, n, c_in, w.shape[0], padded, windows, geo, thread_count())
    forward, grad_input, grad_weight = (f(*shape, item) * item for f in _SCRATCH)
    strided = _strided_scratch(*shape[1:], item, before, after)
    if strided is not None:
        grad_input = strided * item
    elif _unpadded_gradient(path, geo, before, after, w.shape[1]):
        grad_input = _unpadded_gradient_scratch(*shape, item, before, after) * item
    elif _crops(path, before, after, item, geo):  # the padded gradient and its kernel's scratch, before the crop
        grad_input = max(padded_bytes + grad_input - nbytes(x), padded_bytes)
    backward = (nbytes(output) if path == "im2col" else 0) + max(grad_input, grad_weight)
    return Saved(tuple(range(len(inputs))), extra=(("padded input", xp),) if xp else (),
                 workspace=forward, backward_workspace=backward)


@saved_rule(*_TRANSPOSED)
def _conv_transpose_saved(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
    """A transposed convolution runs a convolution's input gradient forward: the closure keeps
    the input in the kernels' layout (a channels-last copy on the im2col path). The forward
    holds the input gradient's scratch and the full (uncropped) output; the backward the
    output gradient padded into kernel layout, then a convolution's or a weight gradient's tiles."""
    x, w = inputs[0], inputs[1]
    nd = w.ndim - 2
    n, c_in, item = (x.shape[0] if x.ndim == nd + 2 else 1), x.shape[-nd - 1], x.dtype.itemsize
    c_out = w.shape[1] * attrs["groups"]
    geo = _Geometry(tuple(w.shape[2:]), attrs["stride"], attrs["dilation"], attrs["groups"])
    pad = tuple(attrs["padding"])
    full = tuple(o + 2 * p for o, p in zip(output.shape[-nd:], pad))
    path = _path(w.shape[1], geo, full, _jit_runs(item))
    xl = nbytes(x) if path == "im2col" else 0
    full_bytes = n * c_out * math.prod(full) * item
    padded_g = full_bytes if _pads(path, pad, pad, item, max(geo.stride) > 1) else 0  # g padded into kernel layout
    shape = (path, n, c_out, c_in, full, tuple(x.shape[-nd:]), geo, thread_count())
    forward, grad_input, grad_weight = (f(*shape, item) * item for f in _SCRATCH)
    strided = _strided_scratch(*shape[1:], item, pad, pad)
    if strided is not None:  # the output straight from the taps or phases; the input in kernel layout made backward
        return Saved(tuple(range(len(inputs))), workspace=strided * item,
                     backward_workspace=padded_g + max(forward, xl + grad_weight))
    if _unpadded_gradient(path, geo, pad, pad, w.shape[1]):  # made without the cropped cells
        cropped = _unpadded_gradient_scratch(*shape, item, pad, pad) * item
    elif _crops(path, pad, pad, item, geo):
        cropped = max(full_bytes + grad_input - nbytes(output), full_bytes)
    else:
        cropped = grad_input
    return Saved(tuple(range(len(inputs))), extra=(("input in kernel layout", xl),) if xl else (),
                 workspace=cropped, backward_workspace=padded_g + max(forward, grad_weight))


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
