"""Small pieces the topics share: option parsing with clear errors, seeded data and weights
(from the caller's seed, never the global generator), counts, and comparisons."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import nn
from ..analyze import summary
from ..nn import init
from ..tensor import Tensor
from .explanation import dims

# Agreement of two float64 computations that sum the same terms in different orders.
REL_TOL = 1e-12
# Topics compute real values; past this many float64 values per tensor they would take
# seconds and hundreds of MB, so the options are refused with a hint instead.
MAX_VALUES = 20_000_000


def positive(topic: str, name: str, value: Any, *, zero_ok: bool = False) -> int:
    """``value`` as an int ≥ 1 (≥ 0 with ``zero_ok``), else a ValueError naming the option."""
    low = 0 if zero_ok else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        want = "a non-negative" if zero_ok else "a positive"
        raise ValueError(f"explain {topic}: --{name.replace('_', '-')} must be {want} integer, got {value!r}")
    return int(value)


def within_budget(topic: str, what: str, values: int, hint: str) -> None:
    """Refuse options that would make a tensor of more than ``MAX_VALUES`` values."""
    if values > MAX_VALUES:
        raise ValueError(f"explain {topic}: {what} would hold {values:,} values, more than the {MAX_VALUES:,} this "
                         f"explanation computes with; {hint}")


def sizes(topic: str, name: str, value: Any, lengths: Sequence[int], example: str) -> tuple[int, ...]:
    """Parse ``"1x28x28"`` (or ``×``, or a sequence of ints) into positive ints; the number of
    sizes must be one of ``lengths``."""
    if isinstance(value, str):
        parts = value.lower().replace("×", "x").split("x")
        try:
            values = tuple(int(p) for p in parts)
        except ValueError:
            values = ()
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        values = (int(value),)
    else:
        try:
            values = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            values = ()
    if len(values) not in lengths or min(values, default=0) < 1:
        counts = " or ".join(str(n) for n in lengths)
        raise ValueError(f"explain {topic}: --{name.replace('_', '-')} expects {counts} positive sizes like "
                         f"{example}, got {value!r}")
    return values


def seed_stack(topic: str, k1: Any, k2: Any, input_shape: Any, example: str) -> tuple[int, int, tuple[int, ...]]:
    """The seed example's options (k1 3×3 filters, then k2 5×5 filters on ``input_shape``),
    validated: ``(k1, k2, (C, H, W))`` with H and W at least 5 for the 5×5 layer."""
    k1, k2 = positive(topic, "k1", k1), positive(topic, "k2", k2)
    shape = sizes(topic, "input", input_shape, (2, 3), example)
    shape = (1, *shape) if len(shape) == 2 else shape
    if min(shape[1:]) < 5:
        raise ValueError(f"explain {topic}: the 5×5 second layer needs an input of at least 5×5, "
                         f"got {dims(shape[1:])}")
    return k1, k2, shape


def int_list(topic: str, name: str, value: Any, example: str) -> list[int]:
    """Parse ``"1,2,4"`` (or a sequence) into positive ints."""
    parts = value.split(",") if isinstance(value, str) else value
    try:
        values = [int(p) for p in parts]
    except (TypeError, ValueError):
        values = []
    if not values or min(values) < 1:
        raise ValueError(f"explain {topic}: --{name} expects positive integers like {example}, got {value!r}")
    return values


def generator(topic: str, seed: Any) -> np.random.Generator:
    """The topic's random numbers, from ``seed`` (an int ≥ 0, as NumPy takes)."""
    return np.random.default_rng(positive(topic, "seed", seed, zero_ok=True))


def data(rng: np.random.Generator, *shape: int) -> Tensor:
    """Standard-normal float64 data."""
    return Tensor.wrap(rng.standard_normal(shape))


def seeded(module: nn.Module, rng: np.random.Generator) -> nn.Module:
    """Convert ``module`` to float64 and redraw every weight and bias from ``rng`` with torch's
    default bounds (U(±1/√fan_in)), so the numbers depend on the seed only."""
    module.double()
    for m in module.modules():
        weight = getattr(m, "weight", None)
        if not isinstance(weight, Tensor) or weight.ndim < 2:
            continue
        bound = 1 / math.sqrt(weight.shape[1] * math.prod(weight.shape[2:]))
        init.uniform_(weight, -bound, bound, generator=rng)
        if getattr(m, "bias", None) is not None:
            init.uniform_(m.bias, -bound, bound, generator=rng)
    return module


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def layer_costs(layers: Sequence[nn.Module], input_shape: Sequence[int], dtype: Any = np.float32) -> list[dict]:
    """Per layer, run in sequence on one sample of ``input_shape`` (no batch dim): output shape
    (no batch dim), weight shape, weights, parameters and MACs, as :func:`convscope.summary`
    counts them (MACs of a conv: output elements × C_in/groups × kernel volume, bias excluded).

    Runs on meta tensors, so layers built under ``nn.meta_parameters()`` cost no memory.
    """
    report = summary(nn.Sequential(*layers), (1, *input_shape), dtype=dtype)
    if report.error is not None:
        raise report.error
    return [{"output_shape": tuple(r.output_shape[1:]), "weight_shape": r.weight_shape, "params": r.params,
             "weights": math.prod(r.weight_shape) if r.weight_shape else 0, "macs": r.macs} for r in report.rows]


def max_diff(a: Any, b: Any) -> float:
    a = a.numpy() if isinstance(a, Tensor) else np.asarray(a)
    b = b.numpy() if isinstance(b, Tensor) else np.asarray(b)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def close(a: Any, b: Any) -> bool:
    """Same shape and equal to float64 rounding (``REL_TOL`` of the larger magnitude)."""
    a = a.numpy() if isinstance(a, Tensor) else np.asarray(a)
    b = b.numpy() if isinstance(b, Tensor) else np.asarray(b)
    if a.shape != b.shape:
        return False
    scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
    return max_diff(a, b) <= REL_TOL * scale


def changed_maps(before: Any, after: Any) -> list[int]:
    """The indices along axis 1 (feature maps) where any value differs."""
    a = before.numpy() if isinstance(before, Tensor) else np.asarray(before)
    b = after.numpy() if isinstance(after, Tensor) else np.asarray(after)
    moved = (a != b).reshape(a.shape[0], a.shape[1], -1).any(axis=(0, 2))
    return [int(i) for i in np.flatnonzero(moved)]


def with_map_shifted(x: Tensor, index: int) -> Tensor:
    """A copy of ``x`` ``(N, C, ...)`` with ``1 + max|x|`` added to every cell of map ``index``.

    The shift makes every cell of the map positive, so it survives ReLU, max- and average-
    pooling: a map downstream that does not change is one that never reads map ``index``.
    """
    shifted = x.numpy().copy()
    shifted[:, index] += 1 + np.abs(shifted).max()
    return Tensor.wrap(shifted)
