"""The input gradient of a strided convolution as stride-1 convolutions, one per stride phase.

A convolution with stride ``s`` reads input cell ``p`` through the taps ``k`` with
``o·s + k·d = p``; its input gradient (and a transposed convolution, which is that gradient)
adds ``g[o]·w[k]`` onto ``p``. Cells ``p`` of one residue ``r = p mod s`` (a *phase*) are
reached only by the taps with ``k·d ≡ r (mod s)``, and along a phase those taps read the
output gradient at a fixed offset each: the phase is a stride-1 correlation of ``g`` with
that subset of the kernel, reversed, channels in and out swapped. So the gradient becomes
``s^nd`` ordinary convolutions whose multiply-adds sum inside one matmul each, instead of a
matmul into columns followed by a col2im that adds every tap onto a strided view.

This module does the index arithmetic only; :mod:`.conv` runs the convolutions with its own
kernels. :func:`phase_taps` says which phase each tap of a kernel reads (the planar path's
forward over an input split into its stride phases); :func:`phases` turns it around for the
input gradient: which taps reach each phase of a region. Per spatial dim, with ``m_k = (k·d − r)/s`` for the taps of
phase ``r``, the phase cell ``q`` (``p = r + s·q``) is ``Σ_k g[q − m_k]·w[k]``: consecutive
taps are ``s/gcd(d, s)`` apart in ``k`` and ``d/gcd(d, s)`` apart in ``m``, the phase
convolution's dilation. A phase no tap reaches is zero.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Phase", "PhaseTaps", "phase_taps", "phases"]


class PhaseTaps(NamedTuple):
    """The taps ``range(k)[taps]`` of one spatial dim that read stride phase ``phase`` (the
    padded cells ``phase + s·q``): window ``q`` reads its cells ``q + shift``, ``q + shift +
    jump``, … up to ``q + last``."""

    taps: slice
    phase: int
    shift: int
    jump: int
    last: int


def phase_taps(k: int, s: int, d: int) -> list[PhaseTaps]:
    """A dim's ``k`` taps (dilation ``d``) by the phase of stride ``s`` they read, for each phase
    some tap reads: tap ``t`` reads phase ``t·d mod s`` at shift ``⌊t·d/s⌋``, so taps
    ``s/gcd(s, d)`` apart share a phase and their shifts are ``d/gcd(s, d)`` apart."""
    period, jump = s // math.gcd(s, d), d // math.gcd(s, d)
    lasts = [r + (k - 1 - r) // period * period for r in range(min(period, k))]  # each phase's last tap
    return [PhaseTaps(slice(r, None, period), r * d % s, r * d // s, jump, t * d // s) for r, t in enumerate(lasts)]


@dataclass(frozen=True)
class _Axis:
    """One spatial dim of one phase: the output cells ``cells`` (a strided slice of the
    region), the taps ``taps`` of the original kernel in the phase kernel's order (reversed
    ``k``), the phase kernel's ``dilation``, and where its input starts in the output
    gradient (``start``, negative: zeros before) and how long it is (``length``)."""

    cells: slice
    taps: tuple[int, ...]
    dilation: int
    start: int
    length: int


@dataclass(frozen=True)
class Phase:
    """A stride-1 convolution computing the cells ``cells`` (a strided slice of the region)
    of the input gradient: it reads the output gradient over ``[start, start + length)`` per
    dim (zero outside ``g``) with the kernel taps ``taps`` of the original weight (one tuple per
    dim, in the phase kernel's order) at dilation ``dilation``; ``size`` cells per dim."""

    cells: tuple[slice, ...]
    taps: tuple[tuple[int, ...], ...]
    dilation: tuple[int, ...]
    start: tuple[int, ...]
    length: tuple[int, ...]

    @property
    def size(self) -> tuple[int, ...]:
        return tuple(len(range(c.start, c.stop, c.step)) for c in self.cells)

    @property
    def kernel(self) -> tuple[int, ...]:
        return tuple(len(t) for t in self.taps)

    @property
    def empty(self) -> bool:
        """No tap reaches these cells: they are zero."""
        return not all(self.taps)


def _axes(kernel: int, stride: int, dilation: int, lo: int, hi: int) -> list[_Axis]:
    """The phases of one dim, for the region ``[lo, hi)`` of the padded input's cells: the
    taps ``k`` that read a phase (:func:`phase_taps`) bring it the output gradient's cells
    ``q − ⌊k·d/s⌋``, so a phase conv's input starts ``⌊k·d/s⌋`` of the phase's last tap before
    the phase's first cell."""
    reading = {a.phase: a for a in phase_taps(kernel, stride, dilation)}
    axes = []
    for rho in range(min(stride, hi - lo)):
        cells = slice(rho, hi - lo, stride)
        residue = (lo + rho) % stride
        at = reading.get(residue)
        if at is None:
            axes.append(_Axis(cells, (), 1, 0, 0))
            continue
        taps = range(kernel)[at.taps]
        first = (lo + rho - residue) // stride  # p = residue + stride·(first + q)
        count = len(range(rho, hi - lo, stride))
        axes.append(_Axis(cells, tuple(reversed(taps)), at.jump, first - at.last,
                          count + (len(taps) - 1) * at.jump))
    return axes


def phases(kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
           region: Sequence[tuple[int, int]]) -> list[Phase]:
    """The phase convolutions whose outputs tile the region ``[lo, hi)`` per dim of a
    strided convolution's padded-input gradient.

    Every cell of the region is in exactly one phase's ``cells``; phases are listed in
    row-major order of their first cell."""
    per_dim = [_axes(k, s, d, lo, hi) for k, s, d, (lo, hi) in zip(kernel, stride, dilation, region, strict=True)]
    return [Phase(tuple(a.cells for a in combo), tuple(a.taps for a in combo), tuple(a.dilation for a in combo),
                  tuple(a.start for a in combo), tuple(a.length for a in combo))
            for combo in itertools.product(*per_dim)]
