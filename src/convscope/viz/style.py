"""The one place for convscope's figure style: colours, colour maps, fonts, sizes, DPI.

Every colour is colour-blind safe: the Okabe–Ito palette for categories (layer families,
groups, train/validation), perceptually uniform ``viridis`` for magnitudes and ColorBrewer's
``RdBu_r`` (safe for the common colour-vision deficiencies) for signed values centred on
zero; animation cells without printed numbers are shaded in grey. Plain data only: no
matplotlib import here.
"""

from __future__ import annotations

OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7",
}
"""Okabe & Ito (2008), "Color Universal Design": eight colours distinguishable by everyone."""

CATEGORY_CYCLE = ("blue", "orange", "bluish_green", "reddish_purple", "vermillion", "sky_blue", "yellow")
"""Order in which categories (groups of channels, curves) take Okabe–Ito colours."""

SEQUENTIAL = "viridis"   # magnitudes: activations, saliency, counts
DIVERGING = "RdBu_r"     # signed values around 0: weights (red positive, blue negative)

FAMILY_COLORS = {
    "input": "#FFFFFF", "conv": OKABE_ITO["sky_blue"], "pool": OKABE_ITO["orange"],
    "linear": OKABE_ITO["bluish_green"], "merge": OKABE_ITO["vermillion"], "norm": OKABE_ITO["yellow"],
    "activation": OKABE_ITO["yellow"], "dropout": "#DDDDDD", "reshape": "#BBBBBB", "other": "#DDDDDD",
}
"""Architecture diagrams: fill colour of a node by what its op does."""

HIGHLIGHT = OKABE_ITO["orange"]      # the traced unit's influence, the current window
HIGHLIGHT_EDGE = OKABE_ITO["vermillion"]
TEXT = "#222222"
MUTED = "#777777"
GRID = "#DDDDDD"
PADDING_FILL = "#E4E4E4"             # cells that padding supplied

FONT_FAMILY = "DejaVu Sans"          # ships with matplotlib: the same glyphs everywhere
FONT_SIZE = 9
TITLE_SIZE = 11
SMALL_SIZE = 7.5

DPI = 100                            # PNG resolution; figure sizes are in inches at this DPI

RC = {
    "font.family": FONT_FAMILY, "font.size": FONT_SIZE, "axes.titlesize": FONT_SIZE + 1,
    "axes.labelsize": FONT_SIZE, "xtick.labelsize": SMALL_SIZE + 0.5, "ytick.labelsize": SMALL_SIZE + 0.5,
    "legend.fontsize": SMALL_SIZE + 0.5, "figure.titlesize": TITLE_SIZE, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": False, "image.interpolation": "nearest",
    "svg.hashsalt": "convscope", "svg.fonttype": "path", "pdf.fonttype": 42, "savefig.dpi": DPI,
    "figure.dpi": DPI, "path.simplify": False,
}
"""matplotlib settings every figure is made and saved under (``svg.hashsalt`` makes SVG ids
reproducible)."""

ANIMATION = {
    "cell": 28, "gap": 12, "margin": 14, "font": 11, "small_font": 10, "title_font": 14,
    "background": "#FFFFFF", "cell_fill": "#FFFFFF", "cell_edge": "#9A9A9A", "text": TEXT, "muted": MUTED,
    "padding_fill": PADDING_FILL, "ceil_fill": "#F4F4F4",
    "intro_ms": 1600, "step_ms": 700, "outro_ms": 3000, "max_numbered_cells": 16,
}
"""Pillow animations: pixel sizes, fills and frame durations (milliseconds). Numbers are
printed in cells while a grid is at most ``max_numbered_cells`` wide."""


def category_color(i: int) -> str:
    """The ``i``-th categorical colour (wraps around)."""
    return OKABE_ITO[CATEGORY_CYCLE[i % len(CATEGORY_CYCLE)]]
