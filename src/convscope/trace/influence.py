"""Multi-layer provenance: the input cells that can influence one value, and the gradient.

:func:`influence_mask` starts from the traced cell and moves a boolean mask backwards
through the recorded op calls, in reverse execution order (every consumer of a tensor ran
after it, so when a call is reached its output's mask is complete). Each op sends the mask
to the cells of its inputs that it reads: a convolution, per group, every window cell of
every input channel of that group (stride, dilation and zero padding included); a pool its
whole window or adaptive bin; an element-wise op the same cell; a linear layer all
in-features; additions and other broadcasting ops each operand's cells. Routing ops
(reshape, permute, indexing, concatenation, padding in every mode, interpolation, sums)
send it through their own adjoint applied to the 0/1 mask: they only move or add values
with non-negative coefficients, so their adjoint is exactly their connectivity (reflect,
replicate and circular padding thereby reach the cells they copied).

The mask is structural: it never depends on the input's values. It contains the support of
the gradient (:func:`contributions`) for every input, and equals it when no local
derivative vanishes — convolutions, average pools and linear layers with generic weights
and smooth activations such as tanh or sigmoid. Max pools and ReLUs select: for one input
the gradient reaches only the window winners and active units, a subset of the mask; the
mask is the union of those supports over inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .. import functional as F
from .. import ops
from ..functional.pad import constant_pad_array
from ..functional.pool import _adaptive_cells, _scatter_to_input, pool_geometry
from ..functional.windows import scatter_windows, sliding_windows
from ..nn.module import Module
from ..tensor import Tensor, enable_grad
from .record import Call, Recording, frozen_parameters
from .steps import ELEMENTWISE

Rule = Callable[[Call, np.ndarray], Sequence["np.ndarray | None"]]
RULES: dict[str, Rule] = {}


def _register(*names: str) -> Callable[[Rule], Rule]:
    def add(rule: Rule) -> Rule:
        RULES.update(dict.fromkeys(names, rule))
        return rule
    return add


def _nd(*names: str) -> list[str]:
    return [f"{name}{n}d" for name in names for n in (1, 2, 3)]


def influence_mask(recording: Recording, target: Tensor, index: tuple[int, ...]) -> np.ndarray:
    """Bool mask shaped like the model input: the cells that structurally influence ``target[index]``."""
    source = recording.input
    mask = np.zeros(target.shape, bool)
    mask[index] = True
    if target is source:
        return mask
    depends = recording.depends_on_input()
    start = recording.producer(target)
    if start is None or id(target) not in depends:
        return np.zeros(source.shape, bool)
    masks = {id(target): mask}
    for call in reversed(recording.calls[:start + 1]):
        out_mask = masks.pop(id(call.out), None)
        if out_mask is None:
            continue
        if call.op not in RULES:
            raise ValueError(f"trace.influence: no connectivity rule for op {call.op!r}; supported ops: "
                             f"{', '.join(sorted(RULES))}")
        for parent, parent_mask in zip(call.parents, RULES[call.op](call, out_mask), strict=False):
            if parent_mask is None or id(parent) not in depends:
                continue
            known = masks.get(id(parent))
            masks[id(parent)] = parent_mask if known is None else known | parent_mask
    return masks.get(id(source), np.zeros(source.shape, bool))


def contributions(model: Module, recording: Recording, target: Tensor, index: tuple[int, ...]) -> np.ndarray:
    """The gradient of ``target[index]`` with respect to the model input, by the engine's autograd."""
    source = recording.input
    if target is source:
        grad = np.zeros(source.shape, source.dtype)
        grad[index] = 1
        return grad
    if not target.requires_grad:
        return np.zeros(source.shape, source.dtype)
    seed = np.zeros(target.shape, target.dtype)
    seed[index] = 1
    with frozen_parameters(model):
        source.grad = None
        target.backward(seed)
        grad, source.grad = source.grad, None
    return np.zeros(source.shape, source.dtype) if grad is None else grad


# --- rules: each maps the output mask to one mask (or None) per parent ---------------------------
@_register(*ELEMENTWISE, "clamp", "to", "dropout", "dropout1d", "dropout2d", "dropout3d")
def _same_cell(call: Call, mask: np.ndarray) -> list:
    return [mask]


@_register("add", "sub", "mul", "div", "pow", "maximum", "minimum", "where")
def _broadcast(call: Call, mask: np.ndarray) -> list:
    return [ops.unbroadcast(mask, p.shape).astype(bool) for p in call.parents]


@_register("reshape", "permute", "getitem", "cat", "expand", "sum", "pad", "interpolate", *_nd("max_unpool"))
def _adjoint(call: Call, mask: np.ndarray) -> list:
    if call.out._backward is None:
        raise ValueError(f"trace.influence: op {call.op!r} recorded no graph to follow")
    grads = call.out._backward(mask.astype(call.out.dtype))
    return [None if g is None else np.asarray(g) != 0 for g in grads]


def _batched(x: Tensor, nd: int, mask: np.ndarray) -> np.ndarray:
    return mask if x.ndim == nd + 2 else mask[None]


def _unbatched(x: Tensor, nd: int, mask: np.ndarray) -> np.ndarray:
    return mask if x.ndim == nd + 2 else mask[0]


@_register(*_nd("conv"))
def _conv(call: Call, mask: np.ndarray) -> list:
    """Every window cell of every input channel of the output channel's group."""
    x, w = call.parents[:2]
    nd = w.ndim - 2
    m = _batched(x, nd, mask)
    groups, out = call.attrs["groups"], m.shape[2:]
    per_group = m.reshape(m.shape[0], groups, -1, *out).any(axis=2)  # (N, G, *out)
    before = [b for b, _ in call.attrs["padding"]]
    after = [a for _, a in call.attrs["padding"]]
    sizes = [n + b + a for n, b, a in zip(x.shape[-nd:], before, after, strict=True)]
    padded = np.zeros((m.shape[0], groups, *sizes), bool)
    scatter_windows(padded, lambda tap: per_group, w.shape[2:], call.attrs["stride"], call.attrs["dilation"], out)
    inside = constant_pad_array(padded, [-b for b in before], [-a for a in after])
    return [_unbatched(x, nd, np.repeat(inside, w.shape[1], axis=1))]


@_register(*_nd("conv_transpose"))
def _conv_transpose(call: Call, mask: np.ndarray) -> list:
    """Input cell ``i`` scatters onto ``i·s + t·d − p``: the windows of the uncropped output frame."""
    x, w = call.parents[:2]
    nd = w.ndim - 2
    m = _batched(x, nd, mask)
    groups = call.attrs["groups"]
    per_group = m.reshape(m.shape[0], groups, w.shape[1], *m.shape[2:]).any(axis=2)
    pad = call.attrs["padding"]
    full = constant_pad_array(per_group, pad, pad)
    reads = sliding_windows(full, w.shape[2:], call.attrs["stride"], call.attrs["dilation"], x.shape[-nd:])
    hit = reads.any(axis=tuple(range(-nd, 0)))
    return [_unbatched(x, nd, np.repeat(hit, w.shape[0] // groups, axis=1))]


@_register(*_nd("max_pool", "avg_pool"))
def _pool(call: Call, mask: np.ndarray) -> list:
    """The whole window (a max pool's winner depends on the values; every cell can win)."""
    x, a = call.parents[0], call.attrs
    geo = pool_geometry(x.shape, a["kernel_size"], a["stride"], a["padding"], a["dilation"], a["ceil_mode"],
                        op=call.op)
    lead = x.shape[: x.ndim - len(geo.out)]
    return [_scatter_to_input(lambda tap: mask, geo, lead, np.dtype(bool))]


@_register(*_nd("lp_pool"))
def _lp_pool(call: Call, mask: np.ndarray) -> list:
    """The engine records LP pooling as an average pool of ``x^p`` and an element-wise root, both under this name."""
    return _same_cell(call, mask) if "norm_type" in call.attrs else _pool(call, mask)


@_register(*_nd("adaptive_avg_pool", "adaptive_max_pool"))
def _adaptive(call: Call, mask: np.ndarray) -> list:
    x, sizes = call.parents[0], tuple(call.attrs["output_size"])
    nd = len(sizes)
    lead = x.shape[:-nd]
    out = np.zeros(x.shape, bool)
    for cell, box in _adaptive_cells(x.shape[-nd:], sizes):
        out[(Ellipsis, *box)] |= mask[(Ellipsis, *cell)].reshape(lead + (1,) * nd)
    return [out]


@_register("linear")
def _linear(call: Call, mask: np.ndarray) -> list:
    return [np.broadcast_to(mask.any(axis=-1, keepdims=True), call.parents[0].shape)]


def _ones_adjoint(fn: Callable[..., Tensor]) -> Rule:
    """Connectivity of an op linear in each operand: its adjoint at all-ones operands
    (every coefficient 1, so nothing cancels)."""
    def rule(call: Call, mask: np.ndarray) -> list:
        with enable_grad():
            out = fn(*(Tensor.wrap(np.ones(p.shape), requires_grad=True) for p in call.parents))
        return [None if g is None else g != 0 for g in out._backward(mask.astype(np.float64))]
    return rule


RULES["matmul"] = _ones_adjoint(ops.matmul)
RULES["bilinear"] = _ones_adjoint(F.bilinear)


def _spread(mask: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(mask.any(axis=axes, keepdims=True), mask.shape)


@_register("batch_norm")
def _batch_norm(call: Call, mask: np.ndarray) -> list:
    """Evaluation: the same cell. Training: the batch statistics tie every cell of the channel."""
    return [_spread(mask, (0, *range(2, mask.ndim))) if call.attrs.get("training") else mask]


@_register("instance_norm")
def _instance_norm(call: Call, mask: np.ndarray) -> list:
    """Every cell of the same sample and channel (a superset when running statistics were used)."""
    return [_spread(mask, tuple(range(2, mask.ndim)))]


@_register("layer_norm")
def _layer_norm(call: Call, mask: np.ndarray) -> list:
    k = len(call.attrs["normalized_shape"])
    return [_spread(mask, tuple(range(mask.ndim - k, mask.ndim)))]


@_register("group_norm")
def _group_norm(call: Call, mask: np.ndarray) -> list:
    grouped = mask.reshape(mask.shape[0], call.attrs["num_groups"], -1)
    return [_spread(grouped, (2,)).reshape(mask.shape)]


@_register("softmax", "log_softmax")
def _softmax(call: Call, mask: np.ndarray) -> list:
    return [_spread(mask, (call.attrs["dim"],))]


@_register("local_response_norm")
def _local_response_norm(call: Call, mask: np.ndarray) -> list:
    """Output channel ``c`` reads input channels ``c − size//2 … c + (size−1)//2``."""
    size, channels = call.attrs["size"], mask.shape[1]
    out = np.zeros_like(mask)
    for shift in range(-(size // 2), (size - 1) // 2 + 1):  # input channel = output channel + shift
        lo, hi = max(0, -shift), min(channels, channels - shift)
        out[:, lo + shift:hi + shift] |= mask[:, lo:hi]
    return [out]
