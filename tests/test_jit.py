"""The compiled depthwise kernels (:mod:`convscope.functional.jit`, numba) and their NumPy fallback.

Both paths run the same samples against torch (output and both gradients, float64 to 1e-10
and float32): the depthwise samples of test_conv's registry and a sweep of strides,
dilations, paddings, channel multipliers, odd sizes and batch 1 in 1, 2 and 3 dims. Then: the
compiled kernels' block splits and row runs, determinism across threads, torch's handling of
non-finite weights, the switch, the lazy import, a failing numba import, and the scratch
rules of both paths against tracemalloc.
"""

from __future__ import annotations

import doctest
import importlib.util
import math
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from threadpoolctl import threadpool_limits

import convscope as cs
import convscope.functional as F
from convscope.functional import conv as conv_module
from convscope.functional import jit
from test_conv import COLUMNS, PLANAR, Sample, kernel_path
from test_conv import SAMPLES as CONV_SAMPLES
from test_memory import SAMPLES as MEMORY_SAMPLES
from test_memory import assert_scratch_rules_hold
from torch_ref import compare

pytestmark = [pytest.mark.filterwarnings("ignore:Using padding='same'"),
              pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")]

NUMBA = importlib.util.find_spec("numba") is not None
PATHS = [pytest.param("compiled", marks=pytest.mark.skipif(not NUMBA, reason="numba is not installed")), "numpy"]


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    """Run the test with the compiled kernels, then with the NumPy ones; checks that the
    intended kernels are the ones that run."""
    with jit.enabled(request.param == "compiled"):
        ran = jit.kernels_for(np.float64) is not None
        assert ran == (request.param == "compiled"), "the switch did not select the kernels"
        yield request.param


def test_ci_installs_numba() -> None:
    """CI installs the dev extra, which pins numba: a broken install must fail here rather
    than silently skip every compiled-kernel test."""
    if not os.environ.get("CI"):
        pytest.skip("only asserted in CI (set CI=1)")
    import numba  # noqa: F401

    assert jit.available() and jit.kernels() is not None


def _depthwise(s: Sample) -> bool:
    """Whether the sample takes the depthwise path: one input channel per group in the conv
    whose kernels run (weight dim 1: a conv's C_in/G, a transposed conv's C_out/G), one stride."""
    return s.weight_shape[1] == 1 and len(set(np.atleast_1d(s.kwargs.get("stride", 1)))) == 1


REGISTRY = [s for s in CONV_SAMPLES if _depthwise(s)]

# (name, op, input shape, weight shape, kwargs): the depthwise sweep
SWEEP = [
    Sample("s1_pad1", "conv2d", (2, 3, 9, 8), (3, 1, 3, 3), kwargs={"groups": 3, "padding": 1}),
    Sample("s2_pad1_mult2", "conv2d", (2, 3, 9, 8), (6, 1, 3, 3), kwargs={"groups": 3, "padding": 1, "stride": 2}),
    Sample("s2_odd_dil2", "conv2d", (1, 4, 13, 11), (4, 1, 3, 3),
           kwargs={"groups": 4, "padding": 2, "stride": 2, "dilation": 2}),
    Sample("dil2_mult2_tuple_pad", "conv2d", (1, 4, 15, 70), (8, 1, 3, 2),
           kwargs={"groups": 4, "padding": (1, 2), "dilation": 2}),
    Sample("wide_rows_s1", "conv2d", (2, 2, 7, 100), (2, 1, 3, 3), kwargs={"groups": 2, "padding": 1}),
    Sample("wide_rows_s2_5x5", "conv2d", (2, 2, 11, 99), (4, 1, 5, 5),
           kwargs={"groups": 2, "padding": 2, "stride": 2, "dilation": 1}),
    Sample("wide_rows_dil2_5x5", "conv2d", (1, 2, 12, 90), (2, 1, 5, 5),
           kwargs={"groups": 2, "padding": 4, "dilation": 2}),
    Sample("batch1_valid", "conv2d", (1, 5, 6, 7), (5, 1, 2, 3), kwargs={"groups": 5}),
    Sample("unbatched", "conv2d", (3, 6, 7), (6, 1, 3, 3), kwargs={"groups": 3, "padding": "same"}),
    Sample("zero_batch", "conv2d", (0, 3, 6, 6), (3, 1, 3, 3), kwargs={"groups": 3, "padding": 1}),
    Sample("1x1", "conv2d", (2, 3, 5, 4), (6, 1, 1, 1), kwargs={"groups": 3}),
    Sample("one_tap_row", "conv2d", (2, 3, 6, 9), (3, 1, 1, 5), kwargs={"groups": 3, "padding": (0, 2)}),
    Sample("1d_s1", "conv1d", (2, 3, 20), (6, 1, 4), kwargs={"groups": 3, "padding": 2}),
    Sample("1d_s3_dil2", "conv1d", (2, 3, 21), (3, 1, 3), kwargs={"groups": 3, "stride": 3, "dilation": 2}),
    Sample("1d_long", "conv1d", (1, 2, 300), (2, 1, 7), kwargs={"groups": 2, "padding": 3}),
    Sample("3d_s1", "conv3d", (2, 2, 5, 6, 7), (4, 1, 3, 2, 3), kwargs={"groups": 2, "padding": 1}),
    Sample("3d_s2", "conv3d", (1, 2, 7, 6, 9), (2, 1, 3, 3, 3), kwargs={"groups": 2, "padding": 1, "stride": 2}),
    Sample("3d_same_dil", "conv3d", (1, 2, 5, 6, 7), (2, 1, 2, 3, 2),
           kwargs={"groups": 2, "padding": "same", "dilation": (1, 2, 1)}),
    Sample("t2d_s2", "conv_transpose2d", (2, 4, 5, 5), (4, 1, 3, 3), kwargs={"groups": 4, "stride": 2, "padding": 1}),
    Sample("t2d_s1_mult2", "conv_transpose2d", (2, 6, 5, 6), (6, 1, 3, 3), kwargs={"groups": 3, "padding": 1}),
    Sample("t1d_dil2", "conv_transpose1d", (2, 2, 9), (2, 1, 3), kwargs={"groups": 2, "dilation": 2}),
    # padding past the kernel's reach: the stride-1 input gradient's conv of the output gradient crops it
    Sample("pad_beyond_reach", "conv2d", (2, 3, 7, 6), (3, 1, 3, 3), kwargs={"groups": 3, "padding": (3, 2)}),
    Sample("1d_pad_beyond_span_mult2", "conv1d", (1, 2, 5), (4, 1, 2), kwargs={"groups": 2, "padding": 3}),
    Sample("t1d_dil2_output_padding", "conv_transpose1d", (2, 2, 9), (2, 1, 3),
           kwargs={"groups": 2, "dilation": 2, "padding": 1, "output_padding": 1}),
]

# grouped convs with 2-8 channels per group, stride 1: with the compiled kernels, the depthwise path
GROUPED = [
    Sample("g_pad1", "conv2d", (2, 6, 9, 8), (6, 2, 3, 3), kwargs={"groups": 3, "padding": 1}),
    Sample("g_mult", "conv2d", (2, 8, 10, 9), (12, 4, 3, 3), kwargs={"groups": 2, "padding": 1}, bias=True),
    Sample("g_8_dil2", "conv2d", (1, 16, 13, 11), (8, 8, 3, 3), kwargs={"groups": 2, "padding": 2, "dilation": 2}),
    Sample("g_valid_5x5", "conv2d", (2, 6, 12, 10), (6, 3, 5, 5), kwargs={"groups": 2}),
    Sample("g_wide_rows", "conv2d", (1, 4, 6, 90), (4, 2, 3, 3), kwargs={"groups": 2, "padding": 1}),
    Sample("g_pad_beyond_reach", "conv2d", (2, 4, 7, 6), (4, 2, 3, 3), kwargs={"groups": 2, "padding": (3, 2)}),
    Sample("g_1d", "conv1d", (2, 6, 20), (9, 2, 4), kwargs={"groups": 3, "padding": 2}),
    Sample("g_3d", "conv3d", (1, 4, 5, 6, 7), (4, 2, 3, 2, 3), kwargs={"groups": 2, "padding": 1}),
    Sample("g_same_unbatched", "conv2d", (6, 7, 7), (6, 3, 2, 3), kwargs={"groups": 2, "padding": "same"}),
    Sample("g_t2d", "conv_transpose2d", (2, 6, 5, 6), (6, 2, 3, 3), kwargs={"groups": 3, "padding": 1}),
    Sample("g_t1d_dil2", "conv_transpose1d", (2, 4, 9), (4, 3, 3),
           kwargs={"groups": 2, "dilation": 2, "padding": 1, "output_padding": 0}),
]


def test_sweep_reaches_every_feature() -> None:
    samples = REGISTRY + SWEEP
    assert all(_depthwise(s) for s in samples)
    assert len(REGISTRY) >= 15
    kw = [s.kwargs for s in samples]
    assert any(np.max(k.get("stride", 1)) == 1 for k in kw) and any(np.max(k.get("stride", 1)) == 2 for k in kw)
    assert any(np.max(k.get("dilation", 1)) == 2 for k in kw)
    assert any(s.weight_shape[0] > s.kwargs["groups"] for s in samples if not s.transposed)  # multiplier
    assert {s.op for s in samples} >= {"conv1d", "conv2d", "conv3d", "conv_transpose2d"}
    assert any(s.input_shape[0] == 1 for s in samples)
    assert any(s.input_shape[-1] >= conv_module._JIT_FLAT_WIDTH for s in samples)  # row by row
    pads = [k.get("padding", 0) for k in kw if not isinstance(k.get("padding", 0), str)]
    assert any(np.max(p) > 2 for p in pads)  # past a 3×3's reach


def _run(sample: Sample, dtype: type, seed: int = 0) -> None:
    compare(getattr(F, sample.op), getattr(TF, sample.op), sample.arrays(seed), sample.kwargs, dtype=dtype, seed=seed)


@pytest.mark.parametrize("sample", SWEEP + REGISTRY, ids=str)
def test_matches_torch_float64(sample: Sample, path: str) -> None:
    _run(sample, np.float64)


@pytest.mark.parametrize("sample", SWEEP + REGISTRY[::3], ids=str)
def test_matches_torch_float32(sample: Sample, path: str) -> None:
    _run(sample, np.float32, seed=1)


PAIRED = [s for s in SWEEP + GROUPED if not s.transposed and s.weight_shape[0] > s.kwargs["groups"]]


@pytest.mark.skipif(not NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sample", PAIRED, ids=str)
def test_outputs_in_pairs_keep_each_channels_bits(sample: Sample, dtype: type) -> None:
    """The compiled forward computes a group's outputs two at a time (an odd last one alone):
    each output channel gets the bits it gets computed alone, as a conv with one output per
    group."""
    x, w = (a.astype(dtype) for a in sample.arrays(0)[:2])
    groups, per_out = sample.kwargs["groups"], w.shape[0] // sample.kwargs["groups"]
    kwargs = {k: v for k, v in sample.kwargs.items() if k != "groups"}
    conv = getattr(F, sample.op)
    y = conv(cs.tensor(x), cs.tensor(w), groups=groups, **kwargs).numpy()
    assert per_out > 1
    for m in range(per_out):
        alone = conv(cs.tensor(x), cs.tensor(np.ascontiguousarray(w[m::per_out])), groups=groups, **kwargs).numpy()
        channel_axis = y.ndim - w.ndim + 1  # 0 when unbatched
        assert np.array_equal(np.take(y, range(m, w.shape[0], per_out), axis=channel_axis), alone), m


MOBILENET = [Sample("mobilenet_112", "conv2d", (2, 8, 112, 112), (8, 1, 3, 3), kwargs={"groups": 8, "padding": 1}),
             Sample("mobilenet_14", "conv2d", (2, 64, 14, 14), (64, 1, 3, 3), kwargs={"groups": 64, "padding": 1}),
             Sample("mobilenet_s2", "conv2d", (2, 8, 56, 56), (8, 1, 3, 3),
                    kwargs={"groups": 8, "padding": 1, "stride": 2})]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sample", MOBILENET, ids=str)
def test_mobilenet_shapes_match_torch(sample: Sample, dtype: type, path: str) -> None:
    """The benchmark's shapes (fewer channels): the kernels' fast paths at their real sizes,
    float32 sums over 10⁴-10⁵ products included."""
    _run(sample, dtype)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("rows", ["row_by_row", "short_runs", "long_runs"])
@pytest.mark.parametrize("sample", [s for s in SWEEP if s.name in
                                    ("s1_pad1", "s2_pad1_mult2", "wide_rows_s1", "3d_s1", "t2d_s1_mult2", "1d_s1")]
                         + [s for s in GROUPED if s.name in ("g_mult", "g_wide_rows", "g_t2d")], ids=str)
def test_compiled_blocks_and_runs_match_torch(sample: Sample, rows: str, threads: int,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """One (sample, channel) row or one channel per block, shared out over the threads; windows
    taken row by row, or in runs of a few rows (the last one shorter), or of all rows."""
    if not NUMBA:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(conv_module, "_JIT_BLOCK_ELEMENTS", 1)
    monkeypatch.setattr(conv_module, "_JIT_FLAT_WIDTH", {"row_by_row": 0, "short_runs": 1000, "long_runs": 1000}[rows])
    monkeypatch.setattr(conv_module, "_JIT_FLAT_LENGTH", {"row_by_row": 0, "short_runs": 20, "long_runs": 10**6}[rows])
    with jit.enabled(True), threadpool_limits(threads, user_api="blas"):
        _run(sample, np.float64, seed=threads)


@pytest.mark.skipif(not NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("columns", COLUMNS)
@pytest.mark.parametrize("budget", [1, 3000, None])
@pytest.mark.parametrize("sample", [s for s in PLANAR if kernel_path(s, compiled=True) == "planar"], ids=str)
def test_compiled_columns_give_the_numpy_columns_bits(sample: Sample, budget: int | None, columns: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The planar path's columns copied by the compiled kernel (a run at a time) and through
    NumPy's strided views are the same copies: the output and both gradients have the same
    bits, in tiles of single window rows (budget 1), of a few rows or of whole samples. (A
    strided conv's input gradient by taps, compiled only, would sum in another order.)"""
    monkeypatch.setattr(conv_module, "_EXACT_WIDTH", COLUMNS[columns])
    monkeypatch.setattr(conv_module, "_TAPS_POSITIONS", math.inf)
    if budget is not None:
        monkeypatch.setattr(conv_module, "_COLUMN_BYTES", budget)
        monkeypatch.setattr(conv_module, "_MIN_TILE_MACS", 1)
        monkeypatch.setattr(conv_module, "_MIN_TILE_POSITIONS", 1)
    calls = []
    kernel = jit.kernels("columns").planar_columns
    monkeypatch.setattr(jit.kernels("columns"), "planar_columns", lambda *a: calls.append(1) or kernel(*a))
    results = []
    for compiled in (True, False):
        calls.clear()
        rng = np.random.default_rng(5)
        x, w = (cs.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)
                for s in (sample.input_shape, sample.weight_shape))
        with jit.enabled(compiled), threadpool_limits(2, user_api="blas"):
            y = getattr(F, sample.op)(x, w, **sample.kwargs)
            y.backward(rng.standard_normal(y.shape).astype(np.float32))
        results.append((y.numpy(), x.grad, w.grad))
        assert bool(calls) == compiled, "the compiled columns ran exactly when switched on"
    for got, want in zip(*results, strict=True):
        np.testing.assert_array_equal(got, want)


# (kernel, stride, dilation, input size, zeros before, after, compiled): the stride phases of
# an input, split by the compiled kernel (a stride of 2 along the last dim whose two phases
# some tap reads) or by NumPy's copies
SPLITS = [
    ((7, 7), (2, 2), (1, 1), (20, 21), (3, 3), (3, 3), True),  # a stem, odd width
    ((3,), (2,), (1,), (9,), (1,), (0,), True),
    ((4,), (2,), (3,), (17,), (0,), (2,), True),  # dilation 3: taps in both phases
    ((3, 3, 3), (1, 2, 2), (1, 1, 1), (4, 7, 8), (1, 0, 2), (1, 1, 0), True),
    ((2, 5), (3, 2), (2, 1), (11, 12), (2, 4), (0, 1), True),  # rows some tap never reads
    ((5, 5), (2, 2), (1, 1), (3, 3), (4, 4), (4, 4), True),  # more padding than input
    ((3, 3), (2, 2), (2, 2), (10, 11), (2, 2), (2, 2), False),  # dilation 2: one phase along W
    ((1, 1), (2, 2), (1, 1), (9, 9), (0, 0), (0, 0), False),
    ((3, 3), (2, 3), (1, 1), (10, 11), (1, 1), (1, 1), False),  # stride 3 along W
]


@pytest.mark.skipif(not NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", SPLITS, ids=str)
def test_compiled_split_gives_numpy_phases(case: tuple, dtype: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """The planar path's split of a zero-padded input into its stride phases: the compiled
    kernel (each row dealt out to its two phases along W) fills the same cells as NumPy's
    strided copies, for 1-d to 3-d inputs, padding past the input, dilations and strides, in
    blocks of single planes; it runs exactly where it applies."""
    kernel, stride, dilation, size, before, after, compiled = case
    padded = tuple(n + b + a for n, b, a in zip(size, before, after, strict=True))
    windows = tuple((p - (k - 1) * d - 1) // s + 1 for p, k, d, s in zip(padded, kernel, dilation, stride, strict=True))
    flat = conv_module._FlatTaps(padded, conv_module._Geometry(kernel, stride, dilation, 1), windows, split=True)
    x = np.random.default_rng(8).standard_normal((2, 3, *size)).astype(dtype)
    monkeypatch.setattr(conv_module, "_BLOCK_ELEMENTS", 1)
    calls, kernels = [], jit.kernels("columns")
    real = kernels.split_phases
    monkeypatch.setattr(kernels, "split_phases", lambda *a: calls.append(a[-2:]) or real(*a))
    planes = {}
    for on in (True, False):
        garbage = np.full(2 * 3 * len(flat.phases) * math.prod(flat.sizes), np.nan, dtype)
        del garbage  # its memory is likely the split's next: cells the kernel does not clear stay NaN
        with jit.enabled(on):
            planes[on] = flat.planes(conv_module._ZeroPadded(x, before, after), 1)
    np.testing.assert_array_equal(planes[True], planes[False])
    assert calls == ([(i, i + 1) for i in range(6)] if compiled else [])
    with jit.enabled(True):  # a strided input: NumPy's copies
        calls.clear()
        strided = np.repeat(x, 2, axis=-1)[..., ::2]
        np.testing.assert_array_equal(flat.planes(conv_module._ZeroPadded(strided, before, after), 1), planes[False])
        assert not calls


# Strided input gradients (transposed convs' outputs and convs' input gradients), for the
# compiled col2im over the products of every tap: >= 8 channels per group, then fewer (a stem,
# two per group, one with 16 outputs per group)
TAPS = [
    Sample("t_k4s2", "conv_transpose2d", (2, 9, 5, 6), (9, 8, 4, 4), kwargs={"stride": 2, "padding": 1}),
    Sample("t_k3s2_out_pad", "conv_transpose2d", (3, 8, 4, 5), (8, 8, 3, 3),
           kwargs={"stride": 2, "padding": 1, "output_padding": 1}),
    Sample("t_groups_dilated", "conv_transpose2d", (2, 6, 5, 4), (6, 8, 3, 2),
           kwargs={"stride": (3, 2), "padding": (2, 0), "dilation": (2, 1), "groups": 2}),
    Sample("t_1d_s3", "conv_transpose1d", (2, 4, 7), (4, 9, 5),
           kwargs={"stride": 3, "padding": 2, "output_padding": 2}),
    Sample("t_3d", "conv_transpose3d", (1, 3, 3, 4, 3), (3, 8, 3, 2, 3), kwargs={"stride": (2, 1, 3), "padding": 1}),
    Sample("t_wide_padding", "conv_transpose2d", (1, 2, 3, 3), (2, 8, 2, 5), kwargs={"stride": 2, "padding": (1, 4)}),
    Sample("conv_s2", "conv2d", (2, 8, 11, 10), (5, 8, 3, 3), kwargs={"stride": 2, "padding": 1}),
    Sample("conv_s3_d2_groups", "conv2d", (2, 16, 13, 14), (4, 8, 3, 2),
           kwargs={"stride": 3, "dilation": 2, "padding": (2, 1), "groups": 2}),
    Sample("stem", "conv2d", (2, 3, 13, 12), (6, 3, 7, 7), kwargs={"stride": 2, "padding": 3}),
    Sample("t_few_outputs", "conv_transpose2d", (2, 6, 5, 4), (6, 3, 4, 4), kwargs={"stride": 2, "padding": 1}),
    Sample("two_per_group", "conv2d", (2, 8, 11, 10), (8, 2, 3, 3), kwargs={"stride": 2, "padding": 1, "groups": 4}),
    Sample("one_channel", "conv2d", (2, 1, 12, 11), (16, 1, 5, 5), kwargs={"stride": 2, "padding": 2}),
    Sample("multiplier_16", "conv2d", (2, 2, 9, 9), (32, 1, 3, 3), kwargs={"stride": 2, "padding": 1, "groups": 2}),
    Sample("conv3d_few", "conv3d", (1, 2, 5, 6, 5), (4, 2, 3, 3, 3), kwargs={"stride": 2, "padding": 1}),
]


@pytest.mark.skipif(not NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sample", TAPS, ids=str)
def test_taps_input_gradient_matches_torch(sample: Sample, dtype: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """The products of every tap added onto their cells by the compiled col2im: output
    padding, dilation, groups, 1-d to 3-d, padding past the kernel's reach; in blocks of
    one channel on two threads."""
    monkeypatch.setattr(conv_module, "_TAPS_POSITIONS", 1)
    monkeypatch.setattr(conv_module, "_TAPS_BYTES", 1)
    calls = []
    taps = conv_module._grad_input_taps
    monkeypatch.setattr(conv_module, "_grad_input_taps", lambda *a: calls.append(1) or taps(*a))
    with jit.enabled(True), threadpool_limits(2, user_api="blas"):
        _run(sample, dtype, seed=4)
    assert calls, "the taps path ran"


def test_taps_only_compiled_and_over_enough_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transposed conv over 10² windows takes the taps with the compiled kernels; over 9²,
    or without them, the stride phases."""
    calls = []
    taps = conv_module._grad_input_taps
    monkeypatch.setattr(conv_module, "_grad_input_taps", lambda *a: calls.append(1) or taps(*a))
    w = cs.tensor(np.ones((8, 8, 4, 4), np.float32))
    for size, compiled, expected in ((10, True, NUMBA), (9, True, False), (10, False, False)):
        calls.clear()
        with jit.enabled(compiled):
            F.conv_transpose2d(cs.tensor(np.ones((1, 8, size, size), np.float32)), w, stride=2, padding=1)
        assert bool(calls) == expected, (size, compiled)


@pytest.mark.parametrize("c,c_out,groups,expected", [(3, 8, 1, True), (8, 8, 4, True), (1, 16, 1, True),
                                                     (2, 32, 2, True), (1, 8, 1, False), (8, 8, 8, False),
                                                     (16, 64, 16, False)])
def test_taps_with_few_channels_per_group(c: int, c_out: int, groups: int, expected: bool,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Below 8 input channels per group a strided conv's input gradient takes the taps too
    (with the compiled kernels over >= 100 windows), but with one input channel per group only
    from 16 outputs per group: the depthwise path's scatter is faster with fewer."""
    calls = []
    taps = conv_module._grad_input_taps
    monkeypatch.setattr(conv_module, "_grad_input_taps", lambda *a: calls.append(1) or taps(*a))
    x = cs.tensor(np.ones((1, c, 20, 20), np.float32), requires_grad=True)
    with jit.enabled(True):
        F.conv2d(x, cs.tensor(np.ones((c_out, c // groups, 3, 3), np.float32)), stride=2, padding=1,
                 groups=groups).sum().backward()
    assert bool(calls) == (expected and NUMBA)


@pytest.mark.parametrize("per_group", [1, 3])
def test_compiled_gradients_do_not_depend_on_threads(per_group: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every output cell and weight-gradient entry sums in one fixed order whatever the blocks
    and threads: the same bits on one thread and on two, run after run (depthwise, grouped)."""
    if not NUMBA:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(5)
    x0 = rng.standard_normal((3, 6, 20, 18)).astype(np.float32)
    w0 = rng.standard_normal((12, per_group, 3, 3)).astype(np.float32)
    runs = []
    for threads, block in ((1, 1 << 18), (2, 1), (2, 1), (2, 1 << 18)):
        monkeypatch.setattr(conv_module, "_JIT_BLOCK_ELEMENTS", block)
        x, w = cs.tensor(x0, requires_grad=True), cs.tensor(w0, requires_grad=True)
        with jit.enabled(True), threadpool_limits(threads, user_api="blas"):
            y = F.conv2d(x, w, padding=1, groups=6 // per_group)
            (y ** 2).sum().backward()
        runs.append((y.numpy(), x.grad, w.grad))
    for run in runs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(run, runs[0]))


@pytest.mark.parametrize("stride", [1, 2])
def test_non_finite_weights_propagate_like_torch(stride: int, path: str) -> None:
    """An infinite or NaN weight reaches exactly the input-gradient cells torch gives as
    non-finite: the products the conv made, none with the padding (the compiled stride-1
    gradient, a conv of the padded output gradient, would add ``0·inf`` there: it falls back to
    adding each row's products onto its cells)."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((6, 1, 3, 3))
    w[0, 0, 0, 0], w[3, 0, 2, 1], w[5, 0, 1, 1] = np.inf, np.nan, -np.inf
    g = rng.standard_normal(F.conv_output_shape(x.shape, w.shape, stride, 1, groups=3))
    cx, tx = cs.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    F.conv2d(cx, cs.tensor(w), stride=stride, padding=1, groups=3).backward(g)
    TF.conv2d(tx, torch.tensor(w), stride=stride, padding=1, groups=3).backward(torch.from_numpy(g))
    np.testing.assert_array_equal(np.isfinite(cx.grad), np.isfinite(tx.grad.numpy()))
    np.testing.assert_array_equal(np.isnan(cx.grad), np.isnan(tx.grad.numpy()))
    finite = np.isfinite(cx.grad)
    np.testing.assert_allclose(cx.grad[finite], tx.grad.numpy()[finite], rtol=1e-10, atol=1e-10)


# --- grouped convs with few channels per group: the depthwise kernels over a group's planes ---------
@pytest.mark.parametrize("sample", GROUPED, ids=str)
def test_grouped_takes_the_depthwise_path_only_compiled(sample: Sample) -> None:
    """2-8 channels per group, stride 1: the compiled kernels' path; without them the planar."""
    assert kernel_path(sample, compiled=True) == "depthwise" and kernel_path(sample) == "planar"


@pytest.mark.parametrize("sample", [
    Sample("strided", "conv2d", (2, 4, 9, 8), (4, 2, 3, 3), kwargs={"groups": 2, "stride": 2}),
    Sample("9_per_group", "conv2d", (2, 18, 9, 8), (4, 9, 3, 3), kwargs={"groups": 2}),
    Sample("ungrouped", "conv2d", (2, 4, 9, 8), (4, 4, 3, 3)),
    Sample("1x1", "conv2d", (2, 4, 9, 8), (4, 2, 1, 1), kwargs={"groups": 2})], ids=str)
def test_other_convs_keep_their_paths(sample: Sample) -> None:
    assert kernel_path(sample, compiled=True) == kernel_path(sample) != "depthwise"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sample", GROUPED, ids=str)
def test_grouped_matches_torch(sample: Sample, dtype: type, path: str) -> None:
    _run(sample, dtype, seed=3)


def test_grouped_runs_no_planar_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the kernels on, the forward and both gradients are the compiled ones."""
    if not NUMBA:
        pytest.skip("numba is not installed")

    def planar(*args: object) -> None:
        raise AssertionError("the planar kernels ran")

    monkeypatch.setattr(conv_module, "_forward_planar", planar)
    monkeypatch.setattr(conv_module, "_grad_input_planar", planar)
    monkeypatch.setattr(conv_module, "_grad_weight_planar", planar)
    with jit.enabled(True):
        for sample in GROUPED:
            _run(sample, np.float64)


def test_grouped_backward_without_the_kernels() -> None:
    """A forward run compiled, its backward with the kernels switched off: the NumPy kernels
    take over the compiled path's unpadded input and give torch's gradients."""
    if not NUMBA:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((2, 8, 9, 7)), rng.standard_normal((8, 4, 3, 3))
    cx, cw = cs.tensor(x, requires_grad=True), cs.tensor(w, requires_grad=True)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    with jit.enabled(True):
        y = F.conv2d(cx, cw, padding=1, groups=2)
    g = rng.standard_normal(y.shape)
    with jit.enabled(False):
        y.backward(g)
    TF.conv2d(tx, tw, padding=1, groups=2).backward(torch.from_numpy(g))
    np.testing.assert_allclose(cx.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cw.grad, tw.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_grouped_non_finite_weights_like_torch(path: str) -> None:
    """An infinite or NaN weight of a grouped conv: the input gradient falls back to the planar
    path (the flipped conv would add ``0·inf`` from the padding); non-finite where torch's is."""
    rng = np.random.default_rng(9)
    x, w = rng.standard_normal((2, 6, 7, 6)), rng.standard_normal((6, 3, 3, 3))
    w[0, 1, 0, 0], w[4, 2, 2, 1] = np.inf, np.nan
    g = rng.standard_normal((2, 6, 7, 6))
    cx, tx = cs.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    cy = F.conv2d(cx, cs.tensor(w), padding=1, groups=2)
    ty = TF.conv2d(tx, torch.tensor(w), padding=1, groups=2)
    np.testing.assert_array_equal(np.isnan(cy.numpy()), np.isnan(ty.detach().numpy()))
    cy.backward(g)
    ty.backward(torch.from_numpy(g))
    np.testing.assert_array_equal(np.isfinite(cx.grad), np.isfinite(tx.grad.numpy()))
    np.testing.assert_array_equal(np.isnan(cx.grad), np.isnan(tx.grad.numpy()))
    finite = np.isfinite(cx.grad)
    assert not finite.all()
    np.testing.assert_allclose(cx.grad[finite], tx.grad.numpy()[finite], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes_pad_first_like_torch(mode: str, path: str) -> None:
    """A layer's non-zero padding mode pads with ``F.pad`` and convolves with padding 0 (as
    torch does): the kernels then read an unpadded input; the gradient goes back through the pad."""
    def ours(x: cs.Tensor, w: cs.Tensor) -> cs.Tensor:
        return F.conv2d(F.pad(x, (2, 1, 1, 1), mode=mode), w, groups=3)

    def theirs(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return TF.conv2d(TF.pad(x, (2, 1, 1, 1), mode=mode), w, groups=3)

    rng = np.random.default_rng(6)
    for dtype in (np.float64, np.float32):
        compare(ours, theirs, [rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((6, 1, 3, 3))], dtype=dtype)


@pytest.mark.parametrize("cell", [(4, 3), (4, 7), (0, 0), (8, 7)], ids=["inside", "last_column", "corner", "last"])
def test_nan_input_propagates_like_torch(cell: tuple, path: str) -> None:
    """A NaN input cell makes NaN the outputs whose windows read it and the weight gradients
    of the taps that read it, as in torch (no fast-math: IEEE semantics); a tap that never
    reads it (the last column is no first tap's) stays finite, though a run of flat
    positions passes over it."""
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 2, 9, 8)), rng.standard_normal((2, 1, 3, 3))
    x[1, 0, cell[0], cell[1]] = np.nan
    cx, cw = cs.tensor(x), cs.tensor(w, requires_grad=True)
    tx, tw = torch.tensor(x), torch.tensor(w, requires_grad=True)
    cy, ty = F.conv2d(cx, cw, padding=1, groups=2), TF.conv2d(tx, tw, padding=1, groups=2)
    np.testing.assert_array_equal(np.isnan(cy.numpy()), np.isnan(ty.detach().numpy()))
    g = rng.standard_normal(cy.shape)
    cy.backward(g)
    ty.backward(torch.from_numpy(g))
    np.testing.assert_array_equal(np.isnan(cw.grad), np.isnan(tw.grad.numpy()))
    assert np.isnan(cw.grad[0]).any() and (cell == (4, 3) or not np.isnan(cw.grad[0]).all())
    np.testing.assert_allclose(cw.grad[1], tw.grad.numpy()[1], rtol=1e-10)
    finite = ~np.isnan(cw.grad)
    np.testing.assert_allclose(cw.grad[finite], tw.grad.numpy()[finite], rtol=1e-10)


def test_only_float32_and_float64_are_compiled() -> None:
    """Other dtypes keep the NumPy kernels."""
    assert jit.kernels_for(np.float16) is None and jit.kernels_for(np.int64) is None


# --- the switch, the lazy import, a broken numba ----------------------------------------------
def test_switch_selects_the_kernels_and_restores() -> None:
    before = jit.active()
    with jit.enabled(False):
        assert not jit.active() and jit.kernels() is None
        with jit.enabled(True):
            assert jit.active() == NUMBA
        assert not jit.active()
    assert jit.active() == before
    try:
        jit.set_enabled(False)
        assert not jit.active()
        with jit.enabled(True):
            assert jit.active() == NUMBA
    finally:
        jit.set_enabled(True)
    assert jit.active() == NUMBA
    assert doctest.testmod(jit).failed == 0


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_does_not_import_numba() -> None:
    """``import convscope`` (and work without compiled kernels, here a 1×1 conv, and the memory
    rules of a depthwise conv) leaves numba alone; the first depthwise conv imports it."""
    out = _python("import sys, numpy as np, convscope as cs, convscope.functional as F\n"
                  "x = cs.tensor(np.ones((1, 4, 6, 6), np.float32))\n"
                  "F.conv2d(x, cs.tensor(np.ones((4, 4, 1, 1), np.float32)))\n"
                  "cs.training_memory('mobilenet_v2')\n"
                  "print('numba' in sys.modules)\n"
                  "F.conv2d(x, cs.tensor(np.ones((4, 1, 3, 3), np.float32)), groups=4)\n"
                  "print('numba' in sys.modules)")
    assert out.split() == ["False", str(NUMBA)]


def test_kernels_compile_where_no_cache_directory_is_writable() -> None:
    """A read-only install without a writable user cache: numba refuses ``cache=True`` (a
    RuntimeError at decoration, checked on a read-only mount); the kernels then compile
    without a cache, in every process."""
    if not NUMBA:
        pytest.skip("numba is not installed")
    out = _python("import numba\n"
                  "real = numba.njit\n"
                  "def njit(*args, cache=False, **kwargs):\n"
                  "    if cache:\n"
                  "        raise RuntimeError('cannot cache function: no locator available for file')\n"
                  "    return real(*args, **kwargs)\n"
                  "numba.njit = njit\n"
                  "import numpy as np\n"
                  "from convscope.functional import _depthwise_numba as k\n"
                  "y = np.empty((1, 1, 1, 1, 2))\n"
                  "k.forward(np.arange(4.0).reshape(1, 4), np.ones((1, 1, 3)), y, 0, 1, (1, 1, 4), (0, 0, 0),\n"
                  "          (1, 1, 4), (1, 1, 1), np.arange(3), 1)\n"
                  "print(y.ravel().tolist(), k.forward._cache.__class__.__name__)")
    assert out == "[3.0, 6.0] NullCache"


def test_the_first_compile_is_announced_once(tmp_path) -> None:
    """A process whose kernels are not in numba's cache logs one warning (on stderr) when it
    compiles the first; a process that loads them from the cache, or compiles only other
    code's numba functions, logs nothing."""
    if not NUMBA:
        pytest.skip("numba is not installed")
    code = ("import numba, numpy as np, convscope as cs, convscope.functional as F\n"
            "numba.njit(lambda v: v + 1)(1)\n"
            "x = cs.tensor(np.ones((1, 4, 6, 6), np.float32))\n"
            "print(F.avg_pool2d(x, 2).sum().item(), F.avg_pool2d(x, 3).sum().item())")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
            for _ in range(2)]
    assert [r.stdout for r in runs] == ["36.0 16.0\n"] * 2
    assert runs[0].stderr == "convscope: compiling the engine's numba kernels on first use (a few seconds each; " \
                             "numba caches them)\n"
    assert runs[1].stderr == ""


# --- scratch rules --------------------------------------------------------------------------------
@pytest.mark.parametrize("sample", [s for s in MEMORY_SAMPLES if s[0].startswith("depthwise") or "grouped" in s[0]],
                         ids=lambda s: s[0])
def test_scratch_rules_match_tracemalloc(sample: tuple, path: str) -> None:
    """test_memory's check of the depthwise and grouped ops, on each path: the rule describes
    the kernels that run."""
    assert_scratch_rules_hold(sample)


def test_scratch_rules_follow_the_switch() -> None:
    """The rules are cached per path: switching the kernels changes the rule."""
    if not NUMBA:
        pytest.skip("numba is not installed")
    shape = ("depthwise", 8, 32, 32, (26, 26), (24, 24), conv_module._Geometry((3, 3), (1, 1), (1, 1), 32), 1, 4)
    with jit.enabled(True):
        compiled = [f(*shape) for f in conv_module._SCRATCH]
    with jit.enabled(False):
        numpy_rules = [f(*shape) for f in conv_module._SCRATCH]
    assert compiled != numpy_rules and max(compiled) < min(r for r in numpy_rules if r)


# --- pooling and eval batch norm: ``jit.kernels("pool")`` ----------------------------------------
# (imported here to keep this family's tests in one block)
from convscope.functional import norm as norm_module  # noqa: E402
from convscope.functional import pool as pool_module  # noqa: E402
from test_pool import ADAPTIVE_CASES, POOL_CASES  # noqa: E402
from test_pool import Case as PoolCase  # noqa: E402
from test_pool import _run as run_pool_case  # noqa: E402
from torch_ref import pool_input  # noqa: E402


@pytest.fixture(params=PATHS)
def pool_path(request: pytest.FixtureRequest) -> str:
    """The pooling and batch-norm kernels compiled, then NumPy's; checks that the switch picks them."""
    with jit.enabled(request.param == "compiled"):
        assert (jit.kernels_for(np.float32, "pool") is not None) == (request.param == "compiled")
        yield request.param


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pool_registry_on_both_paths(case: PoolCase, pool_path: str) -> None:
    """test_pool's sweep (max and average, 1-3 d, padding, dilation, ceil mode, divisors,
    unbatched, ties, NaN and infinities), output and input gradient, float64."""
    run_pool_case(case)


@pytest.mark.parametrize("case", POOL_CASES[::5] + ADAPTIVE_CASES[::4], ids=str)
def test_pool_registry_on_both_paths_float32(case: PoolCase, pool_path: str) -> None:
    run_pool_case(case, np.float32)


@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=str)
def test_adaptive_registry_on_both_paths(case: PoolCase, pool_path: str) -> None:
    run_pool_case(case)


def _pool_both(op: str, x: np.ndarray, upstream_seed: int = 1, **kwargs: object) -> tuple:
    """``op`` forward and backward in both engines: (convscope output, input gradient, torch's)."""
    a, t = cs.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ours, theirs = getattr(F, op)(a, **kwargs), getattr(TF, op)(t, **kwargs)
    upstream = np.random.default_rng(upstream_seed).standard_normal(theirs.shape).astype(x.dtype)
    ours.backward(upstream)
    theirs.backward(torch.from_numpy(upstream))
    return ours.numpy(), a.grad, theirs.detach().numpy(), t.grad.numpy()


FLOAT32_BITS = [("max_pool2d", dict(kernel_size=3, stride=2, padding=1)),
                ("max_pool2d", dict(kernel_size=3, stride=1, dilation=2, padding=1, ceil_mode=True)),
                ("max_pool1d", dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)),
                ("max_pool3d", dict(kernel_size=3, stride=(1, 2, 2), padding=1)),
                ("adaptive_max_pool2d", dict(output_size=(5, 19))),  # even bins (4, 1): max-pool windows
                ("avg_pool2d", dict(kernel_size=3, stride=2, padding=1)),
                ("avg_pool2d", dict(kernel_size=(3, 2), stride=(1, 3), padding=1, ceil_mode=True,
                                    count_include_pad=False)),
                ("avg_pool2d", dict(kernel_size=4, stride=1, padding=2, divisor_override=5)),
                ("avg_pool1d", dict(kernel_size=5, stride=2, padding=2)),
                ("avg_pool3d", dict(kernel_size=3, stride=(2, 1, 3), padding=1, ceil_mode=True))]


@pytest.mark.parametrize("kind", ["normal", "ties", "nan", "inf"])
@pytest.mark.parametrize("op,kwargs", FLOAT32_BITS, ids=str)
def test_compiled_pools_are_torchs_float32_bits(op: str, kwargs: dict, kind: str) -> None:
    """The compiled kernels sum every window and every gradient cell in torch's order, so the
    float32 outputs and input gradients are torch's bits (the NumPy average-pool backward adds
    tap by tap instead: equal within rounding only)."""
    if not NUMBA:
        pytest.skip("numba is not installed")
    nd = 3 if op.endswith("3d") else 1 if op.endswith("1d") else 2
    x = pool_input(np.random.default_rng(3), (2, 3) + (20, 19, 21)[:nd], kind).astype(np.float32)
    with jit.enabled(True):
        out, grad, want, want_grad = _pool_both(op, x, **kwargs)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(grad, want_grad)


@pytest.mark.parametrize("op,kwargs", [b for b in FLOAT32_BITS if "max" in b[0]], ids=str)
def test_max_pool_float32_gradient_bits_on_both_paths(op: str, kwargs: dict, pool_path: str) -> None:
    """Cells that overlapping windows pick sum their gradients in torch's order on either path."""
    nd = 3 if op.endswith("3d") else 1 if op.endswith("1d") else 2
    x = pool_input(np.random.default_rng(4), (2, 3) + (20, 19, 21)[:nd], "ties").astype(np.float32)
    out, grad, want, want_grad = _pool_both(op, x, **kwargs)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(grad, want_grad)


@pytest.mark.parametrize("op,args", [("max_pool2d", (3, 2, 1)), ("max_pool1d", (2,)), ("avg_pool2d", (3, 2, 1)),
                                     ("avg_pool3d", (2,)), ("adaptive_max_pool2d", ((2, 3),)),
                                     ("adaptive_avg_pool2d", ((2, 3),))], ids=str)
def test_empty_batch_on_both_paths(op: str, args: tuple, pool_path: str) -> None:
    """Batch 0: an empty output and an empty input gradient, as torch."""
    nd = int(op[-2])
    x = np.zeros((0, 2) + (4, 6, 6)[3 - nd:])
    a, t = cs.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ours, theirs = getattr(F, op)(a, *args), getattr(TF, op)(t, *args)
    assert ours.shape == tuple(theirs.shape)
    ours.backward(np.zeros(ours.shape))
    assert a.grad.shape == x.shape


@pytest.mark.parametrize("threads", [1, 2])
def test_pool_and_norm_bits_do_not_depend_on_blocks_or_threads(threads: int, monkeypatch: pytest.MonkeyPatch,
                                                                 pool_path: str) -> None:
    """Every output and gradient cell sums in one fixed order: one plane per block on one or two
    threads gives the bits of one block of all planes (max and average pools, eval batch norm;
    training batch norm's gradients, a channel per block)."""
    rng = np.random.default_rng(6)
    x0 = rng.standard_normal((3, 7, 31, 30)).astype(np.float32)
    stats = [np.abs(rng.standard_normal(7)).astype(np.float32) + 0.5 for _ in range(4)]

    def run() -> list[np.ndarray]:
        results = []
        for op, kwargs in (("max_pool2d", dict(kernel_size=3, stride=2, padding=1)),
                           ("avg_pool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True))):
            x = cs.tensor(x0, requires_grad=True)
            y = getattr(F, op)(x, **kwargs)
            y.backward(np.cos(np.arange(y.numpy().size, dtype=np.float32)).reshape(y.shape))
            results += [y.numpy(), x.grad]
        weight, bias = (cs.tensor(s) for s in stats[2:])
        results.append(F.batch_norm(cs.tensor(x0), cs.tensor(stats[0]), cs.tensor(stats[1]), weight, bias).numpy())
        if pool_path == "compiled":  # (NumPy's sums follow its blocks' shapes, the threads aside)
            x, weight = cs.tensor(symmetric, requires_grad=True), cs.tensor(stats[2], requires_grad=True)
            y = F.batch_norm(x, None, None, weight, bias, training=True)
            y.backward(np.sin(np.arange(y.numpy().size, dtype=np.float32)).reshape(y.shape))
            results += [x.grad, weight.grad]
        return results

    # training batch norm: every channel's sum of cells 0 and of squares an integer in any order,
    # so the forward (NumPy's, in blocks) has the same bits whatever the blocks
    half = rng.integers(-3, 4, (3, 7, 31, 15)).astype(np.float32)
    symmetric = np.concatenate([half, -half], axis=-1)

    whole = run()
    monkeypatch.setattr(pool_module, "_POOL_BLOCK_ELEMENTS", 1)
    monkeypatch.setattr(norm_module, "_AFFINE_TILE_ELEMENTS", 1)
    monkeypatch.setattr(norm_module, "_NORM_BLOCK_ELEMENTS", 1)
    with threadpool_limits(threads, user_api="blas"):
        assert len(pool_module._plane_blocks(21, 31 * 30)) == 21
        for a, b in zip(run(), whole):
            np.testing.assert_array_equal(a, b)


@pytest.fixture(params=["cached", "streamed"])
def stores(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The compiled batch-norm kernels' outputs (and training's normalised input) stored
    through the caches, then streamed past them (every output over the threshold, so that
    small planes with a misaligned head and a tail run the streamed lines too)."""
    if request.param == "streamed":
        monkeypatch.setattr(norm_module, "_STREAM_BYTES", 0)
    return request.param


@pytest.mark.parametrize("shape", [(2, 5, 9, 11), (3, 4, 300), (0, 3, 4, 4), (2, 3, 0), (4, 6), (2, 2, 3, 4, 5)],
                         ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eval_batch_norm_on_both_paths(shape: tuple, dtype: type, pool_path: str, stores: str) -> None:
    """Eval batch norm's one pass (compiled, stored through the caches or streamed) or two
    (NumPy) against torch, gradients included, NaN and infinite inputs propagating to their own
    cells; and the paths' float32 bits are the same (a product rounded, then a sum)."""
    rng = np.random.default_rng(7)
    c = shape[1]
    x = rng.standard_normal(shape)
    if x.size:
        x.reshape(-1)[::7] = np.nan
        x.reshape(-1)[3::11] = -np.inf
    mean, var = rng.standard_normal(c), np.abs(rng.standard_normal(c)) + 0.5
    params = [rng.standard_normal(c), rng.standard_normal(c)]
    cast = [a.astype(dtype) for a in (mean, var)]
    compare(lambda v, w, b: F.batch_norm(v, cs.tensor(cast[0]), cs.tensor(cast[1]), w, b),
            lambda v, w, b: TF.batch_norm(v, torch.tensor(cast[0]), torch.tensor(cast[1]), w, b),
            [x, *params], dtype=dtype, grad=0 not in shape)
    out = F.batch_norm(cs.tensor(x.astype(dtype)), cs.tensor(cast[0]), cs.tensor(cast[1]),
                       *(cs.tensor(p.astype(dtype)) for p in params)).numpy()
    np.testing.assert_array_equal(np.isnan(out), np.isnan(x))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(x))
    with jit.enabled(pool_path == "numpy"):  # the other path
        other = F.batch_norm(cs.tensor(x.astype(dtype)), cs.tensor(cast[0]), cs.tensor(cast[1]),
                             *(cs.tensor(p.astype(dtype)) for p in params)).numpy()
    np.testing.assert_array_equal(out, other)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("affine", [("weight", "bias"), (), ("weight",), ("bias",)], ids=str)
@pytest.mark.parametrize("shape", [(4, 5, 9, 11), (6, 3), (3, 4, 300), (2, 3, 4, 5, 6)], ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_batch_norm_on_both_paths(shape: tuple, dtype: type, affine: tuple, pool_path: str,
                                           stores: str) -> None:
    """Training batch norm's forward and backward (compiled: float64 sums per channel, one
    kernel each way, the output, the normalised input and the input gradient stored through the
    caches or streamed) against torch: output, input, weight and bias gradients; 2-d to 5-d
    inputs, with and without the affine parameters."""
    rng = np.random.default_rng(13)
    params = [rng.standard_normal(shape[1]) for _ in affine]
    x = rng.standard_normal(shape) * 3 + 1
    compare(lambda v, *p: F.batch_norm(v, None, None, **dict(zip(affine, p)), training=True),
            lambda v, *p: TF.batch_norm(v, None, None, **dict(zip(affine, p)), training=True), [x, *params],
            dtype=dtype)


def test_training_batch_norm_partial_grads_and_strided_upstream(pool_path: str) -> None:
    """Only the weight requires a gradient (no input gradient is built), and an upstream
    gradient that is a strided view; a NaN input cell makes its channel's gradients NaN, as in torch."""
    rng = np.random.default_rng(14)
    x, w, b = rng.standard_normal((3, 4, 6, 5)), rng.standard_normal(4), rng.standard_normal(4)
    x[1, 2, 3, 3] = np.nan
    upstream = rng.standard_normal((3, 4, 6, 10))[..., ::2]
    for x_grad in (False, True):
        cx, cw, cb = cs.tensor(x, requires_grad=x_grad), cs.tensor(w, requires_grad=True), cs.tensor(b)
        tx, tw, tb = torch.tensor(x, requires_grad=x_grad), torch.tensor(w, requires_grad=True), torch.tensor(b)
        F.batch_norm(cx, None, None, cw, cb, training=True).backward(upstream)
        TF.batch_norm(tx, None, None, tw, tb, training=True).backward(torch.from_numpy(upstream.copy()))
        np.testing.assert_allclose(cw.grad, tw.grad.numpy(), rtol=1e-10, equal_nan=True)
        assert np.isnan(cw.grad[2]) and not np.isnan(cw.grad[[0, 1, 3]]).any()
        if x_grad:
            np.testing.assert_allclose(cx.grad, tx.grad.numpy(), rtol=1e-9, atol=1e-12, equal_nan=True)
        else:
            assert cx.grad is None


def test_training_batch_norm_runs_the_compiled_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training batch norm's forward and backward each run their kernel on every block of
    channels; instance norm (statistics per sample and channel) runs neither."""
    if not NUMBA:
        pytest.skip("numba is not installed")
    kernels, calls = jit.kernels("pool"), []
    for name in ("norm_forward", "norm_backward"):
        real = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *args, real=real, name=name: calls.append((name, *args[-3:-1]))
                            or real(*args))
    monkeypatch.setattr(norm_module, "_NORM_BLOCK_ELEMENTS", 1)  # a block per channel
    x = cs.tensor(np.random.default_rng(15).standard_normal((2, 3, 4, 4)).astype(np.float32), requires_grad=True)
    with jit.enabled(True):
        F.instance_norm(x).sum().backward()
        assert calls == []
        F.batch_norm(x, None, None, training=True).sum().backward()
    assert sorted(calls) == [(name, c, c + 1) for name in ("norm_backward", "norm_forward") for c in range(3)]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_batch_norm_non_finite_channels(dtype: type, pool_path: str, stores: str) -> None:
    """A NaN or an infinite cell makes its channel's statistics and outputs NaN, as in torch;
    the other channels and the running statistics are torch's."""
    x = np.random.default_rng(16).standard_normal((3, 4, 5, 6)).astype(dtype)
    x[1, 1, 2, 3], x[0, 2, 0, 0] = np.nan, np.inf
    running = [cs.tensor(np.zeros(4, dtype)), cs.tensor(np.ones(4, dtype))]
    torch_running = [torch.zeros(4, dtype=torch.from_numpy(x).dtype), torch.ones(4, dtype=torch.from_numpy(x).dtype)]
    out = F.batch_norm(cs.tensor(x), *running, training=True).numpy()
    want = TF.batch_norm(torch.from_numpy(x.copy()), *torch_running, training=True).numpy()
    assert np.isnan(out[:, 1:3]).all() and np.isfinite(out[:, [0, 3]]).all()
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol, equal_nan=True)
    for got, expected in zip(running, torch_running, strict=True):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=tol, equal_nan=True)


def test_batch_norm_streams_only_large_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled batch-norm kernels stream their stores from ``_STREAM_BYTES`` of output
    (eval's and training's output, training's input gradient), and store through the caches
    below it."""
    if not NUMBA:
        pytest.skip("numba is not installed")
    kernels, calls = jit.kernels("pool"), []
    for name in ("scale_shift", "norm_forward", "norm_backward"):
        real = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *args, real=real, name=name: calls.append((name, args[-1]))
                            or real(*args))
    monkeypatch.setattr(norm_module, "_STREAM_BYTES", 4 * 3 * 16 * 16)
    stats = [cs.tensor(np.zeros(3, np.float32)), cs.tensor(np.ones(3, np.float32))]
    with jit.enabled(True):
        for side in (15, 16):
            x = cs.tensor(np.ones((1, 3, side, side), np.float32), requires_grad=True)
            F.batch_norm(x, *stats)
            F.batch_norm(x, None, None, training=True).sum().backward()
    assert set(calls) == {(name, stream) for name in ("scale_shift", "norm_forward", "norm_backward")
                          for stream in (False, True)}
    assert calls[0][1] is False and calls[-1][1] is True


POOL_MEMORY = [s for s in MEMORY_SAMPLES if s[0] in ("max_pool", "max_pool_2x2", "avg_pool", "adaptive_max",
                                                     "batch_norm_eval", "batch_norm_train")] + [
    # planes big enough that a busy thread's buffers of the compiled average pool pass the slack
    ("avg_pool_wide", lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True), [(4, 8, 150, 151)], []),
    ("avg_pool_3d", lambda x: F.avg_pool3d(x, 3, (1, 2, 2), 1), [(2, 4, 10, 60, 61)], []),
    ("avg_pool_stride1", lambda x: F.avg_pool2d(x, 3, 1, 1), [(4, 8, 100, 101)], []),
    ("max_pool_3d", lambda x: F.max_pool3d(x, 3, 2, 1), [(2, 4, 10, 60, 61)], []),
    ("batch_norm_eval_wide", lambda x, w, b: F.batch_norm(x, np.zeros(64, np.float32), np.ones(64, np.float32), w, b),
     [(4, 64, 40, 40)], [("param", (64,)), ("param", (64,))]),
    ("batch_norm_train_wide", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
     [(4, 64, 40, 40)], [("param", (64,)), ("param", (64,))]),
]


@pytest.mark.parametrize("sample", POOL_MEMORY, ids=lambda s: s[0])
def test_pool_and_norm_scratch_rules_on_both_paths(sample: tuple, pool_path: str) -> None:
    """test_memory's tracemalloc check of the pools and eval batch norm, on each path, for one
    block of planes and several: the rule describes the kernels that run. (Two calls first: a
    process's first compiled call imports modules, after which the thread count rescans the
    BLAS libraries once, on the next call.)"""
    _, fn, shapes, params = sample
    rng = np.random.default_rng(0)
    for _ in range(2):
        out = fn(*(cs.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in shapes),
                 *(cs.tensor(np.ones(s, np.float32), requires_grad=True) for _, s in params))
        out.backward(np.ones(out.shape, np.float32))
    assert_scratch_rules_hold(sample)


def test_pool_rules_follow_the_switch() -> None:
    """The compiled kernels allocate other buffers than the NumPy ones, and the rules say so."""
    if not NUMBA:
        pytest.skip("numba is not installed")
    x, out = cs.Tensor.meta((8, 64, 112, 112)), cs.Tensor.meta((8, 64, 56, 56))
    attrs = {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1, 1), "dilation": (1, 1)}
    with jit.enabled(True):
        compiled = (pool_module._avg_pool_saved([x], out, attrs), pool_module._max_pool_saved([x], out, attrs))
    with jit.enabled(False):
        numpy_rules = (pool_module._avg_pool_saved([x], out, attrs), pool_module._max_pool_saved([x], out, attrs))
    for fast, slow in zip(compiled, numpy_rules):  # a plane's buffers per thread, not a block's
        assert fast.backward_workspace * 10 < slow.backward_workspace


def test_pool_kernels_switch_and_dtypes() -> None:
    """``jit.runs`` says which dtypes the compiled kernels take (float32, float64), without
    importing numba; switched off, no kernels."""
    assert not jit.runs(np.float16) and not jit.runs(np.int64)
    with jit.enabled(False):
        assert not jit.runs(np.float32) and jit.kernels("pool") is None
    with jit.enabled(True):
        assert jit.runs(np.float64) == NUMBA
        assert (jit.kernels("pool") is not None) == NUMBA
    with pytest.raises(KeyError):
        jit.kernels("fft")


@pytest.mark.parametrize("module,slot,error", [
    ("_depthwise_numba", "module", OSError("libllvmlite.so: cannot open shared object file")),
    ("_pool_numba", "pool", ImportError("numba: cannot load the cached kernels")),
    ("_winograd_numba", "winograd", ImportError("numba: cannot load the cached kernels"))],
    ids=["depthwise", "pool", "winograd"])
def test_a_failing_kernel_import_falls_back_with_a_warning(module: str, slot: str, error: Exception,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """numba installed but a kernel module fails to import (an llvmlite that does not load, a
    broken cache): one warning, every compiled kernel off, the NumPy kernels with the same results."""
    real = importlib.import_module

    def broken(name: str, *args: object) -> object:
        if name.endswith("." + module):
            raise error
        return real(name, *args)

    monkeypatch.setattr(jit.importlib, "import_module", broken)
    monkeypatch.setattr(jit._State, slot, None)
    monkeypatch.setattr(jit._State, "error", None)
    monkeypatch.setattr(jit._State, "installed", True)
    family = "depthwise" if slot == "module" else slot
    with jit.enabled(True):
        with pytest.warns(RuntimeWarning, match="numba failed to import .*" + re.escape(str(error))):
            assert jit.kernels(family) is None
        assert not jit.active() and all(jit.kernels(f) is None for f in ("depthwise", "pool", "winograd"))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert jit.kernels(family) is None  # said once
        _run(SWEEP[0], np.float64)
        run_pool_case(POOL_CASES[0])
