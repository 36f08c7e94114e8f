"""export_onnx: write a convscope model as an ONNX file that onnxruntime runs.

The model's own ``forward`` runs once on a random input of the given shape, under the
analyzer's walk (:func:`convscope.analyze.walk.walk`: module hooks plus the tensor
observer), so every op is recorded with the layer that ran it. Branches, concatenations
and residual additions are ordinary ops between layers, so any graph that runs is traced,
not only ``Sequential`` stacks. Each op event becomes ONNX nodes through
:data:`~convscope.interop.onnx_emit.EMITTERS`; parameters and buffers become initializers
named by their ``state_dict`` keys. The graph has static shapes (export again for another
batch size). The file passes ``onnx.checker`` and is written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..analyze.walk import output_tensors, walk
from ..atomic import write_atomic
from ..nn.module import Module, training_mode
from ..tensor import Tensor, no_grad
from .onnx_emit import EMITTERS, Event, GraphBuilder
from .onnx_load import require_onnx
from .onnx_node import ONNX_DTYPES, OnnxError

__all__ = ["DEFAULT_OPSET", "export_onnx"]

DEFAULT_OPSET = 17
_DTYPE_CODES = {dtype: code for code, dtype in ONNX_DTYPES.items()}


def export_onnx(model: Module, path: str | os.PathLike, input_shape: Sequence[int], *, batch_size: int = 1,
                opset: int = DEFAULT_OPSET, input_name: str = "input", output_name: str = "output",
                seed: int = 0) -> Any:
    """Export ``model`` to the ONNX file ``path``; returns the ``onnx.ModelProto``.

    ``input_shape`` is one sample's shape, ``(C, H, W)`` as the zoo gives it; the graph's
    input is ``(batch_size, *input_shape)`` in the dtype of the model's parameters (float32
    without any). Runs the model in eval mode (its modes are restored afterwards) on a
    random input drawn with ``seed``. Several outputs are named ``output_0``, ``output_1``...

    >>> export_onnx(cs.zoo.build("resnet18"), "resnet18.onnx", (3, 224, 224))   # doctest: +SKIP
    """
    onnx = require_onnx()
    if not 13 <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"export_onnx: opset must be between 13 and {onnx.defs.onnx_opset_version()}, got {opset}")
    dtype = next((p.dtype for p in model.parameters() if p.dtype.kind == "f"), np.dtype(np.float32))
    shape = (int(batch_size), *(int(s) for s in input_shape))
    x = Tensor.wrap(np.random.default_rng(seed).standard_normal(shape).astype(dtype))
    events, outputs = _trace(model, x)
    names = {id(t): key for key, t in (*model.named_parameters(), *model.named_buffers())}
    graph = GraphBuilder(onnx, opset, names)
    graph.bind(x, input_name)
    for event in events:
        emit = EMITTERS.get(event.op)
        if emit is None:
            raise event.fail("this op has no ONNX export rule in convscope")
        graph.bind(event.output, emit(graph, event, f"{event.path or 'model'}/{event.op}"))
    output_names = [output_name] if len(outputs) == 1 else [f"{output_name}_{i}" for i in range(len(outputs))]
    for tensor, name in zip(outputs, output_names):
        graph.node("Identity", [graph.value(tensor)], name)
    proto = _model(onnx, graph, x, input_name, outputs, output_names, opset)
    _write(proto.SerializeToString(), path)
    return proto


def _trace(model: Module, x: Tensor) -> tuple[list[Event], tuple[Tensor, ...]]:
    with training_mode(model, False), no_grad():
        run = walk(model, (x,))
    if run.error is not None:
        raise run.error
    events = [Event(e.op, e.inputs, e.output, e.attrs, None if e.call is None else run.calls[e.call].module,
                    "" if e.call is None else run.calls[e.call].path) for e in run.events]
    outputs = output_tensors(run.output)
    if not outputs:
        raise OnnxError("export_onnx: the model returned no tensor")
    return events, outputs


def _model(onnx: Any, graph: GraphBuilder, x: Tensor, input_name: str, outputs: Sequence[Tensor],
           output_names: Sequence[str], opset: int) -> Any:
    helper = onnx.helper

    def info(name: str, tensor: Tensor) -> Any:
        return helper.make_tensor_value_info(name, _DTYPE_CODES[tensor.dtype], list(tensor.shape))

    body = helper.make_graph(graph.nodes, "convscope", [info(input_name, x)],
                             [info(n, t) for n, t in zip(output_names, outputs)], list(graph.initializers.values()))
    proto = helper.make_model(body, opset_imports=[helper.make_opsetid("", opset)], producer_name="convscope")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as err:
        raise OnnxError(f"export_onnx: the written graph fails onnx.checker: {err}") from err
    return proto


def _write(data: bytes, path: str | os.PathLike) -> None:
    write_atomic(path, lambda fh: fh.write(data))
