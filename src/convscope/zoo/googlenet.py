"""GoogLeNet (Inception v1): Szegedy et al. 2014, "Going deeper with convolutions".

Two incarnations share Table 1's inception configuration (:data:`INCEPTION_TABLE`):

* ``googlenet`` — torchvision's layout and state_dict keys (``conv1.conv.weight``,
  ``inception3a.branch2.1.bn.running_mean``, ...): every conv is ``BasicConv2d`` (conv without
  bias, ``BatchNorm2d(eps=0.001)``, ReLU), global average pooling, dropout 0.2, no auxiliary
  heads. It keeps torchvision's known quirk: the "5×5" branch (``branch3``) uses a 3×3 conv
  (pytorch/vision#906), and ``maxpool4`` is 2×2/2.
* ``googlenet_paper`` — Table 1 as printed: convs with bias and ReLU, true 5×5 convs, local
  response normalisation after the first pool and after the 3×3 conv (Caffe ``bvlc_googlenet``
  values), no batch norm, 3×3/2 max pools, 7×7/1 average pool, dropout 40 %, linear 1000, no
  auxiliary classifiers. Each inception module names its convs after the table's columns
  (``conv_1x1``, ``reduce_3x3``, ``conv_3x3``, ``reduce_5x5``, ``conv_5x5``, ``pool_proj``), and
  :func:`paper_table` reads the columns back from a built model.

Max pools use ``ceil_mode=True`` (Caffe's rounding), which is what gives Table 1's sizes
112 → 56 → 28 → 14 → 7.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from .. import cat, nn
from .. import functional as F
from ._init import Rules, norm_ones_zeros, reinitialise, trunc_normal_weight
from .registry import register

PAPER = "Szegedy et al. 2014, Going deeper with convolutions (arXiv:1409.4842), Table 1"


class Columns(NamedTuple):
    """One inception row of Table 1: output channels of each conv, by column."""

    n1x1: int
    n3x3_reduce: int
    n3x3: int
    n5x5_reduce: int
    n5x5: int
    pool_proj: int


# Table 1: module → (input channels, #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj).
INCEPTION_TABLE: dict[str, tuple[int, Columns]] = {
    "3a": (192, Columns(64, 96, 128, 16, 32, 32)),
    "3b": (256, Columns(128, 128, 192, 32, 96, 64)),
    "4a": (480, Columns(192, 96, 208, 16, 48, 64)),
    "4b": (512, Columns(160, 112, 224, 24, 64, 64)),
    "4c": (512, Columns(128, 128, 256, 24, 64, 64)),
    "4d": (512, Columns(112, 144, 288, 32, 64, 64)),
    "4e": (528, Columns(256, 160, 320, 32, 128, 128)),
    "5a": (832, Columns(256, 160, 320, 32, 128, 128)),
    "5b": (832, Columns(384, 192, 384, 48, 128, 128)),
}

# The order of Table 1's rows after the stem: inception modules and the max pools between them.
STAGES = ("3a", "3b", "maxpool3", "4a", "4b", "4c", "4d", "4e", "maxpool4", "5a", "5b")


class _InceptionModule(nn.Module):
    """What both inception layouts share: they report their Table 1 columns."""

    def columns(self) -> Columns:
        raise NotImplementedError


class BasicConv2d(nn.Module):
    """torchvision's conv unit: ``Conv2d(bias=False) → BatchNorm2d(eps=0.001) → ReLU``.

    Shape:
        input ``(N, C_in, H, W)`` → output ``(N, C_out, H_out, W_out)`` with the conv's formula.
    """

    def __init__(self, in_channels: int, out_channels: int, **conv_options: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_options)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Any) -> Any:
        return F.relu(self.bn(self.conv(x)))


class Inception(_InceptionModule):
    """torchvision's inception module: four ``BasicConv2d`` branches concatenated on channels.

    ``branch1`` = #1×1; ``branch2`` = #3×3 reduce → #3×3; ``branch3`` = #5×5 reduce → "#5×5",
    which is a 3×3 conv as in torchvision (pytorch/vision#906; unlike the paper); ``branch4`` =
    3×3/1 max pool → pool proj.

    Shape:
        input ``(N, C_in, H, W)`` → output ``(N, n1x1 + n3x3 + n5x5 + pool_proj, H, W)``.
    """

    def __init__(self, in_channels: int, cols: Columns) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, cols.n1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, cols.n3x3_reduce, kernel_size=1),
                                     BasicConv2d(cols.n3x3_reduce, cols.n3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, cols.n5x5_reduce, kernel_size=1),
                                     BasicConv2d(cols.n5x5_reduce, cols.n5x5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_channels, cols.pool_proj, kernel_size=1))

    def forward(self, x: Any) -> Any:
        return cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)

    def columns(self) -> Columns:
        b2, b3 = self.branch2, self.branch3
        return Columns(self.branch1.conv.out_channels, b2[0].conv.out_channels, b2[1].conv.out_channels,
                       b3[0].conv.out_channels, b3[1].conv.out_channels, self.branch4[1].conv.out_channels)


class InceptionPaper(_InceptionModule):
    """The paper's inception module (Figure 2b): convs with bias, each followed by ReLU.

    Submodules are named after Table 1's columns: ``conv_1x1`` (#1×1), ``reduce_3x3``
    (#3×3 reduce) → ``conv_3x3`` (#3×3), ``reduce_5x5`` (#5×5 reduce) → ``conv_5x5`` (#5×5, a
    true 5×5), ``pool`` (3×3/1 max pool) → ``pool_proj`` (pool proj).

    Shape:
        input ``(N, C_in, H, W)`` → output ``(N, n1x1 + n3x3 + n5x5 + pool_proj, H, W)``.
    """

    def __init__(self, in_channels: int, cols: Columns) -> None:
        super().__init__()
        self.conv_1x1 = nn.Conv2d(in_channels, cols.n1x1, kernel_size=1)
        self.reduce_3x3 = nn.Conv2d(in_channels, cols.n3x3_reduce, kernel_size=1)
        self.conv_3x3 = nn.Conv2d(cols.n3x3_reduce, cols.n3x3, kernel_size=3, padding=1)
        self.reduce_5x5 = nn.Conv2d(in_channels, cols.n5x5_reduce, kernel_size=1)
        self.conv_5x5 = nn.Conv2d(cols.n5x5_reduce, cols.n5x5, kernel_size=5, padding=2)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.pool_proj = nn.Conv2d(in_channels, cols.pool_proj, kernel_size=1)

    def forward(self, x: Any) -> Any:
        relu = F.relu
        return cat([relu(self.conv_1x1(x)),
                    relu(self.conv_3x3(relu(self.reduce_3x3(x)))),
                    relu(self.conv_5x5(relu(self.reduce_5x5(x)))),
                    relu(self.pool_proj(self.pool(x)))], 1)

    def columns(self) -> Columns:
        return Columns(self.conv_1x1.out_channels, self.reduce_3x3.out_channels, self.conv_3x3.out_channels,
                       self.reduce_5x5.out_channels, self.conv_5x5.out_channels, self.pool_proj.out_channels)


def _transform_input(x: Any) -> Any:
    """torchvision's ``transform_input``: re-normalise an ImageNet-normalised image (mean/std per
    channel) to the [-1, 1] scaling the TensorFlow-ported weights expect."""
    means, stds = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    return cat([x[:, c:c + 1] * (stds[c] / 0.5) + (means[c] - 0.5) / 0.5 for c in range(3)], 1)


# torchvision's GoogLeNet.__init__ (init_weights): every Conv2d and Linear weight
# trunc_normal_(mean=0, std=0.01, a=-2, b=2) (biases untouched: the convs have none, fc keeps its default),
# BatchNorm2d weight 1 and bias 0.
TORCHVISION_INIT: Rules = (((nn.Conv2d, nn.Linear), trunc_normal_weight(0.01, zero_bias=False)),
                           (nn.BatchNorm2d, norm_ones_zeros))


class GoogLeNet(nn.Module):
    """A trunk of named layers run in order, then pool → flatten → dropout → fc; ``init_rules``
    re-initialise the built model (:data:`TORCHVISION_INIT` for the torchvision layout, none —
    the layers' defaults — for the paper's).

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``. The torchvision layout pools
        adaptively and accepts any input of at least 15×15; the paper layout's 7×7/1 average pool
        needs a 7×7 final map, i.e. an input side from 223 to 254 (224 in the paper).
    """

    def __init__(self, trunk: list[tuple[str, nn.Module]], avgpool: nn.Module, dropout: float,
                 num_classes: int, transform_input: bool = False, init_rules: Rules = ()) -> None:
        super().__init__()
        self.transform_input = transform_input
        for name, layer in trunk:
            setattr(self, name, layer)
        self.trunk_names = tuple(name for name, _ in trunk)
        self.avgpool = avgpool
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)
        reinitialise(self, init_rules)

    def forward(self, x: Any) -> Any:
        if self.transform_input:
            x = _transform_input(x)
        for name in self.trunk_names:
            x = getattr(self, name)(x)
        x = self.avgpool(x).flatten(1)
        return self.fc(self.dropout(x))


def _inception_stages(inception: Callable[[int, Columns], nn.Module],
                      maxpool: Callable[[str], nn.Module]) -> list[tuple[str, nn.Module]]:
    """Table 1 from inception (3a) to inception (5b), with the given module and pool builders."""
    return [(name, maxpool(name)) if name.startswith("maxpool")
            else (f"inception{name}", inception(*INCEPTION_TABLE[name])) for name in STAGES]


@register("googlenet", input_shape=(3, 224, 224),
          description="GoogLeNet, torchvision layout (BasicConv2d with BN, 3×3 '5×5' branch, no aux heads)",
          reference=PAPER + "; torchvision.models.googlenet")
def googlenet(num_classes: int = 1000, transform_input: bool = False, dropout: float = 0.2,
              init_weights: bool = True) -> GoogLeNet:
    """GoogLeNet as torchvision builds it with ``aux_logits=False``: 6,624,904 parameters.

    ``transform_input`` (default False, as in torchvision's class) re-scales an input normalised
    with the ImageNet mean/std to the [-1, 1] range the TensorFlow-ported torchvision weights
    were trained on; turn it on only when loading those weights (torchvision's ``googlenet(
    weights=...)`` turns it on for you, convscope does not load weights). ``init_weights``
    applies torchvision's initialisation (:data:`TORCHVISION_INIT`: conv and linear weights
    N(0, 0.01²) truncated to ±2); without it the layers keep their defaults.

    Shape:
        input ``(N, 3, H, W)``, H, W ≥ 15 (224 in the paper) → output ``(N, num_classes)``.
    """

    def maxpool(name: str) -> nn.Module:
        size = 2 if name == "maxpool4" else 3
        return nn.MaxPool2d(size, stride=2, ceil_mode=True)

    trunk = [
        ("conv1", BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)),
        ("maxpool1", nn.MaxPool2d(3, stride=2, ceil_mode=True)),
        ("conv2", BasicConv2d(64, 64, kernel_size=1)),
        ("conv3", BasicConv2d(64, 192, kernel_size=3, padding=1)),
        ("maxpool2", nn.MaxPool2d(3, stride=2, ceil_mode=True)),
        *_inception_stages(Inception, maxpool),
    ]
    return GoogLeNet(trunk, nn.AdaptiveAvgPool2d((1, 1)), dropout, num_classes, transform_input,
                     TORCHVISION_INIT if init_weights else ())


def _lrn() -> nn.LocalResponseNorm:
    """bvlc_googlenet's LRN: local_size 5, alpha 1e-4, beta 0.75, k 1 (Caffe divides alpha by the
    size, as PyTorch does)."""
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


@register("googlenet_paper", input_shape=(3, 224, 224),
          description="GoogLeNet exactly as Table 1 (true 5×5, biases, LRN, no BN, no aux heads)",
          reference=PAPER + "; Caffe bvlc_googlenet for the LRN values")
def googlenet_paper(num_classes: int = 1000, dropout: float = 0.4) -> GoogLeNet:
    """GoogLeNet as Table 1 prints it: 6,998,552 parameters (6,990,272 weights + 8,280 biases).

    Stem: conv 7×7/2 (64) → max pool 3×3/2 → LRN → conv 1×1 (#3×3 reduce, 64) → conv 3×3/1
    (192) → LRN → max pool 3×3/2; every conv is followed by ReLU. Then the nine inception
    modules of :data:`INCEPTION_TABLE` with 3×3/2 max pools after (3b) and (4e), average pool
    7×7/1, dropout 40 %, linear. :func:`paper_table` reads the inception columns back. The
    layers keep their default initialisation (the paper does not give one; torchvision's
    initialisation belongs to its own layout).

    Shape:
        input ``(N, 3, 224, 224)`` → output ``(N, num_classes)``.
    """

    def maxpool(name: str) -> nn.Module:
        return nn.MaxPool2d(3, stride=2, ceil_mode=True)

    trunk = [
        ("conv1", nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)), ("relu1", nn.ReLU()),
        ("maxpool1", nn.MaxPool2d(3, stride=2, ceil_mode=True)), ("norm1", _lrn()),
        ("conv2_reduce", nn.Conv2d(64, 64, kernel_size=1)), ("relu2_reduce", nn.ReLU()),
        ("conv2", nn.Conv2d(64, 192, kernel_size=3, padding=1)), ("relu2", nn.ReLU()),
        ("norm2", _lrn()), ("maxpool2", nn.MaxPool2d(3, stride=2, ceil_mode=True)),
        *_inception_stages(InceptionPaper, maxpool),
    ]
    return GoogLeNet(trunk, nn.AvgPool2d(7, stride=1), dropout, num_classes)


def paper_table(model: GoogLeNet) -> dict[str, Columns]:
    """Table 1's six inception columns, read from ``model``'s own layers.

    Works for both layouts: ``{"3a": Columns(n1x1=64, n3x3_reduce=96, ...), ...}`` in network
    order (for ``googlenet`` the "#5×5" column is the channel count of torchvision's 3×3 conv).
    """
    table = {}
    for name in model.trunk_names:
        layer = getattr(model, name)
        if isinstance(layer, _InceptionModule):
            table[name.removeprefix("inception")] = layer.columns()
    return table


def table1(model: GoogLeNet | None = None, input_shape: tuple[int, int, int] = (3, 224, 224)) -> str:
    """The paper's Table 1 for the inception modules, recomputed from ``model`` (default:
    ``googlenet_paper``): the six column widths read from the layers, and "params" and
    "ops" from :func:`convscope.summary` under the paper's counting convention — weights
    only (no biases), in units of 1,024 (K), and conv multiply-adds at the module's input
    size, in millions (M)."""
    from ..analyze import summary

    model = model if model is not None else googlenet_paper()
    columns = paper_table(model)
    totals = {g["name"].removeprefix("inception"): g
              for g in summary(model, input_shape, convention="paper").by_module(1)}
    head = (f"{'module':<8}{'output':>11}{'#1×1':>6}{'#3×3r':>7}{'#3×3':>6}{'#5×5r':>7}{'#5×5':>6}{'proj':>6}"
            f"{'params':>9}{'ops':>7}")
    lines = [head, "─" * len(head)]
    for name, c in columns.items():
        g = totals[name]
        size = "×".join(map(str, g["output_shape"][2:] + g["output_shape"][1:2]))
        lines.append(f"{name:<8}{size:>11}{c.n1x1:>6}{c.n3x3_reduce:>7}{c.n3x3:>6}{c.n5x5_reduce:>7}{c.n5x5:>6}"
                     f"{c.pool_proj:>6}{g['params'] / 1024:>8.0f}K{g['macs'] / 1e6:>6.0f}M")
    return "\n".join(lines)
