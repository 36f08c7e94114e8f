"""One model counted under every convention, side by side, with the reason for each difference.

Every total is explained against the ``paper`` count (conv and fully-connected multiply-adds,
weights only), which every tool agrees on for those layers: a difference is the sum, per
layer kind, of what a convention adds on top of it, with the rule that added it.

>>> from convscope.analyze.compare import compare
>>> c = compare("resnet18")
>>> {e.convention: e.total for e in c.entries}["thop"]
1824033792
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..models import resolve_model
from . import conventions
from .conventions import Convention
from .render import human, shape_text
from .summary import Summary, input_shape_of, summary


@dataclass
class Difference:
    """``amount`` (in the convention's count) that ``kind`` adds over the paper count, and why."""

    kind: str
    amount: int
    why: str


@dataclass
class Entry:
    """One convention's totals: ``total`` in the tool's own ``unit`` (what it ``reports``)."""

    convention: str
    reports: str
    unit: str
    total: int
    macs: int
    flops: int
    params: int
    tool: str
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # parameters, and convscope's FLOPs


@dataclass
class Comparison:
    model: str
    input_shape: tuple[int, ...]
    training: bool
    paper_macs: int
    entries: list[Entry]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"input_shape": list(self.input_shape)}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self) -> str:
        return render(self)

    def __str__(self) -> str:
        return render(self)


def _why(row_formula: str, convention: Convention) -> str:
    """The rule's note from a formula ``"name: note: numbers"``."""
    head = f"{convention.name}: "
    if row_formula.startswith(head) and row_formula.count(": ") >= 2:
        return row_formula[len(head):].split(": ", 1)[0]
    return convention.description


def _kinds(s: Summary) -> dict[str, tuple[int, str]]:
    """MACs per layer kind (the row type: a layer class, or an op run in a forward) and the
    formula of its first row that counted something (else of its first row with ops)."""
    kinds: dict[str, tuple[int, str]] = {}
    for r in s.rows:
        macs, formula = kinds.get(r.type, (0, ""))
        counted = formula and macs
        kinds[r.type] = (macs + r.macs, formula if counted or not (r.macs or r.cost_formula and not formula)
                         else r.cost_formula)
    return kinds


def _params_why(convention: Convention, params: int, everything: int) -> str:
    what = {"weights": "weights only, no biases or norm scales/shifts",
            "trainable": "trainable parameters only",
            "ruled": f"only the parameters of layers with a {convention.name} rule"}[convention.params]
    return f"{params - everything:+,} params: {what}"


def _entry(convention: Convention, s: Summary, base: dict[str, tuple[int, str]], everything: int) -> Entry:
    t = s.totals
    entry = Entry(convention.name, convention.reports, convention.unit, convention.total(t.macs, t.flops), t.macs,
                  t.flops, t.params, convention.tool)
    entry.notes += [_params_why(convention, t.params, everything)] if t.params != everything else []
    for kind, (macs, formula) in _kinds(s).items():
        delta = macs - base.get(kind, (0, ""))[0]
        if delta or (not macs and formula.startswith(f"{convention.name}: ") and convention is not conventions.PAPER):
            entry.differences.append(Difference(kind, delta, _why(formula, convention)))
    entry.differences.sort(key=lambda d: -abs(d.amount))
    if convention is conventions.CONVSCOPE:
        entry.notes.append(f"FLOPs {t.flops:,}: 2 per MAC + {t.flops - 2 * t.macs:,} for norms, activations, "
                           "pools and adds (1 to 4 per element)")
    if convention.unit == "FLOPs":
        entry.differences.insert(0, Difference("conv and mm", entry.total - t.macs,
                                               f"FLOPs, 2 per multiply-add ({t.macs:,} MACs counted)"))
    return entry


def compare(model: Any, input_shape: str | Sequence[Any] | None = None, *, training: bool = False,
            names: Sequence[str | Convention] | None = None) -> Comparison:
    """Count ``model`` under every preset (or ``names``) in eval mode (``training=False``, as
    thop and ptflops force) and explain each total against the ``paper`` count.

    The model's mode is restored afterwards."""
    found = resolve_model(model)
    net, name = found.module, found.name
    shape = found.sample_shape(input_shape_of(input_shape), "compare")
    mode = "train" if training else "eval"
    chosen = [conventions.get(c) for c in (names or conventions.CONVENTIONS)]
    runs = {c.name: summary(net, shape, convention=c, mode=mode).raise_for_error() for c in chosen}
    paper = runs.get("paper") or summary(net, shape, convention="paper", mode=mode)
    everything = runs.get("convscope") or summary(net, shape, mode=mode)
    base = _kinds(paper)
    entries = [_entry(c, runs[c.name], base, everything.totals.params) for c in chosen]
    counted = {d.kind for e in entries for d in e.differences if d.amount}
    for e in entries:  # a kind one convention leaves free matters only where another counts it
        e.differences = [d for d in e.differences if d.amount or d.kind in counted]
    return Comparison(name, paper.input_shapes[0], training, paper.totals.macs, entries)


def render(c: Comparison) -> str:
    """The side-by-side table, then the reasons (fits 80 columns)."""
    mode = "training" if c.training else "eval"
    head = f"{'convention':<11}{'reports':<17}{'total':>17}{'params':>13}{'vs paper':>11}"
    lines = [f"{c.model}: input {shape_text(c.input_shape)}, {mode} mode: one model, each tool's rules",
             head, "─" * len(head)]
    for e in c.entries:
        diff = e.total - c.paper_macs
        lines.append(f"{e.convention:<11}{e.reports:<17}{e.total:>17,}{e.params:>13,}"
                     f"{_signed(diff) if diff else '=':>11}")
    lines += ["─" * len(head), f"Why, against paper (conv + fc multiply-adds, {c.paper_macs:,}):"]
    for e in c.entries:
        reasons = [f"{_signed(d.amount) if d.amount else '0'} {d.kind}: {d.why}" for d in e.differences]
        reasons += e.notes
        for i, text in enumerate(reasons or ["the same count"]):
            lines += textwrap.wrap(text, 80, initial_indent=f"  {e.convention if i == 0 else '':<10}",
                                   subsequent_indent=" " * 16)
    return "\n".join(lines)


def _signed(n: int) -> str:
    return human(n) if n < 0 else f"+{human(n)}"
