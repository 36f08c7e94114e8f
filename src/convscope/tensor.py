"""Tensor: an ndarray plus a reverse-mode autograd tape.

Every differentiable op builds its result with :func:`make_result`, passing the parents
and a closure that maps the output gradient to one gradient per parent, written next to
the forward (as in micrograd). A *meta* tensor has a shape and dtype but no data; ops
check shapes with the same rules and return meta results without computing anything,
which is how the analyzer runs a model's own ``forward`` for free.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .errors import ShapeError

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)

Backward = Callable[[np.ndarray], Sequence["np.ndarray | None"]]
Observer = Callable[[str, tuple, "Tensor", dict], None]


class _ThreadState(threading.local):
    """Grad mode and op observers are per thread, as torch's grad mode is: a server thread
    running ``no_grad`` does not switch gradients off for another thread."""

    def __init__(self) -> None:
        self.grad_enabled = True
        self.observers: list[Observer] = []


_STATE = _ThreadState()


@contextlib.contextmanager
def _grad_mode(enabled: bool) -> Iterator[None]:
    previous = _STATE.grad_enabled
    _STATE.grad_enabled = enabled
    try:
        yield
    finally:
        _STATE.grad_enabled = previous


def no_grad() -> contextlib.AbstractContextManager[None]:
    """Context manager: ops inside record no graph (like ``torch.no_grad``)."""
    return _grad_mode(False)


def enable_grad() -> contextlib.AbstractContextManager[None]:
    """Context manager: ops inside record a graph even within ``no_grad`` (like ``torch.enable_grad``)."""
    return _grad_mode(True)


def is_grad_enabled() -> bool:
    """Whether ops record a graph here: False inside ``no_grad`` (like ``torch.is_grad_enabled``)."""
    return _STATE.grad_enabled


@contextlib.contextmanager
def observe(observer: Observer) -> Iterator[None]:
    """Call ``observer(op, inputs, output, attrs)`` for every op this thread runs inside the
    block. The analyzer uses this to count functional calls, not only module calls."""
    _STATE.observers.append(observer)
    try:
        yield
    finally:
        _STATE.observers.remove(observer)


def _as_dtype(dtype: Any) -> np.dtype | None:
    if dtype is None:
        return None
    if isinstance(dtype, str) and dtype in ("float", "double", "long"):
        dtype = {"float": np.float32, "double": np.float64, "long": np.int64}[dtype]
    return np.dtype(dtype)


def _to_array(data: Any, dtype: np.dtype | None) -> np.ndarray:
    """Convert user data like ``torch.tensor`` does: Python floats become float32,
    NumPy arrays keep their dtype, Python ints become int64."""
    if isinstance(data, Tensor):
        data = data.data
    arr = np.asarray(data)
    if dtype is not None:
        return np.array(arr, dtype=dtype, copy=True)
    if not isinstance(data, np.ndarray) and arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind in "iu":
        arr = arr.astype(np.int64)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    return np.array(arr, copy=True)


class Tensor:
    """An n-dimensional array with optional gradient tracking.

    ``Tensor(data)`` copies ``data`` (like ``torch.tensor``); float NumPy arrays keep their
    dtype, Python floats become float32. ``Tensor.meta(shape)`` makes a data-less tensor.
    """

    __slots__ = ("data", "shape", "dtype", "requires_grad", "grad", "_parents", "_backward", "op")
    __array_priority__ = 1000.0

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        arr = _to_array(data, _as_dtype(dtype))
        self._init(arr, arr.shape, arr.dtype, requires_grad)

    def _init(self, data: np.ndarray | None, shape: tuple, dtype: np.dtype, requires_grad: bool) -> None:
        self.data = data
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        if requires_grad and self.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got {self.dtype}")
        self.requires_grad = requires_grad
        self.grad: np.ndarray | None = None
        self._parents: tuple[Tensor, ...] = ()
        self._backward: Backward | None = None
        self.op = ""

    @classmethod
    def wrap(cls, data: np.ndarray, requires_grad: bool = False) -> Tensor:
        """Wrap an ndarray without copying."""
        t = cls.__new__(cls)
        t._init(data, data.shape, data.dtype, requires_grad)
        return t

    @classmethod
    def meta(cls, shape: Sequence[int], dtype: Any = float32, requires_grad: bool = False) -> Tensor:
        """A tensor with shape and dtype only; ops on it compute shapes, not values."""
        t = cls.__new__(cls)
        t._init(None, tuple(map(int, shape)), np.dtype(dtype), requires_grad)
        return t

    # --- basic properties -------------------------------------------------------------
    @property
    def is_meta(self) -> bool:
        return self.data is None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return len(self.shape)

    def size(self, dim: int | None = None) -> tuple | int:
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return int(math.prod(self.shape))

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    @property
    def is_leaf(self) -> bool:
        return self._backward is None

    def numpy(self) -> np.ndarray:
        """The data as an ndarray (shared, not copied)."""
        if self.data is None:
            raise ValueError(f"meta tensor of shape {self.shape} has no data")
        return self.data

    def item(self) -> float | int | bool:
        """The one value of a one-element tensor, as a Python number."""
        if self.numel() != 1:
            raise ValueError(f"a tensor of shape {self.shape} has {self.numel()} values; item(), float(), int() "
                             f"and bool() need exactly one")
        return self.numpy().item()

    def __bool__(self) -> bool:
        """The truth of a one-element tensor, as torch; a tensor of more values is refused as ambiguous."""
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def detach(self) -> Tensor:
        """Same data, no graph."""
        if self.data is None:
            return Tensor.meta(self.shape, self.dtype)
        return Tensor.wrap(self.data)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and self.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got {self.dtype}")
        self.requires_grad = requires_grad
        return self

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        if self.data is None:
            return f"Tensor(meta, shape={self.shape}, dtype={self.dtype}{grad})"
        body = np.array2string(self.data, precision=4, separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{grad})"

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    # --- autograd ---------------------------------------------------------------------
    def backward(self, gradient: Any = None, retain_graph: bool | None = None) -> None:
        """Accumulate d(self)/d(leaf) into ``.grad`` of every leaf that requires grad.

        ``gradient`` (torch's name) defaults to 1 for a single-element tensor, as in torch.
        Unlike PyTorch, the graph is never freed, so every backward works as with
        ``retain_graph=True``; the argument is accepted for code written for torch.
        """
        if self.data is None:
            raise ValueError("backward() is not defined on meta tensors")
        if not self.requires_grad:
            raise RuntimeError("backward(): tensor does not require grad and has no graph")
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward(): grad can be implicit only for one element, got shape {self.shape}")
            seed = np.ones(self.shape, self.dtype)
        else:
            seed = np.asarray(gradient.data if isinstance(gradient, Tensor) else gradient, dtype=self.dtype)
            if seed.shape != self.shape:
                raise ShapeError(f"grad shape {seed.shape} does not match tensor shape {self.shape}", layer="backward")
        grads: dict[int, np.ndarray] = {id(self): seed}
        for node in reversed(_topological_order(self)):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._backward is not None:
                _send_to_parents(node, g, grads)
            elif node.grad is None:
                # torch's rule: the gradient itself when nothing else can reach it, else a copy
                # (``g`` may be the seed, the upstream gradient, another leaf's, a closure's array;
                # or, for a 0-d leaf, a NumPy scalar, which the copy makes an ndarray as ``.grad`` is)
                alone = _ALONE is not None and _references(g) == _ALONE and _private(g)
                node.grad = g if alone else np.array(g, order="C")
            else:
                current = node.grad
                # in place when only ``.grad`` holds it (a reference the user kept sees no change)
                if (_ALONE is not None and _references(current) == _ALONE + 1 and _private(current)
                        and current.shape == g.shape and current.dtype == g.dtype):
                    _add_into(current, g)
                else:
                    node.grad = np.asarray(current + g)  # 0-d operands add up to a NumPy scalar

    # --- arithmetic (implemented in ops.py; bound below) ----------------------------------


def _send_to_parents(node: Tensor, g: np.ndarray, grads: dict[int, np.ndarray]) -> None:
    """Run ``node``'s backward closure on its gradient ``g`` and add the parents' gradients to
    ``grads`` (a function of its own: its locals, the last gradient among them, are gone when
    the caller counts the references to a leaf's gradient)."""
    for parent, pg in zip(node._parents, node._backward(g)):
        if pg is None or not parent.requires_grad:
            continue
        if pg.shape != parent.shape:
            raise AssertionError(f"internal: {node.op} gave grad {pg.shape} for parent {parent.shape}")
        key = id(parent)
        grads[key] = pg.astype(parent.dtype, copy=False) if key not in grads else grads[key] + pg


def _references(a: object) -> int:
    """``sys.getrefcount(a)`` seen from here: compared with :data:`_ALONE`, how many references
    to ``a`` exist besides the caller's one variable (call it as ``_references(v)``)."""
    return sys.getrefcount(a)


def _calibrate() -> int | None:
    """What :func:`_references` says of an object that one variable of the caller holds and
    nothing else, measured the same way as it is used; None where reference counts do not
    tell (an interpreter without them, or one whose count of a second holder is not one more)."""
    if not hasattr(sys, "getrefcount"):
        return None
    fresh = np.empty(0)
    alone = _references(fresh)
    holder = [fresh]
    return alone if _references(holder[0]) == alone + 1 else None


_ALONE = _calibrate()


def _private(a: np.ndarray) -> bool:
    """Whether no other array can reach ``a``'s memory (its references are counted by the
    caller): a plain, writeable, C-contiguous ndarray that owns its memory or is a view of
    all of an array only it references (a reshaped result). Views of the user's arrays, of
    saved arrays and read-only or strided views fail, and are copied."""
    if type(a) is not np.ndarray or not a.flags.writeable or not a.flags.c_contiguous:
        return False
    if a.flags.owndata:
        return True
    base = a.base
    return (type(base) is np.ndarray and base.flags.owndata and base.nbytes == a.nbytes
            and _references(base) == _ALONE + 1)  # held by ``a`` alone


# A leaf gradient of at least this many elements adds in place in parts of ``_ADD_PART`` on
# the engine's threads, as torch's in-place add runs on its threads (8×64×112² float32 on two
# idle cores: 1.05 ms against 1.6 ms in one call); smaller ones in one call.
_ADD_PARALLEL = 1 << 20
_ADD_PART = 1 << 18


def _add_into(total: np.ndarray, g: np.ndarray) -> None:
    """``total += g`` (``total`` C-contiguous, ``g`` of its shape and dtype): element-wise, so
    the same bits in parts on the threads of :func:`~convscope.functional.parallel.tile_map`."""
    if total.size < _ADD_PARALLEL or not g.flags.c_contiguous:
        np.add(total, g, out=total)
        return
    from .functional.parallel import tile_map  # here: convscope.functional imports this module

    flat, add = total.reshape(-1), g.reshape(-1)
    tile_map(lambda i: np.add(flat[i:i + _ADD_PART], add[i:i + _ADD_PART], out=flat[i:i + _ADD_PART]),
             range(0, flat.size, _ADD_PART))


def _topological_order(root: Tensor) -> list[Tensor]:
    """Nodes that require grad, parents before children, without recursion."""
    order: list[Tensor] = []
    seen: set[int] = {id(root)}
    stack: list[tuple[Tensor, int]] = [(root, 0)]
    while stack:
        node, i = stack.pop()
        if i < len(node._parents):
            stack.append((node, i + 1))
            parent = node._parents[i]
            if parent.requires_grad and id(parent) not in seen:
                seen.add(id(parent))
                stack.append((parent, 0))
        else:
            order.append(node)
    return order


def make_result(
    op: str,
    data: np.ndarray | None,
    parents: Sequence[Tensor],
    backward: Backward | None,
    *,
    shape: Sequence[int] | None = None,
    dtype: Any = None,
    attrs: dict | None = None,
) -> Tensor:
    """Build an op's output: ``data`` (or, for meta, ``shape``/``dtype``), the parents and
    the backward closure ``g -> (grad per parent)``. Records the graph only when grad mode
    is on and a parent requires grad."""
    if data is None:
        out = Tensor.meta(shape, dtype if dtype is not None else parents[0].dtype)
    else:
        out = Tensor.wrap(data)
    out.op = op
    if backward is not None and _STATE.grad_enabled and any(p.requires_grad for p in parents):
        out.requires_grad = True
        out._parents = tuple(parents)
        out._backward = backward
    if _STATE.observers:
        for obs in tuple(_STATE.observers):
            obs(op, tuple(parents), out, attrs or {})
    return out


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """Create a tensor from data (copied), like ``torch.tensor``."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def as_tensor(x: Any, like: Tensor | None = None) -> Tensor:
    """Tensors pass through; arrays keep their own dtype. A Python number beside ``like`` is a
    0-d tensor of ``like``'s dtype, or of torch's default dtype for its kind (float32, int64)
    when it is of a higher kind (a float beside integers, an int beside bool), as torch's
    type promotion treats Python numbers."""
    if isinstance(x, Tensor):
        return x
    if like is not None and isinstance(x, (int, float, bool)) and not isinstance(x, np.ndarray):
        higher = like.dtype.kind != "f" if isinstance(x, float) else like.dtype.kind == "b" and not isinstance(x, bool)
        dt = (float32 if isinstance(x, float) else int64) if higher else like.dtype
        return Tensor.wrap(np.asarray(x, dtype=dt))
    return Tensor(x)
