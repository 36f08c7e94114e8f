"""VGG (Simonyan & Zisserman 2014, "Very deep convolutional networks for large-scale image
recognition", Table 1), configurations A, B, D, E = VGG-11, -13, -16, -19, with or without batch
norm, in torchvision's layout: ``features`` (3×3 convs with padding 1, [BatchNorm2d], ReLU; 2×2 max
pools), ``avgpool`` = ``AdaptiveAvgPool2d((7, 7))``, ``classifier`` (Linear 25088→4096, ReLU,
Dropout, Linear 4096→4096, ReLU, Dropout, Linear 4096→num_classes).

Parameters (1000 classes): vgg11 132,863,336; vgg13 133,047,848; vgg16 138,357,544;
vgg19 143,667,240; the ``_bn`` variants add 2 per conv output map (vgg16_bn 138,365,992).
"""

from __future__ import annotations

from .. import nn
from ..tensor import Tensor
from .registry import register

REFERENCE = ("Simonyan & Zisserman, Very deep convolutional networks for large-scale image recognition, "
             "ICLR 2015, Table 1 (torchvision layout)")

# Table 1: the number of 3×3 conv maps per layer, "M" = 2×2 max pool.
CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_features(config: list[int | str], batch_norm: bool = False) -> nn.Sequential:
    """The ``features`` stack of one configuration, indexed as in torchvision."""
    layers: list[nn.Module] = []
    in_channels = 3
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(v)))
        layers.append(nn.ReLU(inplace=True))
        in_channels = int(v)
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """``features → avgpool (7×7) → flatten → classifier``.

    ``init_weights`` applies torchvision's initialisation: convs kaiming-normal (fan_out, ReLU) with
    zero bias, batch norm weight 1 / bias 0, linear N(0, 0.01) with zero bias.

    Shape:
        input ``(N, 3, H, W)`` with ``H, W ≥ 32`` → ``features`` ``(N, 512, ⌊H/32⌋, ⌊W/32⌋)`` →
        output ``(N, num_classes)``.
    """

    def __init__(self, features: nn.Sequential, num_classes: int = 1000, init_weights: bool = True,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            self._initialize_weights()

    def _initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


def _vgg(config: str, batch_norm: bool, num_classes: int, init_weights: bool, dropout: float) -> VGG:
    return VGG(make_features(CONFIGS[config], batch_norm), num_classes, init_weights, dropout)


def _describe(depth: int, config: str, batch_norm: bool) -> str:
    return f"VGG-{depth} (configuration {config}{', batch norm' if batch_norm else ''}), torchvision layout"


# One builder per torchvision name; each is configuration + batch-norm flag.
@register("vgg11", input_shape=(3, 224, 224), description=_describe(11, "A", False), reference=REFERENCE)
def vgg11(num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5) -> VGG:
    """VGG-11, configuration A. Shape: input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``."""
    return _vgg("A", False, num_classes, init_weights, dropout)


@register("vgg13", input_shape=(3, 224, 224), description=_describe(13, "B", False), reference=REFERENCE)
def vgg13(num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5) -> VGG:
    """VGG-13, configuration B. Shape: input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``."""
    return _vgg("B", False, num_classes, init_weights, dropout)


@register("vgg16", input_shape=(3, 224, 224), description=_describe(16, "D", False), reference=REFERENCE)
def vgg16(num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5) -> VGG:
    """VGG-16, configuration D. Shape: input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``."""
    return _vgg("D", False, num_classes, init_weights, dropout)


@register("vgg19", input_shape=(3, 224, 224), description=_describe(19, "E", False), reference=REFERENCE)
def vgg19(num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5) -> VGG:
    """VGG-19, configuration E. Shape: input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``."""
    return _vgg("E", False, num_classes, init_weights, dropout)


@register("vgg11_bn", input_shape=(3, 224, 224), description=_describe(11, "A", True), reference=REFERENCE)
def vgg11_bn(num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5) -> VGG:
    """VGG-11 with batch norm. Shape: input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``."""
    return _vgg("A", True, num_classes, init_weights, dropout)


@register("vgg13_bn", input_shape=(3, 224, 224), description=_describe(13, "B", True), reference=REFERENCE)
def vgg13_bn(num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5) -> VGG:
    """VGG-13 with batch norm. Shape: input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``."""
    return _vgg("B", True, num_classes, init_weights, dropout)


@register("vgg16_bn", input_shape=(3, 224, 224), description=_describe(16, "D", True), reference=REFERENCE)
def vgg16_bn(num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5) -> VGG:
    """VGG-16 with batch norm. Shape: input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``."""
    return _vgg("D", True, num_classes, init_weights, dropout)


@register("vgg19_bn", input_shape=(3, 224, 224), description=_describe(19, "E", True), reference=REFERENCE)
def vgg19_bn(num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5) -> VGG:
    """VGG-19 with batch norm. Shape: input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``."""
    return _vgg("E", True, num_classes, init_weights, dropout)
