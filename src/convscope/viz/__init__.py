"""Figures and animations of what the engine computes — never a hand-drawn diagram.

Every figure is built from real engine values for the given model and input: the
architecture graph from the model's own forward pass on meta tensors, costs from
:func:`convscope.summary`, kernels from the weights, activations and receptive fields from
running and tracing the model, animations from ``F.conv2d`` and friends. Figures are
matplotlib ``Figure`` objects on an Agg canvas (no pyplot, never a window) and save
without timestamps, so the same inputs give the same bytes.

>>> from convscope import viz
>>> fig = viz.architecture_diagram("resnet18")              # doctest: +SKIP
>>> viz.save_animation(viz.conv_frames(x, w), "conv.gif")    # doctest: +SKIP

Names load on first use: importing :mod:`convscope.viz` imports neither matplotlib nor Pillow.
matplotlib and Pillow come with the ``viz`` extra: ``pip install 'convscope[viz]'``.
"""

import importlib
from typing import Any

_LAZY = {
    "architecture_diagram": "architecture", "build_graph": "graph", "Graph": "graph",
    "cost_chart": "costs", "share_chart": "costs", "cost_bars": "costs",
    "filter_figure": "filters", "filter_grid": "filters",
    "feature_maps": "featuremaps",
    "receptive_field": "receptive", "field_panels": "receptive",
    "training_curves": "training", "confusion": "training", "saliency_map": "training",
    "conv_frames": "frames", "conv_transpose_frames": "frames", "pool_frames": "frames", "example": "frames",
    "render": "animate", "save_animation": "animate",
    "save": "figure",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'convscope.viz' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
