"""Padding layers over :func:`convscope.functional.pad`: constant (and zero), reflection,
replication and circular, for 1 to 3 spatial dims, with torch's names, arguments and reprs."""

from __future__ import annotations

from collections.abc import Sequence

from .. import functional as F
from ..tensor import Tensor
from .module import Module

__all__ = [
    "CircularPad1d", "CircularPad2d", "CircularPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
    "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d",
    "ReplicationPad3d", "ZeroPad1d", "ZeroPad2d", "ZeroPad3d",
]


class _Pad(Module):
    """Pad the last ``_dims`` dims by ``padding``: an int for every side, or torch's
    ``(before_last, after_last, before_second_last, …)``, kept as given.

    Shape:
        - Input: :math:`(N, C, *S)` or :math:`(C, *S)` (any rank for constant padding).
        - Output: each padded dim grown by its two pads (negative pads crop).
    """

    _dims: int
    _mode: str

    def __init__(self, padding: int | Sequence[int]) -> None:
        super().__init__()
        self.padding = (padding,) * (2 * self._dims) if isinstance(padding, int) else tuple(padding)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.pad(input, self.padding, self._mode)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class _ConstantPad(_Pad):
    """:class:`_Pad` with ``value`` in the new cells."""

    _mode = "constant"

    def __init__(self, padding: int | Sequence[int], value: float) -> None:
        super().__init__(padding)
        self.value = value

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.pad(input, self.padding, "constant", self.value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class _ZeroPad(_ConstantPad):
    """Zeros in the new cells: ``ZeroPadNd`` is a ``ConstantPadNd`` with ``value`` 0, as in torch."""

    def __init__(self, padding: int | Sequence[int]) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"



class _ReflectionPad(_Pad):
    """The new cells mirror the input, the edge not repeated (each pad smaller than its dim)."""

    _mode = "reflect"


class _ReplicationPad(_Pad):
    """The new cells copy the edge."""

    _mode = "replicate"


class _CircularPad(_Pad):
    """The new cells wrap around: those of the other end."""

    _mode = "circular"


class ConstantPad1d(_ConstantPad):
    """Pad the last dim with ``value``.

    Shape:
        - Input: :math:`(N, C, W)` or :math:`(C, W)` (constant: any rank ≥ 1).
        - Output: each padded dim grown by its two pads (negative pads crop).
    """

    _dims = 1


class ConstantPad2d(_ConstantPad):
    """Pad the last 2 dims with ``value``.

    Shape:
        - Input: :math:`(N, C, H, W)` or :math:`(C, H, W)` (constant: any rank ≥ 2).
        - Output: each padded dim grown by its two pads (negative pads crop).
    """

    _dims = 2


class ConstantPad3d(_ConstantPad):
    """Pad the last 3 dims with ``value``.

    Shape:
        - Input: :math:`(N, C, D, H, W)` or :math:`(C, D, H, W)` (constant: any rank ≥ 3).
        - Output: each padded dim grown by its two pads (negative pads crop).
    """

    _dims = 3


class ZeroPad1d(_ZeroPad, ConstantPad1d):
    """Pad the last dim with zeros.

    Shape:
        - Input: :math:`(N, C, W)` or :math:`(C, W)` (constant: any rank ≥ 1).
        - Output: each padded dim grown by its two pads (negative pads crop).
    """


class ZeroPad2d(_ZeroPad, ConstantPad2d):
    """Pad the last 2 dims with zeros.

    Shape:
        - Input: :math:`(N, C, H, W)` or :math:`(C, H, W)` (constant: any rank ≥ 2).
        - Output: each padded dim grown by its two pads (negative pads crop).
    """


class ZeroPad3d(_ZeroPad, ConstantPad3d):
    """Pad the last 3 dims with zeros.

    Shape:
        - Input: :math:`(N, C, D, H, W)` or :math:`(C, D, H, W)` (constant: any rank ≥ 3).
        - Output: each padded dim grown by its two pads (negative pads crop).
    """


class ReflectionPad1d(_ReflectionPad):
    """Pad the last dim with mirrored cells, without repeating the edge (each pad smaller than its dim).

    Shape:
        - Input: :math:`(N, C, W)` or :math:`(C, W)`.
        - Output: each padded dim grown by its two pads (negative pads crop).
    """

    _dims = 1


class ReflectionPad2d(_ReflectionPad):
    """Pad the last 2 dims with mirrored cells, without repeating the edge (each pad smaller than its dim).

    Shape:
        - Input: :math:`(N, C, H, W)` or :math:`(C, H, W)`.
        - Output: each padded dim grown by its two pads (negative pads crop).
    """

    _dims = 2


class ReflectionPad3d(_ReflectionPad):
    """Pad the last 3 dims with mirrored cells, without repeating the edge (each pad smaller than its dim).

    Shape:
        - Input: :math:`(N, C, D, H, W)` or :math:`(C, D, H, W)`.
        - Output: each padded dim grown by its two pads (negative pads crop).
    """

    _dims = 3


class ReplicationPad1d(_ReplicationPad):
    """Pad the last dim with copies of the edge.

    Shape:
        - Input: :math:`(N, C, W)` or :math:`(C, W)`.
        - Output: each padded dim grown by its two pads (negative pads crop).
    """

    _dims = 1


class ReplicationPad2d(_ReplicationPad):
    """Pad the last 2 dims with copies of the edge.

    Shape:
        - Input: :math:`(N, C, H, W)` or :math:`(C, H, W)`.
        - Output: each padded dim grown by its two pads (negative pads crop).
    """

    _dims = 2


class ReplicationPad3d(_ReplicationPad):
    """Pad the last 3 dims with copies of the edge.

    Shape:
        - Input: :math:`(N, C, D, H, W)` or :math:`(C, D, H, W)`.
        - Output: each padded dim grown by its two pads (negative pads crop).
    """

    _dims = 3


class CircularPad1d(_CircularPad):
    """Pad the last dim with the cells of the other end (wrapped around).

    Shape:
        - Input: :math:`(N, C, W)` or :math:`(C, W)`.
        - Output: each padded dim grown by its two pads (negative pads crop).
    """

    _dims = 1


class CircularPad2d(_CircularPad):
    """Pad the last 2 dims with the cells of the other end (wrapped around).

    Shape:
        - Input: :math:`(N, C, H, W)` or :math:`(C, H, W)`.
        - Output: each padded dim grown by its two pads (negative pads crop).
    """

    _dims = 2


class CircularPad3d(_CircularPad):
    """Pad the last 3 dims with the cells of the other end (wrapped around).

    Shape:
        - Input: :math:`(N, C, D, H, W)` or :math:`(C, D, H, W)`.
        - Output: each padded dim grown by its two pads (negative pads crop).
    """

    _dims = 3
