"""Tensor arithmetic and shape ops, each forward beside its gradient.

Bound to :class:`~convscope.tensor.Tensor` as methods and operators at import time.
Element-wise ops broadcast like NumPy/torch and reduce gradients back to each operand's
shape. Every op accepts meta tensors and then only computes the output shape.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .errors import ShapeError
from .functional._special import erf as _erf
from .functional._special import scratch_bytes as erf_scratch_bytes
from .functional.parallel import matmul as parallel_matmul
from .rules import (
    CHANNELS,
    FREE,
    UNKNOWN,
    Axis,
    Constraint,
    Cost,
    Saved,
    Sizes,
    SymSize,
    at_least,
    broadcast,
    check,
    const,
    consts,
    cost_rule,
    elementwise_saved,
    equal,
    field_rule,
    keeps,
    last_dim_map_field,
    numel,
    opaque,
    paren,
    per_element,
    product,
    same_field,
    saved_rule,
    size_rule,
)
from .tensor import Tensor, as_tensor, float32, int64, make_result


def unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``g`` over the axes that broadcasting added or stretched to reach ``shape``."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(axis=tuple(range(lead)))
    stretched = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    if stretched:
        g = g.sum(axis=stretched, keepdims=True)
    return g


_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}  # bool < integer < floating point


def result_type(*tensors: Tensor) -> np.dtype:
    """torch's type promotion: operands with dimensions promote among themselves; a 0-d operand
    (a Python number is one, see :func:`~convscope.tensor.as_tensor`) counts only when its
    category (bool < integer < float) is higher, so ``int32 + 2`` is int32 and ``int64 + 0.5``
    float32, where NumPy gives int64 and float64."""
    dims = [t.dtype for t in tensors if t.ndim]
    zeros = [t.dtype for t in tensors if not t.ndim]
    top = builtins.max((_CATEGORY[d.kind] for d in zeros), default=-1)
    if dims and top <= _CATEGORY[np.result_type(*dims).kind]:
        return np.result_type(*dims)
    return np.result_type(*[d for d in zeros if _CATEGORY[d.kind] == top])


def _broadcast_meta(op: str, a: Tensor, b: Tensor) -> tuple[tuple, np.dtype]:
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ShapeError(f"shapes {a.shape} and {b.shape} cannot be broadcast together", layer=op) from None
    return shape, result_type(a, b)


def _operands(a: Any, b: Any) -> tuple[Tensor, Tensor]:
    if isinstance(a, Tensor):
        return a, as_tensor(b, like=a)
    b = as_tensor(b)
    return as_tensor(a, like=b), b


def _binary(
    op: str,
    a: Any,
    b: Any,
    fwd: Callable[[np.ndarray, np.ndarray], np.ndarray],
    grads: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray | None, np.ndarray | None]],
    integers: str | None = None,
) -> Tensor:
    """``fwd`` on both operands cast to their promoted dtype (:func:`result_type`). An integer
    or bool result goes by ``integers`` (:func:`kernel_dtype`; true division computes in
    float32), or keeps its dtype if None (bool ``+`` and ``*`` are logical, as in torch)."""
    a, b = _operands(a, b)
    shape, dtype = _broadcast_meta(op, a, b)
    if integers is not None:
        dtype = kernel_dtype(op, dtype, integers)
    if a.is_meta or b.is_meta:
        return make_result(op, None, (a, b), None, shape=shape, dtype=dtype)
    ad, bd = a.data.astype(dtype, copy=False), b.data.astype(dtype, copy=False)
    out = np.asarray(fwd(ad, bd), dtype=dtype)

    def backward(g: np.ndarray) -> tuple:
        ga, gb = grads(g, ad, bd, out)
        return (
            None if ga is None else unbroadcast(np.broadcast_to(ga, g.shape), a.shape),
            None if gb is None else unbroadcast(np.broadcast_to(gb, g.shape), b.shape),
        )

    return make_result(op, out, (a, b), backward)


def add(a: Any, b: Any) -> Tensor:
    return _binary("add", a, b, np.add, lambda g, x, y, o: (g, g))


def sub(a: Any, b: Any) -> Tensor:
    return _binary("sub", a, b, np.subtract, lambda g, x, y, o: (g, -g), integers="keep")


def mul(a: Any, b: Any) -> Tensor:
    return _binary("mul", a, b, np.multiply, lambda g, x, y, o: (g * y, g * x))


def div(a: Any, b: Any) -> Tensor:
    """True division: integer and bool operands give float32, as torch."""
    return _binary("div", a, b, np.true_divide, lambda g, x, y, o: (g / y, -g * x / (y * y)), integers="float")


def _power(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``x ** y``; an integer to a negative power is torch's (1 for 1, ±1 for −1, else 0)
    where NumPy raises."""
    if x.dtype.kind not in "iu" or not np.any(y < 0):
        return np.power(x, y)
    negative = y < 0
    inverse = np.where(x == 1, 1, np.where(x == -1, 1 - 2 * (y % 2), 0))
    return np.where(negative, inverse, np.power(x, np.where(negative, 0, y))).astype(x.dtype)


def pow(a: Any, b: Any) -> Tensor:  # noqa: A001 - mirrors torch.pow
    def grads(g: np.ndarray, x: np.ndarray, y: np.ndarray, o: np.ndarray) -> tuple:
        gx = g * y * np.power(x, y - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            gy = g * o * np.where(x > 0, np.log(np.where(x > 0, x, 1)), np.where(x == 0, 0.0, np.nan))
        return gx, gy

    return _binary("pow", a, b, _power, grads)


def maximum(a: Any, b: Any) -> Tensor:
    """Element-wise maximum; a tie sends half the gradient to each side (as torch)."""
    def grads(g: np.ndarray, x: np.ndarray, y: np.ndarray, o: np.ndarray) -> tuple:
        wx = (x > y) + 0.5 * (x == y)
        return g * wx, g * (1 - wx)

    return _binary("maximum", a, b, np.maximum, grads)


def minimum(a: Any, b: Any) -> Tensor:
    def grads(g: np.ndarray, x: np.ndarray, y: np.ndarray, o: np.ndarray) -> tuple:
        wx = (x < y) + 0.5 * (x == y)
        return g * wx, g * (1 - wx)

    return _binary("minimum", a, b, np.minimum, grads)


def kernel_dtype(op: str, dtype: np.dtype, integers: str = "refuse", what: str = "input") -> np.dtype:
    """The dtype torch's kernel for ``op`` computes a ``dtype`` input in, or a ShapeError
    where torch has no kernel for it. Floats keep theirs; integers and bool go by ``integers``:

    - ``"keep"``: every integer dtype keeps its own, bool is refused (relu, max pooling, conv);
    - a dtype name (``"int64"``, ``"uint8"``): that one keeps its own, the others are refused
      (average pooling has an int64 kernel only, nearest upsampling a uint8 one);
    - ``"float"``: float32, torch's default dtype (exp, sigmoid);
    - ``"refuse"``: all refused (softmax, the losses, normalisation layers)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" or (integers == "keep" and dtype.kind in "iu") or integers == dtype.name:
        return dtype
    if integers == "float":
        return float32
    raise ShapeError(f"expected a floating-point {what}, got {dtype} (torch has no {dtype} kernel for it). "
                     "Hint: convert it with .float()", layer=op)


def unary(
    op: str,
    x: Tensor,
    fwd: Callable[[np.ndarray], np.ndarray],
    grad: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None,
    attrs: dict | None = None,
    integers: str = "keep",
    dtype: np.dtype | None = None,
) -> Tensor:
    """An element-wise op: ``fwd(x)`` and ``grad(g, x, out) -> dL/dx``.

    Integer and bool inputs go by ``integers`` (see :func:`kernel_dtype`): as in torch, they keep
    their dtype (``"keep"``: relu, abs; bool refused), are computed in float32 (``"float"``: exp,
    sigmoid), or are refused (``"refuse"``: the activations torch has no integer kernel for).
    ``dtype``: the input's dtype promoted with the op's numbers (clamp's bounds), if it changes."""
    dtype = kernel_dtype(op, x.dtype if dtype is None else dtype, integers)
    if x.is_meta:
        return make_result(op, None, (x,), None, shape=x.shape, dtype=dtype, attrs=attrs)
    xd = x.data.astype(dtype, copy=False)
    out = np.asarray(fwd(xd), dtype=dtype)
    backward = None if grad is None else (lambda g: (grad(g, xd, out),))
    return make_result(op, out, (x,), backward, attrs=attrs)


def neg(x: Tensor) -> Tensor:
    return unary("neg", x, np.negative, lambda g, a, o: -g)


def exp(x: Tensor) -> Tensor:
    return unary("exp", x, np.exp, lambda g, a, o: g * o, integers="float")


def log(x: Tensor) -> Tensor:
    return unary("log", x, np.log, lambda g, a, o: g / a, integers="float")


def sqrt(x: Tensor) -> Tensor:
    return unary("sqrt", x, np.sqrt, lambda g, a, o: g / (2 * o), integers="float")


_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)


def erf(x: Tensor) -> Tensor:
    """The error function ``2/√π ∫₀ˣ exp(−t²) dt`` (``torch.erf``, ``torch.special.erf``);
    its gradient is ``2/√π · exp(−x²)``."""
    def grad(g: np.ndarray, a: np.ndarray, o: np.ndarray) -> np.ndarray:
        d = np.square(a)
        np.negative(d, out=d)
        np.exp(d, out=d)
        d *= _TWO_OVER_SQRT_PI
        return np.multiply(g, d, out=d)

    return unary("erf", x, _erf, grad, integers="float")


def array_sign(a: np.ndarray) -> np.ndarray:
    """torch's sign of an array: −1, 0 or 1, and 0 for NaN (``np.sign`` passes NaN on)."""
    return np.subtract(a > 0, a < 0, dtype=a.dtype)


def abs(x: Tensor) -> Tensor:  # noqa: A001 - mirrors torch.abs
    """``|x|``; the gradient is ``sign(x)``: 0 at 0 and at NaN, as torch's."""
    return unary("abs", x, np.abs, lambda g, a, o: g * array_sign(a))


def clamp(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
    """Clip to ``[min, max]``; the gradient passes where the input is inside (bounds included)."""
    def grad(g: np.ndarray, a: np.ndarray, o: np.ndarray) -> np.ndarray:
        keep = np.ones(a.shape, bool)
        if min is not None:
            keep &= a >= min
        if max is not None:
            keep &= a <= max
        return g * keep

    bounds = [as_tensor(b, like=x) for b in (min, max) if b is not None]  # float bounds: ints go float32
    return unary("clamp", x, lambda a: np.clip(a, min, max), grad, dtype=result_type(x, *bounds))


def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product with NumPy/torch broadcasting over batch dimensions."""
    a, b = _operands(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError("both operands must have at least one dimension", layer="matmul")
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ShapeError(f"inner dimensions differ: {a.shape} @ {b.shape} ({k_a} != {k_b})", layer="matmul")
    dtype = kernel_dtype("matmul", np.result_type(a.dtype, b.dtype), "keep")
    if a.is_meta or b.is_meta:
        return make_result("matmul", None, (a, b), None, shape=_matmul_shape(a.shape, b.shape), dtype=dtype)
    ad, bd = a.data, b.data
    # the engine's matmul: split over its threads, each part on single-threaded BLAS (see .parallel)
    out = parallel_matmul(ad, bd)

    def backward(g: np.ndarray) -> tuple:
        a2 = ad[None, :] if ad.ndim == 1 else ad
        b2 = bd[:, None] if bd.ndim == 1 else bd
        g2 = g.reshape(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) + (a2.shape[-2], b2.shape[-1]))
        ga = parallel_matmul(g2, np.swapaxes(b2, -1, -2))
        gb = parallel_matmul(np.swapaxes(a2, -1, -2), g2)
        if ad.ndim == 1:
            ga = ga[..., 0, :]
        if bd.ndim == 1:
            gb = gb[..., 0]
        return unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)

    return make_result("matmul", out, (a, b), backward)


def _matmul_shape(sa: tuple, sb: tuple) -> tuple:
    a = (1,) + sa if len(sa) == 1 else sa
    b = sb + (1,) if len(sb) == 1 else sb
    try:
        batch = np.broadcast_shapes(a[:-2], b[:-2])
    except ValueError:
        raise ShapeError(f"batch dimensions of {sa} and {sb} cannot be broadcast", layer="matmul") from None
    shape = batch + (a[-2], b[-1])
    if len(sa) == 1:
        shape = shape[:-2] + shape[-1:]
    if len(sb) == 1:
        shape = shape[:-1]
    return shape


# --- reductions ---------------------------------------------------------------------------
def _dim(dim: int, ndim: int, op: str, *, new: bool = False) -> int:
    """``dim`` as an axis of an ``ndim``-d tensor (``new``: of the result, one more place, as
    for unsqueeze), counting from the end when negative; a ShapeError where torch raises its
    IndexError (a 0-d tensor takes 0 and -1, as in torch)."""
    rank = max(ndim + new, 1)
    if not -rank <= dim < rank:
        raise ShapeError(f"dim {dim} is out of range for a {ndim}-d tensor (expected {-rank} … {rank - 1})", layer=op)
    return dim % rank


def _axes(dim: int | Sequence[int] | None, ndim: int) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    axes = {_dim(d, ndim, "reduce") for d in dims}
    return tuple(sorted(axes)) if ndim else ()  # a 0-d tensor's dim 0 is the tensor itself


def _reduced_shape(shape: tuple, axes: tuple, keepdim: bool) -> tuple:
    if keepdim:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def sum(x: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:  # noqa: A001
    """Sum over ``dim``; integers and bool sum to int64, as torch."""
    axes = _axes(dim, x.ndim)
    shape = _reduced_shape(x.shape, axes, keepdim)
    dtype = x.dtype if x.dtype.kind == "f" else int64
    if x.is_meta:
        return make_result("sum", None, (x,), None, shape=shape, dtype=dtype, attrs={"dim": axes})
    out = np.asarray(x.data.sum(axis=axes, keepdims=keepdim, dtype=dtype))
    kept = _reduced_shape(x.shape, axes, True)

    def backward(g: np.ndarray) -> tuple:
        return (np.broadcast_to(g.reshape(kept), x.shape),)

    return make_result("sum", out, (x,), backward, attrs={"dim": axes})


def mean(x: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
    kernel_dtype("mean", x.dtype)  # torch has no integer mean (it would not know the result's dtype)
    axes = _axes(dim, x.ndim)
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    return div(sum(x, dim, keepdim), float(count))


def var(x: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False, correction: int = 1) -> Tensor:
    """Variance with Bessel's ``correction`` (1 = unbiased, as torch's default)."""
    kernel_dtype("var", x.dtype)
    axes = _axes(dim, x.ndim)
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    centred = sub(x, mean(x, axes, keepdim=True))
    return div(sum(mul(centred, centred), axes, keepdim), float(builtins.max(count - correction, 0)))


def amax(x: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
    """Maximum over ``dim``; the gradient is shared evenly between tied maxima (as torch's amax)."""
    axes = _axes(dim, x.ndim)
    shape = _reduced_shape(x.shape, axes, keepdim)
    if x.is_meta:
        return make_result("amax", None, (x,), None, shape=shape, attrs={"dim": axes})
    xd = x.data
    out_keep = xd.max(axis=axes, keepdims=True)
    kept = out_keep.shape

    def backward(g: np.ndarray) -> tuple:
        hit = xd == out_keep
        return (hit * (g.reshape(kept) / hit.sum(axis=axes, keepdims=True)),)

    return make_result("amax", np.asarray(out_keep.reshape(shape)), (x,), backward, attrs={"dim": axes})


def argmax(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    if dim is None:
        return Tensor.wrap(np.asarray(np.argmax(x.numpy()), dtype=np.int64))
    return Tensor.wrap(np.argmax(x.numpy(), axis=dim, keepdims=keepdim).astype(np.int64))


# --- shape ops ----------------------------------------------------------------------------
def reshape(x: Tensor, *shape: Any) -> Tensor:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return _reshape(x, shape, {"shape": tuple(shape)})


def _reshape(x: Tensor, shape: tuple, attrs: dict) -> Tensor:
    """``attrs`` tell the size rule what the caller asked for: an explicit ``shape`` (with
    -1), or a ``flatten``/``unsqueeze``/``squeeze`` of the input's own dims."""
    try:
        new_shape = np.broadcast_to(np.empty((), x.dtype), x.shape).reshape(shape).shape
    except ValueError:
        msg = f"cannot reshape {x.shape} ({x.numel()} elements) to {tuple(shape)}"
        raise ShapeError(msg, layer="reshape") from None
    if x.is_meta:
        return make_result("reshape", None, (x,), None, shape=new_shape, attrs=attrs)
    return make_result("reshape", x.data.reshape(new_shape), (x,), lambda g: (g.reshape(x.shape),), attrs=attrs)


def unflatten(x: Tensor, dim: int, sizes: Sequence[int]) -> Tensor:
    """Split dim ``dim`` into ``sizes`` (one of them may be -1: inferred), like ``torch.unflatten``."""
    if not -x.ndim <= dim < x.ndim:
        raise ShapeError(f"dim {dim} is out of range for a {x.ndim}-d input", layer="unflatten")
    d, sizes = dim % x.ndim, tuple(int(n) for n in sizes)
    known = int(np.prod([n for n in sizes if n != -1], dtype=np.int64))
    fits = known == x.shape[d] if -1 not in sizes else sizes.count(-1) == 1 and known > 0 and x.shape[d] % known == 0
    if not sizes or not fits or any(n < -1 for n in sizes):
        raise ShapeError(f"sizes {sizes} do not split dim {d} of size {x.shape[d]} (shape {x.shape})",
                         layer="unflatten")
    split = tuple(x.shape[d] // known if n == -1 else n for n in sizes)
    return _reshape(x, x.shape[:d] + split + x.shape[d + 1:], {"unflatten": (d, sizes)})


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    s, e = _dim(start_dim, x.ndim, "flatten"), _dim(end_dim, x.ndim, "flatten")
    if x.ndim == 0:
        return reshape(x, (1,))
    if s > e:
        msg = f"start_dim {start_dim} comes after end_dim {end_dim} for a {x.ndim}-d tensor"
        raise ShapeError(msg, layer="flatten")
    inner = int(np.prod(x.shape[s:e + 1], dtype=np.int64))
    return _reshape(x, x.shape[:s] + (inner,) + x.shape[e + 1:], {"flatten": (s, e)})


def permute(x: Tensor, *dims: Any) -> Tensor:
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    if len(dims) != x.ndim or sorted(_dim(d, x.ndim, "permute") for d in dims) != list(range(x.ndim)):
        raise ShapeError(f"dims {dims} are not a permutation of {x.ndim} axes", layer="permute")
    dims = tuple(d % x.ndim for d in dims)
    shape = tuple(x.shape[d] for d in dims)
    if x.is_meta:
        return make_result("permute", None, (x,), None, shape=shape, attrs={"dims": dims})
    inverse = tuple(np.argsort(dims))
    return make_result("permute", x.data.transpose(dims), (x,), lambda g: (g.transpose(inverse),), attrs={"dims": dims})


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    dim0, dim1 = _dim(dim0, x.ndim, "transpose"), _dim(dim1, x.ndim, "transpose")
    dims = list(range(x.ndim))
    if dims:  # a 0-d tensor takes dims 0 and -1 and stays as it is
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return permute(x, dims)


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    dim = _dim(dim, x.ndim, "unsqueeze", new=True)
    return _reshape(x, x.shape[:dim] + (1,) + x.shape[dim:], {"unsqueeze": dim})


def squeeze(x: Tensor, dim: int | None = None) -> Tensor:
    if dim is None:
        ones = tuple(i for i, s in enumerate(x.shape) if s == 1)
        return _reshape(x, tuple(s for s in x.shape if s != 1), {"squeeze": ones})
    if x.ndim == 0:
        _dim(dim, 0, "squeeze")
        return x
    dim = _dim(dim, x.ndim, "squeeze")
    if x.shape[dim] != 1:
        return x
    return _reshape(x, x.shape[:dim] + x.shape[dim + 1:], {"squeeze": (dim,)})


def expand(x: Tensor, *shape: Any) -> Tensor:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    lead = len(shape) - x.ndim
    target = tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(shape))
    try:
        np.broadcast_shapes(x.shape, target)
    except ValueError:
        raise ShapeError(f"cannot expand {x.shape} to {tuple(shape)}", layer="expand") from None
    if x.is_meta:
        return make_result("expand", None, (x,), None, shape=target)
    return make_result("expand", np.broadcast_to(x.data, target), (x,), lambda g: (unbroadcast(g, x.shape),))


def getitem(x: Tensor, index: Any) -> Tensor:
    """Indexing with basic or advanced indices; repeated indices accumulate gradient."""
    if isinstance(index, Tensor):
        index = index.numpy()
    elif isinstance(index, tuple):
        index = tuple(i.numpy() if isinstance(i, Tensor) else i for i in index)
    try:
        shape = np.broadcast_to(np.empty((), x.dtype), x.shape)[index].shape
    except IndexError as exc:
        raise ShapeError(f"index {index!r} does not fit shape {x.shape}: {exc}", layer="getitem") from None
    if x.is_meta:
        return make_result("getitem", None, (x,), None, shape=shape, attrs={"index": index})
    out = np.array(x.data[index])
    basic = all(i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice))
                for i in (index if isinstance(index, tuple) else (index,)))

    def backward(g: np.ndarray) -> tuple:
        full = np.zeros(x.shape, g.dtype)
        if basic:  # each cell at most once: a plain store (np.add.at is for repeated indices)
            full[index] = g
        else:
            np.add.at(full, index, g)
        return (full,)

    return make_result("getitem", out, (x,), backward, attrs={"index": index})


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate along ``dim``; all other sizes must agree."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ShapeError("expected a non-empty list of tensors", layer="cat")
    ref = tensors[0]
    if ref.ndim == 0:
        raise ShapeError("0-d tensors have no dim to concatenate along; stack them", layer="cat")
    dim = _dim(dim, ref.ndim, "cat")
    for i, t in enumerate(tensors):
        if t.ndim != ref.ndim or any(a != b for k, (a, b) in enumerate(zip(t.shape, ref.shape)) if k != dim):
            raise ShapeError(
                f"tensor {i} has shape {t.shape}, expected {ref.shape} in every dim except dim {dim}", layer="cat")
    sizes = [t.shape[dim] for t in tensors]
    shape = ref.shape[:dim] + (builtins.sum(sizes),) + ref.shape[dim + 1:]
    dtype = np.result_type(*[t.dtype for t in tensors])
    if any(t.is_meta for t in tensors):
        return make_result("cat", None, tensors, None, shape=shape, dtype=dtype, attrs={"dim": dim})
    out = np.concatenate([t.data for t in tensors], axis=dim).astype(dtype, copy=False)
    bounds = np.cumsum([0] + sizes)

    def backward(g: np.ndarray) -> tuple:
        index = [slice(None)] * g.ndim
        parts = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            index[dim] = slice(lo, hi)
            parts.append(g[tuple(index)])
        return tuple(parts)

    return make_result("cat", out, tensors, backward, attrs={"dim": dim})


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors of one shape along a new dim ``dim`` (``-ndim − 1 … ndim``), like ``torch.stack``."""
    tensors = [as_tensor(t) for t in tensors]
    if tensors:
        dim = _dim(dim, tensors[0].ndim, "stack", new=True)
    return cat([unsqueeze(t, dim) for t in tensors], dim)


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """``a`` where ``condition`` holds, else ``b`` (condition carries no gradient)."""
    if isinstance(condition, Tensor):  # a meta condition (a comparison of meta tensors) has only its shape
        cond = np.broadcast_to(False, condition.shape) if condition.is_meta else condition.data
    else:
        cond = np.asarray(condition)
    return _binary("where", a, b, lambda x, y: np.where(cond, x, y),
                   lambda g, x, y, o: (np.where(cond, g, 0), np.where(cond, 0, g)))


def _compare(fn: Callable) -> Callable[[Any, Any], Tensor]:
    def op(a: Any, b: Any) -> Tensor:
        a, b = _operands(a, b)
        if a.is_meta or b.is_meta:
            return Tensor.meta(_broadcast_meta(fn.__name__, a, b)[0], np.bool_)
        return Tensor.wrap(np.asarray(fn(a.numpy(), b.numpy())))

    return op


def astype(x: Tensor, dtype: Any) -> Tensor:
    """Cast (``.to(dtype)``); the gradient is cast back."""
    dtype = np.dtype(dtype)
    if dtype == x.dtype:
        return x
    if x.is_meta:
        return make_result("to", None, (x,), None, shape=x.shape, dtype=dtype)
    back = (lambda g: (g.astype(x.dtype),)) if dtype.kind == "f" else None
    return make_result("to", x.data.astype(dtype), (x,), back)


# --- analysis rules (see convscope.rules) ------------------------------------------------
ELEMENTWISE = ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "where", "neg", "exp", "log", "sqrt",
               "erf", "abs", "clamp")
cost_rule(*ELEMENTWISE)(per_element(1, "one arithmetic op each"))
field_rule(*ELEMENTWISE, "expand", "to", "cat", channels=True)(same_field)
cost_rule("reshape", "permute", "expand", "getitem", "cat", "to")(lambda inputs, output, attrs: FREE)
field_rule("matmul", channels=True)(last_dim_map_field)  # x @ W: a linear layer as ONNX files write it


@field_rule("permute", channels=True)
def _permute_field(fields: Sequence[Any], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Any:
    """A permute that keeps the batch dim first moves each axis of the field with its dim; the
    channel dim, moved among the spatial ones, takes a :data:`~convscope.rules.CHANNELS` entry,
    dropped again when it returns to dim 1. Any other permute mixes what the axes mean (global)."""
    field, dims = fields[0], attrs["dims"]
    if not field:
        return field
    first = inputs[0].ndim - len(field)  # 2: (N, C, *spatial); 1: channels among the field's entries
    if dims[0] != 0 or first not in (1, 2) or (first == 1 and CHANNELS not in field):
        return None
    entries = [None, CHANNELS, *field] if first == 2 else [None, *field]
    moved = [entries[d] for d in dims[1:]]
    return tuple(moved[1:]) if moved[0] == CHANNELS else tuple(moved)


@cost_rule("sum", "amax")
def _reduce_cost(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Cost:
    n = numel(inputs[0].shape)
    return Cost(0, n, f"{n:,} inputs × 1 (add or compare)")


@field_rule("sum", "amax")
def _reduce_field(fields: Sequence[Any], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Any:
    """Reducing over a spatial axis (any axis after batch and channel) makes the field global."""
    return None if any(d >= 2 for d in attrs.get("dim", ())) else fields[0]


# What each backward closure keeps (see rules.Saved): _binary keeps both operands and the
# output, unary its input and output; shape ops keep their input only for its shape.
saved_rule("add")(elementwise_saved((0, 1), grads_alias=True))  # (g, g): views when no broadcast
saved_rule("sub", "mul", "where")(elementwise_saved((0, 1)))
saved_rule("div", "pow", "maximum", "minimum")(elementwise_saved((0, 1), backward=2))  # x/(y·y), masks, …
saved_rule("neg", "exp", "log", "sqrt")(elementwise_saved())


@saved_rule("erf")
def _erf_saved(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
    """Keeps its input and output (``unary``); SciPy's erf needs no scratch, the fallback does."""
    return Saved((0,), True, workspace=erf_scratch_bytes(numel(output.shape)))
saved_rule("abs", "clamp")(elementwise_saved(backward=1))  # sign(a), the kept-range mask
saved_rule("sum")(keeps(0, grads_alias=True))  # the gradient is a broadcast view
saved_rule("amax")(elementwise_saved(backward=1))  # the mask of maxima
saved_rule("reshape")(keeps(0, view=True, grads_alias=True))
saved_rule("permute")(keeps(view=True, grads_alias=True))
saved_rule("expand")(keeps(0, view=True))
saved_rule("cat")(keeps(grads_alias=True))  # the gradients are slices of the output gradient
saved_rule("getitem", "to", "matmul")(lambda inputs, output, attrs: Saved(tuple(range(len(inputs)))))


@field_rule("getitem", channels=True)
def _getitem_field(fields: Sequence[Any], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Any:
    """Basic indexing: a slice of a spatial dim shifts and strides its field, an integer
    drops the axis; advanced (array) indices and reversed slices mix positions (global)."""
    field = fields[0]
    if not field:
        return field
    x = inputs[0]
    index = attrs["index"] if isinstance(attrs["index"], tuple) else (attrs["index"],)
    basic = all(i is None or i is Ellipsis or isinstance(i, slice)
                or (isinstance(i, (int, np.integer)) and not isinstance(i, bool)) for i in index)
    if not basic or builtins.sum(i is Ellipsis for i in index) > 1:
        return None
    used = builtins.sum(i is not None and i is not Ellipsis for i in index)
    k = index.index(Ellipsis) if Ellipsis in index else len(index)
    index = (*index[:k], *(slice(None),) * (x.ndim - used), *index[k + 1:])
    first = x.ndim - len(field)  # the input's first spatial dim
    out, dim = [], 0
    for i in index:
        if i is None:
            continue
        if dim >= first:
            axis = field[dim - first]
            if isinstance(i, slice):
                cells = range(x.shape[dim])[i]
                if cells.step < 0:
                    return None
                out.append(Axis(axis.size, axis.jump * cells.step, axis.start + cells.start * axis.jump,
                                axis.input_dependent))
        dim += 1
    return tuple(out)


@field_rule("reshape")
def _reshape_field(fields: Sequence[Any], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Any:
    """A reshape that keeps the spatial axes keeps the field; anything else mixes positions."""
    return fields[0] if tuple(output.shape[2:]) == tuple(inputs[0].shape[2:]) else None


@cost_rule("matmul")
def _matmul_cost(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Cost:
    k = inputs[0].shape[-1]
    n = numel(output.shape)
    return Cost(n * k, 2 * n * k, f"{n:,} outputs × {k} = {n * k:,}")


SizeResult = tuple[Sizes, list[Constraint]]


@size_rule(*ELEMENTWISE)
def _broadcast_sizes(sizes: Sequence[Sizes], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> SizeResult:
    return broadcast(sizes, output.ndim)


@size_rule("cat")
def _cat_sizes(sizes: Sequence[Sizes], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> SizeResult:
    """The sizes along the cat dim add up; every other dim must agree."""
    shapes = [t.shape for t in inputs]
    dim = next((d for d in range(output.ndim) if builtins.sum(s[d] for s in shapes) == output.shape[d]
                and all(s[k] == output.shape[k] for s in shapes for k in range(output.ndim) if k != d)), None)
    if dim is None:  # the dim cannot be told from the shapes (only empty inputs)
        return (UNKNOWN,) * output.ndim, []
    out, checks = list(sizes[0]), []
    for i, other in enumerate(sizes[1:], 1):
        out[dim] = out[dim] + other[dim]
        for k in range(output.ndim):
            if k != dim:
                checks += equal(other[k], sizes[0][k], f"cat: tensor {i} dim {k} {{a}} = {{b}}")
    return tuple(out), checks


@size_rule("reshape")
def _reshape_sizes(sizes: Sequence[Sizes], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> SizeResult:
    """flatten multiplies the merged dims; an explicit shape is constant (-1: inferred)."""
    x = sizes[0]
    if "flatten" in attrs:
        s, e = attrs["flatten"]
        return (*x[:s], product(x[s:e + 1]), *x[e + 1:]), []
    if "unsqueeze" in attrs:
        d = attrs["unsqueeze"]
        return (*x[:d], const(1), *x[d:]), []
    if "unflatten" in attrs:
        d, request = attrs["unflatten"]
        known = int(np.prod([n for n in request if n != -1], dtype=np.int64))
        if -1 not in request:
            return (*x[:d], *consts(request), *x[d + 1:]), equal(x[d], const(known), "unflatten splits {a} = {b}")
        rows = x[d].floor_div(0, known)
        checks = check(f"unflatten: {x[d].text} fills whole rows of {known}",
                       lambda env: x[d].value(env) % known == 0, x[d])
        return (*x[:d], *(rows if n == -1 else const(n) for n in request), *x[d + 1:]), checks
    if "squeeze" in attrs:
        gone = attrs["squeeze"]
        return (tuple(e for i, e in enumerate(x) if i not in gone),
                [c for i in gone for c in equal(x[i], const(1), "squeezed dim {a} = {b}")])
    if "shape" not in attrs:
        return (UNKNOWN,) * output.ndim, []
    total, request = product(x), attrs["shape"]
    known = int(np.prod([n for n in request if n != -1], dtype=np.int64))
    if -1 not in request:
        return consts(request), equal(total, const(known), "reshape keeps the {a} = {b} elements")
    fixed = int(np.prod([e.affine[4] for e in x if e.is_const], dtype=np.int64))
    if fixed % known == 0:  # the constant dims alone fill whole rows
        inferred, checks = product((const(fixed // known), *(e for e in x if not e.is_const))), []
    else:
        inferred = total.floor_div(0, known)
        checks = check(f"reshape: {total.text} elements fill whole rows of {known}",
                       lambda env: total.value(env) % known == 0, total)
    return tuple(inferred if n == -1 else const(n) for n in request), checks


@size_rule("permute")
def _permute_sizes(sizes: Sequence[Sizes], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> SizeResult:
    return tuple(sizes[0][d] for d in attrs["dims"]), []


@size_rule("sum", "amax")
def _reduce_sizes(sizes: Sequence[Sizes], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> SizeResult:
    x, axes = sizes[0], attrs["dim"]
    if output.ndim == len(x):  # keepdim
        return tuple(const(1) if i in axes else e for i, e in enumerate(x)), []
    return tuple(e for i, e in enumerate(x) if i not in axes), []


@size_rule("matmul")
def _matmul_sizes(sizes: Sequence[Sizes], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> SizeResult:
    a, b = sizes
    a2 = (const(1), *a) if len(a) == 1 else a
    b2 = (*b, const(1)) if len(b) == 1 else b
    batch, checks = broadcast([a2[:-2], b2[:-2]], builtins.max(len(a2), len(b2)) - 2)
    out = (*batch, *(a2[-2:-1] if len(a) > 1 else ()), *(b2[-1:] if len(b) > 1 else ()))
    return out, checks + equal(a2[-1], b2[-2], "matmul inner dims {a} = {b}")


def _slice_length(n: Any, sl: slice) -> Any:
    """``len(range(n)[sl])`` for an array of lengths ``n`` (Python's clamping rules)."""
    step = 1 if sl.step is None else sl.step

    def at(v: int | None, default: Any, lo: Any, hi: Any) -> Any:
        return default if v is None else np.clip(v + n if v < 0 else np.full_like(n, v), lo, hi)

    if step > 0:
        start, stop = at(sl.start, 0, 0, n), at(sl.stop, n, 0, n)
        return np.maximum(0, (stop - start + step - 1) // step)
    start, stop = at(sl.start, n - 1, -1, n - 1), at(sl.stop, -1, -1, n - 1)
    return np.maximum(0, (start - stop - step - 1) // -step)


def _sliced(e: SymSize, sl: slice, n: int) -> SymSize:
    """The length of ``sl`` over ``e`` cells (``n`` at the reference size)."""
    step = 1 if sl.step is None else sl.step
    if e.is_const:
        return const(len(range(n)[sl]))
    length = lambda env: _slice_length(np.asarray(e.value(env)), sl)  # noqa: E731
    skip, cut = sl.start or 0, -(sl.stop or 0)
    if step > 0 and skip >= 0 and cut >= 0:  # k:-j:s keeps ⌈(E − k − j)/s⌉ cells, or none
        f = e.floor_div(step - 1 - skip - cut, step)
        return f if skip == cut == 0 else opaque(f"max({f.text}, 0)", length, e)
    text = ":".join("" if v is None else str(v) for v in (sl.start, sl.stop, sl.step)).rstrip(":")
    return opaque(f"len({paren(e.text)}[{text}])", length, e)


@size_rule("getitem")
def _getitem_sizes(sizes: Sequence[Sizes], inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> SizeResult:
    """Basic indexing (ints, slices, None, ...); advanced indices have no size formula."""
    x, index = sizes[0], attrs["index"]
    index = index if isinstance(index, tuple) else (index,)
    basic = all(i is None or i is Ellipsis or isinstance(i, slice)
                or (isinstance(i, (int, np.integer)) and not isinstance(i, bool)) for i in index)
    if not basic or builtins.sum(i is Ellipsis for i in index) > 1:
        return (x if output.shape == inputs[0].shape else (UNKNOWN,) * output.ndim), []
    used = builtins.sum(i is not None and i is not Ellipsis for i in index)
    fill = (slice(None),) * (len(x) - used)
    index = (*index, Ellipsis) if Ellipsis not in index else index
    k = index.index(Ellipsis)
    out, checks, dim = [], [], 0
    for i in (*index[:k], *fill, *index[k + 1:]):
        if i is None:
            out.append(const(1))
            continue
        e, n, dim = x[dim], inputs[0].shape[dim], dim + 1
        if isinstance(i, slice):
            out.append(_sliced(e, i, n))
        else:
            checks += at_least(e, i + 1 if i >= 0 else -i, f"index {i} in range: {{size}} ≥ {{bound}}")
    return tuple(out), checks


def _bind() -> None:
    def rev(fn: Callable) -> Callable:
        return lambda self, other: fn(other, self)

    methods: dict[str, Callable] = {
        "__add__": add, "__radd__": rev(add), "__sub__": sub, "__rsub__": rev(sub),
        "__mul__": mul, "__rmul__": rev(mul), "__truediv__": div, "__rtruediv__": rev(div),
        "__pow__": pow, "__rpow__": rev(pow), "__matmul__": matmul, "__rmatmul__": rev(matmul),
        "__neg__": neg, "__getitem__": getitem,
        "__gt__": _compare(np.greater), "__ge__": _compare(np.greater_equal),
        "__lt__": _compare(np.less), "__le__": _compare(np.less_equal),
        "eq": _compare(np.equal), "ne": _compare(np.not_equal),
        "add": add, "sub": sub, "mul": mul, "div": div, "pow": pow, "matmul": matmul,
        "exp": exp, "log": log, "sqrt": sqrt, "erf": erf, "abs": abs, "clamp": clamp, "neg": neg,
        "sum": sum, "mean": mean, "var": var, "amax": amax, "argmax": argmax,
        "reshape": reshape, "view": reshape, "flatten": flatten, "permute": permute,
        "transpose": transpose, "unsqueeze": unsqueeze, "squeeze": squeeze, "expand": expand,
        "to": astype, "astype": astype,
        "float": lambda self: astype(self, np.float32), "double": lambda self: astype(self, np.float64),
    }
    for name, fn in methods.items():
        setattr(Tensor, name, fn)
    Tensor.T = property(lambda self: permute(self, tuple(reversed(range(self.ndim)))))
    Tensor.__hash__ = object.__hash__


_bind()
