"""Normalisation ops against torch: batch, instance, layer, group norm, LRN and normalize.

Outputs and the gradients of input, weight and bias are compared in float64 (exact
semantics) and float32; running statistics are compared after every training step.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import convscope as cs
from convscope.functional import (
    batch_norm,
    group_norm,
    instance_norm,
    jit,
    layer_norm,
    local_response_norm,
    normalize,
)
from torch_ref import assert_close, both_refuse, compare

RNG = np.random.default_rng(20240611)
SHAPES = [(5, 3), (4, 3, 6), (2, 3, 4, 5), (2, 3, 2, 3, 4)]


def _normal(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


def _affine(channels: int | tuple, affine: bool) -> list[np.ndarray]:
    shape = channels if isinstance(channels, tuple) else (channels,)
    return [RNG.standard_normal(shape), RNG.standard_normal(shape)] if affine else []


def _with_affine(fn, *args, **kwargs):
    """``fn(x, *args, weight, bias, **kwargs)`` taking x (and weight, bias if given) positionally."""
    return lambda x, *wb: fn(x, *args, *wb, **kwargs)


# --- batch norm -----------------------------------------------------------------------------
def _running(channels: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    return RNG.standard_normal(channels).astype(dtype), (RNG.random(channels) + 0.5).astype(dtype)


BN_CASES = [
    (shape, training, affine, holder)
    for shape in SHAPES + [(1, 3, 5)]
    for training in (True, False)
    for affine in (True, False)
    for holder in ("tensor", "ndarray", "none")
    if training or holder != "none"
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,training,affine,holder", BN_CASES)
def test_batch_norm_matches_torch(shape, training, affine, holder, dtype):
    channels = shape[1]
    x = (_normal(*shape) * 2 + 0.5).astype(dtype)
    mean, var = _running(channels, dtype)
    ours = {"tensor": lambda a: cs.tensor(a), "ndarray": np.copy, "none": lambda a: None}[holder]
    c_mean, c_var = ours(mean), ours(var)
    t_mean, t_var = (None, None) if holder == "none" else (torch.tensor(mean), torch.tensor(var))
    kwargs = {"training": training, "momentum": 0.3, "eps": 1e-4}
    compare(lambda x, *wb: batch_norm(x, c_mean, c_var, *wb, **kwargs),
            lambda x, *wb: F.batch_norm(x, t_mean, t_var, *wb, **kwargs),
            [x, *_affine(channels, affine)], dtype=dtype)
    if holder != "none":
        got = (c_mean.numpy(), c_var.numpy()) if holder == "tensor" else (c_mean, c_var)
        assert_close(got[0], t_mean.numpy(), dtype, "running_mean")
        assert_close(got[1], t_var.numpy(), dtype, "running_var")


@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_running_stats_over_steps(shape):
    channels = shape[1]
    mean, var = _running(channels, np.float64)
    c_mean, c_var = cs.tensor(mean), cs.tensor(var)
    buffers = (c_mean.data, c_var.data)
    t_mean, t_var = torch.tensor(mean), torch.tensor(var)
    for step in range(4):
        x = _normal(*shape) * (step + 1) - step
        out = batch_norm(cs.tensor(x), c_mean, c_var, training=True, momentum=0.2)
        want = F.batch_norm(torch.tensor(x), t_mean, t_var, training=True, momentum=0.2)
        assert_close(out.numpy(), want.numpy(), what=f"step {step} output")
        assert_close(c_mean.numpy(), t_mean.numpy(), what=f"step {step} running_mean")
        assert_close(c_var.numpy(), t_var.numpy(), what=f"step {step} running_var")
    assert c_mean.data is buffers[0] and c_var.data is buffers[1], "running stats must be updated in place"
    x = _normal(*shape)
    assert_close(batch_norm(cs.tensor(x), c_mean, c_var).numpy(),
                 F.batch_norm(torch.tensor(x), t_mean, t_var).numpy(), what="eval after training")


def test_batch_norm_cumulative_average_as_batchnorm_momentum_none():
    """``BatchNorm2d(momentum=None)`` averages all batches; functionally that is momentum 1/t."""
    module = torch.nn.BatchNorm2d(3, momentum=None, affine=False).double()
    c_mean, c_var = np.zeros(3), np.ones(3)
    for step in range(1, 5):
        x = _normal(4, 3, 2, 3) + step
        module(torch.tensor(x))
        batch_norm(cs.tensor(x), c_mean, c_var, training=True, momentum=1 / step)
    assert_close(c_mean, module.running_mean.numpy(), what="running_mean")
    assert_close(c_var, module.running_var.numpy(), what="running_var")


def test_batch_norm_momentum_none_is_refused_like_torch():
    x = _normal(4, 3)
    with pytest.raises(TypeError):
        F.batch_norm(torch.tensor(x), torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64),
                     training=True, momentum=None)
    with pytest.raises(TypeError, match="num_batches_tracked"):
        batch_norm(cs.tensor(x), np.zeros(3), np.ones(3), training=True, momentum=None)


def test_batch_norm_weight_of_any_shape_with_c_elements():
    """torch's forward accepts any shape with C elements (its backward then fails); ours does both."""
    x, w, b = _normal(4, 3, 5), _normal(1, 3), _normal(3, 1)
    compare(lambda x, w, b: batch_norm(x, None, None, w, b, training=True),
            lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [x, w, b], grad=False)
    weight, bias = cs.tensor(w, requires_grad=True), cs.tensor(b, requires_grad=True)
    batch_norm(cs.tensor(x), None, None, weight, bias, training=True).backward(_normal(4, 3, 5))
    assert weight.grad.shape == (1, 3) and bias.grad.shape == (3, 1)


@pytest.mark.parametrize("compiled", [True, False])
def test_batch_norm_of_an_empty_batch_has_zero_parameter_gradients(compiled):
    with jit.enabled(compiled):
        compare(lambda x, w, b: batch_norm(x, None, None, w, b, training=True),
                lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                [np.zeros((0, 3, 2, 4)), *_affine(3, True)])


def test_batch_norm_empty_batch_leaves_running_stats():
    mean, var = np.zeros(3), np.ones(3)
    out = batch_norm(cs.tensor(np.zeros((0, 3, 2))), mean, var, training=True)
    assert out.shape == (0, 3, 2)
    np.testing.assert_array_equal(mean, 0)
    np.testing.assert_array_equal(var, 1)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("layout", ["fortran", "transposed", "strided"])
@pytest.mark.parametrize("op", ["batch_norm", "instance_norm"])
def test_running_statistics_normalise_non_contiguous_input(op, layout, compiled):
    """Eval batch norm (and instance norm with running statistics) take the compiled per-channel
    map over any memory layout of the input, as a NumPy array or a tensor wrapping one."""
    x = _normal(3, 4, 5)
    strided = {"fortran": np.asfortranarray(x), "transposed": np.ascontiguousarray(x.swapaxes(0, 2)).swapaxes(0, 2),
               "strided": np.repeat(x, 2, axis=-1)[..., ::2]}[layout]
    mean, var, weight, bias = _normal(4), RNG.random(4) + 0.5, _normal(4), _normal(4)
    kwargs = {"use_input_stats": False} if op == "instance_norm" else {}
    with jit.enabled(compiled):
        got = getattr(cs.functional, op)(cs.Tensor.wrap(strided, requires_grad=True), mean, var, weight, bias,
                                         **kwargs)
    want = getattr(F, op)(torch.tensor(x), torch.tensor(mean), torch.tensor(var), torch.tensor(weight),
                          torch.tensor(bias), **kwargs)
    assert_close(got.numpy(), want.numpy())


@pytest.mark.parametrize("op", [
    lambda f, x: f.group_norm(x, 2), lambda f, x: f.instance_norm(x), lambda f, x: f.layer_norm(x, (5,)),
    lambda f, x: f.local_response_norm(x, 3),
], ids=["group_norm", "instance_norm", "layer_norm", "local_response_norm"])
def test_an_empty_batch_normalises_to_an_empty_output(op):
    compare(lambda x: op(cs.functional, x), lambda x: op(F, x), [np.zeros((0, 4, 3, 5))])


# --- instance norm --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES[1:])
@pytest.mark.parametrize("mode", ["batch-stats", "update-running", "use-running"])
def test_instance_norm_matches_torch(shape, mode, dtype):
    channels = shape[1]
    mean, var = _running(channels, dtype)
    c_stats = (None, None) if mode == "batch-stats" else (mean.copy(), var.copy())
    t_stats = (None, None) if mode == "batch-stats" else (torch.tensor(mean), torch.tensor(var))
    kwargs = {"use_input_stats": mode != "use-running", "momentum": 0.25}
    compare(lambda x, w, b: instance_norm(x, *c_stats, w, b, **kwargs),
            lambda x, w, b: F.instance_norm(x, *t_stats, w, b, **kwargs),
            [_normal(*shape).astype(dtype), *_affine(channels, True)], dtype=dtype)
    if mode != "batch-stats":
        assert_close(c_stats[0], t_stats[0].numpy(), dtype, "running_mean")
        assert_close(c_stats[1], t_stats[1].numpy(), dtype, "running_var")


# --- layer and group norm -------------------------------------------------------------------
LN_CASES = [(shape, k, affine) for shape in SHAPES + [(7,)] for k in (1, 2, 3) if k <= len(shape)
            for affine in (True, False)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,k,affine", LN_CASES)
def test_layer_norm_matches_torch(shape, k, affine, dtype):
    ns = shape[-k:]
    compare(_with_affine(layer_norm, ns, eps=1e-3), _with_affine(F.layer_norm, ns, eps=1e-3),
            [_normal(*shape) * 3 + 1, *_affine(ns, affine)], dtype=dtype)


@pytest.mark.parametrize("given", ["weight", "bias"])
@pytest.mark.parametrize("shape,k", [((5, 3), 1), ((2, 3, 4, 5), 2), ((4, 3, 6), 3)])
def test_layer_norm_with_only_a_weight_or_only_a_bias(shape, k, given):
    ns = shape[-k:]
    param = _normal(*ns)

    def call(norm):
        return lambda x, p: norm(x, ns, **{given: p})

    compare(call(layer_norm), call(F.layer_norm), [_normal(*shape), param])


def test_layer_norm_accepts_an_int_like_nn_layernorm():
    x = _normal(2, 3, 4)
    assert_close(layer_norm(cs.tensor(x), 4).numpy(), torch.nn.LayerNorm(4, dtype=torch.float64)(
        torch.tensor(x)).detach().numpy())


GN_CASES = [(shape, groups, affine) for shape in [(2, 6), (3, 6, 5), (2, 6, 3, 4), (2, 6, 2, 2, 3)]
            for groups in (1, 2, 3, 6) for affine in (True, False)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,groups,affine", GN_CASES)
def test_group_norm_matches_torch(shape, groups, affine, dtype):
    compare(_with_affine(group_norm, groups, eps=1e-4), _with_affine(F.group_norm, groups, eps=1e-4),
            [_normal(*shape) * 2 - 1, *_affine(shape[1], affine)], dtype=dtype)


# --- local response norm --------------------------------------------------------------------
LRN_CASES = [(shape, size) for shape in [(2, 5, 6), (2, 4, 3, 5), (1, 6, 2, 3, 4)] for size in (1, 2, 3, 4, 5, 8)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,size", LRN_CASES)
def test_local_response_norm_matches_torch(shape, size, dtype):
    kwargs = {"alpha": 0.5, "beta": 0.65, "k": 1.5}
    compare(lambda x: local_response_norm(x, size, **kwargs), lambda x: F.local_response_norm(x, size, **kwargs),
            [_normal(*shape) * 2], dtype=dtype)


def test_local_response_norm_defaults():
    compare(lambda x: local_response_norm(x, 5), lambda x: F.local_response_norm(x, 5), [_normal(2, 7, 4, 4) * 30])


# --- normalize ------------------------------------------------------------------------------
NORMALIZE_CASES = [(shape, p, dim) for shape, dims in [((4, 5), (1, 0, -1)), ((2, 3, 4), (1, 2, (1, 2)))]
                   for p in (1.0, 2.0, 3.0, 0.5, math.inf) for dim in dims]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,p,dim", NORMALIZE_CASES)
def test_normalize_matches_torch(shape, p, dim, dtype):
    compare(lambda x: normalize(x, p, dim), lambda x: F.normalize(x, p, dim), [_normal(*shape)], dtype=dtype)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, math.inf])
def test_normalize_ties_and_clamped_rows(p):
    x = np.array([[3.0, -3.0, 1.0], [0.0, 0.0, 0.0], [1e-14, 0.0, -1e-14], [2.0, 2.0, 2.0]])
    compare(lambda x: normalize(x, p), lambda x: F.normalize(x, p), [x])


# --- meta tensors ---------------------------------------------------------------------------
META_CASES = [
    ("batch_norm", lambda x: batch_norm(x, np.zeros(3, x.dtype), np.ones(3, x.dtype), training=True), (4, 3, 5, 5)),
    ("batch_norm eval", lambda x: batch_norm(x, np.zeros(3, x.dtype), np.ones(3, x.dtype)), (4, 3)),
    ("instance_norm", instance_norm, (2, 3, 5)),
    ("layer_norm", lambda x: layer_norm(x, (5, 5)), (4, 3, 5, 5)),
    ("group_norm", lambda x: group_norm(x, 3), (2, 6, 4)),
    ("local_response_norm", lambda x: local_response_norm(x, 3), (2, 6, 4, 4, 2)),
    ("normalize", lambda x: normalize(x, dim=(1, 2)), (2, 6, 4)),
]


@pytest.mark.parametrize("name,fn,shape", META_CASES, ids=[c[0] for c in META_CASES])
def test_meta_shape_matches_real(name, fn, shape):
    meta = fn(cs.Tensor.meta(shape))
    assert meta.is_meta
    assert meta.shape == fn(cs.tensor(_normal(*shape))).shape


def test_meta_batch_norm_leaves_running_stats_and_checks_shapes():
    mean = np.zeros(3, np.float32)
    batch_norm(cs.Tensor.meta((4, 3, 2)), mean, np.ones(3, np.float32), training=True)
    np.testing.assert_array_equal(mean, 0)
    with pytest.raises(cs.ShapeError, match="should contain 3 elements"):
        batch_norm(cs.Tensor.meta((4, 3, 2)), np.zeros(4, np.float32), np.ones(4, np.float32))


def test_meta_weight_keeps_graph_free():
    w = cs.Tensor.meta((6,), requires_grad=True)
    out = group_norm(cs.Tensor.meta((2, 6, 3)), 2, w)
    assert out.is_meta and out.shape == (2, 6, 3)


# --- errors: both engines refuse, ours with a pinned message -------------------------------
def _bn(training=False, mean=3, var=3, weight=None, bias=None, eps=1e-5):
    def fn(x, lib):
        make = (lambda n: None if n is None else np.zeros(n)) if lib == "cs" else (
            lambda n: None if n is None else torch.zeros(n, dtype=torch.float64))
        w = None if weight is None else (cs.tensor if lib == "cs" else torch.tensor)(np.ones(weight))
        b = None if bias is None else (cs.tensor if lib == "cs" else torch.tensor)(np.ones(bias))
        return (batch_norm if lib == "cs" else F.batch_norm)(x, make(mean), make(var), w, b, training=training,
                                                             eps=eps)
    return lambda x: fn(x, "cs"), lambda x: fn(x, "torch")


def _affine_error(cs_fn, torch_fn, *args, weight=None, bias=None):
    def call(fn, wrap):
        def run(x):
            w = None if weight is None else wrap(np.ones(weight))
            b = None if bias is None else wrap(np.ones(bias))
            return fn(x, *args, w, b)
        return run
    return call(cs_fn, cs.tensor), call(torch_fn, torch.tensor)


ERRORS = [
    ("bn one value per channel", *_bn(training=True), (1, 3),
     r"Expected more than 1 value per channel when training, got input size \(1, 3\)"),
    ("bn one value per channel 3d", *_bn(training=True), (1, 3, 1), "more than 1 value per channel"),
    ("bn running_mean channels", *_bn(mean=4), (2, 3, 5),
     r"running_mean should contain 3 elements .* got shape \(4,\)"),
    ("bn running_var channels", *_bn(var=4, training=True), (2, 3), "running_var should contain 3 elements"),
    ("bn weight channels", *_bn(weight=4), (2, 3, 5), r"weight should contain 3 elements .*\(2, 3, 5\)"),
    ("bn bias channels", *_bn(bias=2), (2, 3, 5), "bias should contain 3 elements"),
    ("bn eval without stats", *_bn(mean=None, var=None), (2, 3), "must be given when not using batch statistics"),
    ("bn one running stat", *_bn(var=None, training=True), (2, 3), "both be None or neither"),
    ("bn 1-d input", *_bn(), (3,), r"at least 2 dims, got shape \(3,\)"),
    ("bn eps zero in training", *_bn(training=True, eps=0.0), (4, 3), "eps must be positive during training"),
    ("bn negative eps", *_bn(eps=-1.0), (4, 3), "eps must be non-negative"),
    ("gn groups do not divide", lambda x: group_norm(x, 4), lambda x: F.group_norm(x, 4), (2, 6, 5),
     r"num_groups 4 does not divide the 6 channels"),
    ("gn negative groups", lambda x: group_norm(x, -2), lambda x: F.group_norm(x, -2), (2, 6), "must be positive"),
    ("gn zero groups", lambda x: group_norm(x, 0), lambda x: F.group_norm(x, 0), (2, 6), "must be positive"),
    ("gn 1-d input", lambda x: group_norm(x, 2), lambda x: F.group_norm(x, 2), (6,), "at least 2 dims"),
    ("gn one value", lambda x: group_norm(x, 6), lambda x: F.group_norm(x, 6), (1, 6), "more than 1 value"),
    ("gn weight", *_affine_error(group_norm, F.group_norm, 3, weight=3), (2, 6, 5), r"weight should have shape \(6,\)"),
    ("gn bias", *_affine_error(group_norm, F.group_norm, 3, bias=(1, 6)), (2, 6, 5), r"got \(1, 6\)"),
    ("ln trailing dims", lambda x: layer_norm(x, (4,)), lambda x: F.layer_norm(x, (4,)), (2, 6, 5),
     r"normalized_shape \(4,\) expects an input of shape \(\*, 4\), got \(2, 6, 5\)"),
    ("ln too many dims", lambda x: layer_norm(x, (1, 2, 6, 5)), lambda x: F.layer_norm(x, (1, 2, 6, 5)), (2, 6, 5),
     "expects an input of shape"),
    ("ln empty shape", lambda x: layer_norm(x, ()), lambda x: F.layer_norm(x, ()), (2, 3), "at least one dim"),
    ("ln weight", *_affine_error(layer_norm, F.layer_norm, (6, 5), weight=30), (2, 6, 5),
     r"weight should have shape normalized_shape \(6, 5\), got \(30,\)"),
    ("ln bias", *_affine_error(layer_norm, F.layer_norm, (6, 5), bias=5), (2, 6, 5), "bias should have shape"),
    ("in one spatial element", lambda x: instance_norm(x), lambda x: F.instance_norm(x), (2, 3, 1),
     "more than 1 spatial element"),
    ("in 2-d input", lambda x: instance_norm(x), lambda x: F.instance_norm(x), (2, 3), "more than 1 spatial element"),
    ("in eval without stats", lambda x: instance_norm(x, use_input_stats=False),
     lambda x: F.instance_norm(x, use_input_stats=False), (2, 3, 4), "must be given"),
    ("lrn 2-d", lambda x: local_response_norm(x, 2), lambda x: F.local_response_norm(x, 2), (2, 3),
     r"at least 3 dims, got shape \(2, 3\)"),
    ("lrn size 0", lambda x: local_response_norm(x, 0), lambda x: F.local_response_norm(x, 0), (2, 3, 4),
     "size must be positive, got 0"),
    ("lrn negative size", lambda x: local_response_norm(x, -1), lambda x: F.local_response_norm(x, -1), (2, 3, 4),
     "size must be positive"),
    ("normalize dim out of range", lambda x: normalize(x), lambda x: F.normalize(x), (3,), "out of range"),
]


@pytest.mark.parametrize("name,cs_fn,torch_fn,shape,match", ERRORS, ids=[e[0] for e in ERRORS])
def test_both_refuse(name, cs_fn, torch_fn, shape, match):
    error = both_refuse(cs_fn, torch_fn, [_normal(*shape)], match=match)
    assert error.layer in ("batch_norm", "group_norm", "layer_norm", "instance_norm", "local_response_norm",
                           "normalize")


def test_mixed_dtypes_refused():
    x = _normal(4, 3).astype(np.float32)
    with pytest.raises(RuntimeError):
        F.batch_norm(torch.tensor(x), torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    with pytest.raises(cs.ShapeError, match="running_mean has dtype float64 but input has float32"):
        batch_norm(cs.tensor(x), np.zeros(3), np.ones(3))


def test_normalize_nonpositive_p_not_implemented():
    with pytest.raises(NotImplementedError, match="p > 0"):
        normalize(cs.tensor(_normal(2, 3)), p=0)
