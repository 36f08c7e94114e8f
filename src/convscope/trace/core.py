"""``trace(model, x, layer, index)``: the full provenance of one output value of one layer."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..nn.module import Module
from ..tensor import Tensor
from .influence import contributions, influence_mask
from .provenance import Site, build_step, origin, step_source
from .record import ModuleCall, Recording, record
from .steps import ELEMENTWISE, Copy, Elementwise, Operand, Read, Step, Term, WeightedSum, plain


@dataclass
class Trace:
    """The provenance of ``layer``'s output value at ``index``.

    ``value`` is the engine's value; ``step`` records what the layer's op read and how it
    combined it (a :class:`~convscope.trace.steps.WeightedSum`, ``WindowMax``,
    ``WindowMean``, ``PowerMean``, ``Normalization``, ``LayerNormalization``,
    ``ResponseNormalization``, ``Elementwise``, ``Combination``, ``Sum`` or ``Copy``), with
    coordinates in the layer's input (a ``Combination``'s operands in their own); ``then``
    is the element-wise layer applied to this value next, if there is one (``→ ReLU →``);
    ``source`` says what made the tensor the step's reads index (the layer's input: a layer,
    an op row, the model input, ...), as a ``Combination``'s operand reading the first cell
    read, so ``trace`` can follow it (None for a ``Combination``, or when no cell was read).

    A trace keeps the recorded forward pass (every intermediate tensor) for
    :meth:`influence` and :meth:`contributions`; drop it when done with a large model.

    Shape:
        ``index`` is a full index into the layer's output (batch first);
        :meth:`influence` and :meth:`contributions` are shaped like the model input ``x``.
    """

    layer: str
    layer_type: str
    call: int
    index: tuple[int, ...]
    value: float
    dtype: str
    step: Step
    then: Elementwise | None
    then_value: float | None
    source: Operand | None
    _model: Module = field(repr=False)
    _recording: Recording = field(repr=False)
    _target: Tensor = field(repr=False)
    _mask: np.ndarray | None = field(default=None, repr=False)

    def recompute(self) -> float:
        """The value again, from the recorded terms alone (float64, exactly rounded sums).

        Equal to :attr:`value` up to float64 rounding for a float64 model; a float32 model
        rounds every step in float32, so expect float32-sized differences there.
        """
        return self.step.recompute()

    def terms(self) -> list[Term] | list[Read]:
        """Every product of a weighted sum; for other layers every value read (a
        combination's two operands)."""
        return list(self.step.terms) if isinstance(self.step, WeightedSum) else list(self.step.reads)

    def influence(self) -> np.ndarray:
        """Bool array shaped like the model input: exactly the cells that structurally
        influence the value through all earlier layers (see :mod:`convscope.trace.influence`).

        It contains the support of :meth:`contributions` for every input and equals it when
        no local derivative vanishes (convolutions, average pools, linear layers with
        smooth activations); through max pools and ReLUs it is the union of the gradient
        supports over inputs.
        """
        if self._mask is None:
            self._mask = influence_mask(self._recording, self._target, self.index)
        return self._mask.copy()

    def receptive_box(self) -> tuple[tuple[int, int], ...] | None:
        """Per input dim the ``(first, last)`` index (inclusive) of the influence mask; None if empty."""
        cells = np.nonzero(self.influence())
        if cells[0].size == 0:
            return None
        return tuple((int(c.min()), int(c.max())) for c in cells)

    def contributions(self) -> np.ndarray:
        """The effective contribution of each input cell: the gradient of the value with
        respect to the model input, by the engine's autograd (shaped like ``x``)."""
        return contributions(self._model, self._recording, self._target, self.index)

    def to_dict(self, influence: bool = False) -> dict:
        """JSON-ready data (lists, numbers, strings, None for non-finite numbers).

        ``influence=True`` adds the influence mask's cell count, receptive box and cells.
        """
        out = {"layer": self.layer, "type": self.layer_type, "call": self.call, "index": list(self.index),
               "value": self.value, "recomputed": self.recompute(), "dtype": self.dtype,
               "step": plain(self.step), "then": plain(self.then), "then_value": plain(self.then_value),
               "source": plain(self.source)}
        if influence:
            mask = self.influence()
            out["influence"] = {"input_shape": list(mask.shape), "count": int(mask.sum()),
                                "receptive_box": plain(self.receptive_box()),
                                "cells": np.argwhere(mask).tolist()}
        return plain(out)

    def path(self, steps: int = 1000) -> list[Trace]:
        """The strongest path back: this trace, then the trace of the value it read that
        contributes most, and so on towards the model input (at most ``steps`` traces), in
        the same recorded run (see :mod:`convscope.trace.path` for the rule)."""
        from .path import strongest_path

        return strongest_path(self, steps)

    def follow(self, layer: str, index: Any, call: int = 0) -> Trace:
        """The trace of another value of the same recorded run (``layer`` and ``index`` as
        :func:`trace` takes them), without running the model again."""
        return _trace_in(self._model, _locate(self._model, None, layer, index, call, self._recording))

    def format(self, full: bool = False, digits: int = 4) -> str:
        """The worked example; ``full=True`` lists every term instead of a summary."""
        from .render import render

        return render(self, full=full, digits=digits)

    def __str__(self) -> str:
        return self.format()


def _no_layer(model: Module, layer: str, also: str = "") -> str:
    """``trace: no layer 'conv9' in Net{also}; did you mean conv1, conv2?`` (or the first layers)."""
    names = [p for p, _ in model.named_modules() if p]
    close = difflib.get_close_matches(layer, names, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"layers: {', '.join(names[:30])}"
    return f"trace: no layer {layer!r} in {type(model).__name__}{also}; {hint}"


def _check_index(index: Any, shape: tuple[int, ...], layer: str) -> tuple[int, ...]:
    where = f"trace: layer {layer!r} output of shape {shape}"
    try:
        values = tuple(int(i) for i in index)
    except TypeError:
        raise ValueError(f"{where} needs a full index of {len(shape)} ints (batch first), got {index!r}") from None
    if len(values) != len(shape):
        raise ValueError(f"{where} needs a full index of {len(shape)} ints (batch first), got {len(values)}: "
                         f"{values}")
    for dim, (i, n) in enumerate(zip(values, shape, strict=True)):
        if not -n <= i < n:
            raise ValueError(f"{where}: index {i} is out of range for dim {dim} of size {n}")
    return tuple(i % n for i, n in zip(values, shape, strict=True))


def _as_input(x: Any) -> Tensor:
    data = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
    if data.dtype.kind != "f":
        raise ValueError(f"trace: x must be a floating-point array, got dtype {data.dtype}")
    return Tensor(data, requires_grad=True)


def _next_elementwise(recording: Recording, position: int, target: Tensor) -> int | None:
    """The element-wise call applied to ``target`` after it was made, when that is the only
    op that reads it (a value that also feeds a residual addition or a concatenation has no
    one "next" activation); else None."""
    readers = [j for j in range(position + 1, len(recording.calls))
               if any(p is target for p in recording.calls[j].parents)]
    if len(readers) != 1:
        return None
    call = recording.calls[readers[0]]
    return readers[0] if call.op in ELEMENTWISE and call.parents[0] is target else None


def trace(model: Module, x: Any, layer: str, index: Any, *, call: int = 0) -> Trace:
    """Trace one output value of one layer of ``model`` run on ``x``.

    Runs the model's own ``forward`` once on ``x`` with hooks (so branches, residual
    additions and concatenations in ``forward`` are recorded) and records the layer's
    provenance. ``layer`` is a module path as in ``named_modules()`` (``"conv2"``,
    ``"features.3"``; ``""`` is the whole model), or an op that ran in a module's own
    ``forward`` named as :func:`~convscope.summary` rows it: the module path, a dot and the
    op (``"layer1.0.add"``; a top-level op by its name alone), with ``#k`` for its k-th call
    as ``summary`` names it (``"layer1.0.relu#2"``); ``index`` a full index into its output,
    batch first; ``call`` picks the call (from 0) of a layer used more than once instead (of
    an op, which of its calls there, over all the module's calls).

    The model runs as it is: in training mode, dropout draws and batch norm updates its
    running statistics as in any forward pass; trace in ``model.eval()`` for the layers'
    inference arithmetic.

    >>> import numpy as np, convscope as cs
    >>> from convscope.trace import trace
    >>> net = cs.nn.Sequential(cs.nn.Conv2d(1, 2, 3), cs.nn.ReLU())
    >>> t = trace(net, np.ones((1, 1, 5, 5), np.float32), "0", (0, 1, 2, 2))
    >>> len(t.terms()), abs(t.recompute() - t.value) < 1e-6
    (9, True)
    """
    return _trace_in(model, _locate(model, x, layer, index, call))


def _trace_in(model: Module, at: _Located) -> Trace:
    """The trace of the value :func:`_locate` found, in its recording."""
    recording, target, idx, layer, call = at.recording, at.target, at.index, at.layer, at.call
    position = recording.producer(target)
    module_call = at.module_call
    if module_call is not None and (position is None or position < module_call.start):  # returned, not computed
        if position is None and target is not recording.input and not target.requires_grad:
            raise ValueError(f"trace: layer {layer!r} outputs a constant: its value does not depend on the model "
                             "input, so it has no provenance to trace")
        if not module_call.inputs or module_call.inputs[0] is not target:  # (Identity, dropout in eval)
            raise ValueError(f"trace: layer {layer!r} returned a tensor it did not compute from its input")
        position = None
        step: Step = Copy("identity", target.shape, Read(idx, float(target.data[idx])))
        source = origin(recording, target, step.read)
    else:
        step = build_step(Site(recording, position), idx)
        source = step_source(Site(recording, position), idx, step)
    after = module_call.end - 1 if position is None else position
    following = _next_elementwise(recording, after, target)
    then = None if following is None else build_step(Site(recording, following), idx)
    return Trace(layer, at.layer_type, call, idx, float(target.data[idx]), str(target.dtype), step,
                 then, None if following is None else float(recording.calls[following].out.data[idx]), source,
                 model, recording, target)


def influence(model: Module, x: Any, layer: str, index: Any, *, call: int = 0) -> np.ndarray:
    """The input cells that structurally influence one output value of one layer: a bool
    array shaped like ``x``, as :meth:`Trace.influence`, without the one-layer provenance
    that :func:`trace` builds. So it follows every op the influence rules know, also a layer
    whose own arithmetic has no provenance (an RBF output's sum).

    >>> import numpy as np, convscope as cs
    >>> from convscope.trace import influence
    >>> net = cs.nn.Sequential(cs.nn.Conv2d(1, 1, 3), cs.nn.Conv2d(1, 1, 3))
    >>> int(influence(net, np.ones((1, 1, 7, 7), np.float32), "1", (0, 0, 0, 0)).sum())  # 5×5
    25
    """
    at = _locate(model, x, layer, index, call)
    return influence_mask(at.recording, at.target, at.index)


def split_call(layer: str) -> tuple[str, int]:
    """``"layer1.0.relu#2"`` → ``("layer1.0.relu", 1)``: a layer (or op row) name and which of
    its calls, from 0, as ``summary`` and :func:`convscope.inspect.activations` number them."""
    path, hash_, n = layer.partition("#")
    if hash_ and not (n.isdigit() and int(n) >= 1):
        raise ValueError(f"trace: layer {layer!r}: a call number after '#' must be 1 or more")
    return path, int(n) - 1 if hash_ else 0


@dataclass(frozen=True)
class _Located:
    """The recorded run, the traced tensor and the checked index; the layer call that output
    the tensor (None for an op row) and the layer's type (or the op); the layer's path (or
    op row) without ``#k``, and which of its calls (from 0)."""

    recording: Recording
    target: Tensor
    index: tuple[int, ...]
    module_call: ModuleCall | None
    layer_type: str
    layer: str = ""
    call: int = 0


def _locate(model: Module, x: Any, layer: str, index: Any, call: int, recording: Recording | None = None
            ) -> _Located:
    """Run ``model`` on ``x`` recording every op (unless given its ``recording``); find
    ``layer``'s ``call``-th call (a module path, or a module path and an op that ran in its
    own forward) and check ``index``."""
    if not isinstance(model, Module):
        raise ValueError(f"trace: model must be a convscope.nn.Module, got {type(model).__name__}")
    layer, numbered = split_call(layer)
    if numbered and call:
        raise ValueError(f"trace: layer {layer}#{numbered + 1} names its call; do not also give call={call}")
    call = numbered or call
    paths = dict(model.named_modules())
    if layer not in paths and layer == type(model).__name__:  # summary rows the whole model by its class
        layer = ""
    parent, _, op = layer.rpartition(".")
    if layer not in paths and parent not in paths:
        raise ValueError(_no_layer(model, layer))
    recording = recording or record(model, _as_input(x))
    if layer not in paths:
        return _locate_op(recording, model, parent, op, index, call)
    target_module = paths[layer]
    calls: list[ModuleCall] = recording.calls_of(target_module)
    if not calls:
        raise ValueError(f"trace: layer {layer!r} ({type(target_module).__name__}) was not called by the forward pass")
    if not 0 <= call < len(calls):
        raise ValueError(f"trace: layer {layer!r} ran {len(calls)} time(s); call {call} ({layer}#{call + 1}) "
                         "does not exist")
    module_call = calls[call]
    target = module_call.output[0] if isinstance(module_call.output, tuple) else module_call.output
    if not isinstance(target, Tensor):
        raise ValueError(f"trace: layer {layer!r} returned {type(target).__name__}, not a tensor")
    return _Located(recording, target, _check_index(index, target.shape, layer), module_call,
                    type(module_call.module).__name__, layer, call)


def _locate_op(recording: Recording, model: Module, parent: str, op: str, index: Any, call: int) -> _Located:
    """An op that ran in the own forward of module ``parent``, not inside a layer of it:
    ``summary``'s op rows (``layer1.0.add``)."""
    module, layer = dict(model.named_modules())[parent], f"{parent}.{op}" if parent else op
    positions = recording.own_calls(module, op)
    if not positions and all(c.op != op for c in recording.calls):  # not an op of this model at all
        raise ValueError(_no_layer(model, layer))
    if not positions:
        ran = sorted({c.op for j, c in enumerate(recording.calls)
                      if (owner := recording.owner(j)) is not None and owner.module is module})
        did = f" (ops that did: {', '.join(ran)})" if ran else ""
        where = repr(parent) if parent else "the model"
        raise ValueError(_no_layer(model, layer, f", and no op {op!r} ran in the forward of {where} itself{did}"))
    if not 0 <= call < len(positions):
        raise ValueError(f"trace: op {layer!r} ran {len(positions)} time(s); call {call} ({layer}#{call + 1}) "
                         "does not exist")
    target = recording.calls[positions[call]].out
    return _Located(recording, target, _check_index(index, target.shape, layer), None, op, layer, call)
