"""The records of one-layer provenance: plain data, each able to recompute its value.

A :class:`Read` is one value an op read (a cell of its input, or padding); a :class:`Term`
one product of a weighted sum. Each step class records one way ops combine what they
read, and ``recompute()`` reproduces the engine's value from the record alone, in
float64 with exactly rounded sums (``math.fsum``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, ClassVar

import numpy as np

from .. import functional as F
from .. import ops
from ..tensor import Tensor, no_grad

ELEMENTWISE: dict[str, tuple[str, ...]] = {
    "relu": (), "hardtanh": ("min_val", "max_val"), "leaky_relu": ("negative_slope",), "hardsigmoid": (),
    "hardswish": (), "elu": ("alpha",), "selu": (), "celu": ("alpha",), "softplus": ("beta", "threshold"),
    "sigmoid": (), "logsigmoid": (), "tanh": (), "silu": (), "mish": (), "gelu": ("approximate",),
    "exp": (), "log": (), "sqrt": (), "erf": (), "abs": (), "neg": (),
}
"""Element-wise ops the tracer can re-apply: op name → the recorded attributes that are
keyword arguments of the ``convscope.functional`` (or tensor) function of that name."""

BINARY: dict[str, str] = {"add": "+", "sub": "−", "mul": "×", "div": "/", "pow": "^", "maximum": "max",
                          "minimum": "min"}
"""Two-operand element-wise ops the tracer can re-apply (:mod:`convscope.ops`) → their symbol."""


@dataclass(frozen=True)
class Read:
    """One value an op read.

    ``index`` is the full index into the layer's input (batch first); for a padding cell
    its spatial coordinates lie outside the input (e.g. ``-1``). ``padding`` is None for a
    real cell, else what supplied the value: ``"zeros"``, ``"constant"``, ``"reflect"``,
    ``"replicate"``, ``"circular"`` (then ``source`` is the input cell copied), ``"-inf"``
    (max-pool padding) or ``"overhang"`` (a ceil-mode window past the padding).
    """

    index: tuple[int, ...]
    value: float
    padding: str | None = None
    source: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Term:
    """``read.value × weight = product``; ``weight_index`` indexes the layer's weight tensor."""

    read: Read
    weight_index: tuple[int, ...]
    weight: float
    product: float


@dataclass(frozen=True)
class WeightedSum:
    """``bias + Σ input·weight``: a convolution, a transposed convolution or a linear layer.

    ``channels`` are the input channels (features) the value saw: for a grouped
    convolution only those of ``group`` (of ``groups``).
    """

    kind: ClassVar[str] = "weighted_sum"
    op: str
    input_shape: tuple[int, ...]
    terms: tuple[Term, ...]
    bias: float | None
    channels: tuple[int, ...]
    group: int
    groups: int

    @property
    def reads(self) -> tuple[Read, ...]:
        return tuple(t.read for t in self.terms)

    def product_sum(self) -> float:
        return math.fsum(t.product for t in self.terms)

    def recompute(self) -> float:
        return math.fsum([*(t.product for t in self.terms), self.bias or 0.0])


@dataclass(frozen=True)
class WindowMax:
    """The largest value of a window; ``winner`` (a position in ``reads``) is the cell the
    engine picked, the first maximum in scan order; ``ties`` lists every maximal cell."""

    kind: ClassVar[str] = "max"
    op: str
    input_shape: tuple[int, ...]
    reads: tuple[Read, ...]
    winner: int
    ties: tuple[int, ...]

    def recompute(self) -> float:
        return max(r.value for r in self.reads if r.padding is None)


@dataclass(frozen=True)
class WindowMean:
    """``Σ reads / divisor``; ``rule`` says where the divisor comes from."""

    kind: ClassVar[str] = "mean"
    op: str
    input_shape: tuple[int, ...]
    reads: tuple[Read, ...]
    divisor: float
    rule: str

    def recompute(self) -> float:
        return math.fsum(r.value for r in self.reads) / self.divisor

    def total(self) -> float:
        return math.fsum(r.value for r in self.reads)


@dataclass(frozen=True)
class PowerMean:
    """LP pooling as torch computes it: ``(Σ x^p / divisor · kernel_volume)^(1/p)``; the
    divisor is the window's size inside the input, so a ceil-mode window overhanging the
    input is scaled up to the full kernel rather than summed."""

    kind: ClassVar[str] = "power_mean"
    op: str
    input_shape: tuple[int, ...]
    reads: tuple[Read, ...]
    norm_type: float
    divisor: float
    kernel_volume: int

    def power_sum(self) -> float:
        return math.fsum(float(np.power(r.value, self.norm_type)) for r in self.reads if r.padding is None)

    def recompute(self) -> float:
        with np.errstate(invalid="ignore"):
            return float(np.power(self.power_sum() / self.divisor * self.kernel_volume, 1.0 / self.norm_type))


def _normalized(x: float, mean: float, var: float, eps: float, weight: float | None, bias: float | None) -> float:
    """``(x − mean)/√(var + eps)·weight + bias``, without the factor or the term when absent."""
    value = (x - mean) / math.sqrt(var + eps)
    if weight is not None:
        value *= weight
    return value + (bias or 0.0)


@dataclass(frozen=True)
class Normalization:
    """Batch norm in evaluation mode: ``(x − mean)/√(var + eps)·weight + bias``."""

    kind: ClassVar[str] = "batch_norm"
    op: str
    input_shape: tuple[int, ...]
    read: Read
    mean: float
    var: float
    eps: float
    weight: float | None
    bias: float | None

    @property
    def reads(self) -> tuple[Read, ...]:
        return (self.read,)

    def recompute(self) -> float:
        return _normalized(self.read.value, self.mean, self.var, self.eps, self.weight, self.bias)


@dataclass(frozen=True)
class LayerNormalization:
    """Layer norm of one value: ``(x − mean)/√(var + eps)·weight + bias``, where ``mean`` and
    the biased ``var`` are those of ``reads``, every value normalised together with ``x``
    (``reads[position]``); both are computed by the tracer from the reads (``math.fsum``)."""

    kind: ClassVar[str] = "layer_norm"
    op: str
    input_shape: tuple[int, ...]
    reads: tuple[Read, ...]
    position: int
    mean: float
    var: float
    eps: float
    weight: float | None
    bias: float | None

    @property
    def read(self) -> Read:
        return self.reads[self.position]

    def recompute(self) -> float:
        return _normalized(self.read.value, self.mean, self.var, self.eps, self.weight, self.bias)


@dataclass(frozen=True)
class ResponseNormalization:
    """Local response norm of one value: ``x / (k + alpha·Σ window²/size)^beta``. The window
    is ``reads``: the value's neighbouring channels at the same position (``x`` is
    ``reads[position]``); channels past the edges count as zeros, so the divisor is always
    ``size``."""

    kind: ClassVar[str] = "response_norm"
    op: str
    input_shape: tuple[int, ...]
    reads: tuple[Read, ...]
    position: int
    size: int
    alpha: float
    beta: float
    k: float

    @property
    def read(self) -> Read:
        return self.reads[self.position]

    def square_sum(self) -> float:
        return math.fsum(r.value * r.value for r in self.reads)

    def recompute(self) -> float:
        return self.read.value / (self.k + self.alpha * self.square_sum() / self.size) ** self.beta


@dataclass(frozen=True)
class Elementwise:
    """An activation (or other element-wise op) of one input value; ``name`` is the layer
    type when a layer ran it (``"ReLU"``), else the op. ``made`` says how the value read was
    computed when the model's own code combined two values into it (the ReLU after
    ``out += identity`` in a residual block), None otherwise."""

    kind: ClassVar[str] = "elementwise"
    op: str
    input_shape: tuple[int, ...]
    read: Read
    attrs: dict
    name: str
    made: Combination | None = None

    @property
    def reads(self) -> tuple[Read, ...]:
        return (self.read,)

    def recompute(self) -> float:
        """The engine's own function of this op, applied to the one recorded value (float64)."""
        fn = getattr(F, self.op, None) or getattr(ops, self.op)
        with no_grad():
            return float(fn(Tensor.wrap(np.asarray(self.read.value, np.float64)), **self.attrs).item())


@dataclass(frozen=True)
class Copy:
    """A value moved unchanged (flatten, reshape, indexing, concatenation, identity);
    ``operand`` says which input of the op it came from and, for an op of several inputs (a
    concatenation), ``source`` what made that input (as a :class:`Combination`'s operand)."""

    kind: ClassVar[str] = "copy"
    op: str
    input_shape: tuple[int, ...]
    read: Read
    operand: int = 0
    source: Operand | None = None

    @property
    def reads(self) -> tuple[Read, ...]:
        return (self.read,)

    def recompute(self) -> float:
        return self.read.value


@dataclass(frozen=True)
class Operand:
    """One operand of a :class:`Combination`: the value read and what made it.

    ``read.index`` indexes the operand itself (its ``shape``): the combined value's index with
    the dims the operand was broadcast along at 0, and the leading dims it lacks dropped.
    ``origin`` is ``"input"`` (the model input), ``"layer"`` (the output of call ``call`` of
    the layer at path ``name``, which :func:`~convscope.trace.trace` can follow), ``"op"``
    (an op of a module's own ``forward`` made it, ``name`` its op row as ``summary`` names
    it, ``"features.1.0.mul"``, which ``trace`` follows too; ``step`` says how when it is a
    two-operand op), ``"parameter"`` or ``"buffer"`` (``name`` is its name), or
    ``"constant"`` (a number in the code).
    """

    read: Read
    shape: tuple[int, ...]
    origin: str
    name: str | None = None
    call: int = 0
    step: Combination | None = None


@dataclass(frozen=True)
class Combination:
    """Two values combined element-wise: ``a + b``, ``a − b``, ``a × b``, ``a / b``, ``a ^ b``,
    ``max(a, b)`` or ``min(a, b)``; a residual addition, a squeeze-and-excite gate, a layer
    scale. ``input_shape`` is the shape both operands are broadcast to; ``name`` is the
    layer type when a layer output the value (``"InvertedResidual"``), else the op;
    ``symbol`` the op's symbol in :data:`BINARY`."""

    kind: ClassVar[str] = "combination"
    op: str
    input_shape: tuple[int, ...]
    operands: tuple[Operand, Operand]
    name: str
    symbol: str

    @property
    def reads(self) -> tuple[Read, ...]:
        return tuple(o.read for o in self.operands)

    def recompute(self) -> float:
        """The engine's own op applied to the two recorded values (float64)."""
        a, b = (Tensor.wrap(np.asarray(o.read.value, np.float64)) for o in self.operands)
        with no_grad():
            return float(getattr(ops, self.op)(a, b).item())


@dataclass(frozen=True)
class Sum:
    """A sum over ``dims``: every value along them, added (``x.mean((2, 3))`` is this sum,
    then a division). ``reads`` index the summed tensor (``input_shape``); ``source`` says
    what made it, as a :class:`Combination`'s operand."""

    kind: ClassVar[str] = "sum"
    op: str
    input_shape: tuple[int, ...]
    reads: tuple[Read, ...]
    dims: tuple[int, ...]
    source: Operand

    def recompute(self) -> float:
        return math.fsum(r.value for r in self.reads)


Step = (WeightedSum | WindowMax | WindowMean | PowerMean | Normalization | LayerNormalization
        | ResponseNormalization | Elementwise | Copy | Combination | Sum)


def plain(value: Any) -> Any:
    """JSON-ready data: dataclasses → dicts (with their ``kind``), tuples → lists, NumPy
    scalars → Python numbers, non-finite floats → None (JSON has no ±inf/NaN)."""
    if is_dataclass(value) and not isinstance(value, type):
        out = {"kind": value.kind} if hasattr(value, "kind") else {}
        out.update({f.name: plain(getattr(value, f.name)) for f in fields(value)})
        return out
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
