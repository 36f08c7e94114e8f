"""The shipped pretrained digits CNN (its accuracy is asserted here) and the inspection
helpers: activations, filters, confusion matrix, top-activating inputs, saliency."""

from __future__ import annotations

import doctest
import importlib
from importlib import resources

import numpy as np
import pytest
import torch

import convscope as cs
from convscope import inspect as cs_inspect
from convscope.data import digits
from convscope.pretrained import digits_cnn, names, pretrained, weights
from torch_ref import assert_close


@pytest.fixture(scope="module")
def net() -> cs.nn.Module:
    return pretrained("digits")


@pytest.fixture(scope="module")
def test_set() -> tuple[np.ndarray, np.ndarray]:
    return digits("test")


def _torch_digits_cnn(state: dict[str, np.ndarray]) -> torch.nn.Module:
    t = torch.nn
    model = t.Sequential(t.Conv2d(1, 32, 3, padding=1), t.ReLU(), t.Conv2d(32, 32, 3, padding=1), t.ReLU(),
                         t.MaxPool2d(2), t.Flatten(), t.Linear(512, 64), t.ReLU(), t.Linear(64, 10)).double()
    model.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in state.items()})
    return model.eval()


# --- the pretrained model -----------------------------------------------------------------------------
SHIPPED_CORRECT = 358
"""Test digits the shipped weights classify correctly, of 359 (99.7 %), as the README reports."""


def test_pretrained_digits_reaches_98_percent_on_the_test_split(net: cs.nn.Module, test_set: tuple) -> None:
    """The target: the shipped weights classify ≥ 98 % of the held-out digits correctly.
    The exact count may move by one if a kernel's summation order changes."""
    X, y = test_set
    correct = int(np.sum(net(cs.tensor(X)).numpy().argmax(1) == y))
    assert correct / len(y) >= 0.98
    assert abs(correct - SHIPPED_CORRECT) <= 1


def test_pretrained_is_small_float32_and_in_eval_mode(net: cs.nn.Module) -> None:
    assert names() == ["digits"] and not net.training
    assert sum(p.numel() for p in net.parameters()) == 43_050
    assert all(v.dtype == np.float32 for v in weights("digits").values())
    assert len(resources.files("convscope.pretrained").joinpath("digits.npz").read_bytes()) < 300_000
    assert set(weights("digits")) == set(digits_cnn().state_dict())
    with pytest.raises(ValueError, match="unknown pretrained model 'mnist'; available: digits"):
        pretrained("mnist")


def test_pretrained_outputs_match_torch_with_the_same_weights(net: cs.nn.Module, test_set: tuple) -> None:
    X = test_set[0][:50]
    want = _torch_digits_cnn(weights("digits"))(torch.from_numpy(X.astype(np.float64))).detach().numpy()
    assert_close(net(cs.tensor(X)).numpy(), want.astype(np.float32), np.float32, "logits")


# --- activations and filters ----------------------------------------------------------------------
def test_activations_per_layer(net: cs.nn.Module, test_set: tuple) -> None:
    X = test_set[0][:3]
    acts = cs_inspect.activations(net, X)
    assert list(acts) == cs_inspect.layers(net) == [str(i) for i in range(9)]
    shapes = [a.shape for a in acts.values()]
    assert shapes == [(3, 32, 8, 8)] * 4 + [(3, 32, 4, 4), (3, 512), (3, 64), (3, 64), (3, 10)]
    np.testing.assert_array_equal(acts["8"], net(cs.tensor(X)).numpy())
    assert acts["1"].min() == 0 and np.array_equal(acts["1"], np.maximum(acts["0"], 0))
    assert all(not m._forward_hooks for m in net.modules()), "hooks are removed"
    only = cs_inspect.activations(net, X, layers=["2"])
    assert list(only) == ["2"]


def test_activations_restore_the_training_mode_and_count_repeated_layers() -> None:
    relu = cs.nn.ReLU()
    model = cs.nn.Sequential(cs.nn.Linear(3, 3), relu, relu)
    acts = cs_inspect.activations(model, np.ones((2, 3), np.float32))
    assert list(acts) == ["0", "1", "1#2"]
    assert model.training
    with pytest.raises(ValueError, match="no layer 'nope' in Sequential; layers: 0, 1"):
        cs_inspect.activations(model, np.ones((2, 3)), layers=["nope"])


def test_filters(net: cs.nn.Module) -> None:
    first = cs_inspect.filters(net, "0")
    assert first.shape == (32, 1, 3, 3)
    np.testing.assert_array_equal(first, weights("digits")["0.weight"])
    first[:] = 0
    assert np.any(net[0].weight.numpy()), "a copy, not the live weights"
    with pytest.raises(ValueError, match="layer '1' has no weight; layers with weights: 0, 2, 6, 8"):
        cs_inspect.filters(net, "1")


# --- confusion matrix and top activating ---------------------------------------------------------
def test_confusion_matrix(net: cs.nn.Module, test_set: tuple) -> None:
    X, y = test_set
    m = cs_inspect.confusion_matrix(net, X, y)
    assert m.shape == (10, 10) and m.dtype == np.int64 and m.sum() == len(y)
    np.testing.assert_array_equal(m.sum(axis=1), np.bincount(y, minlength=10))
    predicted = net(cs.tensor(X)).numpy().argmax(1)
    np.testing.assert_array_equal(m.sum(axis=0), np.bincount(predicted, minlength=10))
    assert np.trace(m) == np.sum(predicted == y)
    with pytest.raises(ValueError, match=r"labels must lie in 0 \.\. 9, got 0 \.\. 10"):
        cs_inspect.confusion_matrix(net, X[:2], np.array([0, 10]))
    with pytest.raises(ValueError, match=r"^confusion_matrix: y must hold one label per example of X \(3\), got "
                                         r"shape \(2,\)$"):
        cs_inspect.confusion_matrix(net, X[:3], y[:2])


def test_top_activating_matches_brute_force(net: cs.nn.Module, test_set: tuple) -> None:
    X = test_set[0][:100]
    idx, score = cs_inspect.top_activating(net, "3", channel=5, X=X, k=6, batch_size=32)
    brute = cs_inspect.activations(net, X, layers=["3"])["3"][:, 5].reshape(100, -1).max(axis=1)
    np.testing.assert_array_equal(idx, np.argsort(-brute, kind="stable")[:6])
    np.testing.assert_array_equal(score, brute[idx])
    assert np.all(np.diff(score) <= 0)
    with pytest.raises(ValueError, match="layer '3' has 32 channels, got channel 32"):
        cs_inspect.top_activating(net, "3", 32, X)
    for k in (0, -1, 2.5):  # -1 gave every example but the last
        with pytest.raises(ValueError, match=rf"^top_activating: k must be a whole number ≥ 1, got {k}$"):
            cs_inspect.top_activating(net, "3", 5, X, k=k)


# --- saliency -----------------------------------------------------------------------------------------
def test_saliency_is_the_input_gradient_of_the_class_score(test_set: tuple) -> None:
    X, y = test_set[0][:4].astype(np.float64), test_set[1][:4]
    model = digits_cnn().double()
    model.load_state_dict(weights("digits"))
    model.train()
    grad = cs_inspect.saliency(model, X, y)
    assert grad.shape == X.shape and model.training
    assert all(p.grad is None for p in model.parameters()) and all(p.requires_grad for p in model.parameters())
    x = torch.from_numpy(X).requires_grad_()
    _torch_digits_cnn(weights("digits"))(x)[torch.arange(4), torch.from_numpy(y)].sum().backward()
    assert_close(grad, x.grad.numpy(), np.float64, "saliency")
    single = cs_inspect.saliency(model, X[:1], int(y[0]))
    np.testing.assert_allclose(single, grad[:1], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match=r"target must lie in 0 \.\. 9, got 10"):
        cs_inspect.saliency(model, X[:1], 10)
    with pytest.raises(ValueError, match=r"^saliency: target must be one class or one per example \(4\), got shape "
                                         r"\(3,\)$"):
        cs_inspect.saliency(model, X, [1, 2, 3])


@pytest.mark.parametrize("module", ["convscope.inspect", "convscope.pretrained"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
