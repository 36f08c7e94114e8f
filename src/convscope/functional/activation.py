"""Activations with ``torch.nn.functional`` names, signatures and defaults.

Element-wise activations are built on :func:`convscope.ops.unary`: the forward and the
gradient ``(g, x, out) -> dL/dx`` sit side by side. Gradients at the kinks follow torch's
kernels exactly (``relu'(0) = 0``, ``relu6``/``hardtanh`` pass no gradient at either bound,
``hardswish'(-3) = 0`` and ``hardswish'(3) = 1``, ``leaky_relu'(0)`` is the negative slope,
``elu'(0) = alpha``).

Shape:
    - input: any shape ``(*)``; output: the same shape (softmax normalises along ``dim``)

Unlike PyTorch, ``inplace=True`` is accepted for signature compatibility and ignored: the
result is a new tensor and the input keeps its values.
"""
# ruff: noqa: A002 - parameters keep torch's name ``input`` so keyword calls port unchanged

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import ShapeError
from ..ops import astype, kernel_dtype, unary
from ..rules import (
    NO_FIELD,
    Field,
    Saved,
    cost_rule,
    elementwise_saved,
    field_rule,
    per_element,
    same_field,
    saved_rule,
)
from ..tensor import Tensor, make_result
from ._special import erf as _erf
from .dtypes import check_dtypes

__all__ = [
    "celu", "elu", "gelu", "hardsigmoid", "hardswish", "hardtanh", "leaky_relu", "log_softmax", "logsigmoid",
    "mish", "prelu", "relu", "relu6", "selu", "sigmoid", "silu", "softmax", "softplus", "tanh",
]

_SQRT1_2 = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)  # the standard normal pdf at 0
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_KAPPA = 0.044715
SELU_ALPHA = 1.6732632423543772848170429916717  # the self-normalising constants (also ONNX Selu's)
SELU_SCALE = 1.0507009873554804934193349852946
_ONE_SIXTH_F32 = float(np.float32(1.0) / np.float32(6.0))


# Element-wise kernels below avoid two slow NumPy loops: ``np.where`` on a data-dependent
# mask (branchy: ~10× slower than arithmetic, see :func:`_select`) and ``np.maximum`` /
# ``np.minimum`` with a scalar operand (unvectorised: 3.4× slower than ``np.clip``); and they
# work in place, in one or two arrays, rather than in a temporary per operation (a float32 sigmoid
# of 8×64×56²: 12.6 → 3.9 ms; torch's one fused pass takes 0.35).


def _work(a: np.ndarray) -> np.ndarray:
    """A new array of ``a``'s shape to compute into: ``a``'s float dtype (float64 for integers,
    as NumPy's functions would give), an array even for a 0-d ``a`` (``out=`` needs one)."""
    return np.empty(a.shape, a.dtype if a.dtype.kind == "f" else np.float64)


def _select(mask: np.ndarray, x: Any, y: Any, dtype: Any, overwrite_x: bool = False) -> np.ndarray:
    """``np.where(mask, x, y)`` in ``dtype``, bit for bit (NaN payloads and signed zeros
    included), without ``np.where``'s branchy loop: ``((x ^ y) & m) ^ y`` on the bits, ``m``
    all ones where ``mask`` (a half-random mask over 8×64×56² float32: np.where 5.8 ms, this
    1.2). ``overwrite_x``: ``x`` is the caller's array of the result's shape, no longer needed
    (it then holds ``x ^ y``: one output-sized temporary fewer)."""
    dtype = np.dtype(dtype)
    bits = np.dtype(f"i{dtype.itemsize}")
    xb, yb = (np.asarray(v, dtype).view(bits) for v in (x, y))
    m = np.asarray(mask).astype(bits)
    np.negative(m, out=m)
    np.bitwise_and(np.bitwise_xor(xb, yb, out=xb if overwrite_x else None), m, out=m)
    return np.bitwise_xor(m, yb, out=m).view(dtype)


def _neg_exp_abs(a: np.ndarray) -> np.ndarray:
    """``exp(−|a|)`` into a new array (:func:`_work`)."""
    e = np.abs(a, out=_work(a))
    np.negative(e, out=e)
    return np.exp(e, out=e)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    """Logistic function without overflow: ``exp`` only ever sees ``-|a|``;
    ``1 / (1 + e)`` where ``a >= 0``, else ``e / (1 + e)``."""
    e = _neg_exp_abs(a)
    d = np.add(e, 1, out=_work(e))
    np.divide(e, d, out=e)
    np.divide(1, d, out=d)
    return _select(a >= 0, d, e, e.dtype, overwrite_x=True)


def _min0(a: np.ndarray) -> np.ndarray:
    """``min(a, 0)`` into a new array (−0.0 stays −0.0, as torch's branches keep it), by ``np.clip``."""
    out = _work(a)
    np.clip(a, -np.inf, 0, out=out)  # (its return value is a scalar for a scalar ``a``)
    return out


def _log_sigmoid(a: np.ndarray) -> np.ndarray:
    """``log(sigmoid(a)) = min(a, 0) − log1p(exp(−|a|))``, finite for any ``a``."""
    e = _neg_exp_abs(a)
    np.log1p(e, out=e)
    return np.subtract(_min0(a), e, out=e)


def _zero_where(mask: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``np.where(mask, 0, g)``, bit for bit, without ``np.where``'s branchy loop (on the
    half-random mask of a ReLU it is ~10× slower: 470 µs against 40 µs for 128k float32):
    ``g``'s bits ANDed with all ones where kept and with zeros (+0.0) where masked."""
    bits = np.dtype(f"i{g.itemsize}")
    keep = np.asarray(mask).astype(bits)  # an array also for a 0-d input's NumPy-scalar mask
    keep -= 1  # 0 where masked, -1 (every bit set) where kept
    return np.bitwise_and(g.view(bits), keep, out=keep).view(g.dtype)


def _relu(a: np.ndarray) -> np.ndarray:
    """``max(a, 0)`` with torch's bits: NaN passes, −0.0 stays −0.0. For floats, NumPy's clip:
    ``np.maximum(a, 0)`` runs an unvectorised loop for its scalar operand (a float32 ReLU of
    64×112² took 295 µs, the clip 87 µs) and turns −0.0 into +0.0."""
    return np.clip(a, 0, np.inf) if a.dtype.kind == "f" else np.maximum(a, 0)


def _leaky(a: np.ndarray, slope: float) -> np.ndarray:
    """``a`` where ``a > 0``, else ``slope·a`` (NaN passes): for a non-zero finite slope the
    larger of ``a`` and ``slope·a`` (up to 1) or the smaller (above), ~10× faster than
    ``np.where`` on a random mask; a zero slope would take ``inf·0 = NaN`` for ``a = inf``."""
    if a.dtype.kind != "f" or slope == 0 or not math.isfinite(slope):
        return np.where(a > 0, a, a * slope)
    scaled = np.multiply(a, slope, out=_work(a))
    return (np.maximum if slope <= 1 else np.minimum)(a, scaled, out=scaled)


# --- piecewise-linear -----------------------------------------------------------------------
def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """``max(x, 0)``; the gradient at 0 is 0 (NaN passes through, as in torch)."""
    return unary("relu", input, _relu, lambda g, a, o: _zero_where(o <= 0, g))


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    """Clip to ``[min_val, max_val]``; no gradient at or beyond either bound."""
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val {min_val} cannot be greater than max_val {max_val}")
    if input.dtype.kind == "u" and min(min_val, max_val) < 0:
        raise ShapeError(f"cannot clip an unsigned {input.dtype} input to negative limits [{min_val}, {max_val}], "
                         "as torch. Hint: convert the input with .float() or .long()", layer="hardtanh")
    return unary("hardtanh", input, lambda a: np.clip(a, min_val, max_val),
                 lambda g, a, o: _zero_where((a <= min_val) | (a >= max_val), g),
                 attrs={"min_val": min_val, "max_val": max_val})


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """``hardtanh(x, 0, 6)``: no gradient at 0 or 6."""
    return hardtanh(input, 0.0, 6.0)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """``x`` for ``x > 0``, else ``negative_slope·x``; the gradient at 0 is the slope."""
    return unary("leaky_relu", input, lambda a: _leaky(a, negative_slope),
                 lambda g, a, o: _select(~(a > 0), g * negative_slope, g, g.dtype, overwrite_x=True),
                 attrs={"negative_slope": negative_slope}, integers="refuse")


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """``x`` for ``x > 0``, else ``weight·x``, with a learned slope per channel (dim 1) or one
    for all; the gradient at 0 is the slope, as in torch.

    Shape:
        - Input: ``(N, C, *)``, channels on dim 1 (as in torch, also for a 2-d input; a 1-d
          input has one channel); weight: ``(1,)`` or ``(C,)``.
        - Output: the same shape as the input.
    """
    op = "prelu"
    channels = input.shape[1] if input.ndim >= 2 else 1
    if weight.ndim != 1 or weight.shape[0] not in (1, channels):
        raise ShapeError(f"weight of shape {weight.shape} holds neither 1 slope nor one per channel: the input "
                         f"{input.shape} has {channels} channel{'s' if channels != 1 else ''} (dim 1)", layer=op)
    check_dtypes(op, input, weight=weight)
    if input.is_meta or weight.is_meta:
        return make_result(op, None, (input, weight), None, shape=input.shape, dtype=input.dtype)
    x = input.data
    slopes = weight.data.reshape((-1,) + (1,) * (x.ndim - 2)) if weight.shape[0] > 1 else weight.data[0]
    # NaN takes the slope branch (slope·NaN is NaN, as in torch); the backward remakes the mask
    out = np.multiply(x, slopes, where=~(x > 0), out=x.copy())

    def backward(g: np.ndarray) -> tuple:
        negative = ~(x > 0)
        gx = np.multiply(g, slopes, where=negative, out=g.copy())
        gw = np.multiply(g, x, where=negative, out=np.zeros_like(g))
        per_slope = gw.sum() if weight.shape[0] == 1 else gw.sum(axis=tuple(i for i in range(x.ndim) if i != 1))
        return gx, np.asarray(per_slope, weight.dtype).reshape(weight.shape)

    return make_result(op, out, (input, weight), backward)


def _relu6_shifted(a: np.ndarray) -> np.ndarray:
    """``relu6(a + 3)`` into a new array (:func:`_work`): the hard sigmoid's and hard swish's
    common factor, before their own operations (each rounds in torch's order)."""
    t = np.add(a, 3, out=_work(a))
    np.clip(t, 0, 6, out=t)
    return t


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """``relu6(x + 3) / 6``; the gradient is 1/6 strictly inside ``(-3, 3)``, else 0.

    Like torch, the gradient's 1/6 is the float32 constant ``1.0f / 6.0f`` in every dtype
    (a relative difference of 3e-8 from the exact 1/6 in float64).
    """
    def fwd(a: np.ndarray) -> np.ndarray:
        t = _relu6_shifted(a)
        return np.divide(t, 6, out=t)

    def grad(g: np.ndarray, a: np.ndarray, o: np.ndarray) -> np.ndarray:
        inside = (a > -3) & (a < 3)
        return _zero_where(~inside, np.multiply(g, _ONE_SIXTH_F32, out=_work(g)))

    return unary("hardsigmoid", input, fwd, grad, integers="refuse")


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """``x · relu6(x + 3) / 6``; torch's gradient is 0 for ``x <= -3``, 1 for ``x >= 3``."""
    def fwd(a: np.ndarray) -> np.ndarray:
        t = _relu6_shifted(a)
        np.multiply(a, t, out=t)
        return np.divide(t, 6, out=t)

    def grad(g: np.ndarray, a: np.ndarray, o: np.ndarray) -> np.ndarray:
        slope = np.divide(a, 3, out=_work(a))
        slope += 0.5
        np.multiply(g, slope, out=slope)
        return _zero_where(a <= -3, _select(a < 3, slope, g, slope.dtype, overwrite_x=True))

    return unary("hardswish", input, fwd, grad, integers="refuse")


# --- exponential family -----------------------------------------------------------------------
def _elu(op: str, x: Tensor, alpha: float, scale: float, input_scale: float,
         grad_input_scale: float | None = None) -> Tensor:
    """torch's shared ELU kernel: ``scale·x`` for ``x > 0``, else ``alpha·(exp(input_scale·x) − 1)``,
    where ``alpha`` already includes ``scale`` (as in ATen). The ``x <= 0`` branch owns 0. The
    backward uses ``grad_input_scale`` for ``input_scale`` where torch's derivative does."""
    grad_scale = input_scale if grad_input_scale is None else grad_input_scale

    def fwd(a: np.ndarray) -> np.ndarray:
        negative = _min0(a)
        negative *= input_scale
        np.expm1(negative, out=negative)
        negative *= alpha
        return _select(a <= 0, negative, a * scale, negative.dtype, overwrite_x=True)

    def grad(g: np.ndarray, a: np.ndarray, o: np.ndarray) -> np.ndarray:  # NaN takes the positive branch
        negative = _min0(a)
        negative *= grad_scale
        np.exp(negative, out=negative)
        np.multiply(g * (grad_scale * alpha), negative, out=negative)
        return _select(a <= 0, negative, g * scale, negative.dtype, overwrite_x=True)

    return unary(op, x, fwd, grad, attrs={"alpha": alpha, "scale": scale, "input_scale": input_scale},
                 integers="refuse")


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """``x`` for ``x > 0``, else ``alpha·(exp(x) − 1)``; the gradient at 0 is ``alpha``."""
    return _elu("elu", input, alpha, 1.0, 1.0)


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """``scale · elu(x, alpha)`` with the self-normalising constants."""
    return _elu("selu", input, SELU_ALPHA * SELU_SCALE, SELU_SCALE, 1.0)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """``x`` for ``x > 0``, else ``alpha·(exp(x / alpha) − 1)``."""
    if alpha == 0:
        raise ValueError("celu: alpha 0 is not allowed (the negative branch divides by alpha)")
    # torch's derivative of celu divides by alpha rounded to float32 (derivatives.yaml:
    # ``1.0/alpha.toFloat()``), the forward by alpha itself: float64 gradients differ by ~1e-8.
    return _elu("celu", input, alpha, 1.0, 1.0 / alpha, 1.0 / float(np.float32(alpha)))


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """``log(1 + exp(beta·x)) / beta``, linear (``x``) where ``beta·x > threshold``."""
    def fwd(a: np.ndarray) -> np.ndarray:
        z = a * beta
        soft = _work(z)
        np.clip(z, -np.inf, threshold, out=soft)
        np.exp(soft, out=soft)
        np.log1p(soft, out=soft)
        soft /= beta
        return _select(~(z > threshold), soft, a, soft.dtype, overwrite_x=True)  # (not z <= threshold: NaN)

    def grad(g: np.ndarray, a: np.ndarray, o: np.ndarray) -> np.ndarray:
        z = a * beta
        soft = _sigmoid(z)
        np.multiply(g, soft, out=soft)
        return _select(~(z > threshold), soft, g, soft.dtype, overwrite_x=True)

    return unary("softplus", input, fwd, grad, attrs={"beta": beta, "threshold": threshold}, integers="refuse")


def sigmoid(input: Tensor) -> Tensor:
    """``1 / (1 + exp(−x))``, computed without overflow."""
    return unary("sigmoid", input, _sigmoid, lambda g, a, o: g * (1 - o) * o, integers="float")


def logsigmoid(input: Tensor) -> Tensor:
    """``log(sigmoid(x))``, finite for inputs of any magnitude."""
    return unary("logsigmoid", input, _log_sigmoid, lambda g, a, o: g * _sigmoid(-a), integers="refuse")


def tanh(input: Tensor) -> Tensor:
    return unary("tanh", input, np.tanh, lambda g, a, o: g * (1 - o * o), integers="float")


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """``x · sigmoid(x)`` (swish)."""
    def fwd(a: np.ndarray) -> np.ndarray:
        s = _sigmoid(a)
        return np.multiply(a, s, out=s)

    def grad(g: np.ndarray, a: np.ndarray, o: np.ndarray) -> np.ndarray:
        s = _sigmoid(a)
        t = np.subtract(1, s, out=_work(s))
        np.multiply(a, t, out=t)
        t += 1
        np.multiply(g, s, out=s)
        return np.multiply(s, t, out=s)

    return unary("silu", input, fwd, grad, integers="refuse")


def _tanh_softplus(a: np.ndarray) -> np.ndarray:
    """``tanh(log(1 + exp(x)))``, into a new array. Past x = 20 it is 1 to the last bit in
    float32 and float64, so ``exp`` sees at most 20 (it would overflow past 709)."""
    t = _work(a)
    np.minimum(a, 20, out=t)
    np.exp(t, out=t)
    np.log1p(t, out=t)
    return np.tanh(t, out=t)


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """``x · tanh(softplus(x))`` (Misra 2019; YOLOv4's activation), with the derivative
    ``tanh(sp) + x·sigmoid(x)·(1 − tanh²(sp))`` as torch writes it."""
    def fwd(a: np.ndarray) -> np.ndarray:
        t = _tanh_softplus(a)
        return np.multiply(a, t, out=t)

    def grad(g: np.ndarray, a: np.ndarray, o: np.ndarray) -> np.ndarray:
        t = _tanh_softplus(a)
        s = _sigmoid(a)
        np.multiply(s, a, out=s)
        u = np.multiply(t, t, out=_work(t))
        np.subtract(1, u, out=u)
        np.multiply(s, u, out=s)
        s += t
        return np.multiply(g, s, out=s)

    return unary("mish", input, fwd, grad, integers="refuse")


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """``x · Φ(x)`` with the exact normal CDF (``approximate="none"``) or torch's tanh form
    ``0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`` (``approximate="tanh"``)."""
    if approximate == "none":
        def fwd(a: np.ndarray) -> np.ndarray:
            return a * 0.5 * (1 + _erf(a * _SQRT1_2))

        def grad(g: np.ndarray, a: np.ndarray, o: np.ndarray) -> np.ndarray:
            cdf = 0.5 * (1 + _erf(a * _SQRT1_2))
            return g * (cdf + a * np.exp(-0.5 * a * a) * _INV_SQRT_2PI)
    elif approximate == "tanh":
        def inner(a: np.ndarray) -> np.ndarray:
            return _SQRT_2_OVER_PI * (a + _GELU_TANH_KAPPA * a * a * a)

        def fwd(a: np.ndarray) -> np.ndarray:
            return 0.5 * a * (1 + np.tanh(inner(a)))

        def grad(g: np.ndarray, a: np.ndarray, o: np.ndarray) -> np.ndarray:
            t = np.tanh(inner(a))
            d_inner = _SQRT_2_OVER_PI * (1 + 3 * _GELU_TANH_KAPPA * a * a)
            return g * (0.5 * (1 + t) + 0.5 * a * (1 - t * t) * d_inner)
    else:
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return unary("gelu", input, fwd, grad, attrs={"approximate": approximate}, integers="refuse")


# --- softmax ----------------------------------------------------------------------------------
def _softmax_dim(op: str, shape: tuple, dim: int | None) -> int:
    """Normalise ``dim`` (a 0-d tensor accepts 0 and -1, as in torch)."""
    if dim is None:
        legacy = 0 if len(shape) in (0, 1, 3) else 1
        raise ValueError(f"{op}: pass dim explicitly; dim=None is torch's deprecated implicit choice "
                         f"(it would pick dim {legacy} for a {len(shape)}-d input)")
    rank = max(len(shape), 1)
    if not -rank <= dim < rank:
        raise ShapeError(f"dim {dim} is out of range for a {len(shape)}-d input of shape {shape}", layer=op)
    return dim % rank


def _along(
    op: str,
    input: Tensor,
    dim: int | None,
    dtype: Any,
    fwd: Callable[[np.ndarray, int], np.ndarray],
    grad: Callable[[np.ndarray, np.ndarray, int], np.ndarray],
) -> Tensor:
    """An op that normalises along one dim: ``fwd(x, axis)`` and ``grad(g, out, axis) -> dL/dx``."""
    axis = _softmax_dim(op, input.shape, dim)
    x = input if dtype is None else astype(input, dtype)
    kernel_dtype(op, x.dtype)
    if x.is_meta:
        return make_result(op, None, (x,), None, shape=x.shape, dtype=x.dtype, attrs={"dim": axis})
    flat = x.data.reshape(x.shape or (1,))  # a 0-d input normalises as one element
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # ±inf/nan rows give nan, as in torch
        out = fwd(flat, axis)

    def backward(g: np.ndarray) -> tuple:
        return (grad(g.reshape(out.shape), out, axis).reshape(x.shape),)

    return make_result(op, out.reshape(x.shape), (x,), backward, attrs={"dim": axis})


def _shifted(a: np.ndarray, axis: int) -> np.ndarray:
    """``a − max(a)`` along ``axis``, so ``exp`` cannot overflow."""
    return a - np.max(a, axis=axis, keepdims=True, initial=-np.inf)


def softmax(input: Tensor, dim: int | None = None, *, dtype: Any = None) -> Tensor:
    """``exp(x) / Σ exp(x)`` along ``dim``, stable for inputs of any magnitude.

    ``dtype`` casts the input first (as torch's ``dtype=``). Unlike PyTorch, ``dim=None``
    raises instead of guessing a dim with a deprecation warning.
    """
    def fwd(a: np.ndarray, axis: int) -> np.ndarray:
        e = np.exp(_shifted(a, axis))
        return e / e.sum(axis=axis, keepdims=True)

    def grad(g: np.ndarray, o: np.ndarray, axis: int) -> np.ndarray:
        return o * (g - (g * o).sum(axis=axis, keepdims=True))

    return _along("softmax", input, dim, dtype, fwd, grad)


def log_softmax(input: Tensor, dim: int | None = None, *, dtype: Any = None) -> Tensor:
    """``x − log Σ exp(x)`` along ``dim``, computed as ``(x − max) − log Σ exp(x − max)``.

    Unlike PyTorch, ``dim=None`` raises instead of guessing a dim.
    """
    def fwd(a: np.ndarray, axis: int) -> np.ndarray:
        s = _shifted(a, axis)
        return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))

    def grad(g: np.ndarray, o: np.ndarray, axis: int) -> np.ndarray:
        return g - np.exp(o) * g.sum(axis=axis, keepdims=True)

    return _along("log_softmax", input, dim, dtype, fwd, grad)


# --- analysis rules (see convscope.rules) ------------------------------------------------
_ELEMENTWISE = ("relu", "hardtanh", "leaky_relu", "prelu", "hardsigmoid", "hardswish", "elu", "selu", "celu",
                "softplus", "sigmoid", "logsigmoid", "tanh", "silu", "mish", "gelu")
cost_rule(*_ELEMENTWISE)(per_element(1, "one activation each"))
cost_rule("softmax", "log_softmax")(per_element(3, "exp, sum, divide"))
field_rule(*_ELEMENTWISE, channels=True)(same_field)


@field_rule("softmax", "log_softmax")
def _softmax_field(fields: Sequence[Field], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Field:
    """Normalising along a spatial dim (after batch and channel) mixes every position."""
    return None if fields[0] is not NO_FIELD and attrs["dim"] >= 2 else same_field(fields, inputs, output, attrs)

# Every backward closure here keeps the input and the output (``unary``/``_along`` capture
# both); the scratch counts are the output-sized temporaries of the NumPy expressions above,
# measured (tests/test_memory.py checks them).
saved_rule("relu", "hardtanh")(elementwise_saved(backward=0.25))  # a bool mask (NumPy reuses temporaries)


@saved_rule("leaky_relu")
def _leaky_saved(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
    """:func:`_leaky` writes into ``slope·x`` (no scratch), except with a zero slope (then
    ``np.where``: ``slope·x`` and a mask, as in the backward) or a non-float input."""
    slope = attrs["negative_slope"]
    forward = 0.0 if slope != 0 and math.isfinite(slope) and np.dtype(output.dtype).kind == "f" else 1.25
    return elementwise_saved(forward=forward, backward=1.25)(inputs, output, attrs)


saved_rule("prelu")(elementwise_saved(inputs=(0, 1), output=False, forward=0.25, backward=1.25))
saved_rule("hardsigmoid")(elementwise_saved(forward=0, backward=1.5))
saved_rule("hardswish")(elementwise_saved(forward=0, backward=2.25))
saved_rule("elu", "selu", "celu")(elementwise_saved(forward=2.25, backward=2.25))
saved_rule("softplus")(elementwise_saved(forward=2.25, backward=3.25))
saved_rule("logsigmoid")(elementwise_saved(forward=1, backward=3.25))
saved_rule("sigmoid")(elementwise_saved(forward=2.25))
saved_rule("tanh")(elementwise_saved(backward=1))
saved_rule("silu")(elementwise_saved(forward=2.25, backward=2.25))
saved_rule("mish")(elementwise_saved(forward=0, backward=3.25))
saved_rule("gelu")(elementwise_saved(forward=2, backward=2))
saved_rule("softmax")(elementwise_saved(forward=1))
saved_rule("log_softmax")(elementwise_saved(forward=1, backward=1))

# torch's tensor methods of the same names (x.relu(), x.softmax(1), …)
for _name in ("relu", "sigmoid", "tanh", "softmax", "log_softmax"):
    setattr(Tensor, _name, globals()[_name])
del _name
