"""Registries for what the analyzer needs to know about each op: its cost, its
receptive-field rule and its symbolic size rule.

The rules are registered next to the ops they describe (``functional/conv.py`` registers
conv's), so a layer type's forward, backward, shape rule, cost, receptive field and size
formula live in one file. This module only holds the registries and the small value types;
it imports nothing from convscope.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from math import gcd
from typing import Any

import numpy as np


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
    (``jump`` is the cumulative stride; fractions arise after upsampling). Where ``jump``
    is fractional the unit's true field is not affine in ``i``: the box is then the
    tightest affine bound, containing every unit's field and equal to it for some.
    ``input_dependent`` marks a field that holds at this input size only (adaptive
    pooling, resizing to a fixed size): at another input size it changes.
    """

    size: Fraction
    jump: Fraction
    start: Fraction
    input_dependent: bool = False

    def window(self, kernel: int, stride: int, dilation: int, pad_before: int) -> Axis:
        """After a sliding window (conv or pool) with these hyper-parameters."""
        span = dilation * (kernel - 1) + 1
        if span == 1 and stride == 1 and pad_before == 0:  # a 1×1 conv: the field is unchanged
            return self
        size, jump, start = self.size, self.jump, self.start
        if _whole(size, jump, start) and _whole(span, stride, pad_before):
            j = jump.numerator  # the same numbers in int arithmetic, several times faster than Fraction's
            return Axis(Fraction(size.numerator + (span - 1) * j), Fraction(j * stride),
                        Fraction(start.numerator - pad_before * j), self.input_dependent)
        return Axis(size + (span - 1) * jump, jump * stride, start - pad_before * jump, self.input_dependent)

    def scatter(self, kernel: int, stride: int, dilation: int, padding: int) -> Axis:
        """After a transposed convolution: output ``o`` gathers the inputs ``i`` with
        ``i·s + t·d − p = o`` for some tap ``t``, i.e. ``i ∈ [(o + p − (span − 1))/s, (o + p)/s]``
        (the continuous bounding interval; exact cells are a subset)."""
        span = dilation * (kernel - 1) + 1
        jump = self.jump / stride
        return Axis(self.size + (span - 1) * jump, jump, self.start + (padding - span + 1) * jump,
                    self.input_dependent)

    def cells(self, first: Sequence[int], last: Sequence[int], ratio: Fraction, input_dependent: bool = False
              ) -> Axis:
        """After an op whose output unit ``o`` reads the input cells ``first[o] … last[o]``
        (an adaptive bin, the taps of a resize): the tightest field stepping ``ratio``
        input cells per output unit, ``lo ≤ first[o] − o·ratio`` and ``hi ≥ last[o] − o·ratio``."""
        lo = min(Fraction(f) - o * ratio for o, f in enumerate(first))
        hi = max(Fraction(v) - o * ratio for o, v in enumerate(last))
        return Axis(self.size + (hi - lo) * self.jump, self.jump * ratio, self.start + lo * self.jump,
                    self.input_dependent or input_dependent)

    def bins(self, length: int, out: int) -> Axis:
        """After adaptive pooling of ``length`` cells into ``out`` bins (bin ``i`` covers
        ``⌊i·L/out⌋ … ⌈(i+1)·L/out⌉ − 1``), stepping ``L/out`` cells; input-size dependent."""
        first = [i * length // out for i in range(out)]
        last = [-(-(i + 1) * length // out) - 1 for i in range(out)]
        return self.cells(first, last, Fraction(length, out), True)

    def union(self, other: Axis, count: int = 1) -> Axis:
        """The smallest field covering both for every one of ``count`` output units (a
        residual addition or concatenation). Paths that step differently are bounded at
        the first and the last unit, where they part most, stepping as whichever path
        gives the smaller box."""
        flag = self.input_dependent or other.input_dependent
        start, size, other_start, other_size = self.start, self.size, other.start, other.size
        if self.jump == other.jump and _whole(start, size, other_start, other_size):
            # the usual case (a residual addition): one box, in int arithmetic (several times faster)
            lo = min(start.numerator, other_start.numerator)
            hi = max(start.numerator + size.numerator, other_start.numerator + other_size.numerator)
            return Axis(Fraction(hi - lo), self.jump, Fraction(lo), flag)
        last = max(count - 1, 0)

        def bound(jump: Fraction) -> Axis:
            lo = min(a.start + i * (a.jump - jump) for a in (self, other) for i in (0, last))
            hi = max(a.start + a.size + i * (a.jump - jump) for a in (self, other) for i in (0, last))
            return Axis(hi - lo, jump, lo, flag)

        return min((bound(self.jump), bound(other.jump)), key=lambda a: a.size)


def _whole(*values: Any) -> bool:
    """Whether every value is an int or a whole :class:`Fraction`: their numerators then
    give the same results in int arithmetic (which is several times faster)."""
    for v in values:
        if type(v) is not int and (type(v) is not Fraction or v.denominator != 1):
            return False
    return True


Field = tuple[Axis, ...] | None | bool
"""Per spatial axis; ``None`` means the unit depends on the whole input (after flatten,
linear or global pooling); ``NO_FIELD`` marks tensors that do not derive from the model
input at all (parameters, constants)."""

NO_FIELD = False

CHANNELS = Axis(Fraction(0), Fraction(0), Fraction(0))
"""The field entry of a channel dim standing among the spatial ones (a channels-last map,
after a permute): it covers no pixels. Fields are aligned with a tensor's trailing dims, so a
``(N, H, W, C)`` map's field is ``(h, w, CHANNELS)``; a permute back to ``(N, C, H, W)``
drops the entry again. The union of two such entries is one."""

CostRule = Callable[[Sequence[Any], Any, dict], Cost]
FieldRule = Callable[[Sequence[Field], Sequence[Any], Any, dict], Field]

COST_RULES: dict[str, CostRule] = {}
FIELD_RULES: dict[str, FieldRule] = {}
CHANNEL_FIELD_OPS: set[str] = set()  # ops whose field rule reads CHANNELS entries


def cost_rule(*ops: str) -> Callable[[CostRule], CostRule]:
    """Register ``rule(inputs, output, attrs) -> Cost`` for the named ops."""

    def register(rule: CostRule) -> CostRule:
        for op in ops:
            COST_RULES[op] = rule
        return rule

    return register


def field_rule(*ops: str, channels: bool = False) -> Callable[[FieldRule], FieldRule]:
    """Register ``rule(fields, inputs, output, attrs) -> Field`` for the named ops;
    ``channels``: the rule also reads fields with a :data:`CHANNELS` entry (others get such
    inputs' outputs as depending on the whole input)."""

    def register(rule: FieldRule) -> FieldRule:
        for op in ops:
            FIELD_RULES[op] = rule
            if channels:
                CHANNEL_FIELD_OPS.add(op)
        return rule

    return register


@dataclass(frozen=True)
class Saved:
    """What one op call keeps for its backward in convscope's engine, read off its backward
    closure, and the scratch memory it needs (all in bytes).

    ``inputs``: the positions of the inputs the closure reads (it keeps them alive);
    ``output``: whether it reads its own output; ``extra``: arrays it builds in the forward
    and keeps for the backward, as ``(what, bytes)`` (a padded copy of the input, a mask, the
    normalised input). ``view``: the output shares input 0's memory (reshape, permute);
    ``grads_alias``: the input gradients it returns are views of the output gradient (add,
    reshape), not new arrays. ``workspace``/``backward_workspace``: the largest transient
    arrays alive while the forward/backward runs, beyond its inputs, output and gradients.

    The engine's tape additionally keeps every input of every recorded op alive (a result
    holds its parents), so the memory model adds all parents; ``inputs``/``output`` say what
    the gradient formulas themselves need, the figure to compare with torch's saved tensors.
    """

    inputs: tuple[int, ...] = ()
    output: bool = False
    extra: tuple[tuple[str, int], ...] = ()
    view: bool = False
    grads_alias: bool = False
    workspace: int = 0
    backward_workspace: int = 0

    @property
    def extra_bytes(self) -> int:
        return sum(b for _, b in self.extra)


SavedRule = Callable[[Sequence[Any], Any, dict], Saved]
SAVED_RULES: dict[str, SavedRule] = {}


def saved_rule(*ops: str) -> Callable[[SavedRule], SavedRule]:
    """Register ``rule(inputs, output, attrs) -> Saved`` for the named ops."""

    def register(rule: SavedRule) -> SavedRule:
        for op in ops:
            SAVED_RULES[op] = rule
        return rule

    return register


def keeps(*inputs: int, output: bool = False, view: bool = False, grads_alias: bool = False) -> SavedRule:
    """A saved rule for ops that keep only some of their inputs and/or their output."""
    fixed = Saved(inputs, output, view=view, grads_alias=grads_alias)
    return lambda inputs_, output_, attrs: fixed


def elementwise_saved(inputs: tuple[int, ...] = (0,), output: bool = True, forward: float = 0.0,
                      backward: float = 0.0, grads_alias: bool = False) -> SavedRule:
    """A saved rule for element-wise ops whose scratch arrays are output-sized:
    ``forward``/``backward`` count them in units of the output's bytes (a bool mask is 1/4
    of a float32 output)."""

    def rule(inputs_: Sequence[Any], output_: Any, attrs: dict) -> Saved:
        size = nbytes(output_)
        return Saved(inputs, output, grads_alias=grads_alias, workspace=int(forward * size),
                     backward_workspace=int(backward * size))

    return rule


def nbytes(t: Any) -> int:
    """Bytes of a tensor's data (meta tensors included: shape × item size)."""
    return numel(t.shape) * np.dtype(t.dtype).itemsize


def numel(shape: Sequence[int]) -> int:
    return math.prod(map(int, shape))


def per_element(flops_each: int, what: str) -> CostRule:
    """A cost rule for element-wise ops: no MACs, ``flops_each`` FLOPs per output element."""

    def rule(inputs: Sequence[Any], output: Any, attrs: dict) -> Cost:
        n = numel(output.shape)
        return Cost(0, flops_each * n, f"{n:,} outputs × {flops_each} ({what})")

    return rule


def same_field(fields: Sequence[Field], inputs: Sequence[Any], output: Any, attrs: dict) -> Field:
    """Element-wise ops: the union of the operands' fields (operands without one, such as
    parameters and constants, are ignored). An operand broadcast along a spatial axis (size
    1 there) gives every output unit its one unit's field: it steps by 0."""
    known = [(f, t) for f, t in zip(fields, inputs) if f is not NO_FIELD]
    if not known:
        return NO_FIELD
    if any(f is None for f, _ in known):
        return None
    nd = len(known[0][0])
    counts = tuple(output.shape[len(output.shape) - nd:]) if nd else ()
    out = None
    for f, t in known:
        if len(f) != nd:
            continue
        sizes = t.shape[len(t.shape) - nd:]
        if any(s == 1 and n > 1 for s, n in zip(sizes, counts)):
            f = tuple(replace(a, jump=Fraction(0)) if s == 1 and n > 1 else a for a, s, n in zip(f, sizes, counts))
        out = f if out is None else tuple(a.union(b, n) for a, b, n in zip(out, f, counts))
    return out


def global_field(fields: Sequence[Field], inputs: Sequence[Any], output: Any, attrs: dict) -> Field:
    """Ops after which every output depends on every input cell (linear, flatten, …)."""
    return None if any(f is not NO_FIELD for f in fields) else NO_FIELD


def last_dim_map_field(fields: Sequence[Field], inputs: Sequence[Any], output: Any, attrs: dict) -> Field:
    """A map of the first operand's last dim by operands that do not depend on the input
    (``linear``'s weight and bias, the 2-d weight of ``x @ W``): on a channels-last map (last
    entry :data:`CHANNELS`) each pixel keeps its field, as a 1×1 conv's would; anything else
    makes every output depend on the whole input."""
    field = fields[0]
    if field and field[-1] == CHANNELS and all(f is NO_FIELD for f in fields[1:]) and inputs[1].ndim == 2:
        return field
    return global_field(fields, inputs, output, attrs)


# --- symbolic sizes ------------------------------------------------------------------------
Env = dict[str, np.ndarray]
"""Symbol → int64 array of sizes; every array in one env has the same shape."""


class UnknownSize(LookupError):
    """A size past an op without a size rule was evaluated."""


def _unknown(env: Env) -> np.ndarray:
    raise UnknownSize("no size formula past an op without a size rule")


def _signed(n: int) -> str:
    return f" + {n}" if n > 0 else f" − {-n}" if n < 0 else ""


def _number(n: int) -> str:
    return f"−{-n}" if n < 0 else str(n)


def _term(m: int, x: str) -> str:
    return (x if m == 1 else f"−{x}" if m == -1 else f"{_number(m)}{x}") if x else _number(m)


def paren(text: str) -> str:
    """``text`` in parentheses when it is a sum at top level (``H − 4`` → ``(H − 4)``)."""
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch in "(⌊⌈[") - (ch in ")⌋⌉]")
        if depth == 0 and ch in "+−" and 0 < i < len(text) - 1 and text[i - 1] == text[i + 1] == " ":
            return f"({text})"
    return text


@dataclass(frozen=True, eq=False)
class SymSize:
    """One size (a dim of a feature map) as an integer function of the symbolic input sizes.

    Closed form ``q·⌊(m·X + b)/a⌋ + c`` of one symbol ``X`` (``m = 0``: the constant ``c``),
    held canonical (``gcd(m, a) = 1``, ``−a < b ≤ 0``; ``a = 1`` folds ``q`` into ``m``), so
    one function built two ways (a residual branch and its shortcut) has one ``affine``
    tuple ``(X, m, b, a, c, q)`` and one text. The
    forms that do not close — a product of two sizes, a window of stride ``s`` over
    ``q·⌊…⌋`` when ``s`` does not divide ``q``, a fractional scale factor — are *opaque*: a
    vectorised ``fn(env)`` and a display text. ``known=False`` marks a size past an op
    without a size rule; evaluating it raises :class:`UnknownSize`.

    Windows compose exactly because ``⌊(⌊(mX + b)/a⌋ + c)/s⌋ = ⌊(mX + b + a·c)/(a·s)⌋``:

    >>> symbol("H").window(3, 2, 1, 1, 1).text
    '⌊(H − 1)/2⌋ + 1'
    >>> symbol("H").window(3, 2, 1, 1, 1).window(3, 2, 1, 1, 1).text
    '⌊(H − 1)/4⌋ + 1'
    >>> symbol("H").window(3, 2, 1, 0, 0).scatter(2, 2, 1, 0, 0).text  # a strided conv, then its transpose
    '2·⌊(H − 1)/2⌋'
    """

    text: str
    fn: Callable[[Env], Any]
    affine: tuple[str, int, int, int, int, int] | None = None  # (X, m, b, a, c, q)
    known: bool = True

    def value(self, env: Env) -> Any:
        """The size for every entry of the env's arrays (int64; a scalar for constants)."""
        return self.fn(env)

    @property
    def is_const(self) -> bool:
        return self.affine is not None and self.affine[1] == 0

    def is_value(self, n: int) -> bool:
        return self.is_const and self.affine[4] == n

    def same(self, other: SymSize) -> bool:
        """Structurally the same function (always true for equal closed forms)."""
        return self is other or (self.affine is not None and self.affine == other.affine)

    def __str__(self) -> str:
        return self.text

    # --- arithmetic (closed where the form allows, opaque otherwise) ----------------------
    def shift(self, k: int) -> SymSize:
        """``self + k`` (padding adds cells)."""
        if k == 0 or not self.known:
            return self
        if self.affine is not None:
            x, m, b, a, c, q = self.affine
            return affine(x, m, b, a, c + k, q)
        return opaque(f"{self.text}{_signed(k)}", lambda env: self.value(env) + k, self)

    def floor_div(self, offset: int, divisor: int) -> SymSize:
        """``⌊(self + offset)/divisor⌋``."""
        if self.affine is not None:
            x, m, b, a, c, q = self.affine
            if q == 1:
                return affine(x, m, b + a * (c + offset), a * divisor, 0)
            if q % divisor == 0:  # ⌊(q·F + c')/s⌋ = (q/s)·F + ⌊c'/s⌋ for an integer F
                return affine(x, m, b, a, (c + offset) // divisor, q // divisor)
        return opaque(f"⌊({self.text}{_signed(offset)})/{divisor}⌋",
                      lambda env: (self.value(env) + offset) // divisor, self)

    def times(self, k: int) -> SymSize:
        """``k·self`` for an integer ``k``."""
        if k == 1 or not self.known:
            return self
        if self.affine is not None:
            x, m, b, a, c, q = self.affine
            return affine(x, m, b, a, c * k, q * k)
        return opaque(f"{_number(k)}·{paren(self.text)}", lambda env: self.value(env) * k, self)

    def __add__(self, other: SymSize) -> SymSize:
        if other.is_const:
            return self.shift(other.affine[4])
        if self.is_const:
            return other.shift(self.affine[4])
        if self.affine and other.affine:
            (x, m, b, a, c, q), (y, n, d, e, f, r) = self.affine, other.affine
            if (x, m, b, a) == (y, n, d, e):
                return affine(x, m, b, a, c + f, q + r)
            if x == y and a == e == 1:
                return affine(x, m + n, 0, 1, c + f)
        return opaque(f"{self.text} + {other.text}", lambda env: self.value(env) + other.value(env), self, other)

    def __mul__(self, other: SymSize) -> SymSize:
        if other.is_const:
            return self.times(other.affine[4])
        if self.is_const:
            return other.times(self.affine[4])
        return opaque(f"{paren(self.text)}·{paren(other.text)}", lambda env: self.value(env) * other.value(env),
                      self, other)

    # --- the size rules of the layer families ---------------------------------------------
    def window(self, kernel: int, stride: int, dilation: int, before: int, after: int, ceil: bool = False) -> SymSize:
        """Window positions of a conv or pool: ``⌊(E + P − span)/s⌋ + 1`` (``P`` = both pads).

        Ceil mode is ``⌈(E + P − span)/s⌉ + 1`` minus the last window when it starts in the
        right padding (PyTorch's rule). While ``after ≤ span`` (always true for pools, whose
        padding is at most half the kernel) that is exactly
        ``min(⌈(E + P − span)/s⌉ + 1, ⌈(E + before)/s⌉)``, and both terms are floors of
        ``E`` plus a constant over ``s``: the smaller constant wins for every ``E``.
        """
        span = dilation * (kernel - 1) + 1
        reach = before + after - span
        if not ceil:
            return self.floor_div(reach, stride).shift(1)
        if after <= span:
            return self.floor_div(min(reach + 2 * stride - 1, before + stride - 1), stride)

        def count(env: Env) -> Any:  # the rule itself, for pads wider than the kernel
            e = self.value(env)
            out = -(-(e + reach) // stride) + 1
            return out - ((out - 1) * stride >= e + before)

        return opaque(f"⌈({self.text}{_signed(reach)})/{stride}⌉ + 1 (− a window starting in the padding)",
                      count, self)

    def scatter(self, kernel: int, stride: int, dilation: int, padding: int, output_padding: int) -> SymSize:
        """Transposed conv: ``(E − 1)·s − 2p + d·(k − 1) + output_padding + 1``."""
        span = dilation * (kernel - 1) + 1
        return self.times(stride).shift(span + output_padding - 2 * padding - stride)

    def scale(self, factor: float) -> SymSize:
        """``⌊E·factor⌋`` as interpolate computes it (``int(E * factor)`` in float64)."""
        if float(factor).is_integer():
            return self.times(int(factor))
        return opaque(f"⌊{paren(self.text)}·{factor:g}⌋",
                      lambda env: (np.asarray(self.value(env)) * float(factor)).astype(np.int64), self)


def affine(x: str, m: int, b: int, a: int, c: int, q: int = 1) -> SymSize:
    """``q·⌊(m·x + b)/a⌋ + c`` in canonical form (see :class:`SymSize`)."""
    if m == 0 or q == 0 or not x:
        n = q * (b // a) + c
        return SymSize(_number(n), lambda env: np.int64(n), ("", 0, 0, 1, n, 1))
    g = gcd(m, a)
    m, b, a = m // g, b // g, a // g  # ⌊(g·m·X + b)/(g·a)⌋ = ⌊(m·X + ⌊b/g⌋)/a⌋ for integer X
    k = -(-b // a)  # move whole multiples of a from b into c: −a < b ≤ 0
    b, c = b - a * k, c + q * k
    if a == 1:
        m, q = m * q, 1
        text = f"{_term(m, x)}{_signed(c)}"
    else:
        inner = f"{_term(m, x)}{_signed(b)}"
        text = f"{'' if q == 1 else _number(q) + '·'}⌊{paren(inner) if b else inner}/{a}⌋{_signed(c)}"
    return SymSize(text, lambda env: q * ((m * np.asarray(env[x], dtype=np.int64) + b) // a) + c, (x, m, b, a, c, q))


def const(n: int) -> SymSize:
    return affine("", 0, int(n), 1, 0)


def symbol(name: str) -> SymSize:
    return affine(name, 1, 0, 1, 0)


def opaque(text: str, fn: Callable[[Env], Any], *parts: SymSize) -> SymSize:
    """A size with no closed form: ``fn(env)`` and its text (unknown if a part is unknown)."""
    return SymSize(text, fn) if all(p.known for p in parts) else UNKNOWN


UNKNOWN = SymSize("?", _unknown, None, False)

Sizes = tuple[SymSize, ...]


def consts(shape: Sequence[int]) -> Sizes:
    return tuple(const(n) for n in shape)


def product(sizes: Sequence[SymSize]) -> SymSize:
    """The product, constants first: ``512·(⌊(H − 1)/32⌋ + 1)·(⌊(W − 1)/32⌋ + 1)`` (a
    flatten); closed when at most one factor is not constant."""
    k = const(int(np.prod([s.affine[4] for s in sizes if s.is_const], dtype=np.int64)))
    factors = [s for s in sizes if not s.is_const]
    if len(factors) <= 1:
        return k * factors[0] if factors else k
    text = "·".join(([] if k.is_value(1) else [k.text]) + [paren(f.text) for f in factors])
    return opaque(text, lambda env: k.value(env) * np.prod([f.value(env) for f in factors], axis=0), *factors)


def with_spatial(x: Sizes, output: Any, spatial: Sequence[SymSize]) -> Sizes:
    """An ``(N, C, *spatial)`` or ``(C, *spatial)`` output: the input's leading dims, the
    output's channel count, then ``spatial``."""
    nd = len(spatial)
    return (*x[:len(x) - nd - 1], const(output.shape[-nd - 1]), *spatial)


@dataclass(frozen=True)
class Constraint:
    """A condition on the input sizes under which one op accepts its input; ``holds(env)``
    tests it for whole arrays of sizes at once."""

    text: str
    holds: Callable[[Env], Any]


def check(text: str, holds: Callable[[Env], Any], *sizes: SymSize) -> list[Constraint]:
    """``[Constraint]``, or ``[]`` when every size involved is a constant (the reference run
    already showed that it holds)."""
    return [] if all(s.is_const for s in sizes) else [Constraint(text, holds)]


def at_least(size: SymSize, bound: int, what: str = "{size} ≥ {bound}") -> list[Constraint]:
    """``size ≥ bound``; ``what`` is a template naming ``{size}`` and ``{bound}``."""
    return check(what.format(size=size.text, bound=bound), lambda env: size.value(env) >= bound, size)


def equal(a: SymSize, b: SymSize, what: str = "{a} = {b}") -> list[Constraint]:
    if a.same(b):
        return []
    return check(what.format(a=a.text, b=b.text), lambda env: a.value(env) == b.value(env), a, b)


def broadcast(shapes: Sequence[Sizes], ndim: int) -> tuple[Sizes, list[Constraint]]:
    """NumPy broadcasting of symbolic shapes (right-aligned): sizes must agree or be 1."""
    out: list[SymSize] = []
    checks: list[Constraint] = []
    for i in range(ndim):
        dims = [s[len(s) - ndim + i] for s in shapes if len(s) - ndim + i >= 0]
        size = dims[0]
        for d in dims[1:]:
            if d.same(size) or d.is_value(1):
                continue
            if size.is_value(1):
                size = d
                continue
            a = size
            checks += check(f"broadcast: {a.text} and {d.text} agree or one is 1",
                            lambda env, a=a, d=d: (a.value(env) == d.value(env)) | (a.value(env) == 1)
                            | (d.value(env) == 1), a, d)
            if d.is_const:  # a ∈ {d, 1} wherever the check holds
                size = d
            elif not a.is_const:
                size = opaque(a.text, lambda env, a=a, d=d: np.where(a.value(env) == 1, d.value(env), a.value(env)),
                              a, d)
        out.append(size)
    return tuple(out), checks


SizeRule = Callable[[Sequence[Sizes], Sequence[Any], Any, dict], tuple[Sizes, list[Constraint]]]
SIZE_RULES: dict[str, SizeRule] = {}


def size_rule(*ops: str) -> Callable[[SizeRule], SizeRule]:
    """Register ``rule(sizes, inputs, output, attrs) -> (output sizes, constraints)`` for the
    named ops: ``sizes`` are the inputs' :class:`SymSize` per dim, ``inputs``/``output`` the
    tensors of the reference run (for weight shapes and constant dims)."""

    def register(rule: SizeRule) -> SizeRule:
        for op in ops:
            SIZE_RULES[op] = rule
        return rule

    return register
