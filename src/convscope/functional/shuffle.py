"""Rearranging channels and space, with ``torch.nn.functional`` names: ``pixel_shuffle``
(ESPCN's sub-pixel upsampling), ``pixel_unshuffle`` and ``channel_shuffle`` (ShuffleNet).

Each is a composition of unflatten, permute and flatten, so its backward, meta shapes,
symbolic sizes (``H·r``), costs (none) and exports are those ops' own.
"""
# ruff: noqa: A002 - parameters keep torch's name ``input`` so keyword calls port unchanged

from __future__ import annotations

from ..errors import ShapeError
from ..ops import flatten, permute, unflatten
from ..tensor import Tensor

__all__ = ["channel_shuffle", "pixel_shuffle", "pixel_unshuffle"]


def _check(op: str, input: Tensor, factor: int, what: str) -> None:
    if input.ndim < 3:
        raise ShapeError(f"expected an input (*, C, H, W) of 3 or more dims, got shape {input.shape}", layer=op)
    if not isinstance(factor, int) or factor < 1:
        raise ShapeError(f"{what} must be a positive integer, got {factor!r}", layer=op)


def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    """Move channels into space: each group of r² channels becomes an r×r block of pixels.

    Shape:
        - Input: ``(*, C·r², H, W)``
        - Output: ``(*, C, H·r, W·r)``
    """
    r = upscale_factor
    _check("pixel_shuffle", input, r, "upscale_factor")
    c = input.shape[-3]
    if c % (r * r):
        raise ShapeError(f"{c} channels do not divide into groups of upscale_factor² = {r * r}",
                         layer="pixel_shuffle")
    lead = input.ndim - 3
    x = unflatten(input, lead, (c // (r * r), r, r))                  # (*, C, r, r, H, W)
    x = permute(x, *range(lead), lead, lead + 3, lead + 1, lead + 4, lead + 2)  # (*, C, H, r, W, r)
    return flatten(flatten(x, lead + 3, lead + 4), lead + 1, lead + 2)


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
    """Move space into channels: each r×r block of pixels becomes r² channels.

    Shape:
        - Input: ``(*, C, H·r, W·r)``
        - Output: ``(*, C·r², H, W)``
    """
    r = downscale_factor
    _check("pixel_unshuffle", input, r, "downscale_factor")
    h, w = input.shape[-2:]
    if h % r or w % r:
        raise ShapeError(f"height {h} and width {w} must be multiples of downscale_factor {r}", layer="pixel_unshuffle")
    lead = input.ndim - 3
    x = unflatten(unflatten(input, lead + 2, (-1, r)), lead + 1, (-1, r))  # (*, C, H, r, W, r)
    x = permute(x, *range(lead), lead, lead + 2, lead + 4, lead + 1, lead + 3)  # (*, C, r, r, H, W)
    return flatten(x, lead, lead + 2)


def channel_shuffle(input: Tensor, groups: int) -> Tensor:
    """Interleave the channels of ``groups`` equal groups: channel ``j`` of group ``i`` moves to
    position ``j·groups + i`` (ShuffleNet's shuffle).

    Shape:
        - Input: ``(N, C, *)`` with C divisible by ``groups``
        - Output: ``(N, C, *)``
    """
    if input.ndim < 3:
        raise ShapeError(f"expected an input (N, C, *) of 3 or more dims, got shape {input.shape}",
                         layer="channel_shuffle")
    if not isinstance(groups, int) or groups < 1 or input.shape[1] % groups:
        raise ShapeError(f"{input.shape[1]} channels do not divide into {groups!r} groups", layer="channel_shuffle")
    x = unflatten(input, 1, (groups, -1))  # (N, g, C/g, *)
    return flatten(permute(x, 0, 2, 1, *range(3, x.ndim)), 1, 2)
