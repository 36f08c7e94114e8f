"""The benchmark set of issue 10: what is measured, and how much work and traffic each case is.

A case is plain data (no engine code): its name, kind, shapes and hyper-parameters, the
phases it is timed in, its multiply-adds and the bytes it must move. The workers
(:mod:`worker`) turn a case into timed calls for one engine; the runner (:mod:`run`) reads
the work and traffic from here to print GFLOP/s and GB/s. All cases are float32.

Phases: ``fwd`` (inference, no graph), ``bwd_in`` (input gradient only), ``bwd_w``
(weight gradient only), ``bwd`` (every gradient, for fused ops such as batch norm),
``step`` (a whole training step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

ITEM = 4  # bytes per float32


@dataclass(frozen=True)
class ConvCase:
    """One convolution (or transposed convolution) layer, batch ``n``."""

    name: str
    n: int
    c_in: int
    c_out: int
    size: tuple[int, ...]
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    transposed: bool = False
    kind: str = "conv"
    phases: tuple[str, ...] = ("fwd", "bwd_in", "bwd_w")

    @property
    def nd(self) -> int:
        return len(self.size)

    @property
    def memory_bound(self) -> bool:
        """Depthwise convs do ~k² multiply-adds per element moved: bandwidth, not BLAS, limits them."""
        return self.groups == self.c_in and not self.transposed

    def input_shape(self) -> tuple[int, ...]:
        return (self.n, self.c_in, *self.size)

    def weight_shape(self) -> tuple[int, ...]:
        k = (self.kernel,) * self.nd
        if self.transposed:
            return (self.c_in, self.c_out // self.groups, *k)
        return (self.c_out, self.c_in // self.groups, *k)

    def output_size(self) -> tuple[int, ...]:
        span = self.dilation * (self.kernel - 1) + 1
        if self.transposed:
            return tuple((s - 1) * self.stride - 2 * self.padding + span for s in self.size)
        return tuple((s + 2 * self.padding - span) // self.stride + 1 for s in self.size)

    def macs(self) -> int:
        """Output elements × (C_in/groups) × kernel volume; a transposed conv does the work of
        the conv it is the gradient of (input elements × C_out/groups × kernel volume)."""
        k = self.kernel ** self.nd
        if self.transposed:
            return self.n * self.c_in * math.prod(self.size) * (self.c_out // self.groups) * k
        return self.n * self.c_out * math.prod(self.output_size()) * (self.c_in // self.groups) * k

    def traffic(self, phase: str) -> int:
        """Compulsory bytes: every operand read once, every result written once."""
        x = math.prod(self.input_shape())
        y = self.n * self.c_out * math.prod(self.output_size())
        w = math.prod(self.weight_shape())
        return ITEM * {"fwd": x + w + y, "bwd_in": y + w + x, "bwd_w": x + y + w}[phase]


@dataclass(frozen=True)
class OpCase:
    """A pooling or normalisation call on one ``shape`` input."""

    name: str
    kind: str                     # max_pool | avg_pool | adaptive_avg | adaptive_max | batch_norm | batch_norm_eval
    shape: tuple[int, ...]
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    output_size: int = 1
    phases: tuple[str, ...] = ("fwd", "bwd_in")
    memory_bound: bool = True

    def output_shape(self) -> tuple[int, ...]:
        n, c, *size = self.shape
        if self.kind in ("max_pool", "avg_pool"):
            return (n, c, *((s + 2 * self.padding - self.kernel) // self.stride + 1 for s in size))
        if self.kind.startswith("adaptive"):
            return (n, c, *(self.output_size,) * len(size))
        return self.shape

    def macs(self) -> int:
        return 0

    def traffic(self, phase: str) -> int:
        """Compulsory bytes: forward reads x and writes y; the backward reads the output
        gradient (and for batch norm x again) and writes the input gradient."""
        x, y = math.prod(self.shape), math.prod(self.output_shape())
        if self.kind.startswith("batch_norm"):
            return ITEM * (2 * x if phase == "fwd" else 3 * x)
        return ITEM * (x + y)


@dataclass(frozen=True)
class ModelCase:
    """A whole zoo model: forward in eval mode, or (``train``) one training step."""

    name: str
    model: str                    # zoo name, or "digits" for the shipped digits CNN architecture
    n: int
    input_shape: tuple[int, ...]
    macs_per_sample: int = 0      # filled from the summary by the runner when 0
    train: bool = False
    kind: str = "model"
    memory: bool = True           # measure peak extra memory in a fresh process
    phases: tuple[str, ...] = field(default=("fwd",))
    memory_bound: bool = False

    def macs(self) -> int:
        return self.n * self.macs_per_sample

    def traffic(self, phase: str) -> int:
        return 0


Case = ConvCase | OpCase | ModelCase

# ResNet-50's layers at batch 8 (torchvision's stem, bottleneck 1×1 and 3×3 layers), VGG-16's
# heaviest and a late layer, MobileNet's depthwise and pointwise layers, and special shapes.
CONVS = [
    ConvCase("resnet50 stem 7x7/2 3->64 @224", 8, 3, 64, (224, 224), 7, 2, 3),
    ConvCase("resnet50 1x1 64->256 @56", 8, 64, 256, (56, 56), 1),
    ConvCase("resnet50 3x3 128 @28", 8, 128, 128, (28, 28), 3, 1, 1),
    ConvCase("resnet50 3x3 256 @14", 8, 256, 256, (14, 14), 3, 1, 1),
    ConvCase("resnet50 1x1 2048->512 @7", 8, 2048, 512, (7, 7), 1),
    ConvCase("vgg16 3x3 64 @224 (N=1)", 1, 64, 64, (224, 224), 3, 1, 1),
    ConvCase("vgg16 3x3 512 @14", 8, 512, 512, (14, 14), 3, 1, 1),
    ConvCase("mobilenet dw 3x3 32 @112", 8, 32, 32, (112, 112), 3, 1, 1, groups=32),
    ConvCase("mobilenet dw 3x3 512 @14", 8, 512, 512, (14, 14), 3, 1, 1, groups=512),
    ConvCase("mobilenet pw 1x1 512 @14", 8, 512, 512, (14, 14), 1),
    ConvCase("dilated 3x3 d2 256 @28", 8, 256, 256, (28, 28), 3, 1, 2, dilation=2),
    ConvCase("resnext 3x3 g32 256 @28", 8, 256, 256, (28, 28), 3, 1, 1, groups=32),
    ConvCase("transposed k4/2 128->64 @28", 8, 128, 64, (28, 28), 4, 2, 1, transposed=True),
    ConvCase("conv3d 3x3x3 64 @16x56x56", 8, 64, 64, (16, 56, 56), 3, 1, 1),
]

OPS = [
    OpCase("max_pool 3x3/2 64 @112", "max_pool", (8, 64, 112, 112), 3, 2, 1),
    OpCase("avg_pool 3x3/2 64 @112", "avg_pool", (8, 64, 112, 112), 3, 2, 1),
    OpCase("adaptive_avg 2048 @7 -> 1", "adaptive_avg", (8, 2048, 7, 7)),
    OpCase("adaptive_max 512 @14 -> 7", "adaptive_max", (8, 512, 14, 14), output_size=7),
    OpCase("batch_norm train 64 @112", "batch_norm", (8, 64, 112, 112), phases=("fwd", "bwd")),
    OpCase("batch_norm eval 256 @56", "batch_norm_eval", (8, 256, 56, 56), phases=("fwd",)),
]

MODELS = [
    ModelCase("digits CNN train step (N=64)", "digits", 64, (1, 8, 8), train=True, phases=("step",), memory=False),
    ModelCase("resnet18 forward (N=8)", "resnet18", 8, (3, 224, 224)),
    ModelCase("mobilenet_v2 forward (N=8)", "mobilenet_v2", 8, (3, 224, 224)),
    ModelCase("resnet50 forward (N=1)", "resnet50", 1, (3, 224, 224)),
    ModelCase("resnet50 forward (N=8)", "resnet50", 8, (3, 224, 224)),
]

CASES: list[Case] = [*CONVS, *OPS, *MODELS]
BY_NAME = {c.name: c for c in CASES}

# A two-minute look: one case of every path (im2col, direct, depthwise, grouped, small-C_in
# stem, transposed, max pool, batch norm) and the two cheapest whole models.
QUICK = [
    "resnet50 stem 7x7/2 3->64 @224", "resnet50 1x1 64->256 @56", "resnet50 3x3 128 @28",
    "mobilenet dw 3x3 512 @14", "resnext 3x3 g32 256 @28", "transposed k4/2 128->64 @28",
    "max_pool 3x3/2 64 @112", "batch_norm train 64 @112", "digits CNN train step (N=64)", "resnet18 forward (N=8)",
]
