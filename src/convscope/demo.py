"""`convscope demo`: a small, honest end-to-end run of the engine.

Part 1 builds the project's seed example (an n×m greyscale image, a 3×3 conv with k1
filters and padding 1, ReLU, a 5×5 conv with k2 filters), prints every layer's shapes and
parameter formula, then recomputes one second-layer output value by hand — a plain Python
sum over all k1 first-layer maps — and checks it against the engine.

Part 2 runs the shipped, trained digits CNN on the embedded held-out digits: its accuracy,
one digit drawn in the terminal with the class probabilities, and the provenance of the
winning score traced back through the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import nn, zoo
from .functional import softmax
from .random import manual_seed
from .tensor import Tensor


@dataclass
class LayerRow:
    name: str
    kind: str
    input_shape: tuple
    output_shape: tuple
    weight_shape: tuple | None
    params: int
    formula: str


@dataclass
class HandCheck:
    index: tuple[int, int, int, int]
    bias: float
    products: int
    by_hand: float
    engine: float

    @property
    def ok(self) -> bool:
        return abs(self.by_hand - self.engine) <= 1e-9 * max(1.0, abs(self.engine))


def _param_formula(module: nn.Module) -> tuple[int, str]:
    weight = getattr(module, "weight", None)
    if weight is None:
        return 0, "0"
    dims = "·".join(str(d) for d in weight.shape)
    total = weight.numel()
    text = dims
    bias = getattr(module, "bias", None)
    if bias is not None:
        total += bias.numel()
        text += f" + {bias.numel()}"
    return total, f"{text} = {total:,}"


def layer_rows(model: nn.Sequential, x: Tensor) -> tuple[list[LayerRow], Tensor]:
    """Run ``x`` through the model layer by layer, recording shapes and parameters."""
    rows = []
    for name, layer in model.named_children():
        y = layer(x)
        params, formula = _param_formula(layer)
        weight = getattr(layer, "weight", None)
        rows.append(LayerRow(name, type(layer).__name__, x.shape[1:], y.shape[1:],
                             None if weight is None else weight.shape, params, formula))
        x = y
    return rows, x


def hand_check(model: nn.Sequential, x: Tensor, index: tuple[int, int, int, int]) -> HandCheck:
    """Recompute ``model(x)[index]`` from the last conv's input window and weights, in float64
    Python arithmetic, one product at a time."""
    conv = model[-1]
    hidden = model[:-1](x).numpy()
    n, c_out, i, j = index
    w = conv.weight.numpy()
    total = float(conv.bias.numpy()[c_out])
    count = 0
    for c in range(w.shape[1]):
        for u in range(w.shape[2]):
            for v in range(w.shape[3]):
                total += float(hidden[n, c, i + u, j + v]) * float(w[c_out, c, u, v])
                count += 1
    engine = float(model(x).numpy()[index])
    return HandCheck(index, float(conv.bias.numpy()[c_out]), count, total, engine)


def run(height: int = 12, width: int = 10, k1: int = 8, k2: int = 16,
        seed: int = 0) -> tuple[list[LayerRow], HandCheck]:
    """Build the seed model in float64, run it on a seeded random image, check one value."""
    manual_seed(seed)
    model = zoo.build("seed", k1=k1, k2=k2).double()
    image = np.random.default_rng(seed).random((1, 1, height, width))
    x = Tensor(image)
    rows, out = layer_rows(model, x)
    index = (0, k2 - 1, out.shape[2] // 2, out.shape[3] // 2)
    return rows, hand_check(model, x, index)


def render(rows: list[LayerRow], check: HandCheck) -> str:
    """The demo's text report."""
    shape = lambda s: "×".join(map(str, s))  # noqa: E731
    header = f"{'layer':<6} {'type':<7} {'input':<10} {'output':<10} {'weight':<10} params"
    lines = [header, "-" * len(header)]
    for r in rows:
        weight = shape(r.weight_shape) if r.weight_shape else "-"
        lines.append(f"{r.name:<6} {r.kind:<7} {shape(r.input_shape):<10} {shape(r.output_shape):<10} "
                     f"{weight:<10} {r.formula}")
    k1 = rows[0].output_shape[0]
    last = rows[-1]
    lines += [
        "",
        f"Each of the {last.output_shape[0]} second-layer filters spans all {k1} first-layer maps: "
        f"weight {shape(last.weight_shape)}.",
        f"Output {list(check.index)} of layer {last.name}, recomputed by hand:",
        f"  bias {check.bias:+.6f} + Σ {check.products} products ({k1} maps × "
        f"{last.weight_shape[2]}×{last.weight_shape[3]} window) = {check.by_hand:.12f}",
        f"  engine value                                      = {check.engine:.12f}",
        f"  {'OK: identical' if check.ok else 'MISMATCH'} (difference {abs(check.by_hand - check.engine):.1e})",
    ]
    return "\n".join(lines)


@dataclass
class DigitsReport:
    accuracy: float
    correct: int
    total: int
    image: np.ndarray
    label: int
    probabilities: np.ndarray
    trace_text: str
    influence: np.ndarray


def digits_report(index: int = 0) -> DigitsReport:
    """Evaluate the shipped digits CNN on the test split and explain test digit ``index``."""
    from .data import digits
    from .pretrained import pretrained
    from .trace import trace
    from .train import predict

    model = pretrained("digits")
    X, y = digits("test")
    if not 0 <= index < len(X):
        raise ValueError(f"--digit must be in 0..{len(X) - 1}, got {index}")
    correct = int((predict(model, X).argmax(1) == y).sum())
    x = Tensor(X[index:index + 1])
    probs = softmax(model(x), 1).numpy()[0]
    layer = [name for name, _ in model.named_children()][-1]
    t = trace(model, x, layer, (0, int(probs.argmax())))
    return DigitsReport(correct / len(X), correct, len(X), X[index, 0], int(y[index]), probs, str(t),
                        t.influence()[0, 0])


_SHADES = " ░▒▓█"


def render_digits(report: DigitsReport) -> str:
    """The digit as shaded blocks beside its class probabilities, then the trace."""
    guess = int(report.probabilities.argmax())
    rows = ["".join(_SHADES[min(int(v * 4.999), 4)] * 2 for v in line) for line in report.image]
    bars = [f"{c}: {p:6.2%} {'█' * int(round(p * 20))}" for c, p in enumerate(report.probabilities)]
    lines = [f"Test accuracy of the shipped digits CNN: {report.correct}/{report.total} = {report.accuracy:.2%}",
             "", f"A held-out digit (label {report.label}) and the network's answer: {guess}"]
    for i in range(max(len(rows), len(bars))):
        left = rows[i] if i < len(rows) else " " * 16
        lines.append(f"  {left}   {bars[i] if i < len(bars) else ''}")
    touched = int(report.influence.sum())
    lines += ["", f"Where the winning score comes from ({touched} of {report.influence.size} input pixels "
                  "influence it):", report.trace_text]
    return "\n".join(lines)
