"""Run a model once and record what happened: every op call (in execution order, which is
a topological order) and every module call (which ops ran inside it).

The op calls come from :func:`convscope.tensor.observe`, so additions, concatenations and
other functional code in a model's ``forward`` are recorded as well as its layers; the
module calls come from forward hooks. Parameters are frozen for the run, so the recorded
graph leads from the input only and a later backward pass touches no parameter's ``.grad``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..nn.module import Module
from ..tensor import Tensor, enable_grad, observe


@dataclass(frozen=True)
class Call:
    """One op call: its name, the tensors it read, the tensor it made and its attributes."""

    op: str
    parents: tuple[Tensor, ...]
    out: Tensor
    attrs: dict


@dataclass(frozen=True)
class ModuleCall:
    """One call of a module: ``calls[start:end]`` ran inside it; ``depth`` is its nesting level."""

    path: str
    module: Module
    inputs: tuple
    output: Any
    start: int
    end: int
    depth: int


@dataclass
class Recording:
    """The input, the calls and the module calls of one forward run; ``names`` maps the id
    of each of the model's parameters and buffers to its name (``"features.1.0.layer_scale"``)."""

    input: Tensor
    output: Any
    calls: list[Call]
    modules: list[ModuleCall]
    names: dict[int, str] = field(default_factory=dict)
    _producer: dict[int, int] = field(default_factory=dict, repr=False)
    _owners: list[ModuleCall | None] = field(default_factory=list, repr=False)
    _outputs: dict[int, list[ModuleCall]] = field(default_factory=dict, repr=False)
    _own: dict[tuple[int, str], list[int]] = field(default_factory=dict, repr=False)
    _calls_of: dict[int, list[ModuleCall]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        """Index the run once, so each lookup below is a dict or list access, not a scan of
        every call or module call (a 150-layer model records thousands of each)."""
        self._producer = {id(call.out): i for i, call in enumerate(self.calls)}
        self._owners = [None] * len(self.calls)
        for m in self.modules:
            for j in range(m.start, m.end):
                if self._owners[j] is None or self._owners[j].depth < m.depth:
                    self._owners[j] = m
        for m in sorted(self.modules, key=lambda m: m.start):
            self._calls_of.setdefault(id(m.module), []).append(m)
        for m in self.modules:
            self._outputs.setdefault(id(m.output[0] if isinstance(m.output, tuple) else m.output), []).append(m)
        for j, (call, owner) in enumerate(zip(self.calls, self._owners, strict=True)):
            if owner is not None:
                self._own.setdefault((id(owner.module), call.op), []).append(j)

    def producer(self, tensor: Tensor) -> int | None:
        """Position of the call that made ``tensor`` (None for the input, parameters, constants)."""
        return self._producer.get(id(tensor))

    def owner(self, position: int) -> ModuleCall | None:
        """The innermost module call inside which call ``position`` ran."""
        return self._owners[position]

    def maker(self, tensor: Tensor) -> ModuleCall | None:
        """The innermost module call that computed ``tensor`` as its output (not one that
        returned it unchanged, as an identity or dropout in eval does); None if no module
        call output it."""
        j = self.producer(tensor)
        made = [m for m in self._outputs.get(id(tensor), []) if m.start <= (j if j is not None else -1) < m.end]
        return max(made, key=lambda m: m.depth, default=None)

    def own_calls(self, module: Module, op: str) -> list[int]:
        """Positions of the calls of ``op`` that ``module``'s own ``forward`` ran (over all its
        calls; not those of a layer inside it): the op rows ``summary`` names ``path.op``."""
        return list(self._own.get((id(module), op), []))

    def op_row(self, position: int) -> str:
        """The name ``summary`` gives the op call at ``position`` (``"layer1.0.add"``, a
        top-level ``"sum"``, ``"#k"`` for its k-th use there), which :func:`~convscope.trace.trace` takes."""
        owner, op = self.owner(position), self.calls[position].op
        name = f"{owner.path}.{op}" if owner is not None and owner.path else op
        k = self.own_calls(owner.module, op).index(position) if owner is not None else 0
        return name if k == 0 else f"{name}#{k + 1}"

    def calls_of(self, module: Module) -> list[ModuleCall]:
        """The calls of ``module``, in the order they started."""
        return list(self._calls_of.get(id(module), []))

    def depends_on_input(self) -> set[int]:
        """Ids of the input and of every recorded tensor computed from it."""
        ids = {id(self.input)}
        for call in self.calls:
            if any(id(p) in ids for p in call.parents):
                ids.add(id(call.out))
        return ids


@contextlib.contextmanager
def frozen_parameters(model: Module) -> Iterator[None]:
    """Parameters stop requiring grad inside the block, then get their flag back."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def record(model: Module, x: Tensor) -> Recording:
    """Run ``model(x)`` once (its own ``forward``), recording op and module calls.

    ``x`` should require grad so that the graph from it is recorded.
    """
    calls: list[Call] = []
    modules: list[ModuleCall] = []
    starts: list[int] = []

    def observer(op: str, parents: tuple, out: Tensor, attrs: dict) -> None:
        calls.append(Call(op, tuple(parents), out, dict(attrs)))

    def before(module: Module, args: tuple) -> None:
        starts.append(len(calls))

    def after_for(path: str) -> Any:
        def after(module: Module, args: tuple, output: Any) -> None:
            start = starts.pop()
            modules.append(ModuleCall(path, module, args, output, start, len(calls), len(starts)))
        return after

    handles = []
    for path, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(before))
        handles.append(module.register_forward_hook(after_for(path)))
    try:
        with frozen_parameters(model), enable_grad(), observe(observer):
            output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    names = {id(t): name for name, t in (*model.named_parameters(), *model.named_buffers())}
    return Recording(x, output, calls, modules, names)
