"""The data of a convolution (or pooling) animation, one :class:`Frame` per step — kept
apart from drawing (:mod:`.animate`) so that tests check the numbers, not pixels.

Every number comes from the engine: outputs from ``F.conv2d``/``F.conv_transpose2d``/
``F.max_pool2d``/``F.avg_pool2d`` (and their 1-d/3-d siblings), padding from ``F.pad``
in the layer's padding mode, and the cells a window reads from the window primitive
(:func:`convscope.functional.windows.sliding_windows` applied to the cells' coordinates).
A convolution frame's per-channel sums are the engine's convolution of that one channel;
a transposed convolution's partial canvas is the engine's transposed convolution of the
input cells scattered so far. Everything runs in float64 so the printed numbers are exact.

Frames: an intro, one step per output element (conv: per output channel and position;
pooling: per channel and position; transposed conv: per output channel and *input*
position, the kernel scattered by that input cell), and an outro holding the full output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import functional as F
from ..functional.pool import pool_geometry
from ..functional.windows import ntuple, sliding_windows
from ..tensor import Tensor

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
# The most values an animation keeps (400 MB of float64): every frame holds a copy of the
# output computed so far, so the frames grow as (output cells)², 20 GB for a 1×100×100 conv.
MAX_FRAME_VALUES = 50_000_000
REAL, PAD, OVERHANG = 0, 1, 2  # what supplied a cell of the padded input


@dataclass(eq=False)  # arrays inside: identity, not element-wise, comparison
class Frame:
    """One picture of the animation.

    ``out_channel``/``position``: the output element being computed (a transposed conv: the
    output channel and the *input* position scattering); ``channels``: the input channels
    read; ``cells`` ``(K, nd)``: coordinates read in the padded input (transposed: written in
    the canvas), in kernel scan order; ``reads`` ``(C_g, *kernel)`` the values read
    (transposed: ``(C_g,)`` the input cells); ``products`` ``(C_g, *kernel)``;
    ``channel_sums`` ``(C_g,)``; ``value`` the engine's output value; ``output`` the output
    computed so far (NaN where not yet; transposed: the canvas).
    """

    kind: str
    output: np.ndarray
    out_channel: int | None = None
    position: tuple[int, ...] | None = None
    channels: tuple[int, ...] = ()
    cells: np.ndarray | None = None
    reads: np.ndarray | None = None
    weights: np.ndarray | None = None
    products: np.ndarray | None = None
    channel_sums: np.ndarray | None = None
    bias: float = 0.0
    value: float | None = None
    winner: int | None = None    # max pool: the kernel tap the engine picked
    divisor: int | None = None   # avg pool


@dataclass(eq=False)
class Animation:
    """An op on one input (batch dim removed) and its frames.

    ``padded`` ``(C, *S_pad)`` is the input as the windows read it; ``supplied`` ``(*S_pad)``
    says which cells are real (0), padding (1) or a ceil-mode overhang (2); ``offset`` is
    where the input starts in ``padded`` (transposed: where the output starts in the canvas).
    """

    op: str
    description: str
    x: np.ndarray
    padded: np.ndarray
    supplied: np.ndarray
    offset: tuple[int, ...]
    weight: np.ndarray | None
    bias: np.ndarray | None
    groups: int
    output: np.ndarray
    family: str  # "conv", "conv_transpose" or "pool"
    kernel: tuple[int, ...]
    frames: list[Frame] = field(default_factory=list)
    canvas: np.ndarray | None = None  # transposed: which canvas cells become the output (0) or are cropped (1)

    @property
    def nd(self) -> int:
        return self.x.ndim - 1


def _batch(x: Any, nd: int, what: str) -> np.ndarray:
    """``x`` as float64 ``(1, C, *S)`` (a batch of one may be given or left out)."""
    arr = np.asarray(x.numpy() if isinstance(x, Tensor) else x, dtype=np.float64)
    if arr.ndim == nd + 2 and arr.shape[0] == 1:
        return arr
    if arr.ndim != nd + 1:
        raise ValueError(f"{what}: expected an input (C, {', '.join('DHW'[3 - nd:])}) for a {nd}-d kernel, "
                         f"got shape {arr.shape}")
    return arr[None]


def _pads(before: Sequence[int], after: Sequence[int]) -> list[int]:
    """F.pad's argument: last dim first."""
    return [p for b, a in zip(reversed(before), reversed(after)) for p in (b, a)]


def _cells(shape: Sequence[int], kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
           out: Sequence[int]) -> np.ndarray:
    """Coordinates read by every window: ``(*out, K, nd)`` via the window primitive."""
    nd = len(shape)
    coords = np.indices(shape)  # (nd, *shape)
    windows = sliding_windows(coords, kernel, stride, dilation, out)  # (nd, *out, *kernel)
    return np.moveaxis(windows.reshape(nd, *out, -1), 0, -1)


def _check_frames(op: str, steps: int, output: Sequence[int]) -> None:
    """Refuse ``steps`` frames that each copy an ``output``-shaped array, over :data:`MAX_FRAME_VALUES`."""
    values = (steps + 2) * math.prod(output)  # and the intro and outro
    if values > MAX_FRAME_VALUES:
        raise ValueError(f"animation: {op} takes {steps:,} steps, each frame holding the {'×'.join(map(str, output))} "
                         f"output so far: {values:,} values, more than the {MAX_FRAME_VALUES:,} an animation keeps; "
                         "use a smaller input")


def _step_positions(shape: Sequence[int]) -> list[tuple[int, ...]]:
    return [tuple(int(i) for i in p) for p in np.ndindex(*shape)]


def _text(op: str, **params: Any) -> str:
    return f"{op}(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"


def conv_frames(x: Any, weight: Any, bias: Any = None, *, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                groups: int = 1, padding_mode: str = "zeros") -> Animation:
    """Frames of a convolution (1-, 2- or 3-d by ``weight``'s rank ``(C_out, C_in/groups, *k)``)
    of one input ``(C, *S)``, as ``nn.ConvNd`` computes it (a non-zero ``padding_mode`` pads
    with ``F.pad`` and convolves with padding 0)."""
    w = np.asarray(weight, dtype=np.float64)
    nd = w.ndim - 2
    if nd not in (1, 2, 3):
        raise ValueError(f"animation: expected a weight (C_out, C_in/groups, *kernel) with 1–3 kernel dims, "
                         f"got shape {w.shape}")
    op = f"conv{nd}d"
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {', '.join(PADDING_MODES)}, got {padding_mode!r}")
    xb = _batch(x, nd, op)
    b = None if bias is None else np.asarray(bias, dtype=np.float64)
    pad = ntuple(padding, nd, "padding", op)
    stride_t, dilation_t = ntuple(stride, nd, "stride", op), ntuple(dilation, nd, "dilation", op)
    conv = getattr(F, op)
    xt, wt, bt = Tensor(xb), Tensor(w), None if b is None else Tensor(b)
    mode = "constant" if padding_mode == "zeros" else padding_mode
    padded = F.pad(xt, _pads(pad, pad), mode=mode).numpy() if any(pad) else xb
    if padding_mode == "zeros":
        out = conv(xt, wt, bt, stride_t, pad, dilation_t, groups).numpy()
    else:  # as nn.Conv2d does it
        out = conv(Tensor(padded), wt, bt, stride_t, 0, dilation_t, groups).numpy()
    c_out, per_group = w.shape[:2]
    out_per_group = c_out // groups
    spatial_out = out.shape[2:]
    _check_frames(op, c_out * math.prod(spatial_out), out.shape[1:])
    # Each input channel's contribution, by the engine: that channel convolved with its kernels.
    per_channel = [conv(Tensor(padded[:, c:c + 1]),
                        Tensor(w[(c // per_group) * out_per_group:(c // per_group + 1) * out_per_group,
                                 c % per_group:c % per_group + 1]), None, stride_t, 0, dilation_t).numpy()[0]
                   for c in range(padded.shape[1])]
    windows = sliding_windows(padded[0], w.shape[2:], stride_t, dilation_t, spatial_out)
    cells = _cells(padded.shape[2:], w.shape[2:], stride_t, dilation_t, spatial_out)
    supplied = np.full(padded.shape[2:], PAD, np.int8)
    supplied[tuple(slice(p, p + n) for p, n in zip(pad, xb.shape[2:]))] = REAL
    description = _text(op, stride=stride_t, padding=pad, dilation=dilation_t, groups=groups,
                        padding_mode=padding_mode) + (" — depthwise" if groups == xb.shape[1] > 1 else "")
    anim = Animation(op, description, xb[0], padded[0], supplied, pad, w, b, groups, out[0], "conv", w.shape[2:])
    progress = np.full(out[0].shape, np.nan)
    anim.frames.append(Frame("intro", progress.copy()))
    for o in range(c_out):
        g = o // out_per_group
        channels = tuple(range(g * per_group, (g + 1) * per_group))
        bias_o = float(b[o]) if b is not None else 0.0
        for pos in _step_positions(spatial_out):
            reads = windows[(list(channels), *pos)]
            progress[(o, *pos)] = out[(0, o, *pos)]
            anim.frames.append(Frame(
                "step", progress.copy(), o, pos, channels, cells[pos], reads, w[o], reads * w[o],
                np.array([per_channel[c][(o - g * out_per_group, *pos)] for c in channels]), bias_o,
                float(out[(0, o, *pos)])))
    anim.frames.append(Frame("outro", out[0].copy()))
    return anim


def conv_transpose_frames(x: Any, weight: Any, bias: Any = None, *, stride: Any = 1, padding: Any = 0,
                          output_padding: Any = 0, groups: int = 1, dilation: Any = 1) -> Animation:
    """Frames of a transposed convolution (weight ``(C_in, C_out/groups, *k)``): every input
    cell scatters its value times the kernel onto the canvas at ``position·stride``; the
    output is the canvas cropped by ``padding`` (extended by ``output_padding``) plus bias."""
    w = np.asarray(weight, dtype=np.float64)
    nd = w.ndim - 2
    if nd not in (1, 2, 3):
        raise ValueError(f"animation: expected a weight (C_in, C_out/groups, *kernel) with 1–3 kernel dims, "
                         f"got shape {w.shape}")
    op = f"conv_transpose{nd}d"
    xb = _batch(x, nd, op)
    b = None if bias is None else np.asarray(bias, dtype=np.float64)
    pad = ntuple(padding, nd, "padding", op)
    extra = ntuple(output_padding, nd, "output_padding", op)
    stride_t, dilation_t = ntuple(stride, nd, "stride", op), ntuple(dilation, nd, "dilation", op)
    convt = getattr(F, op)
    out = convt(Tensor(xb), Tensor(w), None if b is None else Tensor(b), stride_t, pad, extra, groups,
                dilation_t).numpy()
    c_in, out_per_group = w.shape[:2]
    per_group = c_in // groups
    c_out = out_per_group * groups
    spatial_in = xb.shape[2:]
    full = tuple((n - 1) * s + d * (k - 1) + 1 for n, s, d, k in zip(spatial_in, stride_t, dilation_t, w.shape[2:]))
    canvas_shape = tuple(max(f, p + n) for f, p, n in zip(full, pad, out.shape[2:]))
    _check_frames(op, c_out * math.prod(spatial_in), (c_out, *canvas_shape))
    taps = np.array(list(np.ndindex(*w.shape[2:])))  # (K, nd)
    supplied = np.full(canvas_shape, PAD, np.int8)  # the part of the canvas that becomes the output
    supplied[tuple(slice(p, p + n) for p, n in zip(pad, out.shape[2:]))] = REAL
    description = _text(op, stride=stride_t, padding=pad, output_padding=extra, groups=groups, dilation=dilation_t)
    anim = Animation(op, description, xb[0], xb[0], np.zeros(spatial_in, np.int8), pad, w, b, groups, out[0],
                     "conv_transpose", w.shape[2:], canvas=supplied)
    # The canvas after each input position (scan order), by the engine on the cells scattered so far.
    positions = _step_positions(spatial_in)
    seen = np.zeros(spatial_in, bool)
    partial = []
    for pos in positions:
        seen[pos] = True
        part = convt(Tensor(xb * seen), Tensor(w), None, stride_t, 0, 0, groups, dilation_t).numpy()[0]
        canvas = np.zeros((c_out, *canvas_shape))
        canvas[(slice(None), *(slice(0, f) for f in full))] = part
        partial.append(canvas)
    progress = np.full((c_out, *canvas_shape), np.nan)
    anim.frames.append(Frame("intro", progress.copy()))
    for o in range(c_out):
        g = o // out_per_group
        channels = tuple(range(g * per_group, (g + 1) * per_group))
        kernels = w[list(channels), o - g * out_per_group]
        touched = np.zeros(canvas_shape, bool)  # canvas cells some scatter has written (NaN elsewhere)
        for k, pos in enumerate(positions):
            reads = xb[(0, list(channels), *pos)]
            cells = np.asarray(pos) * stride_t + taps * dilation_t
            touched[tuple(cells.T)] = True
            progress[o] = np.where(touched, partial[k][o], np.nan)
            anim.frames.append(Frame("step", progress.copy(), o, pos, channels, cells, reads, kernels,
                                     reads.reshape(-1, *[1] * nd) * kernels, None,
                                     float(b[o]) if b is not None else 0.0))
    anim.frames.append(Frame("outro", progress.copy()))
    return anim


def pool_frames(x: Any, kind: str = "max", kernel_size: Any = 2, *, stride: Any = None, padding: Any = 0,
                dilation: Any = 1, ceil_mode: bool = False, count_include_pad: bool = True,
                divisor_override: int | None = None) -> Animation:
    """Frames of max or average pooling of one input ``(C, *S)`` (1–3 spatial dims)."""
    if kind not in ("max", "avg"):
        raise ValueError(f"pooling kind must be 'max' or 'avg', got {kind!r}")
    arr = np.asarray(x.numpy() if isinstance(x, Tensor) else x, dtype=np.float64)
    nd = arr.ndim - 1
    if nd not in (1, 2, 3):
        raise ValueError(f"animation: expected a pooling input (C, *S) with 1–3 spatial dims, got shape {arr.shape}")
    op = f"{kind}_pool{nd}d"
    xb = arr[None]
    geo = pool_geometry(xb.shape, kernel_size, stride, padding, dilation if kind == "max" else 1, ceil_mode, op=op)
    xt = Tensor(xb)
    if kind == "max":
        values, indices = getattr(F, op)(xt, geo.kernel, geo.stride, geo.padding, geo.dilation, ceil_mode,
                                         return_indices=True)
        out, idx = values.numpy(), indices.numpy()
    else:
        extra_args = {"divisor_override": divisor_override} if nd > 1 else {}
        pool = getattr(F, op)
        out = pool(xt, geo.kernel, geo.stride, geo.padding, ceil_mode, count_include_pad, **extra_args).numpy()
        # The engine's divisor per window: (real cells read) / (average of an all-ones input).
        ones = pool(Tensor(np.ones_like(xb)), geo.kernel, geo.stride, geo.padding, ceil_mode, count_include_pad,
                    **extra_args).numpy()
    _check_frames(op, out[0].size, out.shape[1:])
    after = tuple(p + e for p, e in zip(geo.padding, geo.extra))
    fill = -np.inf if kind == "max" else 0.0
    padded = np.pad(xb[0], [(0, 0)] + list(zip(geo.padding, after)), constant_values=fill)
    supplied = np.full(padded.shape[1:], OVERHANG, np.int8)
    supplied[tuple(slice(0, n + 2 * p) for n, p in zip(geo.input, geo.padding))] = PAD
    supplied[tuple(slice(p, p + n) for n, p in zip(geo.input, geo.padding))] = REAL
    windows = sliding_windows(padded, geo.kernel, geo.stride, geo.dilation, geo.out)
    cells = _cells(padded.shape[1:], geo.kernel, geo.stride, geo.dilation, geo.out)
    params: dict[str, Any] = {"kernel_size": geo.kernel, "stride": geo.stride, "padding": geo.padding}
    if kind == "max":
        params["dilation"] = geo.dilation
    params["ceil_mode"] = ceil_mode
    if kind == "avg":
        params["count_include_pad"] = count_include_pad
    anim = Animation(op, _text(op, **params), xb[0], padded, supplied, geo.padding, None, None, 1, out[0], "pool",
                     geo.kernel)
    progress = np.full(out[0].shape, np.nan)
    anim.frames.append(Frame("intro", progress.copy()))
    for c in range(xb.shape[1]):
        for pos in _step_positions(geo.out):
            value = float(out[(0, c, *pos)])
            progress[(c, *pos)] = value
            frame = Frame("step", progress.copy(), c, pos, (c,), cells[pos], windows[(c, *pos)][None], value=value)
            if kind == "max":
                source = np.unravel_index(int(idx[(0, c, *pos)]), geo.input)
                target = np.asarray(source) + np.asarray(geo.padding)
                frame.winner = int(np.flatnonzero((cells[pos] == target).all(axis=1))[0])
            else:
                real = int((supplied[tuple(cells[pos].T)] == REAL).sum())
                frame.divisor = int(round(real / float(ones[(0, c, *pos)])))
            anim.frames.append(frame)
    anim.frames.append(Frame("outro", out[0].copy()))
    return anim


OPS = ("conv", "conv_transpose", "max_pool", "avg_pool")
_CONVS = ("conv", "conv_transpose")
OPTION_OPS: dict[str, tuple[tuple[str, ...], Any]] = {
    "out_channels": (_CONVS, 1), "bias": (_CONVS, True), "groups": (_CONVS, 1), "padding_mode": (("conv",), "zeros"),
    "output_padding": (("conv_transpose",), 0), "dilation": (("conv", "conv_transpose", "max_pool"), 1),
    "ceil_mode": (("max_pool", "avg_pool"), False), "count_include_pad": (("avg_pool",), True)}
"""The options of :func:`example` that only some ops have: the ops, and the default the
others must be left at (a value given for an op without that option is refused, not dropped)."""


def _check_options(op: str, options: dict[str, Any]) -> None:
    """Refuse an option set away from its default for an op that has no such option."""
    for name, value in options.items():
        ops, default = OPTION_OPS[name]
        if op not in ops and not np.all(np.asarray(value, dtype=object) == default):
            which = " and ".join([", ".join(ops[:-1]), ops[-1]] if len(ops) > 1 else ops)
            raise ValueError(f"animation: {name}={value!r} applies to {which} only, not {op}")


def example(op: str = "conv", input_shape: Sequence[int] = (1, 7, 7), kernel: Any = 3, *, out_channels: int = 1,
            seed: int = 0, bias: bool = True, stride: Any = None, padding: Any = 0, dilation: Any = 1,
            groups: int = 1, padding_mode: str = "zeros", output_padding: Any = 0, ceil_mode: bool = False,
            count_include_pad: bool = True) -> Animation:
    """The frames of ``op`` on a seeded example with small integers (input 0…3, weights and
    bias −1…1), so the printed numbers stay short. ``input_shape`` is ``(C, *S)`` with 1–3
    spatial dims; ``stride`` defaults to 1 (the kernel size for pooling).

    >>> anim = example("conv", (1, 7, 7), 3)
    >>> len(anim.frames), anim.output.shape          # intro, 5 × 5 outputs, outro
    (27, (1, 5, 5))
    >>> step = anim.frames[1]
    >>> bool(step.products.sum() + step.bias == step.value)
    True
    """
    if op not in OPS:
        raise ValueError(f"animation op must be one of {', '.join(OPS)}, got {op!r}")
    _check_options(op, {"out_channels": out_channels, "bias": bias, "groups": groups, "padding_mode": padding_mode,
                        "output_padding": output_padding, "dilation": dilation, "ceil_mode": ceil_mode,
                        "count_include_pad": count_include_pad})
    shape = tuple(int(s) for s in input_shape)
    if not 2 <= len(shape) <= 4 or min(shape) < 1:
        raise ValueError(f"animation input must be C×L, C×H×W or C×D×H×W with positive sizes, got {shape}")
    if math.prod(shape) > MAX_FRAME_VALUES:  # each frame holds at least a cell per input cell
        raise ValueError(f"animation: an input of {math.prod(shape):,} cells is more than an animation keeps "
                         f"({MAX_FRAME_VALUES:,} values in all); use a smaller input")
    nd = len(shape) - 1
    k = ntuple(kernel, nd, "kernel_size", op)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 4, shape).astype(np.float64)
    if op in ("max_pool", "avg_pool"):
        return pool_frames(x, op[:3], k, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode,
                           count_include_pad=count_include_pad)
    channels = shape[0]
    for name, n in (("groups", groups), ("out_channels", out_channels)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"animation: {name} must be a positive integer, got {n!r}")
    for name, n in (("input channels", channels), ("out_channels", out_channels)):
        if n % groups:
            raise ValueError(f"animation: {name} ({n}) must be divisible by groups ({groups})")
    step = 1 if stride is None else stride
    b = rng.integers(-1, 2, out_channels).astype(np.float64) if bias else None
    if op == "conv":
        w = rng.integers(-1, 2, (out_channels, channels // groups, *k)).astype(np.float64)
        return conv_frames(x, w, b, stride=step, padding=padding, dilation=dilation, groups=groups,
                           padding_mode=padding_mode)
    w = rng.integers(-1, 2, (channels, out_channels // groups, *k)).astype(np.float64)
    return conv_transpose_frames(x, w, b, stride=step, padding=padding, output_padding=output_padding, groups=groups,
                                 dilation=dilation)
