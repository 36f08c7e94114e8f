"""Record the graph of a convscope module's own ``forward``, for :func:`~.torch_convert.to_torch`.

A convscope model with a hand-written ``forward`` (a ResNet block, a GoogLeNet) has no graph to
read, so one forward pass on a *meta* input is recorded: module hooks see every submodule call
and the op observer (:func:`convscope.tensor.observe`) sees every op, each attributed to the
innermost module running. For each module that needs a graph, its direct ops and submodule calls
become :class:`~.torch_graph.GraphNode` records, with ops written as the torch call that
computes the same value (:data:`OP_RULES`). Meta tensors carry no data, so a recorded constant
can never secretly depend on the input.

A recording is made for one input shape. Reshapes are written as ``torch.flatten`` or with a
``-1`` batch dimension where the shapes allow, so the torch graph also runs at other batch
sizes; sizes an op fixed (``interpolate``'s output size) stay fixed.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..functional.norm import layer_norm_affine
from ..nn.module import Module, training_mode
from ..tensor import Tensor, no_grad, observe
from .torch_graph import ConversionError, GraphNode, NodeRef

__all__ = ["OP_RULES", "CapturedGraph", "capture"]

Rule = Callable[[list, tuple, Tensor, dict], tuple[str, tuple, dict]]

_HINT = ("Hint: do it inside a convscope.nn layer (layers convert one to one), or with ops whose arguments a "
         "recording keeps (convscope.interop.torch_capture.OP_RULES).")


@dataclass
class CapturedGraph:
    """One module's recorded forward: the nodes and the constant tensors they read."""

    nodes: list[GraphNode]
    constants: dict[str, np.ndarray] = field(default_factory=dict)


# --- op → torch call --------------------------------------------------------------------------------
def _call(target: str, *attr_names: str) -> Rule:
    """The op is ``target(*inputs, **{name: attrs[name]})``."""
    return lambda refs, parents, out, attrs: (target, tuple(refs), {n: attrs[n] for n in attr_names})


def _reshape(refs: list, parents: tuple, out: Tensor, attrs: dict) -> tuple[str, tuple, dict]:
    """A flatten of some dims if that is what it was; else a reshape keeping the batch dim free."""
    src, dst = parents[0].shape, out.shape
    for start, end in itertools.combinations_with_replacement(range(len(src)), 2):
        if src[:start] + (math.prod(src[start:end + 1]),) + src[end + 1:] == dst:
            return "torch.flatten", (refs[0], start, end), {}
    if src and dst and src[0] == dst[0]:
        return "torch.reshape", (refs[0], (-1,) + dst[1:]), {}
    return "torch.reshape", (refs[0], dst), {}


def _sum(refs: list, parents: tuple, out: Tensor, attrs: dict) -> tuple[str, tuple, dict]:
    """``torch.sum`` over the dims the shapes say were reduced (refused when ambiguous)."""
    src, dst = parents[0].shape, out.shape
    if src == dst:
        return "operator.pos", (refs[0],), {}
    if len(src) == len(dst):
        dims = tuple(i for i, (a, b) in enumerate(zip(src, dst)) if a != b)
        return "torch.sum", (refs[0], dims), {"keepdim": True}
    choices = [dims for dims in itertools.combinations(range(len(src)), len(src) - len(dst))
               if tuple(s for i, s in enumerate(src) if i not in dims) == dst]
    # Several choices agree only when every one of them drops size-1 dims alone.
    if len(choices) > 1 and any(src[d] > 1 for dims in choices for d in dims):
        raise ConversionError(f"cannot tell which dims a sum of {src} → {dst} reduced")
    return "torch.sum", (refs[0], choices[0]), {}


def _layer_norm(refs: list, parents: tuple, out: Tensor, attrs: dict) -> tuple[str, tuple, dict]:
    """``F.layer_norm(x, normalized_shape, weight, bias, eps)``: the op lists the affine inputs given."""
    weight, bias = layer_norm_affine(refs, attrs)
    return _functional("layer_norm"), (refs[0], tuple(attrs["normalized_shape"]), weight, bias, attrs["eps"]), {}


def _conv(target: str) -> Rule:
    def rule(refs: list, parents: tuple, out: Tensor, attrs: dict) -> tuple[str, tuple, dict]:
        pads = attrs["padding"]
        if any(before != after for before, after in pads):
            raise ConversionError(f"{target} with uneven padding {pads} has no torch argument form")
        weight_and_bias = tuple(refs[1:]) if len(refs) == 3 else (refs[1], None)
        return target, (refs[0], *weight_and_bias, attrs["stride"], tuple(b for b, _ in pads), attrs["dilation"],
                        attrs["groups"]), {}

    return rule


def _functional(name: str) -> str:
    return f"torch.nn.functional.{name}"


_POOL_ARGS = ("kernel_size", "stride", "padding")
OP_RULES: dict[str, Rule] = {
    "add": _call("operator.add"), "sub": _call("operator.sub"), "mul": _call("operator.mul"),
    "div": _call("operator.truediv"), "pow": _call("operator.pow"), "matmul": _call("operator.matmul"),
    "neg": _call("operator.neg"),
    **{name: _call(f"torch.{name}") for name in ("maximum", "minimum", "exp", "log", "sqrt", "erf", "abs",
                                                   "sigmoid", "tanh")},
    **{name: _call(_functional(name)) for name in ("relu", "silu", "mish", "hardswish", "hardsigmoid", "logsigmoid",
                                                    "selu", "linear", "prelu")},
    "hardtanh": _call(_functional("hardtanh"), "min_val", "max_val"),
    "leaky_relu": _call(_functional("leaky_relu"), "negative_slope"),
    "elu": _call(_functional("elu"), "alpha"),
    "celu": _call(_functional("celu"), "alpha"),
    "softplus": _call(_functional("softplus"), "beta", "threshold"),
    "gelu": _call(_functional("gelu"), "approximate"),
    "softmax": _call(_functional("softmax"), "dim"),
    "log_softmax": _call(_functional("log_softmax"), "dim"),
    "local_response_norm": _call(_functional("local_response_norm"), "size", "alpha", "beta", "k"),
    "layer_norm": _layer_norm,
    "pad": _call(_functional("pad"), "pad", "mode", "value"),
    "interpolate": _call(_functional("interpolate"), "size", "mode", "align_corners"),
    "reshape": _reshape,
    "cat": lambda refs, parents, out, attrs: ("torch.cat", (list(refs), attrs["dim"]), {}),
    "permute": lambda refs, parents, out, attrs: ("torch.permute", (refs[0], tuple(attrs["dims"])), {}),
    "getitem": lambda refs, parents, out, attrs: ("operator.getitem", (refs[0], attrs["index"]), {}),
    "sum": _sum,
    **{f"max_pool{n}d": _call(_functional(f"max_pool{n}d"), *_POOL_ARGS, "dilation", "ceil_mode") for n in (1, 2, 3)},
    "avg_pool1d": _call(_functional("avg_pool1d"), *_POOL_ARGS, "ceil_mode", "count_include_pad"),
    **{f"avg_pool{n}d": _call(_functional(f"avg_pool{n}d"), *_POOL_ARGS, "ceil_mode", "count_include_pad",
                              "divisor_override") for n in (2, 3)},
    **{f"adaptive_{kind}_pool{n}d": _call(_functional(f"adaptive_{kind}_pool{n}d"), "output_size")
       for kind in ("avg", "max") for n in (1, 2, 3)},
    **{f"conv{n}d": _conv(_functional(f"conv{n}d")) for n in (1, 2, 3)},
    **{f"conv_transpose{n}d": _call(_functional(f"conv_transpose{n}d"), "stride", "padding", "output_padding",
                                    "groups", "dilation") for n in (1, 2, 3)},
}
"""convscope op name (as the op observer reports it) → how to write it as a torch call:
``rule(input_refs, inputs, output, attrs) -> (FUNCTIONS key, args, kwargs)``."""


# --- recording ------------------------------------------------------------------------------------
class _Frame:
    """One module call in progress; records nodes only if ``record``."""

    def __init__(self, module: Module, path: str, record: bool) -> None:
        self.module = module
        self.path = path
        self.record = record
        self.nodes: list[GraphNode] = []
        self.constants: dict[str, np.ndarray] = {}
        self.names: dict[int, str] = {}
        self.keep: list[Any] = []  # every recorded tensor stays alive, so no id is reused
        self.used: set[str] = set()
        if record:
            tensors = itertools.chain(module.named_parameters(remove_duplicate=False),
                                      module.named_buffers(remove_duplicate=False))
            self.attributes = {id(t): name for name, t in tensors}
            self.submodules = {id(m): name for name, m in module.named_modules() if name}

    def where(self) -> str:
        name = type(self.module).__name__
        return f"'{self.path}' ({name})" if self.path else f"the root module ({name})"

    def _fresh(self, base: str) -> str:
        base = base.replace(".", "_") or "node"
        name = base
        for i in itertools.count(1):
            if name not in self.used:
                break
            name = f"{base}_{i}"
        self.used.add(name)
        return name

    def add(self, op: str, base: str, target: str, args: tuple = (), kwargs: dict | None = None,
            value: Any = None) -> NodeRef:
        node = GraphNode(op, self._fresh(base), target, args, kwargs or {})
        self.nodes.append(node)
        if isinstance(value, Tensor):
            self.names[id(value)] = node.name
            self.keep.append(value)
        return NodeRef(node.name)

    def placeholders(self, args: tuple) -> None:
        """One placeholder per positional argument, named after ``forward``'s parameters; the
        tensors of a list or tuple argument (DenseNet's layers take every earlier map) are its items."""
        params = [p.name for p in inspect.signature(self.module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        for i, value in enumerate(args):
            name = self._fresh(params[i] if i < len(params) else f"input_{i}")
            self.nodes.append(GraphNode("placeholder", name, name))
            if isinstance(value, Tensor):
                self.names[id(value)] = name
                self.keep.append(value)
            elif isinstance(value, (list, tuple)):
                for j, item in enumerate(value):
                    if isinstance(item, Tensor):
                        self.add("call_function", f"{name}_{j}", "operator.getitem", (NodeRef(name), j), value=item)

    def ref(self, value: Any) -> Any:
        """The argument form of ``value``: a node, a parameter read, or a constant."""
        if isinstance(value, tuple):
            return tuple(self.ref(v) for v in value)
        if isinstance(value, list):
            return [self.ref(v) for v in value]
        if not isinstance(value, Tensor):
            return value
        key = id(value)
        if key in self.names:
            return NodeRef(self.names[key])
        if key in self.attributes:
            return self.add("get_attr", self.attributes[key], self.attributes[key], value=value)
        if not value.op and not value.is_meta:
            if value.ndim == 0:
                return value.item()
            name = self._fresh("_constant")
            self.constants[name] = value.data.copy()
            return self.add("get_attr", name, name, value=value)
        raise ConversionError(f"to_torch: {self.where()} uses a tensor of shape {value.shape} that is neither an "
                              "argument of its forward, one of its parameters or buffers, nor computed from them by "
                              f"ops that were recorded. {_HINT}")

    def op(self, op: str, parents: tuple, out: Tensor, attrs: dict) -> None:
        rule = OP_RULES.get(op)
        if rule is None:
            raise ConversionError(f"to_torch: {self.where()} computes '{op}' in its forward, which to_torch cannot "
                                  f"write as a torch call from a recording. {_HINT}")
        refs = [self.ref(p) for p in parents]
        try:
            target, args, kwargs = rule(refs, parents, out, attrs)
        except ConversionError as exc:
            raise ConversionError(f"to_torch: {self.where()} computes '{op}': {exc}. {_HINT}") from None
        self.add("call_function", op, target, args, kwargs, value=out)

    def call(self, module: Module, args: tuple, output: Any) -> None:
        target = self.submodules.get(id(module))
        if target is None:
            raise ConversionError(f"to_torch: {self.where()} calls a {type(module).__name__} that is not one of "
                                  "its submodules; register it as an attribute so it can be converted.")
        node = self.add("call_module", target, target, tuple(self.ref(a) for a in args), value=output)
        if isinstance(output, (tuple, list)):
            for i, item in enumerate(output):
                self.add("call_function", f"{node.name}_{i}", "operator.getitem", (node, i), value=item)

    def finish(self, output: Any) -> CapturedGraph:
        self.add("output", "output", "output", (self.ref(output),))
        return CapturedGraph(self.nodes, self.constants)


class _Recorder:
    def __init__(self, root: Module, needs_graph: Callable[[Module], bool]) -> None:
        self.paths = {id(m): p for p, m in root.named_modules()}
        self.needs_graph = needs_graph
        self.stack: list[_Frame] = []
        self.graphs: dict[int, CapturedGraph] = {}

    def pre(self, module: Module, args: tuple) -> None:
        record = self.needs_graph(module) and id(module) not in self.graphs and all(
            f.module is not module for f in self.stack)
        frame = _Frame(module, self.paths.get(id(module), "?"), record)
        if record:
            frame.placeholders(args)
        self.stack.append(frame)

    def post(self, module: Module, args: tuple, output: Any) -> None:
        frame = self.stack.pop()
        if frame.record:
            self.graphs[id(module)] = frame.finish(output)
        if self.stack and self.stack[-1].record:
            self.stack[-1].call(module, args, output)

    def observe(self, op: str, parents: tuple, out: Tensor, attrs: dict) -> None:
        if self.stack and self.stack[-1].record:
            self.stack[-1].op(op, parents, out, attrs)


@contextlib.contextmanager
def _float64_meta(model: Module) -> Iterator[None]:
    """Inside the block every floating parameter of ``model`` is a float64 meta tensor (same
    object, no data) and every floating buffer a float64 copy. Recording then costs no compute
    and no parameter memory, and the Python numbers a forward mixes in (``x * 0.5``) are
    recorded at full precision, not rounded to the model's float32. (Buffers keep data: ops such
    as batch norm read running statistics even for a meta input.)"""
    params = [(t, t.data, t.dtype) for t in model.parameters() if t.dtype.kind == "f" and t.data is not None]
    buffers = [(t, t.data, t.dtype) for t in model.buffers() if t.dtype.kind == "f" and t.data is not None]
    try:
        for tensor, _, _ in params:
            tensor.data, tensor.dtype = None, np.dtype(np.float64)
        for tensor, data, _ in buffers:
            tensor.data = data.astype(np.float64)
            tensor.dtype = tensor.data.dtype
        yield
    finally:
        for tensor, data, dtype in params + buffers:
            tensor.data, tensor.dtype = data, dtype


def capture(model: Module, input_shape: tuple[int, ...],
            needs_graph: Callable[[Module], bool]) -> dict[int, CapturedGraph]:
    """Run ``model`` once on a meta input of ``input_shape`` (in eval mode, without gradients,
    with float64 meta parameters) and return, for every module ``m``
    with ``needs_graph(m)`` that ran, the graph of its first call, keyed by ``id(m)``. The
    model's tensors and training flags are restored afterwards."""
    recorder = _Recorder(model, needs_graph)
    handles = []
    try:
        for module in model.modules():
            handles += [module.register_forward_pre_hook(recorder.pre), module.register_forward_hook(recorder.post)]
        with training_mode(model, False), _float64_meta(model), no_grad(), observe(recorder.observe):
            model(Tensor.meta(input_shape, np.float64))
    finally:
        for handle in handles:
            handle.remove()
    return recorder.graphs
