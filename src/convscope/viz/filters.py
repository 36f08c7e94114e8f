"""Learned convolution kernels as images.

Two layouts of a weight tensor ``(C_out, C_in / groups, *kernel)``:

- ``"kernels"``: one tile per filter (first layers: one input channel drawn with the
  diverging colour map, or three drawn as an RGB image);
- ``"pairs"``: one tile per (output channel, input channel) pair over *all* input channels,
  so grouped and depthwise convolutions show the block structure of the weight tensor —
  pairs that are not connected stay grey, and each group's block is outlined.

:func:`filter_grid` builds the mosaic (plain data); :func:`draw_filters` draws it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import inspect
from ..models import resolve_model
from ..nn import Module
from . import style
from .figure import new_figure, save

GAP = 1  # mosaic cells between tiles


@dataclass
class FilterGrid:
    """A mosaic of kernel tiles.

    ``values`` ``(H, W)`` holds the weights at their mosaic cells and NaN elsewhere (RGB
    layouts: ``rgb`` ``(H, W, 3)`` in [0, 1]); ``tiles`` maps ``(out, in)`` (``in`` is -1 for
    whole-filter tiles) to the tile's top-left mosaic cell; ``missing`` lists the
    unconnected pairs' top-left cells; ``limit`` is the symmetric colour range ``±limit``.
    """

    values: np.ndarray
    rgb: np.ndarray | None
    tiles: dict[tuple[int, int], tuple[int, int]]
    missing: list[tuple[int, int]]
    tile_shape: tuple[int, int]
    layout: str
    groups: int
    shown: tuple[int, int]   # output, input channels shown
    total: tuple[int, int]   # output, input channels of the layer
    limit: float


def _tile(kernel: np.ndarray) -> np.ndarray:
    """A kernel ``(*k)`` as a 2-D tile: 1-D as one row, 3-D as its depth slices side by side
    (one empty column between slices)."""
    if kernel.ndim == 1:
        return kernel[None, :]
    if kernel.ndim == 2:
        return kernel
    slices = [np.pad(s.astype(float), ((0, 0), (0, 1)), constant_values=np.nan) for s in kernel]
    return np.concatenate(slices, axis=1)[:, :-1]


def filter_grid(weight: np.ndarray, groups: int = 1, layout: str = "auto", *, max_out: int = 64,
                max_in: int = 64) -> FilterGrid:
    """Arrange ``weight`` ``(C_out, C_in / groups, *kernel)`` as a mosaic (see the module doc).

    ``layout="auto"`` picks ``"kernels"`` for ungrouped layers with 1 or 3 input channels and
    ``"pairs"`` otherwise. At most ``max_out`` output and ``max_in`` input channels are shown.
    """
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim < 3:
        raise ValueError(f"filters: expected a conv weight (C_out, C_in/groups, *kernel), got shape {w.shape}")
    if min(max_out, max_in) < 1:
        raise ValueError(f"filters: max_out and max_in must be ≥ 1, got {max_out} and {max_in}")
    c_out, per_group = w.shape[:2]
    if groups < 1 or c_out % groups:
        raise ValueError(f"filters: {c_out} output channels cannot be split into groups={groups}")
    c_in = per_group * groups
    if layout == "auto":
        layout = "kernels" if groups == 1 and c_in in (1, 3) else "pairs"
    if layout not in ("kernels", "pairs"):
        raise ValueError(f"filters: layout must be 'auto', 'kernels' or 'pairs', got {layout!r}")
    if layout == "kernels" and (groups != 1 or c_in not in (1, 3)):
        raise ValueError(f"filters: layout 'kernels' needs 1 or 3 input channels and groups=1, got {c_in} and {groups}")
    n_out, n_in = min(c_out, max_out), min(c_in, max_in)
    limit = float(np.abs(w[:n_out]).max()) or 1.0
    th, tw = _tile(w[0, 0]).shape
    tiles: dict[tuple[int, int], tuple[int, int]] = {}
    missing: list[tuple[int, int]] = []
    if layout == "kernels":
        cols = max(1, math.ceil(math.sqrt(n_out * 2)))
        rows = math.ceil(n_out / cols)
        values = np.full((rows * (th + GAP) - GAP, cols * (tw + GAP) - GAP), np.nan)
        rgb = np.ones((*values.shape, 3)) if c_in == 3 else None
        lo, hi = w[:n_out].min(), w[:n_out].max()
        for o in range(n_out):
            r, c = divmod(o, cols)
            top, left = r * (th + GAP), c * (tw + GAP)
            tiles[(o, -1)] = (top, left)
            if c_in == 1:
                values[top:top + th, left:left + tw] = _tile(w[o, 0])
            else:
                colour = np.stack([_tile(w[o, ch]) for ch in range(3)], axis=-1)
                values[top:top + th, left:left + tw] = colour.mean(axis=-1)
                rgb[top:top + th, left:left + tw] = (colour - lo) / ((hi - lo) or 1.0)
        return FilterGrid(values, rgb, tiles, missing, (th, tw), layout, groups, (n_out, n_in), (c_out, c_in), limit)
    values = np.full((n_out * (th + GAP) - GAP, n_in * (tw + GAP) - GAP), np.nan)
    out_per_group = c_out // groups
    for o in range(n_out):
        g = o // out_per_group
        for i in range(n_in):
            top, left = o * (th + GAP), i * (tw + GAP)
            if g * per_group <= i < (g + 1) * per_group:
                tiles[(o, i)] = (top, left)
                values[top:top + th, left:left + tw] = _tile(w[o, i - g * per_group])
            else:
                missing.append((top, left))
    return FilterGrid(values, None, tiles, missing, (th, tw), layout, groups, (n_out, n_in), (c_out, c_in), limit)


def colours(grid: FilterGrid) -> np.ndarray:
    """The RGBA image drawn for ``grid``: weights through the diverging map at ``±limit``,
    gaps white, unconnected pairs light grey."""
    import matplotlib

    cmap = matplotlib.colormaps[style.DIVERGING]
    image = cmap((np.nan_to_num(grid.values) + grid.limit) / (2 * grid.limit))
    if grid.rgb is not None:
        image[..., :3] = grid.rgb
    image[np.isnan(grid.values)] = (1, 1, 1, 1)
    th, tw = grid.tile_shape
    for top, left in grid.missing:
        image[top:top + th, left:left + tw] = (0.88, 0.88, 0.88, 1)
    return image


def draw_filters(grid: FilterGrid, title: str) -> Any:
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    h, w = grid.values.shape
    scale = min(0.16, 7.5 / max(h, w))  # inches per mosaic cell
    fig = new_figure(max(5.0, w * scale + 2.2), max(3.0, h * scale + 1.6))
    width, height = w * scale / fig.get_figwidth(), h * scale / fig.get_figheight()
    ax = fig.add_axes((0.9 / fig.get_figwidth(), 0.6 / fig.get_figheight(), width, height))
    ax.imshow(colours(grid), interpolation="nearest", extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    th, tw = grid.tile_shape
    if grid.layout == "pairs":
        n_out, n_in = grid.shown
        step_o, step_i = max(1, n_out // 8), max(1, n_in // 8)
        ax.set_yticks([o * (th + GAP) + (th - 1) / 2 for o in range(0, n_out, step_o)], range(0, n_out, step_o))
        ax.set_xticks([i * (tw + GAP) + (tw - 1) / 2 for i in range(0, n_in, step_i)], range(0, n_in, step_i))
        ax.set_ylabel("output channel (filter)")
        ax.set_xlabel("input channel")
        if grid.groups > 1:
            out_g, in_g = grid.total[0] // grid.groups, grid.total[1] // grid.groups
            for g in range(grid.groups):
                o0, i0 = g * out_g, g * in_g
                if o0 >= n_out or i0 >= n_in:
                    break
                rows, cols = min(out_g, n_out - o0), min(in_g, n_in - i0)
                ax.add_patch(Rectangle((i0 * (tw + GAP) - 0.5 - GAP / 2, o0 * (th + GAP) - 0.5 - GAP / 2),
                                       cols * (tw + GAP), rows * (th + GAP), fill=False,
                                       edgecolor=style.category_color(g), linewidth=1.5, clip_on=False))
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{grid.shown[0]} filters, row by row from the top left; each tile is one kernel")
    for spine in ax.spines.values():
        spine.set_visible(False)
    if grid.rgb is None:
        cax = fig.add_axes((0.9 / fig.get_figwidth() + width + 0.2 / fig.get_figwidth(), 0.6 / fig.get_figheight(),
                            0.14 / fig.get_figwidth(), height))
        mappable = ScalarMappable(Normalize(-grid.limit, grid.limit), matplotlib.colormaps[style.DIVERGING])
        fig.colorbar(mappable, cax=cax, label="weight")
    fig.suptitle(title, x=0.02, ha="left", y=1 - 0.1 / fig.get_figheight(), va="top", fontsize=style.FONT_SIZE + 1)
    return fig


def _conv_layer(model: Module, layer: str | None, name: str) -> str:
    """``layer`` if it names a convolution of ``model`` (a layer whose weight is
    ``(C_out, C_in / groups, *kernel)``), the first one if ``layer`` is None; else a
    ValueError naming the layer, what it is, and the conv layers there are."""
    modules = dict(model.named_modules())
    convs = [n for n in inspect.layers(model) if getattr(getattr(modules[n], "weight", None), "ndim", 0) >= 3]
    if not convs:
        raise ValueError(f"filters: {name} has no convolution layer")
    if layer is None or layer in convs:
        return layer if layer is not None else convs[0]
    what = f"is a {type(modules[layer]).__name__}, not a convolution" if layer and layer in modules else \
        f"is not a layer of {name}"
    raise ValueError(f"filters: layer {layer!r} {what}; conv layers: {', '.join(convs)}")


def filter_figure(model: Any, layer: str | None = None, *, layout: str = "auto", max_out: int = 64, max_in: int = 64,
            out: str | Path | None = None) -> Any:
    """The kernels of conv ``layer`` (default: the first conv) of ``model`` (a Module or
    any MODEL of :mod:`convscope.models`: ``"digits"`` and runs with their trained weights,
    zoo names and specs with a seeded random init)."""
    found = resolve_model(model, weights=True)
    net, name = found.module, found.name
    layer = _conv_layer(net, layer, name)
    weight = inspect.filters(net, layer)
    module = dict(net.named_modules())[layer]
    groups = int(getattr(module, "groups", 1))
    grid = filter_grid(weight, groups, layout, max_out=max_out, max_in=max_in)
    kernel = "×".join(map(str, weight.shape[2:]))
    clip = "" if grid.shown == grid.total else f" (first {grid.shown[0]} of {grid.total[0]} filters, " \
                                                f"{grid.shown[1]} of {grid.total[1]} inputs)"
    group_text = f", groups={groups}" + (" (depthwise)" if groups == grid.total[1] > 1 else "") if groups > 1 else ""
    what = "RGB image per filter" if grid.rgb is not None else f"colour ±{grid.limit:.3g}"
    if getattr(module, "transposed", False):
        what += "; transposed conv: rows are its input channels"
    fig = draw_filters(grid, f"{name} layer {layer} ({type(module).__name__}): weights {tuple(weight.shape)}, "
                             f"{kernel} kernels{group_text}{clip}\n{grid.layout} layout, {what}")
    if out is not None:
        save(fig, out)
    return fig
