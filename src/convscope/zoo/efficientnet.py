"""EfficientNet B0–B7: Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks", Table 1 (the B0 baseline) and its compound scaling, in torchvision's layout
and state_dict keys (``features.1.0.block.0.0.weight``, ``classifier.1.weight``).

Each stage repeats one MBConv block: a 1×1 expansion by the stage's ratio (skipped at ratio 1),
a k×k depthwise conv (the stage's first block strides), squeeze-and-excitation to a quarter of
the block's *input* channels, a 1×1 linear projection; SiLU after the first two, and a residual
connection when the block keeps its size, whose branch stochastic depth drops in training with
a probability that grows linearly with the block's index (0.2 · index / blocks).

A larger model scales all three dimensions of B0 at once: channels by ``width`` (rounded to
multiples of 8, as :func:`~.mobilenet.make_divisible`), each stage's block count by ``depth``
(rounded up), and the input resolution. The variants, as torchvision builds them: (width, depth,
dropout before the classifier, the paper's resolution).
"""

from __future__ import annotations

import math
from typing import Any

from .. import functional as F
from .. import nn
from .mobilenet import SqueezeExcitation, conv_bn_act, make_divisible
from .registry import register

PAPER = "Tan & Le 2019, EfficientNet (arXiv:1905.11946), Table 1 and section 3.3"

# Table 1, the MBConv stages of B0: (expansion ratio, kernel, stride, input channels, output
# channels, blocks). The stem (3×3/2 conv to 32) and the head (1×1 conv to 4 × 320 = 1280,
# pooling, fully connected) surround them.
STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
VARIANTS: dict[str, tuple[float, float, float, int]] = {
    "efficientnet_b0": (1.0, 1.0, 0.2, 224),
    "efficientnet_b1": (1.0, 1.1, 0.2, 240),
    "efficientnet_b2": (1.1, 1.2, 0.3, 260),
    "efficientnet_b3": (1.2, 1.4, 0.3, 300),
    "efficientnet_b4": (1.4, 1.8, 0.4, 380),
    "efficientnet_b5": (1.6, 2.2, 0.4, 456),
    "efficientnet_b6": (1.8, 2.6, 0.5, 528),
    "efficientnet_b7": (2.0, 3.1, 0.5, 600),
}
# B5–B7 came to torchvision from another port, with TensorFlow's batch-norm settings.
_TF_NORM = {"eps": 0.001, "momentum": 0.01}
STOCHASTIC_DEPTH = 0.2  # the last block's drop probability (torchvision's default)


class MBConv(nn.Module):
    """The inverted residual block with squeeze-and-excitation (torchvision's ``MBConv``):
    ``block`` holds the units, ``stochastic_depth`` drops the residual branch in training.

    Shape:
        input ``(N, C_in, H, W)`` → output ``(N, C_out, ⌈H/stride⌉, ⌈W/stride⌉)``.
    """

    def __init__(self, expand_ratio: float, kernel: int, stride: int, in_channels: int, out_channels: int,
                 drop: float, **norm: float) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and in_channels == out_channels
        expanded = make_divisible(in_channels * expand_ratio)
        layers: list[nn.Module] = []
        if expanded != in_channels:
            layers.append(conv_bn_act(in_channels, expanded, 1, activation=nn.SiLU, **norm))
        layers += [conv_bn_act(expanded, expanded, kernel, stride, groups=expanded, activation=nn.SiLU, **norm),
                   SqueezeExcitation(expanded, max(1, in_channels // 4), activation=nn.SiLU, gate=nn.Sigmoid),
                   conv_bn_act(expanded, out_channels, 1, activation=None, **norm)]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = nn.StochasticDepth(drop, "row")
        self.out_channels = out_channels

    def forward(self, x: Any) -> Any:
        result = self.block(x)
        return self.stochastic_depth(result) + x if self.use_res_connect else result


class EfficientNet(nn.Module):
    """``features`` (stem, one Sequential of MBConv blocks per stage, 1×1 head conv) → global
    average pool → ``classifier`` (dropout, linear).

    Shape:
        input ``(N, 3, H, W)`` → output ``(N, num_classes)``; the last feature map is
        ``(N, 4·C, ⌈H/32⌉, ⌈W/32⌉)`` with ``C`` the last stage's channels (320 in B0).
    """

    def __init__(self, width: float, depth: float, dropout: float, num_classes: int = 1000,
                 stochastic_depth: float = STOCHASTIC_DEPTH, **norm: float) -> None:
        super().__init__()
        stages = [(ratio, kernel, stride, make_divisible(cin * width), make_divisible(cout * width),
                   math.ceil(blocks * depth)) for ratio, kernel, stride, cin, cout, blocks in STAGES]
        total = sum(stage[-1] for stage in stages)
        layers: list[nn.Module] = [conv_bn_act(3, stages[0][3], 3, stride=2, activation=nn.SiLU, **norm)]
        index = 0
        for ratio, kernel, stride, cin, cout, blocks in stages:
            stage = []
            for b in range(blocks):
                stage.append(MBConv(ratio, kernel, stride if b == 0 else 1, cin if b == 0 else cout, cout,
                                    stochastic_depth * index / total, **norm))
                index += 1
            layers.append(nn.Sequential(*stage))
        last = stages[-1][4]
        layers.append(conv_bn_act(last, 4 * last, 1, activation=nn.SiLU, **norm))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * last, num_classes))

    def forward(self, x: Any) -> Any:
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(F.flatten(x, 1))


def _variant(name: str, num_classes: int, dropout: float | None, stochastic_depth: float) -> EfficientNet:
    width, depth, default_dropout, _ = VARIANTS[name]
    norm = _TF_NORM if name in ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7") else {}
    return EfficientNet(width, depth, default_dropout if dropout is None else dropout, num_classes,
                        stochastic_depth, **norm)


def _entry(name: str) -> Any:
    width, depth, _, resolution = VARIANTS[name]
    scaled = "Table 1's MBConv stages" if name == "efficientnet_b0" else f"B0 ×{width:g} wide, ×{depth:g} deep"
    return register(name, input_shape=(3, resolution, resolution), reference=PAPER + f"; torchvision.models.{name}",
                    description=f"EfficientNet-B{name[-1]}: {scaled}, SiLU, squeeze-and-excite, at {resolution}², "
                                "torchvision layout")


@_entry("efficientnet_b0")
def efficientnet_b0(num_classes: int = 1000, dropout: float | None = None,
        stochastic_depth: float = STOCHASTIC_DEPTH) -> EfficientNet:
    """EfficientNet-B0 (the baseline of Table 1): 5,288,548 parameters; ``dropout`` defaults to the
    variant's.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return _variant("efficientnet_b0", num_classes, dropout, stochastic_depth)


@_entry("efficientnet_b1")
def efficientnet_b1(num_classes: int = 1000, dropout: float | None = None,
        stochastic_depth: float = STOCHASTIC_DEPTH) -> EfficientNet:
    """EfficientNet-B1 (B0 ×1 wide, ×1.1 deep): 7,794,184 parameters; ``dropout`` defaults to the
    variant's.

    Shape:
        input ``(N, 3, 240, 240)`` → output ``(N, num_classes)``.
    """
    return _variant("efficientnet_b1", num_classes, dropout, stochastic_depth)


@_entry("efficientnet_b2")
def efficientnet_b2(num_classes: int = 1000, dropout: float | None = None,
        stochastic_depth: float = STOCHASTIC_DEPTH) -> EfficientNet:
    """EfficientNet-B2 (B0 ×1.1 wide, ×1.2 deep): 9,109,994 parameters; ``dropout`` defaults to the
    variant's.

    Shape:
        input ``(N, 3, 260, 260)`` → output ``(N, num_classes)``.
    """
    return _variant("efficientnet_b2", num_classes, dropout, stochastic_depth)


@_entry("efficientnet_b3")
def efficientnet_b3(num_classes: int = 1000, dropout: float | None = None,
        stochastic_depth: float = STOCHASTIC_DEPTH) -> EfficientNet:
    """EfficientNet-B3 (B0 ×1.2 wide, ×1.4 deep): 12,233,232 parameters; ``dropout`` defaults to the
    variant's.

    Shape:
        input ``(N, 3, 300, 300)`` → output ``(N, num_classes)``.
    """
    return _variant("efficientnet_b3", num_classes, dropout, stochastic_depth)


@_entry("efficientnet_b4")
def efficientnet_b4(num_classes: int = 1000, dropout: float | None = None,
        stochastic_depth: float = STOCHASTIC_DEPTH) -> EfficientNet:
    """EfficientNet-B4 (B0 ×1.4 wide, ×1.8 deep): 19,341,616 parameters; ``dropout`` defaults to the
    variant's.

    Shape:
        input ``(N, 3, 380, 380)`` → output ``(N, num_classes)``.
    """
    return _variant("efficientnet_b4", num_classes, dropout, stochastic_depth)


@_entry("efficientnet_b5")
def efficientnet_b5(num_classes: int = 1000, dropout: float | None = None,
        stochastic_depth: float = STOCHASTIC_DEPTH) -> EfficientNet:
    """EfficientNet-B5 (B0 ×1.6 wide, ×2.2 deep): 30,389,784 parameters; ``dropout`` defaults to the
    variant's.

    Shape:
        input ``(N, 3, 456, 456)`` → output ``(N, num_classes)``.
    """
    return _variant("efficientnet_b5", num_classes, dropout, stochastic_depth)


@_entry("efficientnet_b6")
def efficientnet_b6(num_classes: int = 1000, dropout: float | None = None,
        stochastic_depth: float = STOCHASTIC_DEPTH) -> EfficientNet:
    """EfficientNet-B6 (B0 ×1.8 wide, ×2.6 deep): 43,040,704 parameters; ``dropout`` defaults to the
    variant's.

    Shape:
        input ``(N, 3, 528, 528)`` → output ``(N, num_classes)``.
    """
    return _variant("efficientnet_b6", num_classes, dropout, stochastic_depth)


@_entry("efficientnet_b7")
def efficientnet_b7(num_classes: int = 1000, dropout: float | None = None,
        stochastic_depth: float = STOCHASTIC_DEPTH) -> EfficientNet:
    """EfficientNet-B7 (B0 ×2 wide, ×3.1 deep): 66,347,960 parameters; ``dropout`` defaults to the
    variant's.

    Shape:
        input ``(N, 3, 600, 600)`` → output ``(N, num_classes)``.
    """
    return _variant("efficientnet_b7", num_classes, dropout, stochastic_depth)
