"""Before anything runs: the model's summary (on meta tensors), the compute check against
the server's limits, and which layer feeds which (for the page's "step into" links).

Call these with the store's engine lock held.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..analyze.render import human
from ..nn.module import Module
from ..tensor import Tensor
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
    """Leaf layer call → the layer call whose output is its (first) input: the innermost one,
    a leaf where a leaf made it, else a block whose own code made it (a residual block's
    addition, which :func:`convscope.trace` traces as a block); ``"input"`` for the model
    input, None when code outside any layer made it (``relu(out + identity)`` written in a
    block's ``forward``). A layer's second call is named ``"path#2"`` (as
    :func:`convscope.inspect.activations` does).

    Runs the model's own ``forward`` once on a meta tensor (shapes only) with hooks.
    """
    made_by: dict[int, str] = {}
    graph: dict[str, str | None] = {}
    alive: list[Any] = []  # keep every tensor alive so ids stay unique during the walk
    x = Tensor.meta((1, *input_shape), next((p.dtype for p in model.parameters()), np.float32))
    made_by[id(x)] = INPUT

    calls: dict[str, int] = {}

    def hook_for(path: str, leaf: bool) -> Any:
        def hook(module: Module, args: tuple, output: Any) -> None:
            alive.append((args, output))
            calls[path] = calls.get(path, 0) + 1
            name = path if calls[path] == 1 else f"{path}#{calls[path]}"  # as inspect.activations names calls
            if leaf:
                first = next((a for a in args if isinstance(a, Tensor)), None)
                graph[name] = None if first is None else made_by.get(id(first))
            if isinstance(output, Tensor) and all(output is not a for a in args):
                made_by.setdefault(id(output), name)  # an inner layer's hook runs first
        return hook

    handles = [m.register_forward_hook(hook_for(path, not m._modules)) for path, m in model.named_modules() if path]
    try:
        with engine_errors("model_id", "layer graph"):
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
    """``"layer1.0.relu#2"`` → ``("layer1.0.relu", 1)``: the path and which call (from 0)."""
    path, _, n = layer.partition("#")
    if n and not (n.isdigit() and int(n) >= 1):
        raise ApiError(422, "validation", f"layer {layer!r}: a call number after '#' must be 1 or more", "layer")
    return path, int(n) - 1 if n else 0


def _shape(shape: tuple[int, ...] | None) -> str:
    return "?" if shape is None else "×".join(map(str, shape))
