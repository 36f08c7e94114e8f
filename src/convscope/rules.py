"""Registries for what the analyzer needs to know about each op: its cost and its
receptive-field rule.

The rules are registered next to the ops they describe (``functional/conv.py`` registers
conv's), so a layer type's forward, backward, shape rule, cost and receptive field live
in one file. This module only holds the registries and the small value types; it imports
nothing from convscope.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any


@dataclass(frozen=True)
class Cost:
    """The work of one op call: multiply-accumulates, floating-point operations and the
    formula with its numbers (``"8·16·16 outputs × 3·3·3 = 55,296"``)."""

    macs: int
    flops: int
    formula: str = ""


FREE = Cost(0, 0, "free (data movement only)")


@dataclass(frozen=True)
class Axis:
    """Receptive field of one output unit along one spatial axis, in input pixels.

    Output unit ``i`` sees input cells ``start + i·jump … start + i·jump + size − 1``
    (``jump`` is the cumulative stride; fractions arise after upsampling).
    """

    size: Fraction
    jump: Fraction
    start: Fraction

    def window(self, kernel: int, stride: int, dilation: int, pad_before: int) -> Axis:
        """After a sliding window (conv or pool) with these hyper-parameters."""
        span = dilation * (kernel - 1) + 1
        return Axis(self.size + (span - 1) * self.jump, self.jump * stride, self.start - pad_before * self.jump)

    def scatter(self, kernel: int, stride: int, dilation: int, padding: int) -> Axis:
        """After a transposed convolution: output ``o`` gathers the inputs ``i`` with
        ``i·s + t·d − p = o`` for some tap ``t``, i.e. ``i ∈ [(o + p − (span − 1))/s, (o + p)/s]``
        (the continuous bounding interval; exact cells are a subset)."""
        span = dilation * (kernel - 1) + 1
        jump = self.jump / stride
        return Axis(self.size + (span - 1) * jump, jump, self.start + (padding - span + 1) * jump)

    def bins(self, length: int, out: int) -> Axis:
        """After adaptive pooling of ``length`` cells into ``out`` bins (bin i covers
        ``⌊i·L/out⌋ … ⌈(i+1)·L/out⌉ − 1``): the widest bin, stepping by ``L/out`` on average."""
        widest = max(-(-(i + 1) * length // out) - (i * length // out) for i in range(out))
        return Axis(self.size + (widest - 1) * self.jump, self.jump * Fraction(length, out), self.start)

    def resample(self, length: int, out: int, taps: int) -> Axis:
        """After interpolation from ``length`` to ``out`` cells reading ``taps`` neighbours."""
        return Axis(self.size + (taps - 1) * self.jump, self.jump * Fraction(length, out), self.start)

    def union(self, other: Axis) -> Axis:
        """The smallest field covering both (a residual addition or concatenation)."""
        lo = min(self.start, other.start)
        hi = max(self.start + self.size, other.start + other.size)
        return Axis(hi - lo, min(self.jump, other.jump), lo)


Field = tuple[Axis, ...] | None | bool
"""Per spatial axis; ``None`` means the unit depends on the whole input (after flatten,
linear or global pooling); ``NO_FIELD`` marks tensors that do not derive from the model
input at all (parameters, constants)."""

NO_FIELD = False

CostRule = Callable[[Sequence[Any], Any, dict], Cost]
FieldRule = Callable[[Sequence[Field], Sequence[Any], Any, dict], Field]

COST_RULES: dict[str, CostRule] = {}
FIELD_RULES: dict[str, FieldRule] = {}


def cost_rule(*ops: str) -> Callable[[CostRule], CostRule]:
    """Register ``rule(inputs, output, attrs) -> Cost`` for the named ops."""

    def register(rule: CostRule) -> CostRule:
        for op in ops:
            COST_RULES[op] = rule
        return rule

    return register


def field_rule(*ops: str) -> Callable[[FieldRule], FieldRule]:
    """Register ``rule(fields, inputs, output, attrs) -> Field`` for the named ops."""

    def register(rule: FieldRule) -> FieldRule:
        for op in ops:
            FIELD_RULES[op] = rule
        return rule

    return register


def numel(shape: Sequence[int]) -> int:
    total = 1
    for s in shape:
        total *= int(s)
    return total


def per_element(flops_each: int, what: str) -> CostRule:
    """A cost rule for element-wise ops: no MACs, ``flops_each`` FLOPs per output element."""

    def rule(inputs: Sequence[Any], output: Any, attrs: dict) -> Cost:
        n = numel(output.shape)
        return Cost(0, flops_each * n, f"{n:,} outputs × {flops_each} ({what})")

    return rule


def same_field(fields: Sequence[Field], inputs: Sequence[Any], output: Any, attrs: dict) -> Field:
    """Element-wise ops: the union of the operands' fields (operands without one, such as
    parameters and constants, are ignored)."""
    known = [f for f in fields if f is not NO_FIELD]
    if not known:
        return NO_FIELD
    if any(f is None for f in known):
        return None
    spatial = [f for f in known if len(f) == len(known[0])]
    out = spatial[0]
    for f in spatial[1:]:
        out = tuple(a.union(b) for a, b in zip(out, f))
    return out


def global_field(fields: Sequence[Field], inputs: Sequence[Any], output: Any, attrs: dict) -> Field:
    """Ops after which every output depends on every input cell (linear, flatten, …)."""
    return None if any(f is not NO_FIELD for f in fields) else NO_FIELD
