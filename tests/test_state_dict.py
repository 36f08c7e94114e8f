"""State dicts between torch and convscope: the same model definition in both libraries has
the same keys, shapes, dtypes and order; weights move either way and give the same outputs;
strict loading refuses with every problem listed."""

from __future__ import annotations

import copy
import pickle
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
import torch

import convscope as cs
from convscope import nn
from torch_ref import assert_close, compare


def _net(lib: Any) -> Any:
    """A small CNN: conv, batch norm, pooling, a nested Sequential and a classifier."""

    class Net(lib.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = lib.Sequential(
                lib.Conv2d(3, 8, 3, padding=1), lib.BatchNorm2d(8), lib.ReLU(), lib.MaxPool2d(2),
                lib.Sequential(OrderedDict(conv=lib.Conv2d(8, 16, 3, groups=2, bias=False), bn=lib.BatchNorm2d(16),
                                           act=lib.ReLU())),
            )
            self.pool = lib.AdaptiveAvgPool2d(1)
            self.classifier = lib.Sequential(lib.Flatten(), lib.Linear(16, 32), lib.ReLU(), lib.Dropout(0.2),
                                             lib.Linear(32, 10))

        def forward(self, x: Any) -> Any:
            return self.classifier(self.pool(self.features(x)))

    return Net()


def _trained_torch_net(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """torch's net after a few training-mode passes, so running statistics are not trivial."""
    torch.manual_seed(0)
    net = _net(torch.nn).to(dtype)
    with torch.no_grad():
        for i in range(3):
            net(torch.randn(4, 3, 10, 10, dtype=dtype) * (i + 1) + i)
    return net


def test_keys_shapes_dtypes_and_order_equal_torch() -> None:
    ours, theirs = _net(nn).state_dict(), _net(torch.nn).state_dict()
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert isinstance(ours[key], np.ndarray)
        assert ours[key].shape == tuple(value.shape), key
        assert ours[key].dtype == value.numpy().dtype, key
    counter = ours["features.1.num_batches_tracked"]
    assert counter.shape == () and counter.dtype == np.int64


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_torch_weights_give_torch_outputs(mode: str) -> None:
    theirs = _trained_torch_net(torch.float64)
    ours = _net(nn).double()
    result = ours.load_state_dict(theirs.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    getattr(theirs, mode)()
    getattr(ours, mode)()
    if mode == "train":  # dropout draws differ between the libraries
        theirs.classifier[3].eval()
        ours.classifier[3].eval()
    x = np.random.default_rng(1).standard_normal((2, 3, 12, 12))
    compare(ours, theirs, [x])
    their_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, their_params[name].grad.numpy(), np.float64, name)
    for key, value in theirs.state_dict().items():
        assert_close(ours.state_dict()[key], value.numpy(), np.float64, key)


def test_round_trip_convscope_to_torch() -> None:
    cs.manual_seed(3)
    ours = _net(nn)
    for i in range(2):  # move the running statistics
        ours(cs.tensor(np.random.default_rng(i).standard_normal((4, 3, 10, 10)).astype(np.float32) + i))
    theirs = _net(torch.nn)
    theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ours.state_dict().items()})
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), ours.state_dict()[key], err_msg=key)
    ours.eval()
    theirs.eval()
    x = np.random.default_rng(5).standard_normal((3, 3, 10, 10)).astype(np.float32)
    compare(ours, theirs, [x], dtype=np.float32, grad=False)
    back = _net(nn)
    back.load_state_dict(theirs.state_dict())
    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[key], value, err_msg=key)


def test_loading_casts_to_the_model_dtype_and_accepts_tensors_that_need_grad() -> None:
    theirs = _trained_torch_net(torch.float32)
    ours = _net(nn).double()
    ours.load_state_dict(theirs.state_dict(keep_vars=True))  # Parameters that require grad
    weight = ours.features[0].weight
    assert weight.dtype == np.float64 and weight.numpy().dtype == np.float64
    np.testing.assert_array_equal(weight.numpy(), theirs.features[0].weight.detach().double().numpy())
    assert ours.features[1].num_batches_tracked.item() == 3
    assert ours.features[1].num_batches_tracked.dtype == np.int64


def test_load_keeps_parameter_objects() -> None:
    ours = _net(nn)
    params = list(ours.parameters())
    ours.load_state_dict(_trained_torch_net().state_dict())
    assert [id(p) for p in ours.parameters()] == [id(p) for p in params]


def _state(lib: Any) -> OrderedDict:
    return _net(lib).state_dict()


def test_missing_key_refused_in_strict_mode() -> None:
    for lib, error in ((torch.nn, RuntimeError), (nn, cs.ShapeError)):
        state = _state(lib)
        del state["classifier.4.bias"]
        with pytest.raises(error, match=r"[Mm]issing key"):
            _net(lib).load_state_dict(state)
    state = _state(nn)
    del state["classifier.4.bias"], state["features.4.bn.running_var"]
    with pytest.raises(cs.ShapeError, match=r"^load_state_dict \(Net\): state_dict does not fit the model: "
                                            r"missing keys \['features\.4\.bn\.running_var', 'classifier\.4\.bias'\]$"):
        _net(nn).load_state_dict(state)


def test_unexpected_key_and_shape_mismatch_listed_together() -> None:
    state = _state(nn)
    state["head.weight"] = np.zeros(3, np.float32)
    state["features.0.weight"] = np.zeros((8, 3, 5, 5), np.float32)
    with pytest.raises(cs.ShapeError, match=r"unexpected keys \['head\.weight'\]; shape mismatch for "
                                            r"'features\.0\.weight': expected \(8, 3, 3, 3\), got \(8, 3, 5, 5\)$"):
        _net(nn).load_state_dict(state)
    t_state = _state(torch.nn)
    t_state["head.weight"] = torch.zeros(3)
    t_state["features.0.weight"] = torch.zeros(8, 3, 5, 5)
    with pytest.raises(RuntimeError, match="(?s)Unexpected key.*size mismatch for features.0.weight"):
        _net(torch.nn).load_state_dict(t_state)


def test_non_strict_reports_like_torch_and_shape_mismatch_still_refused() -> None:
    results = []
    for lib in (nn, torch.nn):
        state = _state(lib)
        del state["features.1.running_mean"]
        state["extra.bias"] = state["classifier.4.bias"]
        results.append(_net(lib).load_state_dict(state, strict=False))
    assert results[0].missing_keys == results[1].missing_keys == ["features.1.running_mean"]
    assert results[0].unexpected_keys == results[1].unexpected_keys == ["extra.bias"]
    state = _state(nn)
    state["classifier.1.weight"] = np.zeros((16, 32), np.float32)
    with pytest.raises(cs.ShapeError, match=r"shape mismatch for 'classifier\.1\.weight': expected \(32, 16\), "
                                            r"got \(16, 32\)"):
        _net(nn).load_state_dict(state, strict=False)
    with pytest.raises(RuntimeError, match="size mismatch"):
        _net(torch.nn).load_state_dict({"classifier.1.weight": torch.zeros(16, 32)}, strict=False)


def test_failed_load_changes_nothing() -> None:
    model = _net(nn)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    state = {k: np.ones_like(v) for k, v in before.items()}
    state["classifier.4.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(cs.ShapeError):
        model.load_state_dict(state)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_shared_modules_and_non_persistent_buffers_like_torch() -> None:
    keys = []
    for lib in (nn, torch.nn):
        shared = lib.Linear(2, 2)
        model = lib.Sequential(shared, lib.ReLU(), shared, lib.BatchNorm1d(2))
        model[3].register_buffer("cache", _zeros(lib), persistent=False)
        keys.append(list(model.state_dict()))
        model.load_state_dict(model.state_dict())
    assert keys[0] == keys[1]
    assert "3.cache" not in keys[0] and "2.weight" in keys[0]


def _zeros(lib: Any) -> Any:
    return torch.zeros(2) if lib is torch.nn else cs.tensor(np.zeros(2, np.float32))


def test_state_dict_values_are_live_arrays_like_torch() -> None:
    """Like torch's detached tensors, the values share memory with the parameters."""
    model = nn.Linear(2, 2)
    state = model.state_dict()
    model.weight.data[...] = 7.0
    assert (state["weight"] == 7.0).all()
    kept = model.state_dict(keep_vars=True)
    assert kept["weight"] is model.weight


def test_deepcopy_and_pickle_give_independent_equal_models() -> None:
    model = _net(nn).features  # library classes only: picklable
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert list(clone.state_dict()) == list(model.state_dict()) and repr(clone) == repr(model)
        assert clone[0].weight is not model[0].weight
        for key, value in model.state_dict().items():
            np.testing.assert_array_equal(clone.state_dict()[key], value, err_msg=key)
        clone[0].weight.data[...] = 0
        assert model[0].weight.numpy().any()
