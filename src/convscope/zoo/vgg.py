"""VGG (Simonyan & Zisserman 2014, "Very deep convolutional networks for large-scale image
recognition", Table 1), configurations A, B, D, E = VGG-11, -13, -16, -19, with or without batch
norm, in torchvision's layout: ``features`` (3×3 convs with padding 1, [BatchNorm2d], ReLU; 2×2 max
pools), ``avgpool`` = ``AdaptiveAvgPool2d((7, 7))``, ``classifier`` (Linear 25088→4096, ReLU,
Dropout, Linear 4096→4096, ReLU, Dropout, Linear 4096→num_classes).

Parameters (1000 classes): vgg11 132,863,336; vgg13 133,047,848; vgg16 138,357,544;
vgg19 143,667,240; the ``_bn`` variants add 2 per conv output map (vgg16_bn 138,365,992).
"""

from __future__ import annotations

from collections.abc import Callable

from .. import nn
from ..tensor import Tensor
from ._init import Rules, conv_kaiming_normal_fan_out, linear_normal, norm_ones_zeros, reinitialise
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


# torchvision's VGG.__init__ (init_weights=True): convs kaiming_normal_(mode="fan_out", nonlinearity="relu")
# with bias 0, BatchNorm2d weight 1 and bias 0, Linear N(0, 0.01) with bias 0.
INIT_RULES: Rules = ((nn.Conv2d, conv_kaiming_normal_fan_out), (nn.BatchNorm2d, norm_ones_zeros),
                     (nn.Linear, linear_normal(0.01)))


class VGG(nn.Module):
    """``features → avgpool (7×7) → flatten → classifier``.

    ``init_weights`` applies torchvision's initialisation (:data:`INIT_RULES`): convs
    kaiming-normal (fan_out, ReLU) with zero bias, batch norm weight 1 / bias 0, linear
    N(0, 0.01) with zero bias; without it the layers keep torch's default init.

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
            reinitialise(self, INIT_RULES)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


def _variant(depth: int, config: str, batch_norm: bool) -> Callable[..., VGG]:
    """The builder torchvision calls ``vgg{depth}`` (``_bn`` with batch norm), registered in the zoo."""
    name = f"vgg{depth}{'_bn' if batch_norm else ''}"
    description = f"VGG-{depth} (configuration {config}{', batch norm' if batch_norm else ''}), torchvision layout"

    def build(num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5) -> VGG:
        return VGG(make_features(CONFIGS[config], batch_norm), num_classes, init_weights, dropout)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"{description}.\n\n    Shape:\n        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.\n"
    return register(name, input_shape=(3, 224, 224), description=description, reference=REFERENCE)(build)


# One builder per torchvision name: configuration (Table 1 column) and the batch-norm flag.
for _depth, _config in ((11, "A"), (13, "B"), (16, "D"), (19, "E")):
    for _bn in (False, True):
        _builder = _variant(_depth, _config, _bn)
        globals()[_builder.__name__] = _builder
del _depth, _config, _bn, _builder
