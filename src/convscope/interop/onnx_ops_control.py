"""The If node, for graphs whose branch choice is known before running (e.g. a test on a shape).

torch's exporter emits ``If`` where an op's decomposition depends on the input's rank (LRN at
opset 11 and later). Each branch is a graph built at load time as an
:class:`~convscope.interop.onnx_graph.OnnxModel` (a submodule) whose inputs are the
outer-scope values the branches read; the condition must be a known value, as data-dependent
control flow would make the graph's layers depend on the data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..nn.module import Module
from ..tensor import Tensor
from .onnx_graph import OnnxModel
from .onnx_node import NodeSpec, OnnxError, OnnxOp, known

__all__ = ["OPS", "If"]


class If(OnnxOp):
    """Run ``then_branch`` or ``else_branch`` on the outer values they read.

    Shape:
        As the chosen branch's outputs.
    """

    def __init__(self, node: NodeSpec, then_branch: OnnxModel, else_branch: OnnxModel) -> None:
        super().__init__(node)
        self.then_branch = then_branch
        self.else_branch = else_branch

    def compute(self, condition: Tensor, *outer: Tensor) -> Any:
        value = known(condition, "cond", self)
        if value.size != 1:
            raise OnnxError(f"{self.label}: the condition must hold one value, got shape {value.shape}")
        return (self.then_branch if bool(value.reshape(-1)[0]) else self.else_branch)(*outer)


def _if(node: NodeSpec) -> Module:
    branches = node.attr("then_branch"), node.attr("else_branch")
    if not all(isinstance(b, OnnxModel) for b in branches):
        raise node.error("then_branch and else_branch must be graphs")
    if len(branches[0].output_names) != len(branches[1].output_names):
        raise node.error("the branches produce different numbers of outputs")
    return If(node, *branches)


OPS: dict[str, Callable[[NodeSpec], Module]] = {"If": _if}
