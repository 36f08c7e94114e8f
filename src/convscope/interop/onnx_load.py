"""load_onnx: read an ONNX model into an :class:`~convscope.interop.onnx_graph.OnnxModel`.

The ``onnx`` package parses the file (it is an optional dependency, imported only here and in
the exporter); convscope runs the graph, onnxruntime is never needed. Supported: the default
operator domain at opsets 7 to the newest the installed ``onnx`` knows, tensor inputs of
float32/float64/integer/bool type, and the operators in
:func:`~convscope.interop.onnx_ops.supported_ops`. Anything else is refused with an
:class:`~convscope.interop.onnx_node.OnnxError` naming the node, the operator and what is
missing.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from typing import Any

import numpy as np

from .onnx_graph import GraphInput, OnnxModel, Step
from .onnx_node import ONNX_DTYPES, NodeSpec, OnnxError, UnsupportedOnnxError
from .onnx_ops import build_node

__all__ = ["MIN_OPSET", "OnnxError", "UnsupportedOnnxError", "load_onnx", "require_onnx"]

MIN_OPSET = 7
_DEFAULT_DOMAINS = ("", "ai.onnx")


def require_onnx() -> Any:
    """The ``onnx`` module, or an ImportError saying how to install it."""
    try:
        import onnx
    except ImportError as err:
        raise ImportError("convscope's ONNX support needs the 'onnx' package: pip install convscope[onnx]") from err
    return onnx


def load_onnx(source: str | os.PathLike | bytes | Any) -> OnnxModel:
    """Load an ONNX model (a path, the file's bytes, or an ``onnx.ModelProto``).

    Returns an :class:`~convscope.interop.onnx_graph.OnnxModel`: a ``convscope.nn.Module``
    whose ``forward`` runs the graph on convscope tensors and whose ``run(feeds)`` mirrors
    onnxruntime. Raises :class:`OnnxError` (a ValueError) for a model convscope cannot run.

    >>> model = load_onnx("model.onnx")                       # doctest: +SKIP
    >>> model.run({"input": image})[0].shape                  # doctest: +SKIP
    (1, 1000)
    """
    onnx = require_onnx()
    proto = _read(onnx, source)
    opset = _opset(onnx, proto)
    return _GraphLoader(onnx, opset, _value_types(onnx, proto)).graph(proto.graph)


class _GraphLoader:
    """Builds the steps and modules of a graph, and of the branch graphs its If nodes hold."""

    def __init__(self, onnx: Any, opset: int, types: dict[str, tuple[int | None, np.dtype | None]]) -> None:
        self.onnx, self.opset, self.types = onnx, opset, types

    def initializers(self, graph: Any) -> dict[str, np.ndarray]:
        if len(graph.sparse_initializer):
            raise UnsupportedOnnxError("sparse initializers are not supported by convscope")
        return {t.name: _array(self.onnx, t, f"initializer {t.name!r}") for t in graph.initializer}

    def graph(self, graph: Any, inputs: list[GraphInput] | None = None) -> OnnxModel:
        """An OnnxModel running ``graph``; ``inputs`` are its graph inputs (for a branch, the
        outer-scope values it reads; by default the declared inputs that no initializer fills)."""
        initializers = self.initializers(graph)
        if inputs is None:
            inputs = [_graph_input(self.onnx, v) for v in graph.input if v.name not in initializers]
        outputs = [v.name for v in graph.output]
        nodes = [(proto, self._subgraphs(proto)) for proto in graph.node]
        uses = Counter(name for proto, sub in nodes for name in (*proto.input, *_free(sub)) if name in initializers)
        uses.update(name for name in outputs if name in initializers)
        defined = set(initializers) | {i.name for i in inputs}
        names = _Names()
        modules, steps, runtime_values = {}, [], set()
        for index, (proto, sub) in enumerate(nodes):
            node = _node_spec(self.onnx, proto, index, self.opset, initializers, uses, self.types, sub)
            undefined = [name for name in node.inputs if name and name not in defined]
            if undefined:
                raise OnnxError(f"{node.label}: input(s) {undefined} are not produced by any earlier node, graph "
                                "input or initializer (the graph must be topologically sorted)")
            module, runtime = build_node(node)
            attribute = names.take(node.name)
            modules[attribute] = module
            step_inputs = tuple(node.inputs[i] for i in runtime)
            runtime_values.update(step_inputs)
            steps.append(Step(attribute, node.name, node.op_type, step_inputs, tuple(node.outputs)))
            defined.update(o for o in node.outputs if o)
        missing = [name for name in outputs if name not in defined]
        if missing:
            raise OnnxError(f"graph output(s) {missing} are not produced by the graph")
        shared = {}
        for value in sorted((runtime_values | set(outputs)) & set(initializers)):
            array = initializers[value]
            shared[value] = (names.take(value), array, array.dtype.kind == "f")
        return OnnxModel(inputs, outputs, _with_releases(steps, outputs), modules, shared, self.opset)

    def _subgraphs(self, proto: Any) -> dict[str, tuple[OnnxModel, list[str]]]:
        """The node's graph attributes, built, with the outer values each reads (in one order
        shared by all of the node's branches)."""
        graphs = {a.name: a.g for a in proto.attribute if a.type == self.onnx.AttributeProto.GRAPH}
        if not graphs:
            return {}
        free = list(dict.fromkeys(name for g in graphs.values() for name in _free_names(g)))
        outer = [GraphInput(name, None, None) for name in free]
        return {key: (self.graph(g, outer), free) for key, g in graphs.items()}


def _free_names(graph: Any) -> list[str]:
    """Values a graph (or a graph nested in one of its nodes) reads from enclosing scopes."""
    known = {t.name for t in graph.initializer} | {v.name for v in graph.input}
    free: dict[str, None] = {}
    for proto in graph.node:
        nested = [name for a in proto.attribute if a.g.node for name in _free_names(a.g)]
        for name in (*proto.input, *nested):
            if name and name not in known:
                free[name] = None
        known.update(proto.output)
    return list(free)


def _free(subgraphs: dict[str, tuple[OnnxModel, list[str]]]) -> list[str]:
    return next(iter(subgraphs.values()))[1] if subgraphs else []


def _read(onnx: Any, source: Any) -> Any:
    """The ModelProto of ``source`` (a path, bytes or a ModelProto); an OnnxError naming the
    file for bytes that are no model. Protobuf reads zero bytes as an empty message, so an
    empty file (an export that failed, a download cut short) is refused here, by its graph."""
    if isinstance(source, onnx.ModelProto):
        return source
    data = isinstance(source, (bytes, bytearray))
    where = "" if data else f"{os.fspath(source)}: "
    try:
        proto = onnx.load_model_from_string(bytes(source)) if data else onnx.load(os.fspath(source))
    except OSError:
        raise
    except Exception as err:  # protobuf's DecodeError and friends do not share a useful base class
        raise OnnxError(f"{where}not a readable ONNX model: {err}") from err
    if not proto.HasField("graph"):
        empty = len(source) == 0 if data else os.path.getsize(source) == 0
        raise OnnxError(f"{where}not an ONNX model: {'it is empty' if empty else 'it holds no graph'}")
    return proto


def _opset(onnx: Any, proto: Any) -> int:
    versions = {o.domain: o.version for o in proto.opset_import}
    opset = next((versions[d] for d in _DEFAULT_DOMAINS if d in versions), None)
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        raise UnsupportedOnnxError(f"the model imports no default-domain opset (it imports {versions})")
    if not MIN_OPSET <= opset <= newest:
        raise UnsupportedOnnxError(f"opset {opset} is not supported by convscope: it runs opsets {MIN_OPSET} to "
                                   f"{newest} (the newest the installed onnx package knows)")
    return opset


def _array(onnx: Any, tensor: Any, what: str) -> np.ndarray:
    if tensor.data_type not in ONNX_DTYPES:
        name = onnx.TensorProto.DataType.Name(tensor.data_type)
        raise UnsupportedOnnxError(f"{what} has element type {name}, which convscope does not support")
    return np.array(onnx.numpy_helper.to_array(tensor), copy=True)


def _graph_input(onnx: Any, value: Any) -> GraphInput:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        raise UnsupportedOnnxError(f"graph input {value.name!r} has a {kind or 'missing'} type; convscope runs "
                                   "tensor inputs only")
    tensor_type = value.type.tensor_type
    if tensor_type.elem_type not in ONNX_DTYPES:
        name = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
        raise UnsupportedOnnxError(f"graph input {value.name!r} has element type {name}, which convscope does not "
                                   "support")
    dims = None
    if tensor_type.HasField("shape"):
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
    return GraphInput(value.name, ONNX_DTYPES[tensor_type.elem_type], dims)


def _value_types(onnx: Any, proto: Any) -> dict[str, tuple[int | None, np.dtype | None]]:
    """Value name -> (rank, element type) from ONNX shape inference where it succeeds (used to
    pick ``BatchNorm1d/2d/3d`` and float-only layers); an empty map if inference fails."""
    try:
        inferred = onnx.shape_inference.infer_shapes(proto).graph
    except Exception:  # inference is an optimisation here; the nodes still run without it
        return {}
    types = {}
    for value in (*inferred.input, *inferred.value_info, *inferred.output):
        if value.type.WhichOneof("value") != "tensor_type":
            continue
        tensor_type = value.type.tensor_type
        rank = len(tensor_type.shape.dim) if tensor_type.HasField("shape") else None
        types[value.name] = (rank, ONNX_DTYPES.get(tensor_type.elem_type))
    return types


def _attribute(onnx: Any, attribute: Any, label: str) -> Any:
    value = onnx.helper.get_attribute_value(attribute)
    if attribute.type == onnx.AttributeProto.FLOAT:
        return _decimal(value)
    if attribute.type == onnx.AttributeProto.FLOATS:
        return [_decimal(v) for v in value]
    if isinstance(value, onnx.TensorProto):
        return _array(onnx, value, f"{label}: attribute {attribute.name!r}")
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8") for v in value]
    return value


def _decimal(value: float) -> float:
    """A float attribute (stored as float32) as the shortest decimal that rounds to it: the
    ``1e-6`` the producer wrote, not float32's 9.99999997e-07, which a float64 model would
    otherwise compute with (a layer norm's epsilon, a leaky ReLU's slope)."""
    return float(str(np.float32(value)))


def _node_spec(onnx: Any, proto: Any, index: int, opset: int, initializers: dict[str, np.ndarray],
               uses: Counter, types: dict[str, tuple[int | None, np.dtype | None]],
               subgraphs: dict[str, tuple[OnnxModel, list[str]]]) -> NodeSpec:
    """Decode a node. A node holding branch graphs (If) also takes, after its own inputs, the
    outer values its branches read; its graph attributes are the built branches."""
    name = proto.name or f"{proto.op_type}_{index}"
    if proto.domain not in _DEFAULT_DOMAINS:
        raise UnsupportedOnnxError(f"ONNX node {name!r} ({proto.op_type}): operator domain {proto.domain!r} is not "
                                   "supported by convscope (only the default ONNX domain)")
    try:
        schema = onnx.defs.get_schema(proto.op_type, opset, "")
        version, formal = schema.since_version, [i.name for i in schema.inputs]
    except onnx.defs.SchemaError:
        version, formal = opset, []
    label = f"ONNX node {name!r} ({proto.op_type}-{version})"
    inputs = list(proto.input) + _free(subgraphs)
    input_names = [formal[min(i, len(formal) - 1)] if formal else f"input{i}" for i in range(len(proto.input))]
    input_names += ["outer"] * (len(inputs) - len(input_names))
    static = {i: initializers[n] for i, n in enumerate(inputs) if n in initializers}
    attributes = {a.name: subgraphs[a.name][0] if a.name in subgraphs else _attribute(onnx, a, label)
                  for a in proto.attribute}
    return NodeSpec(
        name=name, op_type=proto.op_type, version=version, inputs=inputs, outputs=list(proto.output),
        attributes=attributes, input_names=input_names,
        static=static, owned={i for i in static if uses[inputs[i]] == 1},
        input_types={i: types[n] for i, n in enumerate(inputs) if n in types})


class _Names:
    """Unique, attribute-safe module names derived from node names."""

    reserved = frozenset({"graph_inputs", "output_names", "steps", "opset", "training"})

    def __init__(self) -> None:
        self.used: set[str] = set()

    def take(self, name: str) -> str:
        base = re.sub(r"\W+", "_", name).strip("_") or "node"
        candidate, n = base, 0
        while candidate in self.used or candidate in self.reserved or hasattr(OnnxModel, candidate):
            n += 1
            candidate = f"{base}_{n}"
        self.used.add(candidate)
        return candidate


def _with_releases(steps: list[Step], outputs: list[str]) -> list[Step]:
    """Attach to each step the values that no later step reads (graph outputs are kept)."""
    last: dict[str, int] = {}
    for i, step in enumerate(steps):
        for name in step.inputs:
            last[name] = i
    keep = set(outputs)
    release: dict[int, list[str]] = {}
    for name, i in last.items():
        if name not in keep:
            release.setdefault(i, []).append(name)
    return [Step(s.module, s.node, s.op_type, s.inputs, s.outputs, tuple(release.get(i, ()))) for i, s in
            enumerate(steps)]
