"""``convscope.summary``: per-layer shapes, parameters, MACs, FLOPs, receptive fields and
memory, computed by running the model's own ``forward`` on meta tensors.

Costs and receptive fields come from the rules each op registers beside its kernel
(:mod:`convscope.rules`), so the summary and execution share one shape rule per op.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import ShapeError
from ..models import resolve_model
from ..nn.conv import _ConvNd
from ..nn.module import Module, training_mode
from ..nn.norm import _BatchNorm, _InstanceNorm
from ..nn.pooling import _Pool
from ..rules import CHANNEL_FIELD_OPS, CHANNELS, COST_RULES, FIELD_RULES, NO_FIELD, Axis, Cost, Field, nbytes
from ..tensor import Tensor
from . import conventions, memory, render, symbolic
from .conventions import Convention
from .erf import EffectiveField, effective_receptive_field
from .memory import TrainingMemory
from .record import FieldAxis, LayerRow, Symbolic, Totals, Uncounted, Validity
from .walk import ModuleCall, Walk, output_tensors, walk


@dataclass
class Summary:
    """The result of :func:`summary`: ``rows`` (one per layer call, in execution order),
    ``totals``, the ``uncounted`` ledger and the ``error`` that stopped the walk, if any."""

    model_name: str
    input_shapes: list[tuple[int, ...]]
    rows: list[LayerRow]
    totals: Totals
    uncounted: list[Uncounted] = field(default_factory=list)
    error: ShapeError | None = None
    unused_params: int = 0
    convention: str = "convscope"
    symbolic: Symbolic | None = None  # set when the input shape names sizes ("H", "W")
    training: TrainingMemory | None = None  # set by summary(..., training=True)
    erf: EffectiveField | None = None  # set by summary(..., erf=True)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def validity(self) -> dict[str, Validity]:
        """Symbolic inputs: the valid sizes per symbol (and ``"H = W"`` for the square case)."""
        return self.symbolic.validity if self.symbolic is not None else {}

    def raise_for_error(self) -> Summary:
        if self.error is not None:
            raise self.error
        return self

    def by_module(self, depth: int = 1) -> list[dict]:
        """Rows aggregated by module path prefix of ``depth`` components (one entry per
        top-level block at depth 1): layers, params, MACs, FLOPs, output shape."""
        return render.grouped(self, depth)

    def by_type(self) -> list[dict]:
        """MACs and parameters per layer kind (``Conv2d 1×1``, ``Conv2d 3×3 depthwise``,
        ``Linear``, …) with their shares of the totals — MobileNet's Table 2."""
        kinds: dict[str, dict] = {}
        for r in self.rows:
            k = kinds.setdefault(_kind(r), {"type": _kind(r), "layers": 0, "params": 0, "macs": 0})
            k["layers"] += 1
            k["params"] += r.params
            k["macs"] += r.macs
        params, macs = sum(k["params"] for k in kinds.values()), sum(k["macs"] for k in kinds.values())
        for k in kinds.values():
            k["params_share"] = k["params"] / params if params else 0.0
            k["macs_share"] = k["macs"] / macs if macs else 0.0
        return sorted(kinds.values(), key=lambda k: -k["macs"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "convention": self.convention,
            "input_shapes": [list(s) for s in self.input_shapes],
            "layers": [r.to_dict() for r in self.rows],
            "totals": vars(self.totals).copy(),
            "uncounted": [vars(u).copy() | {"output_shape": list(u.output_shape)} for u in self.uncounted],
            "unused_params": self.unused_params,
            "error": None if self.error is None else str(self.error),
        } | ({} if self.symbolic is None else {"symbolic": self.symbolic.to_dict()}) \
          | ({} if self.training is None else {"training": self.training.to_dict()}) \
          | ({} if self.erf is None else {"erf": self.erf.to_dict()})

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_csv(self) -> str:
        return render.csv_text(self)

    def to_markdown(self) -> str:
        return render.markdown(self)

    def table(self, depth: int | None = None) -> str:
        return render.table(self, depth)

    def __str__(self) -> str:
        return render.table(self)


def _kind(row: LayerRow) -> str:
    """A layer's kind for :meth:`Summary.by_type`: conv rows carry their kernel size and
    whether they are depthwise (one input channel per filter, several channels in)."""
    w = row.weight_shape
    if w is None or len(w) < 3:  # only convolution weights have kernel dims
        return row.type
    kernel = "×".join(map(str, w[2:]))
    channels_in = row.input_shapes[0][1] if row.input_shapes and len(row.input_shapes[0]) > 1 else 1
    depthwise = " depthwise" if w[1] == 1 and channels_in > 1 else ""
    return f"{row.type} {kernel}{depthwise}"


def _batched(model: Module, shape: tuple[int, ...], sample: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """Prepend a batch of 1 unless ``shape`` already has one. A model that declares its
    ``sample`` shape (a spec's ``input`` line) tells by that rank: a ``100`` latent that a
    generator unflattens before its first convolution is one sample. Otherwise ``shape`` is
    batched when it has the rank the first layer that fixes one wants (a convolution,
    pooling, batch or instance norm: ``(N, C, *spatial)``); a shape too short to be one
    sample of it is refused (``3×10`` for a 2-d convolution would read as one channel of 3×10)."""
    if sample is not None and len(shape) in (len(sample), len(sample) + 1):
        return shape if len(shape) > len(sample) else (1, *shape)
    for path, module in model.named_modules():
        rank = _batched_rank(module)
        if rank is None:
            continue
        least = min(module._ranks) if isinstance(module, _BatchNorm) else rank  # BatchNorm1d also takes (N, C)
        if len(shape) < least - 1:
            raise ValueError(f"input shape {'×'.join(map(str, shape)) or '()'} has {len(shape)} dim(s), but the first "
                             f"layer that fixes the rank, {path or 'the model'} ({type(module).__name__}), takes "
                             f"{least - 1} per sample ({_SAMPLE_DIMS.get(least, '…')}), or {least} with the batch")
        return shape if len(shape) >= rank else (1, *shape)
    return (1, *shape)


_SAMPLE_DIMS = {2: "C", 3: "C×L", 4: "C×H×W", 5: "C×D×H×W"}  # one sample's dims, by the batched rank


def _batched_rank(module: Module) -> int | None:
    """The rank of a batched input of ``module``, for the layers whose spatial rank is fixed."""
    if isinstance(module, (_ConvNd, _Pool)):
        return module._nd + 2
    if isinstance(module, _InstanceNorm):
        return module._spatial + 2
    if isinstance(module, _BatchNorm):
        return max(module._ranks)
    return None


# --- building rows -------------------------------------------------------------------------
def _is_layer(module: Module) -> bool:
    return not module._modules or bool(module._parameters)


def _own_parameters(module: Module, convention: Convention) -> tuple[list[Tensor], int]:
    """A module's own parameters that ``convention`` counts, and how many of their
    elements are trainable."""
    counts = convention.counts_parameter
    own: list[Tensor] = []
    trainable = 0
    for p in module._parameters.values():
        if p is not None and counts(p, module):
            own.append(p)
            if p.requires_grad:
                trainable += p.numel()
    return own, trainable


def _custom_count(module: Module) -> Any:
    """The module's ``parameter_count`` method, or None (looked up without the cost of a
    failed ``Module.__getattr__`` for the many modules that have none)."""
    if module._has_attribute("parameter_count"):
        custom = getattr(module, "parameter_count", None)
        return custom if callable(custom) else None
    return None


def _param_formula(module: Module, convention: Convention) -> tuple[int, int, str]:
    """(count, trainable count, formula) of a module's own parameters under ``convention``.
    A module may define ``parameter_count() -> (count, formula)`` to count differently
    (e.g. a partial connection table)."""
    own, trainable = _own_parameters(module, convention)
    custom = _custom_count(module)
    if custom is not None:
        count, formula = custom()
        return count, min(count, trainable), formula
    if not own:
        return 0, 0, ""
    sizes = [p.numel() for p in own]
    total = sum(sizes)
    terms = ["·".join(map(str, p.shape)) if len(p.shape) > 1 else str(n) for p, n in zip(own, sizes)]
    return total, trainable, f"{' + '.join(terms)} = {total:,}"


_UNCOUNTED = Cost(0, 0, "uncounted")  # the cost of an op without a cost rule


class _Builder:
    """Turns a :class:`Walk` into rows, totals and the uncounted ledger."""

    def __init__(self, model: Module, run: Walk, convention: Convention) -> None:
        self.model = model
        self.run = run
        self.convention = convention
        self.fields: dict[int, tuple[Tensor, Field]] = {}
        self.costs: list[Cost] = []
        self.uncounted: dict[str, Uncounted] = {}
        self.row_outputs: dict[int, Tensor] = {}  # id(row) -> the tensor the row shows
        self.event_rows: list[LayerRow | None] = []  # the row each op event belongs to
        self.floats: dict[int, tuple[Axis, float, float, float]] = {}  # id(axis) -> its size, jump, start
        self.counted: dict[int, tuple[int, int]] = {}  # id(module) -> its own (params, trainable), once counted

    def field_out(self, t: Tensor) -> list[FieldAxis] | str | None:
        """The receptive field of ``t`` as a row shows it (in floats; rows of one feature
        map, such as a conv, its norm and its activation, share the conversion)."""
        field_ = self.field_of(t)
        if field_ is NO_FIELD:
            return None
        if field_ is None:
            return "global"
        out = []
        for a in field_:
            if a == CHANNELS:  # a channels-last map: the row shows its spatial axes
                continue
            entry = self.floats.get(id(a))
            if entry is None or entry[0] is not a:
                entry = self.floats[id(a)] = (a, float(a.size), float(a.jump), float(a.start))
            out.append(FieldAxis(entry[1], entry[2], entry[3], a.input_dependent))
        return out

    def field_of(self, t: Any) -> Field:
        entry = self.fields.get(id(t)) if isinstance(t, Tensor) else None
        return entry[1] if entry is not None and entry[0] is t else NO_FIELD

    def propagate(self) -> None:
        """The receptive field of every op output and the cost of every op call."""
        field_of, fields, costs = self.field_of, self.fields, self.costs
        for x in self.run.inputs:
            spatial = max(x.ndim - 2, 0)
            fields[id(x)] = (x, tuple(Axis(Fraction(1), Fraction(1), Fraction(0)) for _ in range(spatial)))
        calls = self.run.calls
        layers = [conventions.layer_name(call.module) for call in calls]  # the standard layer of each call
        cost_of = self.convention.cost
        for k, ev in enumerate(self.run.events):
            inputs, output = ev.inputs, ev.output
            field_in = [field_of(t) for t in inputs]
            rule = FIELD_RULES.get(ev.op)
            if all(f is NO_FIELD for f in field_in):
                out: Field = NO_FIELD
            elif rule is None or (ev.op not in CHANNEL_FIELD_OPS and any(f and CHANNELS in f for f in field_in)):
                out = None
            else:
                out = rule(field_in, inputs, output, ev.attrs)
            fields[id(output)] = (output, out)
            cost_rule = COST_RULES.get(ev.op)
            if cost_rule is None:
                self._ledger(ev.op, output, ev.call)
                costs.append(_UNCOUNTED)
                continue
            native = cost_rule(inputs, output, ev.attrs)
            # the standard layer that ran the op (or None), and whether it is that call's last op
            layer = layers[ev.call] if ev.call is not None else None
            last = layer is None or calls[ev.call].ops[-1] == k
            costs.append(cost_of(ev.op, native, inputs, output, ev.attrs, layer, last))

    def _ledger(self, op: str, output: Tensor, call: int | None) -> None:
        where = self.run.calls[call].path if call is not None else ""
        entry = self.uncounted.setdefault(op, Uncounted(op, 0, tuple(output.shape), []))
        entry.calls += 1
        if where not in entry.layers:
            entry.layers.append(where)

    def rows(self) -> list[LayerRow]:
        calls, events = self.run.calls, self.run.events
        failed = self.run.error is not None
        uses: dict[int, int] = {}
        pending: list[tuple[int, LayerRow]] = []
        by_call: dict[int, LayerRow] = {}
        owners: list[int | None] = []  # per call: the innermost layer call enclosing it (None: only containers)
        for i, call in enumerate(calls):
            layer = _is_layer(call.module)
            owners.append(i if layer else owners[call.parent] if call.parent is not None else None)
            if not layer or (failed and call.output is None):
                continue  # a container, or the layer whose shape rule failed
            row = self._module_row(call)
            uses[id(call.module)] = row.use = uses.get(id(call.module), 0) + 1
            if row.use > 1:
                row.params = row.trainable_params = 0
                row.params_formula = "shared: counted at first use"
            by_call[i] = row
            pending.append((call.tick, row))
        for ev, cost in zip(events, self.costs):
            owner = owners[ev.call] if ev.call is not None else None
            if owner is None:  # an op in a container's own forward (a residual addition, a concatenation)
                parent = calls[ev.call].path if ev.call is not None else ""
                output_shape = tuple(ev.output.shape)
                row = LayerRow(f"{parent}.{ev.op}" if parent else ev.op, ev.op, parent.count(".") + 2 if parent else 1,
                               [tuple(t.shape) for t in ev.inputs], output_shape)
                self._add_cost(row, cost, ev.op)
                row.activation_bytes = nbytes(ev.output)
                row.receptive_field = self.field_out(ev.output)
                self.row_outputs[id(row)] = ev.output
                pending.append((ev.tick, row))
                self.event_rows.append(row)
            else:
                self._add_cost(by_call[owner], cost, ev.op)
                self.event_rows.append(by_call.get(owner))
        ordered = [row for _, row in sorted(pending, key=lambda item: item[0])]
        seen: dict[str, int] = {}
        for row in ordered:  # a layer's second call, an op's second use in one forward: "name#2"
            seen[row.name] = seen.get(row.name, 0) + 1
            if seen[row.name] > 1:
                row.name = f"{row.name}#{seen[row.name]}"
        return ordered

    @staticmethod
    def _add_cost(row: LayerRow, cost: Cost, op: str) -> None:
        row.macs += cost.macs
        row.flops += cost.flops
        row.ops.append(op)
        if cost.formula:
            row.cost_formula = f"{row.cost_formula}; {cost.formula}" if row.cost_formula else cost.formula

    def _module_row(self, call: ModuleCall) -> LayerRow:
        """The row of a layer call, with its output's size and receptive field."""
        module = call.module
        params, trainable, formula = _param_formula(module, self.convention)
        self.counted[id(module)] = params, trainable
        weight = module._parameters.get("weight")
        bias = module._parameters.get("bias")
        outs = output_tensors(call.output)
        row = LayerRow(
            name=call.path or type(module).__name__, type=type(module).__name__,
            depth=call.path.count(".") + 1 if call.path else 0,
            input_shapes=[tuple(t.shape) for t in output_tensors(call.inputs)],
            output_shape=tuple(outs[0].shape) if outs else None,
            weight_shape=None if weight is None else tuple(weight.shape),
            bias_shape=None if bias is None else tuple(bias.shape),
            params=params, trainable_params=trainable, params_formula=formula)
        if outs:
            row.activation_bytes = nbytes(outs[0])
            row.receptive_field = self.field_out(outs[0])
            self.row_outputs[id(row)] = outs[0]
        return row

    def peak_activation_bytes(self) -> tuple[int, int, int]:
        """(peak live bytes, the peak with the ops' scratch arrays, input bytes): every op
        output is a fresh buffer (a view shares its base), freed after its last use; the
        model's inputs are live until their last use too (see :func:`memory.inference_peak`)."""
        peak, scratch = memory.inference_peak(self.run)
        return peak, scratch, sum(nbytes(x) for x in self.run.inputs)


def summary(model: Any, input_shape: str | Sequence[Any] | None = None, *, dtype: Any = None,
            inputs: Sequence[str | Sequence[int]] | None = None, strict: bool = False,
            convention: str | Convention | Mapping[str, Any] = "convscope", training: bool = False,
            batch_size: int | None = None, optimizer: str = "sgd", erf: bool = False,
            mode: str | None = "eval", progress: bool = False) -> Summary:
    """Shapes, parameters, MACs, FLOPs, receptive fields and memory of every layer.

    Parameters
    ----------
    model:
        A ``convscope.nn.Module``, a torch module, or text naming a model: ``"digits"``, a
        zoo name (``"resnet50"``), a spec file or text, an ONNX file, ``FILE.py:FUNCTION``,
        or a training run's folder (the model it trained, on its data's sample shape); see
        :mod:`convscope.models`.
    input_shape:
        ``(C, H, W)`` or ``(N, C, H, W)``, or as text (``"3x224x224"``): a batch of 1 is added
        when the first layer needs one. Defaults to the zoo entry's or spec's input shape.
        Spatial sizes may be names (``(3, "H", "W")``): the rows then get ``output_formula``
        (``⌊(H − 1)/2⌋ + 1``), the summary the valid sizes (``Summary.validity``); counts are
        at a reference size (see :mod:`convscope.analyze.symbolic`).
    inputs:
        Several input shapes, for multi-input models (each as ``input_shape``).
    dtype:
        The inputs' element type. Default: the model's own, an ONNX graph's declared input
        types, else the dtype of the model's first floating parameter (a ``.double()`` torch
        module runs on float64), else float32.
    strict:
        Raise instead of listing ops that ran without a cost rule in ``Summary.uncounted``.
    convention:
        ``"convscope"`` (every op with a cost rule, all parameters), ``"paper"`` (conv
        and fully-connected multiply-adds; weights without biases or norm parameters), the
        rules of a tool (``"fvcore"``, ``"thop"``, ``"ptflops"``, ``"torch"``), a
        :class:`~convscope.analyze.conventions.Convention`, or a dict of op or layer name →
        rule over the default (see :mod:`convscope.analyze.conventions`).

    training:
        Add ``Summary.training`` (:class:`~convscope.analyze.memory.TrainingMemory`): the
        memory of one training step with ``optimizer`` (``"sgd"`` with momentum,
        ``"plain_sgd"``, ``"adam"``, ``"adamw"``, ``"none"``), per layer and in total. The
        walk then runs in training mode.
    mode:
        The mode the model runs in: ``"eval"`` (the default, as torchinfo's: batch norm
        uses its running statistics, so a batch of 1 at 1×1 is fine, and dropout is off),
        ``"train"``, or None (each module's own flag). Its flags are restored after.
    batch_size:
        The batch the shapes get when ``input_shape`` has none (default 1).
    erf:
        Add ``Summary.erf``: the effective receptive field of the central output unit on the
        model's real weights (:func:`~convscope.analyze.erf.effective_receptive_field`).
    progress:
        With ``erf``, a bar of its random inputs (one forward and backward pass each) on
        stderr when that is a terminal: a few seconds for a ResNet-50.

    The model runs on meta tensors (no data, no compute). A layer that fails its shape
    rule stops the walk; the rows up to it are kept and ``Summary.error`` holds the error.
    """
    counting = conventions.get(convention)
    if mode not in ("eval", "train", None):
        raise ValueError(f"summary: mode must be 'eval', 'train' or None, got {mode!r}")
    if training:
        memory.optimizer_kind(optimizer)  # refuse an unknown name before any work
        mode = "train"
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"summary: batch_size must be a positive int, got {batch_size!r}")
    found = resolve_model(model)
    net, name, default = found.module, found.name, found.input_shape
    declared = _declared_inputs(net, name, batch_size) if inputs is None and input_shape is None else None
    if declared is not None:
        batched = declared  # an ONNX graph's own input shapes, batch included
    else:
        shapes = ([input_shape_of(s) for s in inputs] if inputs is not None
                  else [found.sample_shape(input_shape_of(input_shape), "summary")])
        batched = [_with_batch(_batched(net, s, default), s, batch_size) for s in shapes]
    if erf and len(batched) > 1:
        raise ValueError(f"summary: erf=True follows one input's gradient; {name} takes {len(batched)} inputs")
    dtypes = [np.dtype(dtype)] * len(batched) if dtype is not None else input_dtypes(net, len(batched))

    def run(concrete: list[tuple[int, ...]]) -> tuple[Summary, Walk, list[Tensor | None]]:
        return _summarize(net, name, concrete, dtypes, strict, counting, optimizer if training else None)

    with contextlib.nullcontext() if mode is None else training_mode(net, mode == "train"):
        if symbolic.has_symbols(batched):
            result = symbolic.summarize(name, batched, _batched(net, default, default) if default else None, run)
        else:
            result = run(batched)[0]
    if erf and result.ok:
        result.erf = effective_receptive_field(net if isinstance(model, Module) else model,
                                               tuple(result.input_shapes[0][1:]), progress=progress)
    return result


def input_shape_of(shape: str | Sequence[Any] | None) -> tuple[Any, ...]:
    """An input shape as a tuple: text (``"3x224x224"``, ``"3xHxW"``) is parsed."""
    return symbolic.parse_shape(shape) if isinstance(shape, str) else tuple(shape or ())


def _declared_inputs(net: Module, name: str, batch_size: int | None) -> list[tuple[Any, ...]] | None:
    """The input shapes an ONNX graph declares, batch included: an unknown batch is
    ``batch_size`` (default 1) and unknown spatial sizes become symbols (``H``, ``W``); None
    when a graph input has no shape or an unknown channel count. A fixed batch other than
    ``batch_size`` is refused: the graph cannot run with it."""
    declared = getattr(net, "graph_inputs", None)
    if not declared or any(i.dims is None or len(i.dims) < 2 or i.dims[1] is None for i in declared):
        return None
    shapes = []
    for spec in declared:
        spatial = len(spec.dims) - 2
        names = ("D", "H", "W")[3 - spatial:] if spatial <= 3 else tuple(f"S{k}" for k in range(spatial))
        batch = spec.dims[0] if spec.dims[0] is not None else batch_size or 1
        if batch_size not in (None, batch):
            raise ValueError(f"summary: {name}'s input {spec.name!r} has a fixed batch of {spec.dims[0]}, not "
                             f"batch_size={batch_size}; export the graph again with that batch")
        shapes.append((batch, spec.dims[1], *(names[k] if d is None else d for k, d in enumerate(spec.dims[2:]))))
    return shapes


def _with_batch(shape: tuple[Any, ...], given: tuple[Any, ...], batch_size: int | None) -> tuple[Any, ...]:
    """``batch_size`` in place of the batch of 1 that :func:`_batched` added; a ``given``
    shape that has its own batch must agree with ``batch_size``."""
    if batch_size is None:
        return shape
    if len(shape) > len(given):
        return (int(batch_size), *shape[1:])
    if shape[0] != batch_size:
        raise ValueError(f"summary: input shape {tuple(given)} already has a batch of {shape[0]}, not "
                         f"batch_size={batch_size}; give the shape of one sample, or no batch_size")
    return shape


def input_dtypes(net: Module, count: int) -> list[np.dtype]:
    """The element types of ``count`` inputs of ``net`` when the caller names none: an ONNX
    graph's declared ones, else its first floating parameter's (float32 without one)."""
    floating = next((p.dtype for p in net.parameters() if p.dtype.kind == "f"), np.dtype(np.float32))
    declared = [i.dtype for i in getattr(net, "graph_inputs", ())]
    if len(declared) != count:
        declared = [None] * count
    return [np.dtype(d) if d is not None else floating for d in declared]


def _summarize(net: Module, name: str, shapes: list[tuple[int, ...]], dtypes: Sequence[np.dtype], strict: bool,
               counting: Convention, optimizer: str | None = None) -> tuple[Summary, Walk, list[Tensor | None]]:
    """The summary of one concrete (batched) input shape per input (of ``dtypes``), with the
    walk it came from and the tensor each row shows (for :mod:`.symbolic`); with
    ``optimizer``, the training memory."""
    metas = tuple(Tensor.meta(s, d) for s, d in zip(shapes, dtypes, strict=True))
    run = walk(net, metas)
    builder = _Builder(net, run, counting)
    builder.propagate()
    rows = builder.rows()
    if strict and builder.uncounted:
        raise ValueError(f"summary: no cost rule for: {', '.join(builder.uncounted)} (strict=True)")
    modules = list(net.modules())
    total_params, trainable = _count_parameters(modules, counting, builder.counted)
    called = {id(c.module) for c in run.calls}
    unused, _ = _count_parameters((m for m in modules if id(m) not in called), counting)
    peak, scratch, input_bytes = builder.peak_activation_bytes()
    params = list(net.parameters())
    totals = Totals(
        params=total_params, trainable_params=trainable,
        macs=sum(r.macs for r in rows), flops=sum(r.flops for r in rows),
        param_bytes=sum(p.numel() * p.dtype.itemsize for p in params),
        input_bytes=input_bytes, peak_activation_bytes=peak,
        output_bytes=sum(nbytes(t) for t in output_tensors(run.output)), peak_scratch_bytes=scratch)
    result = Summary(name, [m.shape for m in metas], rows, totals, list(builder.uncounted.values()), run.error,
                     0 if run.error else unused, counting.name)
    if optimizer is not None and run.error is None:
        result.training = memory.training_step(run, net, shapes[0][0] if shapes[0] else 1, optimizer,
                                               builder.event_rows)
    return result, run, [builder.row_outputs.get(id(r)) for r in rows]


def _count_parameters(modules: Any, convention: Convention,
                      counted: Mapping[int, tuple[int, int]] | None = None) -> tuple[int, int]:
    """(total, trainable) over modules, each parameter once even when tied between modules
    (a module's own ``parameter_count()`` overrides its raw count). ``counted``: the
    modules' own counts where already known (by ``id``)."""
    seen: set[int] = set()
    total = trainable = 0
    for module in modules:
        own = [p for p in module._parameters.values() if p is not None and id(p) not in seen]
        seen.update(id(p) for p in own)
        if not own:
            continue
        if counted and id(module) in counted:
            count, train = counted[id(module)]
        else:
            count, train, _ = _param_formula(module, convention)
        total += count
        trainable += train
    return total, trainable
