"""The strongest path back: from one traced value towards the model input, one layer (or op
row) at a time, each step following the value read that contributes most.

"Contributes most" is per step kind, read off the record:

- a weighted sum (convolution, linear): the term with the largest ``|input × weight|``;
- a max pool: the winner (the only cell the value depends on);
- a mean, an LP pool or a sum over dims: the cell with the largest ``|value|``;
- batch, layer and response norms, activations and copies: the value's own cell;
- a two-operand op: the operand of largest ``|value|`` among those computed from the input
  (a parameter or constant operand ends nothing: the other operand is followed).

Padding is never followed (a reflected or replicated cell is followed to the cell it copied).
The path ends at the model input, or where the value read was made by nothing ``trace`` can
name (a constant, or an op without provenance).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .steps import Combination, Operand, Read, Term, WeightedSum, WindowMax

if TYPE_CHECKING:
    from .core import Trace

FOLLOWED = ("layer", "op", "input")
"""Origins the path can step into (the model input ends it)."""


def strongest_read(t: Trace) -> tuple[Operand, tuple[int, ...]] | None:
    """What made the value ``t`` follows next and the cell of it: ``(operand, index)``, the
    operand naming the layer, op row or input; None when there is nothing to follow."""
    step = t.step
    if isinstance(step, Combination):
        live = [o for o in step.operands if o.origin in FOLLOWED]
        best = max(live, key=lambda o: abs(o.read.value), default=None)
        return None if best is None else (best, best.read.index)
    if t.source is None or t.source.origin not in FOLLOWED:
        return None
    read = _strongest(step)
    if read is None:
        return None
    return t.source, read.source if read.source is not None else read.index


def strongest_term(step: WeightedSum) -> Term | None:
    """The product of largest magnitude over real (or copied) cells; None if only padding."""
    terms = [term for term in step.terms if _real(term.read)]
    return max(terms, key=lambda term: abs(term.product)) if terms else None


def _strongest(step: object) -> Read | None:
    """The read of ``step`` that contributes most (see the module docstring); None if it
    read only padding."""
    if isinstance(step, WeightedSum):
        term = strongest_term(step)
        return None if term is None else term.read
    if isinstance(step, WindowMax):
        return step.reads[step.winner]
    own = getattr(step, "position", None)  # layer and response norms: the value's own cell
    if own is not None:
        return step.reads[own]
    reads = [r for r in step.reads if _real(r)]
    return max(reads, key=lambda r: abs(r.value)) if reads else None


def _real(read: Read) -> bool:
    """A cell of the input, or padding that copied one (reflect, replicate, circular)."""
    return read.padding is None or read.source is not None


def strongest_path(t: Trace, steps: int) -> list[Trace]:
    """``t`` and the traces it leads to by :func:`strongest_read`, at most ``steps`` of them."""
    path = [t]
    while len(path) < steps:
        found = strongest_read(path[-1])
        if found is None or found[0].origin == "input":
            break
        operand, index = found
        path.append(path[-1].follow(operand.name, index, operand.call))
    return path
