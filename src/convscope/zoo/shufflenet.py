"""ShuffleNet v2: Ma et al. 2018, "ShuffleNet V2: Practical Guidelines for Efficient CNN
Architecture Design", Table 5, in torchvision's layout and state_dict keys
(``stage2.0.branch1.0.weight``, ``conv5.1.running_var``).

A unit with stride 1 splits its channels in two halves: one passes through untouched, the
other through 1×1 conv → 3×3 depthwise conv → 1×1 conv; the halves are concatenated and the
channels shuffled (interleaved) so that the next unit's split mixes both. A unit with stride 2
runs both halves' branches on the whole input and doubles the channels.
"""

from __future__ import annotations

from typing import Any

from .. import cat, nn
from .. import functional as F
from .registry import register

PAPER = "Ma et al. 2018, ShuffleNet V2 (arXiv:1807.11164), Table 5"

STAGE_REPEATS = (4, 8, 4)  # units in stage2, stage3, stage4
# name → output channels of conv1, stage2, stage3, stage4, conv5 (Table 5's width multipliers)
WIDTHS: dict[str, tuple[int, int, int, int, int]] = {
    "shufflenet_v2_x0_5": (24, 48, 96, 192, 1024),
    "shufflenet_v2_x1_0": (24, 116, 232, 464, 1024),
    "shufflenet_v2_x1_5": (24, 176, 352, 704, 1024),
    "shufflenet_v2_x2_0": (24, 244, 488, 976, 2048),
}


def _depthwise_bn(channels: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(channels, channels, 3, stride=stride, padding=1, groups=channels, bias=False),
            nn.BatchNorm2d(channels)]


def _pointwise_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU()]


class ShuffleUnit(nn.Module):
    """``branch1`` (stride 2 only: 3×3 depthwise → 1×1) on the input or the first half of its
    channels untouched, ``branch2`` (1×1 → 3×3 depthwise → 1×1) on the input or the second half,
    concatenated, then the channels shuffled in two groups. torchvision calls it
    ``InvertedResidual``.

    Shape:
        input ``(N, C_in, H, W)`` → output ``(N, C_out, ⌈H/stride⌉, ⌈W/stride⌉)``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        half = out_channels // 2
        if stride == 1 and in_channels != 2 * half:
            raise ValueError(f"a stride-1 ShuffleNet unit keeps its channels: {in_channels} in, {out_channels} out")
        self.stride = stride
        self.branch1 = nn.Sequential(*(_depthwise_bn(in_channels, stride) + _pointwise_bn_relu(in_channels, half))
                                     if stride > 1 else ())
        self.branch2 = nn.Sequential(*_pointwise_bn_relu(in_channels if stride > 1 else half, half),
                                     *_depthwise_bn(half, stride), *_pointwise_bn_relu(half, half))

    def forward(self, x: Any) -> Any:
        if self.stride == 1:
            half = x.shape[1] // 2
            out = cat([x[:, :half], self.branch2(x[:, half:])], 1)
        else:
            out = cat([self.branch1(x), self.branch2(x)], 1)
        return F.channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """conv1 3×3/2 → max pool 3×3/2 → stage2…stage4 (a stride-2 unit, then stride-1 units) →
    conv5 1×1 → global average pool → fc.

    Parameters keep the layers' default initialisation, as in torchvision (whose ShuffleNetV2
    does not re-initialise); load a state_dict for trained weights.

    Shape:
        input ``(N, 3, H, W)`` → output ``(N, num_classes)``; the last feature map is
        ``(N, conv5 channels, ⌈H/32⌉, ⌈W/32⌉)``.
    """

    def __init__(self, widths: tuple[int, ...], num_classes: int = 1000) -> None:
        super().__init__()
        stem, *stages, last = widths
        self.conv1 = nn.Sequential(nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(stem),
                                   nn.ReLU())
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = stem
        for i, (repeats, out) in enumerate(zip(STAGE_REPEATS, stages, strict=True), 2):
            units = [ShuffleUnit(channels, out, 2)] + [ShuffleUnit(out, out, 1) for _ in range(repeats - 1)]
            setattr(self, f"stage{i}", nn.Sequential(*units))
            channels = out
        self.conv5 = nn.Sequential(*_pointwise_bn_relu(channels, last))
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: Any) -> Any:
        x = self.stage4(self.stage3(self.stage2(self.maxpool(self.conv1(x)))))
        return self.fc(self.conv5(x).mean((2, 3)))


def _entry(name: str) -> Any:
    widths = WIDTHS[name]
    title = "ShuffleNet v2 " + name.removeprefix("shufflenet_v2_x").replace("_", ".") + "×"
    return register(name, input_shape=(3, 224, 224), reference=PAPER + "; torchvision.models.shufflenetv2",
                    description=f"{title}: stages of {list(STAGE_REPEATS)} units, {widths[1]}→{widths[3]} "
                                "channels, torchvision layout")


@_entry("shufflenet_v2_x0_5")
def shufflenet_v2_x0_5(num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNet v2 0.5×: 1,366,792 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return ShuffleNetV2(WIDTHS["shufflenet_v2_x0_5"], num_classes)


@_entry("shufflenet_v2_x1_0")
def shufflenet_v2_x1_0(num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNet v2 1×: 2,278,604 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return ShuffleNetV2(WIDTHS["shufflenet_v2_x1_0"], num_classes)


@_entry("shufflenet_v2_x1_5")
def shufflenet_v2_x1_5(num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNet v2 1.5×: 3,503,624 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return ShuffleNetV2(WIDTHS["shufflenet_v2_x1_5"], num_classes)


@_entry("shufflenet_v2_x2_0")
def shufflenet_v2_x2_0(num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNet v2 2×: 7,393,996 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return ShuffleNetV2(WIDTHS["shufflenet_v2_x2_0"], num_classes)
