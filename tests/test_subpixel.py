"""Strided convolutions' input gradients (and transposed convolutions) computed per stride phase.

:mod:`convscope.functional.subpixel` plans the phases; ``conv._grad_input_phased`` runs them.
The plan is checked against a direct scatter of every (window, tap) product; the kernels
against torch, over the whole conv sweep of ``test_conv`` with the phased path forced on
(in normal use it needs ``_PHASED_CHANNELS`` input channels per group), its phases run one by
one or stacked into one conv wherever they can be (``conv._stacked``), and on layers of the
sizes real networks have, stacked or not. With the compiled kernels the same gradients over
enough windows take the products of every tap instead (``conv._grad_input_taps``, tested in
``test_jit``); here that path is off, so the phases run whichever kernels do.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch.nn.functional as TF

import convscope as cs
import convscope.functional as F
from convscope.functional import conv as conv_module
from convscope.functional.subpixel import phases
from test_conv import SAMPLES, Sample, run
from torch_ref import compare


@pytest.fixture(autouse=True)
def _phases_not_taps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conv_module, "_TAPS_POSITIONS", math.inf)


def _strided(sample: Sample) -> bool:
    return max(np.atleast_1d(sample.kwargs.get("stride", 1))) > 1


STRIDED = [s for s in SAMPLES if _strided(s)]


def _scatter(g: np.ndarray, w: np.ndarray, stride: tuple, dilation: tuple, padded: tuple) -> np.ndarray:
    """The input gradient of a single-channel conv by its definition: every window's output
    gradient times every tap, added onto the cell the tap read."""
    out = np.zeros(padded)
    for o in itertools.product(*map(range, g.shape)):
        for k in itertools.product(*map(range, w.shape)):
            out[tuple(oi * s + ki * d for oi, ki, s, d in zip(o, k, stride, dilation, strict=True))] += g[o] * w[k]
    return out


def _from_phases(g: np.ndarray, w: np.ndarray, stride: tuple, dilation: tuple, region: list) -> np.ndarray:
    """The same gradient over ``region`` assembled from the plan: each phase a stride-1
    correlation of zero-extended ``g`` with its taps, written into its cells."""
    out = np.full([hi - lo for lo, hi in region], np.nan)
    for ph in phases(w.shape, stride, dilation, region):
        cells = out[ph.cells]
        if ph.empty:
            cells[...] = 0
            continue
        taps = w[np.ix_(*ph.taps)]
        for q in itertools.product(*map(range, ph.size)):
            total = 0.0
            for i in itertools.product(*map(range, ph.kernel)):
                at = tuple(s + qi + ii * d for s, qi, ii, d in zip(ph.start, q, i, ph.dilation, strict=True))
                inside = all(0 <= a < n for a, n in zip(at, g.shape, strict=True))
                total += g[at] * taps[i] if inside else 0.0
            cells[q] = total
    return out


_rng = np.random.default_rng(7)
PLANS = []
for _ in range(120):
    nd = int(_rng.integers(1, 3))
    kernel = tuple(int(k) for k in _rng.integers(1, 6, nd))
    stride = tuple(int(s) for s in _rng.integers(1, 5, nd))
    dilation = tuple(int(d) for d in _rng.integers(1, 4, nd))
    windows = tuple(int(o) for o in _rng.integers(1, 6, nd))
    padded = tuple((o - 1) * s + d * (k - 1) + 1 + int(_rng.integers(0, s))
                   for o, s, d, k in zip(windows, stride, dilation, kernel, strict=True))
    region = [(lo, p - int(_rng.integers(0, p - lo))) for p in padded for lo in [int(_rng.integers(0, p))]]
    PLANS.append((kernel, stride, dilation, windows, padded, region))


@pytest.mark.parametrize("case", PLANS, ids=lambda c: "k{}s{}d{}o{}r{}".format(*c[:4], c[5]))
def test_phases_reassemble_the_scattered_gradient(case: tuple) -> None:
    kernel, stride, dilation, windows, padded, region = case
    rng = np.random.default_rng(len(PLANS))
    g, w = rng.standard_normal(windows), rng.standard_normal(kernel)
    want = _scatter(g, w, stride, dilation, padded)[tuple(slice(lo, hi) for lo, hi in region)]
    got = _from_phases(g, w, stride, dilation, region)  # NaN where no phase wrote
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_every_cell_in_exactly_one_phase() -> None:
    for kernel, stride, dilation, _, _, region in PLANS:
        hits = np.zeros([hi - lo for lo, hi in region], int)
        for ph in phases(kernel, stride, dilation, region):
            hits[ph.cells] += 1
        assert (hits == 1).all()


@pytest.fixture(params=["stacked", "one_by_one"])
def always_phased(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The phased path forced on, its phases run as one stacked conv wherever they share a
    kernel and dilation (whatever the waste), or always one by one."""
    monkeypatch.setattr(conv_module, "_PHASED_CHANNELS", 1)
    monkeypatch.setattr(conv_module, "_STACK_WASTE", math.inf if request.param == "stacked" else 0)


@pytest.mark.parametrize("sample", STRIDED, ids=str)
def test_sweep_matches_torch_with_phases_forced(sample: Sample, always_phased: None) -> None:
    run(sample)


@pytest.mark.parametrize("sample", STRIDED[::3], ids=str)
def test_sweep_matches_torch_float32_with_phases_forced(sample: Sample, always_phased: None) -> None:
    run(sample, np.float32, seed=1)


# Layers with enough channels per group to take the phased path unforced.
LAYERS = [
    ("transposed_k4_s2", "conv_transpose2d", (2, 16, 7, 6), (16, 8, 4, 4), {"stride": 2, "padding": 1}),
    ("transposed_s3_d2_outpad", "conv_transpose2d", (2, 16, 5, 6), (16, 8, 3, 3),
     {"stride": 3, "padding": (1, 2), "output_padding": (1, 2), "dilation": 2}),
    ("transposed_grouped", "conv_transpose2d", (1, 16, 5, 5), (16, 8, 3, 3), {"stride": 2, "groups": 2}),
    ("transposed_1d", "conv_transpose1d", (2, 8, 9), (8, 12, 5), {"stride": 3, "padding": 2}),
    ("transposed_3d", "conv_transpose3d", (1, 8, 3, 4, 3), (8, 8, 2, 3, 3), {"stride": (2, 1, 3), "padding": 1}),
    ("conv_3x3_s2", "conv2d", (2, 8, 15, 14), (16, 8, 3, 3), {"stride": 2, "padding": 1}),
    ("conv_1x1_s2", "conv2d", (2, 16, 9, 8), (12, 16, 1, 1), {"stride": 2}),
    ("conv_dilated_s2_grouped", "conv2d", (2, 16, 13, 12), (8, 8, 3, 3), {"stride": 2, "dilation": 2, "groups": 2}),
    ("conv_7x7_s2_unbatched", "conv2d", (8, 23, 21), (4, 8, 7, 7), {"stride": 2, "padding": 3}),
    ("conv3d_s2", "conv3d", (1, 8, 7, 6, 7), (8, 8, 3, 3, 3), {"stride": 2, "padding": 1}),
    # phases on the depthwise path (one output channel per group), and on Winograd (3×3 phases, 128 channels)
    ("conv_s2_one_output_per_group", "conv2d", (2, 16, 9, 9), (2, 8, 3, 3), {"stride": 2, "groups": 2}),
    ("transposed_k6_s2_winograd", "conv_transpose2d", (1, 128, 24, 24), (128, 8, 6, 6), {"stride": 2, "padding": 2}),
]
# Layers whose phases run as one stacked conv unforced (kernel 2·stride), on each of its paths:
# planar (flat runs; wide rows into the cells tile by tile), direct (1×1 phases), depthwise (one
# input channel per group), im2col, Winograd; grouped, 1-d and 3-d (8 phases).
STACKED = [
    ("transposed_k4_s2", "conv_transpose2d", (2, 16, 18, 17), (16, 8, 4, 4), {"stride": 2, "padding": 1}),
    ("transposed_k4_s2_wide", "conv_transpose2d", (1, 16, 12, 70), (16, 8, 4, 4), {"stride": 2, "padding": 1}),
    ("transposed_k2_s2_direct", "conv_transpose2d", (2, 16, 9, 10), (16, 8, 2, 2), {"stride": 2}),
    ("transposed_k4_s2_grouped", "conv_transpose2d", (2, 16, 18, 18), (16, 8, 4, 4),
     {"stride": 2, "padding": 1, "groups": 2}),
    ("transposed_k4_s2_depthwise", "conv_transpose2d", (2, 4, 18, 18), (4, 8, 4, 4),
     {"stride": 2, "padding": 1, "groups": 4}),
    ("transposed_k4_s2_d3_im2col", "conv_transpose2d", (1, 32, 20, 20), (32, 8, 4, 4),
     {"stride": 2, "dilation": 3, "padding": 2}),
    ("transposed_k6_s2_winograd", "conv_transpose2d", (1, 128, 24, 24), (128, 8, 6, 6), {"stride": 2, "padding": 2}),
    ("transposed_1d_k6_s3", "conv_transpose1d", (2, 8, 30), (8, 12, 6), {"stride": 3, "padding": 2}),
    ("transposed_3d_k2_s2", "conv_transpose3d", (1, 8, 5, 6, 7), (8, 8, 2, 2, 2), {"stride": 2}),
    ("conv_k2_s2_grad", "conv2d", (2, 8, 20, 18), (16, 8, 2, 2), {"stride": 2}),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer[0])
def test_layers_take_the_phased_path_and_match_torch(layer: tuple, dtype: type,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _, op, input_shape, weight_shape, kwargs = layer
    calls = []
    phased = conv_module._grad_input_phased
    monkeypatch.setattr(conv_module, "_grad_input_phased", lambda *a: calls.append(1) or phased(*a))
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(input_shape), rng.standard_normal(weight_shape)]
    compare(getattr(F, op), getattr(TF, op), arrays, kwargs, dtype=dtype, seed=2)
    assert calls  # the conv's backward, or the transposed conv's forward


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layer", STACKED, ids=lambda layer: layer[0])
def test_layers_stack_their_phases_and_match_torch(layer: tuple, dtype: type, monkeypatch: pytest.MonkeyPatch) -> None:
    _, op, input_shape, weight_shape, kwargs = layer
    paths = []
    stacked = conv_module._run_stacked
    monkeypatch.setattr(conv_module, "_run_stacked", lambda g, w, plan, stack, gx: paths.append(stack.path)
                        or stacked(g, w, plan, stack, gx))
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal(input_shape), rng.standard_normal(weight_shape)]
    compare(getattr(F, op), getattr(TF, op), arrays, kwargs, dtype=dtype, seed=2)
    assert paths


def test_stacked_layers_cover_every_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The layers above reach the stacked conv on each kernel path."""
    seen = set()
    stacked = conv_module._run_stacked
    monkeypatch.setattr(conv_module, "_run_stacked", lambda g, w, plan, stack, gx: seen.add(stack.path)
                        or stacked(g, w, plan, stack, gx))
    rng = np.random.default_rng(5)
    for _, op, input_shape, weight_shape, kwargs in STACKED:
        x = cs.tensor(rng.standard_normal(input_shape), requires_grad=True)
        getattr(F, op)(x, cs.tensor(rng.standard_normal(weight_shape)), **kwargs).sum().backward()
    assert seen == {"planar", "direct", "depthwise", "im2col", "winograd"}, seen
