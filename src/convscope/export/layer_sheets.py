"""One planner per layer type: the sheets that compute a layer with spreadsheet formulas.

Every planner writes the layer's parameters as data sheets and its output as formulas that
reference the input and parameter cells: a convolution is ``bias + Σ_c SUMPRODUCT(window
of input channel c, kernel weight[o, c])``, a max pool ``MAX(window)``, an average pool
``AVERAGE(window)`` (or ``SUM(window)/divisor`` where PyTorch divides by something else), a
linear layer ``SUMPRODUCT(column of weights, input vector) + bias``. Window geometry and
divisors come from the engine's own rules (``F.pool_geometry``, ``F.pad``), so the sheet
reads exactly the cells the engine's kernels read.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .. import functional as F
from .. import nn
from ..functional.pool import _avg_divisor
from ..tensor import Tensor, no_grad
from .sheetgrid import Grid, Placed, column_grid, kernel_grid, map_grid, matrix_grid
from .tables import SheetPlan, Step, data_table, formula_table, number

Planned = tuple[list[SheetPlan], Placed]
Planner = Callable[[Step], Planned]

PLANNERS: dict[type, Planner] = {}
"""Layer type → planner; :func:`convscope.export.export_xlsx` refuses any other type."""


def _register(*types: type) -> Callable[[Planner], Planner]:
    def wrap(fn: Planner) -> Planner:
        for t in types:
            PLANNERS[t] = fn
        return fn
    return wrap


def grid_for(shape: tuple[int, ...]) -> Grid:
    """The layout of an activation: blocks of maps for ``(C, H, W)``, a column for ``(F,)``."""
    if len(shape) == 3:
        return map_grid(shape)
    if len(shape) == 1:
        return column_grid(shape[0], header="value")
    raise ValueError(f"only (C, H, W) feature maps and (F,) vectors fit on a sheet, got shape {shape}")


def _require_rank(step: Step, rank: int, hint: str) -> None:
    if step.x.ndim != rank:
        kind = "(C, H, W) feature maps" if rank == 3 else "an (F,) vector"
        raise ValueError(f"export_xlsx: {step.name} needs {kind} per sample, got shape {step.x.shape}; {hint}")


def _refuse(step: Step, what: str) -> None:
    raise ValueError(f"export_xlsx: {step.name} has {what}, which a spreadsheet range cannot express")


def _shape_text(shape: tuple[int, ...]) -> str:
    return " × ".join(map(str, shape))


def _output_sheet(step: Step, grid: Grid, formulas: np.ndarray, caption: str) -> Planned:
    title = step.title("")
    table = formula_table(grid, formulas, step.y, f"export_xlsx: {step.name}", heat=step.y.ndim == 3)
    return [SheetPlan(title, caption, (table,))], Placed(title, grid)


def _parameter_sheets(step: Step, weight: np.ndarray, weight_grid: Grid, what: str) -> tuple[list[SheetPlan], Placed,
                                                                                               Placed | None]:
    """The weight sheet and, if the layer has one, the bias sheet."""
    module = step.module
    w_title = step.title("weight")
    sheets = [SheetPlan(w_title, f"{step.name}: weight {_shape_text(weight.shape)}; {what}",
                        (data_table(weight_grid, weight, heat=weight.ndim == 4),))]
    bias = None
    if module.bias is not None:
        b = module.bias.numpy()
        bias = Placed(step.title("bias"), column_grid(len(b), header="bias"))
        sheets.append(SheetPlan(bias.title, f"{step.name}: bias ({len(b)},), one per output",
                                (data_table(bias.grid, b),)))
    return sheets, Placed(w_title, weight_grid), bias


# --- convolution ------------------------------------------------------------------------------------
def _padded_sheet(step: Step, pads: list[int], mode: str) -> tuple[SheetPlan, Placed]:
    """The layer input with its padding, as a sheet: every cell either a constant 0 or a
    reference to the input cell the padding mode copies (found by padding a grid of input
    indices with the engine's own ``F.pad``)."""
    shape = step.x.shape
    index = np.arange(math.prod(shape), dtype=np.float64).reshape(1, *shape)
    with no_grad():
        if mode == "zeros":
            source = F.pad(Tensor.wrap(index), pads, mode="constant", value=-1.0).numpy()[0]
            padded = F.pad(Tensor.wrap(step.x[None]), pads, mode="constant").numpy()[0]
        else:
            source = F.pad(Tensor.wrap(index), pads, mode=mode).numpy()[0]
            padded = F.pad(Tensor.wrap(step.x[None]), pads, mode=mode).numpy()[0]
    formulas = np.empty(source.shape, object)
    for cell in np.ndindex(*source.shape):
        k = int(source[cell])
        formulas[cell] = 0.0 if k < 0 else "=" + step.source.ref(np.unravel_index(k, shape))
    title = step.title("padded")
    left, right, top, bottom = pads
    caption = (f"{step.name}: its input padded ({mode}: top {top}, bottom {bottom}, left {left}, right {right}); "
               f"each cell references the input cell it copies")
    table = formula_table(map_grid(source.shape), formulas, padded, f"export_xlsx: {step.name}", heat=True)
    return SheetPlan(title, caption, (table,)), Placed(title, table.grid)


@_register(nn.Conv2d)
def _conv2d(step: Step) -> Planned:
    conv = step.module
    _require_rank(step, 3, "a Conv2d reads (C, H, W) maps")
    if conv.dilation != (1, 1):
        _refuse(step, f"dilation {conv.dilation} (its windows skip cells)")
    weight = conv.weight.numpy()
    c_out, c_group, kh, kw = weight.shape
    sheets, kernels, bias = _parameter_sheets(step, weight, kernel_grid(weight.shape),
                                              "the kernel weight[o, c] sits at block row o, block column c")
    pads = list(conv._reversed_padding_repeated_twice)
    source = step.source
    if any(pads):
        padded_sheet, source = _padded_sheet(step, pads, conv.padding_mode)
        sheets.append(padded_sheet)
    sh, sw = conv.stride
    _, h_out, w_out = step.y.shape
    outs_per_group = c_out // conv.groups
    window = {(c, i, j): source.span((c, i * sh, j * sw), (c, i * sh + kh - 1, j * sw + kw - 1))
              for c in range(step.x.shape[0]) for i in range(h_out) for j in range(w_out)}
    kernel = {(o, c): kernels.span((o, c, 0, 0), (o, c, kh - 1, kw - 1)) for o in range(c_out) for c in range(c_group)}
    formulas = np.empty(step.y.shape, object)
    for o, i, j in np.ndindex(*step.y.shape):
        first = (o // outs_per_group) * c_group
        terms = [f"SUMPRODUCT({window[first + c, i, j]},{kernel[o, c]})" for c in range(c_group)]
        formulas[o, i, j] = "=" + "+".join(terms) + (f"+{bias.ref((o,))}" if bias else "")
    caption = (f"{step.name}: output {_shape_text(step.y.shape)} = bias + Σ over {c_group} input channel(s) of "
               f"SUMPRODUCT({kh}×{kw} window, kernel), stride {conv.stride}")
    out_sheets, placed = _output_sheet(step, map_grid(step.y.shape), formulas, caption)
    return sheets + out_sheets, placed


# --- pooling ------------------------------------------------------------------------------------------
def _pool_windows(step: Step, op: str, dilation: object) -> tuple[F.PoolGeometry, dict[tuple[int, int], tuple]]:
    """The engine's pool geometry and, per output position, the window clipped to the real
    input cells ``(row0, row1, col0, col1, cells)`` (padding and ceil-mode overhang add
    nothing to a max, and zeros to a sum)."""
    pool = step.module
    geo = F.pool_geometry((1, *step.x.shape), pool.kernel_size, pool.stride, pool.padding, dilation, pool.ceil_mode,
                          op=op)
    if geo.dilation != (1, 1):
        _refuse(step, f"dilation {geo.dilation} (its windows skip cells)")
    (h, w), (kh, kw) = geo.input, geo.kernel
    clipped = {}
    for i, r in enumerate(geo.window_starts(0)):
        for j, c in enumerate(geo.window_starts(1)):
            r0, r1, c0, c1 = max(int(r), 0), min(int(r) + kh, h) - 1, max(int(c), 0), min(int(c) + kw, w) - 1
            clipped[i, j] = (r0, r1, c0, c1, (r1 - r0 + 1) * (c1 - c0 + 1))
    return geo, clipped


@_register(nn.MaxPool2d)
def _max_pool2d(step: Step) -> Planned:
    _require_rank(step, 3, "a MaxPool2d reads (C, H, W) maps")
    if step.module.return_indices:
        _refuse(step, "return_indices=True (a second output)")
    geo, windows = _pool_windows(step, "max_pool2d", step.module.dilation)
    formulas = np.empty(step.y.shape, object)
    for c, i, j in np.ndindex(*step.y.shape):
        r0, r1, c0, c1, _ = windows[i, j]
        formulas[c, i, j] = f"=MAX({step.source.span((c, r0, c0), (c, r1, c1))})"
    caption = (f"{step.name}: output {_shape_text(step.y.shape)} = MAX over each {geo.kernel[0]}×{geo.kernel[1]} "
               f"window of one channel (stride {geo.stride}; padding adds nothing)")
    return _output_sheet(step, map_grid(step.y.shape), formulas, caption)


@_register(nn.AvgPool2d)
def _avg_pool2d(step: Step) -> Planned:
    _require_rank(step, 3, "an AvgPool2d reads (C, H, W) maps")
    pool = step.module
    geo, windows = _pool_windows(step, "avg_pool2d", 1)
    divisor = np.broadcast_to(_avg_divisor(geo, pool.count_include_pad, pool.divisor_override,
                                           np.dtype(np.float64)), geo.out)
    formulas = np.empty(step.y.shape, object)
    for c, i, j in np.ndindex(*step.y.shape):
        r0, r1, c0, c1, cells = windows[i, j]
        span = step.source.span((c, r0, c0), (c, r1, c1))
        d = float(divisor[i, j])
        formulas[c, i, j] = f"=AVERAGE({span})" if d == cells else f"=SUM({span})/{number(d)}"
    caption = (f"{step.name}: output {_shape_text(step.y.shape)} = AVERAGE of each {geo.kernel[0]}×{geo.kernel[1]} "
               f"window of one channel, or SUM/divisor where PyTorch divides by another count")
    return _output_sheet(step, map_grid(step.y.shape), formulas, caption)


# --- element-wise -------------------------------------------------------------------------------------
_ELEMENTWISE = {nn.ReLU: "MAX(0,{x})", nn.Tanh: "TANH({x})", nn.Sigmoid: "1/(1+EXP(-{x}))"}


@_register(*_ELEMENTWISE)
def _elementwise(step: Step) -> Planned:
    template = _ELEMENTWISE[type(step.module)]
    grid = grid_for(step.y.shape)
    formulas = np.empty(step.y.shape, object)
    for index in np.ndindex(*step.y.shape):
        formulas[index] = "=" + template.format(x=step.source.ref(index))
    caption = f"{step.name}: {template.format(x='x')} of every input cell"
    return _output_sheet(step, grid, formulas, caption)


# --- flatten and linear ---------------------------------------------------------------------------------
@_register(nn.Flatten)
def _flatten(step: Step) -> Planned:
    flatten, rank = step.module, step.x.ndim + 1  # the engine ran it on a batch of one
    if (flatten.start_dim % rank, flatten.end_dim % rank) != (1, rank - 1):
        _refuse(step, f"start_dim={flatten.start_dim}, end_dim={flatten.end_dim} (only the batch dim kept is "
                      f"supported)")
    cells = list(np.ndindex(*step.x.shape))
    names = [",".join(map(str, cell)) for cell in cells]
    formulas = np.array(["=" + step.source.ref(cell) for cell in cells], object)
    grid = column_grid(len(cells), names=names, header="value")
    caption = f"{step.name}: the input {_shape_text(step.x.shape)} in (channel, row, column) order, as references"
    return _output_sheet(step, grid, formulas, caption)


@_register(nn.Linear)
def _linear(step: Step) -> Planned:
    _require_rank(step, 1, "put a Flatten before it")
    weight = step.module.weight.numpy()
    n_out, n_in = weight.shape
    sheets, columns, bias = _parameter_sheets(step, weight, matrix_grid(weight.shape),
                                              "column j holds weight[j, :], row k the input k")
    vector = step.source.span((0,), (n_in - 1,))
    formulas = np.empty(n_out, object)
    for j in range(n_out):
        formulas[j] = f"=SUMPRODUCT({columns.span((j, 0), (j, n_in - 1))},{vector})" + (
            f"+{bias.ref((j,))}" if bias else "")
    caption = f"{step.name}: output j = SUMPRODUCT(weight column j, the {n_in} inputs) + bias j"
    out_sheets, placed = _output_sheet(step, column_grid(n_out, header="value"), formulas, caption)
    return sheets + out_sheets, placed


def supported() -> str:
    """The layer types the export handles, for messages."""
    return ", ".join(sorted(t.__name__ for t in PLANNERS))


__all__ = ["PLANNERS", "Planned", "Planner", "grid_for", "supported"]
