"""``interpolate`` against torch: every mode, sizes up and down, non-integer scale factors,
``align_corners`` and ``recompute_scale_factor`` both ways, float64 and float32.

Gradients are compared with torch's wherever torch's backward is the transpose of its own
forward (checked on torch alone with a dot-product test). Where it is not (torch's CPU
nearest backward recomputes indices with a legacy rule), the gradient is compared with the
transpose of torch's forward, materialised by running torch on one-hot inputs.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import convscope as cs
from convscope.functional import interpolate, upsample, upsample_bilinear, upsample_nearest
from torch_ref import assert_close, both_refuse, compare

LINEAR_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _samples(seed: int, count: int) -> list[tuple[tuple, dict]]:
    """Seeded configurations: (input shape, interpolate kwargs)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        nd = int(rng.integers(1, 4))
        spatial = tuple(int(v) for v in rng.integers(1, 9 if nd < 3 else 5, nd))
        mode = str(rng.choice(["nearest", "nearest-exact", LINEAR_MODE[nd], "area"] + ["bicubic"] * (nd == 2)))
        kw: dict = {"mode": mode}
        if mode in (LINEAR_MODE[nd], "bicubic"):
            kw["align_corners"] = [True, False, None][int(rng.integers(3))]
        if rng.random() < 0.4:
            size = tuple(int(v) for v in rng.integers(1, 12, nd))
            kw["size"] = size if rng.random() < 0.7 else size[0]
        else:
            factors = [float(rng.choice([rng.uniform(0.3, 3.5), rng.choice([0.5, 1.5, 2.0, 1 / 3, 0.75, 4 / 3, 2.2])]))
                       for _ in range(nd)]
            if any(int(n * f) <= 0 for n, f in zip(spatial, factors, strict=True)):
                continue
            same = len(set(factors)) == 1 or rng.random() < 0.3
            kw["scale_factor"] = factors[0] if same and all(
                int(n * factors[0]) > 0 for n in spatial) else tuple(factors)
            kw["recompute_scale_factor"] = [None, False, True][int(rng.integers(3))]
        out.append(((2, 3) + spatial, kw))
    return out


def _torch_is_adjoint(x: np.ndarray, kw: dict) -> bool:
    """torch's backward transposes its forward in x's dtype: <F(x), g> == <x, Fᵀg> (F is linear)."""
    xt = torch.tensor(x, requires_grad=True)
    y = F.interpolate(xt, **kw)
    g = torch.tensor(np.random.default_rng(1).standard_normal(tuple(y.shape)).astype(x.dtype))
    y.backward(g)
    lhs, rhs = float((y.detach() * g).double().sum()), float((xt.detach() * xt.grad).double().sum())
    return abs(lhs - rhs) <= 1e-4 * max(1.0, float((y.detach() * g).abs().sum()))


def _torch_forward_transpose(shape: tuple, kw: dict, g: np.ndarray) -> np.ndarray:
    """``Fᵀg`` for torch's forward ``F`` in g's dtype, built from one-hot inputs."""
    cells = int(np.prod(shape[2:]))
    basis = torch.eye(cells, dtype=torch.from_numpy(g).dtype).reshape((cells, 1) + shape[2:])
    matrix = F.interpolate(basis, **kw).reshape(cells, -1).double().numpy()
    return (g.reshape(shape[0] * shape[1], -1) @ matrix.T).reshape(shape)


def _check(shape: tuple, kw: dict, dtype, seed: int = 0) -> None:
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    if _torch_is_adjoint(x, kw):
        compare(interpolate, F.interpolate, [x], kw, dtype=dtype)
        return
    c_out, _ = compare(interpolate, F.interpolate, [x], kw, dtype=dtype, grad=False)
    g = np.random.default_rng(seed + 1).standard_normal(c_out.shape).astype(dtype)
    xc = cs.tensor(x, requires_grad=True)
    interpolate(xc, **kw).backward(g)
    assert_close(xc.grad, _torch_forward_transpose(shape, kw, g), dtype, "grad vs transpose of torch's forward")


SWEEP = _samples(7, 120)
FLOAT32 = _samples(11, 40)


@pytest.mark.parametrize("shape,kw", SWEEP, ids=[f"{s}-{k}" for s, k in SWEEP])
def test_sweep_float64(shape, kw):
    _check(shape, kw, np.float64)


@pytest.mark.parametrize("shape,kw", FLOAT32, ids=[f"{s}-{k}" for s, k in FLOAT32])
def test_sweep_float32(shape, kw):
    _check(shape, kw, np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_long_sweep(seed):
    for shape, kw in _samples(100 + seed, 400):
        for dtype in (np.float64, np.float32):
            _check(shape, kw, dtype, seed)


# Cases at the edges of torch's index arithmetic, each found by a sweep.
EDGES = [
    ((1, 2, 112), {"size": 198, "mode": "nearest"}),  # float64 coordinate lands on an integer
    ((1, 2, 128), {"size": 97, "mode": "nearest-exact"}),
    ((1, 2, 2), {"size": 47, "mode": "nearest-exact"}),  # fused multiply-add in float32
    ((1, 2, 137), {"scale_factor": 0.48, "mode": "nearest"}),
    ((1, 2, 116), {"scale_factor": 3 / 7, "mode": "nearest", "recompute_scale_factor": False}),
    ((1, 2, 75), {"scale_factor": 3.97, "mode": "nearest", "recompute_scale_factor": True}),
    ((1, 2, 4), {"scale_factor": 1.17, "mode": "linear"}),  # out == in: torch copies
    ((1, 2, 4, 3), {"scale_factor": 1.17, "mode": "nearest"}),  # 2-d out == in: copies
    ((1, 2, 2, 5), {"scale_factor": (2.2, 2.1), "mode": "nearest"}),  # 2-d out == 2·in: halves
    ((1, 2, 2, 3, 4), {"scale_factor": 2.2, "mode": "nearest"}),  # 3-d: uses the scale
    ((1, 2, 7), {"size": 1, "mode": "linear", "align_corners": True}),
    ((1, 2, 1), {"size": 5, "mode": "linear", "align_corners": True}),
    ((1, 2, 5), {"scale_factor": 0.2, "mode": "linear", "recompute_scale_factor": True}),
    ((0, 2, 5), {"size": 3, "mode": "linear"}),
    ((1, 2, 4, 3), {"scale_factor": 1.17, "mode": "bicubic"}),  # out == in: torch resamples, unlike linear
    ((1, 2, 1, 2), {"scale_factor": (1.49, 1.08), "mode": "bicubic"}),  # ... but its backward copies
    ((1, 2, 1, 1), {"size": (5, 3), "mode": "bicubic", "align_corners": True}),
    ((1, 2, 7, 6), {"size": (1, 2), "mode": "bicubic", "align_corners": True}),
    ((1, 2, 9, 10), {"size": (3, 4), "mode": "bicubic"}),  # coordinates below 0: not clamped
    ((1, 2, 5, 6), {"scale_factor": 0.2, "mode": "bicubic", "recompute_scale_factor": True}),
    ((0, 2, 5, 5), {"size": 3, "mode": "bicubic"}),
    ((2, 2, 7), {"size": 3, "mode": "area"}),
    ((2, 2, 5, 7), {"scale_factor": (1.5, 0.4), "mode": "area"}),
    ((1, 2, 3, 4, 5), {"size": (5, 2, 3), "mode": "area"}),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,kw", EDGES, ids=[f"{s}-{k}" for s, k in EDGES])
def test_edges(shape, kw, dtype):
    _check(shape, kw, dtype)


@pytest.mark.parametrize("shape,kw", [((2, 2, 5), {"size": 0}), ((1, 2, 1, 1, 6), {"scale_factor": (0.3, 2.3, 1.5)}),
                                      ((1, 2, 4, 3), {"size": (2, 0)})])
def test_area_accepts_an_empty_output(shape, kw):
    """Area is adaptive average pooling, which torch runs to an output size of 0 (the other modes
    refuse it). torch's backward then refuses its empty gradient; ours is all zeros."""
    x = np.random.default_rng(0).standard_normal(shape)
    out, want = compare(interpolate, F.interpolate, [x], {**kw, "mode": "area"}, grad=False)
    assert out.shape == tuple(want.shape) and 0 in out.shape
    xc = cs.tensor(x, requires_grad=True)
    interpolate(xc, **kw, mode="area").backward(np.zeros(out.shape))
    np.testing.assert_array_equal(xc.grad, np.zeros(shape))


def test_torch_nearest_backward_differs_from_its_forward():
    """Pins the documented deviation: torch's 1-d nearest backward uses ``out == in``
    → copy, its forward uses ``floor(j / 1.17)``; ours is the transpose of the forward."""
    kw = {"scale_factor": 1.17, "mode": "nearest"}
    x = np.arange(4.0).reshape(1, 1, 4)
    assert F.interpolate(torch.tensor(x), **kw).flatten().tolist() == [0, 0, 1, 2]
    assert not _torch_is_adjoint(x, kw)  # torch's grad is [1, 1, 1, 1]
    xc = cs.tensor(x, requires_grad=True)
    out = interpolate(xc, **kw)
    out.backward(np.ones(out.shape))
    np.testing.assert_array_equal(xc.grad.ravel(), [2, 1, 1, 0])


# --- aliases --------------------------------------------------------------------------------
@pytest.mark.parametrize("name,ours,theirs,shape,kw", [
    ("upsample", upsample, F.upsample, (2, 3, 4, 5), {"scale_factor": 1.5, "mode": "bilinear"}),
    ("upsample_nearest", upsample_nearest, F.upsample_nearest, (2, 3, 3, 4), {"size": (5, 7)}),
    ("upsample_bilinear", upsample_bilinear, F.upsample_bilinear, (2, 3, 3, 4), {"scale_factor": 2}),
])
def test_aliases(name, ours, theirs, shape, kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compare(ours, theirs, [np.random.default_rng(3).standard_normal(shape)], kw)


# --- meta tensors ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape,kw", SWEEP[:30], ids=[f"{s}-{k}" for s, k in SWEEP[:30]])
def test_meta_shape_matches_real(shape, kw):
    meta = interpolate(cs.Tensor.meta(shape), **kw)
    assert meta.is_meta
    assert meta.shape == interpolate(cs.tensor(np.zeros(shape)), **kw).shape == tuple(F.interpolate(
        torch.zeros(shape), **kw).shape)


def test_meta_checks_arguments():
    with pytest.raises(cs.ShapeError, match="exactly one of size or scale_factor"):
        interpolate(cs.Tensor.meta((1, 2, 3)))


# --- errors ---------------------------------------------------------------------------------
ERRORS = [
    ("neither size nor scale", (1, 2, 5), {}, "exactly one of size or scale_factor must be given, got neither"),
    ("both size and scale", (1, 2, 5), {"size": 3, "scale_factor": 2.0}, "got both"),
    ("align_corners with nearest", (1, 2, 5), {"size": 3, "align_corners": False},
     "align_corners applies only to linear"),
    ("align_corners with nearest-exact", (1, 2, 5), {"size": 3, "mode": "nearest-exact", "align_corners": True},
     "not mode 'nearest-exact'"),
    ("bilinear on 3-d", (1, 2, 5), {"size": 3, "mode": "bilinear"},
     r"mode 'bilinear' needs a 4-d input, got a 3-d input \(1, 2, 5\). Hint: use mode 'linear'"),
    ("linear on 4-d", (1, 2, 5, 5), {"size": 3, "mode": "linear"}, "Hint: use mode 'bilinear'"),
    ("trilinear on 4-d", (1, 2, 5, 5), {"size": 3, "mode": "trilinear"}, "needs a 5-d input"),
    ("linear on 5-d", (1, 2, 2, 2, 2), {"size": 3, "mode": "linear"}, "Hint: use mode 'trilinear'"),
    ("unknown mode", (1, 2, 5), {"size": 3, "mode": "cubic"}, "unknown mode 'cubic'"),
    ("bicubic on 3-d", (1, 2, 5), {"size": 3, "mode": "bicubic"}, "needs a 4-d input.*Hint: use mode 'linear'"),
    ("bicubic on 5-d", (1, 2, 2, 2, 2), {"size": 3, "mode": "bicubic"}, "Hint: use mode 'trilinear'"),
    ("align_corners with area", (1, 2, 5), {"size": 3, "mode": "area", "align_corners": True},
     "align_corners applies only to linear | bilinear | bicubic | trilinear, not mode 'area'"),
    ("2-d input", (2, 5), {"size": 3}, r"expected a 3-, 4- or 5-d input \(N, C, \*spatial\), got shape \(2, 5\)"),
    ("6-d input", (1, 1, 2, 2, 2, 2), {"size": 3}, "3-, 4- or 5-d input"),
    ("size length", (1, 2, 5, 4), {"size": (2, 3, 4)}, r"size needs 2 entries .* got \(2, 3, 4\)"),
    ("size length one", (1, 2, 5, 4), {"size": (3,)}, "size needs 2 entries"),
    ("scale length", (1, 2, 5, 4), {"scale_factor": (2.0, 3.0, 4.0)}, "scale_factor needs 2 entries"),
    ("float size", (1, 2, 5), {"size": (3.0,)}, "size must be ints"),
    ("recompute with size", (1, 2, 5, 4), {"size": (2, 3), "recompute_scale_factor": True},
     "recompute_scale_factor=True is not meaningful with an explicit size"),
    ("zero size", (1, 2, 5), {"size": 0}, r"sizes must be positive, got input \(5,\) and output \(0,\)"),
    ("negative size", (1, 2, 5), {"size": -3}, "must be positive"),
    ("negative area size", (1, 2, 5), {"size": -3, "mode": "area"}, r"output sizes must be non-negative"),
    ("scale to zero", (1, 2, 5), {"scale_factor": 0.1}, r"output \(0,\)"),
    ("scale to zero recomputed", (1, 2, 5, 4), {"scale_factor": 0.01, "recompute_scale_factor": True},
     "must be positive"),
    ("negative scale", (1, 2, 5), {"scale_factor": -2.0}, "must be positive"),
    ("empty spatial", (2, 3, 0), {"size": 3}, r"input \(0,\)"),
    ("empty channels", (2, 0, 5), {"size": 3}, "only the batch may be empty"),
    ("antialias with nearest", (1, 2, 5, 5), {"size": 3, "antialias": True}, "antialias applies only to bilinear"),
    ("antialias on 3-d", (1, 2, 5), {"size": 3, "mode": "linear", "antialias": True}, "a 3-d input"),
]


@pytest.mark.parametrize("name,shape,kw,match", ERRORS, ids=[e[0] for e in ERRORS])
def test_both_refuse(name, shape, kw, match):
    error = both_refuse(interpolate, F.interpolate, [np.ones(shape)], kw, match=match)
    assert error.layer == "interpolate"


@pytest.mark.parametrize("mode,shape", [("linear", (1, 2, 3)), ("bicubic", (1, 2, 3, 3)), ("area", (1, 2, 3))])
def test_integer_input_with_weighted_mode_refused(mode, shape):
    both_refuse(interpolate, F.interpolate, [np.arange(np.prod(shape)).reshape(shape)], {"size": 5, "mode": mode},
                match=f"mode '{mode}' needs a floating-point input, got int64")


def test_cubic_weights_are_keys_kernel():
    """Keys' kernel with a = −0.75: the weights of the 4 cells at distances 1 + t, t, 1 − t and
    2 − t are the kernel at those distances, sum to 1 and are (0, 1, 0, 0) at t = 0."""
    from convscope.functional.interpolate import cubic_weights

    t = np.linspace(0, 1, 9)
    w = np.array(cubic_weights(t))
    np.testing.assert_allclose(w.sum(axis=0), 1, atol=1e-15)
    np.testing.assert_array_equal(w[:, 0], [0, 1, 0, 0])

    def keys(d):  # Keys (1981), a = −0.75, at distance |d|
        d = abs(d)
        return (1.25 * d - 2.25) * d * d + 1 if d <= 1 else ((-0.75 * d + 3.75) * d - 6) * d + 3
    for k, (tk, column) in enumerate(zip(t, w.T)):
        np.testing.assert_allclose(column, [keys(1 + tk), keys(tk), keys(1 - tk), keys(2 - tk)], atol=1e-15,
                                   err_msg=str(k))


@pytest.mark.parametrize("kw", [
    {"size": 3, "mode": "bilinear", "antialias": True},
    {"size": 3, "mode": "bicubic", "antialias": True},
])
def test_torch_features_not_implemented(kw):
    F.interpolate(torch.ones(1, 2, 5, 5), **kw)  # torch supports these
    with pytest.raises(NotImplementedError, match="not implemented in convscope"):
        interpolate(cs.tensor(np.ones((1, 2, 5, 5))), **kw)
