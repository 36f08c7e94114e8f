"""What an explanation is made of, kept apart: a topic *computes* facts and claims, the
:class:`Explanation` *records* them as plain data, and the topic's renderer *renders* them.

- ``facts``: the numbers the engine produced on the user's sizes (ints, floats, bools,
  tuples, lists, nested dicts; exact ratios as :class:`fractions.Fraction`);
- ``claims``: the statements the explanation makes, each ``True`` only if the computation
  bore it out (``ok`` is their conjunction; the CLI exits 1 when one fails);
- a renderer ``facts -> lines`` that formats and never computes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

Facts = dict[str, Any]
Claims = dict[str, bool]
Renderer = Callable[[Facts], list[str]]


@dataclass(frozen=True)
class Option:
    """One option of a topic: its keyword name (``--name-with-dashes`` on the command line),
    the command-line parser of its value, its default and its help text. A ``bool`` option is
    a command-line flag."""

    name: str
    parse: type | Callable[[str], Any]
    default: Any
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass
class Explanation:
    """The computed answer to one question (see the module docstring)."""

    topic: str
    title: str
    facts: Facts
    claims: Claims
    renderer: Renderer = field(repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when every claim held on the computed numbers."""
        return all(self.claims.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, holds in self.claims.items() if not holds]

    def render(self) -> str:
        held = sum(self.claims.values())
        verdict = f"Verified by computation: {held} of {len(self.claims)} claims hold."
        if self.failed:
            verdict += f" FAILED: {', '.join(self.failed)}"
        return "\n".join([self.title, "=" * len(self.title), "", *self.renderer(self.facts), "", verdict])

    def __str__(self) -> str:
        return self.render()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: arrays become lists, fractions ``"p/q"`` strings."""
        return {"topic": self.topic, "title": self.title, "facts": plain(self.facts), "claims": dict(self.claims),
                "ok": self.ok}


@dataclass(frozen=True)
class Topic:
    """A question convscope answers: its options and the two halves (compute, render)."""

    name: str
    title: str
    summary: str
    options: tuple[Option, ...]
    compute: Callable[..., tuple[Facts, Claims]]
    render: Renderer
    aliases: tuple[str, ...] = ()

    def resolve(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options with defaults filled in; an unknown name is a ValueError listing the known ones."""
        known = {o.name: o.default for o in self.options}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"explain {self.name}: unknown option {', '.join(map(repr, unknown))}; "
                             f"options: {', '.join(known)}")
        return {**known, **options}

    def explain(self, **options: Any) -> Explanation:
        facts, claims = self.compute(**self.resolve(options))
        return Explanation(self.name, self.title, facts, claims, self.render)


def plain(value: Any) -> Any:
    """``value`` with NumPy arrays/scalars, tuples and fractions turned into JSON types."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    return value


# --- formatting helpers the renderers share ---------------------------------------------------
def dims(shape: Any) -> str:
    """``(8, 28, 28)`` → ``8×28×28``."""
    return "×".join(str(s) for s in shape)


def count(n: int) -> str:
    return f"{n:,}"


def diff(x: float) -> str:
    """A max-abs-difference: ``0`` when exactly zero, else ``1.1e-16``."""
    return "0" if x == 0 else f"{x:.1e}"


def signed(values: list[float], digits: int = 4) -> str:
    """``[0.25, -0.5]`` → ``0.2500 − 0.5000``: a sum written as people write it."""
    text = f"{values[0]:.{digits}f}" if values else ""
    for v in values[1:]:
        text += f" {'−' if v < 0 else '+'} {abs(v):.{digits}f}"
    return text


def mark(holds: bool) -> str:
    return "✓" if holds else "✗ FAILED"


def ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``0–2, 5``; ``[]`` → ``none``."""
    if not indices:
        return "none"
    parts, start, prev = [], indices[0], indices[0]
    for i in [*indices[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}–{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)


def table(header: list[str], rows: list[list[str]], right: set[int] | None = None) -> list[str]:
    """Fixed-width text table; columns in ``right`` are right-aligned."""
    right = right or set()
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda row: "  ".join(c.rjust(w) if i in right else c.ljust(w)  # noqa: E731
                                for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    return [fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)]
