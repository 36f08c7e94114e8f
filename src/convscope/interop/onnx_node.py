"""One ONNX node as the operator table sees it, the error types, and the base of the node modules.

The loader decodes each ``NodeProto`` into a :class:`NodeSpec` (plain Python values; nothing
here imports ``onnx``). A builder reads the attributes it understands through
:meth:`NodeSpec.attr`; an attribute left unread is an error (:meth:`NodeSpec.check_all_read`),
so an attribute convscope does not implement can never be ignored silently.

Nodes that have no ``convscope.nn`` twin run as an :class:`OnnxOp`: a module named after the
ONNX operator whose ``compute`` takes the node's inputs in ONNX order. An initializer that
feeds only this node is *owned* by it (a Parameter for weight-like inputs, else a buffer),
so the summary counts it on the layer that uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..nn.module import Module, Parameter
from ..tensor import Tensor

__all__ = ["ONNX_DTYPES", "NodeSpec", "OnnxError", "OnnxOp", "UnsupportedOnnxError", "known", "known_ints"]

_REQUIRED = object()

# ONNX TensorProto.DataType codes of the types convscope runs (the codes are fixed by the ONNX spec).
ONNX_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32), 2: np.dtype(np.uint8), 3: np.dtype(np.int8), 4: np.dtype(np.uint16),
    5: np.dtype(np.int16), 6: np.dtype(np.int32), 7: np.dtype(np.int64), 9: np.dtype(np.bool_),
    11: np.dtype(np.float64), 12: np.dtype(np.uint32), 13: np.dtype(np.uint64),
}


class OnnxError(ValueError):
    """An ONNX model or node that is invalid, or that convscope cannot run as asked."""


class UnsupportedOnnxError(OnnxError):
    """An operator, attribute value or type that convscope does not implement."""


@dataclass
class NodeSpec:
    """A decoded ONNX node.

    ``version`` is the operator version in effect (the schema's ``since_version`` for the
    model's opset); ``static`` holds the value of each input that is an initializer, by input
    position; ``owned`` the positions whose initializer feeds this node only; ``input_types``
    the (rank, element type) that ONNX shape inference found, by input position (None where
    unknown).
    """

    name: str
    op_type: str
    version: int
    inputs: list[str]
    outputs: list[str]
    attributes: dict[str, Any]
    input_names: list[str] = field(default_factory=list)
    static: dict[int, np.ndarray] = field(default_factory=dict)
    owned: set[int] = field(default_factory=set)
    input_types: dict[int, tuple[int | None, np.dtype | None]] = field(default_factory=dict)
    _read: set[str] = field(default_factory=set)

    @property
    def label(self) -> str:
        return f"ONNX node {self.name!r} ({self.op_type}-{self.version})"

    def error(self, what: str) -> OnnxError:
        return OnnxError(f"{self.label}: {what}")

    def unsupported(self, what: str) -> UnsupportedOnnxError:
        return UnsupportedOnnxError(f"{self.label}: {what} is not supported by convscope")

    def attr(self, name: str, default: Any = _REQUIRED) -> Any:
        """The attribute's value (marking it read), ``default`` when absent."""
        self._read.add(name)
        if name in self.attributes:
            return self.attributes[name]
        if default is _REQUIRED:
            raise self.error(f"required attribute {name!r} is missing")
        return default

    def ints(self, name: str, default: Any = None) -> list[int] | None:
        value = self.attr(name, default)
        return None if value is None else [int(v) for v in value]

    def choice(self, name: str, default: str, allowed: Sequence[str]) -> str:
        """A string attribute that must be one of ``allowed`` (the ones convscope implements)."""
        value = self.attr(name, default)
        if value not in allowed:
            raise self.unsupported(f"{name}={value!r} (supported: {', '.join(allowed)})")
        return value

    def check_all_read(self) -> None:
        extra = sorted(set(self.attributes) - self._read)
        if extra:
            raise self.unsupported(f"attribute {', '.join(map(repr, extra))} (for this operator version)")

    def present(self, index: int) -> bool:
        return index < len(self.inputs) and bool(self.inputs[index])

    def owned_value(self, index: int) -> np.ndarray | None:
        """The initializer at ``index`` when this node owns it (feeds no other node)."""
        return self.static.get(index) if index in self.owned else None

    def input_rank(self, index: int) -> int | None:
        return self.input_types.get(index, (None, None))[0]

    def input_dtype(self, index: int) -> np.dtype | None:
        return self.input_types.get(index, (None, None))[1]

    def wants_output(self, index: int) -> bool:
        return index < len(self.outputs) and bool(self.outputs[index])


def known(value: Tensor | None, what: str, node: OnnxOp) -> np.ndarray:
    """The data of an input that must be known to run (a shape, axes, scales...), not a
    meta tensor computed from data."""
    if value is None:
        raise OnnxError(f"{node.label}: input {what!r} is missing")
    if value.is_meta:
        raise OnnxError(f"{node.label}: input {what!r} is computed from data, so its value is unknown on a meta "
                        "tensor; run with real data instead")
    return value.numpy()


def known_ints(value: Tensor | None, what: str, node: OnnxOp) -> list[int]:
    return [int(v) for v in np.asarray(known(value, what, node)).reshape(-1)]


class OnnxOp(Module):
    """A node without a ``convscope.nn`` twin, computed from convscope ops.

    Subclasses read their attributes in ``__init__`` and implement ``compute(*inputs)``,
    whose arguments are the node's inputs in ONNX order (``None`` for an omitted optional
    input) and whose result is a tensor or a tuple with one entry per node output.
    ``parameter_inputs`` lists the input positions that become Parameters when the node
    owns a floating-point initializer there; other owned initializers become buffers. They
    are named by ``owned_names`` (``weight``, ``bias``... as the ``nn`` layers name them),
    else ``<ONNX input name>_value``.

    Shape:
        As the ONNX operator defines it.
    """

    parameter_inputs: tuple[int, ...] = ()
    owned_names: dict[int, str] = {}

    def __init__(self, node: NodeSpec) -> None:
        super().__init__()
        self.onnx_name = node.name
        self.op_type = node.op_type
        self.version = node.version
        self.num_outputs = len(node.outputs)
        self.wanted_outputs = tuple(bool(o) for o in node.outputs)
        self._slots: list[str | None] = []
        for i, name in enumerate(node.inputs):
            value = node.owned_value(i) if name else None
            if not name:
                self._slots.append(None)
            elif value is None:
                self._slots.append("")
            else:
                self._slots.append(self._own(node, i, value))

    @property
    def label(self) -> str:
        return f"ONNX node {self.onnx_name!r} ({self.op_type}-{self.version})"

    def _own(self, node: NodeSpec, index: int, value: np.ndarray) -> str:
        formal = node.input_names[index] if index < len(node.input_names) else f"input{index}"
        name = self.owned_names.get(index) or f"{formal.lower() if formal.isidentifier() else 'input'}_value"
        while name in self._slots or hasattr(self, name):
            name = f"{name}_{index}"
        tensor = Tensor.wrap(value)
        if self.learnable(index) and value.dtype.kind == "f":
            self.register_parameter(name, Parameter(tensor))
        else:
            self.register_buffer(name, tensor)
        return name

    def learnable(self, index: int) -> bool:
        """Whether an owned floating-point initializer at input ``index`` is a Parameter."""
        return index in self.parameter_inputs

    @property
    def runtime_inputs(self) -> list[int]:
        """Input positions fed from the graph at run time (not owned, not omitted)."""
        return [i for i, slot in enumerate(self._slots) if slot == ""]

    def forward(self, *args: Tensor) -> Any:
        it = iter(args)
        full = [None if slot is None else next(it) if slot == "" else getattr(self, slot) for slot in self._slots]
        return self.compute(*full)

    def compute(self, *inputs: Tensor | None) -> Any:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"onnx_name={self.onnx_name!r}"
