"""MobileNets: depthwise-separable convolutions.

* ``mobilenet_v1`` — Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for
  Mobile Vision Applications", Table 1, with the width multiplier α and resolution multiplier ρ
  of section 3.3 – 3.4.
* ``mobilenet_v2`` — Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear
  Bottlenecks", Table 2, in torchvision's layout and state_dict keys.
* ``mobilenet_v3_large``, ``mobilenet_v3_small`` — Howard et al. 2019, "Searching for
  MobileNetV3", Tables 1 and 2: inverted residuals with 3×3 or 5×5 depthwise convs, hard-swish
  in the later blocks and squeeze-and-excitation in some, in torchvision's layout.

All build every conv unit with :func:`conv_bn_act` (torchvision's ``ConvNormActivation``
layout: ``Sequential(conv, bn, activation)`` → keys ``0.weight``, ``1.running_mean``, ...).

Counting convention of the MobileNet papers: "mult-adds" are the multiply-accumulates of the
conv and fully-connected layers (output elements × C_in/groups × k²; fc: in × out); batch norm,
ReLU, pooling and biases are not counted, and "parameters" are weights.
"""

from __future__ import annotations

from typing import Any

from .. import functional as F
from .. import nn
from ._init import Rules, conv_kaiming_normal_fan_out, linear_normal, norm_ones_zeros, reinitialise
from .registry import register

PAPER_V1 = "Howard et al. 2017, MobileNets (arXiv:1704.04861), Table 1"
PAPER_V2 = "Sandler et al. 2018, MobileNetV2 (arXiv:1801.04381), Table 2"
PAPER_V3 = "Howard et al. 2019, Searching for MobileNetV3 (arXiv:1905.02244), Tables 1 and 2"


def conv_bn_act(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                activation: type[nn.Module] | None = nn.ReLU, **norm: float) -> nn.Sequential:
    """``Conv2d(bias=False, padding=(k−1)//2) → BatchNorm2d(**norm) → activation`` (none:
    a linear unit); ``groups=in_channels`` makes it depthwise.

    Shape:
        input ``(N, C_in, H, W)`` → output ``(N, C_out, ⌈H/stride⌉, ⌈W/stride⌉)``.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2,
                  groups=groups, bias=False),
        nn.BatchNorm2d(out_channels, **norm),
        *([activation()] if activation is not None else []),
    )


# --- MobileNet v1 -----------------------------------------------------------------------------

# Table 1 after the first conv (3×3/2, 32 filters): each depthwise-separable block as
# (stride of the 3×3 depthwise conv, filters of the 1×1 pointwise conv). Table 1 prints the
# last depthwise conv as s2, but its input and output are both 7×7: it is stride 1, as in the
# authors' TensorFlow release.
V1_STEM = 32
V1_BLOCKS = (
    (1, 64),
    (2, 128), (1, 128),
    (2, 256), (1, 256),
    (2, 512), (1, 512), (1, 512), (1, 512), (1, 512), (1, 512),
    (2, 1024), (1, 1024),
)


class DepthwiseSeparable(nn.Module):
    """``dw``: 3×3 depthwise conv → BN → ReLU; ``pw``: 1×1 conv → BN → ReLU (Figure 3, right).

    Shape:
        input ``(N, C_in, H, W)`` → output ``(N, C_out, ⌈H/stride⌉, ⌈W/stride⌉)``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.dw = conv_bn_act(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pw = conv_bn_act(in_channels, out_channels, 1)

    def forward(self, x: Any) -> Any:
        return self.pw(self.dw(x))


class MobileNetV1(nn.Module):
    """``features`` (stem conv + 13 depthwise-separable blocks) → global average pool → ``fc``.

    ``resolution`` is the input side the model is meant for; ``input_shape`` is
    ``(3, resolution, resolution)``. The network pools globally, so it also runs on other sizes.
    The layers keep their default initialisation (torchvision has no MobileNet v1, and the
    paper gives none).

    Shape:
        input ``(N, 3, H, W)`` → output ``(N, num_classes)``; the last feature map is
        ``(N, int(1024·α), ⌈H/32⌉, ⌈W/32⌉)`` (7×7 at 224, where the pool is Table 1's 7×7/1).
    """

    def __init__(self, alpha: float = 1.0, resolution: int = 224, num_classes: int = 1000) -> None:
        super().__init__()
        if not alpha > 0:
            raise ValueError(f"mobilenet_v1: expected a width multiplier alpha > 0, got {alpha}.")
        if not (isinstance(resolution, int) and resolution >= 1):
            raise ValueError(f"mobilenet_v1: expected a positive integer resolution, got {resolution!r}.")
        self.alpha = alpha
        self.resolution = resolution
        self.input_shape = (3, resolution, resolution)

        def width(c: int) -> int:
            return int(c * alpha)

        layers: list[nn.Module] = [conv_bn_act(3, width(V1_STEM), 3, stride=2)]
        channels = width(V1_STEM)
        for stride, filters in V1_BLOCKS:
            layers.append(DepthwiseSeparable(channels, width(filters), stride))
            channels = width(filters)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Any) -> Any:
        return self.fc(F.flatten(self.avgpool(self.features(x)), 1))


@register("mobilenet_v1", input_shape=(3, 224, 224),
          description="MobileNet v1: 3×3 conv + 13 depthwise-separable blocks, width multiplier α, resolution ρ",
          reference=PAPER_V1)
def mobilenet_v1(alpha: float = 1.0, resolution: int = 224, num_classes: int = 1000) -> MobileNetV1:
    """MobileNet v1 (Table 1). At α = 1 it has 4,231,976 parameters (4,209,088 weights: the
    paper's 4.2M) and 568,740,352 mult-adds at 224×224 (the paper's 569M).

    ``alpha`` scales every layer's channel count to ``int(c·α)`` (the paper uses 1, 0.75, 0.5,
    0.25). ``resolution`` is ρ expressed as the input side (224, 192, 160, 128 in the paper); it
    is stored on the model as ``model.resolution`` and ``model.input_shape``. The registry's
    default input shape is the default resolution, 3×224×224; for another resolution build with
    ``build("mobilenet_v1", resolution=160)`` and feed ``(N, 3, 160, 160)`` — e.g. pass
    ``model.input_shape`` to tools that need an input shape.

    Shape:
        input ``(N, 3, resolution, resolution)`` → output ``(N, num_classes)``.
    """
    return MobileNetV1(alpha, resolution, num_classes)


# --- MobileNet v2 -----------------------------------------------------------------------------

# Table 2 after the first conv (3×3/2, 32 filters): (expansion t, output channels c, repeats n,
# stride s of the first repeat); then a 1×1 conv to 1280, pool, and the classifier.
V2_STEM = 32
V2_LAST = 1280
V2_BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """The nearest multiple of ``divisor`` (at least ``divisor``), bumped up one step if rounding
    lost more than 10 % — the channel rounding of the MobileNet v2 release and torchvision."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidual(nn.Module):
    """1×1 expansion (×t, skipped when t = 1) → 3×3 depthwise (strided) → 1×1 linear projection,
    with ReLU6 after the first two and a residual connection when stride is 1 and the channel
    count is unchanged. ``conv`` holds the layers as torchvision names them.

    Shape:
        input ``(N, C_in, H, W)`` → output ``(N, C_out, ⌈H/stride⌉, ⌈W/stride⌉)``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.stride = stride
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(in_channels, hidden, 1, activation=nn.ReLU6))
        layers += [
            conv_bn_act(hidden, hidden, 3, stride, groups=hidden, activation=nn.ReLU6),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: Any) -> Any:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


# torchvision's MobileNetV2.__init__ and MobileNetV3.__init__: convs kaiming_normal_(mode="fan_out") with
# bias 0, BatchNorm2d / GroupNorm weight 1 and bias 0, Linear N(0, 0.01) with bias 0.
TORCHVISION_INIT: Rules = ((nn.Conv2d, conv_kaiming_normal_fan_out),
                           ((nn.BatchNorm2d, nn.GroupNorm), norm_ones_zeros), (nn.Linear, linear_normal(0.01)))


class MobileNetV2(nn.Module):
    """``features`` (stem, 17 inverted-residual blocks, 1×1 conv to 1280) → global average pool →
    ``classifier`` (dropout 0.2, linear). Initialised as torchvision does
    (:data:`TORCHVISION_INIT`): convs Kaiming-normal with fan_out, linear N(0, 0.01).

    Shape:
        input ``(N, 3, H, W)`` → output ``(N, num_classes)``; the last feature map is
        ``(N, 1280, ⌈H/32⌉, ⌈W/32⌉)``.
    """

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        channels = make_divisible(V2_STEM * width_mult)
        self.last_channel = make_divisible(V2_LAST * max(1.0, width_mult))
        layers: list[nn.Module] = [conv_bn_act(3, channels, 3, stride=2, activation=nn.ReLU6)]
        for t, c, n, s in V2_BLOCKS:
            out = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        layers.append(conv_bn_act(channels, self.last_channel, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes))
        reinitialise(self, TORCHVISION_INIT)

    def forward(self, x: Any) -> Any:
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(F.flatten(x, 1))


@register("mobilenet_v2", input_shape=(3, 224, 224),
          description="MobileNet v2: inverted residuals with linear bottlenecks, torchvision layout",
          reference=PAPER_V2 + "; torchvision.models.mobilenet_v2")
def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> MobileNetV2:
    """MobileNet v2 as torchvision builds (and initialises) it: 3,504,872 parameters at
    ``width_mult=1``. Channel counts are ``make_divisible(c·width_mult, 8)``.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return MobileNetV2(num_classes, width_mult, dropout)


# --- MobileNet v3 -----------------------------------------------------------------------------

# Tables 1 and 2 after the stem (3×3/2, 16 filters, hard-swish): each bneck as (kernel, expansion
# size, output channels, squeeze-and-excite, non-linearity: "RE" ReLU or "HS" hard-swish, stride);
# then a 1×1 conv to 6× the last bneck's channels (hard-swish), the pool, and a 1×1 "conv"
# (torchvision: a linear layer) to ``V3_HEAD`` channels before the classifier.
V3_BLOCKS = {
    "large": (
        (3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1),
        (5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
        (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
        (3, 184, 80, False, "HS", 1), (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
        (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1), (5, 960, 160, True, "HS", 1),
    ),
    "small": (
        (3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1),
        (5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
        (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1), (5, 288, 96, True, "HS", 2),
        (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1),
    ),
}
V3_STEM = 16
V3_HEAD = {"large": 1280, "small": 1024}
V3_NORM = {"eps": 0.001, "momentum": 0.01}  # the batch norm settings of torchvision's MobileNet v3
_V3_ACTIVATIONS = {"RE": nn.ReLU, "HS": nn.Hardswish}


class SqueezeExcitation(nn.Module):
    """Global average pool → 1×1 conv to ``squeeze`` channels → ``activation`` → 1×1 conv
    back → ``gate``: one weight per channel, which multiplies the input (torchvision's
    ``SqueezeExcitation``; MobileNet v3 gates with a hard sigmoid, EfficientNet with SiLU and
    a sigmoid).

    Shape:
        input ``(N, C, H, W)`` → output ``(N, C, H, W)``.
    """

    def __init__(self, channels: int, squeeze: int, activation: type[nn.Module] = nn.ReLU,
                 gate: type[nn.Module] = nn.Hardsigmoid) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = activation()
        self.scale_activation = gate()

    def forward(self, x: Any) -> Any:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.scale_activation(scale) * x


class InvertedResidualV3(nn.Module):
    """1×1 expansion (skipped when the expansion size is the input's) → k×k depthwise (strided)
    → squeeze-and-excite (optional) → 1×1 linear projection; ReLU or hard-swish after the first
    two, a residual connection when stride is 1 and the channel count is unchanged. ``block``
    holds the layers as torchvision names them.

    Shape:
        input ``(N, C_in, H, W)`` → output ``(N, C_out, ⌈H/stride⌉, ⌈W/stride⌉)``.
    """

    def __init__(self, in_channels: int, kernel: int, expanded: int, out_channels: int, se: bool,
                 nonlinearity: str, stride: int) -> None:
        super().__init__()
        act = _V3_ACTIVATIONS[nonlinearity]
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expanded != in_channels:
            layers.append(conv_bn_act(in_channels, expanded, 1, activation=act, **V3_NORM))
        layers.append(conv_bn_act(expanded, expanded, kernel, stride, groups=expanded, activation=act, **V3_NORM))
        if se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4)))
        layers.append(conv_bn_act(expanded, out_channels, 1, activation=None, **V3_NORM))
        self.block = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: Any) -> Any:
        return x + self.block(x) if self.use_res_connect else self.block(x)


class MobileNetV3(nn.Module):
    """``features`` (stem, the bnecks, 1×1 conv to 6× the last bneck's channels) → global average
    pool → ``classifier`` (linear to the head width, hard-swish, dropout, linear). Initialised as
    torchvision does (:data:`TORCHVISION_INIT`, as MobileNet v2).

    Shape:
        input ``(N, 3, H, W)`` → output ``(N, num_classes)``; the last feature map is
        ``(N, 960 or 576, ⌈H/32⌉, ⌈W/32⌉)``.
    """

    def __init__(self, size: str, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        channels = make_divisible(V3_STEM * width_mult)
        layers: list[nn.Module] = [conv_bn_act(3, channels, 3, stride=2, activation=nn.Hardswish, **V3_NORM)]
        for kernel, expanded, out, se, nonlinearity, stride in V3_BLOCKS[size]:
            out = make_divisible(out * width_mult)
            layers.append(InvertedResidualV3(channels, kernel, make_divisible(expanded * width_mult), out, se,
                                             nonlinearity, stride))
            channels = out
        layers.append(conv_bn_act(channels, 6 * channels, 1, activation=nn.Hardswish, **V3_NORM))
        self.features = nn.Sequential(*layers)
        head = make_divisible(V3_HEAD[size] * width_mult)
        self.classifier = nn.Sequential(nn.Linear(6 * channels, head), nn.Hardswish(), nn.Dropout(dropout),
                                        nn.Linear(head, num_classes))
        reinitialise(self, TORCHVISION_INIT)

    def forward(self, x: Any) -> Any:
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(F.flatten(x, 1))


@register("mobilenet_v3_large", input_shape=(3, 224, 224),
          description="MobileNet v3 Large: 15 bnecks, hard-swish, squeeze-and-excite, torchvision layout",
          reference=PAPER_V3 + "; torchvision.models.mobilenet_v3_large")
def mobilenet_v3_large(num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> MobileNetV3:
    """MobileNet v3 Large as torchvision builds it (Table 1): 5,483,032 parameters at ``width_mult=1``.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return MobileNetV3("large", num_classes, width_mult, dropout)


@register("mobilenet_v3_small", input_shape=(3, 224, 224),
          description="MobileNet v3 Small: 11 bnecks, hard-swish, squeeze-and-excite, torchvision layout",
          reference=PAPER_V3 + "; torchvision.models.mobilenet_v3_small")
def mobilenet_v3_small(num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> MobileNetV3:
    """MobileNet v3 Small as torchvision builds it (Table 2): 2,542,856 parameters at ``width_mult=1``.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return MobileNetV3("small", num_classes, width_mult, dropout)
