"""Tensor, autograd and the element-wise/shape ops, checked against torch."""

import numpy as np
import pytest
import torch

import convscope as cs
from torch_ref import assert_close, compare

RNG = np.random.default_rng(1234)


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


BINARY = [
    ("add", lambda a, b: a + b, [(3, 4), (4,)]),
    ("sub", lambda a, b: a - b, [(2, 1, 4), (3, 1)]),
    ("mul", lambda a, b: a * b, [(5,), (2, 5)]),
    ("div", lambda a, b: a / b, [(3, 3), (3, 1)]),
    ("matmul_2d", lambda a, b: a @ b, [(3, 4), (4, 2)]),
    ("matmul_batched", lambda a, b: a @ b, [(2, 1, 3, 4), (5, 4, 2)]),
    ("matmul_vec_mat", lambda a, b: a @ b, [(4,), (2, 4, 3)]),
    ("matmul_mat_vec", lambda a, b: a @ b, [(2, 3, 4), (4,)]),
    ("matmul_vec_vec", lambda a, b: a @ b, [(4,), (4,)]),
    ("rsub_scalar", lambda a, b: 2.5 - a * b, [(3,), (3,)]),
    ("rdiv_scalar", lambda a, b: 1.5 / (a * a + 1) + b, [(3,), (1,)]),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,fn,shapes", BINARY, ids=[b[0] for b in BINARY])
def test_binary_ops_match_torch(name, fn, shapes, dtype):
    compare(fn, fn, [rand(*s) for s in shapes], dtype=dtype)


UNARY = [
    ("exp", lambda x: x.exp()),
    ("log", lambda x: (x * x + 0.5).log()),
    ("sqrt", lambda x: (x * x + 0.1).sqrt()),
    ("abs", lambda x: x.abs()),
    ("neg", lambda x: -x),
    ("pow_scalar", lambda x: x**3),
    ("pow_tensor", lambda x: (x * x + 0.5) ** x),
    ("clamp", lambda x: x.clamp(-0.5, 0.7)),
    ("sum_all", lambda x: x.sum()),
    ("sum_dims", lambda x: x.sum((0, 2), keepdim=True)),
    ("mean_dim", lambda x: x.mean(1)),
    ("var_dim", lambda x: x.var(2)),
    ("amax_dim", lambda x: x.amax(1)),
    ("reshape", lambda x: x.reshape(6, 4) * 2),
    ("view_infer", lambda x: x.view(-1, 2) * 2),
    ("flatten", lambda x: x.flatten(1) * 2),
    ("permute", lambda x: x.permute(2, 0, 1) * 2),
    ("transpose", lambda x: x.transpose(0, 2) * 2),
    ("unsqueeze_squeeze", lambda x: x.unsqueeze(1).squeeze(1) * 2),
    ("expand", lambda x: x[:, :1].expand(2, 3, 4) * 2),
    ("slice", lambda x: x[1:, ::2, -1] * 2),
    ("fancy_index_repeats", lambda x: x[[0, 1, 0]] * 2),
    ("bool_mask", lambda x: x[x > 0] * 2),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,fn", UNARY, ids=[u[0] for u in UNARY])
def test_unary_and_shape_ops_match_torch(name, fn, dtype):
    compare(fn, fn, [rand(2, 3, 4)], dtype=dtype)


def test_cat_stack_where_match_torch():
    a, b, c = rand(2, 3), rand(2, 5), rand(2, 3)
    compare(lambda x, y: cs.cat([x, y], 1) * 3, lambda x, y: torch.cat([x, y], 1) * 3, [a, b])
    compare(lambda x, y: cs.stack([x, y], 0) * 3, lambda x, y: torch.stack([x, y], 0) * 3, [a, c])
    cond = a > 0
    compare(lambda x, y: cs.where(cond, x, y), lambda x, y: torch.where(torch.from_numpy(cond), x, y), [a, c])


def test_gradients_accumulate_across_uses_and_backward_calls():
    x = cs.tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * x + x).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 5.0])
    (x * 2).sum().backward()
    np.testing.assert_array_equal(x.grad, [5.0, 7.0])


def test_deep_chain_does_not_recurse():
    x = cs.tensor(np.ones(3), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones(3))


def test_dtypes_follow_torch():
    assert cs.tensor([1.0, 2.0]).dtype == np.float32
    assert cs.tensor(np.zeros(2)).dtype == np.float64
    assert cs.tensor([1, 2]).dtype == np.int64
    assert cs.tensor(np.zeros(2), dtype=cs.float32).dtype == np.float32
    x32 = cs.tensor(np.ones(2, np.float32), requires_grad=True)
    y = (x32 * 2.5 + 1.0) / 3.0
    assert y.dtype == np.float32
    y.sum().backward()
    assert x32.grad.dtype == np.float32
    assert (x32 + cs.tensor(np.ones(2))).dtype == np.float64


def test_no_grad_and_detach():
    x = cs.tensor(np.ones(2), requires_grad=True)
    with cs.no_grad():
        y = x * 2
    assert not y.requires_grad
    assert cs.is_grad_enabled()
    z = (x * 2).detach()
    assert not z.requires_grad and z.is_leaf


def test_meta_tensors_compute_shapes_only():
    m = cs.Tensor.meta((2, 3, 4))
    out = ((m + 1) * m).reshape(6, 4)[1:3].transpose(0, 1) @ cs.Tensor.meta((2, 5))
    assert out.is_meta and out.shape == (4, 5)
    with pytest.raises(ValueError, match="meta tensor"):
        out.numpy()
    with pytest.raises(cs.ShapeError, match=r"matmul: inner dimensions differ"):
        cs.Tensor.meta((2, 3)) @ cs.Tensor.meta((4, 5))


def test_shape_errors_name_op_and_numbers():
    with pytest.raises(cs.ShapeError, match=r"add: shapes \(2, 3\) and \(4,\) cannot be broadcast"):
        cs.tensor(np.ones((2, 3))) + cs.tensor(np.ones(4))
    with pytest.raises(cs.ShapeError, match=r"reshape: cannot reshape \(2, 3\) \(6 elements\) to \(4, 2\)"):
        cs.tensor(np.ones((2, 3))).reshape(4, 2)


def test_backward_with_explicit_gradient_matches_torch():
    a = rand(3, 2)
    g = rand(3, 2)
    x = cs.tensor(a, requires_grad=True)
    t = torch.tensor(a, requires_grad=True)
    (x.exp() * x).backward(g)
    (t.exp() * t).backward(torch.from_numpy(g))
    assert_close(x.grad, t.grad.numpy())


def test_grad_mode_is_per_thread():
    import threading

    seen = {}
    inside, release = threading.Event(), threading.Event()

    def other():
        with cs.no_grad():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=other)
    t.start()
    inside.wait(5)
    x = cs.tensor(np.ones(2), requires_grad=True)
    seen["main"] = (x * 2).requires_grad
    release.set()
    t.join()
    assert seen["main"] and cs.is_grad_enabled()
    with cs.no_grad(), cs.enable_grad():
        assert (x * 2).requires_grad
