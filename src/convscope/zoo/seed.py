"""The seed example behind this project: an n×m greyscale image, a 3×3 conv with k1 filters
and padding 1, ReLU, then a 5×5 conv with k2 filters. Each second-layer filter has shape
``(k1, 5, 5)``: it spans all k1 first-layer maps."""

from __future__ import annotations

from .. import nn
from .registry import register


@register("seed", input_shape=(1, 28, 28), description="3×3 conv (k1) → ReLU → 5×5 conv (k2) on a greyscale image",
          reference="the worked example in the project brief")
def seed(k1: int = 8, k2: int = 16, in_channels: int = 1) -> nn.Sequential:
    """``Conv2d(in_channels, k1, 3, padding=1) → ReLU → Conv2d(k1, k2, 5)``.

    Shape:
        input ``(N, in_channels, n, m)`` → output ``(N, k2, n − 4, m − 4)``.
    """
    return nn.Sequential(nn.Conv2d(in_channels, k1, 3, padding=1), nn.ReLU(), nn.Conv2d(k1, k2, 5))
