"""``explain relu``: where the activation goes, on numbers.

1. ``relu(bias + Σ_maps)`` (what a conv layer followed by ReLU computes) differs from
   ``bias + Σ_maps relu(...)`` (ReLU on each input map's contribution before the sum); the
   per-map contributions come from a grouped conv with the layer's own kernel slices.
2. ReLU and max-pooling commute — as does any monotone non-decreasing activation (checked for
   relu, sigmoid and tanh) — while average pooling does not, and neither does a non-monotone
   activation (GELU): counterexamples found by searching random windows.
3. conv → BN → ReLU: batch norm in eval mode after a conv folds into the conv's weights and
   bias (``w·γ/√(var+ε)``, ``(b − mean)·γ/√(var+ε) + β``), computed; ReLU before BN is a
   different function.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import functional as F
from .. import nn
from ..errors import ShapeError
from ..tensor import Tensor
from ._common import close, data, generator, max_diff, positive, seeded, sizes, within_budget
from .explanation import Claims, Facts, Option, Topic, diff, dims, mark, signed

_SEARCH = 128  # counterexamples are searched among the 2×2 … windows of a 128×128 random map
_BN_MAPS = 4   # output maps of the conv in the batch-norm part

_MONOTONE: dict[str, Callable[[Tensor], Tensor]] = {"relu": F.relu, "sigmoid": F.sigmoid, "tanh": F.tanh}


def _sum_then_relu(x: Tensor, conv: nn.Conv2d) -> dict:
    maps = x.shape[1]
    engine = F.relu(conv(x)).numpy()[0, 0]
    k = conv.kernel_size
    # each input map's contribution: the layer's kernel slice for that map, one group per map
    parts = F.conv2d(x, conv.weight.reshape(maps, 1, *k), padding=conv.padding, groups=maps).numpy()[0]
    bias = float(conv.bias.numpy()[0])
    summed = np.maximum(bias + parts.sum(0), 0)
    per_map = bias + np.maximum(parts, 0).sum(0)
    differ = ~np.isclose(summed, per_map, rtol=1e-12, atol=1e-12)
    where = tuple(int(v) for v in np.argwhere(differ)[0]) if differ.any() else None
    return {"maps": maps, "positions": int(summed.size), "differing": int(differ.sum()), "bias": bias,
            "engine_matches_sum_then_relu": close(summed, engine), "example": None if where is None else {
                "position": where, "contributions": [float(v) for v in parts[(slice(None), *where)]],
                "sum_then_relu": float(summed[where]), "relu_then_sum": float(per_map[where]),
                "engine": float(engine[where])}}


def _first_counterexample(f: Callable[[Tensor], Tensor], pool: Callable[[Tensor], Tensor], x: Tensor) -> dict:
    """Compare ``pool(f(x))`` with ``f(pool(x))`` window by window; report the first difference."""
    a, b = pool(f(x)).numpy()[0, 0], f(pool(x)).numpy()[0, 0]
    differ = a != b
    found = None
    if differ.any():
        i, j = (int(v) for v in np.argwhere(differ)[0])
        found = {"window": (i, j), "pool_then_f": float(b[i, j]), "f_then_pool": float(a[i, j])}
    return {"windows": int(a.size), "differing": int(differ.sum()), "max_diff": max_diff(a, b), "first": found}


def _commuting(kernel: int, rng: np.random.Generator) -> dict:
    x = Tensor.wrap(2 * rng.standard_normal((1, 1, _SEARCH, _SEARCH)))
    # GELU dips below zero only for x < 0, so its counterexamples are sought among the windows
    # made negative (−|x|): a window of P² random values nearly always holds a positive one once P ≥ 5.
    negative = Tensor.wrap(-np.abs(x.numpy()))
    max_pool = lambda t: F.max_pool2d(t, kernel)  # noqa: E731
    avg_pool = lambda t: F.avg_pool2d(t, kernel)  # noqa: E731
    grid = Tensor.wrap(np.linspace(-3, 0, 30001))
    dip = F.gelu(grid).numpy()
    out = {"gelu_min_at": float(grid.numpy()[dip.argmin()]), "gelu_min": float(dip.min()),
           "monotone": {name: _first_counterexample(f, max_pool, x) for name, f in _MONOTONE.items()},
           "gelu_max": _first_counterexample(F.gelu, max_pool, negative),
           "relu_avg": _first_counterexample(F.relu, avg_pool, x)}
    for case, searched in (("gelu_max", negative), ("relu_avg", x)):
        first = out[case]["first"]
        if first:
            i, j = first["window"]
            first["values"] = [float(v) for v in searched.numpy()[0, 0, i * kernel:(i + 1) * kernel,
                                                                     j * kernel:(j + 1) * kernel].ravel()]
    return out


def conv_bn_layers(maps: int, kernel: int, rng: np.random.Generator) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """A float64 conv (``maps`` → 4 maps, K×K, padding K//2) and an eval-mode batch norm with
    random affine parameters and running statistics."""
    conv = seeded(nn.Conv2d(maps, _BN_MAPS, kernel, padding=kernel // 2), rng)
    bn = nn.BatchNorm2d(_BN_MAPS).double().eval()
    bn.weight.data[...] = rng.uniform(0.5, 2, _BN_MAPS)
    bn.bias.data[...] = rng.uniform(-1, 1, _BN_MAPS)
    bn.running_mean.data[...] = rng.uniform(-1, 1, _BN_MAPS)
    bn.running_var.data[...] = rng.uniform(0.5, 2, _BN_MAPS)
    return conv, bn


def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(scale, weight, bias)``: the per-map scale ``γ/√(var+ε)`` and the weight and bias of one
    conv equal to ``bn(conv(x))`` in eval mode, ``w·scale`` and ``(b − mean)·scale + β``."""
    scale = bn.weight.numpy() / np.sqrt(bn.running_var.numpy() + bn.eps)
    weight = conv.weight.numpy() * scale.reshape(-1, 1, 1, 1)
    return scale, weight, (conv.bias.numpy() - bn.running_mean.numpy()) * scale + bn.bias.numpy()


def _batch_norm(x: Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> dict:
    scale, w, b = fold(conv, bn)
    reference = bn(conv(x))
    folded = F.conv2d(x, Tensor.wrap(w), Tensor.wrap(b), padding=conv.padding)
    bn_then_relu, relu_then_bn = F.relu(reference), bn(F.relu(conv(x)))
    return {"scale": [float(v) for v in scale], "shift": [float(v) for v in b - conv.bias.numpy() * scale],
            "fold_max_diff": max_diff(folded, reference), "fold_equal": close(folded, reference),
            "folded_relu_equal": close(F.relu(folded), bn_then_relu),
            "order_max_diff": max_diff(bn_then_relu, relu_then_bn),
            "relu_then_bn_min": float(relu_then_bn.numpy().min())}


def compute(maps: int, size: str, kernel: int, pool: int, seed: int) -> tuple[Facts, Claims]:
    maps, kernel, pool = (positive("relu", n, v) for n, v in (("maps", maps), ("kernel", kernel), ("pool", pool)))
    if pool == 1:
        raise ValueError("explain relu: --pool 1 pools 1×1 windows, which is the identity: every activation "
                         "commutes with it; use --pool 2 or more")
    height, width = sizes("relu", "size", size, (2,), "6x6")
    within_budget("relu", f"{maps} maps of {height}×{width}", maps * height * width,
                  "use fewer --maps or a smaller --size")
    rng = generator("relu", seed)
    x = data(rng, 1, maps, height, width)
    try:
        part1 = _sum_then_relu(x, seeded(nn.Conv2d(maps, 1, kernel), rng))
        part2 = _commuting(pool, rng)
    except ShapeError as exc:
        raise ValueError(f"explain relu: {exc}") from None
    part3 = _batch_norm(x, *conv_bn_layers(maps, kernel, rng))
    facts = {"maps": maps, "size": (height, width), "kernel": kernel, "pool": pool, "sum": part1,
             "commute": part2, "bn": part3}
    claims = {"a conv + ReLU computes relu(bias + Σ maps)": part1["engine_matches_sum_then_relu"],
              "relu(bias + Σ) differs from bias + Σ relu(...) somewhere": part1["differing"] > 0}
    for name, result in part2["monotone"].items():
        claims[f"{name} commutes with max-pooling (every window identical)"] = result["differing"] == 0
    claims["a counterexample: GELU (not monotone) does not commute with max-pooling"] = (
        part2["gelu_max"]["first"] is not None)
    claims["a counterexample: ReLU does not commute with average pooling"] = part2["relu_avg"]["first"] is not None
    claims["BN (eval) after a conv folds into the conv's weights and bias"] = part3["fold_equal"]
    claims["relu(folded conv) equals conv → BN → ReLU"] = part3["folded_relu_equal"]
    claims["conv → ReLU → BN is a different function"] = part3["order_max_diff"] > 1e-6
    return facts, claims


def _window(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


def render(f: Facts) -> list[str]:
    s, c, bn = f["sum"], f["commute"], f["bn"]
    k, p = f["kernel"], f["pool"]
    lines = [f"1. Where ReLU meets the sum: a {k}×{k} conv over {f['maps']} maps of {dims(f['size'])}, one output map.",
             f"   relu(bias + Σ maps) and bias + Σ relu(map's part) differ at {s['differing']} of {s['positions']} "
             f"positions {mark(s['differing'] > 0)}"]
    ex = s["example"]
    if ex:
        lines += [f"   at {ex['position']}: bias {s['bias']:.4f}, per-map parts {signed(ex['contributions'])}",
                  f"     relu(bias + Σ) = {ex['sum_then_relu']:.4f}  (the engine's conv → ReLU gives "
                  f"{ex['engine']:.4f} {mark(s['engine_matches_sum_then_relu'])})",
                  f"     bias + Σ relu  = {ex['relu_then_sum']:.4f}"]
    lines += ["", f"2. Activation and {p}×{p} pooling, on {c['relu_avg']['windows']} random windows:"]
    for name, r in c["monotone"].items():
        lines.append(f"   max_pool({name}(x)) vs {name}(max_pool(x)): {r['differing']} windows differ, max difference "
                     f"{diff(r['max_diff'])} {mark(r['differing'] == 0)}")
    gelu = (f"gelu (not monotone: it falls to {c['gelu_min']:.4f} at x = {c['gelu_min_at']:.4f}, then rises) "
            f"with max_pool, on the windows made negative (−|x|)")
    for case, title in (("gelu_max", gelu), ("relu_avg", "relu with avg_pool")):
        r = c[case]
        first = r["first"]
        lines.append(f"   {title}: {r['differing']} windows differ {mark(first is not None)}")
        if first:
            lines.append(f"     e.g. window {_window(first['values'])}: pool then activation "
                         f"{first['pool_then_f']:.4f}, activation then pool {first['f_then_pool']:.4f}")
    scale = ", ".join(f"{v:.4f}" for v in bn["scale"])
    shift = ", ".join(f"{v:.4f}" for v in bn["shift"])
    lines += ["", "3. conv → BN → ReLU: in eval mode BN is per-map scale and shift, so it folds into the conv:",
              f"   scale γ/√(var + ε) = {scale}; shift β − mean·scale = {shift}",
              f"   conv(w·scale, b·scale + shift) vs BN(conv(x)): max difference {diff(bn['fold_max_diff'])} "
              f"{mark(bn['fold_equal'])}",
              f"   conv → ReLU → BN instead: differs by up to {bn['order_max_diff']:.4f} and reaches "
              f"{bn['relu_then_bn_min']:.4f} (BN after ReLU can be negative) {mark(bn['order_max_diff'] > 1e-6)}"]
    return lines


TOPIC = Topic(
    name="relu",
    title="Where ReLU goes",
    summary="relu(bias + Σ) vs bias + Σ relu; ReLU and max-pool commute, avg-pool does not; conv → BN → ReLU",
    options=(Option("maps", int, 3, "input maps of the conv"),
             Option("size", str, "6x6", "map height×width"),
             Option("kernel", int, 3, "conv kernel (K×K)"),
             Option("pool", int, 2, "pooling window (P×P)"),
             Option("seed", int, 0, "seed of the random data and weights")),
    compute=compute,
    render=render,
    aliases=("relu-placement", "relu_placement"),
)
