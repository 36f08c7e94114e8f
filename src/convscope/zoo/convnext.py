"""ConvNeXt: Liu et al. 2022, "A ConvNet for the 2020s", section 3 and Table 9, in torchvision's
layout and state_dict keys (``features.1.0.block.0.weight``, ``features.1.0.layer_scale``).

A ResNet modernised step by step towards a vision transformer's design: a 4×4/4 "patchify"
stem, stages of [3, 3, 9, 3] blocks (Tiny), each block a 7×7 depthwise conv → layer norm over
the channels → 1×1 expansion to 4× the channels (written as a Linear on channels-last maps) →
GELU → 1×1 projection back, scaled per channel by a learned ``layer_scale`` (1e-6 at
initialisation) and added to the block's input; between stages a layer norm and a 2×2/2 conv
halve the size and double the channels. Stochastic depth drops blocks in training with a
probability growing linearly from 0 to the variant's rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import functional as F
from .. import nn
from ..nn._utils import empty_parameter
from ..tensor import Tensor
from ._init import Rules, reinitialise, trunc_normal_weight
from .registry import register

PAPER = "Liu et al. 2022, A ConvNet for the 2020s (arXiv:2201.03545), section 3"

# name → (channels of the four stages, blocks per stage, the last block's stochastic depth rate)
VARIANTS: dict[str, tuple[tuple[int, ...], tuple[int, ...], float]] = {
    "convnext_tiny": ((96, 192, 384, 768), (3, 3, 9, 3), 0.1),
    "convnext_small": ((96, 192, 384, 768), (3, 3, 27, 3), 0.4),
    "convnext_base": ((128, 256, 512, 1024), (3, 3, 27, 3), 0.5),
    "convnext_large": ((192, 384, 768, 1536), (3, 3, 27, 3), 0.5),
}
EPS = 1e-6  # every layer norm's


class Permute(nn.Module):
    """The dims of the input in the order ``dims`` (torchvision's ``ops.misc.Permute``).

    Shape:
        input of ``n`` dims → output ``(input.shape[dims[0]], …, input.shape[dims[n − 1]])``.
    """

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        self.dims = list(dims)

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(*self.dims)


class LayerNorm2d(nn.LayerNorm):
    """Layer norm over the channels of each pixel: ``(N, C, H, W)`` to channels-last, normalised
    over ``C``, and back (torchvision's ``LayerNorm2d``).

    Shape:
        input ``(N, C, H, W)`` → output ``(N, C, H, W)``.
    """

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    """The ConvNeXt block (torchvision's ``CNBlock``): ``block`` holds its layers,
    ``layer_scale`` ``(C, 1, 1)`` multiplies the branch before the residual addition.

    Shape:
        input ``(N, C, H, W)`` → output ``(N, C, H, W)``.
    """

    def __init__(self, dim: int, layer_scale: float, drop: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 7, padding=3, groups=dim),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=EPS),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = empty_parameter((dim, 1, 1))
        nn.init.constant_(self.layer_scale, layer_scale)
        self.stochastic_depth = nn.StochasticDepth(drop, "row")

    def forward(self, x: Tensor) -> Tensor:
        return self.stochastic_depth(self.layer_scale * self.block(x)) + x


# torchvision's ConvNeXt.__init__: every Conv2d and Linear weight trunc_normal_(std=0.02) (bounds ±2), bias 0;
# layer norms keep weight 1 and bias 0, layer_scale its constant.
INIT_RULES: Rules = (((nn.Conv2d, nn.Linear), trunc_normal_weight(0.02, zero_bias=True)),)


class ConvNeXt(nn.Module):
    """``features`` (stem; each stage's blocks, with a downsampling layer between stages) →
    global average pool → ``classifier`` (layer norm, flatten, linear). Initialised as
    torchvision does (:data:`INIT_RULES`): conv and linear weights truncated N(0, 0.02²),
    biases 0.

    Shape:
        input ``(N, 3, H, W)`` → output ``(N, num_classes)``; the last feature map is
        ``(N, C₄, ⌊H/32⌋, ⌊W/32⌋)``.
    """

    def __init__(self, widths: Sequence[int], depths: Sequence[int], stochastic_depth: float,
                 layer_scale: float = 1e-6, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, widths[0], 4, stride=4), LayerNorm2d(widths[0], eps=EPS))]
        total, index = sum(depths), 0
        for stage, (width, depth) in enumerate(zip(widths, depths)):
            blocks = []
            for _ in range(depth):
                blocks.append(CNBlock(width, layer_scale, stochastic_depth * index / (total - 1)))
                index += 1
            layers.append(nn.Sequential(*blocks))
            if stage + 1 < len(widths):
                layers.append(nn.Sequential(LayerNorm2d(width, eps=EPS),
                                            nn.Conv2d(width, widths[stage + 1], 2, stride=2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(LayerNorm2d(widths[-1], eps=EPS), nn.Flatten(1),
                                        nn.Linear(widths[-1], num_classes))
        reinitialise(self, INIT_RULES)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def _entry(name: str) -> Any:
    widths, depths, _ = VARIANTS[name]
    title = name.split("_")[1].capitalize()
    return register(name, input_shape=(3, 224, 224), reference=PAPER + f"; torchvision.models.{name}",
                    description=f"ConvNeXt-{title}: stages of {list(depths)} blocks, {widths[0]}→{widths[-1]} "
                                "channels, 7×7 depthwise, layer norm, GELU, torchvision layout")


@_entry("convnext_tiny")
def convnext_tiny(num_classes: int = 1000, stochastic_depth: float = 0.1) -> ConvNeXt:
    """ConvNeXt-T (Tiny): 28,589,128 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    widths, depths, _ = VARIANTS["convnext_tiny"]
    return ConvNeXt(widths, depths, stochastic_depth, num_classes=num_classes)


@_entry("convnext_small")
def convnext_small(num_classes: int = 1000, stochastic_depth: float = 0.4) -> ConvNeXt:
    """ConvNeXt-S (Small): 50,223,688 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    widths, depths, _ = VARIANTS["convnext_small"]
    return ConvNeXt(widths, depths, stochastic_depth, num_classes=num_classes)


@_entry("convnext_base")
def convnext_base(num_classes: int = 1000, stochastic_depth: float = 0.5) -> ConvNeXt:
    """ConvNeXt-B (Base): 88,591,464 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    widths, depths, _ = VARIANTS["convnext_base"]
    return ConvNeXt(widths, depths, stochastic_depth, num_classes=num_classes)


@_entry("convnext_large")
def convnext_large(num_classes: int = 1000, stochastic_depth: float = 0.5) -> ConvNeXt:
    """ConvNeXt-L (Large): 197,767,336 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    widths, depths, _ = VARIANTS["convnext_large"]
    return ConvNeXt(widths, depths, stochastic_depth, num_classes=num_classes)
