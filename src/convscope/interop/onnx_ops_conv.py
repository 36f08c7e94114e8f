"""Conv and ConvTranspose nodes.

A node whose weight (and bias) are initializers it alone uses and whose padding is the same
at both ends becomes the ``convscope.nn`` layer itself (``Conv2d``, ``ConvTranspose1d``...)
holding those initializers, so the summary and hooks see an ordinary layer. Any other node
(asymmetric or ``SAME_*`` padding, ``output_shape``, weights computed in the graph) runs as
a :class:`Conv` / :class:`ConvTranspose` op: zero padding with ``F.pad`` first, then the
engine's convolution with padding 0; a transposed convolution is cropped (or extended) after.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from .. import nn
from ..nn.module import Module, Parameter
from ..tensor import Tensor
from .onnx_geometry import WindowAttrs, read_window_attrs, torch_pad_list, transpose_geometry
from .onnx_node import NodeSpec, OnnxError, OnnxOp

__all__ = ["OPS", "Conv", "ConvTranspose"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_TRANSPOSE = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def _spatial_rank(node: NodeSpec, weight: np.ndarray | None) -> int | None:
    if weight is None:
        return None
    nd = weight.ndim - 2
    if nd not in (1, 2, 3):
        raise node.unsupported(f"a weight of shape {weight.shape} ({nd} spatial dims; convscope has 1 to 3)")
    return nd


def _with_parameters(layer: Module, weight: np.ndarray, bias: np.ndarray | None) -> Module:
    layer.weight = Parameter(Tensor.wrap(weight))
    if bias is not None:
        layer.bias = Parameter(Tensor.wrap(bias.reshape(-1)))
    return layer.eval()


class Conv(OnnxOp):
    """An ONNX Conv the ``nn`` layers cannot express directly: explicit zero padding (any
    ``pads`` or ``auto_pad``), then ``F.conv{1,2,3}d`` with padding 0.

    Shape:
        - Input: ``(N, C_in, *L)``, weight ``(C_out, C_in/group, *k)``, bias ``(C_out,)``
        - Output: ``(N, C_out, *L_out)`` by :func:`~.onnx_geometry.window_geometry`.
    """

    parameter_inputs = (1, 2)
    owned_names = {1: "weight", 2: "bias"}

    def __init__(self, node: NodeSpec, window: WindowAttrs, group: int) -> None:
        super().__init__(node)
        self.window = window
        self.group = group

    def compute(self, x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
        nd = _spatial_dims(self, w)
        geo = self.window.geometry(x.shape[2:], w.shape[2:], self.label)
        padding = self.window.static_padding(nd) or geo.torch_padding()
        if padding is None:
            x, padding = F.pad(x, torch_pad_list(geo.before, geo.after)), 0
        conv = getattr(F, f"conv{nd}d")
        return conv(x, w, b, self.window.stride(nd), padding, self.window.dilation(nd), self.group)


def _spatial_dims(op: OnnxOp, w: Tensor) -> int:
    """Spatial dims of a (transposed) conv weight ``(C, C', *k)``: 1 to 3, as the engine has."""
    nd = w.ndim - 2
    if nd not in (1, 2, 3):
        raise OnnxError(f"{op.label}: weight of shape {w.shape} has {nd} spatial dims; convscope has 1 to 3")
    return nd


class ConvTranspose(OnnxOp):
    """An ONNX ConvTranspose: ``F.conv_transpose{1,2,3}d`` with no padding, then the ONNX crop
    (``pads``, ``auto_pad`` or ``output_shape``) and ``output_padding`` applied with ``F.pad``
    (a negative crop appends zeros), then the bias.

    Shape:
        - Input: ``(N, C_in, *L)``, weight ``(C_in, C_out/group, *k)``, bias ``(C_out,)``
        - Output: ``(N, C_out, *L_out)`` by :func:`~.onnx_geometry.transpose_geometry`.
    """

    parameter_inputs = (1, 2)
    owned_names = {1: "weight", 2: "bias"}

    def __init__(self, node: NodeSpec, window: WindowAttrs, group: int, output_padding: list[int] | None,
                 output_shape: list[int] | None) -> None:
        super().__init__(node)
        self.window = window
        self.group = group
        self.output_padding = output_padding
        self.output_shape = output_shape

    def compute(self, x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
        nd = _spatial_dims(self, w)
        stride, dilation = self.window.stride(nd), self.window.dilation(nd)
        extra = tuple(self.output_padding or (0,) * nd)
        try:
            geo = transpose_geometry(x.shape[2:], w.shape[2:], stride, dilation, self.window.pads, self.window.auto_pad,
                                     extra, self.output_shape)
        except ValueError as err:
            raise OnnxError(f"{self.label}: {err}") from None
        full = getattr(F, f"conv_transpose{nd}d")(x, w, None, stride, 0, 0, self.group, dilation)
        y = F.pad(full, torch_pad_list([-p for p in geo.before], [e - p for e, p in zip(extra, geo.after)]))
        return y if b is None else y + b.reshape((1, -1) + (1,) * nd)


def conv(node: NodeSpec) -> Module:
    weight, bias = node.owned_value(1), node.owned_value(2)
    nd = _spatial_rank(node, node.static.get(1))
    window = read_window_attrs(node, kernel=None if nd is None else node.static[1].shape[2:])
    group = int(node.attr("group", 1))
    if group < 1:
        raise node.error(f"group must be positive, got {group}")
    padding = window.static_padding(nd) if nd is not None else None
    bias_ok = not node.present(2) or bias is not None
    if weight is None or padding is None or not bias_ok:
        return Conv(node, window, group)
    with nn.meta_parameters():
        layer = _CONV[nd](weight.shape[1] * group, weight.shape[0], weight.shape[2:], window.stride(nd), padding,
                          window.dilation(nd), group, bias=bias is not None, dtype=weight.dtype)
    return _with_parameters(layer, weight, bias)


def conv_transpose(node: NodeSpec) -> Module:
    weight, bias = node.owned_value(1), node.owned_value(2)
    nd = _spatial_rank(node, node.static.get(1))
    window = read_window_attrs(node, kernel=None if nd is None else node.static[1].shape[2:])
    group = int(node.attr("group", 1))
    if group < 1:
        raise node.error(f"group must be positive, got {group}")
    output_padding = node.ints("output_padding")
    output_shape = node.ints("output_shape")
    padding = window.static_padding(nd) if nd is not None else None
    extra = tuple(output_padding or (0,) * (nd or 0))
    torch_ok = (weight is not None and padding is not None and output_shape is None
                and (not node.present(2) or bias is not None)
                and all(o < s or o < d for o, s, d in zip(extra, window.stride(nd), window.dilation(nd))))
    if not torch_ok:
        return ConvTranspose(node, window, group, output_padding, output_shape)
    with nn.meta_parameters():
        layer = _CONV_TRANSPOSE[nd](weight.shape[0], weight.shape[1] * group, weight.shape[2:], window.stride(nd),
                                    padding, extra, group, bias=bias is not None, dilation=window.dilation(nd),
                                    dtype=weight.dtype)
    return _with_parameters(layer, weight, bias)


OPS: dict[str, Any] = {"Conv": conv, "ConvTranspose": conv_transpose}
