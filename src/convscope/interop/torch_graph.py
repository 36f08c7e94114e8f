"""A recorded forward pass that convscope can replay: the graph half of the PyTorch bridge.

:func:`~convscope.interop.torch_convert.from_torch` turns a ``torch.fx`` graph into a list of
:class:`GraphNode` records and wraps them in a :class:`GraphModule`, which holds the converted
submodules under their torch names and replays the records with convscope ops.
:func:`~convscope.interop.torch_convert.to_torch` reads the same records back into a
``torch.fx`` graph. Functions are named by their torch qualified name (``"torch.cat"``,
``"torch.nn.functional.relu"``, ``"operator.add"``); :data:`FUNCTIONS` and :data:`METHODS`
map them to the convscope op that computes the same thing. Nothing here imports torch.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import functional as F
from .. import ops
from ..nn.module import Module
from ..tensor import Tensor

__all__ = [
    "FUNCTIONS", "METHODS", "TENSOR_ATTRIBUTES", "ConversionError", "GraphModule", "GraphNode", "NodeRef",
    "graph_module_class", "map_args", "references", "substitute",
]


class ConversionError(ValueError):
    """A model (or one node of its graph) that cannot be converted between torch and convscope."""


@dataclass(frozen=True)
class NodeRef:
    """An argument that is the value of an earlier node."""

    name: str


@dataclass(frozen=True)
class GraphNode:
    """One step of a forward pass, in ``torch.fx`` terms.

    ``op`` is ``placeholder`` (target: the argument name; ``args``: its default, if any),
    ``get_attr`` (target: a dotted parameter/buffer path), ``call_module`` (target: a dotted
    submodule path), ``call_function`` (target: a torch qualified name, a key of
    :data:`FUNCTIONS`), ``call_method`` (target: a tensor method name, a key of
    :data:`METHODS`) or ``output`` (``args[0]``: the returned structure). Arguments hold
    :class:`NodeRef` where they use an earlier node's value.
    """

    op: str
    name: str
    target: str
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def _identity(x: Any) -> Any:
    return x


def _tensor_attribute(obj: Any, name: str) -> Any:
    """``getattr`` as traced code uses it (``x.shape``, ``x.ndim``, ``x.dtype``)."""
    return getattr(obj, name)


def _like(method: str) -> Callable[[Tensor, Tensor], Tensor]:
    """``x.view_as(other)`` and friends: reshape or expand to another tensor's shape."""
    return lambda x, other: getattr(x, method)(other.shape)


# Python's operators: convscope tensors implement the same dunder methods, and on ints and
# tuples (traced shape arithmetic) the operator is the plain Python one.
# (``==`` is left out: on convscope tensors it is identity, not element-wise.)
_OPERATORS = ("add", "sub", "mul", "truediv", "floordiv", "mod", "neg", "pos", "pow", "matmul", "getitem",
              "lt", "le", "gt", "ge")

# torch functions with the same signature as a convscope op.
_TORCH = {
    "add": ops.add, "sub": ops.sub, "mul": ops.mul, "div": ops.div, "pow": ops.pow, "matmul": ops.matmul,
    "maximum": ops.maximum, "minimum": ops.minimum, "neg": ops.neg, "exp": ops.exp, "log": ops.log,
    "sqrt": ops.sqrt, "erf": ops.erf, "abs": ops.abs, "clamp": ops.clamp, "sum": ops.sum, "mean": ops.mean,
    "amax": ops.amax,
    "reshape": ops.reshape, "flatten": ops.flatten, "permute": ops.permute, "transpose": ops.transpose,
    "squeeze": ops.squeeze, "unsqueeze": ops.unsqueeze, "cat": ops.cat, "concat": ops.cat, "stack": ops.stack,
    "where": ops.where, "relu": F.relu, "sigmoid": F.sigmoid, "tanh": F.tanh, "softmax": F.softmax,
    "log_softmax": F.log_softmax,
}

# convscope.functional's contract is torch.nn.functional's names and signatures; the helpers it
# adds (shape rules, geometry) have no torch twin and are left out.
_FUNCTIONAL = [name for name in F.__all__ if name[0].islower() and not name.endswith(("_shape", "_geometry"))
               and name != "flatten"]

FUNCTIONS: dict[str, Callable] = {
    **{f"operator.{name}": getattr(operator, name) for name in _OPERATORS},
    "getattr": _tensor_attribute,
    **{f"torch.{name}": fn for name, fn in _TORCH.items()},
    "torch.special.erf": ops.erf,
    **{f"torch.nn.functional.{name}": getattr(F, name) for name in _FUNCTIONAL},
    # torchvision's residual-branch dropout (EfficientNet, ConvNeXt), which torch.fx records as a call
    "torchvision.ops.stochastic_depth.stochastic_depth": F.stochastic_depth,
}
"""torch qualified name → the convscope callable that computes the same value."""

_TENSOR_METHODS = ("add", "sub", "mul", "div", "pow", "matmul", "neg", "exp", "log", "sqrt", "erf", "abs", "clamp",
                   "sum", "mean", "amax", "reshape", "view", "flatten", "permute", "transpose", "unsqueeze",
                   "squeeze", "expand", "size", "dim", "numel", "float", "double", "to")

METHODS: dict[str, Callable] = {
    **{name: getattr(Tensor, name) for name in _TENSOR_METHODS},
    "contiguous": _identity, "clone": _identity, "detach": Tensor.detach,
    "relu": F.relu, "sigmoid": F.sigmoid, "tanh": F.tanh, "softmax": F.softmax, "log_softmax": F.log_softmax,
    "view_as": _like("reshape"), "reshape_as": _like("reshape"), "expand_as": _like("expand"),
}
"""Tensor method name (``x.view(...)`` in torch code) → the convscope callable, self first."""

TENSOR_ATTRIBUTES = frozenset({"shape", "ndim", "dtype", "T"})
"""The tensor attributes traced code may read with ``getattr`` (``x.shape`` ...)."""


def map_args(value: Any, fn: Callable[[Any], Any]) -> Any:
    """``value`` with ``fn`` applied to every leaf, through tuples (plain tuples out), lists,
    dicts and slices, as ``torch.fx`` arguments nest."""
    if isinstance(value, tuple):
        return tuple(map_args(v, fn) for v in value)
    if isinstance(value, list):
        return [map_args(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: map_args(v, fn) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(map_args(value.start, fn), map_args(value.stop, fn), map_args(value.step, fn))
    return fn(value)


def substitute(value: Any, env: dict[str, Any]) -> Any:
    """``value`` with every :class:`NodeRef` replaced by that node's value in ``env``."""
    return map_args(value, lambda v: env[v.name] if isinstance(v, NodeRef) else v)


def references(value: Any) -> Iterator[str]:
    """The node names ``value`` refers to (same nesting as :func:`substitute`)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, NodeRef):
            yield item.name
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, slice):
            stack.extend((item.start, item.stop, item.step))


def _last_uses(nodes: list[GraphNode]) -> list[list[str]]:
    """For each node, the values that no later node reads (freed right after it runs)."""
    last: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for name in references((node.args, node.kwargs)):
            last[name] = i
    frees: list[list[str]] = [[] for _ in nodes]
    for name, i in last.items():
        frees[i].append(name)
    return frees


class GraphModule(Module):
    """A module whose ``forward`` replays a recorded graph with convscope ops.

    It holds the converted submodules, parameters and buffers under the names the original
    module used, so ``state_dict`` keys are the original's. :func:`graph_module_class` makes a
    subclass named after the original class (``BasicBlock``, ``ResNet``), which is what
    ``repr`` and the summary show. ``graph_nodes`` is None for a module whose forward was traced as
    part of its parent's graph (torch.fx could not trace it on its own); calling it directly
    then raises :class:`ConversionError` with the reason. ``eval_nodes``, when not None, is the
    graph the module runs in eval mode (its forward read ``self.training``); ``graph_nodes``
    is then its training-mode graph.

    Shape:
        Whatever the recorded forward takes and returns; meta tensors run through it like
        through any convscope module.
    """

    def __init__(self, nodes: list[GraphNode] | None, inlined_because: str = "",
                 eval_nodes: list[GraphNode] | None = None) -> None:
        super().__init__()
        for graph in (nodes, eval_nodes):
            unknown = [n for n in graph or () if (n.op == "call_function" and n.target not in FUNCTIONS)
                       or (n.op == "call_method" and n.target not in METHODS)]
            if unknown:
                raise ConversionError(f"{type(self).__name__}: node '{unknown[0].name}' calls {unknown[0].target}, "
                                      "which convscope does not implement")
        self.graph_nodes = nodes
        self.eval_nodes = eval_nodes
        self.inlined_because = inlined_because
        self._frees = _last_uses(nodes) if nodes is not None else []
        self._eval_frees = _last_uses(eval_nodes) if eval_nodes is not None else []

    def nodes_for_mode(self) -> list[GraphNode] | None:
        """The graph this module runs in its current mode (training or eval)."""
        return self.graph_nodes if self.training or self.eval_nodes is None else self.eval_nodes

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.graph_nodes is None:
            raise ConversionError(f"{type(self).__name__} has no graph of its own: its forward was converted as part "
                                  f"of its parent's graph ({self.inlined_because}). Call the parent module instead.")
        env: dict[str, Any] = {}
        positional = list(args)
        nodes = self.nodes_for_mode()
        for node, frees in zip(nodes, self._frees if nodes is self.graph_nodes else self._eval_frees):
            if node.op == "output":
                return substitute(node.args[0], env)
            if node.op == "placeholder":
                env[node.name] = self._argument(node, positional, kwargs)
                continue
            if node.op == "get_attr":
                env[node.name] = self._attribute(node.target)
                continue
            call_args, call_kwargs = substitute(node.args, env), substitute(node.kwargs, env)
            if node.op == "call_module":
                env[node.name] = self.get_submodule(node.target)(*call_args, **call_kwargs)
            elif node.op == "call_function":
                env[node.name] = FUNCTIONS[node.target](*call_args, **call_kwargs)
            else:
                env[node.name] = METHODS[node.target](*call_args, **call_kwargs)
            for name in frees:
                env.pop(name, None)
        raise ConversionError(f"{type(self).__name__}: the graph has no output node")

    def _argument(self, node: GraphNode, positional: list[Any], kwargs: dict[str, Any]) -> Any:
        if node.target in kwargs:
            return kwargs[node.target]
        if positional:
            return positional.pop(0)
        if node.args:
            return node.args[0]
        raise TypeError(f"{type(self).__name__}.forward() missing required argument '{node.target}'")

    def _attribute(self, target: str) -> Any:
        owner, _, name = target.rpartition(".")
        return getattr(self.get_submodule(owner), name)

    def graph_text(self) -> str:
        """The recorded graph it runs in its current mode, one node per line (``name = target(args)``)."""
        if self.graph_nodes is None:
            return f"(inlined into the parent graph: {self.inlined_because})"
        lines = []
        for node in self.nodes_for_mode():
            args = ", ".join([_text(a) for a in node.args] + [f"{k}={_text(v)}" for k, v in node.kwargs.items()])
            lines.append(f"{node.name} = {node.op} {node.target}({args})")
        return "\n".join(lines)


def _text(value: Any) -> str:
    if isinstance(value, NodeRef):
        return value.name
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_text(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    return repr(value)


_CLASSES: dict[str, type[GraphModule]] = {}


def graph_module_class(name: str) -> type[GraphModule]:
    """A :class:`GraphModule` subclass called ``name`` (one class per name), so a converted
    ``BasicBlock`` prints and summarises as ``BasicBlock``."""
    if name not in _CLASSES:
        _CLASSES[name] = type(name, (GraphModule,), {"__module__": __name__, "__doc__": GraphModule.__doc__})
    return _CLASSES[name]
