"""MaxPool, AveragePool, LpPool, GlobalAveragePool and GlobalMaxPool nodes.

A pool whose padding torch can express (the same at both ends, at most half the kernel; no
dilation for average pooling) becomes the ``nn`` layer (``MaxPool2d``, ``AvgPool1d``...):
torch's floor, ceil-mode and ``count_include_pad`` rules are ONNX's. Any other pool pads
explicitly and then runs the engine op with padding 0:

- max: pad with −∞, ``F.max_pool{n}d`` (which has dilation); integer inputs (up to 32 bits)
  run exactly in float64, since the engine's max scan starts from −∞;
- average: ``sum / count`` where both are window sums computed by a depthwise convolution
  with a kernel of ones (``F.conv{n}d``, which has dilation and any padding), the count
  being taken over a 0/1 mask of the cells ONNX counts (real cells, plus the declared
  padding when ``count_include_pad``; never the ceil-mode overhang);
- LP: ``(volume · average(|x|^p))^(1/p)`` with the average counting padding, as the ONNX
  reference computes it (a plain window sum unless a ceil-mode window overhangs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from .. import nn, ops
from ..nn.module import Module
from ..ops import abs as _abs
from ..ops import reshape
from ..tensor import Tensor
from .onnx_geometry import WindowAttrs, Windows, read_window_attrs, split_pads, torch_pad_list
from .onnx_node import NodeSpec, OnnxError, OnnxOp

__all__ = ["OPS", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "MaxPool"]

_MAX = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVG = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}


def _rank(node: NodeSpec, window: WindowAttrs) -> int:
    nd = len(window.kernel or ())
    if nd not in (1, 2, 3):
        raise node.unsupported(f"a {nd}-d kernel_shape (convscope pools 1 to 3 spatial dims)")
    return nd


def _torch_padding(window: WindowAttrs, nd: int) -> tuple[int, ...] | None:
    """The symmetric padding when torch's pools accept it (at most half the kernel)."""
    padding = window.static_padding(nd)
    if padding is None or any(p > k // 2 for p, k in zip(padding, window.kernel)):
        return None
    return padding


class _Pool(OnnxOp):
    """Shared part: the window attributes and the geometry for an input."""

    def __init__(self, node: NodeSpec, window: WindowAttrs) -> None:
        super().__init__(node)
        self.window = window
        self.nd = len(window.kernel)

    def _geometry(self, x: Tensor) -> Windows:
        return self.window.geometry(x.shape[2:], self.window.kernel, self.label)

    def _padded(self, x: Tensor, geo: Windows, value: float) -> Tensor:
        return F.pad(x, torch_pad_list(geo.before, geo.after), value=value)


class MaxPool(_Pool):
    """Max pooling with any ONNX padding, and the optional ``Indices`` output: flat offsets
    into the whole input (row-major within each plane, or column-major with
    ``storage_order=1``), as ONNX defines them.

    Shape:
        - Input: ``(N, C, *L)``
        - Output: ``(N, C, *L_out)`` (and Indices, int64, the same shape).
    """

    def __init__(self, node: NodeSpec, window: WindowAttrs, storage_order: int) -> None:
        super().__init__(node, window)
        self.storage_order = storage_order

    def compute(self, x: Tensor) -> Any:
        geo = self._geometry(x)
        source = x
        if x.dtype.kind != "f":  # the engine's max pool scans from −∞, so integers run exactly in float64
            if x.dtype.itemsize > 4:
                raise OnnxError(f"{self.label}: {x.dtype} max pooling is not supported by convscope")
            source = ops.astype(x, np.float64)
        pool = getattr(F, f"max_pool{self.nd}d")
        want_indices = self.num_outputs > 1 and self.wanted_outputs[1]
        result = pool(self._padded(source, geo, -np.inf), self.window.kernel, self.window.stride(self.nd), 0,
                      self.window.dilation(self.nd), False, want_indices)
        values, plane = result if want_indices else (result, None)
        values = ops.astype(values, x.dtype)
        return (values, self._indices(plane, x.shape, geo)) if want_indices else values

    def _indices(self, plane: Tensor, shape: tuple, geo: Windows) -> Tensor:
        if plane.is_meta:
            return plane
        sizes = shape[2:]
        padded = tuple(n + b + a for n, b, a in zip(sizes, geo.before, geo.after))
        coords = np.unravel_index(plane.numpy(), padded)
        coords = [c - b for c, b in zip(coords, geo.before)]
        order = "F" if self.storage_order else "C"
        within = np.ravel_multi_index(coords, sizes, order=order)
        planes = np.arange(shape[0] * shape[1]).reshape(shape[:2] + (1,) * self.nd)
        return Tensor.wrap((planes * int(np.prod(sizes)) + within).astype(np.int64))


def window_sums(x: Tensor, window: WindowAttrs, nd: int) -> Tensor:
    """Sum of every (dilated, strided) window of an already padded ``(N, C, *P)`` input: a
    depthwise convolution with a kernel of ones."""
    n, c = x.shape[:2]
    ones = Tensor.wrap(np.ones((1, 1) + window.kernel, x.dtype))
    conv = getattr(F, f"conv{nd}d")
    sums = conv(reshape(x, (n * c, 1) + x.shape[2:]), ones, None, window.stride(nd), 0, window.dilation(nd))
    return reshape(sums, (n, c) + sums.shape[2:])


def _count_mask(sizes: tuple, geo: Windows, declared_after: tuple, include_pad: bool, dtype: np.dtype) -> Tensor:
    """``(1, 1, *P)``: 1 on the padded cells ONNX counts in an average (the real ones, plus the
    declared padding with ``include_pad``), 0 elsewhere."""
    mask = np.ones((), dtype)
    for n, b, a, e in zip(sizes, geo.before, geo.after, declared_after):
        j = np.arange(n + b + a)
        line = (j < b + n + e) if include_pad else ((j >= b) & (j < b + n))
        mask = np.multiply.outer(mask, line.astype(dtype))
    return Tensor.wrap(mask.reshape((1, 1) + mask.shape))


class AveragePool(_Pool):
    """Average pooling with any ONNX padding and dilation: window sum over window count.

    Shape:
        - Input: ``(N, C, *L)``
        - Output: ``(N, C, *L_out)``.
    """

    def __init__(self, node: NodeSpec, window: WindowAttrs, count_include_pad: bool) -> None:
        super().__init__(node, window)
        self.count_include_pad = count_include_pad

    def _declared_after(self, geo: Windows) -> tuple[int, ...]:
        """The end padding ONNX declares (explicit, or SAME's computed one); cells past it are
        the ceil-mode overhang, never counted."""
        if self.window.auto_pad == "NOTSET":
            return split_pads(self.window.pads, self.nd)[1]
        return geo.after if self.window.auto_pad != "VALID" else (0,) * self.nd

    def compute(self, x: Tensor) -> Tensor:
        geo = self._geometry(x)
        if x.dtype.kind != "f":
            raise OnnxError(f"{self.label}: expected a floating-point input, got {x.dtype}")
        declared = self._declared_after(geo)
        mask = _count_mask(x.shape[2:], geo, declared, self.count_include_pad, x.dtype)
        counts = window_sums(mask, self.window, self.nd)
        return window_sums(self._padded(x, geo, 0.0), self.window, self.nd) / counts


class LpPool(AveragePool):
    """``(Σ |x|^p)^(1/p)`` per window, as ``volume · average(|x|^p)`` with the padding counted.

    Shape:
        - Input: ``(N, C, *L)``
        - Output: ``(N, C, *L_out)``.
    """

    def __init__(self, node: NodeSpec, window: WindowAttrs, p: float) -> None:
        super().__init__(node, window, True)
        self.p = p

    def compute(self, x: Tensor) -> Tensor:
        volume = float(np.prod(self.window.kernel))
        power = super().compute(_abs(x) ** self.p) * volume
        return power ** (1.0 / self.p)


class _GlobalPool(OnnxOp):
    """Pool every spatial dim down to 1 with the engine's adaptive pool.

    Shape:
        - Input: ``(N, C, *L)`` with 1 to 3 spatial dims
        - Output: ``(N, C, 1, ..., 1)``.
    """

    kind: str

    def compute(self, x: Tensor) -> Tensor:
        nd = x.ndim - 2
        if nd not in (1, 2, 3):
            raise OnnxError(f"{self.label}: expected (N, C) and 1 to 3 spatial dims, got shape {x.shape}")
        return getattr(F, f"adaptive_{self.kind}_pool{nd}d")(x, 1)


class GlobalAveragePool(_GlobalPool):
    kind = "avg"


class GlobalMaxPool(_GlobalPool):
    kind = "max"


def max_pool(node: NodeSpec) -> Module:
    window = read_window_attrs(node, has_ceil=node.version >= 10, has_dilations=node.version >= 10)
    nd = _rank(node, window)
    storage_order = int(node.attr("storage_order", 0)) if node.version >= 8 else 0
    padding = _torch_padding(window, nd)
    dtype = node.input_dtype(0)
    float_input = dtype is not None and dtype.kind == "f"  # integers take MaxPool's float64 detour
    if padding is None or node.wants_output(1) or not float_input:
        return MaxPool(node, window, storage_order)
    return _MAX[nd](window.kernel, window.stride(nd), padding, window.dilation(nd), ceil_mode=window.ceil_mode)


def average_pool(node: NodeSpec) -> Module:
    window = read_window_attrs(node, has_ceil=node.version >= 10, has_dilations=node.version >= 19)
    nd = _rank(node, window)
    include = bool(node.attr("count_include_pad", 0))
    padding = _torch_padding(window, nd)
    if padding is None or window.dilation(nd) != (1,) * nd:
        return AveragePool(node, window, include)
    return _AVG[nd](window.kernel, window.stride(nd), padding, window.ceil_mode, include)


def lp_pool(node: NodeSpec) -> Module:
    window = read_window_attrs(node, has_ceil=node.version >= 18, has_dilations=node.version >= 18)
    _rank(node, window)
    p = float(node.attr("p", 2))
    if p <= 0:
        raise node.error(f"p must be positive, got {p}")
    return LpPool(node, window, p)


OPS: dict[str, Any] = {
    "MaxPool": max_pool, "AveragePool": average_pool, "LpPool": lp_pool,
    "GlobalAveragePool": GlobalAveragePool, "GlobalMaxPool": GlobalMaxPool,
}
