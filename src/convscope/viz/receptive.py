"""Receptive fields, exactly: for one output unit per layer, the input pixels that can
influence it — :meth:`convscope.trace.Trace.influence` — overlaid on the input image.

The unit of each spatial layer is the one whose receptive field is centred nearest to one
input ``point`` (so the panels show the field growing around the same place); for a vector
layer (after ``Flatten``) it is the layer's most active unit (for logits: the predicted class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import inspect
from ..analyze import summary
from ..nn import Module
from ..trace import influence
from . import style
from .featuremaps import model_input
from .figure import new_figure, save, width_for_title


@dataclass
class FieldPanel:
    """One layer's traced unit: ``index`` into the layer output (batch first) and the
    influence ``mask`` ``(H, W)`` over the input image."""

    layer: str
    type: str
    index: tuple[int, ...]
    mask: np.ndarray

    @property
    def box(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        rows, cols = np.nonzero(self.mask)
        if rows.size == 0:
            return None
        return (int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max()))


def _unit(axes: Any, point: Sequence[float], sizes: Sequence[int]) -> tuple[int, ...]:
    """Per spatial dim, the unit whose field (``size``, ``jump``, ``start``) is centred nearest
    ``point``; the middle unit where every unit sees the same cells (a field of ``all``, or
    jump 0 after a broadcast gate such as a squeeze-and-excitation block's)."""
    if axes is None or isinstance(axes, str):
        return tuple(n // 2 for n in sizes)
    units = []
    for axis, p, n in zip(axes, point, sizes):
        k = round((p - axis.start - (axis.size - 1) / 2) / axis.jump) if axis.jump else n // 2
        units.append(int(min(max(k, 0), n - 1)))
    return tuple(units)


def _checked_point(point: Sequence[float] | None, sizes: Sequence[int]) -> tuple[float, ...]:
    """``point`` (row, column) inside the input of ``sizes`` (H, W); default the centre."""
    if point is None:
        return tuple(n // 2 for n in sizes)
    if len(point) != len(sizes) or any(not 0 <= p <= n - 1 for p, n in zip(point, sizes)):
        raise ValueError(f"receptive field: point {tuple(point)} must be {len(sizes)} coordinates (row, column) inside "
                         f"the {'×'.join(map(str, sizes))} input, each in 0 .. size − 1")
    return tuple(point)


def field_panels(net: Module, x: np.ndarray, layers: Sequence[str] | None = None,
                 point: Sequence[float] | None = None, channel: int = 0) -> list[FieldPanel]:
    """The traced unit and its influence mask for each of ``layers`` (default: every layer
    with a spatial output, and the last layer); a block (a container such as ResNet's
    ``layer1``) is traced at its output."""
    if x.ndim != 4:
        raise ValueError(f"receptive field figures need an image input (1, C, H, W), got shape {x.shape}")
    rows = {r.name: r for r in summary(net, tuple(x.shape)).raise_for_error().rows}
    acts = inspect.activations(net, x)
    if layers is None:
        names = [n for n in acts if "#" not in n]
        layers = [n for n in names if acts[n].ndim >= 4] + [names[-1]]
        layers = list(dict.fromkeys(layers))
    point = _checked_point(point, x.shape[2:])
    modules = dict(net.named_modules())
    blocks = [layer for layer in layers if layer not in acts and layer in modules]  # containers: their output
    if blocks:
        acts.update(inspect.activations(net, x, blocks))
    panels = []
    for layer in layers:
        if layer not in acts:
            raise ValueError(f"no layer or block {layer!r} with an output; layers: {', '.join(acts)}")
        value = acts[layer]
        if value.ndim >= 3:
            if not 0 <= channel < value.shape[1]:
                raise ValueError(f"layer {layer!r} has {value.shape[1]} channels, got channel {channel}")
            row = rows.get(layer)
            spatial = _unit(row.receptive_field if row else None, point, value.shape[2:])
            index = (0, channel, *spatial)
        else:
            index = (0, *np.unravel_index(int(np.argmax(value[0])), value.shape[1:]))
        mask = influence(net, x, layer, index)
        module = modules[layer.split("#")[0]]
        panels.append(FieldPanel(layer, type(module).__name__, tuple(int(i) for i in index), mask[0].any(axis=0)))
    return panels


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """``image`` ``(H, W)`` in grey (scaled to its range) with the ``mask`` cells tinted in the
    highlight colour: ``(H, W, 3)`` floats in [0, 1]. Unmasked cells stay exactly grey."""
    from matplotlib.colors import to_rgb

    lo, hi = float(image.min()), float(image.max())
    grey = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image, dtype=float)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    tint = np.asarray(to_rgb(style.HIGHLIGHT))
    rgb[mask] = (1 - alpha) * rgb[mask] + alpha * tint
    return rgb


def draw_fields(image: np.ndarray, panels: list[FieldPanel], title: str) -> Any:
    from matplotlib.patches import Rectangle

    n = len(panels)
    cols = min(n, 6)
    rows = -(-n // cols)
    panels_width = 0.4 + cols * 2.0  # a few panels leave blank room on the right for the title
    width = width_for_title(panels_width, title)
    fig = new_figure(width, 0.9 + rows * 2.45)
    grid = fig.add_gridspec(rows, cols, left=0.02 * panels_width / width, right=0.98 * panels_width / width,
                            top=1 - 0.85 / fig.get_figheight(),
                            bottom=0.05, hspace=0.55, wspace=0.1)
    for k, panel in enumerate(panels):
        ax = fig.add_subplot(grid[k // cols, k % cols])
        ax.imshow(overlay(image, panel.mask), interpolation="nearest")
        box = panel.box
        if box is not None:
            (r0, r1), (c0, c1) = box
            ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1, fill=False,
                                   edgecolor=style.HIGHLIGHT_EDGE, linewidth=1.6))
        ax.set_xticks([])
        ax.set_yticks([])
        spatial = panel.index[2:]
        where = ", ".join(map(str, spatial))
        unit = f"ch {panel.index[1]}, ({where})" if spatial else f"{panel.index[1]} (most active)"
        size = f"{box[0][1] - box[0][0] + 1}×{box[1][1] - box[1][0] + 1} box" if box else "no pixels"
        ax.set_title(f"{panel.layer} ({panel.type})\nunit ({unit})\n{int(panel.mask.sum())} pixels, {size}",
                     fontsize=style.SMALL_SIZE + 0.5)
    fig.suptitle(title, x=0.02, ha="left", y=1 - 0.08 / fig.get_figheight(), va="top", fontsize=style.FONT_SIZE + 1)
    return fig


def receptive_field(model: Any = "digits", x: Any = None, *, digit: int = 0, layers: Sequence[str] | None = None,
                    point: Sequence[float] | None = None, channel: int = 0,
                    input_shape: Sequence[int] | None = None, out: str | Path | None = None) -> Any:
    """Per layer, the exact input pixels that influence one unit (orange), on the input
    image (grey), with their bounding box (default: the digits CNN on test image ``digit``)."""
    net, name, x, described = model_input(model, x, digit, input_shape)
    panels = field_panels(net, x, layers, point, channel)
    image = x[0].mean(axis=0)
    where = f"point {tuple(point)}" if point is not None else "the image centre"
    fig = draw_fields(image, panels, f"{name}: receptive field of one unit per layer on {described}\n"
                                     f"orange: the input pixels that influence the unit (trace.influence, exact); "
                                     f"units nearest {where}, channel {channel}")
    if out is not None:
        save(fig, out)
    return fig
