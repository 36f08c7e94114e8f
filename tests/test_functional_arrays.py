"""Functional ops take NumPy arrays wherever they take a tensor, and reject anything else clearly."""

import inspect

import numpy as np
import pytest

import convscope as cs
import convscope.functional as F

RNG = np.random.default_rng(77)


def _tensor_parameters(fn) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values() if "Tensor" in str(p.annotation)]


OPS = [name for name in F.__all__ if inspect.isfunction(getattr(F, name)) and _tensor_parameters(getattr(F, name))]


def test_every_tensor_taking_op_is_covered():
    assert len(OPS) > 60 and {"conv2d", "max_pool2d", "batch_norm", "cross_entropy", "flatten"} <= set(OPS)


@pytest.mark.parametrize("name", OPS)
def test_a_list_is_a_type_error_naming_the_op_and_argument(name):
    first = _tensor_parameters(getattr(F, name))[0]
    with pytest.raises(TypeError, match=rf"^{name}: argument '{first}' must be a Tensor"):
        getattr(F, name)(**{first: [1.0, 2.0]})


def test_arrays_give_the_tensors_result_and_gradient():
    x, w, b = RNG.standard_normal((2, 3, 9, 9)), RNG.standard_normal((4, 3, 3, 3)), RNG.standard_normal(4)
    reference = F.conv2d(cs.tensor(x), cs.tensor(w), cs.tensor(b), stride=2, padding=1)
    from_arrays = F.conv2d(x, w, bias=b, stride=2, padding=1)
    assert isinstance(from_arrays, cs.Tensor)
    np.testing.assert_array_equal(from_arrays.numpy(), reference.numpy())

    xt, wt = cs.tensor(x, requires_grad=True), cs.tensor(w, requires_grad=True)
    F.conv2d(xt, wt).sum().backward()
    mixed = cs.tensor(x, requires_grad=True)
    F.conv2d(mixed, w).sum().backward()          # the array weight is a constant
    np.testing.assert_array_equal(mixed.grad, xt.grad)


def test_keyword_arrays_and_integer_targets():
    logits, target = RNG.standard_normal((5, 3)).astype(np.float32), np.array([0, 2, 1, 1, 0])
    expected = F.cross_entropy(cs.tensor(logits), cs.tensor(target))
    got = F.cross_entropy(input=logits, target=target)
    assert got.item() == expected.item()


def test_an_optional_tensor_may_be_none_and_the_array_is_left_unchanged():
    x = RNG.standard_normal((2, 4, 5, 5)).astype(np.float32)
    before = x.copy()
    y = F.batch_norm(x, None, None, weight=None, bias=None, training=True)
    np.testing.assert_array_equal(x, before)
    assert y.shape == x.shape and abs(float(y.numpy().mean())) < 1e-5
