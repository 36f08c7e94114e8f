"""Shape and data-movement nodes: Concat, Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Pad,
Identity, Constant, Shape, Size, Gather and Slice.

All of them are views, copies or index maps computed with convscope's differentiable ops, so
gradients flow and meta tensors pass through. Inputs that describe the operation (a target
shape, axes, pads, slice bounds, gather indices) must be known values: initializers,
constants, or values computed from shapes (``Shape`` returns real data even for a meta
input, so ``Shape → Gather → Concat → Reshape`` chains work during a summary).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import functional as F
from .. import ops
from ..nn.module import Module
from ..tensor import Tensor
from .onnx_node import NodeSpec, OnnxError, OnnxOp, known, known_ints

__all__ = ["OPS"]


def _axis(op: OnnxOp, axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise OnnxError(f"{op.label}: {what} {axis} is out of range for rank {rank}")
    return axis % rank


class Identity(OnnxOp):
    def compute(self, x: Tensor) -> Tensor:
        return x


class Constant(OnnxOp):
    """The node's constant value, held as the buffer ``value``."""

    def __init__(self, node: NodeSpec, value: np.ndarray) -> None:
        super().__init__(node)
        self.register_buffer("value", Tensor.wrap(value))

    def compute(self) -> Tensor:
        return self.value


def _constant(node: NodeSpec) -> Module:
    given = [name for name in node.attributes]
    if len(given) != 1:
        raise node.error(f"expected exactly one value attribute, got {given or 'none'}")
    name = given[0]
    value = node.attr(name)
    if name == "value":
        array = np.asarray(value)
    elif name in ("value_float", "value_floats"):
        array = np.asarray(value, np.float32)
    elif name in ("value_int", "value_ints"):
        array = np.asarray(value, np.int64)
    else:
        raise node.unsupported(f"a constant given as {name!r}")
    if array.dtype.kind not in "fiub":
        raise node.unsupported(f"a constant of type {array.dtype}")
    return Constant(node, array)


class ConstantOfShape(OnnxOp):
    """A tensor of the given shape filled with ``value`` (a one-element tensor, float32 0 by default)."""

    def __init__(self, node: NodeSpec, value: np.ndarray) -> None:
        super().__init__(node)
        self.fill = value

    def compute(self, shape: Tensor) -> Tensor:
        dims = known_ints(shape, "input", self)
        if min(dims, default=0) < 0:
            raise OnnxError(f"{self.label}: shape {dims} has a negative size")
        return Tensor.wrap(np.full(dims, self.fill.reshape(-1)[0], self.fill.dtype))


def _constant_of_shape(node: NodeSpec) -> Module:
    value = np.asarray(node.attr("value", np.zeros(1, np.float32)))
    if value.size != 1:
        raise node.error(f"value must hold one element, got shape {value.shape}")
    return ConstantOfShape(node, value)


class Shape(OnnxOp):
    """The input's shape (int64), sliced by ``start``/``end`` (Shape-15); real data even for
    a meta input."""

    def __init__(self, node: NodeSpec, start: int, end: int | None) -> None:
        super().__init__(node)
        self.start, self.end = start, end

    def compute(self, x: Tensor) -> Tensor:
        return Tensor.wrap(np.array(x.shape[self.start:self.end], np.int64))


def _shape(node: NodeSpec) -> Module:
    if node.version >= 15:
        return Shape(node, int(node.attr("start", 0)), node.attr("end", None))
    return Shape(node, 0, None)


class Size(OnnxOp):
    """The input's number of elements, an int64 scalar; real data even for a meta input."""

    def compute(self, x: Tensor) -> Tensor:
        return Tensor.wrap(np.array(math.prod(x.shape), np.int64))


class Concat(OnnxOp):
    def __init__(self, node: NodeSpec, axis: int) -> None:
        super().__init__(node)
        self.axis = axis

    def compute(self, *inputs: Tensor) -> Tensor:
        return ops.cat(list(inputs), _axis(self, self.axis, inputs[0].ndim))


class Flatten(OnnxOp):
    """``(∏ shape[:axis], ∏ shape[axis:])``."""

    def __init__(self, node: NodeSpec, axis: int) -> None:
        super().__init__(node)
        self.axis = axis

    def compute(self, x: Tensor) -> Tensor:
        axis = self.axis + x.ndim if self.axis < 0 else self.axis
        if not 0 <= axis <= x.ndim:
            raise OnnxError(f"{self.label}: axis {self.axis} is out of range for a {x.ndim}-d input")
        prod = lambda dims: int(np.prod(dims, dtype=np.int64))
        return ops.reshape(x, (prod(x.shape[:axis]), prod(x.shape[axis:])))


class Reshape(OnnxOp):
    """Reshape to the ``shape`` input: 0 copies the input's size in that position (unless
    ``allowzero``), −1 is inferred."""

    def __init__(self, node: NodeSpec, allow_zero: bool) -> None:
        super().__init__(node)
        self.allow_zero = allow_zero

    def compute(self, x: Tensor, shape: Tensor) -> Tensor:
        target = known_ints(shape, "shape", self)
        if not self.allow_zero:
            for i, s in enumerate(target):
                if s == 0:
                    if i >= x.ndim:
                        raise OnnxError(f"{self.label}: shape {target} copies dim {i} of a {x.ndim}-d input")
                    target[i] = x.shape[i]
        elif 0 in target and -1 in target:
            raise OnnxError(f"{self.label}: shape {target} has both 0 and -1 with allowzero=1")
        return ops.reshape(x, tuple(target))


class Transpose(OnnxOp):
    """The axes of ``x`` in the order ``perm`` (reversed when none is given). A floating-point
    initializer that only a Transpose reads is a weight stored in another layout (convscope
    writes ``F.linear`` on a ``(*, in)`` input as ``x @ Transpose(W)``): a Parameter."""

    parameter_inputs = (0,)

    def __init__(self, node: NodeSpec, perm: list[int] | None) -> None:
        super().__init__(node)
        self.perm = perm

    def compute(self, x: Tensor) -> Tensor:
        return ops.permute(x, tuple(self.perm) if self.perm is not None else tuple(reversed(range(x.ndim))))


class Squeeze(OnnxOp):
    """Remove the listed size-1 axes (all size-1 axes when none are given)."""

    def __init__(self, node: NodeSpec, axes: list[int] | None) -> None:
        super().__init__(node)
        self.axes = axes

    def compute(self, x: Tensor, axes: Tensor | None = None) -> Tensor:
        listed = self.axes if axes is None else known_ints(axes, "axes", self)
        if listed is None:
            drop = {i for i, s in enumerate(x.shape) if s == 1}
        else:
            drop = {_axis(self, a, x.ndim) for a in listed}
            wide = [a for a in sorted(drop) if x.shape[a] != 1]
            if wide:
                raise OnnxError(f"{self.label}: cannot squeeze axes {wide} of shape {x.shape}: their size is not 1")
        return ops.reshape(x, tuple(s for i, s in enumerate(x.shape) if i not in drop))


class Unsqueeze(OnnxOp):
    """Insert size-1 axes at the listed positions of the output."""

    def __init__(self, node: NodeSpec, axes: list[int] | None) -> None:
        super().__init__(node)
        self.axes = axes

    def compute(self, x: Tensor, axes: Tensor | None = None) -> Tensor:
        listed = self.axes if axes is None else known_ints(axes, "axes", self)
        if listed is None:
            raise OnnxError(f"{self.label}: axes are required")
        rank = x.ndim + len(listed)
        inserted = {_axis(self, a, rank) for a in listed}
        if len(inserted) != len(listed):
            raise OnnxError(f"{self.label}: axes {listed} repeat an axis")
        dims = iter(x.shape)
        return ops.reshape(x, tuple(1 if i in inserted else next(dims) for i in range(rank)))


class Expand(OnnxOp):
    """Broadcast to ``shape`` (both ways, as NumPy broadcasting: the output shape is the
    broadcast of the input's shape and ``shape``)."""

    def compute(self, x: Tensor, shape: Tensor) -> Tensor:
        target = known_ints(shape, "shape", self)
        try:
            full = np.broadcast_shapes(x.shape, tuple(target))
        except ValueError:
            raise OnnxError(f"{self.label}: shape {x.shape} cannot be expanded to {target}") from None
        return ops.expand(x, full)


class Gather(OnnxOp):
    """``data`` indexed along ``axis`` by ``indices`` (negative indices count from the end);
    the output shape is ``data.shape[:axis] + indices.shape + data.shape[axis+1:]``."""

    parameter_inputs = (0,)

    def __init__(self, node: NodeSpec, axis: int) -> None:
        super().__init__(node)
        self.axis = axis

    def compute(self, data: Tensor, indices: Tensor) -> Tensor:
        axis = _axis(self, self.axis, data.ndim)
        index = np.asarray(known(indices, "indices", self)).astype(np.int64)
        size = data.shape[axis]
        if index.size and (index.min() < -size or index.max() >= size):
            raise OnnxError(f"{self.label}: indices must lie in [{-size}, {size - 1}] for axis {axis} of shape "
                            f"{data.shape}, got values from {index.min()} to {index.max()}")
        return data[(slice(None),) * axis + (np.where(index < 0, index + size, index),)]


class Slice(OnnxOp):
    """``data[starts:ends:steps]`` along ``axes``, with ONNX's clamping of out-of-range bounds."""

    def __init__(self, node: NodeSpec, bounds: tuple[list[int], list[int], list[int] | None] | None = None) -> None:
        super().__init__(node)
        self.bounds = bounds

    def compute(self, data: Tensor, starts: Tensor | None = None, ends: Tensor | None = None,
                axes: Tensor | None = None, steps: Tensor | None = None) -> Tensor:
        if self.bounds is not None:
            begin, end, listed = self.bounds
            step = [1] * len(begin)
        else:
            begin, end = known_ints(starts, "starts", self), known_ints(ends, "ends", self)
            listed = None if axes is None else known_ints(axes, "axes", self)
            step = [1] * len(begin) if steps is None else known_ints(steps, "steps", self)
        listed = list(range(len(begin))) if listed is None else listed
        if not len(begin) == len(end) == len(listed) == len(step):
            raise OnnxError(f"{self.label}: starts, ends, axes and steps differ in length")
        index: list[Any] = [slice(None)] * data.ndim
        for b, e, a, s in zip(begin, end, listed, step):
            if s == 0:
                raise OnnxError(f"{self.label}: steps must be non-zero")
            axis = _axis(self, a, data.ndim)
            index[axis] = _clamped_slice(b, e, s, data.shape[axis])
        return data[tuple(index)]


def _clamped_slice(begin: int, end: int, step: int, size: int) -> slice:
    """ONNX's bounds: negative values count from the end, then starts and ends are clamped
    to ``[0, size]`` (``[0, size − 1]`` and ``[−1, size − 1]`` for a negative step)."""
    begin = begin + size if begin < 0 else begin
    end = end + size if end < 0 else end
    if step > 0:
        return slice(min(max(begin, 0), size), min(max(end, 0), size), step)
    begin, end = min(max(begin, 0), size - 1), min(max(end, -1), size - 1)
    return slice(begin, None if end < 0 else end, step)


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


class Pad(OnnxOp):
    """Pad (or, for negative pads, crop) with ``F.pad``: ONNX's ``constant``, ``reflect``,
    ``edge`` and ``wrap`` are torch's ``constant``, ``reflect``, ``replicate`` and
    ``circular``. The non-constant modes pad at most the last three dims, of an input with
    one or two dims in front (as torch's)."""

    def __init__(self, node: NodeSpec, mode: str, pads: list[int] | None = None, value: float = 0.0) -> None:
        super().__init__(node)
        self.mode, self.pads, self.value = mode, pads, value

    def compute(self, x: Tensor, pads: Tensor | None = None, constant_value: Tensor | None = None,
                axes: Tensor | None = None) -> Tensor:
        amounts = self.pads if pads is None else known_ints(pads, "pads", self)
        value = self.value if constant_value is None else known(constant_value, "constant_value", self).item()
        listed = (list(range(x.ndim)) if axes is None
                  else [_axis(self, a, x.ndim) for a in known_ints(axes, "axes", self)])
        if len(amounts) != 2 * len(listed):
            raise OnnxError(f"{self.label}: pads must hold {2 * len(listed)} values for axes {listed}, got {amounts}")
        before, after = [0] * x.ndim, [0] * x.ndim
        for i, a in enumerate(listed):
            before[a], after[a] = amounts[i], amounts[len(listed) + i]
        padded = [i for i in range(x.ndim) if before[i] or after[i]]
        if not padded:
            return x
        first = padded[0]
        if self.mode != "constant":  # torch pads the trailing 1-3 dims behind one or two leading dims
            first = 2 if first >= 2 and x.ndim <= 5 else 1
            if padded[0] < first or x.ndim - first > 3:
                raise OnnxError(f"{self.label}: mode {self.mode!r} can pad only the last 1 to 3 dims of an input "
                                f"with one or two dims in front; pads {amounts} on shape {x.shape} are not supported")
        pad = [p for d in reversed(range(first, x.ndim)) for p in (before[d], after[d])]
        return F.pad(x, pad, _PAD_MODES[self.mode], value if self.mode == "constant" else None)


def _pad(node: NodeSpec) -> Module:
    modes = tuple(m for m in _PAD_MODES if m != "wrap" or node.version >= 19)
    mode = node.choice("mode", "constant", modes)
    if node.version < 11:
        return Pad(node, mode, node.ints("pads"), float(node.attr("value", 0.0)))
    return Pad(node, mode)


def _with_axes(cls: type[OnnxOp], inputs_since: int) -> Callable[[NodeSpec], Module]:
    def build(node: NodeSpec) -> Module:
        return cls(node, None if node.version >= inputs_since else node.ints("axes"))

    return build


def _slice(node: NodeSpec) -> Module:
    if node.version >= 10:
        return Slice(node)
    return Slice(node, (node.ints("starts"), node.ints("ends"), node.ints("axes")))


OPS: dict[str, Callable[[NodeSpec], Module]] = {
    "Identity": Identity, "Constant": _constant, "ConstantOfShape": _constant_of_shape, "Shape": _shape,
    "Size": Size,
    "Concat": lambda node: Concat(node, int(node.attr("axis"))),
    "Flatten": lambda node: Flatten(node, int(node.attr("axis", 1))),
    "Reshape": lambda node: Reshape(node, bool(node.attr("allowzero", 0)) if node.version >= 14 else False),
    "Transpose": lambda node: Transpose(node, node.ints("perm")),
    "Squeeze": _with_axes(Squeeze, 13), "Unsqueeze": _with_axes(Unsqueeze, 13),
    "Gather": lambda node: Gather(node, int(node.attr("axis", 0))),
    "Slice": _slice, "Pad": _pad, "Expand": Expand,
}
