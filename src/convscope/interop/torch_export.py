"""convscope.nn → torch.nn: the module tree one-to-one, graphs as ``torch.fx.GraphModule``.

* layers in :data:`~.torch_layers.SPECS` become the torch layer of the same class name;
* ``Sequential``, ``ModuleList`` and ``ModuleDict`` become the torch containers;
* a :class:`~.torch_graph.GraphModule` (what :func:`from_torch` made) and any module with its
  own ``forward`` whose graph was recorded (:mod:`.torch_capture`) become a
  ``torch.fx.GraphModule`` named after the class, holding the converted children, parameters
  and buffers under the same names;
* a module with its own ``forward`` that did not run while recording (or that ran only as
  part of its parent's graph) becomes a torch module that holds its children and refuses to
  be called on its own.

The tree is walked as a flat list (children before parents), never recursively.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .. import nn
from ..nn.module import Module
from .torch_capture import CapturedGraph
from .torch_graph import ConversionError, GraphModule, GraphNode, NodeRef, map_args
from .torch_layers import SPECS, constructor_kwargs
from .torch_names import resolve, torch_dtype

_SIMPLE = frozenset({getattr(nn, s.name) for s in SPECS} | {nn.Sequential, nn.ModuleList, nn.ModuleDict})


def is_custom(module: Module) -> bool:
    """Whether ``module`` runs a hand-written ``forward`` that to_torch must record."""
    return type(module) not in _SIMPLE and not isinstance(module, GraphModule)


def convert_module(torch: Any, model: Module, graphs: dict[int, CapturedGraph]) -> Any:
    """The torch twin of ``model`` with weights, buffers, ``requires_grad`` and training flags
    copied (dtypes preserved); ``graphs`` holds the recorded forward of each custom module."""
    specs = {getattr(nn, s.name): s for s in SPECS}
    order = list(model.named_modules())[::-1]  # every child before its parent
    converted: dict[int, Any] = {}
    for path, module in order:
        converted[id(module)] = _convert(torch, specs, path, module, graphs, converted)
    result = converted[id(model)]
    _copy_state(torch, model, result, converted)
    return result


def _convert(torch: Any, specs: dict, path: str, module: Module, graphs: dict[int, CapturedGraph],
             converted: dict[int, Any]) -> Any:
    spec = specs.get(type(module))
    if spec is not None:
        def dtype(d: np.dtype) -> Any:
            return torch_dtype(torch, d) if d.kind == "f" else None

        kwargs = constructor_kwargs(spec, module, dtype)
        with torch.device("meta"):  # the weights are assigned below: skip torch's initialisation
            try:
                return getattr(torch.nn, spec.name)(**kwargs)
            except (ValueError, TypeError, RuntimeError) as exc:
                raise ConversionError(f"to_torch: torch cannot build '{path}' ({spec.name}) with {kwargs}: "
                                      f"{exc}") from exc
    children = [(name, None if child is None else converted[id(child)]) for name, child in module._modules.items()]
    for kind in ("Sequential", "ModuleList", "ModuleDict"):
        if type(module) is getattr(nn, kind):
            container = getattr(torch.nn, kind)()
            for name, child in children:
                container.add_module(name, child)
            return container
    owner = torch.nn.Module()
    for name, child in children:
        owner.add_module(name, child)
    _own_tensors(torch, module, owner)
    name = type(module).__name__
    if isinstance(module, GraphModule) and module.graph_nodes is not None:
        if module.eval_nodes is not None:
            mode = "training" if module.training else "eval"
            where = f"'{path}' ({name})" if path else f"the root module ({name})"
            warnings.warn(f"to_torch: {where} has one graph for training and another for eval mode (its "
                          f"torch forward read self.training); a torch.fx graph has one: the torch module runs the "
                          f"{mode}-mode graph in either mode", stacklevel=4)
        return _fx_module(torch, owner, module.nodes_for_mode(), name)
    captured = graphs.get(id(module))
    if captured is not None:
        for key, value in captured.constants.items():
            owner.register_buffer(key, torch.from_numpy(value.copy()), persistent=False)
        return _fx_module(torch, owner, captured.nodes, name)
    return _shell(torch, owner, name, path)


def _own_tensors(torch: Any, module: Module, owner: Any) -> None:
    for name, param in module._parameters.items():
        value = None if param is None else torch.nn.Parameter(_tensor(torch, param, name), param.requires_grad)
        owner.register_parameter(name, value)
    for name, buf in module._buffers.items():
        value = None if buf is None else _tensor(torch, buf, name)
        owner.register_buffer(name, value, persistent=name not in module._non_persistent_buffers_set)


def _tensor(torch: Any, value: Any, name: str) -> Any:
    if value.is_meta:
        raise ConversionError(f"to_torch: '{name}' is a meta tensor (shape only); build the model without "
                              "meta_parameters() to convert it.")
    return torch.from_numpy(np.array(value.data, copy=True))


def _fx_module(torch: Any, owner: Any, nodes: list[GraphNode], class_name: str) -> Any:
    """A ``torch.fx.GraphModule`` running ``nodes``, holding ``owner``'s children, parameters
    and buffers in ``owner``'s order (fx copies only the ones the graph names)."""
    graph = torch.fx.Graph()
    env: dict[str, Any] = {}

    def convert(item: Any) -> Any:
        if isinstance(item, NodeRef):
            return env[item.name]
        if isinstance(item, np.dtype):
            return torch_dtype(torch, item)
        return item

    for node in nodes:
        target: Any = node.target
        if node.op == "call_function":
            target = resolve(node.target)
            if target is None:
                raise ConversionError(f"to_torch: {class_name} node '{node.name}' calls {node.target}, which this "
                                      f"torch ({torch.__version__}) does not have")
        args, kwargs = map_args(node.args, convert), map_args(node.kwargs, convert)
        env[node.name] = graph.create_node(node.op, target, args, kwargs, name=node.name)
    module = torch.fx.GraphModule(owner, graph, class_name)
    for store in ("_parameters", "_buffers", "_modules"):
        module.__dict__[store] = dict(owner.__dict__[store])
    module._non_persistent_buffers_set = set(owner._non_persistent_buffers_set)
    return module


def _shell(torch: Any, owner: Any, class_name: str, path: str) -> Any:
    """A torch module with ``owner``'s contents that refuses to run (no recorded forward)."""
    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise ConversionError(f"{class_name} ('{path}') has no converted forward: it did not run on its own while "
                              "to_torch recorded the model. Call the module that contains it.")

    shell = type(class_name, (torch.nn.Module,), {"forward": forward})()
    for store in ("_parameters", "_buffers", "_modules"):
        shell.__dict__[store] = dict(owner.__dict__[store])
    shell._non_persistent_buffers_set = set(owner._non_persistent_buffers_set)
    return shell


def _copy_state(torch: Any, model: Module, result: Any, converted: dict[int, Any]) -> None:
    """Weights and buffers (assigned: the layers were built on torch's meta device), then
    ``requires_grad`` and the training flags."""
    state = {key: _tensor(torch, value, key) for key, value in model.state_dict(keep_vars=True).items()}
    result.load_state_dict(state, strict=True, assign=True)
    params = dict(result.named_parameters(remove_duplicate=False))
    for name, param in model.named_parameters(remove_duplicate=False):
        params[name].requires_grad_(param.requires_grad)
    originals = {id(m): m for m in model.modules()}
    for key, module in converted.items():
        module.training = originals[key].training

