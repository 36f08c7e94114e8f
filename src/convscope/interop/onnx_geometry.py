"""ONNX's window arithmetic for Conv, ConvTranspose and the pools, as pure functions of sizes.

ONNX describes padding as ``pads = [x1_begin, x2_begin, ..., x1_end, x2_end, ...]`` or by
``auto_pad``; pools add ``ceil_mode``. These rules turn that into, per spatial dim, the
output size and the cells to pad before and after so that an ordinary floor-mode window
slide with no padding (the engine's ops with ``padding=0``) yields exactly that output.
A negative "after" crops cells no window reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .onnx_node import NodeSpec, OnnxError

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


@dataclass(frozen=True)
class Windows:
    """Per spatial dim: output size, padding before, padding after (after may be negative)."""

    out: tuple[int, ...]
    before: tuple[int, ...]
    after: tuple[int, ...]

    def torch_padding(self) -> tuple[int, ...] | None:
        """``before`` when ``before == after`` (a torch-style symmetric padding), else None."""
        return self.before if self.before == self.after else None


@dataclass(frozen=True)
class WindowAttrs:
    """The window attributes of a Conv or pool node. ``kernel`` is None for a Conv that
    leaves it to its weight; ``strides``/``dilations`` None mean 1 in every dim."""

    kernel: tuple[int, ...] | None
    strides: tuple[int, ...] | None
    dilations: tuple[int, ...] | None
    pads: tuple[int, ...] | None
    auto_pad: str
    ceil_mode: bool = False

    def stride(self, nd: int) -> tuple[int, ...]:
        return self.strides or (1,) * nd

    def dilation(self, nd: int) -> tuple[int, ...]:
        return self.dilations or (1,) * nd

    def static_padding(self, nd: int) -> tuple[int, ...] | None:
        """The torch-style padding when it does not depend on the input size: explicit pads
        equal at both ends (torch's floor and ceil rules then match ONNX's), or VALID."""
        if self.auto_pad == "VALID":
            return (0,) * nd
        if self.auto_pad != "NOTSET":
            return None
        begins, ends = split_pads(self.pads, nd)
        return begins if begins == ends else None

    def geometry(self, sizes: Sequence[int], kernel: Sequence[int], label: str) -> Windows:
        nd = len(kernel)
        if len(sizes) != nd:
            raise OnnxError(f"{label}: expected an input with {nd} spatial dims (N, C, ...), got {len(sizes)}")
        try:
            return window_geometry(sizes, kernel, self.stride(nd), self.dilation(nd), self.pads, self.auto_pad,
                                   self.ceil_mode)
        except ValueError as err:
            raise OnnxError(f"{label}: {err}") from None


def read_window_attrs(node: NodeSpec, *, kernel: Sequence[int] | None = None, has_ceil: bool = False,
                      has_dilations: bool = True) -> WindowAttrs:
    """Read and check ``kernel_shape`` (which a Conv may leave to its weight's ``kernel``),
    ``strides``, ``dilations``, ``pads``, ``auto_pad`` (and ``ceil_mode``)."""
    shape = node.ints("kernel_shape")
    if kernel is not None and shape is not None and tuple(shape) != tuple(kernel):
        raise node.error(f"kernel_shape {shape} does not match the weight's kernel {list(kernel)}")
    kernel_t = tuple(shape) if shape is not None else (tuple(kernel) if kernel is not None else None)
    if kernel_t is not None and (not kernel_t or min(kernel_t) < 1):
        raise node.error(f"kernel_shape must hold positive values, got {list(kernel_t)}")
    nd = len(kernel_t) if kernel_t is not None else None

    def per_dim(name: str, available: bool = True) -> tuple[int, ...] | None:
        values = node.ints(name) if available else None
        if values is not None and ((nd is not None and len(values) != nd) or min(values, default=1) < 1):
            raise node.error(f"{name} must hold {nd or 'one'} positive value(s) per spatial dim, got {values}")
        return tuple(values) if values else None

    strides = per_dim("strides")
    dilations = per_dim("dilations", has_dilations)
    pads = node.ints("pads")
    if pads is not None and ((nd is not None and len(pads) != 2 * nd) or len(pads) % 2 or min(pads, default=0) < 0):
        raise node.error(f"pads must hold non-negative begin and end values for each spatial dim, got {pads}")
    auto_pad = node.attr("auto_pad", "NOTSET") or "NOTSET"
    if auto_pad not in AUTO_PADS:
        raise node.error(f"auto_pad must be one of {', '.join(AUTO_PADS)}, got {auto_pad!r}")
    if auto_pad != "NOTSET" and pads and any(pads):
        raise node.error(f"explicit pads {pads} cannot be combined with auto_pad={auto_pad}")
    ceil_mode = bool(node.attr("ceil_mode", 0)) if has_ceil else False
    return WindowAttrs(kernel_t, strides, dilations, tuple(pads) if pads else None, auto_pad, ceil_mode)


def span(kernel: int, dilation: int) -> int:
    return dilation * (kernel - 1) + 1


def split_pads(pads: Sequence[int] | None, nd: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``[b1, b2, ..., e1, e2, ...]`` -> ``(begins, ends)``; None means no padding."""
    if not pads:
        return (0,) * nd, (0,) * nd
    if len(pads) != 2 * nd:
        raise ValueError(f"pads must hold {2 * nd} values (begin and end per spatial dim), got {list(pads)}")
    return tuple(int(p) for p in pads[:nd]), tuple(int(p) for p in pads[nd:])


def window_geometry(sizes: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                    dilations: Sequence[int], pads: Sequence[int] | None, auto_pad: str,
                    ceil_mode: bool = False) -> Windows:
    """Output sizes and effective padding of a Conv or pool over spatial ``sizes``.

    - ``SAME_UPPER``/``SAME_LOWER``: ``out = ceil(L / s)``; the total padding
      ``(out − 1)·s + d·(k − 1) + 1 − L`` is split evenly, the odd cell going at the end
      (UPPER) or at the start (LOWER).
    - ``VALID``: no padding, ``out = floor((L − d·(k − 1) − 1) / s) + 1``.
    - ``NOTSET``: the explicit ``pads``; ``out = floor_or_ceil((L + b + e − d·(k−1) − 1) / s) + 1``
      where ceil mode drops a last window that would start in the end padding (as torch).

    >>> window_geometry([5], [3], [2], [1], None, "SAME_LOWER")
    Windows(out=(3,), before=(1,), after=(1,))
    >>> window_geometry([6], [3], [2], [1], None, "SAME_LOWER")
    Windows(out=(3,), before=(1,), after=(0,))
    """
    nd = len(sizes)
    begins, ends = split_pads(pads, nd)
    outs, before, after = [], [], []
    for i, (n, k, s, d) in enumerate(zip(sizes, kernel, strides, dilations, strict=True)):
        reach = span(k, d)
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out = -(-n // s)
            total = max((out - 1) * s + reach - n, 0)
            small, big = total // 2, total - total // 2
            b = small if auto_pad == "SAME_UPPER" else big
        elif auto_pad == "VALID":
            out, b = (n - reach) // s + 1, 0
        else:
            b = begins[i]
            extent = n + b + ends[i] - reach
            out = (-(-extent // s) if ceil_mode else extent // s) + 1
            if ceil_mode and (out - 1) * s >= n + b:
                out -= 1
        if out < 1:
            raise ValueError(f"kernel {k} (dilation {d}) does not fit spatial dim {i} of size {n} with padding "
                             f"({b}, {ends[i]}): the output would have {out} cells")
        outs.append(out)
        before.append(b)
        after.append((out - 1) * s + reach - n - b)
    return Windows(tuple(outs), tuple(before), tuple(after))


def transpose_geometry(sizes: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                       dilations: Sequence[int], pads: Sequence[int] | None, auto_pad: str,
                       output_padding: Sequence[int], output_shape: Sequence[int] | None) -> Windows:
    """Output sizes of a ConvTranspose and the cells to crop from its full output.

    The full output of a transposed convolution has ``s·(L − 1) + d·(k − 1) + 1`` cells;
    ``output_padding`` appends cells at the end, and ``before``/``after`` are cropped (a
    negative crop appends cells). With ``output_shape`` (or ``SAME_*``, whose output shape is
    ``L·s``) the total crop is ``full + output_padding − output_shape``, split as ONNX
    specifies: half at the start for ``SAME_UPPER``, half at the end otherwise.
    """
    nd = len(sizes)
    begins, ends = split_pads(pads, nd)
    shape = list(output_shape) if output_shape else None
    if shape is not None and len(shape) == nd + 2:
        shape = shape[2:]
    if shape is not None and len(shape) != nd:
        raise ValueError(f"output_shape must hold {nd} spatial sizes, got {list(output_shape or [])}")
    if shape is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        shape = [n * s for n, s in zip(sizes, strides, strict=True)]
    outs, before, after = [], [], []
    for i, (n, k, s, d, extra) in enumerate(zip(sizes, kernel, strides, dilations, output_padding, strict=True)):
        full = s * (n - 1) + span(k, d) + extra
        if shape is not None:
            total = full - shape[i]
            b = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            e = total - b
        elif auto_pad == "VALID":
            b = e = 0
        else:
            b, e = begins[i], ends[i]
        if full - b - e < 1:
            raise ValueError(f"output size {full - b - e} of spatial dim {i} is not positive")
        outs.append(full - b - e)
        before.append(b)
        after.append(e)
    return Windows(tuple(outs), tuple(before), tuple(after))


def torch_pad_list(before: Sequence[int], after: Sequence[int]) -> list[int]:
    """Per-dim before/after (first spatial dim first) as ``F.pad`` takes them (last dim first)."""
    return [p for b, a in zip(reversed(before), reversed(after), strict=True) for p in (b, a)]
