"""Pooling layers: max, average, LP, adaptive and max-unpooling, in 1, 2 and 3 dims.

Each family has one base class holding the arguments (stored as the user gave them, like
torch, so ``repr`` matches), their validation and ``forward``; the concrete classes say
their dimensionality and which functional op they call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import functional as F
from ..errors import ShapeError
from ..functional.windows import ntuple
from ..tensor import Tensor
from ._utils import require_positive
from .module import Module

__all__ = [
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "LPPool1d", "LPPool2d", "LPPool3d", "MaxPool1d",
    "MaxPool2d", "MaxPool3d", "MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d",
]

_Size = int | Sequence[int]


class _Pool(Module):
    """Base of the pooling layers: the spatial rank ``_nd`` and the functional op's name."""

    _nd: int
    _function_name: str

    def _function(self) -> Any:
        return getattr(F, self._function_name)

    def _check_window(self, kernel_size: _Size, stride: _Size, padding: _Size = 0, dilation: _Size = 1) -> None:
        """Positive kernel/stride/dilation; ``0 ≤ padding ≤ kernel // 2`` (torch's rule, which
        ignores the dilation)."""
        name, nd = type(self).__name__, self._nd
        k, s = ntuple(kernel_size, nd, "kernel_size", name), ntuple(stride, nd, "stride", name)
        p, d = ntuple(padding, nd, "padding", name), ntuple(dilation, nd, "dilation", name)
        require_positive(self, kernel_size=k, stride=s, dilation=d)
        if any(pi < 0 or pi > ki // 2 for pi, ki in zip(p, k, strict=True)):
            raise ShapeError(f"padding {p} must be non-negative and at most half the kernel {k}", layer=name)


class _MaxPoolNd(_Pool):
    """Max over each window; padding acts as −∞; ties go to the first maximum in scan order."""

    def __init__(self, kernel_size: _Size, stride: _Size | None = None, padding: _Size = 0, dilation: _Size = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode
        self._check_window(self.kernel_size, self.stride, padding, dilation)

    def forward(self, input: Tensor) -> Tensor | tuple[Tensor, Tensor]:  # noqa: A002
        return self._function()(input, self.kernel_size, self.stride, self.padding, self.dilation,
                                ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class _AvgPoolNd(_Pool):
    """Mean over each window; see ``count_include_pad`` and ``divisor_override``."""

    def __init__(self, kernel_size: _Size, stride: _Size | None = None, padding: _Size = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override
        self._check_window(self.kernel_size, self.stride, padding)
        if divisor_override is not None and divisor_override == 0:
            raise ShapeError("divisor_override must be non-zero", layer=type(self).__name__)

    def _arguments(self) -> tuple:
        return (self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                self.divisor_override)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return self._function()(input, *self._arguments())

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class _LPPoolNd(_Pool):
    """``(Σ_window x^p)^(1/p)``: p = 1 is sum pooling, p = ∞ max pooling."""

    def __init__(self, norm_type: float, kernel_size: _Size, stride: _Size | None = None,
                 ceil_mode: bool = False) -> None:
        super().__init__()
        self.norm_type = norm_type
        self.kernel_size = kernel_size
        self.stride = stride
        self.ceil_mode = ceil_mode
        self._check_window(kernel_size, kernel_size if stride is None else stride)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return self._function()(input, self.norm_type, self.kernel_size, self.stride, self.ceil_mode)

    def extra_repr(self) -> str:
        return (f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"ceil_mode={self.ceil_mode}")


class _AdaptivePool(_Pool):
    """Pool to a fixed ``output_size``; bin i over In covers [⌊i·In/Out⌋, ⌈(i+1)·In/Out⌉).
    ``None`` entries keep the input size."""

    def __init__(self, output_size: int | Sequence[int | None]) -> None:
        super().__init__()
        self.output_size = output_size
        sizes = [output_size] * self._nd if isinstance(output_size, int) else list(output_size)
        if len(sizes) != self._nd or any(s is not None and s < 0 for s in sizes):
            raise ShapeError(f"output_size must be {self._nd} non-negative ints or None, got {output_size!r}",
                             layer=type(self).__name__)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class _AdaptiveAvgPoolNd(_AdaptivePool):
    """Mean over each adaptive bin."""

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return self._function()(input, self.output_size)


class _AdaptiveMaxPoolNd(_AdaptivePool):
    """Max over each adaptive bin (optionally with the flat indices of the maxima)."""

    def __init__(self, output_size: int | Sequence[int | None], return_indices: bool = False) -> None:
        super().__init__(output_size)
        self.return_indices = return_indices

    def forward(self, input: Tensor) -> Tensor | tuple[Tensor, Tensor]:  # noqa: A002
        return self._function()(input, self.output_size, self.return_indices)


class _MaxUnpoolNd(_Pool):
    """Partial inverse of max pooling: each value goes back to the place its index names;
    everything else is zero."""

    def __init__(self, kernel_size: _Size, stride: _Size | None = None, padding: _Size = 0) -> None:
        super().__init__()
        name, nd = type(self).__name__, self._nd
        self.kernel_size = ntuple(kernel_size, nd, "kernel_size", name)
        self.stride = ntuple(stride if stride is not None else kernel_size, nd, "stride", name)
        self.padding = ntuple(padding, nd, "padding", name)
        require_positive(self, kernel_size=self.kernel_size, stride=self.stride)

    def forward(self, input: Tensor, indices: Tensor,  # noqa: A002
                output_size: Sequence[int] | None = None) -> Tensor:
        return self._function()(input, indices, self.kernel_size, self.stride, self.padding, output_size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool1d(_MaxPoolNd):
    """1-d max pooling.

    Shape:
        - Input: :math:`(N, C, L_{in})` or :math:`(C, L_{in})`.
        - Output: :math:`(N, C, L_{out})` or :math:`(C, L_{out})`,
          :math:`L_{out} = \\lfloor (L_{in} + 2p - d(k-1) - 1)/s \\rfloor + 1` (ceil in ``ceil_mode``).
    """

    _nd, _function_name = 1, "max_pool1d"


class MaxPool2d(_MaxPoolNd):
    """2-d max pooling.

    Shape:
        - Input: :math:`(N, C, H_{in}, W_{in})` or :math:`(C, H_{in}, W_{in})`.
        - Output: :math:`(N, C, H_{out}, W_{out})` or :math:`(C, H_{out}, W_{out})`, per dim
          :math:`\\lfloor (L_{in} + 2p - d(k-1) - 1)/s \\rfloor + 1` (ceil in ``ceil_mode``).
    """

    _nd, _function_name = 2, "max_pool2d"


class MaxPool3d(_MaxPoolNd):
    """3-d max pooling.

    Shape:
        - Input: :math:`(N, C, D_{in}, H_{in}, W_{in})` or :math:`(C, D_{in}, H_{in}, W_{in})`.
        - Output: :math:`(N, C, D_{out}, H_{out}, W_{out})` or without N, per dim
          :math:`\\lfloor (L_{in} + 2p - d(k-1) - 1)/s \\rfloor + 1` (ceil in ``ceil_mode``).
    """

    _nd, _function_name = 3, "max_pool3d"


class AvgPool1d(_AvgPoolNd):
    """1-d average pooling (torch stores its arguments as 1-tuples; so does this class).

    Shape:
        - Input: :math:`(N, C, L_{in})` or :math:`(C, L_{in})`.
        - Output: :math:`(N, C, L_{out})` or :math:`(C, L_{out})`,
          :math:`L_{out} = \\lfloor (L_{in} + 2p - k)/s \\rfloor + 1` (ceil in ``ceil_mode``).
    """

    _nd, _function_name = 1, "avg_pool1d"

    def __init__(self, kernel_size: _Size, stride: _Size | None = None, padding: _Size = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        def single(value: _Size) -> tuple[int, ...]:
            return ntuple(value, 1, "kernel_size, stride and padding", "AvgPool1d")

        super().__init__(single(kernel_size), single(stride if stride is not None else kernel_size), single(padding),
                         ceil_mode, count_include_pad)

    def _arguments(self) -> tuple:
        return super()._arguments()[:-1]


class AvgPool2d(_AvgPoolNd):
    """2-d average pooling.

    Shape:
        - Input: :math:`(N, C, H_{in}, W_{in})` or :math:`(C, H_{in}, W_{in})`.
        - Output: :math:`(N, C, H_{out}, W_{out})` or :math:`(C, H_{out}, W_{out})`, per dim
          :math:`\\lfloor (L_{in} + 2p - k)/s \\rfloor + 1` (ceil in ``ceil_mode``).
    """

    _nd, _function_name = 2, "avg_pool2d"


class AvgPool3d(_AvgPoolNd):
    """3-d average pooling.

    Shape:
        - Input: :math:`(N, C, D_{in}, H_{in}, W_{in})` or :math:`(C, D_{in}, H_{in}, W_{in})`.
        - Output: :math:`(N, C, D_{out}, H_{out}, W_{out})` or without N, per dim
          :math:`\\lfloor (L_{in} + 2p - k)/s \\rfloor + 1` (ceil in ``ceil_mode``).
    """

    _nd, _function_name = 3, "avg_pool3d"


class LPPool1d(_LPPoolNd):
    """1-d power-average pooling.

    Shape:
        - Input: :math:`(N, C, L_{in})` or :math:`(C, L_{in})`.
        - Output: :math:`(N, C, L_{out})` or :math:`(C, L_{out})`,
          :math:`L_{out} = \\lfloor (L_{in} - k)/s \\rfloor + 1`.
    """

    _nd, _function_name = 1, "lp_pool1d"


class LPPool2d(_LPPoolNd):
    """2-d power-average pooling.

    Shape:
        - Input: :math:`(N, C, H_{in}, W_{in})` or :math:`(C, H_{in}, W_{in})`.
        - Output: :math:`(N, C, H_{out}, W_{out})` or :math:`(C, H_{out}, W_{out})`, per dim
          :math:`\\lfloor (L_{in} - k)/s \\rfloor + 1`.
    """

    _nd, _function_name = 2, "lp_pool2d"


class LPPool3d(_LPPoolNd):
    """3-d power-average pooling.

    Shape:
        - Input: :math:`(N, C, D_{in}, H_{in}, W_{in})` or :math:`(C, D_{in}, H_{in}, W_{in})`.
        - Output: :math:`(N, C, D_{out}, H_{out}, W_{out})` or without N, per dim
          :math:`\\lfloor (L_{in} - k)/s \\rfloor + 1`.
    """

    _nd, _function_name = 3, "lp_pool3d"


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """1-d adaptive average pooling.

    Shape:
        - Input: :math:`(N, C, L_{in})` or :math:`(C, L_{in})`.
        - Output: :math:`(N, C, L_{out})` or :math:`(C, L_{out})`, :math:`L_{out}` = ``output_size``.
    """

    _nd, _function_name = 1, "adaptive_avg_pool1d"


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """2-d adaptive average pooling.

    Shape:
        - Input: :math:`(N, C, H_{in}, W_{in})` or :math:`(C, H_{in}, W_{in})`.
        - Output: :math:`(N, C, H_{out}, W_{out})` or :math:`(C, H_{out}, W_{out})` = ``output_size``.
    """

    _nd, _function_name = 2, "adaptive_avg_pool2d"


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    """3-d adaptive average pooling.

    Shape:
        - Input: :math:`(N, C, D_{in}, H_{in}, W_{in})` or :math:`(C, D_{in}, H_{in}, W_{in})`.
        - Output: :math:`(N, C, D_{out}, H_{out}, W_{out})` or without N, = ``output_size``.
    """

    _nd, _function_name = 3, "adaptive_avg_pool3d"


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    """1-d adaptive max pooling.

    Shape:
        - Input: :math:`(N, C, L_{in})` or :math:`(C, L_{in})`.
        - Output: :math:`(N, C, L_{out})` or :math:`(C, L_{out})`, :math:`L_{out}` = ``output_size``.
    """

    _nd, _function_name = 1, "adaptive_max_pool1d"


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    """2-d adaptive max pooling.

    Shape:
        - Input: :math:`(N, C, H_{in}, W_{in})` or :math:`(C, H_{in}, W_{in})`.
        - Output: :math:`(N, C, H_{out}, W_{out})` or :math:`(C, H_{out}, W_{out})` = ``output_size``.
    """

    _nd, _function_name = 2, "adaptive_max_pool2d"


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    """3-d adaptive max pooling.

    Shape:
        - Input: :math:`(N, C, D_{in}, H_{in}, W_{in})` or :math:`(C, D_{in}, H_{in}, W_{in})`.
        - Output: :math:`(N, C, D_{out}, H_{out}, W_{out})` or without N, = ``output_size``.
    """

    _nd, _function_name = 3, "adaptive_max_pool3d"


class MaxUnpool1d(_MaxUnpoolNd):
    """1-d max unpooling.

    Shape:
        - Input: :math:`(N, C, L_{in})` or :math:`(C, L_{in})`, indices of the same shape.
        - Output: :math:`(N, C, L_{out})` or :math:`(C, L_{out})`, :math:`L_{out} = (L_{in} - 1)s - 2p + k`
          unless ``output_size`` says otherwise.
    """

    _nd, _function_name = 1, "max_unpool1d"


class MaxUnpool2d(_MaxUnpoolNd):
    """2-d max unpooling.

    Shape:
        - Input: :math:`(N, C, H_{in}, W_{in})` or :math:`(C, H_{in}, W_{in})`, indices of the same shape.
        - Output: :math:`(N, C, H_{out}, W_{out})` or without N, per dim :math:`(L_{in} - 1)s - 2p + k`
          unless ``output_size`` says otherwise.
    """

    _nd, _function_name = 2, "max_unpool2d"


class MaxUnpool3d(_MaxUnpoolNd):
    """3-d max unpooling.

    Shape:
        - Input: :math:`(N, C, D_{in}, H_{in}, W_{in})` or without N, indices of the same shape.
        - Output: :math:`(N, C, D_{out}, H_{out}, W_{out})` or without N, per dim :math:`(L_{in} - 1)s - 2p + k`
          unless ``output_size`` says otherwise.
    """

    _nd, _function_name = 3, "max_unpool3d"
