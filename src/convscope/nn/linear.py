"""Linear (fully-connected) layers and the shape/regularisation layers that sit around them:
Flatten, Unflatten and dropout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import functional as F
from .. import ops
from ..errors import ShapeError
from ..tensor import Tensor
from ._utils import check_size, empty_parameter, require_positive, reset_weight_and_bias
from .module import Module

__all__ = ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "Flatten", "Linear", "StochasticDepth", "Unflatten"]


class Linear(Module):
    """``y = x Wᵀ + b`` with weight ``(out_features, in_features)``, initialised as torch
    does (U(−1/√in_features, 1/√in_features) for weight and bias).

    Shape:
        - Input: :math:`(*, H_{in})` with :math:`H_{in}` = ``in_features``.
        - Output: :math:`(*, H_{out})` with :math:`H_{out}` = ``out_features``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, dtype: Any = None) -> None:
        super().__init__()
        require_positive(self, in_features=in_features, out_features=out_features)
        self.in_features = in_features
        self.out_features = out_features
        self.weight = empty_parameter((out_features, in_features), dtype)
        if bias:
            self.bias = empty_parameter((out_features,), dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_weight_and_bias(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        if input.ndim:
            check_size(self, input.shape[-1], self.in_features, "in_features", unit="features", source=input)
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Flatten(Module):
    """Merge dims ``start_dim`` … ``end_dim`` into one.

    Shape:
        - Input: :math:`(*, S_{start}, ..., S_{end}, *)`.
        - Output: :math:`(*, \\prod_{i=start}^{end} S_i, *)`.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split dim ``dim`` into ``unflattened_size`` (one entry may be -1).

    Shape:
        - Input: :math:`(*, S_{dim}, *)`.
        - Output: :math:`(*, U_1, ..., U_n, *)` with :math:`\\prod U_i = S_{dim}`.
    """

    def __init__(self, dim: int, unflattened_size: Sequence[int]) -> None:
        super().__init__()
        self.dim = dim
        self.unflattened_size = unflattened_size

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return ops.unflatten(input, self.dim, self.unflattened_size)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class _DropoutNd(Module):
    """Base of the dropout layers: ``p`` in [0, 1], active only in training mode."""

    _function_name: str

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if p < 0 or p > 1:
            raise ShapeError(f"dropout probability has to be between 0 and 1, got {p}", layer=type(self).__name__)
        self.p = p
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return getattr(F, self._function_name)(input, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """In training, zero each element with probability ``p`` and scale the rest by
    1/(1−p); identity in eval mode. Random draws use convscope's generator.

    Shape:
        - Input: :math:`(*)`.
        - Output: :math:`(*)`, the same shape.
    """

    _function_name = "dropout"


class Dropout1d(_DropoutNd):
    """Zero whole channels of ``(N, C, L)`` with probability ``p`` in training.

    Shape:
        - Input: :math:`(N, C, L)` or :math:`(C, L)`.
        - Output: the same shape.
    """

    _function_name = "dropout1d"


class Dropout2d(_DropoutNd):
    """Zero whole channels of ``(N, C, H, W)`` with probability ``p`` in training.

    Shape:
        - Input: :math:`(N, C, H, W)` or :math:`(C, H, W)`.
        - Output: the same shape.
    """

    _function_name = "dropout2d"


class Dropout3d(_DropoutNd):
    """Zero whole channels of ``(N, C, D, H, W)`` with probability ``p`` in training.

    Shape:
        - Input: :math:`(N, C, D, H, W)` or :math:`(C, D, H, W)`.
        - Output: the same shape.
    """

    _function_name = "dropout3d"


class StochasticDepth(Module):
    """Drop a residual branch: in training, zero each sample's values together (``mode="row"``)
    or the whole batch's (``"batch"``) with probability ``p`` and scale the kept ones by
    1/(1−p); identity in eval mode (``torchvision.ops.StochasticDepth``). Random draws use
    convscope's generator.

    Shape:
        - Input: :math:`(N, *)`.
        - Output: :math:`(N, *)`, the same shape.
    """

    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.stochastic_depth(input, self.p, self.mode, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"

