"""OnnxModel: an ONNX graph as a ``convscope.nn.Module``.

Each node is a submodule (named after the node) and the graph is a list of :class:`Step`
records in topological order; ``forward`` runs them on convscope tensors, so autograd,
meta tensors, hooks and the summary work as for any model. ``run`` is the
onnxruntime-style entry point: named NumPy inputs in, a list of NumPy outputs out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ShapeError
from ..nn.linear import Flatten
from ..nn.module import Module, Parameter, Sequential, training_mode
from ..tensor import Tensor, no_grad
from .onnx_node import OnnxError
from .onnx_ops_shape import Flatten as OnnxFlatten

__all__ = ["GraphInput", "OnnxModel", "Step"]


@dataclass(frozen=True)
class GraphInput:
    """A graph input: its name, element type and dims (None where symbolic or unknown; a
    branch graph's inputs, the outer values it reads, declare neither)."""

    name: str
    dtype: np.dtype | None
    dims: tuple[int | None, ...] | None


@dataclass(frozen=True)
class Step:
    """Run submodule ``module`` on the values named ``inputs``; store its results under
    ``outputs`` ("" for an output the graph does not use); ``release`` names values no
    later step reads."""

    module: str
    node: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    release: tuple[str, ...] = ()


class OnnxModel(Module):
    """An ONNX graph run on the convscope engine (see :func:`~convscope.interop.onnx_load.load_onnx`).

    ``forward(*inputs)`` takes the graph inputs in order and returns the output tensor (a
    tuple for several outputs). Initializers shared by several nodes are the model's own
    parameters (floating point) or buffers; the others belong to the node that uses them.
    Submodules are in eval mode, as ONNX graphs describe inference.

    Shape:
        As the graph declares; ``input_shape`` is the first input's shape without its batch
        dim when it is fully known.
    """

    def __init__(self, inputs: Sequence[GraphInput], outputs: Sequence[str], steps: Sequence[Step],
                 modules: Mapping[str, Module], shared: Mapping[str, tuple[str, np.ndarray, bool]],
                 opset: int) -> None:
        super().__init__()
        self.graph_inputs = tuple(inputs)
        self.output_names = tuple(outputs)
        self.steps = tuple(steps)
        self.opset = opset
        self._shared: dict[str, str] = {}
        for value_name, (attribute, array, learnable) in shared.items():
            if learnable:
                self.register_parameter(attribute, Parameter(Tensor.wrap(array)))
            else:
                self.register_buffer(attribute, Tensor.wrap(array))
            self._shared[value_name] = attribute
        for name, module in modules.items():
            self.add_module(name, module)
        self.eval()

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.graph_inputs]

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        first = self.graph_inputs[0].dims if self.graph_inputs else None
        if not first or len(first) < 2 or any(d is None for d in first[1:]):
            return None
        return tuple(first[1:])

    def forward(self, *inputs: Tensor) -> Any:
        if len(inputs) != len(self.graph_inputs):
            raise OnnxError(f"the graph takes {len(self.graph_inputs)} input(s) ({', '.join(self.input_names)}), "
                            f"got {len(inputs)}")
        values: dict[str, Tensor] = {name: getattr(self, attr) for name, attr in self._shared.items()}
        values.update(zip(self.input_names, inputs))
        for step in self.steps:
            self._run(step, values)
        results = tuple(values[name] for name in self.output_names)
        return results[0] if len(results) == 1 else results

    def _run(self, step: Step, values: dict[str, Tensor]) -> None:
        module = getattr(self, step.module)
        where = f"ONNX node {step.node!r} ({step.op_type})"
        try:
            result = module(*(values[name] for name in step.inputs))
        except ShapeError as err:
            err.message = f"{err.message} [{where}]"
            raise
        except OnnxError:
            raise
        except (ValueError, TypeError, IndexError) as err:
            raise OnnxError(f"{where}: {err}") from err
        results = result if isinstance(result, tuple) else (result,)
        if len(results) < sum(1 for o in step.outputs if o):
            raise OnnxError(f"{where}: produced {len(results)} output(s), the graph uses {len(step.outputs)}")
        for name, value in zip(step.outputs, results):
            if name:
                values[name] = value
        for name in step.release:
            values.pop(name, None)

    def as_sequential(self) -> Sequential:
        """The graph as an ``nn.Sequential`` of its nodes' modules (the same objects, named as
        here; a Flatten of axis 1 as the ``nn.Flatten`` it equals), for the tools that take
        layers run in order (:func:`convscope.export_xlsx`). It must be a chain: one input, one
        output, every node reading only the value the node before it made; else a ValueError
        names the first node that is not."""
        if len(self.graph_inputs) != 1 or len(self.output_names) != 1 or self._shared:
            raise ValueError(f"the ONNX graph has {len(self.graph_inputs)} input(s), {len(self.output_names)} "
                             f"output(s) and {len(self._shared)} shared initializer(s); a chain of layers has one "
                             "input, one output and none shared")
        value = self.input_names[0]
        for step in self.steps:
            made = [name for name in step.outputs if name]
            if step.inputs != (value,) or len(made) != 1:
                reads = ", ".join(step.inputs) or "nothing"
                raise ValueError(f"ONNX node {step.node!r} ({step.op_type}) reads {reads} and makes "
                                 f"{', '.join(made) or 'nothing'}, where a chain of layers reads only "
                                 f"{value!r} and makes one value: the graph is not a chain")
            value = made[0]
        if value != self.output_names[0]:
            raise ValueError(f"the ONNX graph outputs {self.output_names[0]!r}, not its last node's {value!r}: "
                             "it is not a chain of layers")
        chain = Sequential(OrderedDict((step.module, _layer(getattr(self, step.module))) for step in self.steps))
        chain.training = self.training
        return chain

    def run(self, feeds: Mapping[str, Any], output_names: Sequence[str] | None = None) -> list[np.ndarray]:
        """Run the graph like ``onnxruntime.InferenceSession.run``: ``feeds`` maps every input
        name to an array of its declared type and shape; returns the outputs (all, or
        ``output_names``) as ndarrays. Runs without autograd, in eval mode."""
        unknown = sorted(set(feeds) - set(self.input_names))
        if unknown:
            raise OnnxError(f"unknown input name(s) {unknown}; the graph inputs are {self.input_names}")
        tensors = [self._feed(spec, feeds) for spec in self.graph_inputs]
        wanted = list(output_names) if output_names is not None else list(self.output_names)
        missing = [n for n in wanted if n not in self.output_names]
        if missing:
            raise OnnxError(f"unknown output name(s) {missing}; the graph outputs are {list(self.output_names)}")
        with training_mode(self, False), no_grad():
            result = self.forward(*tensors)
        results = dict(zip(self.output_names, result if isinstance(result, tuple) else (result,)))
        return [np.asarray(results[name].numpy()) for name in wanted]

    @staticmethod
    def _feed(spec: GraphInput, feeds: Mapping[str, Any]) -> Tensor:
        if spec.name not in feeds:
            raise OnnxError(f"missing input {spec.name!r}")
        value = feeds[spec.name]
        array = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
        if spec.dtype is not None and array.dtype != spec.dtype:
            raise OnnxError(f"input {spec.name!r}: expected element type {spec.dtype}, got {array.dtype}")
        if spec.dims is not None:
            fits = len(spec.dims) == array.ndim and all(d is None or d == n for d, n in zip(spec.dims, array.shape))
            if not fits:
                want = tuple("?" if d is None else d for d in spec.dims)
                raise OnnxError(f"input {spec.name!r}: expected shape {want}, got {array.shape}")
        return Tensor.wrap(array)

    def extra_repr(self) -> str:
        return f"opset={self.opset}, inputs={self.input_names}, outputs={list(self.output_names)}"


def _layer(module: Module) -> Module:
    """``module``, or for an ONNX Flatten of axis 1 the ``nn.Flatten()`` that computes the same
    on an input of two or more dims, the layer the tools know."""
    return Flatten() if isinstance(module, OnnxFlatten) and module.axis == 1 else module
