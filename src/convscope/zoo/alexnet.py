"""AlexNet, in two layouts.

* ``alexnet`` — torchvision's single-tower version (from Krizhevsky's "One weird trick", 2014):
  64/192/384/256/256 maps, no LRN, no groups, an adaptive 6×6 average pool before the classifier,
  and torchvision's module indices (``features.0`` … ``classifier.6``). 61,100,840 parameters.
* ``alexnet_original`` — Krizhevsky, Sutskever & Hinton 2012 as trained on two GPUs, in the layout
  of Caffe's ``bvlc_alexnet``: 227×227 input (the paper's "224" does not give 55×55 maps with an
  11×11/4 conv and no padding), LRN after conv1 and conv2, and conv2/conv4/conv5 split into
  2 groups (each GPU's half of the maps sees only its own half of the input). 60,965,224 parameters.
"""

from __future__ import annotations

from collections import OrderedDict

from .. import nn
from ..tensor import Tensor
from .registry import register

TORCHVISION_REFERENCE = "torchvision.models.alexnet (Krizhevsky, One weird trick for parallelizing CNNs, 2014)"
PAPER_REFERENCE = ("Krizhevsky, Sutskever & Hinton, ImageNet classification with deep convolutional neural "
                   "networks, NIPS 2012 (layout of Caffe's bvlc_alexnet)")

# torchvision's features: (out maps, kernel, stride, padding, max-pool 3/2 after)
TORCHVISION_CONVS: list[tuple[int, int, int, int, bool]] = [
    (64, 11, 4, 2, True),
    (192, 5, 1, 2, True),
    (384, 3, 1, 1, False),
    (256, 3, 1, 1, False),
    (256, 3, 1, 1, True),
]

# The 2012 net (Section 3.5, Fig. 2):
# (layer number, out maps, kernel, stride, padding, groups, LRN after, max-pool after)
PAPER_CONVS: list[tuple[int, int, int, int, int, int, bool, bool]] = [
    (1, 96, 11, 4, 0, 1, True, True),
    (2, 256, 5, 1, 2, 2, True, True),
    (3, 384, 3, 1, 1, 1, False, False),
    (4, 384, 3, 1, 1, 2, False, False),
    (5, 256, 3, 1, 1, 2, False, True),
]

# Section 3.3: k = 2, n = 5, α = 1e-4, β = 0.75, with b = a / (k + α·Σa²)^β. torch's (and convscope's)
# LocalResponseNorm divides alpha by size, so the paper's α is passed as α·n.
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0


class AlexNet(nn.Module):
    """torchvision's AlexNet: ``features`` (convs, ReLUs, max pools), ``avgpool``
    (``AdaptiveAvgPool2d((6, 6))``), flatten, ``classifier`` (Dropout, Linear 9216→4096, ReLU,
    Dropout, Linear 4096→4096, ReLU, Linear 4096→num_classes). Parameters keep the layers'
    default initialisation, as in torchvision (whose AlexNet does not re-initialise).

    Shape:
        input ``(N, 3, H, W)`` with ``H, W ≥ 63`` → output ``(N, num_classes)``.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for out_channels, kernel, stride, padding, pool in TORCHVISION_CONVS:
            layers += [nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding),
                       nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(in_channels * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


@register("alexnet", input_shape=(3, 224, 224), reference=TORCHVISION_REFERENCE,
          description="AlexNet, torchvision layout (single tower, adaptive 6×6 pool)")
def alexnet(num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    """torchvision's ``alexnet()``; state_dict keys and shapes match torchvision's.

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """
    return AlexNet(num_classes=num_classes, dropout=dropout)


@register("alexnet_original", input_shape=(3, 227, 227), reference=PAPER_REFERENCE,
          description="AlexNet 2012 two-tower layout: LRN, grouped conv2/4/5, 227×227 input")
def alexnet_original(num_classes: int = 1000, dropout: float = 0.5) -> nn.Sequential:
    """The 2012 network with Caffe's layer names: ``conv1 relu1 norm1 pool1 conv2 relu2 norm2
    pool2 conv3 relu3 conv4 relu4 conv5 relu5 pool5 flatten fc6 relu6 drop6 fc7 relu7 drop7 fc8``.

    The two GPU towers are expressed as ``groups=2`` in conv2, conv4 and conv5 (conv3 and the
    fully connected layers cross between the GPUs). LRN uses the paper's constants; unlike the
    paper's formula, ``LocalResponseNorm`` divides alpha by the window size, so it is given
    ``alpha = 5 · 1e-4`` to compute exactly the paper's normalisation.

    Shape:
        input ``(N, 3, 227, 227)`` → conv1 ``96×55×55`` → pool1 ``96×27×27`` → pool2 ``256×13×13``
        → pool5 ``256×6×6`` → output ``(N, num_classes)``.
    """
    layers: list[tuple[str, nn.Module]] = []
    in_channels = 3
    for i, out_channels, kernel, stride, padding, groups, lrn, pool in PAPER_CONVS:
        layers += [
            (f"conv{i}", nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, groups=groups)),
            (f"relu{i}", nn.ReLU(inplace=True)),
        ]
        if lrn:
            layers.append((f"norm{i}", nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA * LRN_SIZE, beta=LRN_BETA,
                                                             k=LRN_K)))
        if pool:
            layers.append((f"pool{i}", nn.MaxPool2d(kernel_size=3, stride=2)))
        in_channels = out_channels
    layers += [
        ("flatten", nn.Flatten()),
        ("fc6", nn.Linear(in_channels * 6 * 6, 4096)), ("relu6", nn.ReLU(inplace=True)), ("drop6", nn.Dropout(dropout)),
        ("fc7", nn.Linear(4096, 4096)), ("relu7", nn.ReLU(inplace=True)), ("drop7", nn.Dropout(dropout)),
        ("fc8", nn.Linear(4096, num_classes)),
    ]
    return nn.Sequential(OrderedDict(layers))
