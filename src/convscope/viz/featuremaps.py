"""Feature maps: every layer's activations for one input, one row per layer.

The values are :func:`convscope.inspect.activations` (the model's own forward in eval
mode). Each row has its own colour scale (a colour bar with the row's minimum and maximum);
vector outputs (after ``Flatten``/``Linear``) are drawn as one strip of cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import inspect
from ..models import resolve_model
from . import style
from .figure import new_figure, save, width_for_title


def digit_input(index: int = 0) -> tuple[np.ndarray, int]:
    """Test image ``index`` of the embedded digits ``(1, 1, 8, 8)`` and its label."""
    from ..data import digits

    images, labels = digits("test")
    if not 0 <= index < len(images):
        raise ValueError(f"digit {index} is out of range: the digits test set has {len(images)} images")
    return images[index:index + 1], int(labels[index])


def model_input(model: Any, x: Any, digit: int, input_shape: Sequence[int] | None = None
                ) -> tuple[Any, str, np.ndarray, str]:
    """(module with weights, name, one input ``(1, *shape)`` of the model's dtype, what the
    input is): the given ``x``; else digits test image ``digit`` for a model taking 1×8×8 (or
    a Module without an ``input_shape``); else seeded uniform noise of the model's input shape."""
    from ..analyze.summary import input_dtypes

    found = resolve_model(model, weights=True)
    net, name, shape = found.module, found.name, tuple(input_shape or found.input_shape or ())
    dtype = input_dtypes(net, 1)[0]  # a float64 model (a torch module's .double()) takes float64
    if x is not None:
        arr = np.asarray(x.numpy() if hasattr(x, "numpy") else x, dtype=dtype)
        return net, name, arr if arr.ndim == 4 or (shape and arr.ndim == len(shape) + 1) else arr[None], \
            "the given input"
    if tuple(shape) in ((1, 8, 8), ()):
        image, label = digit_input(digit)
        return net, name, image.astype(dtype), f"digits test image {digit} (label {label})"
    noise = np.random.default_rng(0).random((1, *shape), dtype=np.float32).astype(dtype)
    return net, name, noise, "uniform random input (seed 0)"


def _as_image(a: np.ndarray) -> np.ndarray:
    """One sample's map ``(*spatial)`` as 2-D: 1-D as a row, 3-D as its middle depth slice."""
    if a.ndim == 1:
        return a[None, :]
    if a.ndim == 3:
        return a[a.shape[0] // 2]
    return a


def feature_maps(model: Any = "digits", x: Any = None, *, digit: int = 0, layers: Sequence[str] | None = None,
                 max_channels: int = 8, input_shape: Sequence[int] | None = None,
                 out: str | Path | None = None) -> Any:
    """Activations of every layer (or of ``layers``) of ``model`` for one input (default: the
    shipped digits CNN on digits test image ``digit``); the first ``max_channels`` channels
    of each layer."""
    import matplotlib

    if max_channels < 1:
        raise ValueError(f"max_channels must be ≥ 1, got {max_channels}")
    net, name, x, described = model_input(model, x, digit, input_shape)
    acts = {"input": x} | inspect.activations(net, x, layers)
    # no empty columns: at most as many as the layer with the most channels has
    max_channels = min(max_channels, max((a.shape[1] for a in acts.values() if a.ndim > 2), default=max_channels))
    rows = len(acts)
    heights = [1.0 if a.ndim > 2 else 0.45 for a in acts.values()]  # vectors get a thin strip
    shown = "the first channel" if max_channels == 1 else f"the first {max_channels} channels"
    title = (f"{name}: activations of every layer for {described}\n{shown} of each layer; "
             "one colour scale per row (viridis, activation value)")
    maps_width = 1.9 + max_channels * 0.95 + 0.9  # a few channels leave blank room on the right for the title
    width = width_for_title(maps_width, title)
    fig = new_figure(width, 0.8 + sum(heights) * 1.05 + 0.25 * rows)
    grid = fig.add_gridspec(rows, max_channels + 1, left=1.6 / width, right=0.93 * maps_width / width,
                            top=1 - 0.7 / fig.get_figheight(), bottom=0.3 / fig.get_figheight(),
                            width_ratios=[1] * max_channels + [0.12], height_ratios=heights, hspace=0.5, wspace=0.12)
    cmap = matplotlib.colormaps[style.SEQUENTIAL]
    modules = dict(net.named_modules())
    for row, (layer, value) in enumerate(acts.items()):
        sample = value[0]
        typ = "" if layer == "input" else f" ({type(modules[layer.split('#')[0]]).__name__})"
        label = f"{layer}{typ}\n{'×'.join(map(str, sample.shape))}"
        lo, hi = float(sample.min()), float(sample.max())
        norm = matplotlib.colors.Normalize(lo, hi if hi > lo else lo + 1)
        if sample.ndim == 1:  # a vector: one strip over all channel columns
            ax = fig.add_subplot(grid[row, :max_channels])
            image = ax.imshow(sample[None, :], cmap=cmap, norm=norm, aspect="auto")
            ax.set_yticks([])
            if sample.size <= 16:
                ax.set_xticks(range(sample.size))
                if max_channels * 0.95 / sample.size >= 0.35:  # inches a value: room for "-9.2", else they overlap
                    for k, v in enumerate(sample):
                        ax.text(k, 0, f"{v:.2g}", ha="center", va="center", fontsize=style.SMALL_SIZE,
                                color="white" if norm(v) < 0.6 else "black")
            else:
                ax.set_xticks([])
            ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=style.SMALL_SIZE + 0.5)
        else:
            channels = min(max_channels, sample.shape[0])
            for c in range(channels):
                ax = fig.add_subplot(grid[row, c])
                image = ax.imshow(_as_image(sample[c]), cmap=cmap, norm=norm)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"ch {c}", fontsize=style.SMALL_SIZE, pad=2)
                if c == 0:
                    ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=style.SMALL_SIZE + 0.5)
        cbar = fig.colorbar(image, cax=fig.add_subplot(grid[row, max_channels]))
        cbar.ax.tick_params(labelsize=style.SMALL_SIZE - 1)
    fig.suptitle(title, x=0.02, ha="left", y=1 - 0.08 / fig.get_figheight(), va="top", fontsize=style.FONT_SIZE + 1)
    if out is not None:
        save(fig, out)
    return fig
