"""``explain conventions``: the three meanings people give to "a second conv layer with k2
5×5 filters after k1 3×3 filters", computed side by side — and each one a real, trainable layer.

1.  each 2-D filter applied separately to every input map → k1·k2 maps,
    k1·3·3 + k2·5·5 weights (:class:`SeparatePerMapConv2d`);
2.1 one 2-D filter per output map, shared across all input maps and summed → k2 maps, the
    same weights; equal to convolving the sum of the input maps (:class:`SharedAcrossMapsConv2d`);
2.2 the real thing: a full 3-D kernel ``(k1, 5, 5)`` per output map → k2 maps,
    k1·3·3 + k2·k1·5·5 weights (+ biases) — ``nn.Conv2d`` (shown equal to a ``conv3d`` whose
    kernel depth is k1, i.e. literally a 3-D kernel).

The two convention layers are built on ``F.conv2d``: convention 1 is a depthwise conv with
channel multiplier k2 (``groups = C_in``) whose kernel is the filter bank repeated for every
map; 2.1 is a conv whose kernel is broadcast along the input channels. Gradients reach the
shared filters through ``expand``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import functional as F
from .. import nn
from ..functional.windows import ntuple
from ..nn._utils import empty_parameter, require_positive, reset_weight_and_bias
from ..ops import cat
from ..tensor import Tensor
from ._common import (
    changed_maps,
    close,
    data,
    generator,
    max_diff,
    parameter_count,
    seed_stack,
    seeded,
    with_map_shifted,
    within_budget,
)
from .explanation import Claims, Facts, Option, Topic, count, diff, dims, mark

__all__ = ["SeparatePerMapConv2d", "SharedAcrossMapsConv2d"]

_Size = int | Sequence[int]
_PAIRS = 256  # (input map, filter) pairs of convention 1 recomputed one by one


class _FilterBankConv2d(nn.Module):
    """``filters`` 2-D kernels ``(filters, 1, kH, kW)`` (+ ``(filters,)`` biases) that are applied
    to the input maps in a way the subclass defines; torch's default initialisation."""

    def __init__(self, in_maps: int, filters: int, kernel_size: _Size, stride: _Size = 1, padding: _Size = 0,
                 bias: bool = True, *, dtype: Any = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.kernel_size = ntuple(kernel_size, 2, "kernel_size", name)
        self.stride = ntuple(stride, 2, "stride", name)
        self.padding = ntuple(padding, 2, "padding", name)
        require_positive(self, in_maps=in_maps, filters=filters, kernel_size=self.kernel_size, stride=self.stride)
        self.in_maps, self.filters = in_maps, filters
        self.weight = empty_parameter((filters, 1, *self.kernel_size), dtype)
        self.bias = empty_parameter((filters,), dtype) if bias else None
        reset_weight_and_bias(self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"{self.in_maps}, {self.filters}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}" + ("" if self.bias is not None else ", bias=False"))


class SeparatePerMapConv2d(_FilterBankConv2d):
    """Convention 1: every one of ``filters`` 2-D kernels applied to every input map on its own.

    Output map ``i·filters + f`` is filter ``f`` convolved with input map ``i`` (plus bias ``f``).
    Runs as ``F.conv2d(x, bank repeated in_maps times, groups=in_maps)``: a depthwise conv
    with channel multiplier ``filters``.

    Shape:
        - Input: ``(N, in_maps, H, W)``
        - Output: ``(N, in_maps·filters, H_out, W_out)``, per dim ``floor((L + 2p − k)/s) + 1``.
        - Weight ``(filters, 1, kH, kW)``: ``filters·kH·kW`` weights, whatever ``in_maps``.
    """

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002 - torch's name
        c, f = self.in_maps, self.filters
        weight = self.weight.unsqueeze(0).expand(c, f, 1, *self.kernel_size).reshape(c * f, 1, *self.kernel_size)
        bias = None if self.bias is None else self.bias.unsqueeze(0).expand(c, f).reshape(c * f)
        return F.conv2d(input, weight, bias, self.stride, self.padding, groups=c)


class SharedAcrossMapsConv2d(_FilterBankConv2d):
    """Convention 2.1: one 2-D kernel per output map, applied to all input maps and summed.

    Equals convolving the sum of the input maps with each filter. Runs as ``F.conv2d`` with
    the kernel broadcast along the input channels.

    Shape:
        - Input: ``(N, in_maps, H, W)``
        - Output: ``(N, filters, H_out, W_out)``, per dim ``floor((L + 2p − k)/s) + 1``.
        - Weight ``(filters, 1, kH, kW)``: ``filters·kH·kW`` weights, whatever ``in_maps``.
    """

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002 - torch's name
        weight = self.weight.expand(self.filters, self.in_maps, *self.kernel_size)
        return F.conv2d(input, weight, self.bias, self.stride, self.padding)


def _trainable(layer: nn.Module, x: Tensor) -> dict:
    """Backward through ``layer`` from ``sum(y²)``: every parameter gets a gradient of its shape."""
    layer.zero_grad()
    (layer(x) ** 2).sum().backward()
    params = dict(layer.named_parameters())
    return {"parameters": {name: p.shape for name, p in params.items()},
            "all_have_gradients": all(p.grad is not None and p.grad.shape == p.shape and bool(p.grad.any())
                                      for p in params.values())}


def _convention_1(h: Tensor, k1: int, k2: int, layer: SeparatePerMapConv2d) -> dict:
    y = layer(h)
    bank = layer.weight
    # map i·k2 + f, recomputed as one plain conv of map i with filter f (for at most _PAIRS pairs)
    pairs = np.unique(np.linspace(0, k1 * k2 - 1, min(k1 * k2, _PAIRS)).round().astype(int))
    one_by_one = cat([F.conv2d(h[:, p // k2:p // k2 + 1], bank[p % k2:p % k2 + 1], layer.bias[p % k2:p % k2 + 1])
                      for p in pairs], dim=1)
    return {"output_shape": y.shape[1:], "maps": y.shape[1], "weights": bank.numel(),
            "params": parameter_count(layer), "pairs_checked": len(pairs),
            "every_filter_on_every_map_max_diff": max_diff(y[:, pairs], one_by_one),
            "every_filter_on_every_map": close(y[:, pairs], one_by_one), **_trainable(layer, h)}


def _convention_21(h: Tensor, layer: SharedAcrossMapsConv2d) -> dict:
    y = layer(h)
    of_sum = F.conv2d(h.sum(dim=1, keepdim=True), layer.weight, layer.bias)
    return {"output_shape": y.shape[1:], "maps": y.shape[1], "weights": layer.weight.numel(),
            "params": parameter_count(layer), "equals_conv_of_map_sum_max_diff": max_diff(y, of_sum),
            "equals_conv_of_map_sum": close(y, of_sum), **_trainable(layer, h)}


def _convention_22(h: Tensor, k1: int, layer: nn.Conv2d) -> dict:
    y = layer(h)
    n, _, height, width = h.shape
    # the same weights as k2 single-channel 3-D kernels of depth k1 sliding over the k1-map volume
    volume = F.conv3d(h.reshape(n, 1, k1, height, width), layer.weight.unsqueeze(1), layer.bias)
    as_3d = volume.reshape(n, layer.out_channels, *volume.shape[3:])
    reads = changed_maps(y, layer(with_map_shifted(h, k1 - 1)))
    return {"output_shape": y.shape[1:], "maps": y.shape[1], "weights": layer.weight.numel(),
            "params": parameter_count(layer), "kernel_shape": layer.weight.shape,
            "equals_3d_kernel_max_diff": max_diff(y, as_3d), "equals_3d_kernel": close(y, as_3d),
            "conv3d_output_depth": volume.shape[2], "maps_changed_by_last_input_map": len(reads),
            **_trainable(layer, h)}


def compute(k1: int, k2: int, input: str, seed: int) -> tuple[Facts, Claims]:  # noqa: A002 - the option's name
    k1, k2, shape = seed_stack("conventions", k1, k2, input, "1x12x10")
    within_budget("conventions", f"convention 1's output ({k1}·{k2} maps of {dims(shape[1:])})",
                  k1 * k2 * math.prod(shape[1:]), "use smaller --k1, --k2 or --input")
    rng = generator("conventions", seed)
    first = seeded(nn.Conv2d(shape[0], k1, 3, padding=1), rng)
    x = data(rng, 1, *shape)
    h = first(x).detach()
    layers = (seeded(SeparatePerMapConv2d(k1, k2, 5), rng), seeded(SharedAcrossMapsConv2d(k1, k2, 5), rng),
              seeded(nn.Conv2d(k1, k2, 5), rng))
    first_weights = first.weight.numel()
    conventions = {"1": _convention_1(h, k1, k2, layers[0]), "2.1": _convention_21(h, layers[1]),
                   "2.2": _convention_22(h, k1, layers[2])}
    for c in conventions.values():
        c["biases"] = c["params"] - c["weights"]
        c["total_params"] = parameter_count(first) + c["params"]
    facts = {"k1": k1, "k2": k2, "input_shape": shape, "first_output_shape": h.shape[1:],
             "first_kernel_shape": first.weight.shape, "first_weights": first_weights,
             "first_params": parameter_count(first), "conventions": conventions,
             "formula_weights": {"1": k1 * shape[0] * 9 + k2 * 25, "2.1": k1 * shape[0] * 9 + k2 * 25,
                                 "2.2": k1 * shape[0] * 9 + k2 * k1 * 25}}
    c1, c21, c22 = conventions["1"], conventions["2.1"], conventions["2.2"]
    formula = facts["formula_weights"]
    claims = {
        "1: k1·k2 output maps": c1["maps"] == k1 * k2,
        "1: weights k1·C·3·3 + k2·5·5": first_weights + c1["weights"] == formula["1"],
        "1: map i·k2 + f is filter f on map i alone": c1["every_filter_on_every_map"],
        "2.1: k2 output maps": c21["maps"] == k2,
        "2.1: the same weights as convention 1": first_weights + c21["weights"] == formula["2.1"],
        "2.1: equals the conv of the sum of the input maps": c21["equals_conv_of_map_sum"],
        "2.2: k2 output maps": c22["maps"] == k2,
        "2.2: weights k1·C·3·3 + k2·k1·5·5": first_weights + c22["weights"] == formula["2.2"],
        "2.2: nn.Conv2d equals a 3-D kernel of depth k1 per output map": c22["equals_3d_kernel"],
        "2.2: every output map reads the last input map": c22["maps_changed_by_last_input_map"] == k2,
        "all three are trainable: every parameter gets a gradient":
            all(c["all_have_gradients"] for c in conventions.values()),
    }
    return facts, claims


_NAMES = {"1": ("each 2D filter applied separately to every input map", "SeparatePerMapConv2d"),
          "2.1": ("one 2D filter shared across all input maps, summed", "SharedAcrossMapsConv2d"),
          "2.2": ("a full 3D kernel per output map (the real thing)", "nn.Conv2d")}


def render(facts: Facts) -> list[str]:
    k1, k2, c = facts["k1"], facts["k2"], facts["input_shape"][0]
    fw = facts["first_weights"]
    conv = facts["conventions"]
    lines = [f"Input {dims(facts['input_shape'])} → conv {k1} 3×3 p1 → {k1} maps of "
             f"{dims(facts['first_output_shape'][1:])} (kernel {tuple(facts['first_kernel_shape'])}, {count(fw)} "
             f"weights + {k1} biases). Then a 5×5 layer with k2 = {k2} filters, three ways:", ""]
    weights = {"1": f"{k1}·{c}·3·3 + {k2}·5·5", "2.1": f"{k1}·{c}·3·3 + {k2}·5·5",
               "2.2": f"{k1}·{c}·3·3 + {k2}·{k1}·5·5"}
    for key, (meaning, layer) in _NAMES.items():
        f = conv[key]
        lines += [f"({key}) {meaning} — {layer}",
                  f"    output: {f['maps']} maps of {dims(f['output_shape'][1:])}",
                  f"    weights: {weights[key]} = {count(facts['formula_weights'][key])}; "
                  f"with biases {count(f['total_params'])} ({k1} + {f['biases']})"]
        if key == "1":
            pairs = (f"all {k1}·{k2} pairs" if f["pairs_checked"] == k1 * k2 else
                     f"{f['pairs_checked']} of the {k1}·{k2} pairs, evenly spaced")
            lines.append(f"    map i·{k2} + f = filter f on map i alone, for {pairs}: max difference "
                         f"{diff(f['every_filter_on_every_map_max_diff'])} {mark(f['every_filter_on_every_map'])}")
        elif key == "2.1":
            lines.append(f"    = conv of the sum of the {k1} maps with each filter: max difference "
                         f"{diff(f['equals_conv_of_map_sum_max_diff'])} {mark(f['equals_conv_of_map_sum'])}")
        else:
            lines += [f"    kernel {tuple(f['kernel_shape'])}: = conv3d of the {k1}-map volume with {k2} kernels "
                      f"1×{k1}×5×5 (output depth {f['conv3d_output_depth']}): max difference "
                      f"{diff(f['equals_3d_kernel_max_diff'])} {mark(f['equals_3d_kernel'])}",
                      f"    shifting input map {k1 - 1} changes {f['maps_changed_by_last_input_map']} of {k2} "
                      f"output maps: each filter spans all {k1} maps"]
        grads = ", ".join(f"{name} {dims(shape)}" for name, shape in f["parameters"].items())
        lines += [f"    trainable: backward reaches {grads} {mark(f['all_have_gradients'])}", ""]
    return lines[:-1]


TOPIC = Topic(
    name="conventions",
    title="Three conventions for a second conv layer, computed side by side",
    summary="k1·k2 maps vs a shared 2D filter vs the real 3D kernel (nn.Conv2d), with parameter counts",
    options=(Option("k1", int, 8, "first-layer filters (3×3, padding 1)"),
             Option("k2", int, 16, "second-layer filters (5×5)"),
             Option("input", str, "1x12x10", "input maps×height×width"),
             Option("seed", int, 0, "seed of the random input and weights")),
    compute=compute,
    render=render,
)
