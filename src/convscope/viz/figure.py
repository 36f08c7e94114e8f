"""Making and saving matplotlib figures headlessly and reproducibly.

Figures are plain ``matplotlib.figure.Figure`` objects with an Agg canvas: pyplot is never
imported, so no GUI backend is chosen and no window can open. :func:`save` strips the
metadata (software version, dates) so the same figure always gives the same bytes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomic
from . import style

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")

# Per format, the metadata keys matplotlib would otherwise fill with a version or a date.
_METADATA = {
    ".png": {"Software": None},
    ".svg": {"Date": None, "Creator": None},
    ".pdf": {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None},
}


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ValueError("convscope.viz figures need matplotlib: pip install 'convscope[viz]'") from None
    return matplotlib


@contextlib.contextmanager
def styled() -> Iterator[None]:
    """Make (and later save) a figure under convscope's rc settings."""
    with _matplotlib().rc_context(style.RC):
        yield


def new_figure(width: float, height: float) -> Any:
    """A ``Figure`` of ``width`` × ``height`` inches on an Agg canvas (no pyplot, no window)."""
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with styled():
        fig = Figure(figsize=(width, height), dpi=style.DPI)
        FigureCanvasAgg(fig)
    return fig


def check_suffix(path: str | Path, allowed: tuple[str, ...] = FIGURE_SUFFIXES) -> Path:
    """``path`` as a Path, or a ValueError naming the suffixes allowed."""
    given, path = str(path), Path(path)  # Path("") is "."
    if path.suffix.lower() not in allowed:
        raise ValueError(f"output file {given!r} must end in {', '.join(allowed)}, got {path.suffix or 'none'!r}")
    return path


def width_for_title(panels_width: float, title: str) -> float:
    """The width in inches of a figure whose panels take ``panels_width`` and whose suptitle
    (at the figures' title size) is ``title``: wider than the panels when the title is, so a
    figure of one or two panels does not cut its title off at the right edge."""
    fig = new_figure(1, 1)
    with styled():
        extent = fig.text(0, 0, title, fontsize=style.FONT_SIZE + 1).get_window_extent(fig.canvas.get_renderer())
    return max(panels_width, extent.width / fig.dpi + 0.3)


def save(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as PNG, SVG or PDF (by suffix) without timestamps or version stamps."""
    path = check_suffix(path)
    suffix = path.suffix.lower()
    with styled():
        write_atomic(path, lambda fh: fig.savefig(fh, format=suffix[1:], dpi=style.DPI, metadata=_METADATA[suffix],
                                                  facecolor="white"))
    return path


def to_array(fig: Any) -> np.ndarray:
    """The figure rendered as it would be saved to PNG: ``(H, W, 4)`` uint8 RGBA, row 0 at the top."""
    with styled():
        fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()


def data_to_pixel(ax: Any, x: float, y: float, height: int) -> tuple[int, int]:
    """Pixel (row, col) of data point ``(x, y)`` of ``ax`` in :func:`to_array`'s image of ``height`` rows."""
    px, py = ax.transData.transform((x, y))
    return int(height - py), int(px)
