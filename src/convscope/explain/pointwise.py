"""``explain 1x1``: what a 1×1 convolution does, on the user's channel counts.

- It mixes channels: at every pixel it is a linear layer over the C_in values there (shown
  equal to ``F.linear`` applied at every pixel), so every output map reads every input map.
- It is "multiplying by a constant" only when C_in = 1: then each output map is exactly
  ``w·x + b``; with C_in > 1 no output map is an affine function of any single input map (the
  best least-squares fit leaves a residual, computed).
- It cuts cost (GoogLeNet's "reduce"): a K×K conv C_in → C' directly versus a 1×1 conv to
  C_out maps first, MACs and parameters from the engine's real layers and output shapes.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from .. import functional as F
from .. import nn
from ..tensor import Tensor
from ._common import (
    changed_maps,
    close,
    data,
    generator,
    layer_costs,
    max_diff,
    positive,
    seeded,
    sizes,
    with_map_shifted,
    within_budget,
)
from .explanation import Claims, Facts, Option, Topic, count, diff, dims, mark, signed, table

_VALUE_SIDE = 16  # the per-pixel demonstrations run on at most 16×16 pixels (a 1×1 conv is per pixel anyway)
_MIN_PIXELS = 64  # enough pixels (over a small batch) for a meaningful least-squares fit


def _best_single_map_fit(x: np.ndarray, y: np.ndarray) -> float:
    """The smallest relative residual of fitting any output map by ``a·(one input map) + b``.

    Over all pairs (output map o, input map i): ``‖y_o − a·x_i − b‖ / ‖y_o − mean(y_o)‖`` at the
    least-squares optimum equals ``√(1 − corr(x_i, y_o)²)``. ``x`` ``(P, C_in)``, ``y`` ``(P, C_out)``.
    """
    xc, yc = x - x.mean(0), y - y.mean(0)
    xn = xc / np.linalg.norm(xc, axis=0)
    yn = yc / np.linalg.norm(yc, axis=0)
    corr = np.clip(np.abs(xn.T @ yn), 0, 1)
    return float(np.sqrt(1 - corr.max() ** 2))


def _pixels(t: Tensor) -> np.ndarray:
    """``(N, C, H, W)`` → ``(N·H·W, C)``: one row per pixel."""
    a = t.numpy()
    return a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])


def _value_grid(size: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    """``(batch, (height, width))`` of the values the demonstrations compute on: at most
    ``_VALUE_SIDE`` pixels per side, and enough samples for ``_MIN_PIXELS`` pixels."""
    side = (min(size[0], _VALUE_SIDE), min(size[1], _VALUE_SIDE))
    return max(1, math.ceil(_MIN_PIXELS / math.prod(side))), side


def _mixing(cin: int, cout: int, size: tuple[int, int], seed: int) -> dict:
    rng = generator("1x1", seed)
    batch, side = _value_grid(size)
    layer = seeded(nn.Conv2d(cin, cout, 1), rng)
    x = data(rng, batch, cin, *side)
    y = layer(x)
    per_pixel = F.linear(x.permute(0, 2, 3, 1), layer.weight.reshape(cout, cin), layer.bias).permute(0, 3, 1, 2)
    single = seeded(nn.Conv2d(1, cout, 1), rng)
    x1 = x[:, :1]
    y1 = single(x1)
    scaled = x1.numpy() * single.weight.numpy().reshape(1, cout, 1, 1) + single.bias.numpy().reshape(1, cout, 1, 1)
    w, b, v = layer.weight.numpy()[0, :, 0, 0], layer.bias.numpy()[0], x.numpy()[0, :, 0, 0]
    return {"value_shape": (batch, cin, *side), "reduced": side != tuple(size), "weight_shape": layer.weight.shape,
            "per_pixel_linear_max_diff": max_diff(y, per_pixel), "per_pixel_linear": close(y, per_pixel),
            "example": {"bias": float(b), "terms": cin, "first_products": [float(t) for t in (w * v)[:3]],
                        "by_hand": float(b + np.dot(w, v)), "engine": float(y.numpy()[0, 0, 0, 0])},
            "maps_changed_by_last_input_map": len(changed_maps(y, layer(with_map_shifted(x, cin - 1)))),
            "best_single_map_residual": _best_single_map_fit(_pixels(x), _pixels(y)),
            "c_in_1_weights": [float(v) for v in single.weight.numpy().ravel()[:3]],
            "c_in_1_scaling_max_diff": max_diff(y1, scaled), "c_in_1_is_scaling": close(y1, scaled),
            "c_in_1_residual": _best_single_map_fit(_pixels(x1), _pixels(y1))}


def _cost(layers: list[nn.Conv2d], cin: int, size: tuple[int, int]) -> dict:
    """MACs and parameters of conv layers run in sequence, counted by the analyzer."""
    rows = layer_costs(layers, (cin, *size))
    return {"layers": rows, "params": sum(r["params"] for r in rows), "macs": sum(r["macs"] for r in rows),
            "output_shape": rows[-1]["output_shape"]}


def compute(cin: int, cout: int, size: str, conv_k: int, conv_out: int, seed: int) -> tuple[Facts, Claims]:
    cin, cout = positive("1x1", "cin", cin), positive("1x1", "cout", cout)
    conv_k, conv_out = positive("1x1", "conv_k", conv_k), positive("1x1", "conv_out", conv_out)
    size = sizes("1x1", "size", size, (1, 2), "28x28")
    size = (size[0], size[-1])
    within_budget("1x1", f"the {cout}×{cin} weight", cin * cout, "use a smaller --cin or --cout")
    batch, side = _value_grid(size)
    within_budget("1x1", f"the {max(cin, cout)} maps of {dims(side)} (×{batch} samples) the values are computed on",
                  batch * max(cin, cout) * math.prod(side), "use a smaller --cin or --cout")
    mix = _mixing(cin, cout, size, seed)
    pad = conv_k // 2
    with nn.meta_parameters():
        direct = _cost([nn.Conv2d(cin, conv_out, conv_k, padding=pad)], cin, size)
        reduced = _cost([nn.Conv2d(cin, cout, 1), nn.Conv2d(cout, conv_out, conv_k, padding=pad)], cin, size)
    facts = {"cin": cin, "cout": cout, "size": size, "conv_k": conv_k, "conv_out": conv_out, "mixing": mix,
             "direct": direct, "reduced": reduced, "macs_saved": direct["macs"] - reduced["macs"],
 "macs_ratio": Fraction(reduced["macs"], direct["macs"]),
             "params_ratio": Fraction(reduced["params"], direct["params"])}
    claims = {"a 1×1 conv equals F.linear over C_in at every pixel": mix["per_pixel_linear"],
              "every output map reads every input map": mix["maps_changed_by_last_input_map"] == cout,
              "with C_in = 1 each output map is exactly w·x + b": mix["c_in_1_is_scaling"],
              "parameters equal C_out·C_in·K·K + C_out for every layer": (
                  direct["params"] == conv_out * cin * conv_k ** 2 + conv_out
                  and reduced["params"] == cout * cin + cout + conv_out * cout * conv_k ** 2 + conv_out),
              "both paths give the same output shape": direct["output_shape"] == reduced["output_shape"]}
    if cin > 1:
        claims["with C_in > 1 no output map is a·(one input map) + b"] = mix["best_single_map_residual"] > 1e-6
    return facts, claims


def _layer_row(name: str, row: dict) -> list[str]:
    w = row["weight_shape"]
    return [name, str(tuple(w)), dims(row["output_shape"]), count(row["params"]), count(row["macs"])]


def render(f: Facts) -> list[str]:
    cin, cout, k, out = f["cin"], f["cout"], f["conv_k"], f["conv_out"]
    m = f["mixing"]
    ex = m["example"]
    where = (f" (values computed on {dims(m['value_shape'])}: a 1×1 conv works pixel by pixel, so a smaller map "
             f"shows the same)" if m["reduced"] else f" (values computed on {dims(m['value_shape'])})")
    products = signed(ex["first_products"])
    lines = [f"A 1×1 conv from {cin} to {cout} maps of {dims(f['size'])}: kernel {tuple(m['weight_shape'])}{where}.",
             "",
             "1. It mixes channels: at each pixel it is a linear layer over the C_in values there.",
             f"   output map 0 at pixel (0, 0) = bias {ex['bias']:.4f} + Σ of {ex['terms']} products ({products}"
             f"{' + …' if ex['terms'] > 3 else ''}) = {ex['by_hand']:.6f}; engine {ex['engine']:.6f}",
             f"   conv vs F.linear(x at every pixel, W reshaped to {cout}×{cin}): max difference "
             f"{diff(m['per_pixel_linear_max_diff'])} {mark(m['per_pixel_linear'])}",
             f"   shifting input map {cin - 1} changes {m['maps_changed_by_last_input_map']} of {cout} output maps "
             f"{mark(m['maps_changed_by_last_input_map'] == cout)}",
             "",
             "2. It multiplies by a constant only when C_in = 1.",
             f"   C_in = 1: each output map is exactly w·x + b (w = "
             f"{', '.join(f'{w:.4f}' for w in m['c_in_1_weights'])}{', …' if cout > 3 else ''}): max difference "
             f"{diff(m['c_in_1_scaling_max_diff'])} {mark(m['c_in_1_is_scaling'])}"]
    if cin > 1:
        residual = m["best_single_map_residual"]
        lines.append(f"   C_in = {cin}: the best fit of any output map by a·(one input map) + b leaves a residual "
                     f"of {residual:.1%} of that map's spread (RMS) {mark(residual > 1e-6)}")
    else:
        lines.append("   Your C_in is 1, so your 1×1 conv is exactly such a scaling (plus bias).")
    lines += ["", f"3. It cuts cost (GoogLeNet's reduce): a {k}×{k} conv to {out} maps on {cin}×{dims(f['size'])}, "
                  f"directly or after a 1×1 reduce to {cout} maps.",
              *("   " + line for line in _cost_table(f)),
              f"   with the reduce: {float(f['macs_ratio']):.1%} of the MACs and {float(f['params_ratio']):.1%} of the "
              f"parameters: " + (f"{count(f['macs_saved'])} MACs saved" if f["macs_saved"] > 0 else
                                 f"{count(-f['macs_saved'])} MACs more — a reduce pays only when it narrows "
                                 f"the channels")]
    return lines


def _cost_table(f: Facts) -> list[str]:
    k = f["conv_k"]
    d, r = f["direct"], f["reduced"]
    rows = [_layer_row(f"direct {k}×{k}", d["layers"][0]), _layer_row("1×1 reduce", r["layers"][0]),
            _layer_row(f"then {k}×{k}", r["layers"][1]),
            ["reduce + conv", "", dims(r["output_shape"]), count(r["params"]), count(r["macs"])]]
    return table(["path", "kernel", "output", "parameters", "MACs"], rows, right={3, 4})


TOPIC = Topic(
    name="1x1",
    title="1×1 convolutions: channel mixing, not scaling, and the cost they save",
    summary="a 1×1 conv is a per-pixel linear layer over channels; GoogLeNet-style reduce-then-conv savings",
    options=(Option("cin", int, 192, "input maps C_in"),
             Option("cout", int, 16, "output maps of the 1×1 conv (the reduce width)"),
             Option("size", str, "28x28", "map height×width"),
             Option("conv_k", int, 5, "kernel of the conv that follows (and of the direct conv)"),
             Option("conv_out", int, 32, "output maps of that conv"),
             Option("seed", int, 0, "seed of the random input and weights")),
    compute=compute,
    render=render,
    aliases=("pointwise",),
)
