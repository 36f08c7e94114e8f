"""In-place initialisers with torch.nn.init's names, fan computations and gains.

Random values come from :func:`convscope.random.default_generator` (seeded by
:func:`convscope.manual_seed`) unless a ``generator`` is passed. Unlike torch, the random
streams themselves differ: the same seed gives the same distribution, not the same numbers.
Meta tensors (no data) are left untouched.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np

from ..random import default_generator
from ..tensor import Tensor

__all__ = [
    "calculate_gain", "constant_", "kaiming_normal_", "kaiming_uniform_", "normal_", "ones_", "trunc_normal_",
    "uniform_", "xavier_normal_", "xavier_uniform_", "zeros_",
]

_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for ``nonlinearity`` (torch's table): 1 for linear/conv/sigmoid,
    5/3 for tanh, √2 for relu, √(2 / (1 + slope²)) for leaky_relu, 3/4 for selu."""
    if nonlinearity in _LINEAR or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """``fan_in = shape[1]·∏shape[2:]``, ``fan_out = shape[0]·∏shape[2:]`` (torch's rule; for
    a transposed-conv weight ``(C_in, C_out/groups, *k)`` this makes fan_in ``C_out/groups·∏k``)."""
    if tensor.ndim < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions")
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _calculate_correct_fan(tensor: Tensor, mode: str) -> int:
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of ['fan_in', 'fan_out']")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _fill(tensor: Tensor, values: Callable[[tuple[int, ...]], np.ndarray | float]) -> Tensor:
    """Overwrite ``tensor``'s data with ``values(shape)`` in its own dtype (no graph recorded)."""
    if tensor.data is not None:
        tensor.data[...] = values(tensor.shape)
    return tensor


def _draw_dtype(tensor: Tensor) -> np.dtype:
    # Drawing float32 directly halves the time of initialising a large model.
    return tensor.dtype if tensor.dtype in (np.float32, np.float64) else np.dtype(np.float64)


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator: np.random.Generator | None = None) -> Tensor:
    """Fill with values drawn from U(a, b)."""
    gen = generator or default_generator()

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        values = gen.random(shape, dtype=_draw_dtype(tensor))
        values *= b - a
        values += a
        return values

    return _fill(tensor, draw)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0,
            generator: np.random.Generator | None = None) -> Tensor:
    """Fill with values drawn from N(mean, std²)."""
    gen = generator or default_generator()

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        values = gen.standard_normal(shape, dtype=_draw_dtype(tensor))
        values *= std
        values += mean
        return values

    return _fill(tensor, draw)


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator: np.random.Generator | None = None) -> Tensor:
    """Fill with values drawn from N(mean, std²) truncated to [a, b], torch's semantics: ``a``
    and ``b`` are absolute bounds (not multiples of ``std``), and the values have the normal
    density renormalised on [a, b]. With ``std=0.02`` and the default bounds (ConvNeXt's init)
    the bounds are 100 σ away and nothing is cut.

    torch inverts the CDF; this draws by rejection (the same distribution, another stream; exact
    also where torch warns that its mean is more than 2 std from [a, b]): standard normals when
    they land in the interval often enough, else a uniform proposal on a narrow interval or an
    exponential one in a tail (Robert 1995, "Simulation of truncated normal variables").
    """
    if not std >= 0:
        raise ValueError(f"trunc_normal_: std must be non-negative, got {std}")
    if not a <= b:
        raise ValueError(f"trunc_normal_: the interval [a, b] is empty: a={a}, b={b}")
    gen = generator or default_generator()

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        if std == 0 or a == b:
            return np.full(shape, min(max(mean, a), b), _draw_dtype(tensor))
        values = _truncated_standard_normal(gen, shape, (a - mean) / std, (b - mean) / std, _draw_dtype(tensor))
        values *= std
        values += mean
        return np.clip(values, a, b, out=values)  # rounding of the affine map may step over a bound

    return _fill(tensor, draw)


def _normal_mass(lo: float, hi: float) -> float:
    """P(lo ≤ Z ≤ hi) for Z ~ N(0, 1), accurate in either tail."""
    if lo >= 0:
        return 0.5 * (math.erfc(lo / math.sqrt(2)) - math.erfc(hi / math.sqrt(2)))
    if hi <= 0:
        return _normal_mass(-hi, -lo)
    return 0.5 * (math.erf(hi / math.sqrt(2)) - math.erf(lo / math.sqrt(2)))


def _truncated_standard_normal(gen: np.random.Generator, shape: tuple[int, ...], lo: float, hi: float,
                               dtype: np.dtype) -> np.ndarray:
    """Draws of Z ~ N(0, 1) conditioned on lo ≤ Z ≤ hi (lo < hi), by rejection: every round
    redraws only the rejected cells, and the proposal is chosen so that it is accepted with
    probability at least about a quarter whatever the interval."""
    if hi <= 0:  # the left tail is the mirror of the right one
        return -_truncated_standard_normal(gen, shape, -hi, -lo, dtype)
    count = math.prod(shape)
    if _normal_mass(lo, hi) >= 0.25:
        def propose(n: int) -> tuple[np.ndarray, np.ndarray]:
            z = gen.standard_normal(n, dtype=dtype)
            return z, (z >= lo) & (z <= hi)
    elif lo >= 0 and hi - lo >= 2 * math.sqrt(math.e) / (lo + math.sqrt(lo * lo + 4)) * math.exp(
            (lo * lo - lo * math.sqrt(lo * lo + 4)) / 4):
        rate = (lo + math.sqrt(lo * lo + 4)) / 2  # Robert's optimal exponential rate for the tail beyond lo

        def propose(n: int) -> tuple[np.ndarray, np.ndarray]:
            z = lo + gen.standard_exponential(n) / rate
            return z, (z <= hi) & (gen.random(n) <= np.exp(-0.5 * (z - rate) ** 2))
    else:  # a narrow interval: uniform proposals, weighted by the density relative to its peak in [lo, hi]
        peak = lo if lo > 0 else 0.0

        def propose(n: int) -> tuple[np.ndarray, np.ndarray]:
            z = gen.uniform(lo, hi, n)
            return z, gen.random(n) <= np.exp(0.5 * (peak * peak - z * z))
    out, accepted = propose(count)
    out = out.astype(dtype, copy=False)
    todo = np.flatnonzero(~accepted)
    while todo.size:
        z, accepted = propose(todo.size)
        out[todo[accepted]] = z[accepted]
        todo = todo[~accepted]
    return out.reshape(shape)


def constant_(tensor: Tensor, val: float) -> Tensor:
    return _fill(tensor, lambda shape: val)


def ones_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 1.0)


def zeros_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 0.0)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator: np.random.Generator | None = None) -> Tensor:
    """U(−a, a) with ``a = gain·√(6 / (fan_in + fan_out))`` (Glorot & Bengio, 2010)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator: np.random.Generator | None = None) -> Tensor:
    """N(0, std²) with ``std = gain·√(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)), generator)


def _kaiming_std(tensor: Tensor, a: float, mode: str, nonlinearity: str) -> float | None:
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return None
    return calculate_gain(nonlinearity, a) / math.sqrt(_calculate_correct_fan(tensor, mode))


def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator: np.random.Generator | None = None) -> Tensor:
    """U(−b, b) with ``b = √3·gain / √fan`` (He et al., 2015). With ``a=√5`` (the default
    layer init) ``b = 1/√fan_in``."""
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    if std is None:
        return tensor
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator: np.random.Generator | None = None) -> Tensor:
    """N(0, std²) with ``std = gain / √fan``."""
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    return tensor if std is None else normal_(tensor, 0.0, std, generator)
