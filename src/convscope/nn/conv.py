"""Convolution layers. :class:`_ConvNd` owns argument normalisation, validation, weight
allocation, torch's default initialisation and ``extra_repr``; the concrete classes only
say their dimensionality and which functional op they call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import functional as F
from ..errors import ShapeError
from ..functional.windows import ntuple
from ..tensor import Tensor
from ._utils import check_size, empty_parameter, require_positive, reset_weight_and_bias
from .module import Module

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
_LAYOUTS = {1: "C×L", 2: "C×H×W", 3: "C×D×H×W"}  # how an unbatched input is read, per spatial rank
_Size = int | Sequence[int]


class _ConvNd(Module):
    """Shared part of every convolution layer.

    Weight ``(C_out, C_in/groups, *k)`` (transposed: ``(C_in, C_out/groups, *k)``), bias
    ``(C_out,)``, both initialised as torch does (U(−1/√fan_in, 1/√fan_in) with fan_in from
    the weight's shape).

    Shape:
        See the concrete classes.
    """

    _nd: int
    _function_name: str
    transposed = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: _Size, stride: _Size, padding: str | _Size,
                 dilation: _Size, groups: int, bias: bool, padding_mode: str, output_padding: _Size,
                 dtype: Any) -> None:
        super().__init__()
        name, nd = type(self).__name__, self._nd
        self.kernel_size = ntuple(kernel_size, nd, "kernel_size", name)
        self.stride = ntuple(stride, nd, "stride", name)
        self.dilation = ntuple(dilation, nd, "dilation", name)
        self.output_padding = ntuple(output_padding, nd, "output_padding", name)
        self.padding = padding if isinstance(padding, str) else ntuple(padding, nd, "padding", name)
        require_positive(self, in_channels=in_channels, out_channels=out_channels, groups=groups,
                         kernel_size=self.kernel_size, stride=self.stride, dilation=self.dilation)
        self._validate(in_channels, out_channels, groups, padding_mode)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.groups = groups
        self.padding_mode = padding_mode
        self._reversed_padding_repeated_twice = self._explicit_padding()
        shape = ((in_channels, out_channels // groups) if self.transposed else (out_channels, in_channels // groups))
        self.weight = empty_parameter(shape + self.kernel_size, dtype)
        if bias:
            self.bias = empty_parameter((out_channels,), dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def _validate(self, in_channels: int, out_channels: int, groups: int, padding_mode: str) -> None:
        def fail(message: str) -> None:
            raise ShapeError(message, layer=type(self).__name__)

        for label, channels in (("in_channels", in_channels), ("out_channels", out_channels)):
            if channels % groups:
                fail(f"{label} ({channels}) must be divisible by groups ({groups})")
        if padding_mode not in _PADDING_MODES:
            fail(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        if isinstance(self.padding, str):
            if self.padding not in ("same", "valid"):
                fail(f"padding must be 'same', 'valid' or ints, got {self.padding!r}")
            if self.padding == "same" and any(s != 1 for s in self.stride):
                fail(f"padding='same' needs stride 1, got stride={self.stride}")
        elif any(p < 0 for p in self.padding):
            fail(f"padding must be non-negative, got {self.padding}")

    def _explicit_padding(self) -> list[int]:
        """Padding as ``F.pad`` takes it (last dim first, (left, right) per dim); ``"same"``
        puts the odd pixel right/bottom."""
        if self.padding == "valid":
            return [0, 0] * self._nd
        if self.padding == "same":
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size, strict=True)]
            return [p for total in reversed(totals) for p in (total // 2, total - total // 2)]
        return [p for p in reversed(self.padding) for _ in range(2)]

    def reset_parameters(self) -> None:
        reset_weight_and_bias(self.weight, self.bias)

    def _check_input(self, input: Tensor) -> None:  # noqa: A002
        if input.ndim in (self._nd + 1, self._nd + 2):
            layout = _LAYOUTS[self._nd] if input.ndim == self._nd + 1 else None
            check_size(self, input.shape[-self._nd - 1], self.in_channels, "in_channels", source=input, layout=layout)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * len(self.padding):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * self._nd:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class _Conv(_ConvNd):
    """A (cross-correlation) convolution layer; non-zero ``padding_mode`` pads with
    ``F.pad`` first and convolves with padding 0, as torch does."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: _Size, stride: _Size = 1,
                 padding: str | _Size = 0, dilation: _Size = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", *, dtype: Any = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, 0, dtype)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        self._check_input(input)
        conv = getattr(F, self._function_name)
        if self.padding_mode != "zeros":
            padded = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return conv(padded, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return conv(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class _ConvTransposeNd(_ConvNd):
    """A transposed convolution layer (the input-gradient of a convolution).

    ``forward(input, output_size)`` may ask for a specific output size; it picks the
    ``output_padding`` that gives it, as torch does.
    """

    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: _Size, stride: _Size = 1,
                 padding: _Size = 0, output_padding: _Size = 0, groups: int = 1, bias: bool = True,
                 dilation: _Size = 1, padding_mode: str = "zeros", *, dtype: Any = None) -> None:
        name = type(self).__name__
        if padding_mode != "zeros":
            raise ShapeError(f'only "zeros" padding_mode is supported, got {padding_mode!r}', layer=name)
        if isinstance(padding, str):
            raise ShapeError(f"padding must be ints, got {padding!r}", layer=name)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, output_padding, dtype)
        for op, s, d in zip(self.output_padding, self.stride, self.dilation, strict=True):
            if op < 0 or not (op < s or op < d):
                raise ShapeError(f"output_padding {self.output_padding} must be non-negative and smaller than "
                                 f"stride {self.stride} or dilation {self.dilation} in every dim", layer=name)

    def _output_padding(self, input: Tensor, output_size: Sequence[int] | None) -> tuple[int, ...]:  # noqa: A002
        """The output padding that makes the output ``output_size`` (torch's rule)."""
        if output_size is None:
            return self.output_padding
        nd = self._nd
        lead = 2 if input.ndim == nd + 2 else 1
        size = tuple(output_size)
        if len(size) == lead + nd:
            size = size[lead:]
        if len(size) != nd:
            raise ShapeError(f"for a {input.ndim}-d input, output_size must have {nd} or {lead + nd} elements, "
                             f"got {len(size)}", layer=type(self).__name__)
        smallest = [(n - 1) * s - 2 * p + d * (k - 1) + 1 for n, s, p, d, k in
                    zip(input.shape[lead:], self.stride, self.padding, self.dilation, self.kernel_size, strict=True)]
        largest = [lo + s - 1 for lo, s in zip(smallest, self.stride, strict=True)]
        if any(not lo <= n <= hi for n, lo, hi in zip(size, smallest, largest, strict=True)):
            raise ShapeError(f"requested an output size of {list(size)}, but valid sizes range from {smallest} to "
                             f"{largest} (for an input of {list(input.shape[lead:])})", layer=type(self).__name__)
        return tuple(n - lo for n, lo in zip(size, smallest, strict=True))

    def forward(self, input: Tensor, output_size: Sequence[int] | None = None) -> Tensor:  # noqa: A002
        self._check_input(input)
        output_padding = self._output_padding(input, output_size)
        return getattr(F, self._function_name)(input, self.weight, self.bias, self.stride, self.padding,
                                               output_padding, self.groups, self.dilation)


class Conv1d(_Conv):
    """1-d convolution over ``(N, C_in, L)``.

    Shape:
        - Input: :math:`(N, C_{in}, L_{in})` or :math:`(C_{in}, L_{in})`.
        - Output: :math:`(N, C_{out}, L_{out})` or :math:`(C_{out}, L_{out})` with
          :math:`L_{out} = \\lfloor (L_{in} + 2p - d(k-1) - 1)/s \\rfloor + 1`.
    """

    _nd = 1
    _function_name = "conv1d"


class Conv2d(_Conv):
    """2-d convolution over ``(N, C_in, H, W)``.

    Shape:
        - Input: :math:`(N, C_{in}, H_{in}, W_{in})` or :math:`(C_{in}, H_{in}, W_{in})`.
        - Output: :math:`(N, C_{out}, H_{out}, W_{out})` or :math:`(C_{out}, H_{out}, W_{out})`, per dim
          :math:`\\lfloor (L_{in} + 2p - d(k-1) - 1)/s \\rfloor + 1`.
    """

    _nd = 2
    _function_name = "conv2d"


class Conv3d(_Conv):
    """3-d convolution over ``(N, C_in, D, H, W)``.

    Shape:
        - Input: :math:`(N, C_{in}, D_{in}, H_{in}, W_{in})` or :math:`(C_{in}, D_{in}, H_{in}, W_{in})`.
        - Output: :math:`(N, C_{out}, D_{out}, H_{out}, W_{out})` or without N, per dim
          :math:`\\lfloor (L_{in} + 2p - d(k-1) - 1)/s \\rfloor + 1`.
    """

    _nd = 3
    _function_name = "conv3d"


class ConvTranspose1d(_ConvTransposeNd):
    """1-d transposed convolution.

    Shape:
        - Input: :math:`(N, C_{in}, L_{in})` or :math:`(C_{in}, L_{in})`.
        - Output: :math:`(N, C_{out}, L_{out})` or :math:`(C_{out}, L_{out})` with
          :math:`L_{out} = (L_{in} - 1)s - 2p + d(k-1) + \\text{output\\_padding} + 1`.
    """

    _nd = 1
    _function_name = "conv_transpose1d"


class ConvTranspose2d(_ConvTransposeNd):
    """2-d transposed convolution.

    Shape:
        - Input: :math:`(N, C_{in}, H_{in}, W_{in})` or :math:`(C_{in}, H_{in}, W_{in})`.
        - Output: :math:`(N, C_{out}, H_{out}, W_{out})` or without N, per dim
          :math:`(L_{in} - 1)s - 2p + d(k-1) + \\text{output\\_padding} + 1`.
    """

    _nd = 2
    _function_name = "conv_transpose2d"


class ConvTranspose3d(_ConvTransposeNd):
    """3-d transposed convolution.

    Shape:
        - Input: :math:`(N, C_{in}, D_{in}, H_{in}, W_{in})` or :math:`(C_{in}, D_{in}, H_{in}, W_{in})`.
        - Output: :math:`(N, C_{out}, D_{out}, H_{out}, W_{out})` or without N, per dim
          :math:`(L_{in} - 1)s - 2p + d(k-1) + \\text{output\\_padding} + 1`.
    """

    _nd = 3
    _function_name = "conv_transpose3d"
