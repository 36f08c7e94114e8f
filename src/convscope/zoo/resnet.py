"""ResNet: He et al. 2015, "Deep Residual Learning for Image Recognition", Table 1, in
torchvision's layout and state_dict keys (``layer2.0.downsample.0.weight``, ...); and its two
bottleneck variants: ResNeXt (Xie et al. 2017, Table 1: the 3×3 conv split into ``groups``
paths of ``width_per_group`` channels each) and Wide ResNet (Zagoruyko & Komodakis 2016, as
torchvision builds it: bottlenecks twice as wide inside).

Bottleneck blocks put the stride on the 3×3 conv ("ResNet v1.5", as torchvision does; the
paper's Caffe models stride the first 1×1). Shortcuts are identity, or a 1×1 conv + batch norm
(option B) where the shape changes.
"""

from __future__ import annotations

from typing import Any

from .. import functional as F
from .. import nn
from ._init import Rules, conv_kaiming_normal_fan_out, norm_ones_zeros, reinitialise
from .registry import register

PAPER = "He et al. 2015, Deep Residual Learning for Image Recognition (arXiv:1512.03385), Table 1"
RESNEXT_PAPER = "Xie et al. 2017, Aggregated Residual Transformations for Deep Neural Networks (arXiv:1611.05431)"
WIDE_PAPER = "Zagoruyko & Komodakis 2016, Wide Residual Networks (arXiv:1605.07146)"

# Table 1's stages conv2_x … conv5_x (torchvision's layer1 … layer4): base width and stride.
STAGE_WIDTHS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    """A bias-free conv with "same" padding for odd kernels, as every ResNet conv is."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)


class _ResidualBlock(nn.Module):
    """``relu(residual(x) + shortcut(x))``; the shortcut is ``downsample`` or the identity.

    Shape:
        input ``(N, C_in, H, W)`` → output ``(N, planes·expansion, ⌈H/stride⌉, ⌈W/stride⌉)``.
    """

    expansion = 1
    downsample: nn.Module | None

    def residual(self, x: Any) -> Any:
        raise NotImplementedError

    @property
    def last_norm(self) -> nn.BatchNorm2d:
        """The batch norm that ends the residual branch (``bn2`` or ``bn3``)."""
        raise NotImplementedError

    def forward(self, x: Any) -> Any:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.residual(x) + identity)


class BasicBlock(_ResidualBlock):
    """Two 3×3 convs (the first strided), each with batch norm.

    Shape:
        input ``(N, C_in, H, W)`` → output ``(N, planes, ⌈H/stride⌉, ⌈W/stride⌉)``.
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, width_per_group: int = 64) -> None:
        super().__init__()
        if (groups, width_per_group) != (1, 64):
            raise ValueError(f"BasicBlock has no grouped or wider variant: groups={groups}, "
                             f"width_per_group={width_per_group} need Bottleneck (ResNet-50 and deeper)")
        self.conv1 = _conv(inplanes, planes, 3, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def residual(self, x: Any) -> Any:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

    @property
    def last_norm(self) -> nn.BatchNorm2d:
        return self.bn2


class Bottleneck(_ResidualBlock):
    """1×1 (reduce to ``width``) → 3×3 (strided, in ``groups`` groups) → 1×1 (expand to
    ``4·planes``), each with batch norm; ``width = planes·width_per_group/64·groups`` (``planes``
    for ResNet, 2·planes for ResNeXt 32×4d and Wide ResNet-50-2).

    Shape:
        input ``(N, C_in, H, W)`` → output ``(N, 4·planes, ⌈H/stride⌉, ⌈W/stride⌉)``.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, width_per_group: int = 64) -> None:
        super().__init__()
        width = int(planes * width_per_group / 64) * groups
        self.conv1 = _conv(inplanes, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv(width, planes * self.expansion, 1)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample
        self.stride = stride

    def residual(self, x: Any) -> Any:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.bn3(self.conv3(x))

    @property
    def last_norm(self) -> nn.BatchNorm2d:
        return self.bn3


# Table 1: depth → (block type, number of blocks in conv2_x, conv3_x, conv4_x, conv5_x).
CONFIGS: dict[int, tuple[type[_ResidualBlock], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def _stage(block: type[_ResidualBlock], inplanes: int, planes: int, blocks: int, stride: int,
           **shape: int) -> nn.Sequential:
    """One ``layerK``: the first block changes stride/width (with a 1×1 conv + BN shortcut when
    the shape changes), the others keep it; ``shape``: the blocks' groups and width per group."""
    out = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(_conv(inplanes, out, 1, stride), nn.BatchNorm2d(out))
    return nn.Sequential(block(inplanes, planes, stride, downsample, **shape),
                         *(block(out, planes, **shape) for _ in range(blocks - 1)))


# torchvision's ResNet.__init__: every conv kaiming_normal_(mode="fan_out", nonlinearity="relu"),
# every BatchNorm2d / GroupNorm weight 1 and bias 0; fc keeps the default init.
INIT_RULES: Rules = ((nn.Conv2d, conv_kaiming_normal_fan_out), ((nn.BatchNorm2d, nn.GroupNorm), norm_ones_zeros))


class ResNet(nn.Module):
    """conv1 7×7/2 → BN → ReLU → max pool 3×3/2 → layer1…layer4 → global average pool → fc.

    Initialised as torchvision does (:data:`INIT_RULES`): convs Kaiming-normal with fan_out
    (std √(2 / (C_out·k²))), batch norms weight 1 and bias 0, fc torch's default; with
    ``zero_init_residual`` the last batch norm of each residual branch starts at weight 0, so
    each block starts as the identity (Goyal et al. 2017). Load a state_dict for trained weights.

    Shape:
        input ``(N, 3, H, W)`` → output ``(N, num_classes)``; the feature map before the pool is
        ``(N, 512·expansion, ⌈H/32⌉, ⌈W/32⌉)``, so any H, W ≥ 1 works (224 in the paper).
    """

    def __init__(self, block: type[_ResidualBlock], layers: tuple[int, ...], num_classes: int = 1000,
                 groups: int = 1, width_per_group: int = 64, zero_init_residual: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, blocks, stride) in enumerate(zip(STAGE_WIDTHS, layers, STAGE_STRIDES, strict=True), 1):
            setattr(self, f"layer{i}", _stage(block, inplanes, planes, blocks, stride, groups=groups,
                                              width_per_group=width_per_group))
            inplanes = planes * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        reinitialise(self, INIT_RULES)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, _ResidualBlock):
                    nn.init.zeros_(m.last_norm.weight)

    def forward(self, x: Any) -> Any:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(F.flatten(self.avgpool(x), 1))


def _resnet(depth: int, num_classes: int, zero_init_residual: bool) -> ResNet:
    block, layers = CONFIGS[depth]
    return ResNet(block, layers, num_classes, zero_init_residual=zero_init_residual)


def _entry(depth: int) -> Any:
    block, layers = CONFIGS[depth]
    return register(f"resnet{depth}", input_shape=(3, 224, 224),
                    description=f"ResNet-{depth}: {block.__name__} stages {list(layers)}, torchvision layout",
                    reference=PAPER + "; torchvision.models.resnet")


@_entry(18)
def resnet18(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """ResNet-18 (BasicBlock × [2, 2, 2, 2]): 11,689,512 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return _resnet(18, num_classes, zero_init_residual)


@_entry(34)
def resnet34(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """ResNet-34 (BasicBlock × [3, 4, 6, 3]): 21,797,672 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return _resnet(34, num_classes, zero_init_residual)


@_entry(50)
def resnet50(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """ResNet-50 (Bottleneck × [3, 4, 6, 3]): 25,557,032 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return _resnet(50, num_classes, zero_init_residual)


@_entry(101)
def resnet101(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """ResNet-101 (Bottleneck × [3, 4, 23, 3]): 44,549,160 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return _resnet(101, num_classes, zero_init_residual)


@_entry(152)
def resnet152(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """ResNet-152 (Bottleneck × [3, 8, 36, 3]): 60,192,808 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return _resnet(152, num_classes, zero_init_residual)


# name → (title, depth, groups, width per group, reference)
VARIANTS: dict[str, tuple[str, int, int, int, str]] = {
    "resnext50_32x4d": ("ResNeXt-50 32×4d", 50, 32, 4, RESNEXT_PAPER + ", Table 1"),
    "resnext101_32x8d": ("ResNeXt-101 32×8d", 101, 32, 8, RESNEXT_PAPER),
    "resnext101_64x4d": ("ResNeXt-101 64×4d", 101, 64, 4, RESNEXT_PAPER),
    "wide_resnet50_2": ("Wide ResNet-50-2", 50, 1, 128, WIDE_PAPER),
    "wide_resnet101_2": ("Wide ResNet-101-2", 101, 1, 128, WIDE_PAPER),
}


def _variant(name: str, num_classes: int, zero_init_residual: bool) -> ResNet:
    _, depth, groups, width, _ = VARIANTS[name]
    return ResNet(Bottleneck, CONFIGS[depth][1], num_classes, groups=groups, width_per_group=width,
                  zero_init_residual=zero_init_residual)


def _variant_entry(name: str) -> Any:
    title, depth, groups, width, reference = VARIANTS[name]
    inside = (f"{groups}-group 3×3 convs ({width} channels a group in layer1, doubling each stage)" if groups > 1
              else f"bottlenecks {width // 64}× as wide inside")
    return register(name, input_shape=(3, 224, 224), reference=reference + "; torchvision.models.resnet",
                    description=f"{title}: ResNet-{depth}'s stages with {inside}, torchvision layout")


@_variant_entry("resnext50_32x4d")
def resnext50_32x4d(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """ResNeXt-50 (32×4d: 32 groups of 4 channels in the first stage's 3×3 convs): 25,028,904 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return _variant("resnext50_32x4d", num_classes, zero_init_residual)


@_variant_entry("resnext101_32x8d")
def resnext101_32x8d(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """ResNeXt-101 (32×8d): 88,791,336 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return _variant("resnext101_32x8d", num_classes, zero_init_residual)


@_variant_entry("resnext101_64x4d")
def resnext101_64x4d(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """ResNeXt-101 (64×4d): 83,455,272 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return _variant("resnext101_64x4d", num_classes, zero_init_residual)


@_variant_entry("wide_resnet50_2")
def wide_resnet50_2(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """Wide ResNet-50-2 (bottlenecks twice as wide inside): 68,883,240 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return _variant("wide_resnet50_2", num_classes, zero_init_residual)


@_variant_entry("wide_resnet101_2")
def wide_resnet101_2(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """Wide ResNet-101-2: 126,886,696 parameters.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return _variant("wide_resnet101_2", num_classes, zero_init_residual)
