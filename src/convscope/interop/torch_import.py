"""torch.nn.Module → convscope.nn: the module tree one-to-one, custom forwards through torch.fx.

Every torch module becomes one convscope module under the same name, so ``state_dict`` keys
are identical:

* layers in :data:`~.torch_layers.SPECS` become the convscope layer of the same class name,
  built from the same constructor arguments;
* ``Sequential``, ``ModuleList`` and ``ModuleDict`` become the convscope containers;
* any other module (a model, a residual block) is traced with ``torch.fx`` and becomes a
  :class:`~.torch_graph.GraphModule` that replays the traced graph with convscope ops. Its own
  parameters and buffers are copied; its children are converted by these same rules, and
  the ones that can run on their own appear in its graph as calls. A custom module that
  torch.fx cannot trace on its own (e.g. it branches on a Python argument its parent passes)
  is traced as part of its parent's graph instead.

The tree is walked as a flat list (children before parents), never recursively.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import nn
from ..nn.module import Module, Parameter
from ..tensor import Tensor
from .torch_graph import (
    FUNCTIONS,
    METHODS,
    TENSOR_ATTRIBUTES,
    ConversionError,
    GraphNode,
    NodeRef,
    graph_module_class,
    map_args,
)
from .torch_inplace import InPlace
from .torch_layers import SPECS, LayerSpec, constructor_kwargs
from .torch_names import callable_name, function_names, numpy_dtype, type_name

# How a torch module converts.
LEAF = "leaf"                # a layer with a convscope twin
SEQUENTIAL = "sequential"    # torch.nn.Sequential
CONTAINER = "container"      # ModuleList / ModuleDict (never called)
GRAPH = "graph"              # a custom module with its own traced graph
INLINE = "inline"            # a custom module traced as part of its parent's graph
UNSUPPORTED = "unsupported"  # a torch.nn layer convscope does not have

_HINT = ("Hint: use layers and functions convscope has (convscope.interop.torch_layers.SPECS, "
         "convscope.interop.torch_graph.FUNCTIONS and METHODS), or convert the supported parts of the model on "
         "their own.")


@dataclass
class _Plan:
    """What one torch module becomes; ``graph`` is its torch.fx graph (kind GRAPH), and
    ``eval_graph`` its graph in eval mode where that differs (None: one graph for both)."""

    module: Any
    path: str
    kind: str
    spec: LayerSpec | None = None
    graph: Any = None
    eval_graph: Any = None
    reason: str = ""
    unit: bool = True  # may appear as a call_module target in a parent's graph
    constants: dict[str, Any] = field(default_factory=dict)  # plain tensor attributes the graph reads

    def where(self) -> str:
        name = type(self.module).__name__
        return f"'{self.path}' ({name})" if self.path else f"the root module ({name})"


def convert_module(torch: Any, root: Any) -> Module:
    """The convscope twin of ``root`` with its weights, buffers, ``requires_grad`` and
    training flags copied (dtypes preserved)."""
    return _Importer(torch, root).run()


class _Importer:
    def __init__(self, torch: Any, root: Any) -> None:
        self.torch = torch
        self.root = root
        self.specs = {getattr(torch.nn, s.name): s for s in SPECS if hasattr(torch.nn, s.name)}
        self.functions = function_names()
        self.plans: dict[int, _Plan] = {}
        self.builtin_rule = torch.fx.Tracer()

    def run(self) -> Module:
        order = list(self.root.named_modules())[::-1]  # every child before its parent
        for path, module in order:
            self.plans[id(module)] = self._classify(path, module)
        nodes = {key: (self._nodes(plan, plan.graph),
                       None if plan.eval_graph is None else self._nodes(plan, plan.eval_graph))
                 for key, plan in self.plans.items() if plan.kind == GRAPH}
        converted: dict[int, Module] = {}
        with nn.meta_parameters():  # the weights are copied below: skip the random initialisation
            for _, module in order:
                converted[id(module)] = self._build(self.plans[id(module)], *nodes.get(id(module), (None, None)),
                                                    converted)
        result = converted[id(self.root)]
        self._copy_state(result, converted)
        return result

    # --- what each module becomes -------------------------------------------------------------
    def _classify(self, path: str, module: Any) -> _Plan:
        nn_ = self.torch.nn
        kind = type(module)
        if kind in self.specs:
            return _Plan(module, path, LEAF, spec=self.specs[kind])
        if kind is nn_.Sequential:
            children = [self.plans[id(c)] for c in module._modules.values() if c is not None]
            unit = all(p.unit and p.kind != UNSUPPORTED for p in children)
            if unit or path:  # a parent traces through the others; a root one is traced below
                return _Plan(module, path, SEQUENTIAL, unit=unit)
        if kind in (nn_.ModuleList, nn_.ModuleDict):
            return _Plan(module, path, CONTAINER, unit=False)
        if self.builtin_rule.is_leaf_module(module, path):
            return _Plan(module, path, UNSUPPORTED)
        units = {key for key, plan in self.plans.items() if plan.unit}
        try:
            graph = _traced(self.torch, module, units, module.training)
        except Exception as exc:  # torch.fx raises many types (TraceError, TypeError, RuntimeError ...)
            plan = _Plan(module, path, INLINE, reason=f"{type(exc).__name__}: {exc}", unit=False)
            if not path:
                raise ConversionError(f"from_torch: torch.fx cannot trace {plan.where()}: {plan.reason}. Hint: "
                                      "symbolic tracing cannot follow Python control flow that depends on tensor "
                                      "values; make that part of forward a submodule, or convert the submodules "
                                      "on their own.") from exc
            return plan
        try:
            other = _traced(self.torch, module, units, not module.training)
        except Exception:  # noqa: BLE001 - the other mode cannot be traced: the current mode's graph serves both
            other = graph
        graph, eval_graph = (graph, other) if module.training else (other, graph)
        return _Plan(module, path, GRAPH, graph=graph, eval_graph=None if str(eval_graph) == str(graph) else eval_graph)

    # --- torch.fx nodes → GraphNode -------------------------------------------------------------
    def _nodes(self, plan: _Plan, graph: Any) -> list[GraphNode]:
        out = []
        changes = InPlace(graph.nodes, _reads_metadata_only)
        for node in graph.nodes:
            args = self._args(node.args, node, plan, changes.latest)
            kwargs = self._args(dict(node.kwargs), node, plan, changes.latest)
            if node.op == "placeholder":
                if str(node.target).startswith("*"):
                    raise ConversionError(f"from_torch: {plan.where()} takes {node.target} in forward; convscope "
                                          "graphs take named arguments only.")
                out.append(GraphNode("placeholder", node.name, node.target, args))
            elif node.op == "get_attr":
                self._check_attribute(node, plan)
                out.append(GraphNode("get_attr", node.name, node.target))
            elif node.op == "call_module":
                self._check_module(node, plan)
                out.append(GraphNode("call_module", node.name, node.target, args, kwargs))
            elif node.op == "call_function":
                name = self._function(node, plan)
                kwargs = self._kwargs(node, plan, FUNCTIONS[name], node.target, name, args, kwargs)
                out.append(GraphNode("call_function", node.name, name, args, kwargs))
            elif node.op == "call_method":
                method = self._method(node, plan, args)
                what = f"Tensor.{node.target}"
                kwargs = self._kwargs(node, plan, METHODS[method], None, what, args, kwargs)
                out.append(GraphNode("call_method", node.name, method, args, kwargs))
            else:
                out.append(GraphNode("output", node.name, "output", args))
            if node.args and isinstance(node.args[0], self.torch.fx.Node):
                self._follow(node, plan, changes)
        return out

    def _follow(self, node: Any, plan: _Plan, changes: InPlace) -> None:
        """Record what ``node`` does to its first argument's memory: changes it in place, or may
        return (a view of) it."""
        source = node.args[0].name
        if self._in_place(node, plan):
            reached = changes.record(source, node.name)
            if reached is not None:
                raise ConversionError(
                    f"from_torch: node '{node.name}' in {plan.where()} changes '{source}' in place, and with it "
                    f"'{reached}' (read later), which shares its memory; convscope replays in-place changes as new "
                    f"tensors and cannot follow that. Hint: assign the result instead, e.g. y = y.relu() for "
                    f"y.relu_().")
        elif self._may_alias(node, plan):
            changes.share(source, node.name)

    def _may_alias(self, node: Any, plan: _Plan) -> bool:
        """Whether torch's ``node`` may return its first argument's memory: a view, a conversion
        to the same dtype, dropout in eval mode, a pass-through layer (``Identity``), or a
        module whose forward may return its input (a ``Sequential`` of such layers, a custom
        forward whose output is its input through such calls)."""
        if node.op == "call_module":
            return self._returns_input(self.plans[id(plan.module.get_submodule(node.target))])
        if node.op == "call_function":
            try:
                name = self.functions.get(node.target) or ""
            except TypeError:  # an unhashable callable
                name = ""
        else:
            name = str(node.target)
        name = name.rpartition(".")[2]
        if name == "getattr":  # x.shape, x.ndim, x.dtype are not tensors; x.T is a view
            return node.args[1] == "T"
        return name in _VIEWS or "dropout" in name

    def _returns_input(self, plan: _Plan) -> bool:
        if plan.kind == LEAF:
            return plan.spec is None or plan.spec.name in _PASS_THROUGH_LAYERS
        if plan.kind == SEQUENTIAL:
            return all(self._returns_input(self.plans[id(child)]) for child in plan.module.children())
        if plan.kind != GRAPH:
            return True
        return any(self._graph_returns_input(graph, plan) for graph in (plan.graph, plan.eval_graph)
                   if graph is not None)

    def _graph_returns_input(self, graph: Any, plan: _Plan) -> bool:
        node = next(n for n in graph.nodes if n.op == "output").args[0]
        while isinstance(node, self.torch.fx.Node) and node.op != "placeholder":
            if not node.args or not isinstance(node.args[0], self.torch.fx.Node) or not (
                    self._in_place(node, plan) or self._may_alias(node, plan)):
                return False
            node = node.args[0]
        return isinstance(node, self.torch.fx.Node)

    def _in_place(self, node: Any, plan: _Plan) -> bool:
        """Whether ``node`` changes its first argument in place: a method such as ``relu_``, a
        function called with ``inplace=True``, or a module built with ``inplace=True``."""
        if node.op == "call_method":
            return node.target not in METHODS and node.target.removesuffix("_") in METHODS
        if node.op == "call_module":
            return getattr(plan.module.get_submodule(node.target), "inplace", False) is True
        if node.op != "call_function":
            return False
        try:
            return inspect.signature(node.target).bind(*node.args, **node.kwargs).arguments.get("inplace") is True
        except (TypeError, ValueError):  # no Python signature (torch's C functions take no inplace flag)
            return False

    def _unsupported(self, node: Any, plan: _Plan, what: str) -> ConversionError:
        return ConversionError(f"from_torch: node '{node.name}' in {plan.where()} calls {what}, which convscope "
                               f"does not support. {_HINT}")

    def _check_module(self, node: Any, plan: _Plan) -> None:
        target = plan.module.get_submodule(node.target)
        if self.plans[id(target)].kind == UNSUPPORTED:
            raise self._unsupported(node, plan, f"{type_name(target)} (module '{node.target}')")

    def _function(self, node: Any, plan: _Plan) -> str:
        try:
            name = self.functions.get(node.target)
        except TypeError:  # an unhashable callable
            name = None
        if name is None:
            raise self._unsupported(node, plan, callable_name(self.torch, node.target))
        if name == "getattr" and node.args[1] not in TENSOR_ATTRIBUTES:
            raise ConversionError(f"from_torch: node '{node.name}' in {plan.where()} reads tensor attribute "
                                  f"'{node.args[1]}'; convscope graphs can read {sorted(TENSOR_ATTRIBUTES)}.")
        return name

    def _method(self, node: Any, plan: _Plan, args: tuple) -> str:
        """The METHODS key that computes ``node``'s value: its own name, or an in-place method's
        (``relu_``) without the underscore."""
        method = node.target if node.target in METHODS else node.target.removesuffix("_")
        if method not in METHODS:
            raise self._unsupported(node, plan, f"Tensor.{node.target}")
        if node.target == "to" and not all(isinstance(a, np.dtype) for a in args[1:]):
            raise ConversionError(f"from_torch: node '{node.name}' in {plan.where()} calls Tensor.to{args[1:]}; "
                                  "convscope converts dtypes only (there are no devices).")
        return method

    def _check_attribute(self, node: Any, plan: _Plan) -> None:
        owner_path, _, name = node.target.rpartition(".")
        owner = plan.module.get_submodule(owner_path)
        value = getattr(owner, name)
        if not isinstance(value, self.torch.Tensor):
            raise ConversionError(f"from_torch: node '{node.name}' in {plan.where()} reads '{node.target}', a "
                                  f"{type(value).__name__}; convscope graphs read parameters and tensors only.")
        if name not in owner._parameters and name not in owner._buffers:
            owner_plan = self.plans[id(owner)]
            if owner_plan.kind not in (GRAPH, INLINE):
                raise ConversionError(f"from_torch: node '{node.name}' in {plan.where()} reads the plain tensor "
                                      f"attribute '{node.target}'; register it as a buffer.")
            owner_plan.constants[name] = value

    def _args(self, value: Any, node: Any, plan: _Plan, latest: Callable[[str], str]) -> Any:
        """torch.fx arguments with convscope values: nodes → NodeRef (to the node that holds
        their value: ``latest``), dtypes → NumPy."""
        torch = self.torch

        def convert(item: Any) -> Any:
            if isinstance(item, torch.fx.Node):
                return NodeRef(latest(item.name))
            if isinstance(item, torch.dtype):
                return numpy_dtype(torch, item, f"node '{node.name}'")
            if item is None or isinstance(item, (bool, int, float, str, type(Ellipsis))):
                return item
            raise ConversionError(f"from_torch: node '{node.name}' in {plan.where()} passes a {type_name(item)} "
                                  f"({item!r}), which convscope has no equivalent for.")

        return map_args(value, convert)

    def _kwargs(self, node: Any, plan: _Plan, fn: Any, torch_fn: Any, what: str, args: tuple,
                kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` without the ones convscope's ``fn`` does not take but that change nothing
        (torch's private ``_stacklevel``, torch's defaults, None); any other mismatch is an error."""
        params = inspect.signature(fn).parameters
        open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        try:
            defaults = {k: p.default for k, p in inspect.signature(torch_fn).parameters.items()}
        except (TypeError, ValueError):  # torch's C functions have no Python signature
            defaults = {}
        kept = {}
        for key, value in kwargs.items():
            if key in params or open_kwargs:
                kept[key] = value
            elif not (key.startswith("_") or value is None or (key in defaults and defaults[key] == value)):
                raise ConversionError(f"from_torch: node '{node.name}' in {plan.where()} calls {what} with "
                                      f"{key}={value!r}, which convscope's {what.split('.')[-1]} does not take.")
        try:
            inspect.signature(fn).bind(*args, **kept)
        except TypeError as exc:
            raise ConversionError(f"from_torch: node '{node.name}' in {plan.where()} calls {what} with arguments "
                                  f"convscope's version does not accept: {exc}.") from None
        return kept

    # --- building the convscope tree ------------------------------------------------------------
    def _build(self, plan: _Plan, nodes: list[GraphNode] | None, eval_nodes: list[GraphNode] | None,
               converted: dict[int, Module]) -> Module:
        module = plan.module
        if plan.kind == UNSUPPORTED:
            raise ConversionError(f"from_torch: module '{plan.path}' is a {type_name(module)}, which convscope "
                                  f"does not support. {_HINT}")
        if plan.kind == LEAF:
            return self._leaf(plan)
        if plan.kind == SEQUENTIAL:
            result: Module = nn.Sequential()
        elif plan.kind == CONTAINER:
            result = nn.ModuleList() if isinstance(module, self.torch.nn.ModuleList) else nn.ModuleDict()
        else:
            result = graph_module_class(type(module).__name__)(nodes, plan.reason, eval_nodes)
            self._own_tensors(plan, result)
        for name, child in module._modules.items():
            result.add_module(name, None if child is None else converted[id(child)])
        return result

    def _leaf(self, plan: _Plan) -> Module:
        torch = self.torch

        def dtype(d: Any) -> np.dtype | None:
            return numpy_dtype(torch, d, plan.where()) if d.is_floating_point else None

        kwargs = constructor_kwargs(plan.spec, plan.module, dtype)
        try:
            return getattr(nn, plan.spec.name)(**kwargs)
        except (ValueError, TypeError) as exc:
            raise ConversionError(f"from_torch: convscope cannot build {plan.where()} with {kwargs}: {exc}") from exc

    def _own_tensors(self, plan: _Plan, target: Module) -> None:
        """Copy a custom module's own parameters, buffers and read tensor constants."""
        module = plan.module
        for name, param in module._parameters.items():
            value = None if param is None else Parameter(self._array(param, plan, name), param.requires_grad)
            target.register_parameter(name, value)
        for name, buf in module._buffers.items():
            value = None if buf is None else Tensor(self._array(buf, plan, name))
            target.register_buffer(name, value, persistent=name not in module._non_persistent_buffers_set)
        for name, const in plan.constants.items():
            target.register_buffer(name, Tensor(self._array(const, plan, name)), persistent=False)

    def _array(self, tensor: Any, plan: _Plan, name: str) -> np.ndarray:
        numpy_dtype(self.torch, tensor.dtype, f"{name} of {plan.where()}")
        return tensor.detach().cpu().numpy().copy()

    def _copy_state(self, result: Module, converted: dict[int, Module]) -> None:
        """Weights and buffers from torch (the layers were built with meta parameters), then
        ``requires_grad`` and the training flags."""
        for module in converted.values():
            for param in module._parameters.values():
                if param is not None and param.is_meta:
                    param.data = np.empty(param.shape, param.dtype)
        result.load_state_dict(self.root.state_dict())
        params = dict(result.named_parameters(remove_duplicate=False))
        for name, param in self.root.named_parameters(remove_duplicate=False):
            params[name].requires_grad_(param.requires_grad)
        for key, module in converted.items():
            module.training = self.plans[key].module.training


# Ops whose torch result may be (a view of) their first argument's memory.
_VIEWS = frozenset({"getitem", "view", "reshape", "flatten", "unflatten", "permute", "transpose",
                    "unsqueeze", "squeeze", "expand", "view_as", "reshape_as", "expand_as", "contiguous", "detach",
                    "to", "float", "double", "identity"})
def _reads_metadata_only(node: Any) -> bool:
    """Whether a torch.fx node reads only its input's shape or dtype (``x.shape``, ``x.size(0)``)."""
    if node.op == "call_function" and node.target is getattr:
        return node.args[1] in TENSOR_ATTRIBUTES - {"T"}
    return node.op == "call_method" and node.target in ("size", "dim", "numel")


# Layers whose torch forward may return their input itself (dropout: in eval mode).
_PASS_THROUGH_LAYERS = frozenset({"Identity", "Flatten", "Unflatten", "Dropout", "Dropout1d", "Dropout2d",
                                  "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"})


def _traced(torch: Any, module: Any, units: set[int], training: bool) -> Any:
    """``module``'s torch.fx graph with it and its descendants in training or eval mode (their
    flags restored after): a forward that reads ``self.training`` (``F.dropout(x, p,
    self.training)``, a branch for auxiliary outputs) records a different graph in each."""
    flags = [(m, m.training) for m in module.modules()]
    try:
        for m, _ in flags:
            m.training = training
        return _tracer(torch, units).trace(module)
    finally:
        for m, flag in flags:
            m.training = flag


def _tracer(torch: Any, units: set[int]) -> Any:
    """A torch.fx tracer that keeps the modules in ``units`` (by id) as calls, besides torch's own
    layers (which it always keeps, so an unsupported one shows up as a node)."""

    class _UnitTracer(torch.fx.Tracer):
        def is_leaf_module(self, module: Any, qualified_name: str) -> bool:
            return id(module) in units or super().is_leaf_module(module, qualified_name)

    return _UnitTracer()
