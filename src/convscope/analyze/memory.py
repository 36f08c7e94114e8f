"""Memory of a forward pass and of one training step, from the walk on meta tensors.

What an op keeps for its backward is read off its backward closure and registered beside
it (:data:`convscope.rules.SAVED_RULES`); this module only runs the timeline:

- **inference**: every op output is a new buffer (a view shares its input's) freed after its
  last use; the peak of the live activations, with and without the ops' scratch arrays.
- **training step** (forward, backward, optimizer step, as ``loss.backward(); opt.step()``
  runs them): the engine's tape keeps every input and output of every op that records a
  gradient, plus what the closures build (a padded copy, a mask, the normalised input).
  The backward walks the ops in reverse, holding the gradients in flight, each op's new
  input gradients and its scratch, while parameter gradients accumulate; the optimizer step
  adds its state (SGD momentum: one buffer per parameter, Adam: two) and its update
  temporaries while the graph and gradients are still alive. The peak is the largest of the
  three phases.

Unlike torch, convscope's backward does not free the graph: the saved tensors stay until
the last reference to the loss goes, so they are alive during the optimizer step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..nn.module import Module
from ..rules import SAVED_RULES, Saved, nbytes
from ..tensor import Tensor
from .record import LayerRow
from .walk import OpEvent, Walk, output_tensors


@dataclass(frozen=True)
class OptimizerKind:
    """``buffers``: state arrays per parameter; ``temporaries``: parameter-sized arrays alive
    at once inside one parameter's update (read off convscope.optim's ``_update``)."""

    name: str
    buffers: int
    temporaries: int
    description: str


OPTIMIZERS = {
    "sgd": OptimizerKind("sgd", 1, 1, "SGD with momentum: momentum_buffer; −lr·buf"),
    "plain_sgd": OptimizerKind("plain_sgd", 0, 1, "SGD without momentum: −lr·grad"),
    "adam": OptimizerKind("adam", 2, 3, "Adam: exp_avg, exp_avg_sq; −step·m, m/denom and denom"),
    "adamw": OptimizerKind("adamw", 2, 3, "AdamW: as Adam (decay in place)"),
    "none": OptimizerKind("none", 0, 0, "no optimizer step"),
}


def optimizer_kind(name: str) -> OptimizerKind:
    if name not in OPTIMIZERS:
        raise ValueError(f"training memory: unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]


@dataclass
class LayerMemory:
    """One summary row's share of a training step, in bytes: the activations its ops keep
    for the backward, its parameters, their gradients and their optimizer state."""

    name: str
    saved: int = 0
    params: int = 0
    grads: int = 0
    optimizer: int = 0


@dataclass
class TrainingMemory:
    """One training step at ``batch_size`` with ``optimizer`` (bytes).

    ``peak``: the most memory alive at any moment (parameters included), reached in
    ``phase``. ``saved``: the activations the graph keeps for the backward (the model input
    included); ``needed``: the part the gradient formulas themselves read (what torch
    would save; convscope's tape keeps every op input besides). ``transient``: what the
    peak holds beyond parameters, saved activations, gradients and optimizer state
    (gradients in flight, scratch arrays, update temporaries). ``no_rule``: ops without a
    saved rule, counted as keeping their inputs and output.
    """

    batch_size: int
    optimizer: str
    params: int
    grads: int
    optimizer_state: int
    saved: int
    needed: int
    peak: int
    phase: str
    transient: int
    forward_peak: int
    backward_peak: int
    step_peak: int
    layers: list[LayerMemory] = field(default_factory=list)
    no_rule: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        """Three lines of at most 80 columns for the summary table."""
        from .render import human

        return (f"Training step (batch {self.batch_size}, {self.optimizer}): peak {human(self.peak)}B in the "
                f"{self.phase}\n  params {human(self.params)}B + grads {human(self.grads)}B + optimizer state "
                f"{human(self.optimizer_state)}B + saved {human(self.saved)}B\n  + transient "
                f"{human(self.transient)}B (gradients in flight, scratch, update temporaries)")


def rule_of(ev: OpEvent) -> Saved | None:
    rule = SAVED_RULES.get(ev.op)
    return None if rule is None else rule(ev.inputs, ev.output, ev.attrs)


class _Buffers:
    """Which memory each tensor lives in (a view shares its base's) and how big it is."""

    def __init__(self) -> None:
        self.base: dict[int, int] = {}
        self.size: dict[int, int] = {}

    def of(self, t: Tensor) -> int:
        key = self.base.get(id(t))
        if key is None:
            key = self.base[id(t)] = id(t)
            self.size[key] = nbytes(t)
        return key

    def view(self, t: Tensor, of: Tensor) -> None:
        self.base[id(t)] = self.of(of)


def _rules(run: Walk) -> tuple[list[Saved], list[str]]:
    """The saved rule of every op (ops without one keep their inputs and output)."""
    rules, missing = [], []
    for ev in run.events:
        saved = rule_of(ev)
        if saved is None:
            saved = Saved(tuple(range(len(ev.inputs))), True)
            if ev.op not in missing:
                missing.append(ev.op)
        rules.append(saved)
    return rules, missing


def _buffers(run: Walk, rules: Sequence[Saved]) -> _Buffers:
    buffers = _Buffers()
    for x in run.inputs:
        buffers.of(x)
    for ev, saved in zip(run.events, rules):
        for t in ev.inputs:
            buffers.of(t)
        if saved.view and ev.inputs:
            buffers.view(ev.output, ev.inputs[0])
        else:
            buffers.of(ev.output)
    return buffers


def inference_peak(run: Walk) -> tuple[int, int]:
    """(peak live activation bytes, peak with the ops' scratch arrays) of a forward pass
    without a graph: outputs are new buffers (views share their base) freed after their
    last use; the model inputs count from the start, the outputs to the end. Without a
    graph, what a backward closure would keep is scratch too (freed when the op returns)."""
    rules, _ = _rules(run)
    buffers = _buffers(run, rules)
    of, base, size = buffers.of, buffers.base, buffers.size  # every op's tensors are in ``base`` already
    params = {id(p) for c in run.calls for p in c.module._parameters.values() if p is not None}
    inputs = [[base[id(t)] for t in ev.inputs] for ev in run.events]  # the buffer of each op input
    last: dict[int, int] = {}
    for k, keys in enumerate(inputs):
        for key in keys:
            last[key] = k
    keep = {of(t) for t in output_tensors(run.output)}
    live = {of(x): size[of(x)] for x in run.inputs}
    total = peak = with_scratch = sum(live.values())  # total: the bytes in ``live``, kept up to date
    for k, (ev, saved, keys) in enumerate(zip(run.events, rules, inputs)):
        key = base[id(ev.output)]
        if key not in live and id(ev.output) not in params:
            live[key] = size[key]
            total += size[key]
        peak = max(peak, total)
        with_scratch = max(with_scratch, total + saved.workspace + saved.extra_bytes)  # no graph keeps the extras
        for key in keys:
            if last[key] == k and key not in keep:
                total -= live.pop(key, 0)
    return peak, with_scratch


def _recorded(run: Walk, params: Sequence[Tensor]) -> list[bool]:
    """Which ops record a gradient: those with an input that requires one."""
    needs = {id(p) for p in params if p.requires_grad}
    out = []
    for ev in run.events:
        hit = any(id(t) in needs for t in ev.inputs)
        if hit:
            needs.add(id(ev.output))
        out.append(hit)
    return out


def training_step(run: Walk, model: Module, batch_size: int, optimizer: str,
                  event_rows: Sequence[LayerRow | None] = ()) -> TrainingMemory:
    """Simulate one training step of the walked model (see the module docstring).
    ``event_rows``: the summary row each op belongs to, for the per-layer split."""
    kind = optimizer_kind(optimizer)
    params = list({id(p): p for p in model.parameters()}.values())
    param_ids = {id(p) for p in params}
    trainable = [p for p in params if p.requires_grad]
    rules, missing = _rules(run)
    buffers = _buffers(run, rules)
    recorded = _recorded(run, params)
    is_param = {buffers.of(p) for p in params}

    # what the graph keeps: every input and output of a recording op, and the closures' arrays
    kept: dict[int, int] = {}
    needed: dict[int, int] = {}
    extras: list[int] = []
    for ev, saved, rec in zip(run.events, rules, recorded):
        if not rec:
            continue
        for i, t in enumerate(ev.inputs):
            key = buffers.of(t)
            if key not in is_param:
                kept[key] = buffers.size[key]
                if i in saved.inputs:
                    needed[key] = buffers.size[key]
        key = buffers.of(ev.output)
        kept[key] = buffers.size[key]
        if saved.output:
            needed[key] = buffers.size[key]
        extras.append(saved.extra_bytes)
    outputs = output_tensors(run.output)
    for t in outputs:
        kept.setdefault(buffers.of(t), buffers.size[buffers.of(t)])
    saved_total = sum(kept.values()) + sum(extras)

    forward_peak = _forward_peak(run, rules, recorded, buffers, kept, is_param)
    backward_peak, grads_at_peak = _backward_peak(run, rules, recorded, buffers, {id(p) for p in trainable},
                                                  saved_total, outputs)
    param_bytes = sum(nbytes(p) for p in params)
    grad_bytes = sum(nbytes(p) for p in trainable)
    state = kind.buffers * grad_bytes
    step_peak = 0
    if kind.name != "none" and trainable:
        grown = 0
        for p in trainable:  # state is allocated parameter by parameter, next to its update temporaries
            grown += kind.buffers * nbytes(p)
            step_peak = max(step_peak, saved_total + grad_bytes + grown + kind.temporaries * nbytes(p))
    phases = {"forward": forward_peak, "backward": backward_peak, "optimizer step": step_peak}
    phase = max(phases, key=lambda k: phases[k])
    peak = param_bytes + phases[phase]
    grads_then = {"forward": 0, "backward": grads_at_peak, "optimizer step": grad_bytes}[phase]
    steady = param_bytes + saved_total + grads_then + (state if phase == "optimizer step" else 0)
    layers = _per_layer(run, rules, recorded, buffers, kept, event_rows, kind, param_ids)
    return TrainingMemory(batch_size, kind.name, param_bytes, grad_bytes, state, saved_total, sum(needed.values())
                          + sum(extras), peak, phase, max(peak - steady, 0), param_bytes + forward_peak,
                          param_bytes + backward_peak, param_bytes + step_peak, layers, missing)


def _forward_peak(run: Walk, rules: Sequence[Saved], recorded: Sequence[bool], buffers: _Buffers,
                  kept: dict[int, int], is_param: set[int]) -> int:
    """Live activation bytes at the worst moment of the forward (graph growing, scratch)."""
    last: dict[int, int] = {}
    for k, ev in enumerate(run.events):
        for t in ev.inputs:
            last[buffers.of(t)] = k
    live = {buffers.of(x): buffers.size[buffers.of(x)] for x in run.inputs}
    total = peak = sum(live.values())  # total: the bytes in ``live``, kept up to date
    held = 0  # closure arrays of the ops run so far
    for k, (ev, saved, rec) in enumerate(zip(run.events, rules, recorded)):
        key = buffers.of(ev.output)
        if key not in is_param and key not in live:
            live[key] = buffers.size[key]
            total += live[key]
        peak = max(peak, total + held + saved.extra_bytes + saved.workspace)
        held += saved.extra_bytes if rec else 0
        for t in ev.inputs:
            key = buffers.of(t)
            if last.get(key) == k and key not in kept:
                total -= live.pop(key, 0)
    return peak


def _backward_peak(run: Walk, rules: Sequence[Saved], recorded: Sequence[bool], buffers: _Buffers,
                   trainable: set[int], saved_total: int, outputs: Sequence[Tensor]) -> tuple[int, int]:
    """(peak bytes beyond the parameters during the backward, the parameter gradients done
    at that moment). The graph stays alive; a gradient in flight is held until its producer
    runs (a view of an output gradient keeps that alive); a parameter's gradient is copied
    into ``.grad`` right after its consumer ran (both alive for a moment)."""
    needs = {id(ev.output) for ev, rec in zip(run.events, recorded) if rec} | trainable
    flight: dict[int, int] = {id(t): nbytes(t) for t in outputs if id(t) in needs}
    done = 0
    best = (saved_total + sum(flight.values()), 0)

    def at(total: int) -> None:
        nonlocal best
        if total > best[0]:
            best = (total, done)

    for k in reversed(range(len(run.events))):
        ev, saved = run.events[k], rules[k]
        if not recorded[k] or id(ev.output) not in flight:
            continue
        g = flight.pop(id(ev.output))
        fresh = {i: 0 if saved.grads_alias else nbytes(t) for i, t in enumerate(ev.inputs) if id(t) in needs}
        alias = g if saved.grads_alias and fresh else 0
        before = saved_total + done + sum(flight.values())
        at(before + g + sum(fresh.values()) + saved.backward_workspace)
        after = before + sum(fresh.values()) + alias
        for i, t in enumerate(ev.inputs):
            if i not in fresh:
                continue
            if id(t) in trainable:  # a fresh gradient becomes .grad as it is; an aliased one is copied
                if not fresh[i]:
                    at(after + nbytes(t))
                done += nbytes(t)
                continue
            grad = fresh[i] + alias
            alias = 0
            if id(t) in flight:  # a second consumer: the old and new gradients and their sum
                at(after + flight[id(t)] + grad)
            flight[id(t)] = max(grad, flight.get(id(t), 0))
    return best


def _per_layer(run: Walk, rules: Sequence[Saved], recorded: Sequence[bool], buffers: _Buffers,
               kept: dict[int, int], event_rows: Sequence[LayerRow | None], kind: OptimizerKind,
               param_ids: set[int]) -> list[LayerMemory]:
    """Each kept buffer is charged to the row whose op made it (the model inputs to
    ``"input"``, a constant to the first op reading it); each parameter to the first row
    that used it."""
    out: dict[str, LayerMemory] = {"input": LayerMemory("input")}
    charged: set[int] = set()
    for x in run.inputs:
        key = buffers.of(x)
        if key in kept and key not in charged:
            out["input"].saved += kept[key]
            charged.add(key)
    for k, (ev, saved, rec) in enumerate(zip(run.events, rules, recorded)):
        row = event_rows[k] if k < len(event_rows) else None
        name = row.name if row is not None else ev.op
        layer = out.setdefault(name, LayerMemory(name))
        for t in (*ev.inputs, ev.output):  # its output, and constants made inside the forward
            key = buffers.of(t)
            if key in kept and key not in charged:
                layer.saved += kept[key]
                charged.add(key)
        if rec:
            layer.saved += saved.extra_bytes
        for t in ev.inputs:
            if id(t) in param_ids and id(t) not in charged:
                charged.add(id(t))
                layer.params += nbytes(t)
                if t.requires_grad:
                    layer.grads += nbytes(t)
                    layer.optimizer += kind.buffers * nbytes(t)
    return [m for m in out.values() if m.saved or m.params]


def training_memory(model: Any, input_shape: Sequence[Any] | None = None, *, batch_size: int | None = None,
                    optimizer: str = "sgd", inputs: Sequence[Sequence[int]] | None = None,
                    dtype: Any = None) -> TrainingMemory:
    """The memory of one training step (forward, backward, optimizer step) of ``model`` at
    ``batch_size`` (default: the batch of ``input_shape``, or 1);
    ``summary(model, input_shape, training=True, ...).training``.

    >>> import convscope as cs
    >>> m = training_memory("lenet5_modern", batch_size=32, optimizer="adam")
    >>> m.optimizer_state == 2 * m.params, m.phase
    (True, 'backward')
    """
    from .summary import summary

    result = summary(model, input_shape, inputs=inputs, dtype=dtype, training=True, batch_size=batch_size,
                     optimizer=optimizer)
    result.raise_for_error()
    assert result.training is not None  # set by summary(training=True) on a walk without error
    return result.training
