"""The Resize node (nearest, linear and cubic modes), with ONNX's own coordinate rules, and
the older Upsample node it replaced.

ONNX Resize maps output index ``y`` to a source coordinate by one of seven
``coordinate_transformation_mode`` rules and rounds it by one of four ``nearest_mode`` rules;
``F.interpolate`` implements torch's two rules, a subset. Resize is separable, so along each
resized axis the output is ``Σ_t w_t[y] · x[idx_t[y]]`` with one tap (nearest), two
(linear) or four (cubic: Keys' kernel with ``cubic_coeff_a``, the weights of
:func:`convscope.functional.interpolate.cubic_weights`); the taps come from the ONNX rules
below (as in the ONNX reference, indices clamped to the input, ``tf_crop_and_resize``
positions outside the input take ``extrapolation_value``), and the sum is computed with
convscope's indexing and arithmetic, so gradients flow. ``exclude_outside`` gives the cubic
taps outside the input weight 0 and scales the others to sum 1; it changes nothing for one-
and two-tap kernels (the clamped taps already stay inside). Antialiasing is refused.

Resize-10 and Upsample predate the coordinate attributes; the spec leaves their rule open,
and convscope follows onnxruntime: asymmetric coordinates (``x = y / scale``), nearest
rounding down when enlarging and up when shrinking.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..functional.interpolate import cubic_weights
from ..nn.module import Module
from ..tensor import Tensor
from .onnx_node import NodeSpec, OnnxError, OnnxOp, known

__all__ = ["OPS", "Resize", "resize_taps", "source_coordinates"]

COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def source_coordinates(mode: str, n_in: int, n_out: int, scale: float, roi: tuple[float, float]) -> np.ndarray:
    """The source coordinate of every output index along one axis (ONNX's rules; the
    "output width" they use is ``scale · n_in``, not rounded)."""
    y = np.arange(n_out, dtype=np.float64)
    width = scale * n_in
    if mode == "align_corners":
        return np.zeros(n_out) if width == 1 else y * (n_in - 1) / (width - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_crop_and_resize":
        start, end = roi
        if width == 1:
            return np.full(n_out, (end - start) * (n_in - 1) / 2) + start * (n_in - 1)
        return y * (end - start) * (n_in - 1) / (width - 1) + start * (n_in - 1)
    if mode == "pytorch_half_pixel":
        return np.full(n_out, -0.5) if width == 1 else (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / width)
        return offset + (y + 0.5) / scale - 0.5
    return (y + 0.5) / scale - 0.5


def resize_taps(mode: str, coordinate: str, nearest: str, n_in: int, n_out: int, scale: float,
                roi: tuple[float, float], cubic_a: float = -0.75, exclude_outside: bool = False
                ) -> tuple[list[tuple[np.ndarray, np.ndarray | None]], np.ndarray | None]:
    """Per output index along one axis: the taps ``(source indices, weights or None)`` and, for
    ``tf_crop_and_resize``, the mask of positions outside the input (else None).

    >>> taps, _ = resize_taps("nearest", "asymmetric", "floor", 2, 4, 2.0, (0.0, 1.0))
    >>> taps[0][0].tolist()
    [0, 0, 1, 1]
    """
    x = source_coordinates(coordinate, n_in, n_out, scale, roi)
    outside = ((x < 0) | (x > n_in - 1)) if coordinate == "tf_crop_and_resize" else None
    low = np.floor(x)
    frac = x - low
    low = low.astype(np.int64)
    clamp = lambda i: np.clip(i, 0, n_in - 1)
    if mode == "nearest":
        if nearest == "legacy":  # Resize-10 / Upsample, as onnxruntime runs them: ceil when shrinking
            nearest = "ceil" if scale < 1 else "floor"
        up = {"round_prefer_floor": frac > 0.5, "round_prefer_ceil": frac >= 0.5, "floor": np.zeros_like(frac, bool),
              "ceil": frac > 0}[nearest]
        return [(clamp(low + up), None)], outside
    if mode == "cubic":
        cells = [low + k - 1 for k in range(4)]
        weights = cubic_weights(frac, cubic_a)
        if exclude_outside:
            weights = [w * ((i >= 0) & (i < n_in)) for w, i in zip(weights, cells)]
            total = sum(weights)
            weights = [w / total for w in weights]
        return [(clamp(i), w) for i, w in zip(cells, weights)], outside
    return [(clamp(low), 1 - frac), (clamp(low + 1), frac)], outside


class Resize(OnnxOp):
    """Resize along every axis (or the listed ``axes``) to ``sizes`` or by ``scales``.

    Shape:
        - Input: any rank
        - Output: ``sizes``, or ``floor(scale · size)`` per axis.
    """

    def __init__(self, node: NodeSpec, mode: str, coordinate: str, nearest: str, extrapolation: float,
                 policy: str, axes: list[int] | None, legacy_scales: list[float] | None = None, *,
                 cubic_a: float = -0.75, exclude_outside: bool = False) -> None:
        super().__init__(node)
        self.mode, self.coordinate, self.nearest = mode, coordinate, nearest
        self.cubic_a, self.exclude_outside = cubic_a, exclude_outside
        self.extrapolation, self.policy, self.axes = extrapolation, policy, axes
        self.legacy = node.op_type == "Upsample" or node.version < 11
        self.legacy_scales = legacy_scales

    def compute(self, x: Tensor, roi: Tensor | None = None, scales: Tensor | None = None,
                sizes: Tensor | None = None) -> Tensor:
        if self.legacy:  # Resize-10 and Upsample-9 take (X, scales); Upsample-7 has a scales attribute
            roi, scales = None, roi
            if self.legacy_scales is not None:
                scales = Tensor.wrap(np.asarray(self.legacy_scales, np.float32))
        axes = list(range(x.ndim)) if self.axes is None else [a % x.ndim for a in self.axes]
        out_sizes, factors = self._targets(x.shape, axes, scales, sizes)
        bounds = self._roi(roi, len(axes))
        if self.mode != "nearest" and x.dtype.kind != "f":
            raise OnnxError(f"{self.label}: {self.mode} mode needs a floating-point input, got {x.dtype}")
        for k, axis in enumerate(axes):
            n_in, n_out, scale = x.shape[axis], out_sizes[k], factors[k]
            if math.isclose(scale, 1.0) and n_out == n_in and bounds[k] == (0.0, 1.0):
                continue
            x = self._resample(x, axis, resize_taps(self.mode, self.coordinate, self.nearest, n_in, n_out, scale,
                                                    bounds[k], self.cubic_a, self.exclude_outside))
        return x

    def _targets(self, shape: tuple, axes: list[int], scales: Tensor | None,
                 sizes: Tensor | None) -> tuple[list[int], list[float]]:
        wanted = None if sizes is None else known(sizes, "sizes", self).reshape(-1)
        if wanted is not None and wanted.size:
            if wanted.size != len(axes):
                raise OnnxError(f"{self.label}: sizes has {wanted.size} entries for {len(axes)} axes")
            factors = [float(s) / shape[a] for s, a in zip(wanted, axes)]
            if self.policy == "stretch":
                return [int(s) for s in wanted], factors
            scale = min(factors) if self.policy == "not_larger" else max(factors)
            return [int(scale * shape[a] + 0.5) for a in axes], [scale] * len(axes)
        given = None if scales is None else known(scales, "scales", self).reshape(-1)
        if given is None or given.size != len(axes):
            raise OnnxError(f"{self.label}: expected {len(axes)} scales or sizes, got "
                            f"{'none' if given is None else given.size}")
        factors = [float(s) for s in given]
        if min(factors) <= 0:
            raise OnnxError(f"{self.label}: scales must be positive, got {factors}")
        return [int(f * shape[a]) for f, a in zip(factors, axes)], factors

    def _roi(self, roi: Tensor | None, count: int) -> list[tuple[float, float]]:
        values = None if roi is None else known(roi, "roi", self).reshape(-1)
        if self.coordinate != "tf_crop_and_resize" or values is None or not values.size:
            return [(0.0, 1.0)] * count
        if values.size != 2 * count:
            raise OnnxError(f"{self.label}: roi must hold {2 * count} values, got {values.size}")
        return [(float(values[k]), float(values[count + k])) for k in range(count)]

    def _resample(self, x: Tensor, axis: int, plan: tuple[list[tuple[np.ndarray, Any]], Any]) -> Tensor:
        taps, outside = plan
        view = [1] * x.ndim
        view[axis] = -1
        lead = (slice(None),) * axis
        out = None
        for index, weight in taps:
            part = x[lead + (index,)]
            if weight is not None:
                part = part * Tensor.wrap(weight.astype(x.dtype).reshape(view))
            out = part if out is None else out + part
        if outside is not None and outside.any():
            keep = Tensor.wrap((~outside).astype(x.dtype).reshape(view))
            fill = Tensor.wrap((outside * self.extrapolation).astype(x.dtype).reshape(view))
            out = out * keep + fill
        return out


def _resize(node: NodeSpec) -> Module:
    mode = node.choice("mode", "nearest", ("nearest", "linear", "cubic"))
    if node.version < 11:  # Resize-10 keeps Upsample's rules (see LEGACY)
        return Resize(node, mode, "asymmetric", "legacy", 0.0, "stretch", None)
    coordinate = node.choice("coordinate_transformation_mode", "half_pixel",
                             COORDINATE_MODES if node.version >= 19 else COORDINATE_MODES[:1] + COORDINATE_MODES[2:])
    nearest = node.choice("nearest_mode", "round_prefer_floor", NEAREST_MODES)
    cubic_a = float(node.attr("cubic_coeff_a", -0.75))
    exclude_outside = bool(node.attr("exclude_outside", 0))
    extrapolation = float(node.attr("extrapolation_value", 0.0))
    policy, axes = "stretch", None
    if node.version >= 18:
        if node.attr("antialias", 0):
            raise node.unsupported("antialias=1")
        policy = node.choice("keep_aspect_ratio_policy", "stretch", ("stretch", "not_larger", "not_smaller"))
        axes = node.ints("axes")
    return Resize(node, mode, coordinate, nearest, extrapolation, policy, axes, cubic_a=cubic_a,
                  exclude_outside=exclude_outside)


def _upsample(node: NodeSpec) -> Module:
    """Upsample (opsets 7 to 9; deprecated by Resize-10, which kept its rules)."""
    mode = node.choice("mode", "nearest", ("nearest", "linear"))
    scales = [float(s) for s in node.attr("scales")] if node.version < 9 else None
    return Resize(node, mode, "asymmetric", "legacy", 0.0, "stretch", None, scales)


OPS: dict[str, Any] = {"Resize": _resize, "Upsample": _upsample}
