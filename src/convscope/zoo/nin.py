"""Network in Network (Lin, Chen & Yan 2013), the CIFAR-10 model.

Each *mlpconv* block is a spatial convolution followed by two 1×1 convolutions (a small MLP
slid over the image), each with ReLU. The last block outputs one map per class and a global
average pool replaces the fully connected classifier. Configuration of the authors' released
CIFAR-10 model (the one most reimplementations use); pools are 3×3 stride 2 in ceil mode, as in
Caffe, so 32 → 16 → 8; dropout 0.5 after the first two pools.

    block      convolutions                      output       then
    mlpconv1   192@5×5 pad 2, 160@1×1, 96@1×1    96×32×32     max pool 3/2, dropout → 96×16×16
    mlpconv2   192@5×5 pad 2, 192@1×1, 192@1×1   192×16×16    avg pool 3/2, dropout → 192×8×8
    mlpconv3   192@3×3 pad 1, 192@1×1, 10@1×1    10×8×8       global average pool → 10

966,986 parameters, none of them in a fully connected layer.
"""

from __future__ import annotations

from collections import OrderedDict

from .. import nn
from .registry import register

REFERENCE = "Lin, Chen & Yan, Network in network, ICLR 2014 (arXiv:1312.4400), CIFAR-10 model"

# (spatial kernel, padding, maps of the spatial conv and the two 1×1 convs, pooling after the block)
BLOCKS: list[tuple[int, int, tuple[int, int, int], str]] = [
    (5, 2, (192, 160, 96), "max"),
    (5, 2, (192, 192, 192), "avg"),
    (3, 1, (192, 192, 10), "global"),
]


def mlpconv(in_channels: int, kernel_size: int, padding: int, maps: tuple[int, int, int]) -> nn.Sequential:
    """``Conv2d(k×k) → ReLU → Conv2d(1×1) → ReLU → Conv2d(1×1) → ReLU``.

    Shape:
        input ``(N, in_channels, H, W)`` → output ``(N, maps[-1], H + 2·padding − k + 1, ...)``.
    """
    layers: list[nn.Module] = []
    for i, out_channels in enumerate(maps):
        layers += [nn.Conv2d(in_channels, out_channels, kernel_size if i == 0 else 1, padding=padding if i == 0 else 0),
                   nn.ReLU(inplace=True)]
        in_channels = out_channels
    return nn.Sequential(*layers)


def _pool(kind: str) -> nn.Module:
    if kind == "max":
        return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
    if kind == "avg":
        return nn.AvgPool2d(kernel_size=3, stride=2, ceil_mode=True)
    return nn.AdaptiveAvgPool2d(1)


@register("nin", input_shape=(3, 32, 32), reference=REFERENCE,
          description="Network in Network for CIFAR-10: three mlpconv blocks, global average pooling, no FC")
def nin(dropout: float = 0.5) -> nn.Sequential:
    """Modules ``mlpconv1 pool1 drop1 mlpconv2 pool2 drop2 mlpconv3 pool3 flatten``; the class
    scores are the spatial means of the 10 maps of ``mlpconv3``.

    Shape:
        input ``(N, 3, 32, 32)`` → ``(N, 96, 16, 16)`` → ``(N, 192, 8, 8)`` → ``(N, 10, 8, 8)`` → output ``(N, 10)``.
    """
    layers: list[tuple[str, nn.Module]] = []
    in_channels = 3
    for i, (kernel, padding, maps, pool) in enumerate(BLOCKS, start=1):
        layers += [(f"mlpconv{i}", mlpconv(in_channels, kernel, padding, maps)), (f"pool{i}", _pool(pool))]
        if pool != "global":
            layers.append((f"drop{i}", nn.Dropout(dropout)))
        in_channels = maps[-1]
    layers.append(("flatten", nn.Flatten()))
    return nn.Sequential(OrderedDict(layers))
