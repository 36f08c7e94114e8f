"""Activations checked against torch: outputs and gradients, at the kinks, at large magnitudes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import convscope as cs
from convscope.functional import _special, activation
from torch_ref import assert_close, both_refuse, compare

F = cs.functional

# (id, function name, keyword arguments): one registry for the differential, kink and meta tests.
ACTIVATIONS = [
    ("relu", "relu", {}),
    ("relu6", "relu6", {}),
    ("leaky_relu", "leaky_relu", {}),
    ("leaky_relu_0.2", "leaky_relu", {"negative_slope": 0.2}),
    ("leaky_relu_neg", "leaky_relu", {"negative_slope": -0.5}),
    ("elu", "elu", {}),
    ("elu_0.5", "elu", {"alpha": 0.5}),
    ("selu", "selu", {}),
    ("celu", "celu", {}),
    ("celu_2", "celu", {"alpha": 2.0}),
    ("celu_0_4", "celu", {"alpha": 0.4}),  # not a float32: torch's derivative rounds it (see F.celu)
    ("gelu", "gelu", {}),
    ("gelu_tanh", "gelu", {"approximate": "tanh"}),
    ("silu", "silu", {}),
    ("mish", "mish", {}),
    ("hardswish", "hardswish", {}),
    ("hardsigmoid", "hardsigmoid", {}),
    ("hardtanh", "hardtanh", {}),
    ("hardtanh_-2_0.5", "hardtanh", {"min_val": -2.0, "max_val": 0.5}),
    ("sigmoid", "sigmoid", {}),
    ("tanh", "tanh", {}),
    ("softplus", "softplus", {}),
    ("softplus_beta2_thr5", "softplus", {"beta": 2.0, "threshold": 5.0}),
    ("logsigmoid", "logsigmoid", {}),
]
IDS = [a[0] for a in ACTIVATIONS]

KINKS = [-6.0, -3.0, -2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.0, 2.5, 3.0, 6.0]
LARGE = [-800.0, -100.0, -30.0, -20.0, 20.0, 30.0, 100.0, 800.0]


def sample(kind: str, seed: int) -> np.ndarray:
    """A (2, 3, 4, 5) input: random, random plus every kink point, or random plus large magnitudes."""
    x = np.random.default_rng(seed).standard_normal(120) * 4
    if kind != "random":
        points = KINKS if kind == "kinks" else LARGE
        x[: len(points)] = points
    return x.reshape(2, 3, 4, 5)


def pair(name: str, kwargs: dict):
    return (lambda x: getattr(F, name)(x, **kwargs)), (lambda x: getattr(TF, name)(x, **kwargs))


@pytest.mark.parametrize("kind", ["random", "kinks", "large"])
@pytest.mark.parametrize("case,name,kwargs", ACTIVATIONS, ids=IDS)
def test_activation_matches_torch_float64(case, name, kwargs, kind):
    compare(*pair(name, kwargs), [sample(kind, len(case))])


@pytest.mark.parametrize("kind", ["random", "kinks"])
@pytest.mark.parametrize("case,name,kwargs", ACTIVATIONS, ids=IDS)
def test_activation_matches_torch_float32(case, name, kwargs, kind):
    compare(*pair(name, kwargs), [sample(kind, len(case))], dtype=np.float32)


# Torch's gradient at each kink (verified against torch below, so a change there shows up too).
KINK_GRADS = [
    ("relu", {}, 0.0, 0.0),
    ("relu6", {}, 0.0, 0.0),
    ("relu6", {}, 6.0, 0.0),
    ("hardtanh", {}, -1.0, 0.0),
    ("hardtanh", {}, 1.0, 0.0),
    ("hardswish", {}, -3.0, 0.0),
    ("hardswish", {}, 3.0, 1.0),
    ("hardsigmoid", {}, -3.0, 0.0),
    ("hardsigmoid", {}, 3.0, 0.0),
    ("leaky_relu", {"negative_slope": 0.2}, 0.0, 0.2),
    ("elu", {"alpha": 0.5}, 0.0, 0.5),
    ("celu", {"alpha": 2.0}, 0.0, 1.0),
]


@pytest.mark.parametrize("name,kwargs,point,expected", KINK_GRADS,
                         ids=[f"{k[0]}@{k[2]}" for k in KINK_GRADS])
def test_gradient_at_kink(name, kwargs, point, expected):
    x = cs.tensor(np.array([point]), requires_grad=True)
    getattr(F, name)(x, **kwargs).backward(np.ones(1))
    t = torch.tensor([point], dtype=torch.float64, requires_grad=True)
    getattr(TF, name)(t, **kwargs).backward(torch.ones(1, dtype=torch.float64))
    assert t.grad.item() == expected
    assert x.grad[0] == expected


SPECIAL = [np.nan, -np.nan, -np.inf, np.inf, -0.0, 0.0, -1.5, 1.5, 1e-30, -1e-30]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("slope", [None, 0.01, -0.5, 1.0, 2.0, 0.0])
def test_relu_and_leaky_relu_give_torchs_bits(slope, dtype):
    """Bit for bit, signed zeros and NaN signs included (ReLU keeps −0.0, as torch does)."""
    x = np.array(SPECIAL * 3, dtype)
    ours = F.relu if slope is None else (lambda a: F.leaky_relu(a, slope))
    theirs = torch.relu if slope is None else (lambda t: TF.leaky_relu(t, slope))
    with np.errstate(invalid="ignore"):  # inf·0 with a zero slope, as torch computes it
        got = ours(cs.tensor(x)).data
    want = theirs(torch.from_numpy(x)).numpy()
    bits = f"u{x.itemsize}"
    np.testing.assert_array_equal(got.view(bits), want.view(bits))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_select_is_np_where_bit_for_bit(dtype):
    """The activations' branch-free select: NaN payloads, signed zeros, scalars and 0-d arrays."""
    rng = np.random.default_rng(4)
    x = np.array((SPECIAL + list(rng.standard_normal(30))) * 2, dtype)
    y = rng.permutation(x)
    mask = rng.random(x.size) < 0.5
    bits = f"u{x.itemsize}"
    for a, b, m in ((x, y, mask), (x, 0, mask), (-0.0, y, mask), (x[3:4].reshape(()), y[5:6].reshape(()), mask[0]),
                    (x, y, np.zeros(x.size, bool)), (x, y, np.ones(x.size, bool))):
        want = np.where(m, a, b).astype(dtype)
        for overwrite in (False, True) if np.shape(a) == want.shape else (False,):  # x of the result's shape
            got = activation._select(m, np.array(a, dtype, copy=True) if overwrite else a, b, dtype, overwrite)
            np.testing.assert_array_equal(np.asarray(got).view(bits), want.view(bits))


@pytest.mark.parametrize("case,name,kwargs", ACTIVATIONS, ids=IDS)
def test_zero_d_input_forward_and_backward(case, name, kwargs):
    """A 0-d tensor (NumPy's 0-d arithmetic returns scalars, which ``out=`` refuses)."""
    for value in (-1.5, -0.0, 2.0):
        compare(*pair(name, kwargs), [np.array(value)])


@pytest.mark.parametrize("case,name,kwargs", ACTIVATIONS, ids=IDS)
def test_integer_input_kept_promoted_or_refused_like_torch(case, name, kwargs):
    """relu and hardtanh keep an integer dtype, sigmoid and tanh compute in float32 (torch's
    default dtype; they once rounded the result back to integers), the others are refused."""
    x = np.array([-3, -1, 0, 1, 2, 5])
    try:
        getattr(TF, name)(torch.from_numpy(x), **kwargs)
    except (RuntimeError, NotImplementedError):
        both_refuse(*pair(name, kwargs), [x])
    else:
        compare(*pair(name, kwargs), [x], dtype=np.float32)


@pytest.mark.parametrize("op", ["exp", "log", "sqrt", "erf"])
def test_integer_input_of_a_float_function_is_float32_like_torch(op):
    x = np.array([-2, 0, 1, 3])
    with np.errstate(divide="ignore", invalid="ignore"):
        compare(getattr(cs.ops, op), getattr(torch, op), [x], dtype=np.float32)


def test_nan_propagates_like_torch():
    x = np.array([np.nan, -1.0, 1.0])
    for name in ("relu", "relu6", "hardtanh", "leaky_relu", "elu", "selu", "celu", "gelu", "sigmoid", "silu", "mish",
                 "hardswish", "hardsigmoid", "softplus", "logsigmoid", "tanh"):
        compare(*pair(name, {}), [x])


# --- softmax -------------------------------------------------------------------------------------
SOFTMAX_SHAPES = [((), 0), ((), -1), ((7,), 0), ((4, 6), 1), ((4, 6), 0), ((2, 3, 4, 5), 1), ((2, 3, 4, 5), -1),
                  ((2, 3, 4, 5), 2), ((3, 0), 1), ((0, 3), 1)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("scale", [1.0, 1e4])
@pytest.mark.parametrize("shape,dim", SOFTMAX_SHAPES, ids=[f"{s}-d{d}" for s, d in SOFTMAX_SHAPES])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_matches_torch(name, shape, dim, scale, dtype):
    x = np.asarray(np.random.default_rng(10 * len(shape) + dim % 5).standard_normal(shape) * scale)
    compare(lambda a: getattr(F, name)(a, dim), lambda a: getattr(TF, name)(a, dim), [x], dtype=dtype)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_with_infinities_and_nan(name):
    inf = np.inf
    x = np.array([[-inf, 1.0, 2.0, -inf], [-inf, -inf, -inf, -inf], [inf, 1.0, 2.0, 3.0], [np.nan, 1.0, 2.0, 3.0],
                  [1e308, -1e308, 0.0, 5.0]])
    compare(lambda a: getattr(F, name)(a, 1), lambda a: getattr(TF, name)(a, 1), [x])


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_dtype_argument_casts_first(name):
    x = np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32)
    c_out, t_out = compare(lambda a: getattr(F, name)(a, 1, dtype=np.float64),
                           lambda a: getattr(TF, name)(a, 1, dtype=torch.float64), [x], dtype=np.float32)
    assert c_out.dtype == np.float64


def test_softmax_dim_none_raises_instead_of_guessing():
    with pytest.raises(ValueError, match="pass dim explicitly.*pick dim 1 for a 4-d input"):
        F.softmax(cs.Tensor.meta((2, 3, 4, 5)))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_dim_out_of_range(name):
    both_refuse(lambda a: getattr(F, name)(a, 3), lambda a: getattr(TF, name)(a, 3), [np.zeros((2, 3, 4))],
                match=rf"{name}: dim 3 is out of range for a 3-d input of shape \(2, 3, 4\)")


# --- argument errors, erf fallback, inplace, meta -------------------------------------------------
@pytest.mark.parametrize("call,match", [
    (lambda x: F.hardtanh(x, 2.0, 1.0), "min_val 2.0 cannot be greater than max_val 1.0"),
    (lambda x: F.celu(x, alpha=0.0), "alpha 0 is not allowed"),
    (lambda x: F.gelu(x, approximate="erf"), "approximate must be 'none' or 'tanh', got 'erf'"),
], ids=["hardtanh_bounds", "celu_alpha0", "gelu_approximate"])
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(cs.tensor(np.zeros(3)))


def test_erf_fallback_matches_torch():
    x = np.concatenate([np.linspace(-7, 7, 2001), [0.0, -0.0, 1e-300, 30.0, -30.0]])
    assert_close(_special.erf_python(x), torch.erf(torch.from_numpy(x)).numpy())
    got32 = _special.erf_python(x.astype(np.float32))
    assert got32.dtype == np.float32
    assert_close(got32, torch.erf(torch.from_numpy(x.astype(np.float32))).numpy(), np.float32)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_with_erf_fallback(monkeypatch, approximate):
    monkeypatch.setattr(activation, "_erf", _special.erf_python)
    compare(*pair("gelu", {"approximate": approximate}), [sample("kinks", 5)])


def test_inplace_is_accepted_and_leaves_the_input_unchanged():
    data = np.array([-1.0, 0.5, 2.0])
    x = cs.tensor(data)
    out = F.relu(x, inplace=True)
    np.testing.assert_array_equal(x.numpy(), data)
    np.testing.assert_array_equal(out.numpy(), [0.0, 0.5, 2.0])


@pytest.mark.parametrize("case,name,kwargs", ACTIVATIONS, ids=IDS)
def test_meta_matches_real_shape(case, name, kwargs):
    fn = getattr(F, name)
    real = fn(cs.tensor(np.ones((2, 3, 4), np.float32)), **kwargs)
    meta = fn(cs.Tensor.meta((2, 3, 4)), **kwargs)
    assert meta.is_meta and (meta.shape, meta.dtype) == (real.shape, real.dtype)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_meta_matches_real_shape(name):
    fn = getattr(F, name)
    real = fn(cs.tensor(np.ones((2, 3, 4), np.float32)), -2, dtype=np.float64)
    meta = fn(cs.Tensor.meta((2, 3, 4)), -2, dtype=np.float64)
    assert meta.is_meta and (meta.shape, meta.dtype) == (real.shape, real.dtype) == ((2, 3, 4), np.float64)


@pytest.mark.parametrize("shape,weight,match", [
    ((2, 3, 4), np.ones(3, np.float32), r"prelu: weight dtype float32 does not match input dtype float64"),
    ((2, 3, 4), np.ones(2), r"prelu: weight of shape \(2,\) holds neither 1 slope nor one per channel: the input "
                            r"\(2, 3, 4\) has 3 channels \(dim 1\)"),
    ((5,), np.ones(5), r"the input \(5,\) has 1 channel \(dim 1\)"),
])
def test_prelu_refuses_slopes_that_do_not_fit(shape, weight, match):
    with pytest.raises(cs.ShapeError, match=match):
        F.prelu(np.ones(shape), weight)
