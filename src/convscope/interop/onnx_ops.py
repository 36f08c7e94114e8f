"""The operator table: ONNX op type -> builder of the module that runs the node.

Each family module keeps its own ``OPS``; :func:`build_node` looks a node up, builds its
module, checks that every attribute was understood, and says which node inputs the module
takes at run time (an ``nn`` layer takes its data input only; it owns the rest).
"""

from __future__ import annotations

from ..nn.module import Module
from . import onnx_ops_control, onnx_ops_conv, onnx_ops_math, onnx_ops_norm, onnx_ops_pool, onnx_ops_shape, onnx_resize
from .onnx_node import NodeSpec, OnnxOp

__all__ = ["OPS", "build_node", "supported_ops"]

OPS = {
    **onnx_ops_conv.OPS, **onnx_ops_pool.OPS, **onnx_ops_math.OPS, **onnx_ops_norm.OPS, **onnx_ops_shape.OPS,
    **onnx_resize.OPS, **onnx_ops_control.OPS,
}


def supported_ops() -> list[str]:
    """The ONNX operators convscope runs (default domain), sorted."""
    return sorted(OPS)


def build_node(node: NodeSpec) -> tuple[Module, list[int]]:
    """The module for ``node`` and the positions of the node inputs it takes at run time."""
    builder = OPS.get(node.op_type)
    if builder is None:
        raise node.unsupported(f"operator {node.op_type!r}")
    module = builder(node)
    node.check_all_read()
    if isinstance(module, OnnxOp):
        return module, module.runtime_inputs
    missing = [node.inputs[i] for i in range(1, len(node.inputs)) if node.inputs[i] and i not in node.owned]
    if missing:  # builders only return an nn layer when they own every input but the data
        raise AssertionError(f"internal: {node.label} left inputs {missing} unowned")
    return module, [0]
