"""BatchNormalization, InstanceNormalization, LayerNormalization, LRN and Dropout nodes.

An inference BatchNormalization whose four statistics are initializers it alone uses, on an
input of known rank, becomes ``nn.BatchNorm{1,2,3}d`` (weight, bias, running statistics);
otherwise it runs as :class:`BatchNormalization` on ``F.batch_norm``, including ONNX's
training mode (batch statistics, and running statistics updated with the *biased* batch
variance, ``running·momentum + batch·(1 − momentum)``, as ONNX defines it, unlike torch).

A LayerNormalization whose Scale (and B) are initializers it alone uses, shaped as the
normalised dims, that is asked for Y only, becomes ``nn.LayerNorm``; otherwise it runs as
:class:`LayerNormalization` on ``F.layer_norm``, with the Mean and InvStdDev outputs too.

LRN sums ``x²`` over channels ``[c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉]``; torch's window is the
mirror image for an even size, so an even-size LRN runs ``F.local_response_norm`` on the
channel-reversed input and reverses the result back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import functional as F
from .. import nn, ops
from ..nn.module import Module, Parameter
from ..tensor import Tensor
from .onnx_node import NodeSpec, OnnxError, OnnxOp, known

__all__ = ["OPS", "BatchNormalization", "Dropout", "InstanceNormalization", "LRN", "LayerNormalization"]

_BATCH_NORM = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}


class BatchNormalization(OnnxOp):
    """``scale·(x − mean)/√(var + ε) + B`` per channel (axis 1).

    Shape:
        - Input: ``(N, C, *)``; scale, B, mean, var: ``(C,)``
        - Output: ``(N, C, *)``; in training mode also the running mean and variance ``(C,)``.
    """

    parameter_inputs = (1, 2)
    owned_names = {1: "weight", 2: "bias", 3: "running_mean", 4: "running_var"}

    def __init__(self, node: NodeSpec, epsilon: float, momentum: float, training: bool) -> None:
        super().__init__(node)
        self.epsilon, self.momentum, self.training_mode = epsilon, momentum, training

    def compute(self, x: Tensor, scale: Tensor, bias: Tensor, mean: Tensor, var: Tensor) -> Any:
        if not self.training_mode:
            return F.batch_norm(x, mean, var, scale, bias, False, 0.0, self.epsilon)
        y = F.batch_norm(x, None, None, scale, bias, True, 0.1, self.epsilon)
        if self.num_outputs == 1:
            return y
        axes = (0,) + tuple(range(2, x.ndim))
        keep = self.momentum
        running_mean = mean * keep + ops.mean(x, axes) * (1 - keep)
        running_var = var * keep + ops.var(x, axes, correction=0) * (1 - keep)
        return (y, running_mean, running_var)[: self.num_outputs]


def _batch_norm(node: NodeSpec) -> Module:
    epsilon = float(node.attr("epsilon", 1e-5))
    momentum = float(node.attr("momentum", 0.9))
    if node.version < 9 and int(node.attr("spatial", 1)) != 1:
        raise node.unsupported("spatial=0 (statistics per element rather than per channel)")
    training = bool(node.attr("training_mode", 0)) if node.version >= 14 else False
    if not training and any(node.wants_output(i) for i in range(1, len(node.outputs))):
        raise node.unsupported("the running-statistics outputs outside training mode")
    values = [node.owned_value(i) for i in range(1, 5)]
    rank = node.input_rank(0)
    if training or any(v is None for v in values) or rank not in _BATCH_NORM:
        return BatchNormalization(node, epsilon, momentum, training)
    scale, bias, mean, var = values
    with nn.meta_parameters():
        layer = _BATCH_NORM[rank](scale.size, eps=epsilon, dtype=scale.dtype)
    layer.weight, layer.bias = Parameter(Tensor.wrap(scale)), Parameter(Tensor.wrap(bias))
    layer.running_mean, layer.running_var = Tensor.wrap(mean), Tensor.wrap(var)
    return layer.eval()


class InstanceNormalization(OnnxOp):
    """``scale·(x − mean)/√(var + ε) + B`` with each sample's own per-channel statistics.

    Shape:
        - Input: ``(N, C, *)`` with at least one spatial dim; scale, B: ``(C,)``
        - Output: ``(N, C, *)``.
    """

    parameter_inputs = (1, 2)
    owned_names = {1: "weight", 2: "bias"}

    def __init__(self, node: NodeSpec) -> None:
        super().__init__(node)
        self.epsilon = float(node.attr("epsilon", 1e-5))

    def compute(self, x: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
        return F.instance_norm(x, None, None, scale, bias, True, 0.1, self.epsilon)


class LayerNormalization(OnnxOp):
    """``scale·(x − mean)/√(var + ε) + B``, each sample's statistics over dims ``axis`` to the last.

    Scale and B broadcast to those dims (from the right). The Mean and InvStdDev outputs,
    ``1/√(var + ε)``, keep the normalised dims as 1s and have the ``stash_type``, float32.
    Unlike ONNX's function body, which computes in the stash type, a float64 input is
    normalised in float64, as onnxruntime and torch do.

    Shape:
        - Input: X ``(d_0, …, d_{n−1})``; Scale, B: broadcastable to ``(d_axis, …, d_{n−1})``
        - Output: Y as X; Mean, InvStdDev ``(d_0, …, d_{axis−1}, 1, …, 1)``.
    """

    parameter_inputs = (1, 2)
    owned_names = {1: "weight", 2: "bias"}

    def __init__(self, node: NodeSpec, axis: int, epsilon: float) -> None:
        super().__init__(node)
        self.axis, self.epsilon = axis, epsilon

    def compute(self, x: Tensor, scale: Tensor, bias: Tensor | None = None) -> Any:
        axis = self.axis + x.ndim if self.axis < 0 else self.axis
        if not 0 <= axis < x.ndim:
            raise OnnxError(f"{self.label}: axis {self.axis} is out of range for a {x.ndim}-d input")
        shape = x.shape[axis:]
        if scale.shape == shape and (bias is None or bias.shape == shape):
            y = F.layer_norm(x, shape, scale, bias, self.epsilon)
        else:
            y = F.layer_norm(x, shape, eps=self.epsilon) * scale
            y = y if bias is None else y + bias
        if self.num_outputs == 1:
            return y
        dims = tuple(range(axis, x.ndim))
        mean = ops.mean(x, dims, keepdim=True)
        inv_std = 1 / ops.sqrt(ops.var(x, dims, keepdim=True, correction=0) + self.epsilon)
        stash = np.dtype(np.float32)
        return (y, *(t if t.dtype == stash else ops.astype(t, stash) for t in (mean, inv_std)))[: self.num_outputs]


def _layer_norm(node: NodeSpec) -> Module:
    axis, epsilon = int(node.attr("axis", -1)), float(node.attr("epsilon", 1e-5))
    stash_type = int(node.attr("stash_type", 1))
    if stash_type != 1:
        raise node.unsupported(f"stash_type={stash_type} (statistics in a type other than float)")
    rank = node.input_rank(0)
    count = -axis if axis < 0 else None if rank is None else rank - axis
    scale, bias = node.owned_value(1), node.owned_value(2)
    plain = (scale is not None and scale.ndim == count and 1 not in scale.shape  # a 1 may be a broadcast
             and (not node.present(2) or (bias is not None and bias.shape == scale.shape))
             and not any(node.wants_output(i) for i in (1, 2)))
    if not plain:
        return LayerNormalization(node, axis, epsilon)
    with nn.meta_parameters():
        layer = nn.LayerNorm(scale.shape, eps=epsilon, bias=node.present(2), dtype=scale.dtype)
    layer.weight = Parameter(Tensor.wrap(scale))
    if node.present(2):
        layer.bias = Parameter(Tensor.wrap(bias))
    return layer


class LRN(OnnxOp):
    """Local response normalisation with an even ``size`` (see the module docstring).

    Shape:
        - Input: ``(N, C, *)``
        - Output: the same shape.
    """

    def __init__(self, node: NodeSpec, size: int, alpha: float, beta: float, bias: float) -> None:
        super().__init__(node)
        self.size, self.alpha, self.beta, self.bias = size, alpha, beta, bias

    def compute(self, x: Tensor) -> Tensor:
        flip = (slice(None), slice(None, None, -1))
        return F.local_response_norm(x[flip], self.size, self.alpha, self.beta, self.bias)[flip]


def _lrn(node: NodeSpec) -> Module:
    size = int(node.attr("size"))
    alpha, beta, bias = float(node.attr("alpha", 1e-4)), float(node.attr("beta", 0.75)), float(node.attr("bias", 1.0))
    if size < 1:
        raise node.error(f"size must be positive, got {size}")
    if size % 2:
        return nn.LocalResponseNorm(size, alpha, beta, bias)
    return LRN(node, size, alpha, beta, bias)


class Dropout(OnnxOp):
    """The identity at inference (the ratio is read, but nothing is dropped); the optional
    mask output is all True (all ones before Dropout-10). Training mode with a non-zero
    ratio draws random numbers that no other runtime reproduces and is refused.

    Shape:
        - Input: any; output and mask: the same shape.
    """

    def __init__(self, node: NodeSpec, ratio: float) -> None:
        super().__init__(node)
        self.ratio = ratio

    def compute(self, x: Tensor, ratio: Tensor | None = None, training_mode: Tensor | None = None) -> Any:
        training = training_mode is not None and bool(known(training_mode, "training_mode", self).item())
        rate = self.ratio if ratio is None else float(known(ratio, "ratio", self).item())
        if training and rate != 0:
            raise OnnxError(f"{self.label}: training_mode=True with ratio {rate} (random dropout) is not supported "
                            "by convscope")
        if self.num_outputs == 1:
            return x
        mask_type = np.bool_ if self.version >= 10 else x.dtype
        mask = Tensor.meta(x.shape, mask_type) if x.is_meta else Tensor.wrap(np.ones(x.shape, mask_type))
        return x, mask


def _dropout(node: NodeSpec) -> Module:
    if node.version >= 12:
        node.attr("seed", 0)  # only used by random (training) dropout
        return Dropout(node, 0.5)
    return Dropout(node, float(node.attr("ratio", 0.5)))


OPS: dict[str, Callable[[NodeSpec], Module]] = {
    "BatchNormalization": _batch_norm, "InstanceNormalization": InstanceNormalization,
    "LayerNormalization": _layer_norm, "LRN": _lrn,
    "Dropout": _dropout,
}
