"""Pieces several layer families share: parameter allocation, torch's default weight/bias
initialisation, and the input-size check with its fix-it hint."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import ShapeError
from ..tensor import Tensor
from . import init
from .module import Module, Parameter


def resolve_dtype(dtype: Any) -> np.dtype:
    """A layer's ``dtype`` argument: float32 when None, as torch's default."""
    return np.dtype(np.float32) if dtype is None else np.dtype(dtype)


class _Allocation:
    meta = False


@contextlib.contextmanager
def meta_parameters() -> Iterator[None]:
    """Layers built inside this block get *meta* parameters (shape and dtype, no data, no
    random initialisation), like building under ``torch.device("meta")``: a 138M-parameter
    VGG builds instantly, for counting and shape analysis only."""
    previous = _Allocation.meta
    _Allocation.meta = True
    try:
        yield
    finally:
        _Allocation.meta = previous


def empty_parameter(shape: tuple[int, ...], dtype: Any = None) -> Parameter:
    """An uninitialised parameter (float32 unless ``dtype`` says otherwise); a meta one
    inside :func:`meta_parameters`."""
    if _Allocation.meta:
        return Parameter(Tensor.meta(shape, resolve_dtype(dtype)))
    return Parameter(np.empty(shape, resolve_dtype(dtype)))


def reset_weight_and_bias(weight: Parameter, bias: Parameter | None) -> None:
    """torch's default for Conv and Linear: ``kaiming_uniform_(a=√5)``, i.e. U(−1/√fan_in, 1/√fan_in)
    for the weight, and U(−1/√fan_in, 1/√fan_in) for the bias (fan_in from the weight's shape)."""
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = init._calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        init.uniform_(bias, -bound, bound)


def require_positive(layer: Module, **values: Any) -> None:
    """Every named int (or tuple of ints) must be > 0."""
    for name, value in values.items():
        if isinstance(value, int):  # ints and tuples of ints (the usual case) without NumPy
            bad = value <= 0
        elif isinstance(value, tuple) and all(isinstance(v, int) for v in value):
            bad = any(v <= 0 for v in value)
        else:
            bad = any(v <= 0 for v in np.atleast_1d(value))
        if bad:
            raise ShapeError(f"{name} must be positive, got {value}", layer=type(layer).__name__)


def check_size(layer: Module, got: int, expected: int, argument: str, unit: str = "channels", *,
               source: Tensor | None = None, layout: str | None = None) -> None:
    """The input's channel (feature) count must match the layer's; the hint names the fix.

    ``source`` is the input tensor: one that no op made is the model's own input, with no
    previous layer to blame. ``layout`` (e.g. ``"C×H×W"``) says how an unbatched input was read.
    """
    if got != expected:
        read = ""
        if layout is not None and source is not None:
            read = f" (its input {'×'.join(map(str, source.shape))} has no batch dim and reads as {layout})"
        if source is not None and not source.op:  # no op made it: the model's own input
            hint = f"the input has {_count(got, unit)}; give it {_count(expected, unit)}, or set"
        else:
            hint = f"the previous layer outputs {_count(got, 'maps' if unit == 'channels' else unit)}; set"
        raise ShapeError(f"expected input with {_count(expected, unit)}, got {got}{read}. Hint: {hint} "
                         f"{argument}={got}.", layer=type(layer).__name__)


def _count(n: int, unit: str) -> str:
    """``n`` of a plural ``unit``: "1 channel", "3 channels"."""
    return f"{n} {unit[:-1] if n == 1 else unit}"
