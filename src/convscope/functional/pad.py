"""Padding, as ``torch.nn.functional.pad``: constant, reflect, replicate and circular.

``pad`` lists ``(left, right)`` pairs starting from the last dim. A negative entry crops.
Constant padding works on any rank; the other modes pad the 1, 2 or 3 trailing dims of a
batched ``(N, C, ...)`` or unbatched ``(C, ...)`` input. Every output cell of those modes
copies one input cell, given per axis by an index map; the gradient sums each output
cell's gradient back onto the cell it copied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..errors import ShapeError
from ..ops import kernel_dtype
from ..rules import (
    FREE,
    Constraint,
    Field,
    Saved,
    Sizes,
    at_least,
    cost_rule,
    field_rule,
    nbytes,
    saved_rule,
    size_rule,
)
from ..tensor import Tensor, make_result
from .parallel import thread_count, tile_map

__all__ = ["pad"]

_MODES = ("constant", "reflect", "replicate", "circular")


def constant_pad_array(x: np.ndarray, before: Sequence[int], after: Sequence[int], value: float = 0) -> np.ndarray:
    """Pad (or, for negative entries, crop) the trailing ``len(before)`` dims of an array.

    Array-level helper shared with convolution. Returns ``x`` itself when there is nothing
    to do; otherwise a new C-contiguous array. Its adjoint is the same call with the pads
    negated (and ``value`` 0).
    """
    if not any(before) and not any(after):
        return x
    lead = x.ndim - len(before)
    sizes = x.shape[lead:]
    shape = x.shape[:lead] + tuple(n + b + a for n, b, a in zip(sizes, before, after, strict=True))
    grows = any(b > 0 for b in before) or any(a > 0 for a in after)
    if not grows:
        out = np.empty(shape, x.dtype)
    else:  # np.zeros: pages come zeroed from the OS, one pass fewer than np.full
        out = np.zeros(shape, x.dtype) if value == 0 else np.full(shape, value, x.dtype)
    keep = [n - max(-b, 0) - max(-a, 0) for n, b, a in zip(sizes, before, after, strict=True)]
    if min(keep, default=1) > 0:
        dst = tuple(slice(max(b, 0), max(b, 0) + k) for b, k in zip(before, keep, strict=True))
        src = tuple(slice(max(-b, 0), max(-b, 0) + k) for b, k in zip(before, keep, strict=True))
        _copy_blocks(out, dst, x, src, lead)
    return out


# Bytes from which a pad's copy is shared out over the threads by blocks of its leading dims:
# the copy also takes the output's first touches (page faults: ~2 µs per 4 KiB here), so
# two threads halve it (a conv's padded input of 64×226² float32: 3.5 → 1.6 ms).
_PARALLEL_COPY_BYTES = 1 << 20


def _copy_blocks(out: np.ndarray, dst: tuple[slice, ...], x: np.ndarray, src: tuple[slice, ...], lead: int) -> None:
    """``out[..., *dst] = x[..., *src]``, in blocks along the first leading dim with enough
    entries (the second when the first has too few) on :func:`.parallel.tile_map`'s threads."""
    threads = thread_count()
    if out.nbytes < _PARALLEL_COPY_BYTES or threads == 1 or lead == 0:
        out[(Ellipsis,) + dst] = x[(Ellipsis,) + src]
        return
    axis = 0 if lead == 1 or x.shape[0] >= 2 * threads else 1
    step = -(-x.shape[axis] // (2 * threads))
    ahead = (slice(None),) * axis

    def block(start: int) -> None:
        at = ahead + (slice(start, start + step),)
        out[at + (Ellipsis,) + dst] = x[at + (Ellipsis,) + src]

    tile_map(block, range(0, x.shape[axis], step))


def _pairs(shape: tuple, pad: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(axis, before, after)`` per padded axis, first axis first."""
    if isinstance(pad, (str, bytes)) or not all(isinstance(p, (int, np.integer)) for p in pad):
        raise ShapeError(f"pad must be a sequence of ints, got {pad!r}", layer="pad")
    if len(pad) % 2:
        raise ShapeError(f"pad has odd length {len(pad)}; it must hold (before, after) pairs", layer="pad")
    if len(pad) // 2 > len(shape):
        raise ShapeError(f"pad has {len(pad) // 2} (before, after) pairs but the input has only {len(shape)} dims",
                         layer="pad")
    return [(len(shape) - 1 - i, int(pad[2 * i]), int(pad[2 * i + 1])) for i in reversed(range(len(pad) // 2))]


def _check_mode(shape: tuple, pairs: list[tuple[int, int, int]], mode: str, value: float | None) -> None:
    """torch's restrictions on the reflect, replicate and circular modes."""
    if value is not None and value != 0:
        raise ShapeError(f"mode {mode!r} takes no value, got value={value}", layer="pad")
    k = len(pairs)
    if k not in (1, 2, 3) or len(shape) not in (k + 1, k + 2):
        raise ShapeError(f"mode {mode!r} pads the 1, 2 or 3 trailing dims of a (C, ...) or (N, C, ...) input; "
                         f"got {k} (before, after) pairs for a {len(shape)}-d input", layer="pad")
    if mode != "circular" and 0 in shape[len(shape) - k - 1:]:
        raise ShapeError(f"mode {mode!r} needs non-empty dims except the batch dim, got shape {shape}", layer="pad")
    for axis, lo, hi in pairs:
        n = shape[axis]
        size = n + lo + hi
        where = f"dim {axis} of size {n}"
        if mode == "reflect" and (lo >= n or hi >= n):
            raise ShapeError(f"reflect padding ({lo}, {hi}) must be smaller than {where}", layer="pad")
        if mode == "circular":
            kept = n - max(-lo, 0) - max(-hi, 0)
            if lo > n or hi > n or lo > kept or hi > kept:
                raise ShapeError(f"circular padding ({lo}, {hi}) wraps around more than once: {where} keeps "
                                 f"{max(kept, 0)} after cropping", layer="pad")
            if size < 0:
                raise ShapeError(f"padding ({lo}, {hi}) leaves {size} cells of {where}", layer="pad")
        elif size < 1:
            raise ShapeError(f"padding ({lo}, {hi}) leaves {size} cells of {where}; {mode} needs at least 1",
                             layer="pad")


def _pad_rule(shape: tuple, pad: Sequence[int], mode: str, value: float | None
              ) -> tuple[list[tuple[int, int, int]], tuple]:
    """Validate; return the ``(axis, before, after)`` pairs and the output shape."""
    pairs = _pairs(shape, pad)
    if mode not in _MODES:
        raise ShapeError(f"unknown mode {mode!r}; expected one of {', '.join(_MODES)}", layer="pad")
    if mode == "constant":
        for axis, lo, hi in pairs:
            if shape[axis] - max(-lo, 0) - max(-hi, 0) < 0:
                raise ShapeError(f"padding ({lo}, {hi}) crops more than the {shape[axis]} cells of dim {axis}",
                                 layer="pad")
    else:
        _check_mode(shape, pairs, mode, value)
    out = list(shape)
    for axis, lo, hi in pairs:
        out[axis] += lo + hi
    return pairs, tuple(out)


def _index_map(mode: str, n: int, lo: int, hi: int) -> np.ndarray:
    """Which input cell each output cell along one axis copies."""
    i = np.arange(n + lo + hi) - lo
    if mode == "reflect":
        i = np.abs(i)
        return np.where(i >= n, 2 * (n - 1) - i, i)
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    # circular, as torch: crop first, then wrap around what is left
    start = max(-lo, 0)
    kept = n - start - max(-hi, 0)
    return start + (np.arange(n + lo + hi) - max(lo, 0)) % max(kept, 1)


def _take_adjoint(g: np.ndarray, index: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Adjoint of ``np.take(x, index, axis)`` for an axis of size ``n``: sum the gradient of
    every output cell onto the input cell it copied."""
    shape = g.shape[:axis] + (n,) + g.shape[axis + 1:]
    out = np.zeros(shape, g.dtype)
    if index.size == 0:
        return out
    order = np.argsort(index, kind="stable")
    ordered = index[order]
    starts = np.flatnonzero(np.diff(ordered, prepend=-1))
    sums = np.add.reduceat(np.take(g, order, axis=axis), starts, axis=axis)
    where = [slice(None)] * g.ndim
    where[axis] = ordered[starts]
    out[tuple(where)] = sums
    return out


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> Tensor:  # noqa: A002
    """Pad the trailing dims of ``input``, like ``torch.nn.functional.pad``.

    Parameters
    ----------
    input : Tensor
        Any rank for ``"constant"``; ``(C, *S)`` or ``(N, C, *S)`` with 1 to 3 padded dims
        ``S`` for the other modes.
    pad : sequence of int
        ``(before_last, after_last, before_second_last, ...)``; negative entries crop.
    mode : {"constant", "reflect", "replicate", "circular"}
        ``reflect`` mirrors without repeating the edge (padding must be smaller than the
        dim), ``replicate`` repeats the edge, ``circular`` wraps around (padding at most
        the dim).
    value : float, optional
        Fill value of ``"constant"`` (default 0); the other modes accept only 0/None.

    Shape:
        - Input: ``(*, S_1, ..., S_k)``
        - Output: ``(*, S_1 + b_1 + a_1, ..., S_k + b_k + a_k)`` for the before/after pads
          ``b_i, a_i`` of each padded dim.

    Unlike PyTorch, ``circular`` padding that would wrap around the part left after a
    negative (cropping) pad is refused; torch reads uninitialised memory there.

    Examples
    --------
    >>> import numpy as np, convscope as cs
    >>> pad(cs.tensor(np.arange(4.0).reshape(1, 1, 4)), (2, 1), mode="reflect").tolist()
    [[[2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.0]]]
    """
    pairs, shape = _pad_rule(input.shape, pad, mode, value)
    if mode in ("reflect", "replicate"):  # torch's kernels for these take integers but not bool
        kernel_dtype("pad", input.dtype, "keep")
    attrs = {"pad": tuple(pad), "mode": mode, "value": value}
    if input.is_meta:
        return make_result("pad", None, (input,), None, shape=shape, attrs=attrs)
    x = input.data
    if mode == "constant":
        before = [lo for _, lo, _ in pairs]
        after = [hi for _, _, hi in pairs]
        out = constant_pad_array(x, before, after, 0 if value is None else value)

        def backward(g: np.ndarray) -> tuple:
            return (constant_pad_array(g, [-b for b in before], [-a for a in after]),)

        return make_result("pad", x.copy() if out is x else out, (input,), backward, attrs=attrs)

    maps = [(axis, _index_map(mode, x.shape[axis], lo, hi)) for axis, lo, hi in pairs]
    out = x
    for axis, index in maps:
        out = np.take(out, index, axis=axis)

    def backward(g: np.ndarray) -> tuple:
        for axis, index in reversed(maps):
            g = _take_adjoint(g, index, x.shape[axis], axis)
        return (g,)

    return make_result("pad", out, (input,), backward, attrs=attrs)


# --- analysis rules (see convscope.rules) ------------------------------------------------
cost_rule("pad")(lambda inputs, output, attrs: FREE)


@saved_rule("pad")
def _pad_saved(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
    """Constant padding keeps nothing but the pad widths; the other modes keep their index
    maps and read the input's shape, gathering one axis at a time."""
    if attrs["mode"] == "constant":
        return Saved()
    return Saved((0,), workspace=nbytes(output), backward_workspace=5 * nbytes(output) // 2)


@field_rule("pad")
def _pad_field(fields: Sequence[Field], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Field:
    """Padding shifts where output 0 starts; pads are given last axis first."""
    if not fields[0]:
        return fields[0]
    nd = len(fields[0])
    before = [0] * nd
    for k in range(min(len(attrs["pad"]) // 2, nd)):
        before[nd - 1 - k] = attrs["pad"][2 * k]
    return tuple(replace(a, start=a.start - b * a.jump) for a, b in zip(fields[0], before))


@size_rule("pad")
def _pad_sizes(sizes: Sequence[Sizes], inputs: Sequence[Tensor], output: Tensor,
               attrs: dict) -> tuple[Sizes, list[Constraint]]:
    """``E + before + after`` per padded dim, with :func:`_pad_rule`'s checks per mode."""
    x, mode = list(sizes[0]), attrs["mode"]
    pairs = _pairs(inputs[0].shape, attrs["pad"])
    checks = []
    if mode not in ("constant", "circular"):
        for e in x[len(x) - len(pairs) - 1:]:
            checks += at_least(e, 1, f"{mode} padding needs a non-empty input: {{size}} ≥ {{bound}}")
    for axis, lo, hi in pairs:
        e = x[axis]
        kept = e.shift(-max(-lo, 0) - max(-hi, 0))
        if mode == "constant":
            checks += at_least(kept, 0, f"padding ({lo}, {hi}) crops at most the input: {{size}} ≥ {{bound}}")
        elif mode == "circular":
            for bound in (lo, hi):
                checks += at_least(e, bound, "circular padding wraps at most once: {size} ≥ {bound}")
                checks += at_least(kept, bound, "circular padding wraps at most once: {size} ≥ {bound}")
            checks += at_least(e.shift(lo + hi), 0, "circular padding leaves {size} ≥ {bound} cells")
        else:
            if mode == "reflect":
                checks += at_least(e, max(lo, hi) + 1, "reflect padding is smaller than the input: {size} ≥ {bound}")
            checks += at_least(e.shift(lo + hi), 1, f"{mode} padding leaves {{size}} ≥ {{bound}} cells")
        x[axis] = e.shift(lo + hi)
    return tuple(x), checks
