"""``explain conv3d``: a stack of maps seen as one single-channel volume, convolved in 3-D.

For the user's stack (default 1337 maps of 42×314, kernel 3×4×5): the output shape,
parameters and MACs of a ``conv3d`` with one 3-D kernel, counted by :func:`convscope.summary`
on meta tensors (shapes only — no values, so any size is instant). Then values: the engine's ``conv3d`` output is
recomputed position by position from the input windows in a shuffled order, and matches —
each output position depends only on its own window, so the order of computation cannot
matter. Values are computed on a reduced volume with the same kernel when the stack is large,
and on a random subset of positions when there are many; the text says which.

For contrast: a 2-D conv whose kernel spans all the maps, weight ``(C_out, maps, kH, kW)``,
which collapses the depth axis — shown equal to a ``conv3d`` whose kernel depth is the number
of maps.
"""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from .. import nn
from ..errors import ShapeError
from ..functional.windows import sliding_windows
from ..tensor import Tensor
from ._common import close, generator, layer_costs, max_diff, positive, sizes, within_budget
from .explanation import Claims, Facts, Option, Topic, count, diff, dims, mark

_FULL_CELLS = 200_000  # volumes up to this many cells get their values computed at full size
_MARGIN = 7            # a reduced volume keeps kernel + 7 cells per dim: 8 output positions per dim
_SHOWN = 4             # shuffled positions printed


def _shapes(volume: tuple[int, int, int], kernel: tuple[int, int, int], out_channels: int) -> dict:
    """Output shapes, parameters and MACs at full size, counted by the analyzer on meta tensors."""
    with nn.meta_parameters():
        (conv3,) = layer_costs([nn.Conv3d(1, 1, kernel)], (1, *volume))
        (conv2,) = layer_costs([nn.Conv2d(volume[0], out_channels, kernel[1:])], volume)
    conv3["outputs"] = math.prod(conv3["output_shape"])
    return {"conv3d": conv3, "conv2d": conv2}


def _shuffled_check(volume: tuple[int, int, int], kernel: tuple[int, int, int], sample: int,
                    rng: np.random.Generator) -> dict:
    """Engine conv3d vs the same values recomputed one position at a time, in a random order."""
    x = rng.standard_normal((1, 1, *volume))
    w = rng.standard_normal((1, 1, *kernel))
    b = rng.standard_normal(1)
    y = F.conv3d(Tensor.wrap(x), Tensor.wrap(w), Tensor.wrap(b)).numpy()
    windows = sliding_windows(x, kernel, (1, 1, 1), (1, 1, 1))[0, 0]  # (oD, oH, oW, kD, kH, kW), a view
    positions = np.array(list(np.ndindex(*y.shape[2:])))
    chosen = positions if len(positions) <= sample else positions[rng.choice(len(positions), sample, replace=False)]
    order = chosen[rng.permutation(len(chosen))]
    by_window = np.full(y.shape[2:], np.nan)
    for pos in map(tuple, order):
        by_window[pos] = float(np.sum(windows[pos] * w[0, 0])) + float(b[0])
    checked = tuple(order.T)
    return {"value_shape": x.shape, "positions": len(positions), "checked": len(order),
            "order": [tuple(int(v) for v in p) for p in order[:_SHOWN]],
            "max_diff": max_diff(by_window[checked], y[0, 0][checked]),
            "equal": close(by_window[checked], y[0, 0][checked])}


def _depth_collapse(volume: tuple[int, int, int], kernel: tuple[int, int, int], out_channels: int,
                    rng: np.random.Generator) -> dict:
    """A conv2d over all D maps equals a conv3d whose kernel depth is D (output depth 1)."""
    d, h, w = volume
    x = Tensor.wrap(rng.standard_normal((1, d, h, w)))
    weight = Tensor.wrap(rng.standard_normal((out_channels, d, *kernel[1:])))
    as_2d = F.conv2d(x, weight)
    as_3d = F.conv3d(x.unsqueeze(1), weight.unsqueeze(1))
    return {"conv3d_output_shape": as_3d.shape, "max_diff": max_diff(as_3d.reshape(as_2d.shape), as_2d),
            "equal": close(as_3d.reshape(as_2d.shape), as_2d)}


def compute(maps: int, height: int, width: int, kernel: str, out_channels: int, sample: int,
            seed: int) -> tuple[Facts, Claims]:
    volume = tuple(positive("conv3d", name, v) for name, v in (("maps", maps), ("height", height), ("width", width)))
    kernel = sizes("conv3d", "kernel", kernel, (1, 3), "3x4x5")
    kernel = kernel * 3 if len(kernel) == 1 else kernel
    out_channels, sample = positive("conv3d", "out_channels", out_channels), positive("conv3d", "sample", sample)
    try:
        shapes = _shapes(volume, kernel, out_channels)
    except ShapeError as exc:
        raise ValueError(f"explain conv3d: kernel {dims(kernel)} on {dims(volume)} maps: {exc}") from None
    full = math.prod(volume) <= _FULL_CELLS
    reduced = volume if full else tuple(min(n, k + _MARGIN) for n, k in zip(volume, kernel))
    hint = f"use a smaller --kernel (values are computed on a volume of up to kernel + {_MARGIN} cells per dim)"
    within_budget("conv3d", f"the computed {dims(reduced)} volume", math.prod(reduced), hint)
    within_budget("conv3d", "the contrasting 2D kernel on the computed volume",
                  out_channels * reduced[0] * kernel[1] * kernel[2], hint + " or a smaller --out-channels")
    rng = generator("conv3d", seed)
    check = _shuffled_check(reduced, kernel, sample, rng)
    collapse = _depth_collapse(reduced, kernel, out_channels, rng)
    expected = tuple(n - k + 1 for n, k in zip(volume, kernel))
    facts = {"volume": volume, "kernel": kernel, "out_channels": out_channels, **shapes, "reduced": not full,
             "check": check, "collapse": collapse, "expected_output": expected}
    c3, c2 = shapes["conv3d"], shapes["conv2d"]
    claims = {"conv3d output is (D − kD + 1)×(H − kH + 1)×(W − kW + 1)": c3["output_shape"][1:] == expected,
              "conv3d parameters: kD·kH·kW + 1": c3["params"] == math.prod(kernel) + 1,
              "positions computed one by one in shuffled order equal the engine's conv3d": check["equal"],
              "the 2D conv has C_out·maps·kH·kW + C_out parameters":
                  c2["params"] == out_channels * volume[0] * kernel[1] * kernel[2] + out_channels,
              "a 2D conv over all maps equals a conv3d with kernel depth = maps": collapse["equal"]}
    return facts, claims


def render(f: Facts) -> list[str]:
    d, h, w = f["volume"]
    kd, kh, kw = f["kernel"]
    c3, c2, ch, co = f["conv3d"], f["conv2d"], f["check"], f["collapse"]
    out = c3["output_shape"][1:]
    lines = [f"{d} maps of {h}×{w} as one single-channel volume: input {dims((1, 1, d, h, w))} (N, C, D, H, W), "
             f"a {dims(f['kernel'])} kernel.",
             "",
             f"conv3d: weight {dims(c3['weight_shape'])} = {count(c3['weights'])} weights + 1 bias = "
             f"{count(c3['params'])} parameters",
             f"  output {dims(c3['output_shape'])}: ({d} − {kd} + 1)×({h} − {kh} + 1)×({w} − {kw} + 1) = "
             f"{dims(out)}, still a stack of {out[0]} maps {mark(out == tuple(f['expected_output']))}",
             f"  MACs {count(c3['macs'])} (= {count(c3['outputs'])} outputs × {c3['weights']} weights)  "
             f"[shapes from meta tensors]",
             ""]
    where = (f"on a reduced {dims(ch['value_shape'][2:])} volume with the same kernel (the full one has "
             f"{count(d * h * w)} cells)" if f["reduced"] else f"on the full {dims(ch['value_shape'][2:])} volume")
    subset = ("every one of" if ch["checked"] == ch["positions"] else
              f"a random subset of {count(ch['checked'])} of the")
    lines += [f"The order of computation does not matter. Values {where}:",
              f"  {subset} {count(ch['positions'])} output positions recomputed one at a time, each from its own "
              f"{dims(f['kernel'])} window, in shuffled order {', '.join(map(str, ch['order']))}, …",
              f"  vs the engine's conv3d: max difference {diff(ch['max_diff'])} {mark(ch['equal'])}",
              "",
              f"Contrast — a 2D conv whose kernel spans all {d} maps (C_out = {f['out_channels']}): weight "
              f"{dims(c2['weight_shape'])}, {count(c2['params'])} parameters",
              f"  output {dims(c2['output_shape'])}: the depth axis is gone — {f['out_channels']} map"
              f"{'s' if f['out_channels'] > 1 else ''} of {dims(c2['output_shape'][1:])}; MACs {count(c2['macs'])}",
              f"  it is a conv3d whose kernel depth equals the number of maps (output depth "
              f"{co['conv3d_output_shape'][2]}): max difference {diff(co['max_diff'])} {mark(co['equal'])}"
              + (" [on the reduced volume]" if f["reduced"] else "")]
    return lines


TOPIC = Topic(
    name="conv3d",
    title="A stack of maps as a 3D convolution",
    summary="conv3d over a single-channel volume of maps: shape, parameters, order-independence; vs a 2D conv",
    options=(Option("maps", int, 1337, "number of maps (the depth D)"),
             Option("height", int, 42, "map height H"),
             Option("width", int, 314, "map width W"),
             Option("kernel", str, "3x4x5", "3D kernel kD×kH×kW"),
             Option("out_channels", int, 1, "output maps of the contrasting 2D conv"),
             Option("sample", int, 1000, "at most this many output positions are recomputed one by one"),
             Option("seed", int, 0, "seed of the random volume and kernel")),
    compute=compute,
    render=render,
)
