"""Before anything runs: the model's summary (on meta tensors), the compute check against
the server's limits, and which layer feeds which (for the page's "step into" links).

Call these with the store's engine lock held.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..analyze.render import human
from ..nn.module import Module
from ..tensor import Tensor, observe
from ..trace.core import split_call as trace_split_call
from .errors import ApiError, engine_errors
from .store import ModelEntry, ModelStore

INPUT = "input"
"""The name of the model input in a layer graph."""


def summary_of(entry: ModelEntry) -> dict:
    """The summary (``Summary.to_dict()``) of ``entry`` at its input shape, cached."""
    if entry.summary is None:
        with engine_errors("model_id", f"summary of {entry.name}"):
            entry.summary = entry.summarize().to_dict()
    return entry.summary


def check_compute(store: ModelStore, entry: ModelEntry) -> dict:
    """Refuse (422, kind ``limit``) a model whose forward pass is over the server's MAC or
    parameter bound, or that fails its own shape rules; returns the summary."""
    summary = summary_of(entry)
    limits = store.limits
    if summary["error"]:
        raise ApiError(422, "model", f"{entry.name} cannot run on input {_shape(entry.input_shape)}: "
                                     f"{summary['error']}", "model_id")
    totals = summary["totals"]
    if totals["macs"] > limits.max_macs:
        raise ApiError(422, "limit", f"{entry.name} needs {human(totals['macs'])} MACs per forward pass; this server "
                                     f"runs at most {human(limits.max_macs)} per request (convscope serve --max-macs)",
                       "model_id")
    if totals["params"] > limits.max_params:
        raise ApiError(422, "limit", f"{entry.name} has {human(totals['params'])} parameters; this server builds "
                                     f"models of at most {human(limits.max_params)}", "model_id")
    return summary


def layer_graph(model: Module, input_shape: tuple[int, ...]) -> dict[str, str | None]:
    """Leaf layer call → what made its (first) input: the innermost layer call that output it
    (a leaf where a leaf made it, else a block whose own code did: MobileNet v2's residual
    block), or an op of a module's own forward named as ``summary`` rows it
    (``"layer1.0.add"``: ResNet's ``out += identity``; ``"add#2"`` the second such op of that
    name); ``"input"`` for the model input, None when none of these made it. Each is a name
    :func:`convscope.trace` takes (with ``#k`` for a later call, as
    :func:`convscope.inspect.activations` names a layer's second call ``"path#2"``).

    Runs the model's own ``forward`` once on a meta tensor (shapes only) with hooks.
    """
    made_by: dict[int, str] = {}  # by layer calls
    op_made: dict[int, str] = {}  # by ops of a module's own forward
    graph: dict[str, str | None] = {}
    alive: list[Any] = []  # keep every tensor alive so ids stay unique during the walk
    x = Tensor.meta((1, *input_shape), next((p.dtype for p in model.parameters()), np.float32))
    made_by[id(x)] = INPUT
    calls: dict[str, int] = {}
    running: list[tuple[str, bool]] = []  # the module calls under way: (path, leaf)

    def numbered(name: str) -> str:
        calls[name] = calls.get(name, 0) + 1
        return name if calls[name] == 1 else f"{name}#{calls[name]}"

    def before(path: str, leaf: bool) -> Any:
        return lambda module, args: running.append((path, leaf))

    def after(path: str, leaf: bool) -> Any:
        def hook(module: Module, args: tuple, output: Any) -> None:
            running.pop()
            alive.append((args, output))
            name = numbered(path)
            if leaf:
                first = next((a for a in args if isinstance(a, Tensor)), None)
                graph[name] = None if first is None else made_by.get(id(first), op_made.get(id(first)))
            if isinstance(output, Tensor) and all(output is not a for a in args):
                made_by.setdefault(id(output), name)  # an inner layer's hook runs first
        return hook

    def observer(op: str, parents: tuple, out: Tensor, attrs: dict) -> None:
        path, leaf = running[-1] if running else ("", False)
        if not leaf:
            alive.append(out)
            op_made[id(out)] = numbered(f"{path}.{op}" if path else op)

    handles = []
    for path, m in model.named_modules():
        leaf = bool(path) and not m._modules
        handles.append(m.register_forward_pre_hook(before(path, leaf)))
        if path:
            handles.append(m.register_forward_hook(after(path, leaf)))
    try:
        with engine_errors("model_id", "layer graph"), observe(observer):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return graph


def graph_of(entry: ModelEntry, model: Module) -> dict[str, str | None]:
    if entry.graph is None:
        entry.graph = layer_graph(model, entry.input_shape or ())
    return entry.graph


def split_call(layer: str) -> tuple[str, int]:
    """``"layer1.0.relu#2"`` → ``("layer1.0.relu", 1)``: the path and which call (from 0),
    by :func:`convscope.trace.core.split_call`'s rule."""
    try:
        return trace_split_call(layer)
    except ValueError as err:
        raise ApiError(422, "validation", str(err).removeprefix("trace: "), "layer") from None


def _shape(shape: tuple[int, ...] | None) -> str:
    return "?" if shape is None else "×".join(map(str, shape))
