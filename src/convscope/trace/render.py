"""The worked example a :class:`~convscope.trace.Trace` prints: formatting only, no arithmetic
beyond what the records provide."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .path import strongest_read, strongest_term
from .steps import (
    Combination,
    Copy,
    Elementwise,
    LayerNormalization,
    Normalization,
    Operand,
    PowerMean,
    Read,
    ResponseNormalization,
    Sum,
    Term,
    WeightedSum,
    WindowMax,
    WindowMean,
)

if TYPE_CHECKING:
    from .core import Trace

HEAD, TAIL = 5, 1  # terms shown around the "… more …" line of a long sum
_PADDING = {"zeros": "zero padding", "constant": "constant padding", "-inf": "padding −∞",
            "overhang": "past the padding (ceil mode)"}


def number(value: float | None, digits: int = 4) -> str:
    """``value`` with ``digits`` significant digits; ∞ and NaN spelt out."""
    if value is None:
        return "—"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value + 0.0:.{digits}g}"  # + 0.0 turns −0 into 0


def _index(index: Sequence[int]) -> str:
    return ", ".join(str(i) for i in index)


def read_text(read: Read, digits: int) -> str:
    """``x[0, 2, -1, 3] (reflect of x[0, 2, 1, 3]) = 0.7``."""
    where = f"x[{_index(read.index)}]"
    if read.source is not None:
        where += f" ({read.padding} of x[{_index(read.source)}])"
    elif read.padding is not None:
        where += f" ({_PADDING.get(read.padding, read.padding)})"
    return f"{where} = {number(read.value, digits)}"


def _term_text(term: Term, digits: int) -> str:
    return (f"{read_text(term.read, digits)} × w[{_index(term.weight_index)}] = {number(term.weight, digits)}"
            f" → {number(term.product, digits)}")


def _listing(items: Sequence[Any], text: Callable[[Any], str], full: bool, noun: str) -> list[str]:
    """One indented line per item, or the first and last few around a count of the rest."""
    if full or len(items) <= HEAD + TAIL + 2:
        return [f"    {text(item)}" for item in items]
    hidden = len(items) - HEAD - TAIL
    return ([f"    {text(item)}" for item in items[:HEAD]]
            + [f"    … {hidden} more {noun} (all: `convscope trace --full`, or Trace.format(full=True)) …"]
            + [f"    {text(item)}" for item in items[-TAIL:]])


def _extent(reads: Sequence[Read], shape: Sequence[int], of: str = "the input") -> str:
    """``reads 36 cells of the input (1, 8, 10, 10) within [0, 4..7, 2..4, 3..5]; 3 are padding (zeros)``."""
    dims = list(zip(*(r.index for r in reads), strict=True))
    box = ", ".join(str(lo) if lo == hi else f"{lo}..{hi}" for lo, hi in ((min(d), max(d)) for d in dims))
    padding = [r.padding for r in reads if r.padding is not None]
    kinds = ", ".join(sorted(set(padding)))
    pad = f"; {len(padding)} are padding ({kinds})" if padding else ""
    return f"  reads {len(reads)} cells of {of} {tuple(shape)} within [{box}]{pad}"


def _weighted_sum(step: WeightedSum, trace: Trace, full: bool, digits: int) -> list[str]:
    lines = [_extent(step.reads, step.input_shape)]
    if step.groups > 1:
        lines.append(f"  group {step.group} of {step.groups}: input channels {step.channels[0]}..{step.channels[-1]}")
    bias = "" if step.bias is None else f"bias {number(step.bias, digits)} + "
    lines.append(f"  {bias}Σ {len(step.terms)} products = {number(trace.value, digits)}{_then(trace, digits)}")
    lines += _listing(step.terms, lambda t: _term_text(t, digits), full, "products")
    lines.append(f"    Σ products = {number(step.product_sum(), digits)}")
    return lines


def _window_max(step: WindowMax, trace: Trace, full: bool, digits: int) -> list[str]:
    winner = step.reads[step.winner]
    ties = f"; {len(step.ties)} cells tie, the first in scan order wins" if len(step.ties) > 1 else ""
    lines = [_extent(step.reads, step.input_shape),
             f"  max of {len(step.reads)} cells = {number(trace.value, digits)}{_then(trace, digits)}",
             f"  winner x[{_index(winner.index)}]{ties}"]
    return lines + _listing(step.reads, lambda r: read_text(r, digits) + (" ◀ winner" if r is winner else ""),
                            full, "cells")


def _window_mean(step: WindowMean, trace: Trace, full: bool, digits: int) -> list[str]:
    return [_extent(step.reads, step.input_shape),
            f"  (Σ {len(step.reads)} cells = {number(step.total(), digits)}) / {number(step.divisor, digits)}"
            f" = {number(trace.value, digits)}{_then(trace, digits)}",
            f"  divisor: {step.rule}"] + _listing(step.reads, lambda r: read_text(r, digits), full, "cells")


def _power_mean(step: PowerMean, trace: Trace, full: bool, digits: int) -> list[str]:
    p = number(step.norm_type, digits)
    return [_extent(step.reads, step.input_shape),
            f"  (Σ x^{p} = {number(step.power_sum(), digits)} / {number(step.divisor, digits)} cells"
            f" · kernel {step.kernel_volume})^(1/{p}) = {number(trace.value, digits)}{_then(trace, digits)}",
            ] + _listing(step.reads, lambda r: read_text(r, digits), full, "cells")


def _normalized_line(step: Normalization | LayerNormalization, trace: Trace, digits: int) -> str:
    """``(x … − mean …) / √(var … + eps …) · γ … + β … = value``, with γ and β where given."""
    scale = "" if step.weight is None else f" · γ {number(step.weight, digits)}"
    shift = "" if step.bias is None else f" + β {number(step.bias, digits)}"
    return (f"  (x {number(step.read.value, digits)} − mean {number(step.mean, digits)}) / √(var "
            f"{number(step.var, digits)} + eps {number(step.eps, digits)}){scale}{shift}"
            f" = {number(trace.value, digits)}{_then(trace, digits)}")


def _normalization(step: Normalization, trace: Trace, full: bool, digits: int) -> list[str]:
    return [f"  {read_text(step.read, digits)}", _normalized_line(step, trace, digits)]


def _layer_norm(step: LayerNormalization, trace: Trace, full: bool, digits: int) -> list[str]:
    return [_extent(step.reads, step.input_shape),
            f"  {read_text(step.read, digits)}; mean {number(step.mean, digits)} and variance "
            f"{number(step.var, digits)} of the {len(step.reads)} values normalised together",
            _normalized_line(step, trace, digits),
            ] + _listing(step.reads, lambda r: read_text(r, digits), full, "values")


def _response_norm(step: ResponseNormalization, trace: Trace, full: bool, digits: int) -> list[str]:
    return [_extent(step.reads, step.input_shape),
            f"  {read_text(step.read, digits)} / (k {number(step.k, digits)} + α {number(step.alpha, digits)} · "
            f"Σ x² {number(step.square_sum(), digits)} / size {step.size})^β {number(step.beta, digits)}"
            f" = {number(trace.value, digits)}{_then(trace, digits)}",
            f"  Σ x² over the {len(step.reads)} channels of the window (channels past the edges are zeros)",
            ] + _listing(step.reads, lambda r: read_text(r, digits), full, "channels")


def _elementwise(step: Elementwise, trace: Trace, full: bool, digits: int) -> list[str]:
    lines = [f"  {step.name}({read_text(step.read, digits)}) = {number(trace.value, digits)}{_then(trace, digits)}"]
    if step.made is not None:
        lines.append(f"  x = {_combined(step.made, 'ab')} (in the model's code, not a layer), where")
        lines += _combination_lines(step.made, digits, "    ")
    return lines


def _copy(step: Copy, trace: Trace, full: bool, digits: int) -> list[str]:
    if step.source is not None:  # one of several inputs: name the layer (or other source) that made it
        return [f"  copy ({step.op}) of input {step.operand}: {_operand_text(step.source, digits)}"
                f"{_then(trace, digits)}"]
    operand = f" of input {step.operand}" if step.operand else ""
    return [f"  copy ({step.op}){operand} of {read_text(step.read, digits)}{_then(trace, digits)}"]


def _made_by(operand: Operand, cell: str) -> str:
    """``layer features.2.conv.3 output[0, 3, 4, 4]`` and the like: what made the value."""
    return {"input": f"model input x{cell}",
            "layer": f"layer {operand.name}{f'#{operand.call + 1}' if operand.call else ''} output{cell}",
            "op": f"op {operand.name} output{cell}",
            "parameter": f"parameter {operand.name}{cell}", "buffer": f"buffer {operand.name}{cell}",
            "constant": "a constant"}[operand.origin]


def _operand_text(operand: Operand, digits: int) -> str:
    """``layer features.2.conv.3 output[0, 3, 4, 4] = 0.51``, or ``constant 1.716``."""
    value = number(operand.read.value, digits)
    if operand.origin == "constant":
        return f"constant {value}"
    return f"{_made_by(operand, f'[{_index(operand.read.index)}]')} = {value}"


def _combined(step: Combination, values: Sequence[str]) -> str:
    """``a + b`` for an infix op, ``max(a, b)`` for the others."""
    symbol = step.symbol
    return f"{symbol}({values[0]}, {values[1]})" if symbol.isalpha() else f"{values[0]} {symbol} {values[1]}"


def _combination_lines(step: Combination, digits: int, indent: str) -> list[str]:
    """One line per operand, each followed by how it was made when the same layer made it."""
    lines = []
    for label, operand in zip("ab", step.operands, strict=True):
        lines.append(f"{indent}{label} = {_operand_text(operand, digits)}")
        if operand.step is not None:
            inner = operand.step
            lines.append(f"{indent}    = {_combined(inner, 'ab')}, where")
            lines += _combination_lines(inner, digits, indent + "      ")
    return lines


def _combination(step: Combination, trace: Trace, full: bool, digits: int) -> list[str]:
    values = [number(o.read.value, digits) for o in step.operands]
    return [f"  {_combined(step, 'ab')} = {_combined(step, values)} = {number(trace.value, digits)}"
            f"{_then(trace, digits)}", *_combination_lines(step, digits, "    ")]


def _sum(step: Sum, trace: Trace, full: bool, digits: int) -> list[str]:
    made = _made_by(step.source, "")
    return [_extent(step.reads, step.input_shape, made),
            f"  Σ {len(step.reads)} values over dim(s) {', '.join(map(str, step.dims))} = "
            f"{number(trace.value, digits)}{_then(trace, digits)}",
            ] + _listing(step.reads, lambda r: read_text(r, digits), full, "values")


RENDERERS: dict[type, Callable[..., list[str]]] = {
    WeightedSum: _weighted_sum, WindowMax: _window_max, WindowMean: _window_mean, PowerMean: _power_mean,
    Normalization: _normalization, LayerNormalization: _layer_norm, Elementwise: _elementwise, Copy: _copy,
    Combination: _combination, Sum: _sum, ResponseNormalization: _response_norm,
}


def _then(trace: Trace, digits: int) -> str:
    return "" if trace.then is None else f" → {trace.then.name} → {number(trace.then_value, digits)}"


def render(trace: Trace, *, full: bool = False, digits: int = 4) -> str:
    """The trace as a worked example: header, the arithmetic, the terms, the recomputation."""
    step = trace.step
    name = (trace.layer or "(model)") + (f"#{trace.call + 1}" if trace.call else "")
    head = (f"{name} ({trace.layer_type}) output[{_index(trace.index)}] = "
            f"{number(trace.value, digits)}   [{step.op}, {trace.dtype}]")
    again = trace.recompute()
    tail = (f"  recomputed from the recorded terms alone: {number(again, digits)} "
            f"(engine {number(trace.value, digits)}, difference {abs(again - trace.value):.2g})")
    return "\n".join([head, *RENDERERS[type(step)](step, trace, full, digits), tail])


def _hop(t: Trace, digits: int) -> str:
    """What one step of a path did, and which of its reads the path follows."""
    step, found = t.step, strongest_read(t)
    if isinstance(step, WeightedSum):
        term = strongest_term(step)
        bias = "" if step.bias is None else "bias + "
        return f"{bias}Σ {len(step.terms)} products; largest: {_term_text(term, digits)}" if term else "bias only"
    if isinstance(step, Combination):
        label = "ab"[step.operands.index(found[0])] if found else None
        follows = f"; following {label} = {_operand_text(found[0], digits)}" if label else ""
        return f"{_combined(step, 'ab')}{follows}"
    if isinstance(step, WindowMax):
        return f"max of {len(step.reads)} cells: {read_text(step.reads[step.winner], digits)}"
    if isinstance(step, Elementwise):
        return f"{step.name}({read_text(step.read, digits)})"
    if isinstance(step, Copy):
        return f"copy ({step.op}) of {read_text(step.read, digits)}"
    if isinstance(step, (Normalization, LayerNormalization, ResponseNormalization)):
        return f"{step.kind.replace('_', ' ')} of {read_text(step.read, digits)}"
    followed = next((r for r in step.reads if found and (r.source or r.index) == found[1]), None)
    largest = f"; largest: {read_text(followed, digits)}" if followed else ""
    return f"{step.kind.replace('_', ' ')} of {len(step.reads)} cells{largest}"


def path_text(path: Sequence[Trace], digits: int = 4) -> str:
    """The strongest path back, one line per step, ending at the input cell it reached."""
    lines = ["strongest path back (each step follows the read that contributes most):"]
    for t in path:
        name = (t.layer or "(model)") + (f"#{t.call + 1}" if t.call else "")
        lines.append(f"  {name}[{_index(t.index)}] = {number(t.value, digits)}  ({t.layer_type}) {_hop(t, digits)}")
    found = strongest_read(path[-1])
    if found is not None and found[0].origin == "input":
        lines.append(f"  ← model input x[{_index(found[1])}]")
    elif found is None:
        lines.append("  (ends here: nothing the tracer can name made the value it read)")
    return "\n".join(lines)
