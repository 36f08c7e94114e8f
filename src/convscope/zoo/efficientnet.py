"""EfficientNet B0–B7: Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks", Table 1 (the B0 baseline) and its compound scaling; and EfficientNetV2 S/M/L:
Tan & Le 2021, "EfficientNetV2: Smaller Models and Faster Training". Both in torchvision's layout
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

EfficientNetV2 starts with Fused-MBConv stages, where one k×k conv replaces the expansion and
the depthwise conv (no squeeze-and-excitation), and ends with a 1×1 conv to 1280 channels. Its
variants are listed stage by stage (torchvision's configurations of the paper's Table 4 and
its M and L), with batch norm's eps 1e-3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .. import functional as F
from .. import nn
from ._init import Rules, conv_kaiming_normal_fan_out, norm_ones_zeros, reinitialise
from .mobilenet import SqueezeExcitation, conv_bn_act, make_divisible
from .registry import register

PAPER = "Tan & Le 2019, EfficientNet (arXiv:1905.11946), Table 1 and section 3.3"
PAPER_V2 = "Tan & Le 2021, EfficientNetV2 (arXiv:2104.00298), Table 4"

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


class _ResidualBlock(nn.Module):
    """``block(x)``, plus ``x`` through stochastic depth when the block keeps its size."""

    def forward(self, x: Any) -> Any:
        result = self.block(x)
        return self.stochastic_depth(result) + x if self.use_res_connect else result


class MBConv(_ResidualBlock):
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


class FusedMBConv(_ResidualBlock):
    """EfficientNetV2's Fused-MBConv (torchvision's ``FusedMBConv``): a k×k conv to the
    expanded channels (the stage's first block strides) and a 1×1 linear projection, or at
    ratio 1 one k×k conv to the output; SiLU after the k×k conv, the residual connection and
    stochastic depth as in :class:`MBConv`.

    Shape:
        input ``(N, C_in, H, W)`` → output ``(N, C_out, ⌈H/stride⌉, ⌈W/stride⌉)``.
    """

    def __init__(self, expand_ratio: float, kernel: int, stride: int, in_channels: int, out_channels: int,
                 drop: float, **norm: float) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and in_channels == out_channels
        expanded = make_divisible(in_channels * expand_ratio)
        if expanded != in_channels:
            layers = [conv_bn_act(in_channels, expanded, kernel, stride, activation=nn.SiLU, **norm),
                      conv_bn_act(expanded, out_channels, 1, activation=None, **norm)]
        else:
            layers = [conv_bn_act(in_channels, out_channels, kernel, stride, activation=nn.SiLU, **norm)]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = nn.StochasticDepth(drop, "row")
        self.out_channels = out_channels


# A stage: (block, expansion ratio, kernel, stride, input channels, output channels, blocks).
Stage = tuple[type, float, int, int, int, int, int]

V2_STAGES: dict[str, tuple[Stage, ...]] = {
    "efficientnet_v2_s": ((FusedMBConv, 1, 3, 1, 24, 24, 2), (FusedMBConv, 4, 3, 2, 24, 48, 4),
                          (FusedMBConv, 4, 3, 2, 48, 64, 4), (MBConv, 4, 3, 2, 64, 128, 6),
                          (MBConv, 6, 3, 1, 128, 160, 9), (MBConv, 6, 3, 2, 160, 256, 15)),
    "efficientnet_v2_m": ((FusedMBConv, 1, 3, 1, 24, 24, 3), (FusedMBConv, 4, 3, 2, 24, 48, 5),
                          (FusedMBConv, 4, 3, 2, 48, 80, 5), (MBConv, 4, 3, 2, 80, 160, 7),
                          (MBConv, 6, 3, 1, 160, 176, 14), (MBConv, 6, 3, 2, 176, 304, 18),
                          (MBConv, 6, 3, 1, 304, 512, 5)),
    "efficientnet_v2_l": ((FusedMBConv, 1, 3, 1, 32, 32, 4), (FusedMBConv, 4, 3, 2, 32, 64, 7),
                          (FusedMBConv, 4, 3, 2, 64, 96, 7), (MBConv, 4, 3, 2, 96, 192, 10),
                          (MBConv, 6, 3, 1, 192, 224, 19), (MBConv, 6, 3, 2, 224, 384, 25),
                          (MBConv, 6, 3, 1, 384, 640, 7)),
}
# (dropout before the classifier, torchvision's evaluation resolution)
V2_VARIANTS: dict[str, tuple[float, int]] = {
    "efficientnet_v2_s": (0.2, 384), "efficientnet_v2_m": (0.3, 480), "efficientnet_v2_l": (0.4, 480)}
V2_HEAD = 1280
_V2_NORM = {"eps": 1e-3}


def _linear_uniform_out(linear: nn.Linear) -> None:
    """Weight ~ U(−1/√out_features, 1/√out_features), bias 0 (torchvision's EfficientNet classifier)."""
    bound = 1.0 / math.sqrt(linear.out_features)
    nn.init.uniform_(linear.weight, -bound, bound)
    nn.init.zeros_(linear.bias)


# torchvision's EfficientNet.__init__ (B0–B7 and V2): convs kaiming_normal_(mode="fan_out") with bias 0,
# BatchNorm2d / GroupNorm weight 1 and bias 0, Linear U(±1/√out_features) with bias 0.
INIT_RULES: Rules = ((nn.Conv2d, conv_kaiming_normal_fan_out), ((nn.BatchNorm2d, nn.GroupNorm), norm_ones_zeros),
                     (nn.Linear, _linear_uniform_out))


class EfficientNet(nn.Module):
    """``features`` (stem, one Sequential of blocks per stage, 1×1 head conv to ``head``
    channels) → global average pool → ``classifier`` (dropout, linear). Initialised as
    torchvision does (:data:`INIT_RULES`): convs Kaiming-normal with fan_out, the classifier
    U(±1/√num_classes).

    Shape:
        input ``(N, 3, H, W)`` → output ``(N, num_classes)``; the last feature map is
        ``(N, head, ⌈H/32⌉, ⌈W/32⌉)`` (B0: 4 × 320 = 1280).
    """

    def __init__(self, stages: Sequence[Stage], head: int, dropout: float, num_classes: int = 1000,
                 stochastic_depth: float = STOCHASTIC_DEPTH, **norm: float) -> None:
        super().__init__()
        total = sum(stage[-1] for stage in stages)
        layers: list[nn.Module] = [conv_bn_act(3, stages[0][4], 3, stride=2, activation=nn.SiLU, **norm)]
        index = 0
        for block, ratio, kernel, stride, cin, cout, blocks in stages:
            stage = []
            for b in range(blocks):
                stage.append(block(ratio, kernel, stride if b == 0 else 1, cin if b == 0 else cout, cout,
                                   stochastic_depth * index / total, **norm))
                index += 1
            layers.append(nn.Sequential(*stage))
        layers.append(conv_bn_act(stages[-1][5], head, 1, activation=nn.SiLU, **norm))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(head, num_classes))
        reinitialise(self, INIT_RULES)

    def forward(self, x: Any) -> Any:
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(F.flatten(x, 1))


def _variant(name: str, num_classes: int, dropout: float | None, stochastic_depth: float) -> EfficientNet:
    width, depth, default_dropout, _ = VARIANTS[name]
    norm = _TF_NORM if name in ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7") else {}
    stages = [(MBConv, ratio, kernel, stride, make_divisible(cin * width), make_divisible(cout * width),
               math.ceil(blocks * depth)) for ratio, kernel, stride, cin, cout, blocks in STAGES]
    return EfficientNet(stages, 4 * stages[-1][5], default_dropout if dropout is None else dropout, num_classes,
                        stochastic_depth, **norm)


def _v2_variant(name: str, num_classes: int, dropout: float | None, stochastic_depth: float) -> EfficientNet:
    default_dropout, _ = V2_VARIANTS[name]
    return EfficientNet(V2_STAGES[name], V2_HEAD, default_dropout if dropout is None else dropout, num_classes,
                        stochastic_depth, **_V2_NORM)


def _v2_entry(name: str) -> Any:
    resolution = V2_VARIANTS[name][1]
    fused = sum(stage[0] is FusedMBConv for stage in V2_STAGES[name])
    return register(name, input_shape=(3, resolution, resolution),
                    reference=PAPER_V2 + f"; torchvision.models.{name}",
                    description=f"EfficientNetV2-{name[-1].upper()}: {fused} Fused-MBConv then "
                                f"{len(V2_STAGES[name]) - fused} MBConv stages, SiLU, at {resolution}², "
                                "torchvision layout")


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


@_v2_entry("efficientnet_v2_s")
def efficientnet_v2_s(num_classes: int = 1000, dropout: float | None = None,
                      stochastic_depth: float = STOCHASTIC_DEPTH) -> EfficientNet:
    """EfficientNetV2-S (Table 4 of the paper): 21,458,488 parameters; ``dropout`` defaults to 0.2.

    Shape:
        input ``(N, 3, 384, 384)`` → output ``(N, num_classes)``.
    """
    return _v2_variant("efficientnet_v2_s", num_classes, dropout, stochastic_depth)


@_v2_entry("efficientnet_v2_m")
def efficientnet_v2_m(num_classes: int = 1000, dropout: float | None = None,
                      stochastic_depth: float = STOCHASTIC_DEPTH) -> EfficientNet:
    """EfficientNetV2-M: 54,139,356 parameters; ``dropout`` defaults to 0.3.

    Shape:
        input ``(N, 3, 480, 480)`` → output ``(N, num_classes)``.
    """
    return _v2_variant("efficientnet_v2_m", num_classes, dropout, stochastic_depth)


@_v2_entry("efficientnet_v2_l")
def efficientnet_v2_l(num_classes: int = 1000, dropout: float | None = None,
                      stochastic_depth: float = STOCHASTIC_DEPTH) -> EfficientNet:
    """EfficientNetV2-L: 118,515,272 parameters; ``dropout`` defaults to 0.4.

    Shape:
        input ``(N, 3, 480, 480)`` → output ``(N, num_classes)``.
    """
    return _v2_variant("efficientnet_v2_l", num_classes, dropout, stochastic_depth)
