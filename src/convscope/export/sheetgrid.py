"""Where each element of a tensor sits on a worksheet, and how formulas name those cells.

A :class:`Grid` maps every index of a tensor to a (row, column) cell (1-based, as
spreadsheets count). The layouts keep each 2-D slice the formulas read (one channel of a
feature map, one kernel ``weight[o, c]``, one column of linear weights) in a contiguous
rectangle, so a window is a plain range such as ``'0 Conv2d padded'!B4:D6``.

Pure data and strings: nothing here needs openpyxl.

>>> g = map_grid((2, 3, 3))                  # 2 channels of 3 × 3
>>> a1(int(g.rows[1, 0, 0]), int(g.cols[1, 0, 0]))
'F4'
>>> Placed("conv 1", g).span((1, 0, 0), (1, 2, 2))
"'conv 1'!F4:H6"
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_ROWS = 1_048_576
MAX_COLUMNS = 16_384
TOP = 3
"""First row of a sheet's tables: row 1 holds the caption, row 2 the headers."""

Label = tuple[int, int, str]


def column_letter(col: int) -> str:
    """1 → ``A``, 27 → ``AA``."""
    letters = ""
    while col > 0:
        col, rest = divmod(col - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def a1(row: int, col: int) -> str:
    """(row, column), 1-based → ``"B3"``."""
    return f"{column_letter(col)}{row}"


def quote(title: str) -> str:
    """A sheet title as formulas reference it: ``'my sheet'`` (quotes doubled inside)."""
    return "'" + title.replace("'", "''") + "'"


@dataclass(frozen=True)
class Grid:
    """Cells of a tensor: ``rows[index]``, ``cols[index]`` (1-based), plus text labels.

    Shape:
        ``rows`` and ``cols`` have the tensor's shape (no batch dim).
    """

    rows: np.ndarray
    cols: np.ndarray
    labels: tuple[Label, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.rows.shape)

    def extent(self) -> tuple[int, int]:
        """(last row, last column) the grid or its labels use."""
        rows = [int(self.rows.max(initial=0))] + [r for r, _, _ in self.labels]
        cols = [int(self.cols.max(initial=0))] + [c for _, c, _ in self.labels]
        return max(rows), max(cols)


@dataclass(frozen=True)
class Placed:
    """A tensor's grid on the sheet ``title``: the cell references formulas use."""

    title: str
    grid: Grid

    def ref(self, index: Sequence[int]) -> str:
        """``'sheet'!B3``: the cell of one element."""
        idx = tuple(index)
        return f"{quote(self.title)}!{a1(int(self.grid.rows[idx]), int(self.grid.cols[idx]))}"

    def span(self, first: Sequence[int], last: Sequence[int]) -> str:
        """``'sheet'!B3:D5``: the rectangle from element ``first`` to ``last`` (inclusive);
        the layouts keep the slices formulas read contiguous."""
        f, g = tuple(first), tuple(last)
        rows, cols = self.grid.rows, self.grid.cols
        return f"{quote(self.title)}!{a1(int(rows[f]), int(cols[f]))}:{a1(int(rows[g]), int(cols[g]))}"


def _blocks(count: int, per_row: int, height: int, width: int, top: int, left: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-left data cell of ``count`` blocks of ``height × width`` laid ``per_row`` across,
    each under a label row, one empty row/column between blocks."""
    k = np.arange(count)
    return top + 1 + (k // per_row) * (height + 2), left + (k % per_row) * (width + 1)


def _fill(origin_rows: np.ndarray, origin_cols: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``(blocks, height, width)`` cell arrays from the blocks' top-left cells."""
    i = np.arange(height)[None, :, None]
    j = np.arange(width)[None, None, :]
    rows = origin_rows[:, None, None] + i + 0 * j
    cols = origin_cols[:, None, None] + j + 0 * i
    return rows, cols


def map_grid(shape: Sequence[int], *, per_row: int | None = None, top: int = TOP, left: int = 2) -> Grid:
    """Feature maps ``(C, H, W)``: one labelled ``H × W`` block per channel, about √C blocks
    per row of blocks."""
    c, h, w = (int(s) for s in shape)
    per_row = per_row or max(1, min(c, math.ceil(math.sqrt(c)), (MAX_COLUMNS - left) // (w + 1)))
    r0, c0 = _blocks(c, per_row, h, w, top, left)
    rows, cols = _fill(r0, c0, h, w)
    labels = tuple((int(r - 1), int(col), f"channel {k}") for k, (r, col) in enumerate(zip(r0, c0)))
    return Grid(rows, cols, labels)


def kernel_grid(shape: Sequence[int], *, top: int = TOP, left: int = 2) -> Grid:
    """Conv weights ``(C_out, C_in/groups, kH, kW)``: block row ``o``, block column ``c``
    holds the kernel ``weight[o, c]``."""
    o, i, kh, kw = (int(s) for s in shape)
    r0, c0 = _blocks(o * i, i, kh, kw, top, left)
    rows, cols = _fill(r0, c0, kh, kw)
    labels = tuple((int(r - 1), int(col), f"out {k // i}, in {k % i}") for k, (r, col) in enumerate(zip(r0, c0)))
    return Grid(rows.reshape(o, i, kh, kw), cols.reshape(o, i, kh, kw), labels)


def column_grid(n: int, *, names: Sequence[str] | None = None, header: str = "", top: int = TOP,
                col: int = 2, row_labels: bool = True) -> Grid:
    """A vector ``(n,)`` down one column, row labels (``names``, default the index) on its
    left unless ``row_labels`` is False."""
    rows = top + np.arange(n)
    names = [str(k) for k in range(n)] if names is None else list(names)
    labels = tuple((int(r), col - 1, name) for r, name in zip(rows, names)) if row_labels and col > 1 else ()
    if header:
        labels += ((top - 1, col, header),)
    return Grid(rows, np.full(n, col), labels)


def matrix_grid(shape: Sequence[int], *, top: int = TOP, left: int = 2) -> Grid:
    """Linear weights ``(out, in)`` transposed onto the sheet: column ``j`` holds
    ``weight[j, :]`` down the rows, so it lines up with a column vector of inputs."""
    n_out, n_in = (int(s) for s in shape)
    rows = top + np.arange(n_in)[None, :] + 0 * np.arange(n_out)[:, None]
    cols = left + np.arange(n_out)[:, None] + 0 * np.arange(n_in)[None, :]
    labels = tuple((top - 1, left + j, f"out {j}") for j in range(n_out))
    labels += tuple((top + k, left - 1, f"in {k}") for k in range(n_in))
    return Grid(rows, cols, labels)


def cell_grid(row: int, col: int, label: str) -> Grid:
    """One cell, ``()``-shaped, with its label on the left."""
    return Grid(np.asarray(row), np.asarray(col), ((row, col - 1, label),))
