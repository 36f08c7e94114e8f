"""Normalisation layers: batch, instance, layer and group norm, local response norm, Lp normalize.

Batch, instance, layer and group norm share one fused kernel: view the input so that the
statistics are reductions over some axes, normalise, apply a per-element affine map; the
backward is the closed form ``dx = invstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))`` instead of a
chain of small ops. The passes run block by block along an axis the statistics keep, blocks
shared out over the threads (:mod:`.parallel`). With constant statistics (eval batch norm)
the map is one scale and shift per channel, one compiled pass with numba (:mod:`.jit`);
training batch norm's forward and backward are one compiled kernel each, a channel at a time
(its statistics as float64 sums, then its outputs while its planes are in cache). Running
statistics are updated in place, outside the graph, as in torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ShapeError
from ..ops import _axes, kernel_dtype, unbroadcast
from ..rules import (
    CHANNELS,
    Constraint,
    Cost,
    Field,
    Saved,
    Sizes,
    check,
    const,
    cost_rule,
    equal,
    field_rule,
    global_field,
    nbytes,
    numel,
    per_element,
    product,
    same_field,
    saved_rule,
    size_rule,
)
from ..tensor import Tensor, float32, is_grad_enabled, make_result
from . import jit
from .parallel import Scratch, even_blocks, in_flight, thread_count, tile_map

__all__ = ["batch_norm", "group_norm", "instance_norm", "layer_norm", "local_response_norm", "normalize"]

RunningStat = Tensor | np.ndarray | None


# --- shape rules ----------------------------------------------------------------------------
def _check_channel_input(op: str, shape: tuple) -> int:
    """Inputs laid out ``(N, C, *)``; returns C."""
    if len(shape) < 2:
        raise ShapeError(f"expected an input (N, C, *) with at least 2 dims, got shape {shape}", layer=op)
    return shape[1]


def _check_per_channel(op: str, name: str, value: Any, channels: int, shape: tuple) -> None:
    """Like torch, a per-channel parameter may have any shape with ``C`` elements."""
    if value is None:
        return
    got = value.shape if isinstance(value, Tensor) else np.shape(value)
    if math.prod(got) != channels:
        raise ShapeError(
            f"{name} should contain {channels} elements (one per channel of input {shape}), got shape {got}", layer=op)


def _check_more_than_one(op: str, count: int, shape: tuple, what: str = "value per channel") -> None:
    if count == 1:
        raise ShapeError(f"Expected more than 1 {what} when training, got input size {shape}", layer=op)


def _check_dtypes(op: str, x: Tensor, **others: Any) -> None:
    """torch refuses integer inputs and mixed float dtypes between input and parameters (no silent casts)."""
    kernel_dtype(op, x.dtype)
    for name, value in others.items():
        if value is not None and np.dtype(value.dtype) != x.dtype:
            raise ShapeError(f"{name} has dtype {np.dtype(value.dtype)} but input has {x.dtype}; use one dtype",
                             layer=op)


def _check_running(op: str, running_mean: RunningStat, running_var: RunningStat, needed: bool) -> None:
    if (running_mean is None) != (running_var is None):
        raise ShapeError("running_mean and running_var must either both be None or neither be None", layer=op)
    if needed and running_mean is None:
        raise ShapeError("running_mean and running_var must be given when not using batch statistics "
                         "(evaluation mode)", layer=op)


def _check_eps(op: str, eps: float, training: bool) -> None:
    if eps < 0 or (training and eps == 0):
        raise ShapeError(f"eps must be {'positive during training' if training else 'non-negative'}, got {eps}",
                         layer=op)


def _check_momentum(op: str, momentum: Any) -> None:
    if momentum is None:
        raise TypeError(f"{op}: momentum must be a float, got None. Hint: for a cumulative average pass "
                        "momentum=1/num_batches_tracked, as BatchNorm(momentum=None) does")


# --- the shared kernel ------------------------------------------------------------------------
def _array(value: RunningStat) -> np.ndarray:
    return value.data if isinstance(value, Tensor) else value


# Input elements per block of the normalisation passes: a block's passes (centre, square,
# scale, shift; in the backward five) then run in cache, and blocks are shared out over the
# threads (batch norm over 8×64×112²: 2-3× faster than whole-array passes on 2 cores).
_NORM_BLOCK_ELEMENTS = 1 << 18


def _norm_blocks(view: tuple, x_shape: tuple, axes: tuple) -> tuple[int, list[slice]]:
    """The axis of ``view`` the passes are split along (the first one not reduced, when the
    split is also one of ``x``) and the blocks along it."""
    kept = [a for a in range(len(view)) if a not in axes]
    if not kept or tuple(view[:kept[0] + 1]) != tuple(x_shape[:kept[0] + 1]):
        return 0, [slice(None)]
    axis = kept[0]
    per_entry = max(1, math.prod(view) // max(view[axis], 1))
    step = max(1, _NORM_BLOCK_ELEMENTS // per_entry)
    return axis, [slice(i, i + step) for i in range(0, view[axis], step)]


# Elements per sample in a tile of the per-channel affine map (eval batch norm). Smaller tiles
# keep the output in L2 for the second pass but cost more NumPy calls: 8×256×56² on one thread
# took 3.6 ms with 2^15, 3.0 with 2^17 and 2^18, 3.1 with 2^19 (4.2 before, with blocks of 2^18
# elements multiplied by a broadcast (1, C, 1, 1) scale).
_AFFINE_TILE_ELEMENTS = 1 << 18


# Output bytes from which the compiled elementwise kernels stream their stores past the caches
# (:mod:`._stream_numba`): eval batch norm over 6 MB was 1.3× faster streamed, even when the
# output was summed right after; over 1.5 MB, which stays in L2 and L3, 1.4× slower.
_STREAM_BYTES = 4 << 20


def _affine_tiles(channels: int, per_channel: int, threads: int) -> list[slice]:
    """Tiles of channels of about ``_AFFINE_TILE_ELEMENTS`` per sample; more than one tile
    only when a sample is larger, then as many for each thread (:func:`.parallel.even_blocks`)."""
    return even_blocks(channels, per_channel, _AFFINE_TILE_ELEMENTS, threads)


def _scale_shift_channels(x: np.ndarray, scale: np.ndarray, shift: np.ndarray, out: np.ndarray) -> None:
    """``out = x·scale + shift`` with one scale and shift per channel (axis 1).

    Shapes: ``x`` and ``out`` ``(N, C, *)``, ``scale`` and ``shift`` ``(C,)``. Tiles of
    channels are shared out over the threads. Compiled (:mod:`.jit`), a tile is one pass over
    its planes (the same bits: a product rounded, then a sum), streamed past the caches from
    ``_STREAM_BYTES`` of output. Else a tile spreads its scales
    and shifts into rows as long as a channel's plane, so that both NumPy passes run
    contiguous and unbroadcast (a stride-0 operand halves NumPy's speed), sample by sample
    while the output is in cache.
    """
    n, c = x.shape[:2]
    per_channel = math.prod(x.shape[2:])
    xv, ov = x.reshape(n, c, per_channel), out.reshape(n, c, per_channel)
    tiles = _affine_tiles(c, per_channel, thread_count())
    kernels = jit.kernels_for(x.dtype, "pool")
    if kernels is not None:
        stream, xc = out.nbytes >= _STREAM_BYTES, np.ascontiguousarray(xv)  # the kernel reads flat planes
        tile_map(lambda t: kernels.scale_shift(xc, scale, shift, ov, t.start, min(t.stop, c), stream), tiles)
        return
    samples = max(1, _AFFINE_TILE_ELEMENTS // max((tiles[0].stop - tiles[0].start) * per_channel, 1))
    scratch = Scratch()

    def tile(channels: slice) -> None:
        count = len(range(*channels.indices(c)))
        scale_rows = scratch.take("scale", (count, per_channel), out.dtype)
        shift_rows = scratch.take("shift", (count, per_channel), out.dtype)
        scale_rows[...] = scale[channels, None]
        shift_rows[...] = shift[channels, None]
        for i in range(0, n, samples):
            part = ov[i:i + samples, channels]
            np.multiply(xv[i:i + samples, channels], scale_rows, out=part)
            np.add(part, shift_rows, out=part)

    tile_map(tile, tiles)


def _batch_norm_forward(kernels: Any, x: np.ndarray, w: np.ndarray | None, b: np.ndarray | None, eps: float,
                        out: np.ndarray, xhat: np.ndarray | None, blocks: list[slice]) -> np.ndarray:
    """Training batch norm's forward by the compiled kernel (``kernels.norm_forward``: each
    channel's statistics, then its outputs while its planes are in cache), on ``blocks`` of
    channels over the threads. ``x``, ``out`` and ``xhat`` (the normalised input, or None: not
    kept) ``(N, C, *)``; ``w``, ``b`` one per channel, or None. Returns each channel's mean and
    biased variance, ``(2, C)``."""
    view = (*x.shape[:2], math.prod(x.shape[2:]))
    c = view[1]
    x3, out3 = np.ascontiguousarray(x).reshape(view), out.reshape(view)
    hat3 = np.empty((0, 0, 0), x.dtype) if xhat is None else xhat.reshape(out3.shape)
    if w is None and b is None:
        scale = shift = np.empty(0, x.dtype)  # out = x̂
    else:
        scale, shift = (np.full(c, fill, x.dtype) if a is None else a.reshape(c) for a, fill in ((w, 1), (b, 0)))
    moments, stream = np.empty((2, c), x.dtype), out.nbytes >= _STREAM_BYTES
    tile_map(lambda blk: kernels.norm_forward(x3, scale, shift, eps, out3, hat3, moments, blk.start,
                                              min(blk.stop, c), stream), blocks)
    return moments


def _normalize(op: str, x: Tensor, weight: Tensor | None, bias: Tensor | None, *, view: tuple, axes: tuple,
               affine: tuple, eps: float, stats: tuple[np.ndarray, np.ndarray] | None = None,
               attrs: dict | None = None) -> tuple[Tensor, np.ndarray | None, np.ndarray | None]:
    """``(x − mean)/√(var + eps)·weight + bias`` with the statistics taken over ``axes`` of
    ``x`` reshaped to ``view``; ``weight``/``bias`` are reshaped to ``affine`` (broadcast
    against ``x``). ``stats=(mean, var)`` (shaped to broadcast in ``view``) are constants
    used instead of the batch statistics. Returns the output and, for batch statistics,
    the mean and biased variance (kept dims, in ``view``) for running-average updates.

    Every pass runs block by block along an axis the statistics keep (the channels of a
    batch norm, the samples of the others), blocks spread over the threads.
    """
    parents = [t for t in (x, weight, bias) if t is not None]
    if any(t.is_meta for t in parents):
        return make_result(op, None, parents, None, shape=x.shape, dtype=x.dtype, attrs=attrs), None, None
    xv = x.data.reshape(view)
    w = None if weight is None else weight.data.reshape(affine)
    b = None if bias is None else bias.data.reshape(affine)
    axis, blocks = _norm_blocks(xv.shape, x.shape, axes)
    lead = (slice(None),) * axis

    def part(a: np.ndarray | None, blk: slice) -> np.ndarray | None:
        """A block of ``a``, an array broadcast against ``x``."""
        if a is None or a.ndim < x.ndim - axis or a.shape[axis - x.ndim] == 1:
            return a
        return a[(Ellipsis, blk) + (slice(None),) * (x.ndim - axis - 1)]

    kept = tuple(1 if i in axes else n for i, n in enumerate(xv.shape))
    out = np.empty(x.shape, x.dtype)
    # with one weight and one bias per statistic (batch and instance norm) their gradients are
    # the sums the input gradient needs anyway: one blocked pass makes all three
    per_statistic = (stats is None and tuple(xv.shape) == tuple(x.shape)
                     and all(a is None or i - x.ndim < -a.ndim or a.shape[i - x.ndim] == 1
                             for a in (w, b) for i in axes))
    by_channel = per_statistic and axis == 1 and axes == (0, *range(2, x.ndim))  # batch norm: compiled kernels
    if stats is None:
        count = math.prod(xv.shape[i] for i in axes)
        mean, var = np.empty(kept, x.dtype), np.empty(kept, x.dtype)
        affine_map = w is not None or b is not None
        # the normalised input is kept for the backward; without a graph it lives block by block
        # (a second input-sized array of fresh pages costs more than the passes themselves)
        graph = is_grad_enabled() and any(t.requires_grad for t in parents)
        xhat = np.empty(xv.shape, x.dtype) if affine_map and graph else out.reshape(xv.shape)
        scratch = Scratch()

        def forward(blk: slice) -> None:
            at = lead + (blk,)  # the block, in ``view`` and in ``x`` (they share the dims up to ``axis``)
            xb = xv[at]
            with np.errstate(invalid="ignore", divide="ignore"):  # an empty batch gives NaN statistics
                np.divide(xb.sum(axis=axes, keepdims=True), count, out=mean[at])
                dest = xhat[at] if graph or not affine_map else scratch.take("xhat", xb.shape, x.dtype)
                centred = np.subtract(xb, mean[at], out=dest)
                # the square in the output's block (overwritten below) when there is one to spare
                square = out[at].reshape(xb.shape) if affine_map else scratch.take("square", xb.shape, x.dtype)
                var[at] = np.multiply(centred, centred, out=square).sum(axis=axes, keepdims=True) / count
            np.multiply(centred, 1 / np.sqrt(var[at] + eps), out=centred)  # normalised in place
            if affine_map:
                ob = out[at]
                xb_hat = centred.reshape(ob.shape)
                if w is None:
                    ob[...] = xb_hat
                else:
                    np.multiply(xb_hat, part(w, blk), out=ob)
                if b is not None:
                    ob += part(b, blk)

        compiled = jit.kernels_for(x.dtype, "pool") if by_channel else None
        if compiled is not None:
            moments = _batch_norm_forward(compiled, x.data, w, b, eps, out, xhat if affine_map and graph else None,
                                          blocks)
            mean[...], var[...] = moments.reshape((2,) + kept)
        else:
            tile_map(forward, blocks)
        invstd = 1 / np.sqrt(var + eps)
        xhat = xhat.reshape(x.shape) if graph or not affine_map else None
    else:  # constant statistics (view == x.shape): one scale and one shift per channel
        mean, var = stats
        invstd = 1 / np.sqrt(var + eps)
        scale = invstd if w is None else invstd * w
        shift = -mean * scale if b is None else b - mean * scale
        _scale_shift_channels(x.data, scale.reshape(-1), shift.reshape(-1), out)
        xhat = None  # made by the backward if a weight gradient needs it

    def input_grad(g: np.ndarray) -> np.ndarray:
        if stats is not None:
            return g * scale
        gx = np.empty(x.shape, g.dtype)
        xhat_v = xhat.reshape(xv.shape)

        def backward_block(blk: slice) -> None:
            at = lead + (blk,)
            hb = xhat_v[at]
            if w is None:
                gx[at] = g[at]
            else:
                np.multiply(g[at], part(w, blk), out=gx[at])
            dxhat = gx[at].reshape(hb.shape)
            mean_d = dxhat.mean(axis=axes, keepdims=True)
            along = np.multiply(dxhat, hb)
            np.multiply(hb, along.mean(axis=axes, keepdims=True), out=along)
            dxhat -= mean_d
            dxhat -= along
            dxhat *= invstd[at] if invstd.shape[axis] > 1 else invstd

        tile_map(backward_block, blocks)
        return gx

    def fused_backward(g: np.ndarray) -> tuple:
        gx = np.empty(x.shape, g.dtype) if x.requires_grad else None
        kernels = jit.kernels_for(g.dtype, "pool") if by_channel else None
        if kernels is not None:  # batch norm: the compiled pass per channel (float64 sums)
            return _gradients(_batch_norm_backward(kernels, g, gx), gx)
        sums = np.empty((2,) + kept, g.dtype)  # Σ g and Σ g·x̂ per statistic
        scratch = Scratch()

        def backward_block(blk: slice) -> None:
            at = lead + (blk,)
            gb, hb = g[at], xhat[at]
            total, along = sums[(0,) + at], sums[(1,) + at]
            total[...] = gb.sum(axis=axes, keepdims=True)
            along[...] = np.multiply(gb, hb, out=scratch.take("product", gb.shape, g.dtype)).sum(axis=axes,
                                                                                                  keepdims=True)
            if gx is None or not count:  # (an empty batch has no input gradient to fill)
                return
            # dx = w·invstd·(g − mean(g) − x̂·mean(g·x̂))
            dx = np.multiply(hb, along / count, out=gx[at])
            np.subtract(gb, dx, out=dx)
            dx -= total / count
            dx *= invstd[at] if w is None else invstd[at] * part(w, blk)

        tile_map(backward_block, blocks)
        return _gradients(sums, gx)

    def _batch_norm_backward(kernels: Any, g: np.ndarray, gx: np.ndarray | None) -> np.ndarray:
        """The compiled kernel on the blocks of channels: ``gx`` filled, the sums returned."""
        n, c = x.shape[:2]
        g3 = np.ascontiguousarray(g).reshape(n, c, math.prod(x.shape[2:]))  # not -1: N may be 0
        gx3 = np.empty((0, 0, 0), g.dtype) if gx is None else gx.reshape(g3.shape)
        scale = (invstd if w is None else invstd * w).reshape(c)
        sums = np.empty((2, c))
        stream = gx3.nbytes >= _STREAM_BYTES
        tile_map(lambda blk: kernels.norm_backward(g3, xhat.reshape(g3.shape), scale, count, gx3, sums, blk.start,
                                                   min(blk.stop, c), stream), blocks)
        return sums.astype(g.dtype).reshape((2,) + kept)

    def _gradients(sums: np.ndarray, gx: np.ndarray | None) -> tuple:
        """The input gradient, then the weight's (``Σ g·x̂``) and the bias's (``Σ g``)."""
        grads = [gx]
        if weight is not None:
            grads.append(unbroadcast(sums[1], affine).reshape(weight.shape) if weight.requires_grad else None)
        if bias is not None:
            grads.append(unbroadcast(sums[0], affine).reshape(bias.shape) if bias.requires_grad else None)
        return tuple(grads)

    def backward(g: np.ndarray) -> tuple:
        if per_statistic:
            return fused_backward(g)
        grads = [input_grad(g) if x.requires_grad else None]
        if weight is not None and weight.requires_grad:
            normalised = xhat if xhat is not None else ((xv - mean) * invstd).reshape(x.shape)
            grads.append(unbroadcast(g * normalised, affine).reshape(weight.shape))
        elif weight is not None:
            grads.append(None)
        if bias is not None:
            grads.append(unbroadcast(g, affine).reshape(bias.shape) if bias.requires_grad else None)
        return tuple(grads)

    result = make_result(op, out, parents, backward, attrs=attrs)
    return result, (mean if stats is None else None), (var if stats is None else None)


def _update_running(running: RunningStat, batch: np.ndarray, momentum: float) -> None:
    """``running = (1 − momentum)·running + momentum·batch``, in place and outside the graph."""
    arr = _array(running)
    arr[...] = (momentum * batch.reshape(arr.shape) + (1 - momentum) * arr).astype(arr.dtype, copy=False)


def _channel_affine(ndim: int, channels: int) -> tuple:
    return (1, channels) + (1,) * (ndim - 2)


# --- batch and instance norm ----------------------------------------------------------------
def batch_norm(input: Tensor, running_mean: RunningStat, running_var: RunningStat, weight: Tensor | None = None,  # noqa: A002 - torch name
               bias: Tensor | None = None, training: bool = False, momentum: float = 0.1,
               eps: float = 1e-5) -> Tensor:
    """Batch normalisation over every axis but the channel axis 1.

    In training normalises with the batch mean and biased variance and, when running
    statistics are given (Tensors, whose ``.data`` is updated, or ndarrays), updates them in
    place with ``running = (1 − momentum)·running + momentum·batch`` using the unbiased
    variance. In evaluation normalises with the running statistics, which are then required.

    Shape:
        - Input: ``(N, C, *)``; ``running_*``, ``weight``, ``bias``: ``C`` elements.
        - Output: same as input.

    As in ``F.batch_norm``, ``momentum=None`` is refused (TypeError); the message explains the
    cumulative average that ``BatchNorm(momentum=None)`` gets by passing ``1/num_batches_tracked``.
    """
    op = "batch_norm"
    channels = _check_channel_input(op, input.shape)
    _check_running(op, running_mean, running_var, needed=not training)
    for name, value in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                        ("bias", bias)):
        _check_per_channel(op, name, value, channels, input.shape)
    _check_dtypes(op, input, running_mean=running_mean, running_var=running_var, weight=weight, bias=bias)
    count = input.shape[0] * math.prod(input.shape[2:])
    if training:
        _check_more_than_one(op, count, input.shape)
        _check_momentum(op, momentum)
    _check_eps(op, eps, training)
    affine = _channel_affine(input.ndim, channels)
    axes = (0,) + tuple(range(2, input.ndim))
    stats = None if training else (_array(running_mean).reshape(affine), _array(running_var).reshape(affine))
    attrs = {"training": training, "momentum": momentum, "eps": eps}
    out, mean, var = _normalize(op, input, weight, bias, view=input.shape, axes=axes, affine=affine, eps=eps,
                                stats=stats, attrs=attrs)
    if training and running_mean is not None and mean is not None and count > 0:
        _update_running(running_mean, mean, momentum)
        _update_running(running_var, var * (count / (count - 1)), momentum)
    return out


def instance_norm(input: Tensor, running_mean: RunningStat = None, running_var: RunningStat = None,  # noqa: A002 - torch name
                  weight: Tensor | None = None, bias: Tensor | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise each channel of each sample over its spatial positions.

    With ``use_input_stats`` the running statistics (if given) are updated with the
    per-instance statistics averaged over the batch; otherwise they are used to normalise.

    Shape:
        - Input: ``(N, C, *)`` with at least one spatial dim; parameters: ``C`` elements.
        - Output: same as input.
    """
    op = "instance_norm"
    channels = _check_channel_input(op, input.shape)
    _check_running(op, running_mean, running_var, needed=not use_input_stats)
    for name, value in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                        ("bias", bias)):
        _check_per_channel(op, name, value, channels, input.shape)
    _check_dtypes(op, input, running_mean=running_mean, running_var=running_var, weight=weight, bias=bias)
    spatial = math.prod(input.shape[2:])
    if use_input_stats:
        _check_more_than_one(op, spatial, input.shape, "spatial element")
    _check_eps(op, eps, use_input_stats)
    affine = _channel_affine(input.ndim, channels)
    stats = None if use_input_stats else (_array(running_mean).reshape(affine), _array(running_var).reshape(affine))
    out, mean, var = _normalize(op, input, weight, bias, view=input.shape, axes=tuple(range(2, input.ndim)),
                                affine=affine, eps=eps, stats=stats,
                                attrs={"momentum": momentum, "eps": eps, "use_input_stats": use_input_stats})
    if running_mean is not None and mean is not None and input.shape[0] > 0:
        _update_running(running_mean, mean.mean(axis=0), momentum)
        _update_running(running_var, (var * (spatial / (spatial - 1))).mean(axis=0), momentum)
    return out


# --- layer and group norm -------------------------------------------------------------------
def layer_norm(input: Tensor, normalized_shape: int | Sequence[int], weight: Tensor | None = None,  # noqa: A002 - torch name
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` dims of each sample.

    Shape:
        - Input: ``(*, *normalized_shape)``; ``weight``/``bias``: ``normalized_shape``.
        - Output: same as input.

    Unlike ``F.layer_norm`` (but like ``nn.LayerNorm``), an int ``normalized_shape`` is accepted.
    """
    op = "layer_norm"
    dims = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else normalized_shape
    ns = tuple(int(d) for d in dims)
    if not ns:
        raise ShapeError("normalized_shape must contain at least one dim, got ()", layer=op)
    if len(ns) > input.ndim or input.shape[input.ndim - len(ns):] != ns:
        raise ShapeError(f"normalized_shape {ns} expects an input of shape (*, {', '.join(map(str, ns))}), "
                         f"got {input.shape}", layer=op)
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None and value.shape != ns:
            raise ShapeError(f"{name} should have shape normalized_shape {ns}, got {value.shape}", layer=op)
    _check_dtypes(op, input, weight=weight, bias=bias)
    axes = tuple(range(input.ndim - len(ns), input.ndim))
    return _normalize(op, input, weight, bias, view=input.shape, axes=axes, affine=ns, eps=eps,
                      attrs={"normalized_shape": ns, "eps": eps, "weight": weight is not None,
                             "bias": bias is not None})[0]


def layer_norm_affine(inputs: Sequence[Any], attrs: dict) -> tuple[Any, Any]:
    """The ``(weight, bias)`` of a recorded ``layer_norm`` op, each None if not given: its
    ``inputs`` after the first are the ones given, in that order (``attrs`` says which)."""
    given = iter(inputs[1:])
    return (next(given) if attrs["weight"] else None), (next(given) if attrs["bias"] else None)


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,  # noqa: A002 - torch name
               eps: float = 1e-5) -> Tensor:
    """Split the channels into ``num_groups`` groups and normalise each group of each sample.

    Shape:
        - Input: ``(N, C, *)`` with ``C`` divisible by ``num_groups``; ``weight``/``bias``: ``(C,)``.
        - Output: same as input.
    """
    op = "group_norm"
    channels = _check_channel_input(op, input.shape)
    if num_groups <= 0:
        raise ShapeError(f"num_groups must be positive, got {num_groups}", layer=op)
    if channels % num_groups:
        raise ShapeError(f"num_groups {num_groups} does not divide the {channels} channels of input {input.shape}",
                         layer=op)
    per_group = channels // num_groups * math.prod(input.shape[2:])  # the view's last dim (not -1: N may be 0)
    # torch's own guard: it counts (N·C/G)·∏spatial, not the values per group.
    _check_more_than_one(op, input.shape[0] * per_group, input.shape)
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None and value.shape != (channels,):
            raise ShapeError(f"{name} should have shape ({channels},) (one per channel), got {value.shape}", layer=op)
    _check_dtypes(op, input, weight=weight, bias=bias)
    return _normalize(op, input, weight, bias, view=(input.shape[0], num_groups, per_group), axes=(2,),
                      affine=_channel_affine(input.ndim, channels), eps=eps,
                      attrs={"num_groups": num_groups, "eps": eps})[0]


# --- local response norm --------------------------------------------------------------------
def _channel_window_sum(a: np.ndarray, before: int, after: int) -> np.ndarray:
    """``out[:, c] = Σ a[:, c − before : c + after + 1]`` with zeros outside the channels."""
    channels = a.shape[1]
    padded = np.zeros((a.shape[0], channels + before + after) + a.shape[2:], a.dtype)
    padded[:, before:before + channels] = a
    out = np.zeros_like(a)
    for tap in range(before + after + 1):
        out += padded[:, tap:tap + channels]
    return out


def local_response_norm(input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75,  # noqa: A002 - torch name
                        k: float = 1.0) -> Tensor:
    """``x / (k + alpha·mean_window(x²))^beta`` over a window of ``size`` neighbouring channels.

    The window of channel c is ``[c − size//2, c + (size−1)//2]``, zero-padded, and the sum
    is always divided by ``size`` (torch's avg-pool over the zero-padded squares).

    Shape:
        - Input: ``(N, C, *)`` with at least 3 dims.
        - Output: same as input.
    """
    op = "local_response_norm"
    if input.ndim < 3:
        raise ShapeError(f"expected an input (N, C, *) with at least 3 dims, got shape {input.shape}", layer=op)
    if size <= 0:
        raise ShapeError(f"size must be positive, got {size}", layer=op)
    attrs = {"size": size, "alpha": alpha, "beta": beta, "k": k}
    dtype = kernel_dtype(op, input.dtype, "int64")  # torch refuses other integers (no avg-pool kernel)
    if input.is_meta:
        return make_result(op, None, (input,), None, shape=input.shape, dtype=kernel_dtype(op, dtype, "float"),
                           attrs=attrs)
    x = input.data
    before, after = size // 2, (size - 1) // 2
    squares = _channel_window_sum(x * x, before, after)
    if x.dtype.kind == "f":
        mean = squares / size
    else:  # torch's int64 avg-pool rounds the mean down (squares are not negative), the rest is float32
        mean, x = (squares // size).astype(float32), x.astype(float32)
    scale = mean * alpha + k
    denom = scale ** beta
    out = x / denom

    def backward(g: np.ndarray) -> tuple:
        # out_j depends on x_c for c in window(j); the adjoint window of c spans the mirrored offsets.
        through_scale = _channel_window_sum(g * out / scale, after, before)
        return (g / denom - (2 * alpha * beta / size) * x * through_scale,)

    return make_result(op, np.asarray(out, dtype=x.dtype), (input,), backward, attrs=attrs)


# --- Lp normalize ---------------------------------------------------------------------------
def normalize(input: Tensor, p: float = 2.0, dim: int | Sequence[int] = 1, eps: float = 1e-12) -> Tensor:  # noqa: A002 - torch name
    """``x / max(‖x‖_p, eps)`` with the norm taken over ``dim``.

    Shape:
        - Input: any shape; ``dim`` must exist.
        - Output: same as input.

    Unlike PyTorch, only ``p > 0`` (including ``inf``) is implemented.
    """
    op = "normalize"
    if not p > 0:
        raise NotImplementedError(f"{op}: only p > 0 (or inf) is implemented, got p={p}")
    try:
        axes = _axes(dim, input.ndim)
    except ShapeError as exc:
        raise exc.with_layer(op) from None
    if input.ndim == 0:
        raise ShapeError("expected an input with at least 1 dim, got a 0-d tensor", layer=op)
    kernel_dtype(op, input.dtype)
    attrs = {"p": p, "dim": dim, "eps": eps}
    if input.is_meta:
        return make_result(op, None, (input,), None, shape=input.shape, attrs=attrs)
    x = input.data
    mag = np.abs(x)
    if p == math.inf:
        norm = mag.max(axis=axes, keepdims=True)
    elif p == 2:
        norm = np.sqrt((x * x).sum(axis=axes, keepdims=True))
    else:
        norm = (mag ** p).sum(axis=axes, keepdims=True) ** (1 / p)
    denom = np.maximum(norm, eps).astype(x.dtype, copy=False)
    out = x / denom

    def backward(g: np.ndarray) -> tuple:
        # d/d(denom) of x/denom, passed to the norm only where the clamp did not bite.
        g_norm = -(g * out).sum(axis=axes, keepdims=True) / denom * (norm >= eps)
        if p == math.inf:
            hit = mag == norm
            d_norm = np.sign(x) * hit / hit.sum(axis=axes, keepdims=True)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                d_norm = np.where(x == 0, 0, np.sign(x) * mag ** (p - 1))
                g_norm = np.where(norm == 0, 0, g_norm / norm ** (p - 1))
        return (g / denom + g_norm * d_norm,)

    return make_result(op, out, (input,), backward, attrs=attrs)


# --- analysis rules (see convscope.rules) ------------------------------------------------
@cost_rule("batch_norm")
def _batch_norm_cost(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Cost:
    """Eval: a folded scale and shift per element; training also computes mean and variance."""
    each = 4 if attrs.get("training") else 2
    n = numel(output.shape)
    return Cost(0, each * n, f"{n:,} elements × {each} ({'statistics, ' if each == 4 else ''}scale, shift)")


cost_rule("instance_norm", "layer_norm", "group_norm")(per_element(4, "mean, variance, scale, shift"))


@cost_rule("local_response_norm")
def _lrn_cost(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Cost:
    n, size = numel(output.shape), attrs["size"]
    return Cost(n * size, 2 * n * size + 2 * n, f"{n:,} elements × {size} squares summed (+ power, divide)")


field_rule("batch_norm", "local_response_norm")(same_field)  # batch norm in its inference form, per channel


@field_rule("instance_norm")
def _instance_norm_field(fields: Sequence[Field], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Field:
    """Statistics of the input's own planes make every output depend on its whole plane."""
    return global_field(fields, inputs, output, attrs) if attrs.get("use_input_stats") else same_field(
        fields, inputs, output, attrs)
field_rule("group_norm")(global_field)


@field_rule("layer_norm", channels=True)
def _layer_norm_field(fields: Sequence[Field], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Field:
    """Statistics over the channels of one pixel (a channels-last map's last dims, entries
    :data:`~convscope.rules.CHANNELS`) keep its field; over a spatial dim they make every
    output depend on the whole input."""
    field, count = fields[0], len(attrs["normalized_shape"])
    if field and count <= len(field) and all(a == CHANNELS for a in field[len(field) - count:]):
        return field
    return global_field(fields, inputs, output, attrs)


@saved_rule("batch_norm", "instance_norm", "layer_norm", "group_norm")
def _normalize_saved(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
    """``_normalize``'s closure keeps its parents and, with batch statistics, the normalised
    input ``xhat`` (made in place of the centred input) and ``1/√(var + eps)`` per
    statistic; the output reuses the square's buffer, so the forward needs no scratch. The
    backward then holds one input-sized temporary besides the input gradient it builds in
    place (training batch norm: a product per busy thread's block of channels; compiled,
    none). With constant statistics it keeps one scale per channel, the forward spreads a
    tile's scales and shifts into rows on each busy thread (:func:`_scale_shift_channels`;
    none when compiled), and the weight gradient recomputes the normalised input (two
    temporaries)."""
    x = inputs[0]
    size, item = nbytes(x), x.dtype.itemsize
    if not attrs.get("training", attrs.get("use_input_stats", True)):
        per_channel = numel(x.shape[2:])
        tiles = _affine_tiles(x.shape[1], per_channel, thread_count())
        rows = 2 * (tiles[0].stop - tiles[0].start) * per_channel * item  # a tile's scale and shift rows
        workspace = 0 if jit.runs(x.dtype) else in_flight(len(tiles), thread_count()) * rows  # compiled: none
        return Saved(tuple(range(len(inputs))), extra=(("scale", 2 * x.shape[1] * item),), workspace=workspace,
                     backward_workspace=2 * size)
    if "normalized_shape" in attrs:
        stats = numel(x.shape) // max(numel(attrs["normalized_shape"]), 1)
    elif "num_groups" in attrs:
        stats = x.shape[0] * attrs["num_groups"]
    elif "use_input_stats" in attrs:
        stats = x.shape[0] * x.shape[1]
    else:
        stats = x.shape[1] if x.ndim > 1 else 1
    backward = size
    if "training" in attrs:  # batch norm: compiled, no temporary; else a product per busy thread's block
        axis, blocks = _norm_blocks(x.shape, x.shape, (0, *range(2, x.ndim)))
        block = numel(x.shape) // max(x.shape[axis], 1) * len(range(*blocks[0].indices(x.shape[axis])))
        backward = 0 if jit.runs(x.dtype) else in_flight(len(blocks), thread_count()) * block * item
    return Saved(tuple(range(len(inputs))), extra=(("normalised input", size), ("1/std", stats * item)),
                 backward_workspace=backward)


@saved_rule("local_response_norm")
def _lrn_saved(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
    """The closure keeps the input, the output, the scale and its power."""
    size = nbytes(output)
    return Saved((0,), True, (("scale", size), ("scale ** beta", size)), workspace=3 * size,
                 backward_workspace=4 * size)


@saved_rule("normalize")
def _normalize_lp_saved(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
    """The closure keeps ``|x|`` besides the input and output (the norms are small)."""
    size = nbytes(output)
    return Saved((0,), True, (("|x|", size),), workspace=size, backward_workspace=3 * size)


def _more_than_one(count: Sequence, what: str) -> list[Constraint]:
    size = product(count)
    return check(f"more than 1 {what} when training: {size.text} ≠ 1", lambda env: size.value(env) != 1, size)


@size_rule("batch_norm", "instance_norm", "group_norm", "layer_norm")
def _norm_sizes(sizes: Sequence[Sizes], inputs: Sequence[Tensor], output: Tensor,
                attrs: dict) -> tuple[Sizes, list[Constraint]]:
    """Shape-preserving; training statistics need more than one value (the op's own guards)."""
    x = sizes[0]
    if "normalized_shape" in attrs:  # layer_norm: the trailing dims are fixed
        ns = attrs["normalized_shape"]
        return x, [c for e, n in zip(x[-len(ns):], ns) for c in equal(e, const(n), "normalized dim {a} = {b}")]
    if "num_groups" in attrs:  # torch counts (N·C/G)·∏spatial
        return x, _more_than_one((x[0], const(inputs[0].shape[1] // attrs["num_groups"]), *x[2:]), "value per group")
    if attrs.get("use_input_stats"):
        return x, _more_than_one(x[2:], "spatial element")
    return x, _more_than_one((x[0], *x[2:]), "value per channel") if attrs.get("training") else []
