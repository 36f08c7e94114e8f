"""Resampling: ``interpolate`` (nearest, nearest-exact, linear, bilinear, bicubic, trilinear,
area) and aliases.

Every mode but area (an adaptive average pool, as in torch) is separable: along each spatial
dim the output is an exact linear map of the input, ``out[j] = Σ_t w_t[j]·in[idx_t[j]]`` with
one tap (nearest), two (linear) or four (bicubic), whose
indices and weights follow torch's CPU forward kernels bit for bit (precision of the
coordinate arithmetic, the ``floorf`` that rounds a coordinate to float32 before flooring,
the size shortcuts). The forward gathers along each dim in turn; the backward applies the
transposed maps in reverse order, summing each tap's gradient into its source cells with a
segmented sum (the indices never decrease along a dim)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import ShapeError
from ..ops import kernel_dtype
from ..rules import (
    FREE,
    Constraint,
    Cost,
    Field,
    Saved,
    Sizes,
    at_least,
    const,
    cost_rule,
    field_rule,
    numel,
    saved_rule,
    size_rule,
)
from ..tensor import Tensor, make_result

__all__ = ["interpolate", "upsample", "upsample_bilinear", "upsample_nearest"]

# The interpolating modes (they take align_corners), with the spatial rank each needs.
_LINEAR_RANK = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}
_NEAREST = ("nearest", "nearest-exact")
_AREA = "area"
_NOT_IMPLEMENTED = ("lanczos",)
CUBIC_A = -0.75  # torch's (and Keys') cubic convolution parameter

# Taps of a per-dim map: (source index per output position, weight per output position or None).
Taps = list[tuple[np.ndarray, "np.ndarray | None"]]


# --- shape rule -----------------------------------------------------------------------------
def _spatial_args(value: Any, nd: int, name: str, kind: type, shape: tuple) -> tuple:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,) * nd
    if len(values) != nd:
        raise ShapeError(f"{name} needs {nd} entries (one per spatial dim of input {shape}), got {value!r}",
                         layer="interpolate")
    ok = (lambda v: isinstance(v, (int, np.integer))) if kind is int else (
        lambda v: isinstance(v, (int, float, np.integer, np.floating)))
    if not all(ok(v) and not isinstance(v, bool) for v in values):
        raise ShapeError(f"{name} must be {'ints' if kind is int else 'numbers'}, got {value!r}", layer="interpolate")
    return tuple(kind(v) for v in values)


def interpolate_shape(shape: tuple, size: Any, scale_factor: Any, mode: str, align_corners: bool | None,
                      recompute_scale_factor: bool | None) -> tuple[tuple[int, ...], tuple[float | None, ...]]:
    """Check an ``interpolate`` call; return the output spatial size and, per dim, the scale
    factor that enters the coordinate mapping (``None``: use input/output sizes).

    ``scale_factor`` gives ``out = floor(in·scale_factor)`` and, unless
    ``recompute_scale_factor`` is true, maps coordinates with ``1/scale_factor`` (not
    ``in/out``), as torch does.
    """
    op = "interpolate"
    if mode not in _LINEAR_RANK and mode not in (*_NEAREST, _AREA):
        known = ", ".join(("nearest", "nearest-exact", *_LINEAR_RANK, _AREA))
        raise ShapeError(f"unknown mode {mode!r}; expected one of {known}", layer=op)
    if mode not in _LINEAR_RANK and align_corners is not None:
        raise ShapeError(f"align_corners applies only to {' | '.join(_LINEAR_RANK)}, not mode {mode!r}; "
                         "leave it None", layer=op)
    if not 3 <= len(shape) <= 5:
        raise ShapeError(f"expected a 3-, 4- or 5-d input (N, C, *spatial), got shape {shape}", layer=op)
    nd = len(shape) - 2
    if mode in _LINEAR_RANK and _LINEAR_RANK[mode] != nd:
        want = _LINEAR_RANK[mode]
        hint = next(m for m, r in _LINEAR_RANK.items() if r == nd and m != "bicubic")
        raise ShapeError(f"mode {mode!r} needs a {want + 2}-d input, got a {len(shape)}-d input {shape}. "
                         f"Hint: use mode {hint!r}", layer=op)
    if (size is None) == (scale_factor is None):
        raise ShapeError("exactly one of size or scale_factor must be given, got "
                         f"{'both' if size is not None else 'neither'}", layer=op)
    if size is not None:
        if recompute_scale_factor:
            raise ShapeError("recompute_scale_factor=True is not meaningful with an explicit size", layer=op)
        out = _spatial_args(size, nd, "size", int, shape)
        scales: tuple[float | None, ...] = (None,) * nd
    else:
        factors = _spatial_args(scale_factor, nd, "scale_factor", float, shape)
        out = tuple(int(n * f) for n, f in zip(shape[2:], factors, strict=True))
        scales = (None,) * nd if recompute_scale_factor else factors
    if min(shape[2:]) <= 0:
        raise ShapeError(f"input sizes must be positive, got input {shape[2:]} and output {out}", layer=op)
    if min(out) < (0 if mode == _AREA else 1):  # area is adaptive average pooling: an empty output is one
        raise ShapeError(f"output sizes must be {'non-negative' if mode == _AREA else 'positive'}, got input "
                         f"{shape[2:]} and output {out}", layer=op)
    if shape[0] and not shape[1]:
        raise ShapeError(f"expected a non-empty input (only the batch may be empty), got shape {shape}", layer=op)
    return out, scales


# --- per-dim maps (torch's index arithmetic) --------------------------------------------------
def _opmath(dtype: np.dtype) -> type:
    """The precision torch's CPU kernels compute source coordinates in."""
    return np.float64 if dtype == np.float64 else np.float32


def _ratio(n_in: int, n_out: int, scale: float | None, op: type) -> Any:
    """torch's ``compute_scales_value``: ``1/scale_factor`` when one was given, else ``in/out``."""
    return op(1.0 / scale) if scale is not None and scale > 0 else op(n_in) / op(n_out)


def _floorf(src: np.ndarray, n_in: int) -> np.ndarray:
    """torch's ``min(floorf(src), in − 1)``: ``floorf`` rounds a double coordinate to float32 first."""
    return np.minimum(np.floor(src.astype(np.float32)).astype(np.int64), n_in - 1)


def _half_pixel_source(ratio: Any, n_out: int, op: type, clamp: bool = True) -> np.ndarray:
    """``max(ratio·(dst + ½) − ½, 0)`` as torch's compiled kernels evaluate it: a fused
    multiply-add, i.e. one rounding (exact in float64 for float32 ratios, then rounded).
    Bicubic (``clamp=False``) keeps the negative coordinates at the first output cells."""
    src = (np.float64(ratio) * (np.arange(n_out) + 0.5) - 0.5).astype(op)
    return np.maximum(src, op(0)) if clamp else src


def _nearest_taps(mode: str, n_in: int, n_out: int, scale: float | None, dtype: np.dtype,
                  size_shortcuts: bool) -> Taps:
    """torch's CPU forward: ``floor(dst·ratio)`` (nearest) or ``floor(max((dst + ½)·ratio − ½, 0) + ½)``
    (nearest-exact) in the input's precision. torch's 2-d nearest forward (``size_shortcuts``)
    copies when ``out == in`` and takes ``dst // 2`` when ``out == 2·in``, even where a scale
    factor would map differently; its 1-d and 3-d forwards do not.
    """
    j = np.arange(n_out)
    if mode == "nearest" and size_shortcuts and n_out in (n_in, 2 * n_in):
        return [(j if n_out == n_in else j >> 1, None)]
    op = _opmath(dtype)
    ratio = _ratio(n_in, n_out, scale, op)
    if mode == "nearest":
        return [(_floorf(ratio * j.astype(op), n_in), None)]
    src = _half_pixel_source(ratio, n_out, op)
    return [(_floorf(src.astype(np.float64) + 0.5, n_in), None)]


def _source_index_and_lambda(n_in: int, n_out: int, scale: float | None, align_corners: bool, dtype: np.dtype,
                             cubic: bool) -> tuple[np.ndarray, np.ndarray]:
    """torch's ``area_pixel_compute_source_index`` and ``guard_index_and_lambda`` in the
    input's precision: per output cell the source cell left of its coordinate and the
    fraction past it, in [0, 1]."""
    j = np.arange(n_out)
    op = dtype.type
    if align_corners:
        ratio = op(n_in - 1) / op(n_out - 1) if n_out > 1 else op(0)
        src = ratio * j.astype(dtype)
    else:
        src = _half_pixel_source(_ratio(n_in, n_out, scale, op), n_out, op, clamp=not cubic)
    idx = _floorf(src, n_in)
    return idx, np.clip(src - idx.astype(dtype), 0, 1).astype(dtype)


def _linear_taps(n_in: int, n_out: int, scale: float | None, align_corners: bool, dtype: np.dtype) -> Taps:
    """torch's ``compute_source_index_and_lambda``: two taps, the right one clamped to the input."""
    j = np.arange(n_out)
    if n_out == n_in:  # torch copies, whatever the scale factor says
        return [(j, np.ones(n_out, dtype)), (j, np.zeros(n_out, dtype))]
    idx0, lam1 = _source_index_and_lambda(n_in, n_out, scale, align_corners, dtype, cubic=False)
    idx1 = idx0 + (idx0 < n_in - 1)
    return [(idx0, (1 - lam1).astype(dtype)), (idx1, lam1)]


def cubic_weights(t: np.ndarray, a: float = CUBIC_A) -> list[np.ndarray]:
    """Keys' cubic convolution weights of the four cells at offsets −1, 0, 1, 2 from the one
    left of a coordinate that lies ``t`` (in [0, 1]) past it, in ``t``'s precision, as torch's
    ``get_cubic_upsample_coefficients`` computes them; they sum to 1."""
    a = t.dtype.type(a)

    def near(x: np.ndarray) -> np.ndarray:  # |x| ≤ 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: np.ndarray) -> np.ndarray:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    rest = 1 - t
    return [far(t + 1), near(t), near(rest), far(rest + 1)]


def _cubic_taps(n_in: int, n_out: int, scale: float | None, align_corners: bool, dtype: np.dtype) -> Taps:
    """torch's bicubic ``compute_indices_weights_cubic``: four taps around the coordinate,
    their indices clamped to the input (the border cells repeat); no copy when sizes agree."""
    idx, t = _source_index_and_lambda(n_in, n_out, scale, align_corners, dtype, cubic=True)
    return [(np.clip(idx + k - 1, 0, n_in - 1), w.astype(dtype)) for k, w in enumerate(cubic_weights(t))]


def _apply(x: np.ndarray, taps: Taps, axis: int) -> np.ndarray:
    shape = [1] * x.ndim
    shape[axis] = -1
    out = None
    for idx, w in taps:
        part = x.take(idx, axis=axis)
        if w is not None:
            part = part * w.reshape(shape)
        out = part if out is None else out + part
    return out


def _segment_sum(g: np.ndarray, idx: np.ndarray, axis: int, n_in: int) -> np.ndarray:
    """Adjoint of ``take(idx, axis)`` for non-decreasing ``idx``: sum each run into its cell."""
    cells, starts = np.unique(idx, return_index=True)
    shape = list(g.shape)
    shape[axis] = n_in
    out = np.zeros(shape, g.dtype)
    index = [slice(None)] * g.ndim
    index[axis] = cells
    out[tuple(index)] = np.add.reduceat(g, starts, axis=axis)
    return out


def _apply_transpose(g: np.ndarray, taps: Taps, axis: int, n_in: int) -> np.ndarray:
    shape = [1] * g.ndim
    shape[axis] = -1
    out = None
    for idx, w in taps:
        part = _segment_sum(g if w is None else g * w.reshape(shape), idx, axis, n_in)
        out = part if out is None else out + part
    return out


def resize_maps(shape: tuple, dtype: np.dtype, out_size: tuple[int, ...], scales: tuple[float | None, ...],
                mode: str, align_corners: bool | None) -> list[tuple[int, int, Taps]]:
    """Per spatial axis ``(axis, n_in, taps)``: the exact maps the forward applies."""
    maps = []
    for axis, (n_in, n_out, scale) in enumerate(zip(shape[2:], out_size, scales, strict=True), 2):
        if mode in _NEAREST:
            taps = _nearest_taps(mode, n_in, n_out, scale, dtype, len(shape) == 4)
        else:
            taps = (_cubic_taps if mode == "bicubic" else _linear_taps)(n_in, n_out, scale, bool(align_corners), dtype)
        maps.append((axis, n_in, taps))
    return maps


# --- public ops -----------------------------------------------------------------------------
def interpolate(input: Tensor, size: int | Sequence[int] | None = None,  # noqa: A002 - torch name
                scale_factor: float | Sequence[float] | None = None, mode: str = "nearest",
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                antialias: bool = False) -> Tensor:
    """Resample the spatial dims to ``size`` or by ``scale_factor``.

    Modes: ``"nearest"`` (torch's legacy rule ``src = floor(dst·scale)``), ``"nearest-exact"``
    (``floor((dst + 0.5)·scale)``), ``"linear"``/``"bilinear"``/``"trilinear"`` for 3-, 4-
    and 5-d inputs, with ``align_corners`` (``src = dst·(in−1)/(out−1)``) or without
    (``src = max((dst + 0.5)·scale − 0.5, 0)``), ``"bicubic"`` for 4-d inputs (the same
    coordinates, not clamped at 0; four cells per axis weighted by :func:`cubic_weights`, the
    border cells repeated: unlike linear modes it can overshoot the input's range), and
    ``"area"`` (:func:`~convscope.functional.adaptive_avg_pool2d` and its 1-d and 3-d
    siblings to the output size, as torch runs it). ``scale`` is ``1/scale_factor`` when a
    scale factor is given (and not recomputed), else ``in/out``.

    Shape:
        - Input: ``(N, C, *in)`` with 1–3 spatial dims.
        - Output: ``(N, C, *out)`` with ``out = size`` or ``floor(in·scale_factor)``.

    Unlike PyTorch, ``antialias=True`` and the mode ``lanczos`` are not implemented
    (NotImplementedError), and the gradient is always the exact transpose of the forward.
    torch's CPU nearest backward recomputes the indices with its legacy float32 rule and size
    shortcuts, so for some scale factors (e.g. 1-d, in=4, scale_factor=1.17) its gradient
    reaches cells the forward never read; its bicubic backward copies the gradient when the
    output has the input's size, though its forward resampled by a scale factor ≠ 1 (2-d,
    in=(1, 2), scale_factor=(1.49, 1.08)).
    """
    op = "interpolate"
    if mode in _NOT_IMPLEMENTED:
        raise NotImplementedError(f"{op}: mode {mode!r} is not implemented in convscope; use nearest, "
                                  "nearest-exact, linear, bilinear, bicubic, trilinear or area")
    if antialias:
        if mode in ("bilinear", "bicubic") and input.ndim == 4:
            raise NotImplementedError(f"{op}: antialias=True is not implemented in convscope")
        raise ShapeError(f"antialias applies only to bilinear/bicubic/lanczos on 4-d inputs, got mode {mode!r} "
                         f"and a {input.ndim}-d input", layer=op)
    out_size, scales = interpolate_shape(input.shape, size, scale_factor, mode, align_corners,
                                         recompute_scale_factor)
    if (mode in _LINEAR_RANK or mode == _AREA) and input.dtype.kind != "f":
        raise ShapeError(f"mode {mode!r} needs a floating-point input, got {input.dtype}", layer=op)
    kernel_dtype(op, input.dtype, "uint8")  # nearest modes: torch has a uint8 kernel, none for other integers
    if mode == _AREA:
        from .pool import adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d

        return (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d)[len(out_size) - 1](input, out_size)
    attrs = {"size": out_size, "mode": mode, "align_corners": align_corners,
             "scale_factor": None if scale_factor is None else _spatial_args(scale_factor, len(out_size),
                                                                              "scale_factor", float, input.shape),
             "scales": scales}
    shape = input.shape[:2] + out_size
    if input.is_meta:
        return make_result(op, None, (input,), None, shape=shape, attrs=attrs)
    maps = resize_maps(input.shape, input.dtype, out_size, scales, mode, align_corners)
    out = input.data
    for axis, _, taps in maps:
        out = _apply(out, taps, axis)

    def backward(g: np.ndarray) -> tuple:
        for axis, n_in, taps in reversed(maps):
            g = _apply_transpose(g, taps, axis, n_in)
        return (g,)

    return make_result(op, out, (input,), backward, attrs=attrs)


def upsample(input: Tensor, size: int | Sequence[int] | None = None,  # noqa: A002 - torch name
             scale_factor: float | Sequence[float] | None = None, mode: str = "nearest",
             align_corners: bool | None = None) -> Tensor:
    """Deprecated torch alias of :func:`interpolate`."""
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input: Tensor, size: int | Sequence[int] | None = None,  # noqa: A002 - torch name
                     scale_factor: float | Sequence[float] | None = None) -> Tensor:
    """Deprecated torch alias: ``interpolate(..., mode="nearest")``."""
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input: Tensor, size: int | Sequence[int] | None = None,  # noqa: A002 - torch name
                      scale_factor: float | Sequence[float] | None = None) -> Tensor:
    """Deprecated torch alias: ``interpolate(..., mode="bilinear", align_corners=True)``."""
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)



# --- analysis rules (see convscope.rules) ------------------------------------------------
@cost_rule("interpolate")
def _interpolate_cost(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Cost:
    """Nearest modes copy; linear modes blend 2 neighbours per axis, bicubic 4 (a
    multiply-add each)."""
    if attrs["mode"] in _NEAREST:
        return FREE
    n, axes, taps = numel(output.shape), len(attrs["size"]), _tap_count(attrs["mode"])
    macs = n * taps * axes
    return Cost(macs, 2 * macs, f"{n:,} outputs × {axes} axes × {taps} taps = {macs:,}")


def _tap_count(mode: str) -> int:
    return 1 if mode in _NEAREST else 4 if mode == "bicubic" else 2


@field_rule("interpolate")
def _interpolate_field(fields: Sequence[Field], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Field:
    """From the forward's own taps: output ``o`` reads the cells between its first and last
    tap. A resize to a fixed ``size`` steps ``in/out`` cells, which depends on the input size."""
    if fields[0] is None:
        return None
    x = inputs[0]
    maps = resize_maps(x.shape, x.dtype, attrs["size"], attrs["scales"], attrs["mode"], attrs["align_corners"])
    fixed = attrs["scale_factor"] is None
    return tuple(a.cells(np.min([i for i, _ in taps], axis=0), np.max([i for i, _ in taps], axis=0),
                         Fraction(n_in, len(taps[0][0])), fixed) for a, (_, n_in, taps) in zip(fields[0], maps))


@saved_rule("interpolate")
def _interpolate_saved(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
    """The closure keeps only the per-axis tap maps (one index, and for linear and bicubic
    modes one weight, per tap and output position along each axis). The passes over the axes
    make intermediate arrays; a weighted pass also holds a gathered tap and its weighted copy."""
    x = inputs[0]
    nd = len(attrs["size"])
    taps = sum(attrs["size"]) * (8 if attrs["mode"] in _NEAREST else _tap_count(attrs["mode"]) * (8 + x.dtype.itemsize))
    forward, current = [], list(x.shape)
    for k, n in enumerate(attrs["size"]):
        current[x.ndim - nd + k] = n
        forward.append(numel(current))
    backward, current = [], list(output.shape)
    for k in reversed(range(nd)):
        current[x.ndim - nd + k] = x.shape[x.ndim - nd + k]
        backward.append(numel(current))
    item, between = x.dtype.itemsize, max([*forward[:-1], *backward[:-1]], default=0)
    if attrs["mode"] in _NEAREST:
        return Saved(extra=(("tap maps", taps),), workspace=max(forward[:-1], default=0) * item,
                     backward_workspace=int(1.5 * max(backward[:-1], default=0) * item))
    return Saved(extra=(("tap maps", taps),), workspace=(2 * max(forward) + between) * item,
                 backward_workspace=(2 * numel(output.shape) + max(backward[:-1], default=0)) * item)


@size_rule("interpolate")
def _interpolate_sizes(sizes: Sequence[Sizes], inputs: Sequence[Tensor], output: Tensor,
                       attrs: dict) -> tuple[Sizes, list[Constraint]]:
    """A given ``size`` is constant; a ``scale_factor`` gives ``⌊E·f⌋`` (``f·E`` for whole f)."""
    x, factors = sizes[0], attrs["scale_factor"]
    nd = len(attrs["size"])
    spatial = [const(o) for o in attrs["size"]] if factors is None else [e.scale(f) for e, f in zip(x[2:], factors)]
    checks = [c for e in x[2:] for c in at_least(e, 1, "non-empty input {size} ≥ {bound}")]
    checks += [c for o in spatial for c in at_least(o, 1, "output {size} ≥ {bound}")]
    return (*x[:-nd], *spatial), checks
