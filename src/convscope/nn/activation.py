"""Activation layers: thin modules over the element-wise functional ops (and softmax)."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from ..errors import ShapeError
from ..tensor import Tensor
from . import init as init_module
from ._utils import empty_parameter, require_positive
from .module import Module

__all__ = [
    "CELU", "ELU", "GELU", "Hardsigmoid", "Hardswish", "Hardtanh", "LeakyReLU", "LogSigmoid", "LogSoftmax", "PReLU",
    "Mish", "ReLU", "ReLU6", "SELU", "SiLU", "Sigmoid", "Softmax", "Softplus", "Tanh",
]


class _Pointwise(Module):
    """An element-wise activation with torch's ``inplace`` flag (shown in ``repr`` only when set).

    Shape:
        - Input: :math:`(*)`, any shape.
        - Output: :math:`(*)`, the same shape.
    """

    _shows_inplace = True

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def _inplace_repr(self, prefix: str = "") -> str:
        flag = "inplace=True" if self.inplace and self._shows_inplace else ""
        return ", ".join(part for part in (prefix, flag) if part)

    def extra_repr(self) -> str:
        return self._inplace_repr()


class ReLU(_Pointwise):
    """``max(0, x)``.

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape.
    """

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.relu(input, inplace=self.inplace)


class Hardtanh(_Pointwise):
    """``clamp(x, min_val, max_val)``.

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape.
    """

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> None:
        super().__init__(inplace)
        if max_val <= min_val:
            raise ShapeError(f"max_val ({max_val}) must be greater than min_val ({min_val})", layer="Hardtanh")
        self.min_val = min_val
        self.max_val = max_val

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.hardtanh(input, self.min_val, self.max_val, self.inplace)

    def extra_repr(self) -> str:
        return self._inplace_repr(f"min_val={self.min_val}, max_val={self.max_val}")


class ReLU6(Hardtanh):
    """``min(max(0, x), 6)`` (a Hardtanh from 0 to 6, as in torch).

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape.
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self) -> str:
        return self._inplace_repr()


class LeakyReLU(_Pointwise):
    """``x`` for x ≥ 0, ``negative_slope·x`` otherwise.

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape.
    """

    def __init__(self, negative_slope: float = 1e-2, inplace: bool = False) -> None:
        super().__init__(inplace)
        self.negative_slope = negative_slope

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.leaky_relu(input, self.negative_slope, self.inplace)

    def extra_repr(self) -> str:
        return self._inplace_repr(f"negative_slope={self.negative_slope}")


class PReLU(Module):
    """``x`` for x > 0, ``a·x`` otherwise, with a learned slope ``a``: one for all channels, or
    one per channel (``num_parameters`` = C, the input's dim 1), starting at ``init``.

    Shape:
        - Input: :math:`(*)`, channels on dim 1 when there are two dims or more.
        - Output: :math:`(*)`, the same shape.
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25, *, dtype: Any = None) -> None:
        super().__init__()
        require_positive(self, num_parameters=num_parameters)
        self.num_parameters = num_parameters
        self.init = init
        self.weight = empty_parameter((num_parameters,), dtype)
        init_module.constant_(self.weight, init)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.prelu(input, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class ELU(_Pointwise):
    """``x`` for x > 0, ``alpha·(exp(x) − 1)`` otherwise.

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape.
    """

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__(inplace)
        self.alpha = alpha

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.elu(input, self.alpha, self.inplace)

    def extra_repr(self) -> str:
        return self._inplace_repr(f"alpha={self.alpha}")


class CELU(ELU):
    """``x`` for x > 0, ``alpha·(exp(x/alpha) − 1)`` otherwise (continuously differentiable ELU).

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape.
    """

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.celu(input, self.alpha, self.inplace)


class SELU(_Pointwise):
    """``scale·elu(x, alpha)`` with the self-normalising constants (scale ≈ 1.0507, alpha ≈ 1.6733).

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape.
    """

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.selu(input, self.inplace)


class SiLU(_Pointwise):
    """``x·sigmoid(x)`` (swish).

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape.
    """

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.silu(input, inplace=self.inplace)


class Mish(_Pointwise):
    """``x·tanh(softplus(x))`` (YOLOv4).

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape.
    """

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.mish(input, inplace=self.inplace)


class Hardswish(_Pointwise):
    """``x·relu6(x + 3)/6`` (MobileNetV3). Like torch, its repr never shows ``inplace``.

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape.
    """

    _shows_inplace = False

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.hardswish(input, self.inplace)


class Hardsigmoid(_Pointwise):
    """``relu6(x + 3)/6``. Like torch, its repr never shows ``inplace``.

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape.
    """

    _shows_inplace = False

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.hardsigmoid(input, self.inplace)


class Sigmoid(Module):
    """``1 / (1 + exp(−x))``.

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape.
    """

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.sigmoid(input)


class LogSigmoid(Module):
    """``log(sigmoid(x))``, finite for inputs of any magnitude.

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape.
    """

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.logsigmoid(input)


class Softplus(Module):
    """``log(1 + exp(beta·x)) / beta``, linear where ``beta·x > threshold``.

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape.
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Tanh(Module):
    """Hyperbolic tangent.

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape.
    """

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.tanh(input)


class GELU(Module):
    """``x·Φ(x)``; ``approximate="tanh"`` uses the tanh formula.

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape.
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class _AlongDim(Module):
    """An activation normalised along ``dim`` (softmax family)."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_AlongDim):
    """``exp(x_i) / Σ_j exp(x_j)`` along ``dim``.

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape, summing to 1 along ``dim``.
    """

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.softmax(input, self.dim)


class LogSoftmax(_AlongDim):
    """``log(softmax(x))`` along ``dim``, computed stably.

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape.
    """

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.log_softmax(input, self.dim)
