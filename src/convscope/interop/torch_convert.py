"""PyTorch ⇄ convscope: :func:`from_torch` and :func:`to_torch`.

torch is optional: this module imports it only when one of the two functions is called, and
then says which extra to install if it is missing. The work is split by direction
(:mod:`.torch_import`, :mod:`.torch_export`), with the layer table (:mod:`.torch_layers`), the
replayable graph (:mod:`.torch_graph`) and the recording of hand-written forwards
(:mod:`.torch_capture`) shared.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ShapeError
from ..nn.module import Module
from ..tensor import Tensor, no_grad
from . import torch_export, torch_import
from .torch_capture import capture
from .torch_graph import ConversionError, GraphModule

__all__ = ["ConversionError", "GraphModule", "from_torch", "to_torch"]

_RECORD_BATCH = 2  # the batch size of the input a hand-written forward is recorded with
_CHECK_BATCH = 3   # and of the check: a different size shows that the recording generalises
_CHECK_TOLERANCE = 1e-9  # float64, relative to the largest output magnitude


def _import_torch(function: str) -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError(f"convscope.{function} needs PyTorch, which is not installed: "
                          "pip install convscope[torch]") from exc
    return torch


def from_torch(module: Any, input_shape: Sequence[int] | None = None) -> Module:
    """Convert a ``torch.nn.Module`` into a convscope model with the same weights and outputs.

    Every torch module becomes one convscope module under the same name, so ``state_dict``
    keys and shapes are identical and dtypes are kept. Layers convscope.nn has (convolutions
    with any ``padding_mode``, transposed convolutions, every pool, batch/instance/layer/group/
    local response norm, Linear, Flatten, Unflatten, dropout, activations, padding layers,
    pixel and channel shuffles, Identity, Upsample) are
    rebuilt from the same constructor arguments; Sequential, ModuleList and ModuleDict become
    the convscope containers. A module with its own ``forward`` (a model, a residual block) is
    traced with ``torch.fx`` and becomes a :class:`~convscope.interop.torch_graph.GraphModule`
    (printed under the original class name) that replays the graph with convscope ops:
    residual additions, ``torch.cat``, ``F.relu``, ``torch.flatten``, ``x.view(x.size(0), -1)``,
    ``x.mean(...)``, adaptive pooling calls and the other functions in
    :data:`~convscope.interop.torch_graph.FUNCTIONS` and methods in
    :data:`~convscope.interop.torch_graph.METHODS`. In-place calls (``y.relu_()``,
    ``F.relu(y, inplace=True)``, ``ReLU(inplace=True)`` on a value read later) are replayed as
    new tensors that later uses read (:mod:`~convscope.interop.torch_inplace`); one that would
    also change another tensor read later (a view of it) is refused. A forward that reads
    ``self.training`` (``F.dropout(x, p, self.training)``, torchvision's stochastic depth, a
    branch for auxiliary outputs) is traced in both modes, and the converted module runs the
    graph of its current mode. The result runs on real and on meta tensors, with gradients,
    like any convscope model.

    Args:
        module: the torch module (float32 or float64).
        input_shape: optionally, one input's shape, e.g. ``(3, 224, 224)`` (a leading batch
            dimension is also accepted). Then both models run on the same random input of a
            batch of 3, as float64 copies in eval mode, and the outputs must agree within
            1e-9 of the largest output magnitude; otherwise :class:`ConversionError`.

    Returns:
        The convscope model, in the torch module's training mode.

    Raises:
        ConversionError: a layer, function or method convscope does not support, named with
            the torch.fx node, the module it is in, and what to do; a module torch.fx cannot
            trace; or outputs that disagree.
        ImportError: torch is not installed (``pip install convscope[torch]``).

    Shape:
        - Input: what the torch module takes.
        - Output: what the torch module returns, as convscope tensors.

    Example:
        >>> import torch
        >>> import convscope as cs
        >>> from convscope.interop.torch_convert import from_torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
        >>> model = from_torch(net, input_shape=(1, 8, 8))
        >>> model(cs.Tensor.meta((2, 1, 8, 8))).shape
        (2, 144)
        >>> list(model.state_dict()) == list(net.state_dict())
        True
    """
    torch = _import_torch("from_torch")
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch: expected a torch.nn.Module, got {type(module).__name__}")
    if isinstance(module, torch.jit.ScriptModule):  # compiled: torch.fx has no Python forward to trace
        raise ConversionError(f"from_torch: {type(module).__name__} is a TorchScript module (torch.jit.script or "
                              "torch.jit.trace), which torch.fx cannot trace; pass the nn.Module it was made from")
    model = torch_import.convert_module(torch, module)
    if input_shape is not None:
        _check("from_torch", torch, module, model, input_shape)
    return model


def to_torch(model: Module, input_shape: Sequence[int] | None = None, *, check: bool = True) -> Any:
    """Convert a convscope model into a ``torch.nn.Module`` with the same weights and outputs.

    Layers become the torch layer of the same class, containers the torch containers, and
    ``state_dict`` keys, shapes and dtypes are identical. A model made by :func:`from_torch`
    converts back into a ``torch.fx.GraphModule`` running the same graph. A module with its
    own ``forward`` (the zoo's ResNet, MobileNet, GoogLeNet, SqueezeNet blocks ...) has no graph
    to read, so to_torch records one forward pass on a meta input of ``input_shape`` (see
    :mod:`~convscope.interop.torch_capture`) and writes it as a ``torch.fx.GraphModule``. The
    recording is made in eval mode and holds the ops that ran: Python branches are fixed the
    way they went, as with ``torch.jit.trace``; reshapes and concatenations generalise to other
    batch sizes.

    Args:
        model: the convscope model.
        input_shape: one input's shape, e.g. ``(3, 224, 224)`` (a leading batch dimension is
            also accepted). Required when the model has a module with its own ``forward``.
        check: with ``input_shape``, run both models on the same random input (a batch of 3,
            float64 copies, eval mode) and require outputs within 1e-9 of the largest output
            magnitude; otherwise :class:`ConversionError`.

    Returns:
        The torch module, in the convscope model's training mode.

    Raises:
        ConversionError: a module with its own forward and no ``input_shape``, an op whose
            arguments a recording does not keep (named with the module and the op), or
            outputs that disagree.
        ImportError: torch is not installed (``pip install convscope[torch]``).

    Shape:
        - Input: what the convscope model takes, as a torch tensor.
        - Output: what it returns, as torch tensors.

    Example:
        >>> import torch
        >>> import convscope as cs
        >>> from convscope.interop.torch_convert import to_torch
        >>> net = to_torch(cs.zoo.build("lenet5_modern"))
        >>> net(torch.zeros(2, 1, 32, 32)).shape
        torch.Size([2, 10])
    """
    torch = _import_torch("to_torch")
    if not isinstance(model, Module):
        raise TypeError(f"to_torch: expected a convscope.nn.Module, got {type(model).__name__}")
    custom = [(path, m) for path, m in model.named_modules() if torch_export.is_custom(m)]
    graphs = {}
    if custom:
        if input_shape is None:
            path, first = custom[0]
            where = f"'{path}' ({type(first).__name__})" if path else f"the model ({type(first).__name__})"
            raise ConversionError(f"to_torch: {where} has its own forward, which to_torch records by running the "
                                  "model once; pass input_shape=, e.g. to_torch(model, input_shape=(3, 224, 224)).")
        graphs = capture(model, _batched(model, input_shape, _RECORD_BATCH), torch_export.is_custom)
    result = torch_export.convert_module(torch, model, graphs)
    if input_shape is not None and check:
        _check("to_torch", torch, result, model, input_shape)
    return result


# --- helpers -------------------------------------------------------------------------------------
def _dtype(model: Module) -> np.dtype:
    """The model's floating dtype (float32 when it has no parameters)."""
    dtypes = [t.dtype for t in [*model.parameters(), *model.buffers()] if t.dtype.kind == "f"]
    return dtypes[0] if dtypes else np.dtype(np.float32)


def _batched(model: Module, input_shape: Sequence[int], batch: int) -> tuple[int, ...]:
    """``(batch, *input_shape)``, or ``input_shape`` with its leading (batch) size replaced when
    only that fits the model (found by running it on meta tensors)."""
    shape = tuple(int(s) for s in input_shape)
    candidates = [(batch, *shape)] + ([(batch, *shape[1:])] if len(shape) > 1 else [])
    error: ShapeError | None = None
    for candidate in candidates:
        try:
            with no_grad():
                model(Tensor.meta(candidate, _dtype(model)))
            return candidate
        except ShapeError as exc:
            error = error or exc
    raise error


def _outputs(value: Any) -> list[Any]:
    """The leaves of a (nested) output as ndarrays, or as themselves when not tensors."""
    leaves, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (tuple, list)):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, Tensor):
            leaves.append(item.numpy())
        elif hasattr(item, "detach"):
            leaves.append(item.detach().numpy())
        else:
            leaves.append(item)
    return leaves


def _check(direction: str, torch: Any, torch_model: Any, model: Module, input_shape: Sequence[int]) -> None:
    """Both models on one random float64 input must give the same outputs (see the callers)."""
    ours = copy.deepcopy(model).double().eval()
    theirs = copy.deepcopy(torch_model).double().eval()
    shape = _batched(ours, input_shape, _CHECK_BATCH)
    x = np.random.default_rng(0).standard_normal(shape)
    with no_grad():
        got = _outputs(ours(Tensor(x)))
    with torch.no_grad():
        want = _outputs(theirs(torch.from_numpy(x)))
    if len(got) != len(want):
        raise ConversionError(f"{direction}: the converted model returns {len(got)} outputs, the original {len(want)}")
    for i, (g, w) in enumerate(zip(got, want)):
        if not isinstance(w, np.ndarray):
            if g != w:
                raise ConversionError(f"{direction}: output {i} is {g!r}, the original's is {w!r}")
            continue
        g = np.asarray(g)
        if g.shape != w.shape or not np.array_equal(np.isnan(g), np.isnan(w)):
            raise ConversionError(f"{direction}: output {i} has shape {g.shape} with {int(np.isnan(g).sum())} NaNs, "
                                  f"the original's {w.shape} with {int(np.isnan(w).sum())}")
        finite = np.isfinite(w)
        scale = max(1.0, float(np.abs(w[finite]).max(initial=0)))
        diff = float(np.abs(np.where(finite, g - w, 0)).max(initial=0))
        if not diff <= _CHECK_TOLERANCE * scale or not np.array_equal(g[~finite], w[~finite], equal_nan=True):
            raise ConversionError(f"{direction}: output {i} differs from the original's by up to {diff:.3g} (largest "
                                  f"magnitude {scale:.3g}) on a random float64 input of shape {shape}")
