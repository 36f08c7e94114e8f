"""Pooling (max, average, LP, adaptive, max-unpool) against torch.nn.functional.

Configurations come from seeded generators (one registry per op family) and run through
``torch_ref.compare``: outputs, indices (exactly) and input gradients, float64 for exact
semantics plus a float32 subset. Every generated configuration also checks that the op on
a meta tensor and the pure shape rule give the real output's shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import convscope as cs
import convscope.functional as F
from torch_ref import both_refuse, compare, pool_input

DATA_KINDS = ("normal", "ties", "nan", "inf")


def _batch(rng: np.random.Generator, spatial: tuple) -> tuple:
    """Batched (N, C, ...) with N >= 1, or unbatched (C, ...)."""
    channels = int(rng.integers(1, 4))
    if rng.random() < 0.25:
        return (channels,) + spatial
    return (int(rng.integers(1, 4)), channels) + spatial


def _arg(rng: np.random.Generator, values: list[int]) -> Any:
    """A per-dim argument as torch users write it: an int when all dims agree, else a tuple."""
    if len(set(values)) == 1 and rng.random() < 0.7:
        return values[0]
    return tuple(values)


@dataclass
class Case:
    """One op configuration: ``op`` (torch name), input shape, data kind, keyword args."""

    op: str
    shape: tuple
    data: str
    kwargs: dict = field(default_factory=dict)
    seed: int = 0

    def input(self, dtype: Any = np.float64) -> np.ndarray:
        return pool_input(np.random.default_rng(self.seed), self.shape, self.data).astype(dtype)

    def __str__(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.op}{list(self.shape)}-{self.data}-{args}"


# --- sample registries --------------------------------------------------------------------------
def _has_window_without_real_cells(spatial: list, kernel: list, stride: list, padding: list, dilation: list,
                                   ceil_mode: bool) -> bool:
    """A dilated window may hop over the whole input, reading padding only."""
    for n, k, s, p, d in zip(spatial, kernel, stride, padding, dilation, strict=True):
        starts = np.arange(F.pool_geometry((1, 1, n), k, s, p, d, ceil_mode, op="max_pool1d").out[0]) * s - p
        cells = starts[:, None] + np.arange(k) * d
        if not ((cells >= 0) & (cells < n)).any(axis=1).all():
            return True
    return False


def pool_cases(count: int, seed: int) -> list[Case]:
    """Valid max/avg pool configurations: odd sizes, stride > kernel, dilation, padding up to
    kernel // 2, ceil mode (with and without the dropped last window), both divisor rules,
    divisor_override, N = 1 and unbatched inputs, ties/NaN/inf data."""
    rng = np.random.default_rng(seed)
    cases: list[Case] = []
    while len(cases) < count:
        nd = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
        kind = "max" if rng.random() < 0.55 else "avg"
        kmax, extra = (4, 6) if nd < 3 else (3, 3)
        kernel = [int(rng.integers(1, kmax + 1)) for _ in range(nd)]
        dilation = [int(rng.integers(1, 4 if nd < 3 else 3)) if kind == "max" and rng.random() < 0.4 else 1
                    for _ in range(nd)]
        padding = [int(rng.integers(0, k // 2 + 1)) for k in kernel]
        stride = [int(rng.integers(1, 6)) for _ in range(nd)]
        ceil_mode = bool(rng.random() < 0.5)
        spatial = []
        for k, d, p in zip(kernel, dilation, padding, strict=True):
            low = max(d * (k - 1) + 1 - 2 * p, 1, k if kind == "avg" and nd == 3 else 1)
            spatial.append(low + int(rng.integers(0, extra + 1)))
        if _has_window_without_real_cells(spatial, kernel, stride, padding, dilation, ceil_mode):
            continue  # torch's backward writes out of bounds there (see test_window_without_real_cells)
        kwargs: dict[str, Any] = {"kernel_size": _arg(rng, kernel)}
        if rng.random() < 0.7:
            kwargs["stride"] = _arg(rng, stride)
        if any(padding) or rng.random() < 0.3:
            kwargs["padding"] = _arg(rng, padding)
        kwargs["ceil_mode"] = ceil_mode
        if kind == "max":
            if any(d > 1 for d in dilation):
                kwargs["dilation"] = _arg(rng, dilation)
            kwargs["return_indices"] = bool(rng.random() < 0.5)
        else:
            kwargs["count_include_pad"] = bool(rng.random() < 0.5)
            if nd > 1 and rng.random() < 0.2:
                kwargs["divisor_override"] = int(rng.choice([-3, -1, 1, 2, 5, 9]))
        data = str(rng.choice(DATA_KINDS, p=[0.45, 0.3, 0.15, 0.1]))
        cases.append(Case(f"{kind}_pool{nd}d", _batch(rng, tuple(spatial)), data, kwargs, seed + len(cases)))
    return cases


def adaptive_cases(count: int, seed: int) -> list[Case]:
    """Adaptive pools with In not divisible by Out, Out > In, Out = 0/1 and None entries."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        nd = int(rng.choice([1, 2, 3]))
        kind = "max" if rng.random() < 0.5 else "avg"
        spatial = tuple(int(rng.integers(1, 10 if nd < 3 else 7)) for _ in range(nd))
        sizes: list[Any] = [int(rng.integers(0 if rng.random() < 0.05 else 1, 2 * n + 2)) for n in spatial]
        if nd > 1 and rng.random() < 0.3:
            sizes[int(rng.integers(nd))] = None
        output_size = sizes[0] if nd == 1 and rng.random() < 0.5 else tuple(sizes)
        kwargs: dict[str, Any] = {"output_size": output_size}
        if kind == "max":
            kwargs["return_indices"] = bool(rng.random() < 0.5)
        data = str(rng.choice(DATA_KINDS, p=[0.5, 0.3, 0.1, 0.1]))
        cases.append(Case(f"adaptive_{kind}_pool{nd}d", _batch(rng, spatial), data, kwargs, seed + i))
    return cases


def lp_cases(seed: int) -> list[Case]:
    """LP pools for p = 1, 2, 3 (any sign), p = 1.5 and ±inf, with stride and ceil mode."""
    rng = np.random.default_rng(seed)
    cases = []
    for i, (nd, p) in enumerate((nd, p) for nd in (1, 2, 3) for p in (1, 2, 3, 1.5, math.inf, -math.inf)):
        kernel = [int(rng.integers(1, 4)) for _ in range(nd)]
        spatial = tuple(k + int(rng.integers(0, 5)) for k in kernel)
        kwargs: dict[str, Any] = {"norm_type": p, "kernel_size": kernel[0] if nd == 1 else tuple(kernel),
                                  "ceil_mode": bool(i % 2)}
        if i % 3:
            stride = [int(rng.integers(1, 4)) for _ in range(nd)]
            kwargs["stride"] = stride[0] if nd == 1 else tuple(stride)
        data = "positive" if p == 1.5 else "normal"
        cases.append(Case(f"lp_pool{nd}d", _batch(rng, spatial), data, kwargs, seed + i))
    return cases


POOL_CASES = pool_cases(180, seed=1000)
ADAPTIVE_CASES = adaptive_cases(48, seed=2000)
LP_CASES = lp_cases(seed=3000)


def _positional(case: Case) -> tuple[list, dict]:
    """lp_pool takes norm_type before the kernel; torch's lp_pool1d wants a plain int kernel."""
    kwargs = dict(case.kwargs)
    if case.op.startswith("lp_pool"):
        return [kwargs.pop("norm_type")], kwargs
    return [], kwargs


def _run(case: Case, dtype: Any = np.float64) -> tuple:
    """compare() the op with torch, then check the meta tensor's shape; returns the output shape."""
    x = case.input(dtype)
    if case.data == "positive":
        x = np.abs(x) + 0.1
    extra, kwargs = _positional(case)
    cs_fn, torch_fn = getattr(F, case.op), getattr(TF, case.op)
    sizes = np.atleast_1d(np.array(kwargs.get("output_size", 1), dtype=object))
    # torch's adaptive backward refuses an empty output (test_empty_adaptive_output)
    grad = 0 not in sizes.tolist()
    c_out, _ = compare(lambda t: cs_fn(t, *extra, **kwargs), lambda t: torch_fn(t, *extra, **kwargs), [x],
                       dtype=dtype, seed=case.seed, grad=grad)
    real = c_out[0] if isinstance(c_out, tuple) else c_out
    meta = cs_fn(cs.Tensor.meta(case.shape, dtype), *extra, **kwargs)
    meta_main = meta[0] if isinstance(meta, tuple) else meta
    assert meta_main.is_meta and meta_main.shape == real.shape and meta_main.dtype == real.dtype
    if isinstance(meta, tuple):
        assert meta[1].shape == real.shape and meta[1].dtype == np.int64
    return real.shape


GEOMETRY_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")


def _geometry(case: Case) -> F.PoolGeometry:
    return F.pool_geometry(case.shape, op=case.op, **{k: v for k, v in case.kwargs.items() if k in GEOMETRY_ARGS})


# --- differential sweeps -------------------------------------------------------------------------
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pool_matches_torch(case: Case) -> None:
    shape = _run(case)
    rule_args = {k: v for k, v in case.kwargs.items() if k in GEOMETRY_ARGS}
    assert F.pool_output_shape(case.shape, op=case.op, **rule_args) == shape


def test_pool_sweep_covers_the_edge_cases() -> None:
    """The generated sweep really contains the cases it claims to cover."""
    geos = [_geometry(c) for c in POOL_CASES]
    kw = [c.kwargs for c in POOL_CASES]

    def drops_last_window(g: F.PoolGeometry) -> bool:
        ceil = [-(-(n + 2 * p - d * (k - 1) - 1) // s) + 1
                for n, k, s, p, d in zip(g.input, g.kernel, g.stride, g.padding, g.dilation, strict=True)]
        return ceil != list(g.out)

    def overhangs(g: F.PoolGeometry) -> bool:
        return any(g.extra)

    assert sum(any(s > k for s, k in zip(g.stride, g.kernel, strict=True)) for g in geos) >= 20
    assert sum(any(d > 1 for d in g.dilation) for g in geos) >= 10
    assert sum(any(g.padding) for g in geos) >= 30
    assert sum(k["ceil_mode"] and drops_last_window(g) for k, g in zip(kw, geos, strict=True)) >= 3
    assert sum(k["ceil_mode"] and overhangs(g) for k, g in zip(kw, geos, strict=True)) >= 10
    assert sum(k.get("divisor_override") is not None for k in kw) >= 5
    assert sum(k.get("count_include_pad") is False for k in kw) >= 20
    assert sum(len(c.shape) == int(c.op[-2]) + 1 for c in POOL_CASES) >= 20
    assert sum(len(c.shape) == int(c.op[-2]) + 2 and c.shape[0] == 1 for c in POOL_CASES) >= 20
    assert {c.op for c in POOL_CASES} == {f"{k}_pool{n}d" for k in ("max", "avg") for n in (1, 2, 3)}
    assert {c.data for c in POOL_CASES} == set(DATA_KINDS)


@pytest.mark.parametrize("case", POOL_CASES[::6], ids=str)
def test_pool_matches_torch_float32(case: Case) -> None:
    _run(case, np.float32)


@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=str)
def test_adaptive_pool_matches_torch(case: Case) -> None:
    _run(case)


@pytest.mark.parametrize("case", ADAPTIVE_CASES[::4], ids=str)
def test_adaptive_pool_matches_torch_float32(case: Case) -> None:
    _run(case, np.float32)


@pytest.mark.parametrize("case", LP_CASES, ids=str)
def test_lp_pool_matches_torch(case: Case) -> None:
    _run(case)


@pytest.mark.parametrize("case", LP_CASES[::3], ids=str)
def test_lp_pool_matches_torch_float32(case: Case) -> None:
    _run(case, np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("case", pool_cases(1200, seed=5000) + adaptive_cases(300, seed=6000), ids=str)
def test_long_sweep(case: Case) -> None:
    _run(case)


# --- explicit semantics ----------------------------------------------------------------------------
def _pair(op: str, x: np.ndarray, *args: Any, **kwargs: Any) -> tuple:
    """compare() one call of ``op`` (positional args after the input) and return (convscope, torch)."""
    return compare(lambda t: getattr(F, op)(t, *args, **kwargs), lambda t: getattr(TF, op)(t, *args, **kwargs), [x])


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_ties_go_to_the_first_element(nd: int) -> None:
    """Constant input, overlapping padded windows: every window reports its first real cell,
    and the gradient lands there (hand-computed for kernel 3, stride 1, padding 1 on 5 cells)."""
    x = np.full((1, 1) + (5,) * nd, 7.0)
    (out, index), _ = _pair(f"max_pool{nd}d", x, 3, 1, 1, return_indices=True)
    first = np.array([0, 0, 1, 2, 3])  # window o covers cells o-1..o+1; its first real cell
    want = np.zeros((5,) * nd, np.int64)
    for axis in range(nd):
        want = want * 5 + first.reshape((-1,) + (1,) * (nd - 1 - axis))
    np.testing.assert_array_equal(index.numpy()[0, 0], want)
    x_cs = cs.tensor(x, requires_grad=True)
    getattr(F, f"max_pool{nd}d")(x_cs, 3, 1, 1).sum().backward()
    per_dim = np.array([2.0, 1, 1, 1, 0])
    want_grad = np.ones(())
    for _ in range(nd):
        want_grad = np.multiply.outer(want_grad, per_dim)
    np.testing.assert_array_equal(x_cs.grad[0, 0], want_grad)


def test_nan_propagates_and_reports_the_last_nan() -> None:
    nan = np.nan
    x = np.array([[[1.0, nan, 3.0, nan, 0.0, 5.0, nan, nan]]])
    expected = {2: ([nan, nan, 5.0, nan], [1, 3, 5, 7]), 3: ([nan, nan], [1, 3]), 4: ([nan, nan], [3, 7])}
    for k, (values, indices) in expected.items():
        (out, index), _ = _pair("max_pool1d", x, k, return_indices=True)
        np.testing.assert_array_equal(out.numpy()[0, 0], values)
        np.testing.assert_array_equal(index.numpy()[0, 0], indices)
    _pair("max_pool2d", x.reshape(1, 1, 2, 4), 2, return_indices=True)
    _pair("max_pool3d", x.reshape(1, 1, 2, 2, 2), 2, return_indices=True)
    avg, _ = _pair("avg_pool1d", x, 2)
    np.testing.assert_array_equal(np.isnan(avg.numpy()[0, 0]), [True, True, False, True])
    for op in ("adaptive_max_pool1d", "adaptive_avg_pool1d"):
        _pair(op, x, 3)
    (out, index), _ = _pair("adaptive_max_pool1d", x, 3, return_indices=True)
    np.testing.assert_array_equal(index.numpy()[0, 0], [1, 3, 7])  # bins [0,3), [2,6), [5,8)


def test_windows_of_minus_inf_report_their_first_real_cell() -> None:
    x = np.full((1, 1, 4), -np.inf)
    (out, index), _ = _pair("max_pool1d", x, 2, padding=1, return_indices=True)
    np.testing.assert_array_equal(index.numpy()[0, 0], [0, 1, 3])
    _pair("max_pool2d", x.reshape(1, 1, 2, 2), 2, padding=1, return_indices=True)
    _pair("adaptive_max_pool2d", x.reshape(1, 1, 2, 2), (1, 1), return_indices=True)


@pytest.mark.parametrize("nd", [2, 3])
def test_max_pool_of_integers_like_torch(nd: int) -> None:
    """Integer inputs (torch pools them in 2-d and 3-d): the padding is the type's minimum, not
    −∞, so windows full of it, extremes included, still give torch's values and indices."""
    info = np.iinfo(np.int64)
    x = np.random.default_rng(0).integers(-50, 50, (2, 3) + (7,) * nd)
    x.flat[::5] = info.min  # as low as the padding
    x.flat[1::7] = info.max
    op = f"max_pool{nd}d"
    out, index = getattr(F, op)(cs.tensor(x), 3, 2, 1, return_indices=True)
    expected, expected_index = getattr(TF, op)(torch.from_numpy(x), 3, 2, 1, return_indices=True)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out.numpy(), expected.numpy())
    np.testing.assert_array_equal(index.numpy(), expected_index.numpy())


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_window_without_real_cells(nd: int) -> None:
    """Kernel 2 with dilation 3 and padding 1 over 2 cells reads only padding: torch yields
    −∞ and index 2 (past the plane), as we do. Its backward then writes out of bounds (into
    the next plane, or corrupting memory), so torch's gradient is not compared: ours drops it."""
    x = np.array([1.0, 2.0]).reshape((1, 1) + (1,) * (nd - 1) + (2,))
    ones = [1] * (nd - 1)
    kwargs = {"dilation": ones + [3], "padding": [0] * (nd - 1) + [1], "return_indices": True}
    op = f"max_pool{nd}d"
    (out, index), _ = compare(lambda t: getattr(F, op)(t, ones + [2], **kwargs),
                              lambda t: getattr(TF, op)(t, ones + [2], **kwargs), [x], grad=False)
    assert out.numpy().ravel().tolist() == [-np.inf] and index.numpy().ravel().tolist() == [2]
    x_cs = cs.tensor(x, requires_grad=True)
    getattr(F, op)(x_cs, ones + [2], **kwargs)[0].sum().backward()
    assert not x_cs.grad.any()


def test_ceil_mode_drops_a_window_starting_in_the_right_padding() -> None:
    x = np.arange(1.0, 6.0).reshape(1, 1, 5)
    # floor((5 + 2 - 2) / 2) + 1 = 3; ceil gives 4, but window 3 would start at padded cell 6 >= 5 + 1: dropped
    assert F.pool_output_shape(x.shape, 2, 2, 1, ceil_mode=True, op="max_pool1d") == (1, 1, 3)
    for op in ("max_pool1d", "avg_pool1d"):
        out, _ = _pair(op, x, 2, 2, 1, ceil_mode=True)
        assert out.shape == (1, 1, 3)
    # length 6, kernel 3, stride 2, padding 1: ceil keeps a 4th window that overhangs the padding
    ones = np.ones((1, 1, 6))
    out, _ = _pair("avg_pool1d", ones, 3, 2, 1, ceil_mode=True)
    np.testing.assert_allclose(out.numpy()[0, 0], [2 / 3, 1, 1, 1 / 2])  # divisor clipped to [-1, 7): 2
    out, _ = _pair("avg_pool1d", ones, 3, 2, 1, ceil_mode=True, count_include_pad=False)
    np.testing.assert_allclose(out.numpy()[0, 0], [1, 1, 1, 1])
    out, _ = _pair("avg_pool2d", np.ones((1, 6, 6)), 3, 2, 1, ceil_mode=True, divisor_override=4)
    np.testing.assert_allclose(out.numpy()[0, 0], [4 / 4, 6 / 4, 6 / 4, 2 / 4])  # real cells per dim: 2, 3, 3, 1


def test_ceil_mode_window_wider_than_the_input() -> None:
    """torch accepts kernel 3 over 2 cells in ceil mode (one window, overhanging)."""
    x = np.array([[[1.0, 2.0]]])
    for op in ("max_pool1d", "avg_pool1d"):
        _pair(op, x, 3, 2, ceil_mode=True)
    _pair("lp_pool1d", x, 2, 3, 2, ceil_mode=True)
    assert F.pool_output_shape((1, 1, 2), 3, 2, ceil_mode=True, op="avg_pool1d") == (1, 1, 1)


@pytest.mark.parametrize("op", ["avg_pool2d", "avg_pool3d", "max_pool2d"])
def test_a_stride_far_past_the_input_costs_nothing(op: str) -> None:
    """One window per dim whatever the stride; the compiled average pool kept a row buffer per
    stride phase, so a stride of 10⁹ ran out of memory (torch: one window)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *(7,) * int(op[-2])))
    _pair(op, x, 3, 10 ** 9)
    _pair(op, x, 3, (2,) + (10 ** 9,) * (int(op[-2]) - 1), padding=1, ceil_mode=True)


def test_lp_pool_zero_window_has_zero_gradient() -> None:
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 2:, 2:] = [[1.0, -2.0], [0.5, 3.0]]
    for p in (1, 2, 3):
        _pair("lp_pool2d", x, p, 2)
        x_cs = cs.tensor(x, requires_grad=True)
        F.lp_pool2d(x_cs, p, 2).sum().backward()
        assert np.isfinite(x_cs.grad).all() and not x_cs.grad[0, 0, :2].any() and x_cs.grad[0, 0, 3, 3] > 0


@pytest.mark.parametrize("p", [1, 2, 3, -1])
def test_lp_pool_nan_window_gradient(p: float) -> None:
    """A window holding NaN: torch's sign(a)·relu(|a|) has gradient sign(a)² = 0 there (sign(NaN)
    is 0), so with p = 1 (slope 1) the window's cells get gradient 0; other p pass NaN on."""
    x = np.array([[[1.0, np.nan, 2.0, -1.0, 0.5, 3.0, 0.0, 0.0]]])
    _pair("lp_pool1d", x, p, 3, 3, ceil_mode=True)
    _pair("lp_pool2d", x.reshape(1, 2, 4), p, (1, 2))


def test_empty_batch() -> None:
    x = np.zeros((0, 2, 5, 5))
    for op, args in (("max_pool2d", (2,)), ("avg_pool2d", (3, 2, 1)), ("adaptive_avg_pool2d", ((2, 3),)),
                     ("adaptive_max_pool2d", ((2, 3),))):
        out = getattr(F, op)(cs.tensor(x), *args)
        assert out.shape == getattr(TF, op)(torch.from_numpy(x), *args).shape


@pytest.mark.parametrize("op", ["adaptive_avg_pool1d", "adaptive_max_pool2d", "adaptive_avg_pool3d"])
def test_empty_adaptive_output(op: str) -> None:
    """Output size 0 is allowed; its gradient is zero (torch's backward refuses it instead)."""
    nd = int(op[-2])
    x = np.random.default_rng(0).standard_normal((2, 3) + (4,) * nd)
    size = (0,) + (2,) * (nd - 1)
    compare(lambda t: getattr(F, op)(t, size), lambda t: getattr(TF, op)(t, size), [x], grad=False)
    x_cs = cs.tensor(x, requires_grad=True)
    out = getattr(F, op)(x_cs, size)
    out.backward(np.zeros(out.shape))
    assert x_cs.grad.shape == x.shape and not x_cs.grad.any()


def test_gradient_flows_only_through_the_pooled_input() -> None:
    x = cs.tensor(np.arange(16.0).reshape(1, 1, 4, 4), requires_grad=True)
    out, index = F.max_pool2d(x, 2, return_indices=True)
    assert out.requires_grad and not index.requires_grad and index.dtype == np.int64
    with cs.no_grad():
        assert not F.avg_pool2d(x, 2).requires_grad


# --- max unpooling --------------------------------------------------------------------------------
def unpool_cases(count: int, seed: int) -> list[Case]:
    """Max-pool configurations whose indices fit the unpool output (default or explicit size)."""
    rng = np.random.default_rng(seed)
    cases: list[Case] = []
    while len(cases) < count:
        nd = int(rng.choice([1, 2, 3]))
        kernel = [int(rng.integers(1, 4)) for _ in range(nd)]
        stride = [int(rng.integers(1, 4)) for _ in range(nd)]
        padding = [int(rng.integers(0, k // 2 + 1)) for k in kernel]
        spatial = tuple(k + int(rng.integers(0, 5)) for k in kernel)
        out = [(n + 2 * p - k) // s + 1 for n, k, s, p in zip(spatial, kernel, stride, padding, strict=True)]
        default = [(o - 1) * s + k - 2 * p for o, s, k, p in zip(out, stride, kernel, padding, strict=True)]
        kwargs: dict[str, Any] = {"kernel_size": tuple(kernel), "stride": tuple(stride), "padding": tuple(padding)}
        if all(d - s < n < d + s for d, s, n in zip(default, stride, spatial, strict=True)):
            shape = _batch(rng, spatial)
            kwargs["output_size"] = shape if rng.random() < 0.3 else spatial  # nd + 2 entries or nd
        elif all(d >= n for d, n in zip(default, spatial, strict=True)):
            shape = _batch(rng, spatial)
        else:
            continue
        cases.append(Case(f"max_unpool{nd}d", shape, "normal", kwargs, seed + len(cases)))
    return cases


UNPOOL_CASES = unpool_cases(30, seed=4000)


@pytest.mark.parametrize("case", UNPOOL_CASES, ids=str)
def test_max_unpool_round_trip(case: Case) -> None:
    nd = int(case.op[-2])
    kwargs = dict(case.kwargs)
    if isinstance(kwargs.get("output_size"), tuple) and len(kwargs["output_size"]) == len(case.shape) == nd + 1:
        kwargs["output_size"] = kwargs["output_size"][1:]  # unbatched: keep the nd spatial sizes
    pool_args = {k: kwargs[k] for k in ("kernel_size", "stride", "padding")}
    x = case.input()
    pooled, index = TF.__dict__[f"max_pool{nd}d"](torch.from_numpy(x), return_indices=True, **pool_args)
    c_out, t_out = compare(lambda v, i: getattr(F, case.op)(v, i, **kwargs),
                           lambda v, i: getattr(TF, case.op)(v, i, **kwargs), [pooled.numpy(), index.numpy()],
                           seed=case.seed)
    meta = getattr(F, case.op)(cs.Tensor.meta(pooled.shape, np.float64), cs.Tensor.meta(index.shape, np.int64),
                               **kwargs)
    assert meta.shape == c_out.shape
    # pooling the unpooled map again finds the same maxima where windows do not overlap and values are positive
    if all(s >= k for s, k in zip(np.broadcast_to(pool_args["stride"], nd),
                                  np.broadcast_to(pool_args["kernel_size"], nd), strict=True)):
        positive = cs.tensor(np.abs(pooled.numpy()) + 1)
        unpooled = getattr(F, case.op)(positive, cs.tensor(index.numpy()), **kwargs)
        again = getattr(F, f"max_pool{nd}d")(unpooled, **pool_args)
        np.testing.assert_array_equal(again.numpy(), positive.numpy())


def test_max_unpool_places_values_at_their_indices() -> None:
    x = np.array([[[4.0, 8.0, 5.0]]])
    index = np.array([[[1, 2, 5]]])
    out, _ = compare(lambda v, i: F.max_unpool1d(v, i, 2), lambda v, i: TF.max_unpool1d(v, i, 2), [x, index])
    np.testing.assert_array_equal(out.numpy()[0, 0], [0, 4, 8, 0, 0, 5])


# --- error parity ------------------------------------------------------------------------------------
ERROR_CASES = [
    ("max_pool2d", (10,), {"kernel_size": 2}, r"expected a 3 or 4-d input \(N, C, H, W\) or \(C, H, W\), got shape"),
    ("avg_pool1d", (1, 2, 3, 10), {"kernel_size": 2}, r"expected a 2 or 3-d input"),
    ("max_pool3d", (1, 1, 2, 10, 10, 10), {"kernel_size": 2}, r"expected a 4 or 5-d input"),
    ("max_pool2d", (1, 1, 10, 10), {"kernel_size": 3, "padding": 2},
     r"padding must be at most half the kernel: kernel 3 allows padding 1, got 2"),
    # torch limits padding by the kernel, not the dilated kernel (span 5 would allow 2)
    ("max_pool1d", (1, 1, 10), {"kernel_size": 3, "padding": 2, "dilation": 2},
     r"kernel 3 allows padding 1, got 2"),
    ("max_pool3d", (1, 1, 6, 6, 6), {"kernel_size": 3, "padding": (0, 2, 0), "dilation": 2},
     r"kernel 3 allows padding 1, got 2"),
    ("avg_pool2d", (1, 1, 10, 10), {"kernel_size": (3, 2), "padding": (1, 2)}, r"kernel 2 allows padding 1, got 2"),
    ("max_pool1d", (1, 1, 2), {"kernel_size": 3}, r"max_pool1d: kernel 3 spans more than padded input 2$"),
    ("avg_pool2d", (1, 1, 4, 2), {"kernel_size": 3, "padding": 0}, r"kernel 3 spans more than padded input 2 in dim 1"),
    ("max_pool2d", (1, 1, 5, 5), {"kernel_size": 3, "dilation": 3},
     r"kernel 3 with dilation 3 \(span 7\) spans more than padded input 5 in dim 0"),
    ("max_pool1d", (1, 1, 2), {"kernel_size": 3, "stride": 1, "ceil_mode": True}, r"spans more than padded input 2"),
    ("max_pool1d", (1, 1, 10), {"kernel_size": 0}, r"kernel_size must be positive, got 0"),
    ("avg_pool2d", (1, 1, 10, 10), {"kernel_size": (2, -1), "stride": 1},
     r"kernel_size must be positive, got \(2, -1\)"),
    ("max_pool2d", (1, 1, 10, 10), {"kernel_size": 3, "stride": 0}, r"stride must be positive, got \(0, 0\)"),
    ("avg_pool3d", (1, 1, 6, 6, 6), {"kernel_size": 2, "stride": -1}, r"stride must be positive"),
    ("max_pool2d", (1, 1, 10, 10), {"kernel_size": 3, "dilation": 0}, r"dilation must be positive"),
    ("max_pool1d", (1, 1, 10), {"kernel_size": 3, "padding": -1}, r"padding must be non-negative, got -1"),
    ("max_pool2d", (1, 1, 10, 10), {"kernel_size": (2, 2, 2)}, r"kernel_size must be an int or 2 ints"),
    ("max_pool1d", (1, 1, 10), {"kernel_size": (2, 2)}, r"kernel_size must be an int or 1 ints"),
    ("max_pool2d", (1, 1, 10, 10), {"kernel_size": 2, "padding": (1, 0, 0)}, r"padding must be an int or 2 ints"),
    ("avg_pool3d", (1, 1, 10, 10, 10), {"kernel_size": 11, "padding": 1},
     r"input 10 is smaller than kernel 11 in dim 0; avg_pool3d needs input >= kernel before padding"),
    ("max_pool2d", (1, 0, 4, 4), {"kernel_size": 2}, r"expected non-empty channel and spatial dims, got shape"),
    ("avg_pool1d", (2, 3, 0), {"kernel_size": 1}, r"expected non-empty"),
    ("avg_pool2d", (1, 1, 4, 4), {"kernel_size": 2, "divisor_override": 0}, r"divisor_override must be non-zero"),
    ("adaptive_avg_pool2d", (1, 1, 4, 4), {"output_size": (2, 2, 2)}, r"output_size must have 2 entries, got 3"),
    ("adaptive_max_pool3d", (1, 1, 4, 4, 4), {"output_size": (2, 2)}, r"output_size must have 3 entries, got 2"),
    ("adaptive_avg_pool2d", (1, 1, 4, 4), {"output_size": -1}, r"output_size entries must be >= 0"),
    ("adaptive_max_pool1d", (1, 1, 4), {"output_size": (1.5,)}, r"output_size entries must be ints or None"),
    ("adaptive_avg_pool3d", (4, 4, 4), {"output_size": 2}, r"expected a 4 or 5-d input"),
    ("adaptive_max_pool2d", (1, 1, 5, 1, 4), {"output_size": 2}, r"expected a 3 or 4-d input"),
    ("adaptive_max_pool2d", (2, 3, 4, 0), {"output_size": 2}, r"expected non-empty"),
    ("lp_pool2d", (1, 1, 4, 4), {"norm_type": 2, "kernel_size": 5}, r"kernel 5 spans more than padded input 4"),
    ("lp_pool3d", (1, 1, 1, 4, 4), {"norm_type": 2, "kernel_size": (2, 2, 2), "ceil_mode": True},
     r"input 1 is smaller than kernel 2 in dim 0"),
]


@pytest.mark.parametrize("op,shape,kwargs,match", ERROR_CASES, ids=[f"{c[0]}-{c[3][:40]}" for c in ERROR_CASES])
def test_errors_match_torch(op: str, shape: tuple, kwargs: dict, match: str) -> None:
    kwargs = dict(kwargs)
    extra = [kwargs.pop("norm_type")] if op.startswith("lp_pool") else []
    error = both_refuse(lambda t: getattr(F, op)(t, *extra, **kwargs), lambda t: getattr(TF, op)(t, *extra, **kwargs),
                        [np.zeros(shape)], match=match)
    assert error.layer == op
    with pytest.raises(cs.ShapeError, match=match):  # the meta path and the pure rule refuse alike
        getattr(F, op)(cs.Tensor.meta(shape), *extra, **kwargs)


UNPOOL_ERROR_CASES = [
    ("max_unpool2d", (1, 2, 4, 4), (1, 2, 4, 3), {"kernel_size": 2},
     r"indices must have the input's shape \(1, 2, 4, 4\), got \(1, 2, 4, 3\)"),
    ("max_unpool2d", (1, 2, 4, 4), None, {"kernel_size": 2, "output_size": (10, 10)},
     r"output_size \(10, 10\) out of range: dim 0 must be strictly between 6 and 10"),
    ("max_unpool1d", (2, 3, 4), None, {"kernel_size": 2, "output_size": (2,)},
     r"dim 0 must be strictly between 6 and 10"),
    ("max_unpool2d", (1, 2, 4, 4), None, {"kernel_size": 2, "output_size": (8,)},
     r"output_size must have 2 or 4 entries, got 1"),
    ("max_unpool2d", (4, 4), None, {"kernel_size": 2}, r"expected a 3 or 4-d input"),
    ("max_unpool3d", (2, 2, 2), None, {"kernel_size": 2}, r"expected a 4 or 5-d input"),
    ("max_unpool3d", (1, 1, 2, 2, 2), None, {"kernel_size": 2, "stride": 0}, r"stride must be positive"),
    ("max_unpool2d", (1, 2, 4, 4), None, {"kernel_size": 2, "padding": 5}, r"output size \(-2, -2\) is negative"),
    ("max_unpool2d", (1, 2, 4, 4), "big", {"kernel_size": 2},
     r"index 64 is out of range for an output plane of 8x8 = 64 cells"),
    ("max_unpool1d", (1, 2, 4), "negative", {"kernel_size": 2}, r"index -1 is out of range"),
]


@pytest.mark.parametrize("op,shape,index_shape,kwargs,match", UNPOOL_ERROR_CASES,
                         ids=[f"{c[0]}-{c[4][:40]}" for c in UNPOOL_ERROR_CASES])
def test_unpool_errors_match_torch(op: str, shape: tuple, index_shape: Any, kwargs: dict, match: str) -> None:
    index = np.zeros(shape if index_shape in (None, "big", "negative") else index_shape, np.int64)
    if index_shape == "big":
        index.flat[-1] = 64
    if index_shape == "negative":
        index.flat[0] = -1
    error = both_refuse(lambda v, i: getattr(F, op)(v, i, **kwargs), lambda v, i: getattr(TF, op)(v, i, **kwargs),
                        [np.zeros(shape), index], match=match)
    assert error.layer == op


def test_non_shape_refusals() -> None:
    x = np.zeros((1, 2, 4, 4))
    index = np.zeros(x.shape, np.int32)
    with pytest.raises(RuntimeError):
        TF.max_unpool2d(torch.from_numpy(x), torch.from_numpy(index), 2)
    with pytest.raises(TypeError, match="indices must be int64"):
        F.max_unpool2d(cs.tensor(x), cs.tensor(index, dtype=np.int32), 2)
    with pytest.raises(TypeError):
        TF.avg_pool2d(torch.from_numpy(x), 2, divisor_override=2.5)
    with pytest.raises(TypeError, match="divisor_override must be an int"):
        F.avg_pool2d(cs.tensor(x), 2, divisor_override=2.5)
    with pytest.raises(ZeroDivisionError):
        TF.lp_pool2d(torch.from_numpy(x), 0, 2)
    with pytest.raises(ValueError, match="norm_type must be non-zero"):
        F.lp_pool2d(cs.tensor(x), 0, 2)


def test_shape_rules() -> None:
    assert F.pool_output_shape((1, 3, 7, 7), 3, 2, 1, ceil_mode=True, op="max_pool2d") == (1, 3, 4, 4)
    assert F.pool_output_shape((3, 224, 224), 7, 2, 3, op="avg_pool2d") == (3, 112, 112)
    assert F.adaptive_output_shape((2, 8, 9, 10), (3, None), op="adaptive_max_pool2d") == (2, 8, 3, 10)
    assert F.adaptive_output_shape((8, 9), 0, op="adaptive_avg_pool1d") == (8, 0)
    assert F.unpool_output_shape((1, 2, 4, 4), (1, 2, 4, 4), 3, 2, 1, op="max_unpool2d") == (1, 2, 7, 7)
    geo = F.pool_geometry((1, 1, 6), 3, 2, 1, ceil_mode=True, op="max_pool1d")
    assert (geo.out, geo.extra, geo.padded) == ((4,), (1,), (9,))
    with pytest.raises(ValueError, match="unknown op 'max_pool4d'"):
        F.pool_output_shape((1, 1, 4, 4), 2, op="max_pool4d")
