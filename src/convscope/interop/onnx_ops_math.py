"""Element-wise, activation, matrix and reduction nodes.

Activations with a ``convscope.nn`` twin become that layer (``ReLU``, ``Sigmoid``,
``LeakyReLU``, ``Hardswish``, ``Softmax``...). The rest are :class:`OnnxOp` subclasses named
after the ONNX operator, computed from convscope's differentiable ops. ONNX broadcasting is
NumPy's, as convscope's; integer ``Div`` truncates toward zero as ONNX specifies.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import functional as F
from .. import nn, ops
from ..functional.activation import SELU_ALPHA, SELU_SCALE
from ..nn.module import Module, Parameter
from ..tensor import Tensor
from .onnx_node import ONNX_DTYPES, NodeSpec, OnnxError, OnnxOp, known, known_ints

__all__ = ["OPS"]


def _same_dtype(op: OnnxOp, *tensors: Tensor) -> None:
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        raise OnnxError(f"{op.label}: inputs must share one type, got {', '.join(sorted(map(str, dtypes)))}")


def _no_grad_elementwise(fn: Callable[..., np.ndarray], dtype: Any, *tensors: Tensor) -> Tensor:
    """A non-differentiable element-wise op (comparison, integer division): NumPy on data, a
    broadcast shape on meta tensors."""
    if any(t.is_meta for t in tensors):
        return Tensor.meta(np.broadcast_shapes(*(t.shape for t in tensors)), dtype)
    return Tensor.wrap(np.asarray(fn(*(t.numpy() for t in tensors))).astype(dtype, copy=False))


def _truncating_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    quotient = np.floor_divide(a, b)
    inexact = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
    return quotient + inexact.astype(quotient.dtype)


# --- element-wise arithmetic -------------------------------------------------------------------
class _Binary(OnnxOp):
    """``A op B`` with NumPy broadcasting; both inputs of one type."""

    parameter_inputs = (0, 1)
    function: Callable[[Tensor, Tensor], Tensor]

    def compute(self, a: Tensor, b: Tensor) -> Tensor:
        _same_dtype(self, a, b)
        return type(self).function(a, b)


class Add(_Binary):
    function = staticmethod(ops.add)


class Sub(_Binary):
    function = staticmethod(ops.sub)


class Mul(_Binary):
    function = staticmethod(ops.mul)


class Div(_Binary):
    """Division; integers divide truncating toward zero."""

    def compute(self, a: Tensor, b: Tensor) -> Tensor:
        _same_dtype(self, a, b)
        if a.dtype.kind in "iu":
            return _no_grad_elementwise(_truncating_divide, a.dtype, a, b)
        return ops.div(a, b)


class _Compare(OnnxOp):
    function: Callable[[np.ndarray, np.ndarray], np.ndarray]

    def compute(self, a: Tensor, b: Tensor) -> Tensor:
        _same_dtype(self, a, b)
        return _no_grad_elementwise(type(self).function, np.bool_, a, b)


class Less(_Compare):
    function = staticmethod(np.less)


class Equal(_Compare):
    function = staticmethod(np.equal)


class Where(OnnxOp):
    parameter_inputs = (1, 2)

    def compute(self, condition: Tensor, a: Tensor, b: Tensor) -> Tensor:
        _same_dtype(self, a, b)
        if condition.is_meta:
            return Tensor.meta(np.broadcast_shapes(condition.shape, a.shape, b.shape), a.dtype)
        shape = np.broadcast_shapes(condition.shape, a.shape, b.shape)
        return ops.where(np.broadcast_to(condition.numpy(), shape), a, b)


class _Variadic(OnnxOp):
    """Max / Min / Sum of any number of inputs, broadcast together."""

    function: Callable[[Tensor, Tensor], Tensor]

    def learnable(self, index: int) -> bool:
        return True

    def compute(self, *inputs: Tensor) -> Tensor:
        _same_dtype(self, *inputs)
        return functools.reduce(type(self).function, inputs)


class Max(_Variadic):
    function = staticmethod(ops.maximum)


class Min(_Variadic):
    function = staticmethod(ops.minimum)


class Sum(_Variadic):
    function = staticmethod(ops.add)


class Pow(OnnxOp):
    """``X ** Y``; the result has X's type (Y may be of another numeric type, as ONNX allows)."""

    parameter_inputs = (0,)

    def compute(self, x: Tensor, y: Tensor) -> Tensor:
        return ops.pow(x, y if y.dtype == x.dtype else ops.astype(y, x.dtype))


class _Unary(OnnxOp):
    function: Callable[[Tensor], Tensor]

    def compute(self, x: Tensor) -> Tensor:
        return type(self).function(x)


class Exp(_Unary):
    function = staticmethod(ops.exp)


class Log(_Unary):
    function = staticmethod(ops.log)


class Neg(_Unary):
    function = staticmethod(ops.neg)


class Sqrt(_Unary):
    function = staticmethod(ops.sqrt)


class Erf(_Unary):
    function = staticmethod(ops.erf)


class Reciprocal(_Unary):
    function = staticmethod(lambda x: 1 / x)


class Abs(_Unary):
    function = staticmethod(ops.abs)


class Cast(OnnxOp):
    """Cast to the ``to`` type (the target of ``CastLike`` is its second input's type)."""

    def __init__(self, node: NodeSpec, to: np.dtype | None) -> None:
        super().__init__(node)
        self.to = to

    def compute(self, x: Tensor, like: Tensor | None = None) -> Tensor:
        return ops.astype(x, self.to if like is None else like.dtype)


def _cast(node: NodeSpec) -> Module:
    code = int(node.attr("to"))
    if code not in ONNX_DTYPES:
        raise node.unsupported(f"cast to ONNX type {code}")
    if node.version >= 19:
        node.attr("saturate", 1)  # affects float8 targets only, which convscope refuses above
    return Cast(node, ONNX_DTYPES[code])


def _cast_like(node: NodeSpec) -> Module:
    if node.version >= 19:
        node.attr("saturate", 1)
    return Cast(node, None)


# --- activations ------------------------------------------------------------------------------
class Clip(OnnxOp):
    """``min(max(x, lo), hi)``; the bounds are attributes (Clip-6) or optional inputs (Clip-11+).
    As ONNX, ``lo > hi`` gives ``hi`` everywhere."""

    def __init__(self, node: NodeSpec, lo: float | None = None, hi: float | None = None) -> None:
        super().__init__(node)
        self.lo, self.hi = lo, hi

    def compute(self, x: Tensor, lo: Tensor | None = None, hi: Tensor | None = None) -> Tensor:
        low = self.lo if lo is None else known(lo, "min", self).item()
        high = self.hi if hi is None else known(hi, "max", self).item()
        return ops.clamp(x, low, high)


def _clip(node: NodeSpec) -> Module:
    if node.version < 11:
        limit = float(np.finfo(np.float32).max)
        return Clip(node, float(node.attr("min", -limit)), float(node.attr("max", limit)))
    return Clip(node)


class HardSigmoid(OnnxOp):
    """``max(0, min(1, alpha·x + beta))`` for ONNX's ``alpha``/``beta`` (default 0.2 and 0.5;
    the ``nn.Hardsigmoid`` twin is used for torch's 1/6 and 0.5)."""

    def __init__(self, node: NodeSpec, alpha: float, beta: float) -> None:
        super().__init__(node)
        self.alpha, self.beta = alpha, beta

    def compute(self, x: Tensor) -> Tensor:
        return ops.clamp(x * self.alpha + self.beta, 0.0, 1.0)


def _hard_sigmoid(node: NodeSpec) -> Module:
    alpha, beta = float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5))
    if np.float32(alpha) == np.float32(1 / 6) and beta == 0.5:
        return nn.Hardsigmoid()
    return HardSigmoid(node, alpha, beta)


class Selu(OnnxOp):
    """``gamma·elu(x, alpha)`` for attributes other than torch's constants (those build ``nn.SELU``)."""

    def __init__(self, node: NodeSpec, alpha: float, gamma: float) -> None:
        super().__init__(node)
        self.alpha, self.gamma = alpha, gamma

    def compute(self, x: Tensor) -> Tensor:
        return F.elu(x, self.alpha) * self.gamma


def _selu(node: NodeSpec) -> Module:
    alpha, gamma = float(node.attr("alpha", np.float32(SELU_ALPHA))), float(node.attr("gamma", np.float32(SELU_SCALE)))
    if np.float32(alpha) == np.float32(SELU_ALPHA) and np.float32(gamma) == np.float32(SELU_SCALE):
        return nn.SELU()
    return Selu(node, alpha, gamma)


class PRelu(OnnxOp):
    """``x`` for x > 0, else ``slope·x``, the slope broadcast from the right. One slope, or one
    per channel (shape ``(C, 1, …, 1)``), runs ``F.prelu``; other shapes run as a ``where``.

    Shape:
        - Input: ``(N, C, *)``; slope: broadcastable to it.
        - Output: the input's shape.
    """

    parameter_inputs = (1,)
    owned_names = {1: "weight"}

    def compute(self, x: Tensor, slope: Tensor) -> Tensor:
        if math.prod(slope.shape) == 1 and slope.ndim <= x.ndim:
            return F.prelu(x, slope.reshape(1))
        if x.ndim >= 2 and slope.shape == (x.shape[1],) + (1,) * (x.ndim - 2):
            return F.prelu(x, slope.reshape(-1))
        if x.is_meta or slope.is_meta:
            return Tensor.meta(np.broadcast_shapes(x.shape, slope.shape), x.dtype)
        return ops.where(x.numpy() > 0, x, x * slope)


class _Softmax2d(OnnxOp):
    """Softmax / LogSoftmax before opset 13: the input is coerced to 2-d
    ``(∏ shape[:axis], ∏ shape[axis:])``, normalised along dim 1, and reshaped back."""

    function: Callable[..., Tensor]

    def __init__(self, node: NodeSpec, axis: int) -> None:
        super().__init__(node)
        self.axis = axis

    def compute(self, x: Tensor) -> Tensor:
        axis = self.axis + x.ndim if self.axis < 0 else self.axis
        if not 0 <= axis <= x.ndim:
            raise OnnxError(f"{self.label}: axis {self.axis} is out of range for a {x.ndim}-d input")
        rows = int(np.prod(x.shape[:axis], dtype=np.int64))
        flat = ops.reshape(x, (rows, int(np.prod(x.shape[axis:], dtype=np.int64))))
        return ops.reshape(type(self).function(flat, 1), x.shape)


class Softmax(_Softmax2d):
    function = staticmethod(F.softmax)


class LogSoftmax(_Softmax2d):
    function = staticmethod(F.log_softmax)


def _softmax(legacy: type[_Softmax2d], layer: type[Module]) -> Callable[[NodeSpec], Module]:
    def build(node: NodeSpec) -> Module:
        if node.version < 13:
            return legacy(node, int(node.attr("axis", 1)))
        return layer(dim=int(node.attr("axis", -1)))

    return build


# --- matrices -----------------------------------------------------------------------------------
class MatMul(OnnxOp):
    parameter_inputs = (0, 1)
    owned_names = {1: "weight"}

    def compute(self, a: Tensor, b: Tensor) -> Tensor:
        _same_dtype(self, a, b)
        return ops.matmul(a, b)


class Gemm(OnnxOp):
    """``alpha · A' B' + beta · C`` with ``A' = Aᵀ`` if ``transA`` (likewise B).

    Shape:
        - Input: A ``(M, K)`` (or ``(K, M)``), B ``(K, N)`` (or ``(N, K)``), C broadcastable to ``(M, N)``
        - Output: ``(M, N)``.
    """

    parameter_inputs = (1, 2)
    owned_names = {1: "weight", 2: "bias"}

    def __init__(self, node: NodeSpec, alpha: float, beta: float, trans_a: bool, trans_b: bool) -> None:
        super().__init__(node)
        self.alpha, self.beta, self.trans_a, self.trans_b = alpha, beta, trans_a, trans_b

    def compute(self, a: Tensor, b: Tensor, c: Tensor | None = None) -> Tensor:
        _same_dtype(self, a, b, *([c] if c is not None else []))
        if a.ndim != 2 or b.ndim != 2:
            raise OnnxError(f"{self.label}: A and B must be 2-d, got shapes {a.shape} and {b.shape}")
        y = ops.matmul(a.T if self.trans_a else a, b.T if self.trans_b else b)
        if self.alpha != 1:
            y = y * self.alpha
        if c is not None:
            y = y + (c if self.beta == 1 else c * self.beta)
        return y


def _gemm(node: NodeSpec) -> Module:
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    trans_a, trans_b = bool(node.attr("transA", 0)), bool(node.attr("transB", 0))
    if node.version < 11 and not node.present(2):
        raise node.error("input C is required before Gemm-11")
    weight, bias = node.owned_value(1), node.owned_value(2)
    has_bias = node.present(2)
    linear = (weight is not None and weight.ndim == 2 and alpha == 1 and not trans_a
              and (not has_bias or (bias is not None and beta == 1 and bias.size == weight.shape[0 if trans_b else 1]
                                    and bias.ndim <= 2 and bias.shape[-1:] == (bias.size,))))
    if not linear:
        return Gemm(node, alpha, beta, trans_a, trans_b)
    matrix = weight if trans_b else np.ascontiguousarray(weight.T)
    with nn.meta_parameters():
        layer = nn.Linear(matrix.shape[1], matrix.shape[0], bias=has_bias, dtype=matrix.dtype)
    layer.weight = Parameter(Tensor.wrap(matrix))
    if has_bias:
        layer.bias = Parameter(Tensor.wrap(bias.reshape(-1)))
    return layer


# --- reductions ---------------------------------------------------------------------------------
class _Reduce(OnnxOp):
    """Reduce over ``axes`` (an attribute in older versions, an input in newer ones); no axes
    means all of them, or nothing with ``noop_with_empty_axes``."""

    function: Callable[..., Tensor]

    def __init__(self, node: NodeSpec, axes: list[int] | None, keepdims: bool, noop: bool) -> None:
        super().__init__(node)
        self.axes, self.keepdims, self.noop = axes, keepdims, noop

    def compute(self, x: Tensor, axes: Tensor | None = None) -> Tensor:
        dims = self.axes if axes is None else known_ints(axes, "axes", self)
        if not dims:
            if self.noop:
                return x
            dims = list(range(x.ndim))
        out = type(self).function(x, tuple(dims), keepdim=self.keepdims)
        return out if out.dtype == x.dtype else ops.astype(out, x.dtype)


class ReduceMean(_Reduce):
    function = staticmethod(ops.mean)


class ReduceSum(_Reduce):
    function = staticmethod(ops.sum)


class ReduceMax(_Reduce):
    function = staticmethod(ops.amax)


def _reduce(cls: type[_Reduce], axes_input_since: int) -> Callable[[NodeSpec], Module]:
    def build(node: NodeSpec) -> Module:
        keepdims = bool(node.attr("keepdims", 1))
        if node.version >= axes_input_since:
            return cls(node, None, keepdims, bool(node.attr("noop_with_empty_axes", 0)))
        return cls(node, node.ints("axes"), keepdims, False)

    return build


OPS: dict[str, Callable[[NodeSpec], Module]] = {
    "Add": Add, "Sub": Sub, "Mul": Mul, "Div": Div, "Max": Max, "Min": Min, "Sum": Sum,
    "Less": Less, "Equal": Equal, "Where": Where,
    "Pow": Pow, "Exp": Exp, "Log": Log, "Neg": Neg, "Sqrt": Sqrt, "Erf": Erf, "Reciprocal": Reciprocal, "Abs": Abs,
    "Cast": _cast, "CastLike": _cast_like,
    "Relu": lambda node: nn.ReLU(),
    "Sigmoid": lambda node: nn.Sigmoid(),
    "Tanh": lambda node: nn.Tanh(),
    "LeakyRelu": lambda node: nn.LeakyReLU(float(node.attr("alpha", 0.01))),
    "HardSwish": lambda node: nn.Hardswish(),
    "Gelu": lambda node: nn.GELU(node.choice("approximate", "none", ("none", "tanh"))),
    "HardSigmoid": _hard_sigmoid,
    "Elu": lambda node: nn.ELU(float(node.attr("alpha", 1.0))),
    "Celu": lambda node: nn.CELU(float(node.attr("alpha", 1.0))),
    "Selu": _selu,
    "Softplus": lambda node: nn.Softplus(),
    "Mish": lambda node: nn.Mish(),
    "PRelu": PRelu,
    "Clip": _clip,
    "Softmax": _softmax(Softmax, nn.Softmax),
    "LogSoftmax": _softmax(LogSoftmax, nn.LogSoftmax),
    "MatMul": MatMul, "Gemm": _gemm,
    "ReduceMean": _reduce(ReduceMean, 18), "ReduceSum": _reduce(ReduceSum, 13), "ReduceMax": _reduce(ReduceMax, 18),
}
