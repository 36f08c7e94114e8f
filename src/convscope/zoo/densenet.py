"""DenseNet: Huang et al. 2017, "Densely Connected Convolutional Networks", Table 1 (the
DenseNet-BC variants: 1×1 bottlenecks of 4·k maps and transitions that halve the channels), in
torchvision's layout and state_dict keys (``features.denseblock1.denselayer1.conv1.weight``).

Inside a dense block every layer reads the concatenation of the block's input and all earlier
layers' outputs, and adds ``growth_rate`` (k) maps of its own: a block of L layers turns C
channels into C + L·k. Layers are pre-activation: batch norm → ReLU → conv.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from .. import cat, nn
from .. import functional as F
from ._init import Rules, norm_ones_zeros, reinitialise
from .registry import register

PAPER = "Huang et al. 2017, Densely Connected Convolutional Networks (arXiv:1608.06993), Table 1"

# name → (growth rate k, layers per dense block, stem channels); bottleneck width 4·k throughout
CONFIGS: dict[str, tuple[int, tuple[int, int, int, int], int]] = {
    "densenet121": (32, (6, 12, 24, 16), 64),
    "densenet161": (48, (6, 12, 36, 24), 96),
    "densenet169": (32, (6, 12, 32, 32), 64),
    "densenet201": (32, (6, 12, 48, 32), 64),
}
BN_SIZE = 4  # a dense layer's 1×1 conv makes BN_SIZE·k maps for its 3×3 conv


class DenseLayer(nn.Module):
    """BN → ReLU → 1×1 conv (4·k maps) → BN → ReLU → 3×3 conv (k maps), on the concatenation
    of every earlier feature map of the block.

    Shape:
        inputs ``[(N, C_0, H, W), (N, k, H, W), …]`` (C channels in all) → output ``(N, k, H, W)``.
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int = BN_SIZE) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, features: list[Any]) -> Any:
        x = self.conv1(self.relu1(self.norm1(cat(features, 1))))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.ModuleDict):
    """``denselayer1`` … ``denselayerL``, each fed every map made before it in the block.

    Shape:
        input ``(N, C, H, W)`` → output ``(N, C + L·k, H, W)``.
    """

    def __init__(self, layers: int, in_channels: int, growth_rate: int) -> None:
        super().__init__({f"denselayer{i + 1}": DenseLayer(in_channels + i * growth_rate, growth_rate)
                          for i in range(layers)})

    def forward(self, x: Any) -> Any:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return cat(features, 1)


class Transition(nn.Sequential):
    """BN → ReLU → 1×1 conv (halving the channels) → 2×2 average pool.

    Shape:
        input ``(N, C, H, W)`` → output ``(N, C_out, ⌊H/2⌋, ⌊W/2⌋)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(OrderedDict([
            ("norm", nn.BatchNorm2d(in_channels)), ("relu", nn.ReLU()),
            ("conv", nn.Conv2d(in_channels, out_channels, 1, bias=False)), ("pool", nn.AvgPool2d(2, 2)),
        ]))


def _conv_kaiming_normal_fan_in(conv: nn.Conv2d) -> None:
    """Weight ~ N(0, 2 / fan_in) (``kaiming_normal_`` with its defaults: fan_in, leaky ReLU of slope 0)."""
    nn.init.kaiming_normal_(conv.weight)


def _linear_zero_bias(linear: nn.Linear) -> None:
    """Bias 0; the weight keeps torch's default U(±1/√in_features)."""
    nn.init.zeros_(linear.bias)


# torchvision's DenseNet.__init__ ("Official init from torch repo"): convs kaiming_normal_() (fan_in), BatchNorm2d
# weight 1 and bias 0, Linear bias 0 (its weight keeps the default).
INIT_RULES: Rules = ((nn.Conv2d, _conv_kaiming_normal_fan_in), (nn.BatchNorm2d, norm_ones_zeros),
                     (nn.Linear, _linear_zero_bias))


class DenseNet(nn.Module):
    """conv 7×7/2 → BN → ReLU → max pool 3×3/2 → dense blocks joined by transitions → BN →
    ReLU → global average pool → fc.

    Initialised as torchvision does (:data:`INIT_RULES`): convs Kaiming-normal with fan_in
    (std √(2 / (C_in·k²))), the classifier's bias 0; load a state_dict for trained weights.

    Shape:
        input ``(N, 3, H, W)`` → output ``(N, num_classes)``; the last block works at
        ``⌈H/4⌉`` halved three times (7×7 for 224).
    """

    def __init__(self, growth_rate: int, block_config: tuple[int, ...], stem_channels: int,
                 num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[tuple[str, nn.Module]] = [
            ("conv0", nn.Conv2d(3, stem_channels, 7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm2d(stem_channels)), ("relu0", nn.ReLU()),
            ("pool0", nn.MaxPool2d(3, stride=2, padding=1)),
        ]
        channels = stem_channels
        for i, count in enumerate(block_config, 1):
            layers.append((f"denseblock{i}", DenseBlock(count, channels, growth_rate)))
            channels += count * growth_rate
            if i < len(block_config):
                layers.append((f"transition{i}", Transition(channels, channels // 2)))
                channels //= 2
        layers.append(("norm5", nn.BatchNorm2d(channels)))
        self.features = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Linear(channels, num_classes)
        reinitialise(self, INIT_RULES)

    def forward(self, x: Any) -> Any:
        x = F.adaptive_avg_pool2d(F.relu(self.features(x)), (1, 1))
        return self.classifier(F.flatten(x, 1))


def _densenet(name: str, num_classes: int) -> DenseNet:
    growth, blocks, stem = CONFIGS[name]
    return DenseNet(growth, blocks, stem, num_classes)


def _entry(name: str) -> Any:
    growth, blocks, _ = CONFIGS[name]
    title = "DenseNet-" + name.removeprefix("densenet")
    return register(name, input_shape=(3, 224, 224), reference=PAPER + "; torchvision.models.densenet",
                    description=f"{title}: dense blocks of {list(blocks)} layers, growth rate {growth}, "
                                "torchvision layout")


@_entry("densenet121")
def densenet121(num_classes: int = 1000) -> DenseNet:
    """DenseNet-121 (k = 32, blocks [6, 12, 24, 16]): 7,978,856 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return _densenet("densenet121", num_classes)


@_entry("densenet161")
def densenet161(num_classes: int = 1000) -> DenseNet:
    """DenseNet-161 (k = 48, blocks [6, 12, 36, 24], a 96-channel stem): 28,681,000 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return _densenet("densenet161", num_classes)


@_entry("densenet169")
def densenet169(num_classes: int = 1000) -> DenseNet:
    """DenseNet-169 (k = 32, blocks [6, 12, 32, 32]): 14,149,480 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return _densenet("densenet169", num_classes)


@_entry("densenet201")
def densenet201(num_classes: int = 1000) -> DenseNet:
    """DenseNet-201 (k = 32, blocks [6, 12, 48, 32]): 20,013,928 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return _densenet("densenet201", num_classes)
