"""A CNN as a live spreadsheet: :func:`export_xlsx` writes a workbook that computes the
model with formulas, cell by cell.

>>> import pathlib, tempfile, numpy as np, convscope as cs
>>> from convscope.export import export_xlsx
>>> net = cs.nn.Sequential(cs.nn.Conv2d(1, 2, 3, padding=1), cs.nn.ReLU(), cs.nn.MaxPool2d(2),
...                        cs.nn.Flatten(), cs.nn.Linear(8, 3))
>>> result = export_xlsx(net, np.ones((1, 4, 4), np.float32), pathlib.Path(tempfile.mkdtemp()) / "net.xlsx")
>>> [s.title for s in result.sheets]  # doctest: +NORMALIZE_WHITESPACE
['input', '0 Conv2d weight', '0 Conv2d bias', '0 Conv2d padded', '0 Conv2d', '1 ReLU', '2 MaxPool2d',
 '3 Flatten', '4 Linear weight', '4 Linear bias', '4 Linear', 'prediction']
>>> print(result.sheets[4].tables[0].content[1, 0, 0])        # conv output channel 1, row 0, column 0
=SUMPRODUCT('0 Conv2d padded'!B4:D6,'0 Conv2d weight'!B9:D11)+'0 Conv2d bias'!B4
>>> print(result.sheets[6].tables[0].content[1, 0, 1])        # max pool, channel 1, row 0, column 1
=MAX('1 ReLU'!I4:J5)

The shipped ``convscope.pretrained("digits")`` exports the same way (``convscope
export-xlsx digits --digit 0 -o digits.xlsx``).

openpyxl (``pip install 'convscope[xlsx]'``) is imported only when a workbook is written;
it writes formulas without cached values, so the file's numbers appear when a spreadsheet
program (Excel, LibreOffice Calc) opens and computes it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import cannot_write
from ..nn.module import Module
from .plan import WorkbookPlan, plan_workbook
from .tables import SheetPlan

__all__ = ["XlsxExport", "export_xlsx"]

_NUMBER_FORMAT = "0.000"
_HEAT = ("F8696B", "FFFFFF", "5A8AC6")  # negative → zero → positive


@dataclass(frozen=True)
class XlsxExport:
    """What :func:`export_xlsx` wrote: the sheets (with the engine's value of every formula
    cell), the engine's logits and softmax ``(classes,)`` and its predicted class."""

    path: Path
    sheets: tuple[SheetPlan, ...]
    logits: np.ndarray
    probabilities: np.ndarray
    prediction: int

    def formula_cells(self) -> Iterator[tuple[str, int, int, float]]:
        """``(sheet title, row, column, engine value)`` of every formula cell (1-based)."""
        for sheet in self.sheets:
            for table in sheet.tables:
                for index, _ in table.formulas():
                    yield (sheet.title, int(table.grid.rows[index]), int(table.grid.cols[index]),
                           float(table.expected[index]))

    @property
    def n_formulas(self) -> int:
        return sum(1 for sheet in self.sheets for table in sheet.tables for _ in table.formulas())

    @property
    def n_cells(self) -> int:
        """Number and formula cells (labels not counted)."""
        return sum(table.content.size for sheet in self.sheets for table in sheet.tables)


def _openpyxl() -> Any:
    try:
        import openpyxl
    except ImportError:
        raise ImportError("writing .xlsx needs openpyxl: pip install 'convscope[xlsx]'") from None
    return openpyxl


def _write_sheet(openpyxl: Any, book: Any, sheet: SheetPlan) -> None:
    from openpyxl.formatting.rule import ColorScaleRule
    from openpyxl.styles import Font

    ws = book.create_sheet(sheet.title)
    ws.cell(1, 1, sheet.caption).font = Font(bold=True)
    italic = Font(italic=True, color="666666")
    widest = 1
    for table in sheet.tables:
        grid = table.grid
        for row, col, text in grid.labels:
            ws.cell(row, col, text).font = italic
        for index in np.ndindex(*table.content.shape):
            cell = ws.cell(int(grid.rows[index]), int(grid.cols[index]), table.content[index])
            cell.number_format = _NUMBER_FORMAT
        widest = max(widest, grid.extent()[1])
        if table.heat:
            box = (f"{openpyxl.utils.get_column_letter(int(grid.cols.min()))}{int(grid.rows.min())}:"
                   f"{openpyxl.utils.get_column_letter(int(grid.cols.max()))}{int(grid.rows.max())}")
            ws.conditional_formatting.add(box, ColorScaleRule(
                start_type="min", start_color=_HEAT[0], mid_type="num", mid_value=0, mid_color=_HEAT[1],
                end_type="max", end_color=_HEAT[2]))
    narrow = len(sheet.tables) == 1
    for col in range(2, widest + 1):
        ws.column_dimensions[openpyxl.utils.get_column_letter(col)].width = 7 if narrow else 16


def write_workbook(plan: WorkbookPlan, path: Path) -> None:
    """Render ``plan`` with openpyxl and move it into place atomically (temp file in the
    same folder, then ``os.replace``): a reader never sees a half-written workbook."""
    openpyxl = _openpyxl()
    book = openpyxl.Workbook()
    book.remove(book.active)
    book.calculation.fullCalcOnLoad = True  # no cached results: ask the reader to compute everything
    for sheet in plan.sheets:
        _write_sheet(openpyxl, book, sheet)
    # not mkstemp: its 0600 mode would stick to the workbook; this file gets the umask's mode
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        book.save(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise cannot_write(path, exc) from exc
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _check_path(path: str | os.PathLike) -> Path:
    out = Path(path)
    if out.suffix.lower() != ".xlsx":
        raise ValueError(f"export_xlsx: the output must be an .xlsx file, got {str(out)!r}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"export_xlsx: the output folder {str(out.parent)!r} does not exist")
    return out


def export_xlsx(model: Module, x: Any, path: str | os.PathLike) -> XlsxExport:
    """Write a workbook that computes ``model`` on the sample ``x`` with spreadsheet formulas.

    Sheets, in order: ``input`` (the sample's values), then per layer its parameters
    (``<layer> weight``, ``<layer> bias``), a padded copy of its input where it pads
    (``<layer> padded``: zeros around, references inside), and its output ``<layer>``, every
    cell a formula over the cells before it (conv: bias + Σ_c SUMPRODUCT(window, kernel);
    max pool: MAX; average pool: AVERAGE or SUM/divisor; ReLU: MAX(0, x); Tanh; Sigmoid;
    Flatten: references; Linear: SUMPRODUCT(weight column, inputs) + bias); last
    ``prediction``: the class scores, their softmax and the argmax. Feature maps are laid out
    one labelled block per channel. Editing the input recomputes everything.

    Parameters
    ----------
    model : an ``nn.Sequential`` (nesting allowed) of Conv2d (any padding mode, stride,
        groups; dilation 1), MaxPool2d, AvgPool2d, ReLU, Tanh, Sigmoid, Flatten and Linear,
        ending in class scores.
    x : one sample, ``(C, H, W)`` or ``(F,)``, with or without a batch dim of 1.
    path : the ``.xlsx`` to write (replaced atomically if it exists).

    Returns
    -------
    XlsxExport : the sheets with the engine's value of every formula cell, the engine's
        logits and predicted class.

    Raises
    ------
    ValueError : an unsupported layer (named), a batch of more than one, a non-finite input,
        a formula longer than Excel's 8,192 characters, a sheet past Excel's size.
    ShapeError : the input does not fit the model.
    ImportError : openpyxl is not installed.
    """
    out = _check_path(path)
    plan = plan_workbook(model, x)
    write_workbook(plan, out)
    return XlsxExport(out, plan.sheets, plan.logits, plan.probabilities, plan.prediction)
