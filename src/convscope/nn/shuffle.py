"""Layers that rearrange channels and space: ``PixelShuffle``, ``PixelUnshuffle`` and
``ChannelShuffle``, over :mod:`convscope.functional.shuffle`."""

from __future__ import annotations

from .. import functional as F
from ..tensor import Tensor
from .module import Module

__all__ = ["ChannelShuffle", "PixelShuffle", "PixelUnshuffle"]


class PixelShuffle(Module):
    """Each group of r² channels becomes an r×r block of pixels (sub-pixel upsampling, ESPCN).

    Shape:
        - Input: :math:`(*, C·r^2, H, W)`.
        - Output: :math:`(*, C, H·r, W·r)`.
    """

    def __init__(self, upscale_factor: int) -> None:
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.pixel_shuffle(input, self.upscale_factor)

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(Module):
    """Each r×r block of pixels becomes r² channels (the inverse of :class:`PixelShuffle`).

    Shape:
        - Input: :math:`(*, C, H·r, W·r)`.
        - Output: :math:`(*, C·r^2, H, W)`.
    """

    def __init__(self, downscale_factor: int) -> None:
        super().__init__()
        self.downscale_factor = downscale_factor

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.pixel_unshuffle(input, self.downscale_factor)

    def extra_repr(self) -> str:
        return f"downscale_factor={self.downscale_factor}"


class ChannelShuffle(Module):
    """Interleave the channels of ``groups`` equal groups (ShuffleNet).

    Shape:
        - Input: :math:`(N, C, *)`.
        - Output: :math:`(N, C, *)`.
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.channel_shuffle(input, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
