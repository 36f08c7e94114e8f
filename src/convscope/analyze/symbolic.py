"""Symbolic input sizes: output shapes as formulas in ``H`` and ``W``, and the sizes at
which a network is valid.

``summary(model, (3, "H", "W"))`` runs the ordinary meta-tensor summary once, at a
*reference* size where the network is valid (its rows, parameters and MACs are the numbers
at that size), then follows the recorded op events with the size rule each op registers
beside its kernel (:func:`convscope.rules.size_rule`). Every dim becomes a
:class:`~convscope.rules.SymSize` (``⌊(H − 1)/2⌋ + 1``, or an exact opaque function where
no closed form exists), and every check an op makes on its input becomes a
:class:`~convscope.rules.Constraint`. Evaluating all constraints for ``H = 1 … 2048`` at
once (vectorised) gives the valid sizes.

Exactness: each formula evaluated at the reference size must equal the engine's shape and
each constraint must hold there; a mismatch raises an internal ``AssertionError``. The
formulas describe the ops that ran at the reference size: a model whose ``forward``
branches on sizes, or reads a size from ``x.shape`` and passes it back as a number
(``x.view(n, c, h * w)``; ``flatten`` and ``view(n, -1)`` are fine), follows other ops
elsewhere. An op without a size rule whose output shape differs from its input's makes
the sizes past it unknown (``?``); the summary notes it, and the valid sizes then ignore
the checks that depend on them.

>>> import convscope as cs
>>> s = cs.summary(cs.nn.Conv2d(1, 8, 3, stride=2, padding=1), (1, "H", "W"))
>>> s.rows[0].output_formula
['8', '⌊(H − 1)/2⌋ + 1', '⌊(W − 1)/2⌋ + 1']
>>> s.validity["H"].text
'H ≥ 1'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..rules import SIZE_RULES, UNKNOWN, Constraint, Sizes, UnknownSize, const, consts, symbol
from ..tensor import Tensor
from .record import Symbolic, Validity
from .walk import Walk

if TYPE_CHECKING:
    from .summary import Summary

CANDIDATES = (224, 227, 256, 299, 32, 64, 96, 128, 28, 512, 16, 8, 48, 112, 160, 192, 384, 1024)
"""Reference sizes tried (after the model's own default) until the network runs."""
LIMIT = 2048
"""Valid sizes are checked for 1 … LIMIT."""

Run = Callable[[list[tuple[int, ...]]], tuple["Summary", Walk, list[Tensor | None]]]
Located = tuple[str, Constraint]  # (layer (op), constraint)


def parse_shape(text: str, what: str = "input_shape") -> tuple[int | str, ...]:
    """``"3x224x224"`` (or ``"3,224,224"``, ``"3×224×224"``) → ``(3, 224, 224)``; capitalised
    names are symbolic sizes: ``"3xHxW"`` → ``(3, "H", "W")``. ``what`` names the text in errors."""
    parts = text.replace("×", ",").replace("x", ",").replace("X", ",").split(",")
    try:
        shape = tuple(p if p.isalpha() and p[0].isupper() else int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{what} must look like 3x224x224 or 3xHxW, got {text!r}") from None
    if any(isinstance(s, int) and s < 1 for s in shape):
        raise ValueError(f"{what} sizes must be positive, got {text!r}")
    return shape


def has_symbols(shapes: Sequence[Sequence[Any]]) -> bool:
    return any(isinstance(d, str) for s in shapes for d in s)


def summarize(name: str, shapes: list[tuple[Any, ...]], default: tuple[int, ...] | None, run: Run) -> Summary:
    """The summary at a reference size, with ``output_formula`` per row and the valid sizes.

    ``shapes`` are the batched input shapes with names for symbolic sizes, ``default`` the
    model's own batched input shape (tried first), ``run`` the concrete summary.
    """
    symbols = _symbols(name, shapes)
    reference, (result, walk, tensors) = _reference(name, shapes, symbols, default, run)
    table, checks, notes = _propagate(walk, shapes)
    _self_check(walk, table, checks, {s: np.array([v]) for s, v in reference.items()})
    row_sizes: list[Sizes | None] = []
    for row, t in zip(result.rows, tensors):
        entry = table.get(id(t)) if t is not None else None
        row_sizes.append(entry[1] if entry is not None and entry[0] is t else None)
        if row_sizes[-1] is not None:
            row.output_formula = [s.text for s in row_sizes[-1][1:]]
    skipped = sum(not _evaluable(c, reference) for _, c in checks)
    if skipped:
        notes.append(f"the valid sizes ignore {skipped} check(s) on unknown sizes")
    result.symbolic = Symbolic(shapes, reference, validity(checks, reference, symbols), notes, row_sizes)
    return result


# --- the input shape and the reference size ------------------------------------------------
def _symbols(name: str, shapes: list[tuple[Any, ...]]) -> list[str]:
    """The symbols in order of appearance; only spatial dims (after batch and channel) may be symbolic."""
    found: list[str] = []
    for shape in shapes:
        for i, d in enumerate(shape):
            if not isinstance(d, str):
                continue
            if not d.isidentifier():
                raise ValueError(f"summary: symbolic size {d!r} in input shape {shape} must be a name like 'H'")
            if i < 2 or len(shape) < 3:
                role = "batch size" if i == 0 and len(shape) >= 3 else "channel count" if i == 1 else "size"
                raise ValueError(f"summary: only spatial sizes may be symbolic, got {d!r} as the {role} in input "
                                 f"shape {shape} (batch, channels, spatial…). Hint: give it a number")
            if d not in found:
                found.append(d)
    return found


def _concrete(shapes: list[tuple[Any, ...]], sizes: dict[str, int]) -> list[tuple[int, ...]]:
    return [tuple(sizes[d] if isinstance(d, str) else int(d) for d in s) for s in shapes]


def _reference(name: str, shapes: list[tuple[Any, ...]], symbols: list[str], default: tuple[int, ...] | None,
               run: Run) -> tuple[dict[str, int], tuple[Summary, Walk, list[Tensor | None]]]:
    """The first size assignment at which the model runs: the model's default input size,
    then :data:`CANDIDATES` (one size for every symbol)."""
    tries: list[dict[str, int]] = []
    if default is not None and len(default) == len(shapes[0]):
        first = {d: int(default[i]) for i, d in reversed(list(enumerate(shapes[0]))) if isinstance(d, str)}
        tries.append({s: first[s] for s in symbols if s in first})
    tries += [{s: n for s in symbols} for n in CANDIDATES]
    error = None
    for sizes in tries:
        if set(sizes) != set(symbols):
            continue
        outcome = run(_concrete(shapes, sizes))
        if outcome[0].error is None:
            return sizes, outcome
        error = error or (sizes, outcome[0].error)
    sizes_text = ", ".join(str(n) for n in CANDIDATES)
    at = ", ".join(f"{k} = {v}" for k, v in error[0].items()) if error else ""
    raise ValueError(f"summary: {name} fails at every reference size tried for {', '.join(symbols)} "
                     f"(its default, then {sizes_text}); at {at}: {error[1] if error else '?'}. "
                     "Hint: give concrete sizes, or set the model's input_shape to a size where it runs")


# --- propagation ---------------------------------------------------------------------------
def _where(walk: Walk, call: int | None, op: str) -> str:
    if call is None:
        return op
    c = walk.calls[call]
    return f"{c.path or type(c.module).__name__} ({op})"


def _propagate(walk: Walk, shapes: list[tuple[Any, ...]]
               ) -> tuple[dict[int, tuple[Tensor, Sizes]], list[Located], list[str]]:
    """Sizes of every op output (keyed by tensor id), the located constraints and notes."""
    table: dict[int, tuple[Tensor, Sizes]] = {}
    for x, shape in zip(walk.inputs, shapes):
        table[id(x)] = (x, tuple(symbol(d) if isinstance(d, str) else const(d) for d in shape))

    def sizes_of(t: Tensor) -> Sizes:
        entry = table.get(id(t))
        return entry[1] if entry is not None and entry[0] is t else consts(t.shape)  # parameters, constants

    checks: list[Located] = []
    notes: list[str] = []
    for ev in walk.events:
        sizes = [sizes_of(t) for t in ev.inputs]
        rule = SIZE_RULES.get(ev.op)
        new: list[Constraint] = []
        if all(s.is_const for dims in sizes for s in dims):
            out = consts(ev.output.shape)
        elif rule is not None:
            out, new = rule(sizes, ev.inputs, ev.output, ev.attrs)
        elif ev.output.shape == ev.inputs[0].shape:
            out = sizes[0]  # shape-preserving (activation, dropout, …)
        else:
            out = (UNKNOWN,) * ev.output.ndim
        if any(not s.known for s in out) and all(s.known for dims in sizes for s in dims):
            why = "no size rule" if rule is None else "no size formula for these arguments"
            notes.append(f"{_where(walk, ev.call, ev.op)}: {why}; sizes past it are unknown (?)")
        if len(out) != ev.output.ndim:
            raise AssertionError(f"convscope internal error: the size rule of {ev.op} gave {len(out)} dims for a "
                                 f"{ev.output.ndim}-d output")
        table[id(ev.output)] = (ev.output, tuple(out))
        where = _where(walk, ev.call, ev.op)
        checks += [(where, c) for c in new]
    return table, checks, notes


def _self_check(walk: Walk, table: dict[int, tuple[Tensor, Sizes]], checks: list[Located], env: dict) -> None:
    """Every formula equals the engine's shape at the reference size, and every check holds there."""
    for ev in walk.events:
        for i, (s, n) in enumerate(zip(table[id(ev.output)][1], ev.output.shape)):
            if not s.known:
                continue
            got = int(np.asarray(s.value(env)).reshape(-1)[0])
            if got != n:
                raise AssertionError(f"convscope internal error: the size formula {s.text} of "
                                     f"{_where(walk, ev.call, ev.op)} dim {i} gives {got} at the reference "
                                     f"{env}, the engine {n}")
    for where, c in checks:
        try:
            ok = bool(np.all(c.holds(env)))
        except UnknownSize:
            continue
        if not ok:
            raise AssertionError(f"convscope internal error: {where}: {c.text} fails at the reference {env}, "
                                 "where the network ran")


def _evaluable(c: Constraint, reference: dict[str, int]) -> bool:
    try:
        c.holds({s: np.array([v]) for s, v in reference.items()})
    except UnknownSize:
        return False
    return True


# --- the valid sizes ---------------------------------------------------------------------
def validity(checks: list[Located], reference: dict[str, int], symbols: list[str],
             limit: int = LIMIT) -> dict[str, Validity]:
    """Per symbol (the others at their reference sizes), and for all symbols equal when
    there are several: the sizes in ``1 … limit`` where every check holds."""
    sizes = np.arange(1, limit + 1)
    groups = [(s,) for s in symbols] + ([tuple(symbols)] if len(symbols) > 1 else [])
    out: dict[str, Validity] = {}
    for group in groups:
        env = {s: sizes if s in group else np.full(limit, reference[s]) for s in symbols}
        ok = np.ones(limit, bool)
        first_fail = np.full(limit, -1)
        for k, (_, c) in enumerate(checks):
            try:
                holds = np.broadcast_to(np.asarray(c.holds(env), bool), (limit,))
            except UnknownSize:
                continue
            first_fail[~holds & (first_fail < 0)] = k
            ok &= holds
        key = " = ".join(group)
        intervals = intervals_of(ok)
        reason = _reason(key, intervals, first_fail, checks, limit)
        out[key] = Validity(key, intervals, interval_text(key, ok, intervals, limit),
                            {s: reference[s] for s in symbols if s not in group}, limit, reason)
    return out


def intervals_of(ok: np.ndarray) -> list[tuple[int, int | None]]:
    """Inclusive runs of True in ``ok`` (index 0 is size 1); a run reaching the end is open (None)."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], ok.astype(np.int8), [0]))))
    runs = [(int(lo) + 1, int(hi)) for lo, hi in zip(edges[::2], edges[1::2])]
    return [(lo, None if hi == len(ok) else hi) for lo, hi in runs]


def interval_text(key: str, ok: np.ndarray, intervals: list[tuple[int, int | None]], limit: int) -> str:
    """``H ≥ 32``, ``H = 32``, ``H ∈ [32, 63] ∪ [96, 2048+]``; a set that ends periodic (sizes
    of one parity, say) as ``H ≥ 2 with H ≡ 0 (mod 2)``, after any sizes before that."""
    if not intervals:
        return f"no {key} in 1…{limit}"
    if len(intervals) == 1:
        lo, hi = intervals[0]
        return f"{key} ≥ {lo}" if hi is None else f"{key} = {lo}" if hi == lo else f"{key} ∈ [{lo}, {hi}]"
    periodic = _periodic_tail(ok) if len(intervals) > 2 else None
    if periodic is not None:
        start, d = periodic
        residues = ", ".join(str(r) for r in sorted({n % d for n in range(start, start + d) if ok[n - 1]}))
        tail = f"{key} ≥ {start} with {key} ≡ {residues} (mod {d})"
        head = [(lo, start - 1 if hi is None else hi) for lo, hi in intervals_of(ok[:start - 1])]
        return f"{_union(key, head, limit)}, or {tail}" if head else tail
    return _union(key, intervals, limit)


def _periodic_tail(ok: np.ndarray, longest: int = 64) -> tuple[int, int] | None:
    """``(first size, period)`` of the longest periodic tail of ``ok`` with a period below
    ``longest`` (smallest period first); None unless the tail covers most of the range."""
    best = None
    for d in range(2, longest + 1):
        breaks = np.flatnonzero(ok[d:] != ok[:-d])
        start = int(breaks[-1]) + 2 if len(breaks) else 1  # sizes from `start` on repeat every d
        if not ok[start - 1:].any():
            continue  # a finite set: no tail
        start += int(np.argmax(ok[start - 1:]))  # begin at the first valid size
        if best is None or start < best[0]:
            best = (start, d)
    return best if best is not None and best[0] < len(ok) // 2 else None


def _union(key: str, intervals: list[tuple[int, int | None]], limit: int) -> str:
    pieces = [f"{{{a}}}" if a == b else f"[{a}, {limit if b is None else b}{'+' if b is None else ''}]"
              for a, b in intervals]
    if len(pieces) > 6:
        pieces = [*pieces[:3], "…", pieces[-1]]
    return f"{key} ∈ {' ∪ '.join(pieces)}"


def _reason(key: str, intervals: list[tuple[int, int | None]], first_fail: np.ndarray, checks: list[Located],
            limit: int) -> str:
    """The first check failing just below the smallest valid size and just above the largest."""
    sizes: list[int] = []
    if not intervals:
        sizes.append(limit)
    else:
        if intervals[0][0] > 1:
            sizes.append(intervals[0][0] - 1)
        if intervals[-1][1] is not None:
            sizes.append(intervals[-1][1] + 1)
    failing: dict[int, list[int]] = {}
    for n in sizes:
        if first_fail[n - 1] >= 0:
            failing.setdefault(int(first_fail[n - 1]), []).append(n)
    parts = []
    for k, at in failing.items():
        where, c = checks[k]
        sizes_text = " and ".join(f"{key} = {n}" for n in at)
        parts.append(f"{sizes_text} {'fails' if len(at) == 1 else 'fail'} at {where}: {c.text}")
    return "; ".join(parts)
