"""The plan of a workbook as plain data: sheets of tables, each cell a value or a formula.

The planners (:mod:`.layer_sheets`, :mod:`.plan`) fill these in; the writer
(:mod:`.xlsx`) only renders them, and tests compare a recalculated workbook against the
engine's values recorded here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..nn.module import Module
from .sheetgrid import Grid, Placed

MAX_FORMULA = 8192
"""Excel's limit on the characters of one formula."""
MAX_TITLE = 31
"""Excel's limit on a sheet title."""


@dataclass(frozen=True)
class Table:
    """One tensor on a sheet.

    ``content[index]`` is a float (a value cell) or a string starting with ``=`` (a
    formula); ``expected[index]`` is the engine's value of that element (float64), given
    for tables the engine computed, None for data (input, weights).

    Shape:
        ``content`` and ``expected`` have ``grid.shape``.
    """

    grid: Grid
    content: np.ndarray
    expected: np.ndarray | None = None
    heat: bool = False
    """Colour the cells by value (feature maps, kernels)."""

    def formulas(self) -> Iterator[tuple[tuple[int, ...], str]]:
        """(index, formula) of every formula cell."""
        for index in np.ndindex(*self.content.shape):
            value = self.content[index]
            if isinstance(value, str):
                yield index, value


@dataclass(frozen=True)
class SheetPlan:
    """A worksheet: its title, a one-line caption (row 1), column headers (row 2) and tables."""

    title: str
    caption: str
    tables: tuple[Table, ...]


@dataclass(frozen=True)
class Step:
    """What a layer's planner gets: the layer, where its input sits, and the engine's input
    and output values (no batch dim)."""

    path: str
    module: Module
    source: Placed
    x: np.ndarray
    y: np.ndarray
    title: Callable[[str], str]
    """``suffix → unique sheet title`` for this layer (``""`` for its output sheet)."""

    @property
    def name(self) -> str:
        """How messages name the layer: ``'2' (Conv2d)``."""
        return f"layer {self.path!r} ({type(self.module).__name__})"


class Titles:
    """Unique, valid sheet titles (≤ 31 characters, none of ``[]:*?/\\``)."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def make(self, base: str, suffix: str = "") -> str:
        base = re.sub(r"[\[\]:*?/\\]", "_", base).strip("'") or "sheet"
        tail = f" {suffix}" if suffix else ""
        title = base[: MAX_TITLE - len(tail)] + tail
        n = 2
        while title.lower() in self._used:
            mark = f"~{n}"
            title = base[: MAX_TITLE - len(tail) - len(mark)] + mark + tail
            n += 1
        self._used.add(title.lower())
        return title


def number(value: float) -> str:
    """A constant inside a formula: ``9`` rather than ``9.0``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def data_table(grid: Grid, values: np.ndarray, *, heat: bool = False) -> Table:
    """Cells holding ``values`` as plain numbers."""
    content = np.asarray(values, np.float64).astype(object)
    return Table(grid, content, None, heat)


def formula_table(grid: Grid, formulas: np.ndarray, expected: np.ndarray, where: str, *, heat: bool = False) -> Table:
    """Cells holding ``formulas`` (strings ``=...``; a float marks a constant cell) that the
    engine computed as ``expected``. Refuses a formula longer than Excel accepts."""
    longest = max((len(f) for f in formulas.flat if isinstance(f, str)), default=0)
    if longest > MAX_FORMULA:
        raise ValueError(f"{where}: a cell formula would be {longest:,} characters, over the {MAX_FORMULA:,} that "
                         f"Excel accepts; use fewer input channels or a smaller kernel")
    return Table(grid, formulas, np.asarray(expected, np.float64), heat)
