"""Run a model's own ``forward`` on meta tensors and record what happened.

Forward hooks on every module keep a stack of the module calls in progress; an op
observer records every op with the innermost module running it, its input and output
shapes and its hyper-parameters. Nothing is computed, and the model is left exactly as it
was found (hooks removed, mode untouched, parameters and RNG state unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ShapeError
from ..nn.module import Module
from ..tensor import Tensor, observe


@dataclass
class OpEvent:
    """One op call: ``op`` ran inside module ``call`` (an index into ``Walk.calls``);
    ``tick`` orders op events and module calls on one clock."""

    op: str
    call: int | None
    inputs: tuple[Tensor, ...]
    output: Tensor
    attrs: dict
    tick: int


@dataclass
class ModuleCall:
    """One call of one module: its path, the module, its inputs and (once done) output."""

    path: str
    module: Module
    inputs: tuple[Any, ...]
    parent: int | None
    tick: int
    output: Any = None
    ops: list[int] = field(default_factory=list)
    children: list[int] = field(default_factory=list)


@dataclass
class Walk:
    """Everything recorded while the model ran: module calls in call order, op events in
    execution order, the model inputs and outputs, and the error that stopped it (if any)."""

    calls: list[ModuleCall]
    events: list[OpEvent]
    inputs: tuple[Tensor, ...]
    output: Any
    error: ShapeError | None


def _tensors(value: Any) -> tuple[Tensor, ...]:
    """Tensors in a nested tuple/list/dict structure, in order."""
    stack, found = [value], []
    while stack:
        item = stack.pop()
        if isinstance(item, Tensor):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, (tuple, list)):
            stack.extend(reversed(item))
    return tuple(found)


def walk(model: Module, inputs: tuple[Tensor, ...]) -> Walk:
    """Call ``model(*inputs)`` with hooks and an op observer; a ShapeError stops the walk
    and is returned in ``Walk.error`` with everything recorded up to that point (so is a
    layer that cannot run on meta tensors, as a ShapeError naming it)."""
    calls: list[ModuleCall] = []
    events: list[OpEvent] = []
    stack: list[int] = []

    def before(module: Module, args: tuple) -> None:
        parent = stack[-1] if stack else None
        tick = len(calls) + len(events)
        calls.append(ModuleCall(paths.get(id(module), type(module).__name__), module, args, parent, tick))
        if parent is not None:
            calls[parent].children.append(len(calls) - 1)
        stack.append(len(calls) - 1)

    def after(module: Module, args: tuple, output: Any) -> None:
        calls[stack.pop()].output = output

    def record(op: str, op_inputs: tuple, output: Tensor, attrs: dict) -> None:
        current = stack[-1] if stack else None
        events.append(OpEvent(op, current, op_inputs, output, attrs, len(calls) + len(events)))
        if current is not None:
            calls[current].ops.append(len(events) - 1)

    paths: dict[int, str] = {}
    handles = []
    for path, module in model.named_modules():
        paths[id(module)] = path
        handles.append(module.register_forward_pre_hook(before))
        handles.append(module.register_forward_hook(after))
    output, error = None, None
    try:
        with observe(record):
            output = model(*inputs)
    except ShapeError as err:
        error = err
    except (ValueError, TypeError, IndexError, NotImplementedError) as err:  # e.g. .item() on a meta tensor
        error = _needs_data(err, calls[stack[-1]] if stack else None, model)
    finally:
        for handle in handles:
            handle.remove()
    return Walk(calls, events, inputs, output, error)


def _needs_data(err: Exception, call: ModuleCall | None, model: Module) -> ShapeError:
    """A layer that failed on meta tensors for another reason than its shape rule (it reads
    values, or calls something without meta support), as the report's error."""
    module = call.module if call is not None else model
    layer = f"{call.path} ({type(module).__name__})" if call is not None and call.path else type(module).__name__
    error = ShapeError(f"cannot run on shapes alone: {type(err).__name__}: {err}. Hint: the summary runs forward on "
                       "meta tensors (shapes, no values); a forward that reads values stops it here", layer=layer)
    error.__cause__ = err
    return error


def output_tensors(value: Any) -> tuple[Tensor, ...]:
    return _tensors(value)
