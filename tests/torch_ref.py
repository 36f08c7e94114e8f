"""Differential testing against PyTorch: run the same op on the same inputs in both
engines and compare outputs and every input gradient.

float64 checks exact semantics (relative 1e-10 of the output's scale); float32 checks
ordinary tolerances.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch

import convscope as cs

TOLERANCE = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 2e-5}


def assert_close(got: np.ndarray, want: np.ndarray, dtype: Any = np.float64, what: str = "") -> None:
    """Equal within ``TOLERANCE[dtype]`` relative to the expected array's largest magnitude;
    NaNs must sit in the same places."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    tol = TOLERANCE[np.dtype(dtype)]
    finite = np.isfinite(want)
    scale = max(1.0, float(np.abs(want[finite]).max())) if finite.any() else 1.0
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what, equal_nan=True)


def _convert(value: Any, dtype: Any, grad: bool) -> tuple[Any, Any]:
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            arr = value.astype(dtype)
            return cs.tensor(arr, requires_grad=grad), torch.tensor(arr, requires_grad=grad)
        return cs.tensor(value), torch.from_numpy(value.copy())
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], np.ndarray):
        pairs = [_convert(v, dtype, grad) for v in value]
        return type(value)(p[0] for p in pairs), type(value)(p[1] for p in pairs)
    return value, value


def _leaves(values: Sequence[Any]) -> list[tuple[Any, Any]]:
    out = []
    for c, t in values:
        if isinstance(c, cs.Tensor):
            out.append((c, t))
        elif isinstance(c, (list, tuple)):
            out.extend((ci, ti) for ci, ti in zip(c, t) if isinstance(ci, cs.Tensor))
    return out


def compare(
    cs_fn: Callable,
    torch_fn: Callable,
    args: Sequence[Any],
    kwargs: dict | None = None,
    *,
    dtype: Any = np.float64,
    grad: bool = True,
    seed: int = 0,
) -> tuple[Any, Any]:
    """Run ``cs_fn(*args, **kwargs)`` and ``torch_fn(...)`` on the same data.

    Float ndarrays in ``args`` become differentiable tensors (in ``dtype``); integer
    arrays stay integer. Compares the output (for a tuple output, the first element;
    the others must be equal exactly), then back-propagates the same random upstream
    gradient through both and compares every float input's gradient.
    Returns the two raw outputs.
    """
    kwargs = kwargs or {}
    pairs = [_convert(a, dtype, grad) for a in args]
    c_out = cs_fn(*[p[0] for p in pairs], **kwargs)
    t_out = torch_fn(*[p[1] for p in pairs], **kwargs)
    c_main, t_main = (c_out[0], t_out[0]) if isinstance(c_out, tuple) else (c_out, t_out)
    assert c_main.dtype == np.dtype(t_main.detach().numpy().dtype), f"dtype {c_main.dtype} vs {t_main.dtype}"
    assert_close(c_main.numpy(), t_main.detach().numpy(), dtype, "output")
    if isinstance(c_out, tuple):
        for i, (c, t) in enumerate(zip(c_out[1:], t_out[1:]), 1):
            np.testing.assert_array_equal(c.numpy(), t.numpy(), err_msg=f"output {i}")
    leaves = _leaves(pairs)
    if grad and leaves and t_main.requires_grad:
        upstream = np.random.default_rng(seed).standard_normal(t_main.shape).astype(dtype)
        c_main.backward(upstream)
        t_main.backward(torch.from_numpy(upstream))
        for i, (c, t) in enumerate(leaves):
            if t.grad is None:
                assert c.grad is None or not np.any(c.grad), f"grad {i}: torch has none"
                continue
            assert c.grad is not None, f"grad {i}: convscope has none"
            assert_close(c.grad, t.grad.numpy(), dtype, f"grad of input {i}")
    return c_out, t_out


def both_refuse(cs_fn: Callable, torch_fn: Callable, args: Sequence[Any], kwargs: dict | None = None,
                match: str | None = None) -> cs.ShapeError:
    """Both engines refuse the configuration; convscope with a :class:`cs.ShapeError`."""
    kwargs = kwargs or {}
    pairs = [_convert(a, np.float64, False) for a in args]
    with pytest.raises(Exception):  # noqa: B017 - torch raises RuntimeError or ValueError
        torch_fn(*[p[1] for p in pairs], **kwargs)
    with pytest.raises(cs.ShapeError, match=match) as info:
        cs_fn(*[p[0] for p in pairs], **kwargs)
    return info.value


def pool_input(rng: np.random.Generator, shape: tuple, kind: str) -> np.ndarray:
    """Random input; "ties" has many equal values, "nan"/"inf" sprinkle non-finite cells."""
    if kind == "ties":
        return rng.integers(-2, 3, shape).astype(np.float64)
    x = rng.standard_normal(shape)
    if kind == "nan":
        x[rng.random(shape) < 0.1] = np.nan
    elif kind == "inf":
        x[rng.random(shape) < 0.15] = -np.inf
        x[rng.random(shape) < 0.05] = np.inf
    return x


def same_or_both_refuse(cs_fn: Callable, torch_fn: Callable, arrays: Sequence[Any]) -> None:
    """Run both engines on the same (integer or bool) arrays, kept in their dtype: either both
    refuse (convscope with a ShapeError or TypeError naming the first array's dtype), or both
    give the same dtype and values. A meta input gives the real result's dtype, or the same error.

    Arrays go in as they are (``Tensor.wrap``: an int32 or uint8 array keeps its dtype);
    anything else in ``arrays`` (a size, None) is passed to both unchanged."""
    wrap = [cs.Tensor.wrap(a) if isinstance(a, np.ndarray) else a for a in arrays]
    meta = [cs.Tensor.meta(a.shape, a.dtype) if isinstance(a, np.ndarray) else a for a in arrays]
    dtype = next(a.dtype for a in arrays if isinstance(a, np.ndarray))
    try:
        want = torch_fn(*[torch.from_numpy(a.copy()) if isinstance(a, np.ndarray) else a for a in arrays])
    except (RuntimeError, NotImplementedError, ValueError, TypeError):
        with pytest.raises((cs.ShapeError, TypeError), match=dtype.name) as info:
            cs_fn(*wrap)
        with pytest.raises(info.type, match=dtype.name):
            cs_fn(*meta)
        return
    got, got_meta = cs_fn(*wrap), cs_fn(*meta)
    got, got_meta, want = (v[0] if isinstance(v, tuple) else v for v in (got, got_meta, want))
    want = want.numpy()
    assert (got.dtype, got.shape) == (want.dtype, want.shape), f"{got.dtype}{got.shape}, torch {want.dtype}{want.shape}"
    assert (got_meta.dtype, got_meta.shape) == (got.dtype, got.shape), f"meta gives {got_meta.dtype}{got_meta.shape}"
    if want.dtype.kind == "f":
        assert_close(got.numpy(), want, want.dtype, "output")
    else:
        np.testing.assert_array_equal(got.numpy(), want)
