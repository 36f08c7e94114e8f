"""Plan a whole workbook: the input sheet, each layer's sheets in order, the prediction.

The engine runs the model once (forward hooks record every layer's input and output); the
planners turn each layer into formulas, and those recorded values become the ``expected``
values a recalculated workbook must reproduce.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import functional as F
from .. import nn
from ..interop.onnx_graph import OnnxModel
from ..nn.module import Module
from ..tensor import Tensor, no_grad
from .layer_sheets import PLANNERS, grid_for, supported
from .sheetgrid import MAX_COLUMNS, MAX_ROWS, TOP, Grid, Placed, a1, cell_grid, column_grid
from .tables import SheetPlan, Step, Table, Titles, data_table, formula_table


@dataclass(frozen=True)
class WorkbookPlan:
    """Every sheet in order, plus the engine's logits, softmax and predicted class for the input."""

    sheets: tuple[SheetPlan, ...]
    logits: np.ndarray
    probabilities: np.ndarray
    prediction: int


def model_layers(model: Module) -> list[tuple[str, Module]]:
    """The layers of a (possibly nested) ``nn.Sequential`` in the order they run.

    Raises ValueError naming the first layer the spreadsheet cannot compute.
    """
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"export_xlsx: expected an nn.Sequential (its layers run in order) or an ONNX graph "
                         f"that is a chain of layers, got {type(model).__name__}")
    layers = []
    for path, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            continue
        if type(module) not in PLANNERS:
            raise ValueError(f"export_xlsx: layer {path!r} ({type(module).__name__}) has no spreadsheet form; "
                             f"supported: {supported()}")
        layers.append((path, module))
    if not layers:
        raise ValueError("export_xlsx: the model has no layers")
    return layers


def as_input(x: Any, dtype: np.dtype) -> np.ndarray:
    """One sample with its batch dim: ``(1, C, H, W)`` or ``(1, F)`` from that shape with or
    without the batch dim, cast to the model's dtype."""
    array = np.asarray(x.numpy() if isinstance(x, Tensor) else x)
    if array.dtype.kind not in "fiub":
        raise ValueError(f"export_xlsx: expected a numeric input array, got dtype {array.dtype}")
    if array.ndim in (1, 3):
        array = array[None]
    if array.ndim not in (2, 4) or (array.ndim == 2 and array.shape[0] != 1):
        hint = "; a single-channel image needs its channel dim: (1, H, W)" if array.ndim == 2 else ""
        raise ValueError(f"export_xlsx: expected one image (C, H, W) or feature vector (F,), with or without a batch "
                         f"dim of 1, got shape {array.shape}{hint}")
    if array.shape[0] != 1:
        raise ValueError(f"export_xlsx: a workbook computes one sample; got a batch of {array.shape[0]} "
                         f"(shape {array.shape}); pass x[i:i+1]")
    bad = int(np.size(array) - np.isfinite(array).sum())
    if bad:
        raise ValueError(f"export_xlsx: the input has {bad} non-finite value(s); a spreadsheet cell needs a number")
    return array.astype(dtype)


def run_engine(model: Module, layers: list[tuple[str, Module]], x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input, output) of every layer, batch dim dropped, from one forward pass of the model."""
    calls: list[tuple[Module, np.ndarray, np.ndarray]] = []
    handles = [module.register_forward_hook(lambda m, args, out: calls.append((m, args[0].numpy(), out.numpy())))
               for _, module in layers]
    try:
        with no_grad():
            model(Tensor.wrap(x))
    finally:
        for handle in handles:
            handle.remove()
    if [m for m, _, _ in calls] != [m for _, m in layers]:
        raise ValueError("export_xlsx: the model's forward did not run each of its layers once, in order")
    return [(inp[0], out[0]) for _, inp, out in calls]


def _input_sheet(x: np.ndarray, title: str) -> tuple[SheetPlan, Placed]:
    grid = grid_for(x.shape)
    caption = (f"input {' × '.join(map(str, x.shape))}: edit any value here and every formula sheet, down to the "
               f"prediction, recomputes")
    return SheetPlan(title, caption, (data_table(grid, x, heat=x.ndim == 3),)), Placed(title, grid)


def _softmax(logits: np.ndarray) -> np.ndarray:
    with no_grad():
        return F.softmax(Tensor.wrap(logits.astype(np.float64)), dim=0).numpy()


def _at(grid: Grid, index: tuple[int, ...] = ()) -> str:
    """An unqualified reference (same sheet) to one cell of ``grid``."""
    return a1(int(grid.rows[index]), int(grid.cols[index]))


def _prediction_sheet(scores: Placed, logits: np.ndarray, title: str) -> SheetPlan:
    """Class scores (references to the last layer), a softmax spelled out, and the argmax."""
    k = len(logits)
    where = "export_xlsx: prediction"
    score = column_grid(k, header="score", names=[f"class {i}" for i in range(k)])
    expo = column_grid(k, header="exp(score − max)", col=3, row_labels=False)
    prob = column_grid(k, header="probability", col=4, row_labels=False)
    top, total = cell_grid(TOP, 7, "max score"), cell_grid(TOP + 1, 7, "Σ exp")
    predicted, confidence = cell_grid(TOP + 3, 7, "predicted class"), cell_grid(TOP + 4, 7, "its probability")
    column = {name: f"{_at(g, (0,))}:{_at(g, (k - 1,))}" for name, g in (("score", score), ("exp", expo),
                                                                         ("prob", prob))}
    probs = _softmax(logits)
    shifted = np.exp(logits.astype(np.float64) - logits.max())

    def cells(grid: Grid, formulas: list[str], values: np.ndarray) -> Table:
        return formula_table(grid, np.array(formulas, object).reshape(grid.shape), values, where)

    tables = (
        cells(score, ["=" + scores.ref((i,)) for i in range(k)], logits),
        cells(expo, [f"=EXP({_at(score, (i,))}-{_at(top)})" for i in range(k)], shifted),
        cells(prob, [f"={_at(expo, (i,))}/{_at(total)}" for i in range(k)], probs),
        cells(top, [f"=MAX({column['score']})"], np.asarray(logits.max())),
        cells(total, [f"=SUM({column['exp']})"], np.asarray(shifted.sum())),
        cells(predicted, [f"=MATCH({_at(top)},{column['score']},0)-1"], np.asarray(np.argmax(logits))),
        cells(confidence, [f"=MAX({column['prob']})"], np.asarray(probs.max())),
    )
    caption = "prediction: the class scores, their softmax, and the class with the highest score (counted from 0)"
    return SheetPlan(title, caption, tables)


def _check_fits(sheet: SheetPlan) -> None:
    for table in sheet.tables:
        rows, cols = table.grid.extent()
        if rows > MAX_ROWS or cols > MAX_COLUMNS:
            raise ValueError(f"export_xlsx: sheet {sheet.title!r} needs {rows:,} rows × {cols:,} columns; a sheet "
                             f"holds at most {MAX_ROWS:,} × {MAX_COLUMNS:,}")


def plan_workbook(model: Module, x: Any) -> WorkbookPlan:
    """Plan the workbook that computes ``model`` on the single sample ``x`` with formulas (an
    ONNX graph that is a chain of layers as the ``nn.Sequential`` of them)."""
    if isinstance(model, OnnxModel):
        try:
            model = model.as_sequential()
        except ValueError as err:
            raise ValueError(f"export_xlsx: {err}") from None
    layers = model_layers(model)
    batch = as_input(x, np.dtype(next((p.dtype for p in model.parameters()), np.float32)))
    values = run_engine(model, layers, batch)
    titles = Titles()
    sheet, source = _input_sheet(batch[0], titles.make("input"))
    sheets = [sheet]
    for (path, module), (inp, out) in zip(layers, values):
        base = f"{path} {type(module).__name__}"
        step = Step(path, module, source, inp, out, lambda suffix, base=base: titles.make(base, suffix))
        planned, source = PLANNERS[type(module)](step)
        sheets.extend(planned)
    logits = values[-1][1]
    if logits.ndim != 1:
        raise ValueError(f"export_xlsx: the model must end in class scores (N, classes), but it outputs "
                         f"{(1, *logits.shape)}; end it with Flatten and Linear")
    sheets.append(_prediction_sheet(source, logits, titles.make("prediction")))
    for sheet in sheets:
        _check_fits(sheet)
    return WorkbookPlan(tuple(sheets), logits, _softmax(logits), int(np.argmax(logits)))
