"""Losses checked against torch: every reduction, class weights, ignore_index, label smoothing,
probability targets, K-dim targets; plus the errors for invalid targets."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import convscope as cs
from torch_ref import both_refuse, compare

F = cs.functional
REDUCTIONS = ["none", "mean", "sum"]
# input shapes (C = 5): unbatched, batched, and K = 1, 2, 3 extra dims
SHAPES = [(5,), (6, 5), (3, 5, 4), (2, 5, 3, 4), (2, 5, 2, 3, 2)]


def target_shape(shape: tuple) -> tuple:
    return shape[:1] + shape[2:] if len(shape) > 1 else ()


def index_target(shape: tuple, seed: int, ignore: int) -> np.ndarray:
    """Class indices in range, about a third of them (at least one) replaced by ``ignore``."""
    rng = np.random.default_rng(seed)
    t = np.asarray(rng.integers(0, shape[1 if len(shape) > 1 else 0], target_shape(shape)), dtype=np.int64)
    hit = rng.random(t.shape) < 1 / 3
    hit.flat[:1] = True
    return np.where(hit, ignore, t)


def loss_pair(name: str, weighted: bool, kwargs: dict):
    """convscope and torch callables; class weights are constants in both engines (detached)."""
    def make(fn):
        if weighted:
            return lambda x, t, w: fn(x, t, w.detach(), **kwargs)
        return lambda x, t: fn(x, t, **kwargs)

    return make(getattr(F, name)), make(getattr(TF, name))


def data(shape: tuple, seed: int, scale: float = 2.0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape) * scale


# --- class-index targets ---------------------------------------------------------------------------
# ignore_index: the default -100 (with some targets set to it) or a real class (1)
INDEX_CASES = list(itertools.product(SHAPES, [False, True], [-100, 1], REDUCTIONS, [0.0, 0.25]))


def case_id(case: tuple) -> str:
    shape, weighted, ignore, reduction, smoothing = case
    return f"{shape}-{'w' if weighted else 'nw'}-ign{ignore}-{reduction}-ls{smoothing}"


def index_args(shape, weighted, ignore, seed):
    args = [data(shape, seed), index_target(shape, seed, ignore)]
    if weighted:
        args.append(np.random.default_rng(seed + 1).random(shape[1 if len(shape) > 1 else 0]) + 0.1)
    return args


@pytest.mark.parametrize("case", INDEX_CASES, ids=[case_id(c) for c in INDEX_CASES])
def test_cross_entropy_index_targets(case):
    shape, weighted, ignore, reduction, smoothing = case
    kwargs = {"reduction": reduction, "label_smoothing": smoothing, "ignore_index": ignore}
    compare(*loss_pair("cross_entropy", weighted, kwargs), index_args(shape, weighted, ignore, len(shape)))


NLL_CASES = [c for c in INDEX_CASES if c[4] == 0.0]


@pytest.mark.parametrize("case", NLL_CASES, ids=[case_id(c) for c in NLL_CASES])
def test_nll_loss(case):
    shape, weighted, ignore, reduction, _ = case
    kwargs = {"reduction": reduction, "ignore_index": ignore}
    compare(*loss_pair("nll_loss", weighted, kwargs), index_args(shape, weighted, ignore, 7))


FLOAT32_CASES = [c for c in INDEX_CASES if c[0] in ((6, 5), (2, 5, 3, 4)) and c[2] == -100]


@pytest.mark.parametrize("case", FLOAT32_CASES, ids=[case_id(c) for c in FLOAT32_CASES])
def test_cross_entropy_float32(case):
    shape, weighted, ignore, reduction, smoothing = case
    kwargs = {"reduction": reduction, "label_smoothing": smoothing}
    compare(*loss_pair("cross_entropy", weighted, kwargs), index_args(shape, weighted, ignore, 3), dtype=np.float32)


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(4, 5), (0, 5), (0, 5, 3)])
def test_every_target_ignored_or_empty_batch(shape, reduction, weighted, smoothing):
    """The mean divides by a zero weight sum: nan, with zero gradients (as torch)."""
    args = index_args(shape, weighted, -100, 2)
    args[1] = np.full_like(args[1], -100)
    compare(*loss_pair("cross_entropy", weighted, {"reduction": reduction, "label_smoothing": smoothing}), args)


def test_large_logits_are_stable():
    x = data((4, 6), 0, scale=1e4)
    x[0] = [1e300, -1e300, 0.0, 5.0, 1e4, -1e4]
    compare(*loss_pair("cross_entropy", False, {}), [x, np.array([0, 1, 2, 3])])
    compare(*loss_pair("cross_entropy", False, {"label_smoothing": 0.1}), [x, np.array([0, 1, 2, 3])])


def test_minus_inf_logits_outside_the_target_are_harmless():
    x = data((3, 4), 1)
    x[:, 3] = -np.inf
    compare(*loss_pair("cross_entropy", False, {"reduction": "none"}), [x, np.array([0, 1, 2])])


def test_weighted_mean_divides_by_the_weights_of_kept_targets():
    """An independent reference for the rule: Σ −w[t]·log p[t] / Σ w[t] over non-ignored targets."""
    x, w = data((5, 3), 4), np.array([0.2, 1.0, 3.0])
    t = np.array([0, 2, -100, 1, 2])
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    kept = t != -100
    expected = -(w[t[kept]] * logp[kept, t[kept]]).sum() / w[t[kept]].sum()
    got = F.cross_entropy(cs.tensor(x), cs.tensor(t), cs.tensor(w)).item()
    assert got == pytest.approx(expected, rel=1e-12)


# --- probability targets ------------------------------------------------------------------------
PROB_CASES = list(itertools.product(SHAPES, [False, True], REDUCTIONS, [0.0, 0.25]))


@pytest.mark.parametrize("case", PROB_CASES, ids=[f"{s}-{'w' if w else 'nw'}-{r}-ls{e}" for s, w, r, e in PROB_CASES])
def test_cross_entropy_probability_targets(case):
    """Soft targets are differentiable: their gradient is compared too."""
    shape, weighted, reduction, smoothing = case
    probs = np.random.default_rng(9).random(shape)
    args = [data(shape, 8), probs / probs.sum(axis=1 if len(shape) > 1 else 0, keepdims=True)]
    if weighted:
        args.append(np.random.default_rng(10).random(5) + 0.1)
    compare(*loss_pair("cross_entropy", weighted, {"reduction": reduction, "label_smoothing": smoothing}), args)
    compare(*loss_pair("cross_entropy", weighted, {"reduction": reduction, "label_smoothing": smoothing}), args,
            dtype=np.float32)


# --- element-wise losses --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shapes", [[(4, 3), (4, 3)], [(), ()], [(2, 3, 4, 5), (2, 3, 4, 5)], [(0, 3), (0, 3)]],
                         ids=["2d", "0d", "4d", "empty"])
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
def test_pointwise_losses(name, shapes, reduction, dtype):
    x = np.asarray(data(shapes[0], 1))
    y = np.asarray(data(shapes[1], 2))
    if x.size:
        y.flat[0] = x.flat[0]  # l1's gradient at equality is 0
    compare(*loss_pair(name, False, {"reduction": reduction}), [x, y], dtype=dtype)


@pytest.mark.filterwarnings("ignore:Using a target size")  # torch's own warning
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
def test_pointwise_losses_broadcast_with_a_warning(name, reduction):
    with pytest.warns(UserWarning, match=r"target shape \(3,\) differs from input shape \(4, 1\)"):
        compare(*loss_pair(name, False, {"reduction": reduction}), [data((4, 1), 1), data((3,), 2)])


BCE_CASES = list(itertools.product([False, True], [False, True], REDUCTIONS))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted,pos_weighted,reduction", BCE_CASES)
def test_binary_cross_entropy_with_logits(weighted, pos_weighted, reduction, dtype):
    rng = np.random.default_rng(5)
    x = data((4, 3, 5), 3, scale=3.0)
    x[0, 0] = [-800.0, -50.0, 0.0, 50.0, 800.0]
    args = [x, rng.random((4, 3, 5))]
    extra = {"weight": rng.random((3, 1)) + 0.1 if weighted else None,
             "pos_weight": rng.random(5) * 3 if pos_weighted else None}

    def make(fn):
        def call(x, t, *consts):
            given = iter(c.detach() for c in consts)
            kw = {k: next(given) for k, v in extra.items() if v is not None}
            return fn(x, t, reduction=reduction, **kw)
        return call

    compare(make(F.binary_cross_entropy_with_logits), make(TF.binary_cross_entropy_with_logits),
            args + [v for v in extra.values() if v is not None], dtype=dtype)


# --- one_hot ------------------------------------------------------------------------------------
@pytest.mark.parametrize("values,num_classes", [([0, 3, 1], -1), ([[0, 2], [1, 1]], 4), ([], 3), (2, 5)])
def test_one_hot_matches_torch(values, num_classes):
    t = np.asarray(values, dtype=np.int64)
    got = F.one_hot(cs.tensor(t), num_classes)
    want = TF.one_hot(torch.from_numpy(t), num_classes)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got.numpy(), want.numpy())


# --- errors ---------------------------------------------------------------------------------------
X = data((4, 10), 0)
ERRORS = [
    ("ce_target_out_of_range", "cross_entropy", [X, np.array([0, 12, 1, 2])], {},
     "target 12 is out of range for 10 classes"),
    ("ce_negative_target", "cross_entropy", [X, np.array([0, -3, 1, 2])], {},
     "target -3 is out of range for 10 classes"),
    ("ce_batch_mismatch", "cross_entropy", [X, np.array([0, 1, 2])], {},
     r"expected target of shape \(4,\) \(the input \(4, 10\) without its class dim 1\), got \(3,\)"),
    ("ce_kdim_mismatch", "cross_entropy", [data((2, 3, 4), 0), np.zeros((2, 5), np.int64)], {},
     r"expected target of shape \(2, 4\).*got \(2, 5\)"),
    ("ce_extra_target_dim", "cross_entropy", [X, np.zeros((4, 1), np.int64)], {}, r"expected target of shape \(4,\)"),
    ("ce_float_index_target", "cross_entropy", [X, np.zeros(4)], {},
     r"class-index target must be an integer tensor, got float64 target of shape \(4,\).*Hint: float targets"),
    ("ce_integer_probabilities", "cross_entropy", [X, np.zeros((4, 10), np.int64)], {},
     "read as class probabilities and must be floating point, got int64"),
    ("ce_weight_size", "cross_entropy", [X, np.array([0, 1, 2, 3]), np.ones(4)], {},
     r"weight must have one entry per class, shape \(10,\), got \(4,\)"),
    ("ce_ignore_index_with_probabilities", "cross_entropy", [X, np.full((4, 10), 0.1)], {"ignore_index": 2},
     "ignore_index 2 is not supported for class-probability targets"),
    ("ce_0d_input", "cross_entropy", [np.asarray(1.0), np.asarray(0)], {}, "got a 0-d input"),
    ("nll_target_out_of_range", "nll_loss", [X, np.array([0, 10, 1, 2])], {},
     "target 10 is out of range for 10 classes"),
    ("nll_float_target", "nll_loss", [X, np.zeros(4)], {}, "class-index target must be an integer tensor"),
    ("mse_no_broadcast", "mse_loss", [X, data((4, 3), 1)], {}, r"target shape \(4, 3\) cannot be broadcast"),
    ("bce_shape", "binary_cross_entropy_with_logits", [X, data((4, 1), 1)], {},
     r"target shape \(4, 1\) must equal input shape \(4, 10\)"),
    ("one_hot_out_of_range", "one_hot", [np.array([0, 3])], {"num_classes": 3},
     "class value 3 is out of range for 3 classes"),
    ("one_hot_negative", "one_hot", [np.array([0, -1])], {}, "class value -1 is out of range"),
    ("one_hot_empty_infer", "one_hot", [np.zeros(0, np.int64)], {}, "cannot infer num_classes from an empty tensor"),
    ("one_hot_float", "one_hot", [np.zeros(3)], {}, "expected an int64 tensor of class indices .*, got float64"),
]


@pytest.mark.parametrize("case,name,args,kwargs,match", ERRORS, ids=[e[0] for e in ERRORS])
@pytest.mark.filterwarnings("ignore:Using a target size")  # torch's own warning
def test_errors_both_refuse(case, name, args, kwargs, match):
    both_refuse(getattr(F, name), getattr(TF, name), args, kwargs, match=match)


def test_weight_dtype_must_match_the_input():
    x, t, w = torch.from_numpy(X), torch.tensor([0, 1, 2, 3]), torch.ones(10, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="expected scalar type Double but found Float"):
        TF.cross_entropy(x, t, w)
    with pytest.raises(cs.ShapeError, match="weight dtype float32 does not match input dtype float64"):
        F.cross_entropy(cs.tensor(X), cs.tensor(t.numpy()), cs.tensor(w.numpy()))


def test_bce_weight_must_broadcast_to_the_input():
    both_refuse(lambda x, t, w: F.binary_cross_entropy_with_logits(x, t, w),
                lambda x, t, w: TF.binary_cross_entropy_with_logits(x, t, w), [X, X, np.ones((2, 1))],
                match=r"weight of shape \(2, 1\) does not broadcast to input shape \(4, 10\)")


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss", "mse_loss", "l1_loss",
                                  "binary_cross_entropy_with_logits"])
def test_reduction_must_be_known(name):
    target = np.array([0, 1, 2, 3]) if name in ("cross_entropy", "nll_loss") else X
    with pytest.raises(ValueError, match="avg"):
        getattr(TF, name)(torch.from_numpy(X), torch.from_numpy(target), reduction="avg")
    with pytest.raises(ValueError, match=f"{name}: reduction must be 'none', 'mean' or 'sum', got 'avg'"):
        getattr(F, name)(cs.tensor(X), cs.tensor(target), reduction="avg")


def test_label_smoothing_must_be_a_probability():
    with pytest.raises(RuntimeError, match="label_smoothing must be between 0.0 and 1.0"):
        TF.cross_entropy(torch.from_numpy(X), torch.tensor([0, 1, 2, 3]), label_smoothing=1.5)
    for smoothing in (1.5, -0.1):  # unlike torch, which silently treats a negative value as 0
        with pytest.raises(ValueError, match=f"label_smoothing must be between 0.0 and 1.0, got {smoothing}"):
            F.cross_entropy(cs.tensor(X), cs.tensor(np.array([0, 1, 2, 3])), label_smoothing=smoothing)


def test_error_names_the_op():
    with pytest.raises(cs.ShapeError) as info:
        F.cross_entropy(cs.tensor(X), cs.tensor(np.array([0, 12, 1, 2])))
    assert info.value.layer == "cross_entropy"


# --- meta -------------------------------------------------------------------------------------------
META = [
    ("ce_index", lambda x, t, r: F.cross_entropy(x, t, reduction=r), (2, 5, 3), (2, 3), np.int64),
    ("ce_unbatched", lambda x, t, r: F.cross_entropy(x, t, reduction=r), (5,), (), np.int64),
    ("ce_probabilities", lambda x, t, r: F.cross_entropy(x, t, reduction=r, label_smoothing=0.1), (2, 5, 3),
     (2, 5, 3), np.float32),
    ("nll", lambda x, t, r: F.nll_loss(x, t, reduction=r), (4, 5), (4,), np.int64),
    ("mse", lambda x, t, r: F.mse_loss(x, t, reduction=r), (4, 5), (4, 5), np.float32),
    ("l1", lambda x, t, r: F.l1_loss(x, t, reduction=r), (4, 5), (4, 5), np.float32),
    ("bce", lambda x, t, r: F.binary_cross_entropy_with_logits(x, t, reduction=r), (4, 5), (4, 5), np.float32),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case,fn,in_shape,t_shape,t_dtype", META, ids=[m[0] for m in META])
def test_meta_matches_real_shape(case, fn, in_shape, t_shape, t_dtype, reduction):
    target = np.zeros(t_shape, t_dtype)
    real = fn(cs.tensor(np.zeros(in_shape, np.float32)), cs.tensor(target), reduction)
    meta = fn(cs.Tensor.meta(in_shape), cs.Tensor.meta(t_shape, t_dtype), reduction)
    half = fn(cs.Tensor.meta(in_shape), cs.tensor(target), reduction)
    assert meta.is_meta and half.is_meta
    assert (meta.shape, meta.dtype) == (half.shape, half.dtype) == (real.shape, real.dtype)


def test_one_hot_meta():
    assert F.one_hot(cs.Tensor.meta((2, 3), np.int64), 7).shape == (2, 3, 7)
    with pytest.raises(cs.ShapeError, match="num_classes must be given for a meta tensor"):
        F.one_hot(cs.Tensor.meta((2, 3), np.int64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_l1_loss_gradient_at_nan_and_equality_is_zero_as_torch(dtype):
    """torch's sign is 0 for NaN (np.sign passes NaN on), at every size."""
    x = np.linspace(-3, 3, 40).astype(dtype)
    x[[0, 17, 39]] = np.nan
    x[20] = 0.0
    ours = cs.tensor(x, requires_grad=True)
    cs.functional.l1_loss(ours, np.zeros_like(x), reduction="sum").backward()
    theirs = torch.tensor(x, requires_grad=True)
    TF.l1_loss(theirs, torch.zeros(40, dtype=theirs.dtype), reduction="sum").backward()
    np.testing.assert_array_equal(ours.grad, theirs.grad.numpy())
    assert ours.grad[[0, 17, 20, 39]].tolist() == [0, 0, 0, 0]
