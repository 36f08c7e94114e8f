"""One-layer provenance: which cells one output value read and how its op combined them.

A builder per op, in a registry keyed by the op name the engine records, turns one
recorded call and one output index into a step record (:mod:`.steps`). Nothing here
re-derives layer arithmetic: windows are the engine's window view
(:func:`~convscope.functional.windows.sliding_windows`) applied to a grid of coordinates,
pool geometry and divisors, adaptive bins and padding index maps come from the
functional modules, and a max pool's winner is the engine's own ``return_indices``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from ..functional.norm import layer_norm_affine
from ..functional.pad import _index_map, _pairs, constant_pad_array
from ..functional.pool import _avg_divisor, _bins, pool_geometry
from ..functional.windows import kernel_taps, sliding_windows
from ..nn.module import Parameter
from ..tensor import Tensor, no_grad
from .record import Call, ModuleCall, Recording
from .steps import (
    BINARY,
    ELEMENTWISE,
    Combination,
    Copy,
    Elementwise,
    LayerNormalization,
    Normalization,
    Operand,
    PowerMean,
    Read,
    ResponseNormalization,
    Step,
    Sum,
    Term,
    WeightedSum,
    WindowMax,
    WindowMean,
)

Index = tuple[int, ...]


@dataclass(frozen=True)
class Site:
    """Where a value was made: a recorded call and the module call it ran inside."""

    recording: Recording
    position: int

    @property
    def call(self) -> Call:
        return self.recording.calls[self.position]

    @property
    def owner(self) -> ModuleCall | None:
        return self.recording.owner(self.position)

    def ran_here(self, position: int) -> bool:
        """Whether call ``position`` ran in the same module call's own code as this call (not
        before it, nor inside a layer of that module)."""
        return self.recording.owner(position) is self.owner

    def made_inside(self, tensor: Tensor, *ops: str) -> Call | None:
        """The call of one of ``ops`` that made ``tensor`` in the same module call's own code, if any."""
        j = self.recording.producer(tensor)
        if j is None or self.recording.calls[j].op not in ops or not self.ran_here(j):
            return None
        return self.recording.calls[j]

    def name(self) -> str:
        """The layer type when this call made a module's output (``"ReLU"``), else the op."""
        owner = self.owner
        if owner is None:
            return self.call.op
        output = owner.output[0] if isinstance(owner.output, tuple) else owner.output
        return type(owner.module).__name__ if output is self.call.out else self.call.op


Builder = Callable[[Site, Index], Step]
BUILDERS: dict[str, Builder] = {}


def _register(*ops: str) -> Callable[[Builder], Builder]:
    def add(builder: Builder) -> Builder:
        BUILDERS.update(dict.fromkeys(ops, builder))
        return builder
    return add


def build_step(site: Site, index: Index) -> Step:
    """The provenance of ``site.call.out[index]``; ValueError for an op without a builder.

    A value a :data:`MOVES` op only relocated within the same layer call (the permute back
    from channels-last) is traced at the op that computed it.
    """
    site, index = _computed_at(site, index)
    op = site.call.op
    if op not in BUILDERS:
        raise ValueError(f"trace: no one-layer provenance for op {op!r}, which made the traced value; traceable: "
                         "convolutions, transposed convolutions, pools, linear, batch norm (eval), layer norm, "
                         "local response norm, element-wise activations, two-operand arithmetic (+ − × / ^ max "
                         "min), sums over dims and copies (flatten, reshape, cat, indexing, padding). Hint: trace "
                         "a layer inside it")
    return BUILDERS[op](site, index)


# --- windows ------------------------------------------------------------------------------------
def window_coords(padded: Sequence[int], kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
                  out: Sequence[int]) -> np.ndarray:
    """``(nd, *out, *kernel)``: the padded-frame coordinates of every cell every window reads.

    The engine's own window view, applied to a grid of coordinates instead of values, so
    the tracer reads exactly the cells the kernels read.
    """
    return sliding_windows(np.indices(tuple(padded)), kernel, stride, dilation, out)


def _window_at(padded: Sequence[int], kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
               out: Sequence[int], position: Sequence[int]) -> np.ndarray:
    """``(taps, nd)``: padded-frame coordinates of the cells window ``position`` reads, in scan order."""
    coords = window_coords(padded, kernel, stride, dilation, out)[(slice(None), *position)]
    return coords.reshape(len(kernel), -1).T


MOVES = ("reshape", "permute", "getitem", "expand", "to")
"""Single-operand ops that only move values: a layer may wrap its arithmetic in them (a
channels-last layer norm between two permutes), and the tracer sees through them."""


MOVERS: dict[str, Callable[[np.ndarray, Call], np.ndarray]] = {
    "reshape": lambda a, call: a.reshape(call.out.shape),
    "permute": lambda a, call: a.transpose(call.attrs["dims"]),
    "getitem": lambda a, call: a[call.attrs["index"]],
    "expand": lambda a, call: np.broadcast_to(a, call.out.shape),
    "to": lambda a, call: a,
}
"""Each of :data:`MOVES` as a NumPy function of an array and the recorded call: it moves the
values of an operand that does not depend on the model input (a parameter reshaped in
``forward``), whose call recorded no adjoint."""


def copy_source(call: Call, index: Index) -> tuple[int, Index] | None:
    """Which operand of a copy op (reshape, permute, indexing, cat, ...) ``out[index]`` came
    from, and its cell there: the op's own adjoint applied to a one-hot output (a move that
    recorded none, of a parameter, moves the operand's flat positions instead); None if the
    value copies no input cell."""
    if call.out._backward is None and call.op in MOVERS:
        parent = call.parents[0]
        positions = MOVERS[call.op](np.arange(parent.data.size).reshape(parent.shape), call)
        return 0, tuple(int(c) for c in np.unravel_index(int(positions[index]), parent.shape))
    onehot = np.zeros(call.out.shape, call.out.dtype)
    onehot[index] = 1
    for operand, grad in enumerate(call.out._backward(onehot)):
        if grad is not None and np.any(grad):
            return operand, tuple(int(c) for c in np.argwhere(grad)[0])
    return None


def moved_inside(site: Site, tensor: Tensor) -> list[Call]:
    """The chain of :data:`MOVES` calls inside the same layer call that made ``tensor``,
    last first; empty when ``tensor`` was not moved there."""
    chain = []
    while (call := site.made_inside(tensor, *MOVES)) is not None and call.out._backward is not None:
        chain.append(call)
        tensor = call.parents[0]
    return chain


def _computed_at(site: Site, index: Index) -> tuple[Site, Index]:
    """Back through the moves whose operand was computed in the same module call's own code
    (not by a layer inside it: a flatten of a layer's output is a copy of that layer's value)."""
    while site.call.op in MOVES and site.call.out._backward is not None:
        j = site.recording.producer(site.call.parents[0])
        if j is None or not site.ran_here(j):
            break
        site, index = Site(site.recording, j), copy_source(site.call, index)[1]
    return site, index


class _Source:
    """Names each cell an op read in the coordinates of the layer's input.

    A cell outside the op's input is the op's own padding. When the op's input was made by
    ``pad`` inside the same layer (a conv ``padding_mode`` other than zeros), cells map
    back through that pad: a cell the padding copied names the input cell it copied. When
    it was moved inside the same layer (:data:`MOVES`: a permute to channels-last), cells
    map back through the moves to the cell of the layer's input that holds the value.
    """

    def __init__(self, site: Site, x: Tensor) -> None:
        self.x = x
        pad = site.made_inside(x, "pad")
        self.moves = moved_inside(site, x if pad is None else pad.parents[0])
        self.input = self.moves[-1].parents[0] if self.moves else x if pad is None else pad.parents[0]
        self.offsets = [0] * x.ndim
        self.maps: list[np.ndarray] | None = None
        self.mode = None
        if pad is not None:
            self.mode = pad.attrs["mode"]
            self.maps = [np.arange(n) for n in self.input.shape]
            for axis, lo, hi in _pairs(self.input.shape, pad.attrs["pad"]):
                n = self.input.shape[axis]
                self.offsets[axis] = lo
                if self.mode == "constant":
                    m = np.arange(n + lo + hi) - lo
                    m[(m < 0) | (m >= n)] = -1
                else:
                    m = _index_map(self.mode, n, lo, hi)
                self.maps[axis] = m

    def read(self, index: Sequence[int], value: float, padding: str = "zeros") -> Read:
        """The read of cell ``index`` of the op's input (coordinates may lie outside it)."""
        index = tuple(int(i) for i in index)
        frame = tuple(i - o for i, o in zip(index, self.offsets, strict=True))
        if any(not 0 <= i < n for i, n in zip(index, self.x.shape, strict=True)):
            return Read(frame, value, padding)
        if self.maps is None:
            return Read(self._unmoved(index), value)
        source = tuple(int(m[i]) for m, i in zip(self.maps, index, strict=True))
        if min(source) < 0:
            return Read(frame, value, "constant")
        if source == frame:
            return Read(self._unmoved(frame), value)
        return Read(frame, value, self.mode, self._unmoved(source))

    def _unmoved(self, index: Index) -> Index:
        for call in self.moves:
            index = copy_source(call, index)[1]
        return index


def _bias(call: Call, channel: int) -> float | None:
    return float(call.parents[2].data[channel]) if len(call.parents) > 2 else None


# --- weighted sums --------------------------------------------------------------------------------
@_register("conv1d", "conv2d", "conv3d")
def _conv(site: Site, index: Index) -> WeightedSum:
    call = site.call
    x, w = call.parents[:2]
    nd = w.ndim - 2
    lead = x.ndim - nd - 1  # 1 with a batch dim, 0 without
    batch, co, pos = index[:lead], index[lead], index[lead + 1:]
    groups, per_group = call.attrs["groups"], w.shape[1]
    group = co // (w.shape[0] // groups)
    channels = range(group * per_group, (group + 1) * per_group)
    before = [b for b, _ in call.attrs["padding"]]
    after = [a for _, a in call.attrs["padding"]]
    kernel, stride, dilation = w.shape[2:], call.attrs["stride"], call.attrs["dilation"]
    out = call.out.shape[-nd:]
    planes = constant_pad_array(x.data[batch][channels.start:channels.stop], before, after)
    values = sliding_windows(planes, kernel, stride, dilation, out)[(slice(None), *pos)]
    coords = _window_at(planes.shape[1:], kernel, stride, dilation, out, pos) - np.asarray(before)
    source = _Source(site, x)
    taps = kernel_taps(kernel)
    terms = []
    for j, c in enumerate(channels):
        for tap, coord in zip(taps, coords, strict=True):
            value, weight = float(values[(j, *tap)]), float(w.data[(co, j, *tap)])
            terms.append(Term(source.read((*batch, c, *coord), value), (co, j, *tap), weight, value * weight))
    return WeightedSum(call.op, source.input.shape, tuple(terms), _bias(call, co), tuple(channels), group, groups)


@_register("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
def _conv_transpose(site: Site, index: Index) -> WeightedSum:
    """Output cell ``o`` receives input cell ``i`` through tap ``t`` where ``i·s + t·d = o + p``:
    the windows of the uncropped output frame, one per input cell, that contain ``o + p``."""
    call = site.call
    x, w = call.parents[:2]
    nd = w.ndim - 2
    lead = x.ndim - nd - 1
    batch, co, pos = index[:lead], index[lead], index[lead + 1:]
    groups, per_out = call.attrs["groups"], w.shape[1]
    group, local = divmod(co, per_out)
    per_group = w.shape[0] // groups
    channels = range(group * per_group, (group + 1) * per_group)
    pad = call.attrs["padding"]
    full = [o + 2 * p for o, p in zip(call.out.shape[-nd:], pad, strict=True)]
    coords = window_coords(full, w.shape[2:], call.attrs["stride"], call.attrs["dilation"], x.shape[-nd:])
    target = np.asarray([o + p for o, p in zip(pos, pad, strict=True)]).reshape((nd,) + (1,) * (2 * nd))
    hits = np.argwhere(np.all(coords == target, axis=0))  # rows: (*input cell, *tap)
    terms = []
    for c in channels:
        for hit in hits:
            cell, tap = tuple(int(v) for v in hit[:nd]), tuple(int(v) for v in hit[nd:])
            value, weight = float(x.data[(*batch, c, *cell)]), float(w.data[(c, local, *tap)])
            terms.append(Term(Read((*batch, c, *cell), value), (c, local, *tap), weight, value * weight))
    return WeightedSum(call.op, x.shape, tuple(terms), _bias(call, co), tuple(channels), group, groups)


@_register("linear")
def _linear(site: Site, index: Index) -> WeightedSum:
    call = site.call
    x, w = call.parents[:2]
    lead, j = index[:-1], index[-1]
    terms = []
    for k in range(w.shape[1]):
        value, weight = float(x.data[(*lead, k)]), float(w.data[j, k])
        terms.append(Term(Read((*lead, k), value), (j, k), weight, value * weight))
    return WeightedSum(call.op, x.shape, tuple(terms), _bias(call, j), tuple(range(w.shape[1])), 0, 1)


# --- pooling --------------------------------------------------------------------------------------
def _pool_reads(x: Tensor, index: Index, geo: F.PoolGeometry, fill: str) -> tuple[Read, ...]:
    """The cells of the window that made ``out[index]``; padding holds ``fill`` (``"-inf"``
    or ``"zeros"``), and cells past the padding (a ceil-mode overhang) are ``"overhang"``."""
    nd = len(geo.kernel)
    lead, pos = index[:-nd], index[-nd:]
    coords = _window_at(geo.padded, geo.kernel, geo.stride, geo.dilation, geo.out, pos) - np.asarray(geo.padding)
    empty = -math.inf if fill == "-inf" else 0.0
    reads = []
    for coord in coords:
        cell = (*lead, *(int(c) for c in coord))
        if all(0 <= c < n for c, n in zip(coord, geo.input, strict=True)):
            reads.append(Read(cell, float(x.data[cell])))
        else:
            beyond = any(c >= n + p for c, n, p in zip(coord, geo.input, geo.padding, strict=True))
            reads.append(Read(cell, empty, "overhang" if beyond else fill))
    return tuple(reads)


def _winner(reads: Sequence[Read], cell: Index) -> tuple[int, tuple[int, ...]]:
    """Position of ``cell`` among ``reads`` and the positions of every real read equal to it."""
    winner = next(i for i, r in enumerate(reads) if r.index == cell and r.padding is None)
    best = reads[winner].value
    return winner, tuple(i for i, r in enumerate(reads) if r.padding is None and r.value == best)


def _plane_cell(flat: int, index: Index, sizes: Sequence[int]) -> Index:
    """A flat index into one input plane (as max pools return) → the full input index."""
    nd = len(sizes)
    return (*index[:-nd], *(int(c) for c in np.unravel_index(flat, tuple(sizes))))


@_register("max_pool1d", "max_pool2d", "max_pool3d")
def _max_pool(site: Site, index: Index) -> WindowMax:
    call = site.call
    x, a = call.parents[0], call.attrs
    geo = pool_geometry(x.shape, a["kernel_size"], a["stride"], a["padding"], a["dilation"], a["ceil_mode"],
                        op=call.op)
    reads = _pool_reads(x, index, geo, "-inf")
    with no_grad():
        _, indices = getattr(F, call.op)(Tensor.wrap(x.data), geo.kernel, geo.stride, geo.padding, geo.dilation,
                                         a["ceil_mode"], True)
    winner, ties = _winner(reads, _plane_cell(int(indices.data[index]), index, geo.input))
    return WindowMax(call.op, x.shape, reads, winner, ties)


@_register("avg_pool1d", "avg_pool2d", "avg_pool3d")
def _avg_pool(site: Site, index: Index) -> WindowMean:
    call = site.call
    x, a = call.parents[0], call.attrs
    geo = pool_geometry(x.shape, a["kernel_size"], a["stride"], a["padding"], 1, a["ceil_mode"], op=call.op)
    override, include = a["divisor_override"], a["count_include_pad"]
    divisor = np.broadcast_to(_avg_divisor(geo, include, override, np.dtype(np.float64)), geo.out)
    if override is not None:
        rule = f"divisor_override={override}"
    elif include:
        rule = "window size inside the padded input (count_include_pad=True)"
    else:
        rule = "real input cells in the window (count_include_pad=False)"
    return WindowMean(call.op, x.shape, _pool_reads(x, index, geo, "zeros"),
                      float(divisor[index[-len(geo.out):]]), rule)


def _lp_calls(site: Site) -> tuple[Call, Call]:
    """The average pool and the power an LP pool's root (``site``) ran after, in its layer."""
    call = site.call
    average = site.made_inside(call.parents[0], call.op)
    power = None if average is None else site.made_inside(average.parents[0], "pow")
    if "norm_type" not in call.attrs or average is None or power is None:
        raise ValueError(f"trace: {call.op} value is not the output of an LP pool (x^p → average → root)")
    return average, power


@_register("lp_pool1d", "lp_pool2d", "lp_pool3d")
def _lp_pool(site: Site, index: Index) -> PowerMean:
    """The engine composes ``(avg_pool(x^p)·k)^(1/p)``: the call that made the value holds
    ``norm_type``; the average pool and the power before it ran inside the same layer."""
    call = site.call
    average, power = _lp_calls(site)
    x, a = power.parents[0], average.attrs
    geo = pool_geometry(x.shape, a["kernel_size"], a["stride"], 0, 1, a["ceil_mode"], op=call.op)
    divisor = np.broadcast_to(_avg_divisor(geo, True, None, np.dtype(np.float64)), geo.out)
    return PowerMean(call.op, x.shape, _pool_reads(x, index, geo, "zeros"), float(call.attrs["norm_type"]),
                     float(divisor[index[-len(geo.out):]]), math.prod(geo.kernel))


def _bin_reads(x: Tensor, out_shape: Sequence[int], index: Index) -> tuple[Read, ...]:
    """Every cell of the adaptive bin that made ``out[index]``, in raster order."""
    nd = len(out_shape)
    lead, pos = index[:-nd], index[-nd:]
    box = [_bins(n, o)[i] for n, o, i in zip(x.shape[-nd:], out_shape, pos, strict=True)]
    cells = itertools.product(*(range(b.start, b.stop) for b in box))
    return tuple(Read((*lead, *cell), float(x.data[(*lead, *cell)])) for cell in cells)


@_register("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d")
def _adaptive_avg(site: Site, index: Index) -> WindowMean:
    call = site.call
    x = call.parents[0]
    reads = _bin_reads(x, call.attrs["output_size"], index)
    return WindowMean(call.op, x.shape, reads, float(len(reads)), "cells in the adaptive bin")


@_register("adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d")
def _adaptive_max(site: Site, index: Index) -> WindowMax:
    call = site.call
    x, sizes = call.parents[0], call.attrs["output_size"]
    reads = _bin_reads(x, sizes, index)
    with no_grad():
        _, indices = getattr(F, call.op)(Tensor.wrap(x.data), sizes, True)
    winner, ties = _winner(reads, _plane_cell(int(indices.data[index]), index, x.shape[-len(sizes):]))
    return WindowMax(call.op, x.shape, reads, winner, ties)


# --- one value in, one value out ------------------------------------------------------------------
@_register("batch_norm")
def _batch_norm(site: Site, index: Index) -> Normalization:
    call, owner = site.call, site.owner
    module = None if owner is None else owner.module
    if call.attrs.get("training"):
        raise ValueError("trace: this batch norm normalised with the statistics of the whole batch (training "
                         "mode); trace the model in evaluation mode (model.eval())")
    if getattr(module, "running_mean", None) is None or getattr(module, "running_var", None) is None:
        raise ValueError("trace: a batch_norm value can be traced only inside a BatchNorm layer with running "
                         "statistics")
    x, c = call.parents[0], index[1]
    weight, bias = module.weight, module.bias
    source = _Source(site, x)
    return Normalization(call.op, source.input.shape, source.read(index, float(x.data[index])),
                         float(module.running_mean.data[c]), float(module.running_var.data[c]),
                         float(call.attrs["eps"]), None if weight is None else float(weight.data[c]),
                         None if bias is None else float(bias.data[c]))


@_register("layer_norm")
def _layer_norm(site: Site, index: Index) -> LayerNormalization:
    """Every value of the normalised slice (the trailing ``normalized_shape`` dims at the
    value's leading index); their mean and biased variance, exactly summed."""
    call = site.call
    x, shape = call.parents[0], call.attrs["normalized_shape"]
    lead, cell = index[:x.ndim - len(shape)], index[x.ndim - len(shape):]
    source = _Source(site, x)
    cells = [(*lead, *c) for c in itertools.product(*(range(n) for n in shape))]
    values = [float(x.data[c]) for c in cells]
    mean = math.fsum(values) / len(values)
    var = math.fsum((v - mean) ** 2 for v in values) / len(values)
    weight, bias = layer_norm_affine(call.parents, call.attrs)
    return LayerNormalization(call.op, source.input.shape, tuple(source.read(c, v) for c, v in zip(cells, values)),
                              cells.index(index), mean, var, float(call.attrs["eps"]),
                              None if weight is None else float(weight.data[cell]),
                              None if bias is None else float(bias.data[cell]))


@_register("local_response_norm")
def _response_norm(site: Site, index: Index) -> ResponseNormalization:
    """The channels of the window around the value's, at its position (inside the input)."""
    call = site.call
    x, a = call.parents[0], call.attrs
    c, channels = index[1], x.shape[1]
    window = range(max(0, index[1] - a["size"] // 2), min(channels, index[1] + (a["size"] - 1) // 2 + 1))
    source = _Source(site, x)
    cells = [(index[0], w, *index[2:]) for w in window]
    return ResponseNormalization(call.op, source.input.shape, tuple(source.read(q, float(x.data[q])) for q in cells),
                                 window.index(c), int(a["size"]), float(a["alpha"]), float(a["beta"]), float(a["k"]))


@_register(*ELEMENTWISE)
def _elementwise(site: Site, index: Index) -> Elementwise:
    call = site.call
    x = call.parents[0]
    attrs = {k: call.attrs[k] for k in ELEMENTWISE[call.op]}
    source = _Source(site, x)
    return Elementwise(call.op, source.input.shape, source.read(index, float(x.data[index])), attrs, site.name(),
                       combined_in_code(site.recording, x, index))


@_register("pad")
def _pad(site: Site, index: Index) -> Copy:
    """A padded tensor's cell: a cell of the input, padding copying one (reflect, replicate,
    circular: ``source``) or the constant."""
    call = site.call
    source = _Source(site, call.out)  # maps the padded frame back through this very pad
    return Copy(call.op, source.input.shape, source.read(index, float(call.out.data[index])))


@_register("reshape", "permute", "getitem", "cat", "expand", "to")
def _copy(site: Site, index: Index) -> Copy:
    """Ops that move values: the op's own adjoint, applied to a one-hot output, finds the source."""
    call = site.call
    constant = call.out._backward is None  # a parameter moved in the model's code: name it
    if constant and call.op not in MOVERS:
        raise ValueError(f"trace: the {call.op} value does not depend on the model input")
    found = copy_source(call, index)
    if found is None:
        raise ValueError(f"trace: {call.op} output {index} copies no input cell")
    operand, cell = found
    parent = call.parents[operand]
    read = Read(cell, float(parent.data[cell]))
    return Copy(call.op, parent.shape, read, operand,
                origin(site.recording, parent, read, expand=False) if len(call.parents) > 1 or constant else None)


# --- two values in, one out -----------------------------------------------------------------------
def _operand(site: Site, tensor: Tensor, index: Index, expand: bool) -> Operand:
    """The cell of ``tensor`` that broadcasting sent to ``index`` of the op's output, and what
    made it (:func:`_origin`)."""
    aligned = index[len(index) - tensor.ndim:] if tensor.ndim else ()
    cell = tuple(0 if n == 1 else i for i, n in zip(aligned, tensor.shape, strict=True))
    return origin(site.recording, tensor, Read(cell, float(tensor.data[cell])), expand)


def origin(recording: Recording, tensor: Tensor, read: Read, expand: bool = False) -> Operand:
    """``read`` of ``tensor`` and what made ``tensor``: the model input, a parameter or buffer,
    a layer, a functional op (with how a two-operand op of the model's code made it, when
    ``expand``) or a constant."""
    if tensor is recording.input:
        return Operand(read, tensor.shape, "input")
    if id(tensor) in recording.names:
        return Operand(read, tensor.shape, "parameter" if isinstance(tensor, Parameter) else "buffer",
                       recording.names[id(tensor)])
    maker = recording.maker(tensor)
    if maker is not None:
        return Operand(read, tensor.shape, "layer", maker.path, recording.calls_of(maker.module).index(maker))
    j = recording.producer(tensor)
    if j is None:
        return Operand(read, tensor.shape, "constant")
    call = recording.calls[j]
    if call.op in MOVERS and call.out._backward is None:  # a parameter reshaped in code: the parameter's cell
        cell = copy_source(call, read.index)[1]
        return origin(recording, call.parents[0], Read(cell, read.value), expand)
    return Operand(read, tensor.shape, "op", recording.op_row(j),
                   step=combined_in_code(recording, tensor, read.index) if expand else None)


def combined_in_code(recording: Recording, tensor: Tensor, index: Index) -> Combination | None:
    """How a two-operand op of the model's own code (not a layer's output: ``out += identity``
    in a residual block) made ``tensor[index]``; None if something else made it. Its operands
    are not expanded further."""
    j = recording.producer(tensor)
    if j is None or recording.calls[j].op not in BINARY or recording.maker(tensor) is not None:
        return None
    return _combination(Site(recording, j), index, expand=False)


@_register(*BINARY)
def _combination(site: Site, index: Index, expand: bool = True) -> Combination:
    call = site.call
    a, b = (_operand(site, p, index, expand) for p in call.parents)
    return Combination(call.op, call.out.shape, (a, b), site.name(), BINARY[call.op])


@_register("sum")
def _sum(site: Site, index: Index) -> Sum:
    """Every cell along the summed dims at the value's index in the others."""
    call = site.call
    x, dims = call.parents[0], tuple(call.attrs["dim"])
    kept = call.out.ndim == x.ndim
    rest = iter(index)
    base = [0 if d in dims else next(rest) for d in range(x.ndim)] if not kept else list(index)
    cells = []
    for along in itertools.product(*(range(x.shape[d]) for d in dims)):
        for d, i in zip(dims, along, strict=True):
            base[d] = i
        cells.append(tuple(base))
    if not cells or x.data.size == 0:
        raise ValueError(f"trace: this sum adds no values (dims {dims} of {x.shape} are empty): it is 0")
    reads = tuple(Read(c, float(x.data[c])) for c in cells)
    return Sum(call.op, x.shape, reads, dims, origin(site.recording, x, reads[0], expand=False))


# --- what the reads index -------------------------------------------------------------------------
def step_source(site: Site, index: Index, step: Step) -> Operand | None:
    """What made the tensor ``step``'s reads index (shaped ``step.input_shape``: the layer's
    input), as a :class:`Combination`'s operand reading the step's first cell inside it; None
    for a combination, whose operands name their own, and for a step that read no cell inside
    its input (a transposed convolution's output cell that only its bias reaches)."""
    if isinstance(step, Combination):
        return None
    site, index = _computed_at(site, index)
    call = site.call
    if isinstance(step, Copy):
        tensor = call.parents[step.operand]
    elif isinstance(step, PowerMean):
        tensor = _lp_calls(site)[1].parents[0]
    else:  # the op's input, or the layer input its reads were mapped back to (through a pad or moves)
        mapped = _Source(site, call.parents[0]).input
        tensor = mapped if mapped.shape == step.input_shape else call.parents[0]
    read = next((r if r.padding is None else Read(r.source, r.value) for r in step.reads
                 if r.padding is None or r.source is not None), None)  # a reflected cell: the cell it copied
    return None if read is None else origin(site.recording, tensor, read)
