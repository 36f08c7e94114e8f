"""Tensor, autograd and the element-wise/shape ops, checked against torch."""

import math
import re
import sys
from typing import Any

import numpy as np
import pytest
import torch

import convscope as cs
from convscope.functional import _special
from convscope.tensor import make_result
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
    ("erf", lambda x: x.erf()),
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


ERF_POINTS = np.concatenate([np.linspace(-6, 6, 4001), [0.0, -0.0, 1e-300, -1e-8, 1e-3, 27.0, -27.0]])


@pytest.mark.parametrize("kernel", ["default", "math.erf"])
def test_erf_and_its_gradient_match_torch_to_rounding_in_float64(kernel, monkeypatch):
    """``2/√π·exp(−x²)`` as the gradient; SciPy's erf (or ``math.erf`` without SciPy) agree
    with torch's to a few ulps, across the range, the tails and the signed zeros."""
    if kernel == "math.erf":
        monkeypatch.setattr(cs.ops, "_erf", _special.erf_python)
    g = RNG.standard_normal(ERF_POINTS.shape)
    x = cs.tensor(ERF_POINTS, requires_grad=True)
    t = torch.tensor(ERF_POINTS, requires_grad=True)
    cs.ops.erf(x).backward(g)
    torch.special.erf(t).backward(torch.from_numpy(g))
    want = torch.erf(torch.from_numpy(ERF_POINTS)).numpy()
    got = x.erf().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(np.signbit(got[want == 0]), np.signbit(want[want == 0]))
    np.testing.assert_allclose(x.grad, t.grad.numpy(), rtol=1e-15, atol=0)


def test_erf_matches_torch_in_float32_and_on_meta_tensors():
    compare(lambda x: cs.ops.erf(x * 3), lambda x: torch.erf(x * 3), [ERF_POINTS[::7]], dtype=np.float32)
    out = cs.ops.erf(cs.Tensor.meta((2, 3), cs.float32))
    assert out.is_meta and out.shape == (2, 3) and out.dtype == np.float32


def test_cat_stack_where_match_torch():
    a, b, c = rand(2, 3), rand(2, 5), rand(2, 3)
    compare(lambda x, y: cs.cat([x, y], 1) * 3, lambda x, y: torch.cat([x, y], 1) * 3, [a, b])
    compare(lambda x, y: cs.stack([x, y], 0) * 3, lambda x, y: torch.stack([x, y], 0) * 3, [a, c])
    cond = a > 0
    compare(lambda x, y: cs.where(cond, x, y), lambda x, y: torch.where(torch.from_numpy(cond), x, y), [a, c])


DIM_OPS = {  # name: (convscope, torch), each called with a tensor and one dim
    "unsqueeze": (lambda x, d: x.unsqueeze(d), lambda x, d: x.unsqueeze(d)),
    "squeeze": (lambda x, d: x.squeeze(d), lambda x, d: x.squeeze(d)),
    "flatten": (lambda x, d: x.flatten(d), lambda x, d: x.flatten(d)),
    "transpose": (lambda x, d: x.transpose(0, d), lambda x, d: x.transpose(0, d)),
    "permute": (lambda x, d: x.permute(d, 1), lambda x, d: x.permute(d, 1)),
    "cat": (lambda x, d: cs.cat([x, x], d), lambda x, d: torch.cat([x, x], d)),
    "stack": (lambda x, d: cs.stack([x, x], d), lambda x, d: torch.stack([x, x], d)),
    "sum": (lambda x, d: x.sum(d), lambda x, d: x.sum(d)),
}


@pytest.mark.parametrize("op", DIM_OPS)
@pytest.mark.parametrize("shape", [(2, 1), ()], ids=["2-d", "0-d"])
def test_dims_out_of_range_are_refused_as_torch_refuses_them(op: str, shape: tuple) -> None:
    """Every dim torch takes gives torch's shape; every dim it refuses is a ShapeError naming
    the op (they used to wrap around: stack([x, x], 3) of 2×1 tensors stacked along dim 0)."""
    ours, theirs = DIM_OPS[op]
    for dim in range(-4, 4):
        try:
            want = tuple(theirs(torch.zeros(shape), dim).shape)
        except (IndexError, RuntimeError):
            with pytest.raises(cs.ShapeError, match=rf"^{op if op != 'sum' else 'reduce'}: "):
                ours(cs.tensor(np.zeros(shape)), dim)
        else:
            assert ours(cs.tensor(np.zeros(shape)), dim).shape == want, dim


def test_gradients_accumulate_across_uses_and_backward_calls():
    x = cs.tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * x + x).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 5.0])
    (x * 2).sum().backward()
    np.testing.assert_array_equal(x.grad, [5.0, 7.0])


def test_a_0d_leafs_gradient_is_an_ndarray_that_changes_in_place_like_torchs():
    """NumPy arithmetic on 0-d arrays gives NumPy scalars; ``.grad`` is still an ndarray, so
    in-place gradient edits (clipping, scaling) work on a learnt scalar as in torch."""
    w, tw = cs.tensor(np.array(2.0), requires_grad=True), torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    (cs.tensor(np.arange(3.0)) * w).sum().backward()
    (torch.arange(3.0, dtype=torch.float64) * tw).sum().backward()
    assert isinstance(w.grad, np.ndarray) and w.grad.shape == ()
    assert w.grad == tw.grad.item()
    (w * w).backward()
    (tw * tw).backward()
    assert isinstance(w.grad, np.ndarray) and w.grad.shape == ()
    np.multiply(w.grad, 0.5, out=w.grad)
    tw.grad.mul_(0.5)
    assert w.grad == tw.grad.item()


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


def test_backward_takes_torchs_keywords_and_keeps_the_graph() -> None:
    """``backward(gradient=..., retain_graph=True)`` as written for torch; a second backward
    through the same graph accumulates as torch's does after ``retain_graph=True``."""
    a, g = rand(3, 2), rand(3, 2)
    x, t = cs.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    y, ty = x.exp() * x, t.exp() * t
    y.backward(gradient=g, retain_graph=True)
    ty.backward(gradient=torch.from_numpy(g), retain_graph=True)
    y.backward(gradient=cs.tensor(g))
    ty.backward(gradient=torch.from_numpy(g))
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


# --- leaf gradients: no copy when nothing else can reach the gradient, never an alias ----------------
def test_a_leafs_gradient_is_its_own_array_whatever_the_closures_return():
    """Closures hand back the upstream gradient itself (add, x·1 through add), one array for
    two parents (add), the user's seed (a leaf's own backward), a view of it: every leaf's
    ``.grad`` is then a copy, sharing memory with no other leaf's gradient nor with the seed."""
    a, b = cs.tensor(np.ones(3), requires_grad=True), cs.tensor(np.ones(3), requires_grad=True)
    seed = np.array([1.0, 2.0, 3.0])
    (a + b).backward(seed)  # add returns (g, g): the seed itself, to both leaves
    (a * 1).sum()  # no backward: a is untouched
    assert not np.shares_memory(a.grad, b.grad) and not np.shares_memory(a.grad, seed)
    seed[:] = 0  # the user reuses the seed: the gradients keep their values
    a.grad[0] = 9
    np.testing.assert_array_equal(a.grad, [9, 2, 3])
    np.testing.assert_array_equal(b.grad, [1, 2, 3])
    x = cs.tensor(np.ones(3), requires_grad=True)
    g = np.full(3, 4.0)
    x.backward(g)  # a leaf's own seed
    g[:] = 0
    np.testing.assert_array_equal(x.grad, [4, 4, 4])
    y = cs.tensor(np.ones((2, 3)), requires_grad=True)
    seed2 = np.arange(6.0)
    y.reshape(6).backward(seed2)  # a view of the seed
    assert not np.shares_memory(y.grad, seed2)


def test_x_plus_x_and_x_times_one_sum_their_gradients():
    x = cs.tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x + x).backward(np.array([1.0, 10.0]))
    np.testing.assert_array_equal(x.grad, [2, 20])
    z = cs.tensor(np.array([1.0, 2.0]), requires_grad=True)
    g = np.array([3.0, 4.0])
    (z * 1 + z).backward(g)
    np.testing.assert_array_equal(z.grad, [6, 8])
    np.testing.assert_array_equal(g, [3, 4])


def test_a_closures_saved_array_is_never_handed_out_or_changed():
    """A closure may return an array it keeps (here: the same constant every time); the leaf
    gets a copy, and accumulating a second backward leaves the closure's array alone."""
    saved = np.array([1.0, 2.0])
    x = cs.tensor(np.zeros(2), requires_grad=True)
    for expected in ([1, 2], [2, 4]):
        out = make_result("constant_grad", np.zeros(2), (x,), lambda g: (saved,))
        out.backward(np.ones(2))
        np.testing.assert_array_equal(x.grad, expected)
        np.testing.assert_array_equal(saved, [1, 2])
        assert not np.shares_memory(x.grad, saved)
    view = make_result("view_grad", np.zeros(2), (x,), lambda g: (saved[::-1][::-1],))
    view.backward(np.ones(2))
    assert not np.shares_memory(x.grad, saved)


def test_accumulating_keeps_a_retained_gradient_and_its_views():
    """A second backward adds in place only when ``.grad`` is the array's one holder: a
    reference kept before (or a view of it, or an array the user assigned) keeps its values."""
    x = cs.tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * x).sum().backward()
    first, row = x.grad, x.grad[:1]
    (x * 3).sum().backward()
    np.testing.assert_array_equal(first, [2, 4])
    np.testing.assert_array_equal(row, [2])
    np.testing.assert_array_equal(x.grad, [5, 7])
    mine = np.array([10.0, 10.0])
    x.grad = mine
    (x * 1).sum().backward()
    np.testing.assert_array_equal(mine, [10, 10])
    np.testing.assert_array_equal(x.grad, [11, 11])


def test_a_fresh_gradient_is_kept_without_a_copy_and_accumulated_in_place():
    """Nothing else holds a max pool's input gradient: it becomes ``.grad`` as it is (peak
    memory of the backward: one gradient, not two), and the next backward adds into it."""
    import tracemalloc

    import convscope.functional as F

    warm = cs.tensor(np.ones((1, 1, 4, 4)), requires_grad=True)
    F.max_pool2d(warm, 3, 2, 1).sum().backward()  # loads (or compiles) the optional compiled kernels
    x = cs.tensor(np.random.default_rng(0).standard_normal((4, 8, 64, 64)), requires_grad=True)
    y = F.max_pool2d(x, 3, 2, 1)
    upstream = np.ones(y.shape)
    tracemalloc.start()
    y.backward(upstream)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert x.grad.nbytes <= peak < 1.5 * x.grad.nbytes
    before = id(x.grad)
    F.max_pool2d(x, 3, 2, 1).backward(upstream)
    assert id(x.grad) == before
    want = torch.tensor(x.numpy(), requires_grad=True)
    for _ in range(2):
        torch.nn.functional.max_pool2d(want, 3, 2, 1).backward(torch.from_numpy(upstream))
    np.testing.assert_array_equal(x.grad, want.grad.numpy())


def test_two_leaves_fed_from_one_fresh_array_do_not_share_it():
    """A closure that returns one fresh array for two parents: the first leaf to take it sees a
    second holder and copies; the other may keep it."""
    a, b = cs.tensor(np.ones(4), requires_grad=True), cs.tensor(np.ones(4), requires_grad=True)
    out = make_result("twice", np.zeros(4), (a, b), lambda g: (g * 2,) * 2)
    out.backward(np.ones(4))
    assert not np.shares_memory(a.grad, b.grad)
    a.grad += 1
    np.testing.assert_array_equal(b.grad, [2, 2, 2, 2])


def test_reference_counts_tell_a_second_holder():
    """The engine's count of references (calibrated at import on this interpreter) sees one
    variable alone, then a second holder, then a view's hold on its base."""
    engine = sys.modules["convscope.tensor"]
    if engine._ALONE is None:
        pytest.skip("this interpreter has no reference counts: leaf gradients are always copied")
    a = np.empty(3)
    assert engine._references(a) == engine._ALONE
    held = [a]
    assert engine._references(a) == engine._ALONE + 1 and engine._private(a)
    view = np.empty(4).reshape(2, 2)
    assert engine._private(view)
    base = view.base
    assert not engine._private(view)  # ``base`` is a second way to its memory
    del held, base
    assert not engine._private(view[:, :1]) and not engine._private(view.T)


def _tracked_closure(refs: list):
    """A backward closure returning a fresh array, remembered by a weak reference (which leaves
    the reference count alone)."""
    import weakref

    def backward(g):
        fresh = g * 2
        refs.append(weakref.ref(fresh))
        return (fresh,)

    return backward


@pytest.mark.parametrize("counts", [True, False], ids=["refcounts", "no_refcounts"])
def test_the_closures_own_array_becomes_grad_unless_counts_cannot_tell(counts, monkeypatch):
    """torch's rule: a fresh gradient nothing else holds becomes ``.grad`` itself, and the next
    one adds into it; without reference counts (another interpreter) always a copy, then a sum."""
    if not counts:
        monkeypatch.setattr(sys.modules["convscope.tensor"], "_ALONE", None)
    elif sys.modules["convscope.tensor"]._ALONE is None:
        pytest.skip("this interpreter has no reference counts")
    x = cs.tensor(np.ones(3), requires_grad=True)
    refs: list = []
    for expected in ([2, 2, 2], [4, 4, 4]):
        make_result("fresh", np.zeros(3), (x,), _tracked_closure(refs)).backward(np.ones(3))
        np.testing.assert_array_equal(x.grad, expected)
    assert (refs[0]() is x.grad) == counts  # kept (then added into) or copied
    assert refs[1]() is None  # the second gradient was added, then freed


@pytest.mark.parametrize("threads", [1, 2])
def test_a_large_gradient_accumulates_in_parts_on_the_threads(threads):
    """Past a million elements the in-place sum runs in parts (the last one shorter) on the
    engine's threads: the same bits as one sum."""
    from threadpoolctl import threadpool_limits

    engine = sys.modules["convscope.tensor"]
    n = engine._ADD_PARALLEL + engine._ADD_PART // 3
    upstream = np.random.default_rng(2).standard_normal(n).astype(np.float32)
    x = cs.tensor(np.zeros(n, np.float32), requires_grad=True)
    with threadpool_limits(threads, user_api="blas"):
        for _ in range(3):
            make_result("scaled", np.zeros(n, np.float32), (x,), lambda g: (g * np.float32(1.5),)).backward(upstream)
    part = upstream * np.float32(1.5)
    np.testing.assert_array_equal(x.grad, part + part + part)


def test_unflatten_splits_one_dim_and_refuses_what_does_not_split() -> None:
    x = cs.tensor(rand(2, 12, 3))
    assert cs.ops.unflatten(x, 1, (3, -1)).shape == (2, 3, 4, 3)
    np.testing.assert_array_equal(cs.ops.unflatten(x, -1, (1, 3)).numpy(), x.numpy().reshape(2, 12, 1, 3))
    for dim, sizes, match in ((1, (5, -1), r"sizes \(5, -1\) do not split dim 1 of size 12"),
                              (3, (1,), r"dim 3 is out of range for a 3-d input")):
        with pytest.raises(cs.ShapeError, match=match):
            cs.ops.unflatten(x, dim, sizes)
    with pytest.raises(cs.ShapeError, match=r"dim 0 is out of range for a 0-d input"):
        cs.ops.unflatten(cs.tensor(1.0), 0, (1,))


def test_abs_gradient_at_nan_and_zero_is_zero_as_torch():
    a = np.linspace(-2, 2, 41)
    a[[0, 30]] = np.nan
    x = cs.tensor(a, requires_grad=True)
    x.abs().sum().backward()
    t = torch.tensor(a, requires_grad=True)
    t.abs().sum().backward()
    np.testing.assert_array_equal(x.grad, t.grad.numpy())
    assert x.grad[[0, 20, 30]].tolist() == [0, 0, 0]


@pytest.mark.parametrize("values", [0.0, -0.0, 2.5, -3.7, [0.0], [[1e-30]], [[[-7.0]]], 3, [0], True, [False]])
def test_python_scalars_of_one_element_tensors_equal_torch(values: Any) -> None:
    """bool(), float(), int() and item() of a one-element tensor, as torch answers them
    (``bool(tensor([0.]))`` was True: Python fell back on ``len``)."""
    ours, theirs = cs.tensor(values), torch.tensor(values)
    for convert in (bool, float, int):
        assert convert(ours) == convert(theirs) and type(convert(ours)) is type(convert(theirs))
    assert ours.item() == theirs.item() and type(ours.item()) is type(theirs.item())


@pytest.mark.parametrize("shape", [(2,), (0,), (1, 3)])
def test_python_scalars_of_other_tensors_are_refused(shape: tuple) -> None:
    t = cs.tensor(np.zeros(shape))
    for convert in (bool, float, int, lambda x: x.item()):
        message = rf"shape {re.escape(str(shape))} has {math.prod(shape)} values; .*exactly one"
        with pytest.raises(ValueError, match=message):
            convert(t)
