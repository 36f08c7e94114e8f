"""``explain quadratic``: widen two chained conv layers by c and the second one's cost grows by c².

The second layer's MACs are (its output elements) × (its input maps) × 5·5; scaling the
filter counts k1 and k2 by c multiplies both its output maps and its input maps by c. The
table runs ``conv(k1·c, 3×3, p1) → ReLU → conv(k2·c, 5×5)`` on meta tensors of the user's
input (the engine's own shape rules, no arithmetic on values, any c is instant) and reads
MACs and parameters from the output and weight shapes.
"""

from __future__ import annotations

from fractions import Fraction

from .. import nn
from ._common import int_list, layer_costs, seed_stack
from .explanation import Claims, Facts, Option, Topic, count, dims, mark, table


def _pair(shape: tuple[int, ...], k1: int, k2: int) -> dict:
    """Both layers of the chain for filter counts ``k1``, ``k2``, counted on meta tensors."""
    with nn.meta_parameters():
        first, _, second = layer_costs([nn.Conv2d(shape[0], k1, 3, padding=1), nn.ReLU(), nn.Conv2d(k1, k2, 5)],
                                       shape)
    return {"k1": k1, "k2": k2, "first_output": first["output_shape"], "second_output": second["output_shape"],
            "first_macs": first["macs"], "second_macs": second["macs"], "first_weights": first["weights"],
            "second_weights": second["weights"]}


def compute(k1: int, k2: int, input: str, scales: str) -> tuple[Facts, Claims]:  # noqa: A002 - the option's name
    k1, k2, shape = seed_stack("quadratic", k1, k2, input, "1x28x28")
    cs = int_list("quadratic", "scales", scales, "1,2,4")
    base = _pair(shape, k1, k2)
    rows = []
    for c in cs:
        row = {"c": c, "c_squared": c * c, **_pair(shape, k1 * c, k2 * c)}
        row["second_ratio"] = Fraction(row["second_macs"], base["second_macs"])
        row["first_ratio"] = Fraction(row["first_macs"], base["first_macs"])
        row["second_weights_ratio"] = Fraction(row["second_weights"], base["second_weights"])
        rows.append(row)
    facts = {"k1": k1, "k2": k2, "input_shape": shape, "base": base, "rows": rows}
    claims = {"the second layer's MACs scale by exactly c²": all(r["second_ratio"] == r["c"] ** 2 for r in rows),
              "the second layer's weights scale by exactly c²":
                  all(r["second_weights_ratio"] == r["c"] ** 2 for r in rows),
              "the first layer's MACs scale by c (its input maps are fixed)":
                  all(r["first_ratio"] == r["c"] for r in rows)}
    return facts, claims


def render(f: Facts) -> list[str]:
    b = f["base"]
    lines = [f"conv(k1·c, 3×3, p1) → ReLU → conv(k2·c, 5×5) on {dims(f['input_shape'])}, with k1 = {f['k1']}, "
             f"k2 = {f['k2']}.",
             f"Second layer MACs = output elements × input maps × 5·5 = "
             f"({dims(b['second_output'])}) × {b['k1']} × 25 = {count(b['second_macs'])} at c = 1; widening both "
             f"layers by c multiplies its output maps by c and its input maps by c.", ""]
    rows = [[str(r["c"]), str(r["k1"]), str(r["k2"]), dims(r["second_output"]), count(r["first_macs"]),
             f"×{r['first_ratio']}", count(r["second_macs"]), f"×{r['second_ratio']}", str(r["c_squared"]),
             mark(r["second_ratio"] == r["c_squared"]), count(r["second_weights"])] for r in f["rows"]]
    lines += table(["c", "k1·c", "k2·c", "layer 2 output", "layer 1 MACs", "ratio", "layer 2 MACs", "ratio", "c²",
                    "", "layer 2 weights"], rows, right={0, 1, 2, 4, 5, 6, 7, 8, 10})
    return lines


TOPIC = Topic(
    name="quadratic",
    title="Quadratic cost: wider chained conv layers",
    summary="scaling the filters of two chained conv layers by c multiplies the second layer's MACs by c²",
    options=(Option("k1", int, 8, "first-layer filters at c = 1 (3×3, padding 1)"),
             Option("k2", int, 16, "second-layer filters at c = 1 (5×5)"),
             Option("input", str, "1x28x28", "input maps×height×width"),
             Option("scales", str, "1,2,4", "comma-separated scale factors c")),
    compute=compute,
    render=render,
)
