"""linear and bilinear checked against torch; dropout checked against its rule (the random
streams differ from torch's, so the mask itself cannot be compared)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import convscope as cs
from convscope.random import get_rng_state, set_rng_state
from torch_ref import both_refuse, compare

F = cs.functional


def data(shape: tuple, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.fixture(autouse=True)
def _keep_default_generator():
    """Tests reseed the shared generator; give other test files back the state they had."""
    state = get_rng_state()
    yield
    set_rng_state(state)


# --- linear, bilinear ---------------------------------------------------------------------------
LINEAR = [  # (input shape, weight shape, bias shape or None)
    ((7,), (3, 7), (3,)),
    ((4, 7), (3, 7), (3,)),
    ((4, 7), (3, 7), None),
    ((2, 5, 7), (6, 7), (6,)),
    ((2, 3, 4, 7), (1, 7), (1,)),
    ((0, 7), (3, 7), (3,)),
    ((4, 7), (3, 7), ()),
    ((4, 0), (3, 0), (3,)),  # no input features: the output is the bias
    ((2, 3, 0), (3, 0), None),
    ((4, 7), (0, 7), (0,)),  # no output features
    ((7,), (0, 7), None),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shapes", LINEAR, ids=[str(s) for s in LINEAR])
def test_linear_matches_torch(shapes, dtype):
    args = [data(s, i) for i, s in enumerate(shapes) if s is not None]
    compare(F.linear, TF.linear, [np.asarray(a) for a in args], dtype=dtype)


BILINEAR = [  # (input1 shape, input2 shape, weight shape, bias shape or None)
    ((3,), (4,), (2, 3, 4), (2,)),
    ((5, 3), (5, 4), (2, 3, 4), (2,)),
    ((5, 3), (5, 4), (2, 3, 4), None),
    ((2, 5, 3), (2, 5, 4), (6, 3, 4), (6,)),
    ((5, 3), (5, 4), (0, 3, 4), (0,)),  # no output features
    ((3,), (4,), (0, 3, 4), (0,)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shapes", BILINEAR, ids=[str(s) for s in BILINEAR])
def test_bilinear_matches_torch(shapes, dtype):
    compare(F.bilinear, TF.bilinear, [data(s, i) for i, s in enumerate(shapes) if s is not None], dtype=dtype)


ERRORS = [
    ("in_features", "linear", [data((8, 256), 0), data((10, 512), 1)],
     r"linear: expected input with 512 features in its last dim, got 256 \(input shape \(8, 256\)\)\. "
     r"Hint: .*set in_features=256"),
    ("weight_rank", "linear", [data((8, 4), 0), data((2, 3, 4), 1)],
     r"weight must be 2-d \(out_features, in_features\), got shape \(2, 3, 4\)"),
    ("input_0d", "linear", [np.asarray(1.0), data((3, 1), 1)], "got a 0-d input"),
    ("bias_size", "linear", [data((8, 4), 0), data((3, 4), 1), data((2,), 2)],
     r"bias must have shape \(3,\) \(one per output feature\), got \(2,\)"),
    ("bilinear_batch", "bilinear", [data((2, 3), 0), data((4, 4), 1), data((5, 3, 4), 2)],
     r"input1 \(2, 3\) and input2 \(4, 4\) must have the same leading dims"),
    ("bilinear_features", "bilinear", [data((2, 3), 0), data((2, 4), 1), data((5, 3, 6), 2)],
     r"input2 has 4 features in its last dim, but the weight \(5, 3, 6\) expects 6"),
    ("bilinear_weight_rank", "bilinear", [data((2, 3), 0), data((2, 4), 1), data((3, 4), 2)],
     r"weight must be 3-d"),
]


@pytest.mark.parametrize("case,name,args,match", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_both_refuse(case, name, args, match):
    both_refuse(getattr(F, name), getattr(TF, name), args, match=match)


def test_linear_refuses_mixed_dtypes_like_torch():
    x, w = data((4, 3), 0), data((2, 3), 1).astype(np.float32)
    with pytest.raises(RuntimeError, match="same dtype"):
        TF.linear(torch.from_numpy(x), torch.from_numpy(w))
    with pytest.raises(cs.ShapeError, match="linear: all tensors must have the same dtype, got float32 and float64"):
        F.linear(cs.tensor(x), cs.tensor(w))


def test_linear_refuses_a_1d_weight():
    """Unlike torch, which would treat it as one output feature and drop that dim."""
    with pytest.raises(cs.ShapeError, match=r"weight must be 2-d"):
        F.linear(cs.tensor(data((4, 3), 0)), cs.tensor(data((3,), 1)))


META = [
    ("linear", lambda *t: F.linear(*t), [(2, 5, 7), (3, 7), (3,)]),
    ("linear_unbatched", lambda *t: F.linear(*t), [(7,), (3, 7)]),
    ("bilinear", lambda *t: F.bilinear(*t), [(5, 3), (5, 4), (2, 3, 4), (2,)]),
    ("dropout", lambda x: F.dropout(x, 0.3), [(2, 3, 4)]),
    ("dropout2d", lambda x: F.dropout2d(x, 0.3), [(2, 3, 4, 5)]),
]


@pytest.mark.parametrize("case,fn,shapes", META, ids=[m[0] for m in META])
def test_meta_matches_real_shape(case, fn, shapes):
    real = fn(*[cs.tensor(np.ones(s, np.float32)) for s in shapes])
    state = get_rng_state()
    meta = fn(*[cs.Tensor.meta(s) for s in shapes])
    assert get_rng_state() == state, "a meta op must not draw random numbers"
    assert meta.is_meta and (meta.shape, meta.dtype) == (real.shape, real.dtype)


# --- dropout ----------------------------------------------------------------------------------------
def positive(shape: tuple, dtype=np.float64) -> np.ndarray:
    """Inputs with no zeros, so a zero in the output always means a dropped element."""
    return (np.random.default_rng(0).random(shape) + 0.5).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_mask_scale_and_gradient(p, dtype):
    x = cs.tensor(positive((50, 40), dtype), requires_grad=True)
    cs.manual_seed(3)
    out = F.dropout(x, p)
    assert out.dtype == dtype
    y, kept = out.numpy(), out.numpy() != 0
    rtol = 1e-15 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(y[kept], x.numpy()[kept] / (1 - p), rtol=rtol)
    upstream = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    out.backward(upstream)
    np.testing.assert_allclose(x.grad[kept], upstream[kept] / (1 - p), rtol=rtol)
    assert not x.grad[~kept].any()


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout_keeps_about_one_minus_p(p):
    n = 200_000
    cs.manual_seed(0)
    kept = (F.dropout(cs.tensor(positive((n,))), p).numpy() != 0).mean()
    assert abs(kept - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)


def test_dropout_is_deterministic_under_manual_seed():
    x = cs.tensor(positive((30, 30)))
    cs.manual_seed(42)
    a = F.dropout(x).numpy()
    b = F.dropout(x).numpy()
    cs.manual_seed(42)
    np.testing.assert_array_equal(F.dropout(x).numpy(), a)
    assert not np.array_equal(a, b), "successive calls draw fresh masks"


def test_dropout_generator_argument_leaves_the_default_alone():
    x = cs.tensor(positive((30, 30)))
    state = get_rng_state()
    a = F.dropout(x, generator=np.random.default_rng(7)).numpy()
    assert get_rng_state() == state
    np.testing.assert_array_equal(F.dropout(x, generator=np.random.default_rng(7)).numpy(), a)


@pytest.mark.parametrize("name", ["dropout", "dropout1d", "dropout2d", "dropout3d"])
def test_dropout_identity_when_not_training_or_p_zero(name):
    x = cs.tensor(positive((2, 3, 4, 5)[: {"dropout1d": 3, "dropout3d": 4}.get(name, 4)]))
    assert getattr(F, name)(x, 0.5, training=False) is x
    assert getattr(F, name)(x, 0.0) is x
    t = torch.from_numpy(x.numpy())
    assert torch.equal(getattr(TF, name)(t, 0.5, training=False), t)


def test_dropout_p_one_gives_zeros_and_zero_gradient():
    x = cs.tensor(positive((4, 5)), requires_grad=True)
    out = F.dropout(x, 1.0)
    np.testing.assert_array_equal(out.numpy(), np.zeros((4, 5)))
    out.backward(np.ones((4, 5)))
    np.testing.assert_array_equal(x.grad, np.zeros((4, 5)))
    t = torch.from_numpy(positive((4, 5)))
    assert not TF.dropout(t, 1.0).any()


@pytest.mark.parametrize("name", ["dropout", "dropout1d", "dropout2d", "dropout3d"])
@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_p_out_of_range(name, p):
    shape = {"dropout1d": (2, 3, 4), "dropout3d": (2, 3, 4, 5, 6)}.get(name, (2, 3, 4, 5))
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        getattr(TF, name)(torch.zeros(shape), p, training=False)
    with pytest.raises(ValueError, match=f"{name}: dropout probability has to be between 0 and 1, but got {p}"):
        getattr(F, name)(cs.tensor(np.zeros(shape)), p, training=False)


CHANNEL = [  # (op, input shape, leading dims that share one draw)
    ("dropout1d", (8, 6, 5), 2),
    ("dropout1d", (6, 5), 1),
    ("dropout2d", (8, 6, 5, 4), 2),
    ("dropout3d", (8, 6, 3, 4, 5), 2),
    ("dropout3d", (6, 3, 4, 5), 1),
]


@pytest.mark.parametrize("name,shape,lead", CHANNEL, ids=[f"{c[0]}{c[1]}" for c in CHANNEL])
def test_channel_dropout_zeroes_whole_channels(name, shape, lead):
    x = cs.tensor(positive(shape), requires_grad=True)
    cs.manual_seed(5)
    out = getattr(F, name)(x, 0.5)
    per_channel = (out.numpy() != 0).reshape(shape[:lead] + (-1,))
    assert (per_channel.all(-1) | ~per_channel.any(-1)).all(), "a channel is either kept whole or dropped whole"
    assert per_channel.any() and not per_channel.all()
    kept = out.numpy() != 0
    np.testing.assert_allclose(out.numpy()[kept], x.numpy()[kept] * 2, rtol=1e-15)
    out.backward(np.ones(shape))
    np.testing.assert_array_equal(x.grad, kept * 2.0)


def test_dropout2d_reads_a_3d_input_as_batched_like_torch():
    x = positive((8, 6, 5))
    with pytest.warns(UserWarning, match=r"3-d input is read as \(N, C, L\)"):
        out = F.dropout2d(cs.tensor(x), 0.5).numpy()
    with pytest.warns(UserWarning, match="interpreted as shape"):
        t_out = TF.dropout2d(torch.from_numpy(x), 0.5).numpy()
    for o in (out, t_out):  # one draw per (N, C) row in both engines
        rows = o != 0
        assert (rows.all(-1) | ~rows.any(-1)).all()
        assert len({tuple(r) for r in rows.any(-1)}) > 1, "different samples get different masks"


def test_channel_dropout_rank_errors():
    both_refuse(lambda x: F.dropout1d(x), lambda x: TF.dropout1d(x), [np.ones((2, 3, 4, 5))],
                match=r"dropout1d: expected a 2-d \(C, \*spatial\) or 3-d \(N, C, \*spatial\) input with 1 spatial "
                      r"dims, got shape \(2, 3, 4, 5\)")
    with pytest.raises(cs.ShapeError, match=r"dropout2d: expected a 3-d .* or 4-d .*got shape \(2, 3\)"):
        F.dropout2d(cs.tensor(np.ones((2, 3))))  # torch only warns (deprecated)
    with pytest.raises(cs.ShapeError, match=r"dropout3d: expected a 4-d .* or 5-d .*got shape \(2, 3, 4\)"):
        F.dropout3d(cs.tensor(np.ones((2, 3, 4))))


# --- stochastic depth (torchvision.ops.stochastic_depth's rule; torchvision is not installed) ---
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stochastic_depth_rows_kept_or_dropped_whole(dtype):
    x = cs.tensor(positive((64, 3, 4, 5), dtype), requires_grad=True)
    cs.manual_seed(2)
    out = F.stochastic_depth(x, 0.25, "row")
    assert out.dtype == dtype
    rows = (out.numpy() != 0).reshape(64, -1)
    assert (rows.all(1) | ~rows.any(1)).all(), "a sample is kept whole or dropped whole"
    assert rows.any() and not rows.all()
    kept = out.numpy() != 0
    rtol = 1e-15 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(out.numpy()[kept], x.numpy()[kept] / 0.75, rtol=rtol)
    out.backward(np.ones(x.shape, dtype))
    np.testing.assert_allclose(x.grad, kept / dtype(0.75), rtol=rtol)


def test_stochastic_depth_batch_mode_draws_once():
    x = cs.tensor(positive((4, 3, 2)))
    outcomes = set()
    for seed in range(40):
        cs.manual_seed(seed)
        out = F.stochastic_depth(x, 0.5, "batch").numpy()
        assert not out.any() or np.allclose(out, 2 * x.numpy(), rtol=1e-15)
        outcomes.add(bool(out.any()))
    assert outcomes == {True, False}


def test_stochastic_depth_keeps_about_one_minus_p():
    n, p = 100_000, 0.3
    cs.manual_seed(0)
    kept = (F.stochastic_depth(cs.tensor(positive((n, 2))), p, "row").numpy()[:, 0] != 0).mean()
    assert abs(kept - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)


def test_stochastic_depth_identity_zeros_and_errors():
    x = cs.tensor(positive((3, 4)), requires_grad=True)
    assert F.stochastic_depth(x, 0.5, "row", training=False) is x
    assert F.stochastic_depth(x, 0.0, "batch") is x
    out = F.stochastic_depth(x, 1.0, "row")
    assert not out.numpy().any()
    out.backward(np.ones((3, 4)))
    assert not x.grad.any()
    with pytest.raises(ValueError, match="stochastic_depth: dropout probability has to be between 0 and 1, "
                                         "but got 1.5"):
        F.stochastic_depth(x, 1.5, "row", training=False)
    with pytest.raises(ValueError, match="mode has to be either 'batch' or 'row', but got 'col'"):
        F.stochastic_depth(x, 0.5, "col")
    with pytest.raises(cs.ShapeError, match="stochastic_depth: expected an input with a batch dim"):
        F.stochastic_depth(cs.tensor(np.array(1.0)), 0.5, "row")


def test_stochastic_depth_module_follows_training_mode():
    layer = cs.nn.StochasticDepth(0.5, "row")
    assert repr(layer) == "StochasticDepth(p=0.5, mode=row)"  # torchvision's repr
    assert not list(layer.parameters()) and not layer.state_dict()
    x = cs.tensor(positive((32, 5)))
    cs.manual_seed(1)
    rows = (layer(x).numpy() != 0).all(1)
    assert rows.any() and not rows.all()
    assert layer.eval()(x) is x
