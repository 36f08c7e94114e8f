"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to document
recognition", Section II-B and Fig. 2) and the modern variant found in most tutorials.

The original net has three layer types that ``torch.nn`` lacks, defined here:

* :class:`PartialConv2d` — a convolution whose output maps see only some input maps (C3, Table I);
* :class:`Subsampling2d` — S2/S4: sum of a 2×2 window × one trainable coefficient + one trainable
  bias per map;
* :class:`EuclideanRBF` — the output layer: squared Euclidean distance to fixed ±1 bitmaps.

and the squashing function of Appendix A, :class:`ScaledTanh`, ``f(a) = A·tanh(S·a)``.

Paper's table (input 1×32×32; "connections" count a bias as one connection):

=====  ===========================  ============  ==========  ============
layer  what                         output        parameters  connections
=====  ===========================  ============  ==========  ============
C1     conv 6@5×5                   6×28×28       156         122,304
S2     subsampling 2×2              6×14×14       12          5,880
C3     conv 16@5×5, Table I         16×10×10      1,516       151,600
S4     subsampling 2×2              16×5×5        32          2,000
C5     conv 120@5×5                 120×1×1       48,120      48,120
F6     full 84                      84            10,164      10,164
out    Euclidean RBF, 10 units      10            (840 fixed) 840
=====  ===========================  ============  ==========  ============

60,000 trainable parameters in all; the RBF centres are fixed, not trained.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import functional as F
from .. import nn
from ..tensor import Tensor
from .registry import register

REFERENCE = ("LeCun, Bottou, Bengio & Haffner, Gradient-based learning applied to document recognition, "
             "Proc. IEEE 86(11), 1998, Section II-B")

# Table I: which S2 maps (rows) each C3 map (column) combines. Maps 0-5 take 3 contiguous S2 maps,
# 6-11 take 4 contiguous ones, 12-14 take 4 non-contiguous ones, 15 takes all 6.
C3_INPUTS: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)

# The 7×12 output codes (Fig. 3 of the paper: +1 = ink "#", −1 = background "."), one per digit,
# flattened row by row into the 84 RBF centre components. Redrawn in the style of Fig. 3 (digit in
# the top 10 rows, 2 rows left for descenders); not a pixel-exact copy of the printed figure.
DIGIT_BITMAPS: tuple[str, ...] = (
    "..###.. .##.##. ##...## ##...## ##...## ##...## ##...## ##...## .##.##. ..###.. ....... .......",
    "...##.. ..###.. .####.. ...##.. ...##.. ...##.. ...##.. ...##.. ...##.. .###### ....... .......",
    ".#####. ##...## .....## ....##. ...##.. ..##... .##.... ##..... ##..... ####### ....... .......",
    "####### .....## ....##. ...##.. ..####. .....## .....## .....## ##...## .#####. ....... .......",
    "....##. ...###. ..####. .##.##. ##..##. ####### ....##. ....##. ....##. ....##. ....... .......",
    "####### ##..... ##..... ######. .....## .....## .....## .....## ##...## .#####. ....... .......",
    "..####. .##.... ##..... ##..... ######. ###..## ##...## ##...## ##...## .#####. ....... .......",
    "####### .....## .....## ....##. ...##.. ...##.. ..##... ..##... ..##... ..##... ....... .......",
    ".#####. ##...## ##...## ##...## .#####. ##...## ##...## ##...## ##...## .#####. ....... .......",
    ".#####. ##...## ##...## ##...## ##..### .###### .....## .....## ....##. .####.. ....... .......",
)


def connection_table(inputs: tuple[tuple[int, ...], ...], in_channels: int) -> np.ndarray:
    """The 0/1 matrix ``(out_channels, in_channels)`` with a 1 where output map ``o`` reads input map ``i``."""
    table = np.zeros((len(inputs), in_channels), dtype=np.float32)
    for out_map, in_maps in enumerate(inputs):
        table[out_map, list(in_maps)] = 1.0
    return table


def digit_codes() -> np.ndarray:
    """The RBF centres: ``(10, 84)`` array of ±1, row ``d`` is the 7×12 bitmap of digit ``d``."""
    rows = [[1.0 if c == "#" else -1.0 for c in bitmap.replace(" ", "")] for bitmap in DIGIT_BITMAPS]
    return np.array(rows, dtype=np.float32)


class ScaledTanh(nn.Module):
    """The squashing function of Appendix A: ``f(a) = A·tanh(S·a)``, with ``A = 1.7159`` and
    ``S = 2/3`` so that ``f(±1) = ±1`` and the second derivative peaks at ±1.

    Shape:
        input any shape → output the same shape.
    """

    def __init__(self, amplitude: float = 1.7159, slope: float = 2.0 / 3.0) -> None:
        super().__init__()
        self.amplitude = amplitude
        self.slope = slope

    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x * self.slope) * self.amplitude

    def extra_repr(self) -> str:
        return f"amplitude={self.amplitude}, slope={self.slope:.6g}"


class PartialConv2d(nn.Conv2d):
    """A ``Conv2d`` whose output map ``o`` sees only the input maps ``i`` with
    ``connection_table[o, i] == 1`` (LeNet-5's C3, Table I).

    It is an ordinary full convolution whose weight is multiplied by a fixed 0/1 mask, so
    unconnected kernel slices neither contribute to the output nor receive gradient (they are
    also zeroed at construction).

    Counting: ``weight`` keeps the full shape ``(C_out, C_in, kh, kw)`` so that state_dicts stay
    rectangular, but only the connected slices are parameters of the model. The mask is the
    buffer ``connection_table`` of shape ``(C_out, C_in)`` (0/1 floats), so

    * connected weights = ``connection_table.sum() · kh · kw``; parameters = that + ``C_out`` biases
      (:meth:`parameter_count`; 1,500 + 16 = 1,516 for C3);
    * MACs = ``H_out · W_out · C_out · C_in · kh · kw`` per sample (240,000 for C3): the engine
      computes the dense convolution with the masked weight, zeros included; only
      ``H_out · W_out · connection_table.sum() · kh · kw`` of them (150,000) meet a connected weight.

    Shape:
        input ``(N, C_in, H, W)`` → output ``(N, C_out, H_out, W_out)`` as for :class:`Conv2d`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], table: np.ndarray,
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        table = np.asarray(table, dtype=np.float32)
        if table.shape != (out_channels, in_channels) or not np.isin(table, (0.0, 1.0)).all():
            raise ValueError(f"PartialConv2d: expected a 0/1 connection table of shape ({out_channels}, "
                             f"{in_channels}), got shape {table.shape}")
        self.register_buffer("connection_table", Tensor(table))
        if not self.weight.is_meta:
            self.weight.data *= table[:, :, None, None]

    def _mask(self) -> Tensor:
        """The connection table broadcast over the kernel: ``(C_out, C_in, 1, 1)``."""
        return self.connection_table.reshape(self.out_channels, self.in_channels, 1, 1)

    def parameter_count(self) -> tuple[int, str]:
        """Trainable parameters that reach the output: connected weights plus biases, with
        the formula (the analyzer calls this instead of counting the full weight array)."""
        kernel = int(np.prod(self.kernel_size))
        links = int(self.connection_table.numpy().sum())
        biases = self.out_channels if self.bias is not None else 0
        total = links * kernel + biases
        dims = "·".join(map(str, self.kernel_size))
        return total, f"{links} connections·{dims} + {biases} = {total:,}"

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return F.conv2d(x, self.weight * self._mask(), self.bias, self.stride, self.padding)


class Subsampling2d(nn.Module):
    """LeNet-5's S2/S4: each output is the sum of a non-overlapping ``k×k`` window, times a
    trainable coefficient, plus a trainable bias, one pair per map (parameters ``weight`` and
    ``bias``, each of shape ``(C,)``). The squashing function is a separate layer.

    Initialised like a Linear layer with fan-in ``k·k``: both ~ U(−1/k, 1/k).

    Shape:
        input ``(N, C, H, W)`` → output ``(N, C, ⌊H/k⌋, ⌊W/k⌋)``.
    """

    def __init__(self, channels: int, kernel_size: int = 2) -> None:
        super().__init__()
        self.channels = channels
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(np.empty(channels, np.float32))
        self.bias = nn.Parameter(np.empty(channels, np.float32))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / self.kernel_size
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        window_sum = F.avg_pool2d(x, self.kernel_size, divisor_override=1)
        scale = self.weight.reshape(1, self.channels, 1, 1)
        return window_sum * scale + self.bias.reshape(1, self.channels, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}"


class EuclideanRBF(nn.Module):
    """The output layer: unit ``j`` computes ``y_j = Σ_i (x_i − w_ji)²``, the squared distance of
    the input to its centre ``w_j`` (small = likely class).

    The centres are a **buffer** named ``centers`` of shape ``(out_features, in_features)``, not a
    parameter: the paper fixes them to ±1 bitmaps (by default :func:`digit_codes`) and does not
    train them, so they appear in ``state_dict()`` but not in ``parameters()``.

    Shape:
        input ``(N, in_features)`` → output ``(N, out_features)``.
    """

    def __init__(self, centers: np.ndarray) -> None:
        super().__init__()
        centers = np.asarray(centers, dtype=np.float32)
        self.out_features, self.in_features = centers.shape
        self.register_buffer("centers", Tensor(centers))

    def forward(self, x: Tensor) -> Tensor:
        return ((x.unsqueeze(1) - self.centers) ** 2).sum(-1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def _squashed(name: str, layer: nn.Module) -> list[tuple[str, nn.Module]]:
    """A layer followed by the squashing function, as every layer up to F6 is in the paper."""
    return [(name, layer), (f"{name}_act", ScaledTanh())]


@register("lenet5", input_shape=(1, 32, 32), reference=REFERENCE,
          description="LeNet-5 as published: Table I partial C3, trainable subsampling, scaled tanh, RBF output")
def lenet5() -> nn.Sequential:
    """LeNet-5 exactly as in the paper (Fig. 2), layers named as there.

    ``c1 → s2 → c3 → s4 → c5 → f6``, each followed by :class:`ScaledTanh` (``*_act``), then
    ``flatten`` between C5 and F6 and the :class:`EuclideanRBF` ``output`` with the fixed digit codes.
    Trainable parameters that reach the output: 60,000 (``parameters()`` also holds the 900 zeroed,
    unconnected C3 weights; see :class:`PartialConv2d`).

    Shape:
        input ``(N, 1, 32, 32)`` → output ``(N, 10)`` (distances; the predicted digit is the argmin).
    """
    layers = [
        *_squashed("c1", nn.Conv2d(1, 6, 5)),
        *_squashed("s2", Subsampling2d(6)),
        *_squashed("c3", PartialConv2d(6, 16, 5, connection_table(C3_INPUTS, 6))),
        *_squashed("s4", Subsampling2d(16)),
        *_squashed("c5", nn.Conv2d(16, 120, 5)),
        ("flatten", nn.Flatten()),
        *_squashed("f6", nn.Linear(120, 84)),
        ("output", EuclideanRBF(digit_codes())),
    ]
    return nn.Sequential(OrderedDict(layers))


@register("lenet5_modern", input_shape=(1, 32, 32), reference="the common tutorial variant of LeNet-5",
          description="LeNet-5 as usually taught: full convs, ReLU, max pooling, linear classifier")
def lenet5_modern(num_classes: int = 10) -> nn.Sequential:
    """``conv(6, 5×5) → ReLU → maxpool 2 → conv(16, 5×5) → ReLU → maxpool 2 → flatten →
    linear 120 → ReLU → linear 84 → ReLU → linear num_classes`` (61,706 parameters for 10 classes).

    Shape:
        input ``(N, 1, 32, 32)`` → output ``(N, num_classes)``.
    """
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes),
    )
