"""``explain separable``: depthwise-separable convolution (MobileNet) against a standard conv.

A standard K×K conv from M to N maps costs ``H'·W'·N·M·K²`` MACs and ``N·M·K²`` weights. A
depthwise K×K conv (one filter per map, ``groups = M``) followed by a 1×1 pointwise conv costs
``H'·W'·M·K² + H'·W'·M·N`` MACs and ``M·K² + M·N`` weights; the ratio of either is exactly
``1/N + 1/K²``. The layers are the engine's ``nn.Conv2d`` modules with meta parameters, counted
by :func:`convscope.summary` on the user's size; the ratio is an exact fraction.
"""

from __future__ import annotations

from fractions import Fraction

from .. import nn
from ..errors import ShapeError
from ._common import layer_costs, positive, sizes
from .explanation import Claims, Facts, Option, Topic, count, dims, mark, table


def _counted(layers: list[nn.Conv2d], shape: tuple[int, ...]) -> list[dict]:
    return [{**row, "groups": layer.groups} for row, layer in zip(layer_costs(layers, shape), layers)]


def compute(cin: int, cout: int, k: int, size: str, stride: int) -> tuple[Facts, Claims]:
    cin, cout, k, stride = (positive("separable", n, v) for n, v in (("cin", cin), ("cout", cout), ("k", k),
                                                                     ("stride", stride)))
    height, width = sizes("separable", "size", size, (2,), "112x112")
    shape, pad = (cin, height, width), k // 2
    try:
        with nn.meta_parameters():
            standard = _counted([nn.Conv2d(cin, cout, k, stride, pad)], shape)
            separable = _counted([nn.Conv2d(cin, cin, k, stride, pad, groups=cin), nn.Conv2d(cin, cout, 1)], shape)
    except ShapeError as exc:
        raise ValueError(f"explain separable: {exc}") from None
    std, dw, pw = standard[0], separable[0], separable[1]
    macs = Fraction(dw["macs"] + pw["macs"], std["macs"])
    weights = Fraction(dw["weights"] + pw["weights"], std["weights"])
    formula = Fraction(1, cout) + Fraction(1, k * k)
    pair = {key: dw[key] + pw[key] for key in ("weights", "params", "macs")}
    facts = {"cin": cin, "cout": cout, "k": k, "size": (height, width), "stride": stride, "standard": std,
             "depthwise": dw, "pointwise": pw, "separable": pair, "macs_ratio": macs, "weights_ratio": weights,
             "formula": formula, "params_ratio": Fraction(pair["params"], std["params"]), "speedup": 1 / macs}
    claims = {"both give the same output shape": std["output_shape"] == pw["output_shape"],
              "standard weights = N·M·K²": std["weights"] == cout * cin * k * k,
              "separable weights = M·K² + M·N": dw["weights"] + pw["weights"] == cin * k * k + cin * cout,
              "MACs ratio = 1/N + 1/K² exactly": macs == formula,
              "weights ratio = 1/N + 1/K² exactly": weights == formula}
    return facts, claims


def render(f: Facts) -> list[str]:
    m, n, k = f["cin"], f["cout"], f["k"]
    std, dw, pw = f["standard"], f["depthwise"], f["pointwise"]
    row = lambda name, r: [name, str(tuple(r["weight_shape"])), str(r["groups"]), dims(r["output_shape"]),  # noqa: E731
                           count(r["weights"]), count(r["params"]), count(r["macs"])]
    pair = f["separable"]
    total = ["depthwise + pointwise", "", "", dims(pw["output_shape"]), count(pair["weights"]), count(pair["params"]),
             count(pair["macs"])]
    lines = [f"M = {m} input maps of {dims(f['size'])} → N = {n} output maps, K = {k}, stride {f['stride']}, "
             f"padding {k // 2}.", ""]
    lines += table(["layer", "weight", "groups", "output", "weights", "with bias", "MACs"],
                   [row(f"standard {k}×{k}", std), row(f"depthwise {k}×{k}", dw), row("pointwise 1×1", pw), total],
                   right={2, 4, 5, 6})
    r, formula = f["macs_ratio"], f["formula"]
    lines += ["",
              f"MACs ratio    = {count(pair['macs'])} / {count(std['macs'])} = {r} ≈ {float(r):.4f}",
              f"1/N + 1/K²    = 1/{n} + 1/{k * k} = {formula} {mark(r == formula)}",
              f"weights ratio = {f['weights_ratio']} {mark(f['weights_ratio'] == formula)}; with biases "
              f"{float(f['params_ratio']):.4f} (biases do not follow the formula)",
              f"The separable pair costs {float(r):.1%} of the standard conv: {_saving(r, n, k)}."]
    return lines


def _saving(ratio: Fraction, n: int, k: int) -> str:
    """The pair's MACs against the standard conv's, as a saving. 1/N + 1/K² ≥ 1 only when
    K = 1 (the depthwise conv only scales each map) or N = 1 (the depthwise conv alone costs
    as much as the standard conv); then it is a cost."""
    if ratio < 1:
        return f"{float(1 / ratio):.1f}× fewer MACs"
    why = ("with K = 1 the depthwise conv only scales each map" if k == 1 else
           "with N = 1 the depthwise conv alone costs as much as the standard conv")
    return f"{float(ratio - 1):.1%} more MACs, no saving ({why})"


TOPIC = Topic(
    name="separable",
    title="Depthwise-separable vs standard convolution",
    summary="parameters and MACs of a MobileNet depthwise + pointwise pair vs a standard conv: 1/N + 1/K²",
    options=(Option("cin", int, 32, "input maps M"),
             Option("cout", int, 64, "output maps N"),
             Option("k", int, 3, "kernel size K"),
             Option("size", str, "112x112", "map height×width"),
             Option("stride", int, 1, "stride (of the standard and the depthwise conv)")),
    compute=compute,
    render=render,
    aliases=("depthwise",),
)
