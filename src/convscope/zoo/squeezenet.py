"""SqueezeNet: Iandola et al. 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters
and <0.5MB model size", Table 1 (v1.0), and the v1.1 of the authors' repository — in
torchvision's layout and state_dict keys (``features.3.squeeze.weight``, ``classifier.1.bias``).

There is no fully-connected layer: a 1×1 conv to ``num_classes`` maps, ReLU, and a global
average pool produce the scores. Max pools use ``ceil_mode=True`` (Caffe's rounding), as
torchvision does.
"""

from __future__ import annotations

from typing import Any

from .. import cat, nn
from ._init import reinitialise
from .registry import register

PAPER = "Iandola et al. 2016, SqueezeNet (arXiv:1602.07360), Table 1"

# Each version: the first conv as (filters, kernel, stride), then the rest of ``features``:
# "M" is a 3×3/2 max pool, a tuple is a Fire module (s1x1 squeeze, e1x1 expand, e3x3 expand).
CONFIGS: dict[str, tuple[tuple[int, int, int], tuple[Any, ...]]] = {
    "1_0": ((96, 7, 2), ("M", (16, 64, 64), (16, 64, 64), (32, 128, 128),
                         "M", (32, 128, 128), (48, 192, 192), (48, 192, 192), (64, 256, 256),
                         "M", (64, 256, 256))),
    "1_1": ((64, 3, 2), ("M", (16, 64, 64), (16, 64, 64),
                         "M", (32, 128, 128), (32, 128, 128),
                         "M", (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256))),
}


class Fire(nn.Module):
    """Squeeze (1×1 conv → ReLU), then expand with 1×1 and 3×3 convs (each → ReLU) side by side,
    concatenated on channels.

    Shape:
        input ``(N, inplanes, H, W)`` → output ``(N, e1x1 + e3x3, H, W)``.
    """

    def __init__(self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int) -> None:
        super().__init__()
        self.inplanes = inplanes
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU()
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU()
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU()

    def forward(self, x: Any) -> Any:
        x = self.squeeze_activation(self.squeeze(x))
        return cat([self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    """``features`` (conv, ReLU, max pools and Fire modules) → ``classifier`` (dropout, 1×1 conv,
    ReLU, global average pool) → flatten.

    Initialised as torchvision does (:meth:`_init_conv`): every conv Kaiming-uniform with
    fan_in, the final (classifier) conv N(0, 0.01), all biases 0.

    Shape:
        input ``(N, 3, H, W)`` → output ``(N, num_classes)``; at least 21×21 for v1.0 and 17×17
        for v1.1 (224×224 in the paper).
    """

    def __init__(self, version: str = "1_0", num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        if version not in CONFIGS:
            raise ValueError(f"squeezenet: expected version '1_0' or '1_1', got {version!r}.")
        self.num_classes = num_classes
        (filters, kernel, stride), plan = CONFIGS[version]
        layers: list[nn.Module] = [nn.Conv2d(3, filters, kernel_size=kernel, stride=stride), nn.ReLU()]
        channels = filters
        for item in plan:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
            else:
                layers.append(Fire(channels, *item))
                channels = item[1] + item[2]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Conv2d(channels, num_classes, kernel_size=1),
                                        nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)))
        reinitialise(self, ((nn.Conv2d, self._init_conv),))

    def _init_conv(self, conv: nn.Conv2d) -> None:
        """torchvision's SqueezeNet.__init__: the final conv N(0, 0.01), the others
        ``kaiming_uniform_`` with its defaults (fan_in, leaky ReLU of slope 0: bound √(6 / fan_in));
        biases 0."""
        if conv is self.classifier[1]:
            nn.init.normal_(conv.weight, 0.0, 0.01)
        else:
            nn.init.kaiming_uniform_(conv.weight)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)

    def forward(self, x: Any) -> Any:
        return self.classifier(self.features(x)).flatten(1)


@register("squeezenet1_0", input_shape=(3, 224, 224),
          description="SqueezeNet 1.0: conv 7×7/2 (96) + 8 Fire modules, conv classifier, torchvision layout",
          reference=PAPER + "; torchvision.models.squeezenet1_0")
def squeezenet1_0(num_classes: int = 1000, dropout: float = 0.5) -> SqueezeNet:
    """SqueezeNet 1.0 (Table 1): 1,248,424 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return SqueezeNet("1_0", num_classes, dropout)


@register("squeezenet1_1", input_shape=(3, 224, 224),
          description="SqueezeNet 1.1: conv 3×3/2 (64), earlier pools, 2.4× less computation, torchvision layout",
          reference="github.com/forresti/SqueezeNet SqueezeNet_v1.1; torchvision.models.squeezenet1_1")
def squeezenet1_1(num_classes: int = 1000, dropout: float = 0.5) -> SqueezeNet:
    """SqueezeNet 1.1 (the authors' repository): 1,235,496 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return SqueezeNet("1_1", num_classes, dropout)
