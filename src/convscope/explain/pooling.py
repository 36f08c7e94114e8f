"""``explain pooling``: pooling works on each feature map on its own, never across maps.

Computed on a random stack of maps: max- and average-pooling the whole stack equals pooling
each map separately and stacking the results (bit for bit), and shifting one map changes only
its own pooled map. For contrast, three layers that *do* work across maps, with the maps each
one reads: maxout over groups of channels, local response normalisation (LRN, AlexNet) and a
1×1 convolution.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import functional as F
from .. import nn
from ..errors import ShapeError
from ..ops import cat
from ..tensor import Tensor
from ._common import (
    changed_maps,
    data,
    generator,
    parameter_count,
    positive,
    seeded,
    sizes,
    with_map_shifted,
    within_budget,
)
from .explanation import Claims, Facts, Option, Topic, count, dims, mark, ranges, table

_SHOWN_MAPS = 4  # maps whose first window is printed


def _per_map(name: str, pool: Callable[[Tensor], Tensor], x: Tensor, shifted: Tensor) -> dict:
    whole = pool(x)
    separate = cat([pool(x[:, i:i + 1]) for i in range(x.shape[1])], dim=1)
    return {"name": name, "output_shape": whole.shape[1:], "equals_each_map_alone": bool(np.array_equal(whole.numpy(),
                                                                                                       separate.numpy())),
            "changed_maps": changed_maps(whole, pool(shifted)),
            "first_window": [float(v) for v in whole.numpy()[0, :_SHOWN_MAPS, 0, 0]]}


def _across(name: str, layer: Callable[[Tensor], Tensor], x: Tensor, shifted: Tensor, expected: list[int],
            params: int) -> dict:
    y = layer(x)
    changed = changed_maps(y, layer(shifted))
    return {"name": name, "output_shape": y.shape[1:], "changed_maps": changed, "expected_maps": expected,
            "params": params, "first_pixel": float(y.numpy()[0, 0, 0, 0])}


def compute(maps: int, size: str, kernel: int, stride: int | None, group: int, lrn_size: int, map: int | None,  # noqa: A002
            seed: int) -> tuple[Facts, Claims]:
    maps, kernel = positive("pooling", "maps", maps), positive("pooling", "kernel", kernel)
    stride = kernel if stride is None else positive("pooling", "stride", stride)
    group, lrn_size = positive("pooling", "group", group), positive("pooling", "lrn_size", lrn_size)
    height, width = sizes("pooling", "size", size, (2,), "6x6")
    within_budget("pooling", f"{maps} maps of {height}×{width}", maps * height * width,
                  "use fewer --maps or a smaller --size")
    within_budget("pooling", f"the {maps}×{maps} weight of the contrasting 1×1 conv", maps * maps, "use fewer --maps")
    within_budget("pooling", f"the {maps} maps of {height}×{width} padded by the LRN window of {lrn_size}",
                  (maps + lrn_size - 1) * height * width, "use a smaller --lrn-size")
    if maps % group:
        raise ValueError(f"explain pooling: maxout needs --maps divisible by --group, got {maps} maps in groups "
                         f"of {group}")
    m = maps // 2 if map is None else int(map)
    if not 0 <= m < maps:
        raise ValueError(f"explain pooling: --map must lie in 0 … {maps - 1}, got {map}")
    rng = generator("pooling", seed)
    x = data(rng, 1, maps, height, width)
    shifted = with_map_shifted(x, m)
    try:
        pools = [_per_map("max_pool2d", lambda t: F.max_pool2d(t, kernel, stride), x, shifted),
                 _per_map("avg_pool2d", lambda t: F.avg_pool2d(t, kernel, stride), x, shifted)]
    except ShapeError as exc:
        raise ValueError(f"explain pooling: {exc}") from None
    lrn = nn.LocalResponseNorm(lrn_size, alpha=1e-4, beta=0.75, k=2.0)
    conv = seeded(nn.Conv2d(maps, maps, 1), rng)
    lo, hi = max(0, m - (lrn_size - 1) // 2), min(maps - 1, m + lrn_size // 2)
    across = [_across("maxout", lambda t: t.reshape(1, maps // group, group, height, width).amax(dim=2), x, shifted,
                      [m // group], 0),
              _across("local_response_norm", lrn, x, shifted, list(range(lo, hi + 1)), 0),
              _across("1×1 conv", conv, x, shifted, list(range(maps)), parameter_count(conv))]
    window = x.numpy()[0, :_SHOWN_MAPS, :kernel, :kernel]
    facts = {"maps": maps, "size": (height, width), "kernel": kernel, "stride": stride, "group": group,
             "lrn_size": lrn_size, "shifted_map": m, "pools": pools, "across": across,
             "first_windows": [[float(v) for v in w.ravel()] for w in window],
             "pixel_values": [float(v) for v in x.numpy()[0, :group, 0, 0]]}
    claims = {}
    for p in pools:
        claims[f"{p['name']} of the stack equals {p['name']} of each map alone, bit for bit"] = (
            p["equals_each_map_alone"])
        claims[f"{p['name']}: shifting map {m} changes only pooled map {m}"] = p["changed_maps"] == [m]
        claims[f"{p['name']} keeps the number of maps"] = p["output_shape"][0] == maps
    for a in across:
        claims[f"{a['name']}: shifting map {m} changes exactly the maps that read it"] = (
            a["changed_maps"] == a["expected_maps"])
    return facts, claims


def render(f: Facts) -> list[str]:
    m, k = f["shifted_map"], f["kernel"]
    lines = [f"{f['maps']} random maps of {dims(f['size'])}, pooled with a {k}×{k} window, stride {f['stride']}.", ""]
    pooled = [p["first_window"] for p in f["pools"]]
    rows = [[str(i), ", ".join(f"{v:.3f}" for v in w), f"{pooled[0][i]:.3f}", f"{pooled[1][i]:.3f}"]
            for i, w in enumerate(f["first_windows"])]
    lines += ["The first window of each map (pooling reads one map at a time):"]
    lines += ["  " + line for line in table(["map", "values", "max_pool2d", "avg_pool2d"], rows, right={0, 2, 3})]
    lines.append("")
    for p in f["pools"]:
        lines.append(f"{p['name']}: {dims(p['output_shape'])} output, the same {p['output_shape'][0]} maps; stack vs "
                     f"each map alone: {'identical' if p['equals_each_map_alone'] else 'DIFFERENT'} "
                     f"{mark(p['equals_each_map_alone'])}; shifting map {m} changes pooled map(s) "
                     f"{ranges(p['changed_maps'])} {mark(p['changed_maps'] == [m])}")
    pixel = ", ".join(f"{v:.3f}" for v in f["pixel_values"])
    lines += ["", f"Layers that work across maps, for contrast (shifting map {m}):",
              f"  maxout over groups of {f['group']} takes the max over maps at each pixel: at pixel (0, 0) maps "
              f"0…{f['group'] - 1} hold {pixel} → {f['across'][0]['first_pixel']:.3f}"]
    rows = [[a["name"], dims(a["output_shape"]), count(a["params"]), ranges(a["changed_maps"]),
             ranges(a["expected_maps"]), mark(a["changed_maps"] == a["expected_maps"])] for a in f["across"]]
    lines += ["  " + line for line in table(["layer", "output", "parameters", "maps changed", "maps that read it", ""],
                                            rows, right={2})]
    return lines


TOPIC = Topic(
    name="pooling",
    title="Pooling works per feature map, never across maps",
    summary="pooling each map separately equals pooling the stack; maxout, LRN and 1×1 conv work across maps",
    options=(Option("maps", int, 6, "number of feature maps"),
             Option("size", str, "6x6", "map height×width"),
             Option("kernel", int, 2, "pooling window (K×K)"),
             Option("stride", int, None, "pooling stride (default: the kernel)"),
             Option("group", int, 2, "maxout group size (maps per output)"),
             Option("lrn_size", int, 3, "LRN window of neighbouring maps"),
             Option("map", int, None, "the map to shift (default: maps // 2)"),
             Option("seed", int, 0, "seed of the random maps and weights")),
    compute=compute,
    render=render,
)
