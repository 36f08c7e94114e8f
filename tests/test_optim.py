"""Optimizers and schedulers against torch.optim: same model, initial weights and data,
several steps, same parameters (float64: exact semantics; float32: ordinary tolerance)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import convscope as cs
from convscope import optim
from convscope.nn import Parameter
from convscope.optim import lr_scheduler
from torch_ref import assert_close

SHAPES = {"w1": (5, 7), "b1": (7,), "w2": (7, 3), "scale": (), "unused": (2,)}


def _initial(dtype: type, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}


def _batch(step: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(100 + step)
    return rng.standard_normal((8, 5)).astype(dtype), rng.standard_normal((8, 3)).astype(dtype)


def _loss(p: dict, x: object, y: object, relu: object) -> object:
    """A two-layer net with a learnt 0-d output scale and a squared error; ``unused`` never
    gets a gradient."""
    h = relu(x @ p["w1"] + p["b1"])
    d = (h @ p["w2"]) * p["scale"] - y
    return (d * d).mean()


def _cs_model(dtype: type) -> dict[str, Parameter]:
    return {k: Parameter(cs.tensor(v)) for k, v in _initial(dtype).items()}


def _torch_model(dtype: type) -> dict[str, torch.nn.Parameter]:
    return {k: torch.nn.Parameter(torch.from_numpy(v)) for k, v in _initial(dtype).items()}


def _backward_cs(params: dict, step: int, dtype: type) -> None:
    x, y = _batch(step, dtype)
    _loss(params, cs.tensor(x), cs.tensor(y), lambda t: t.clamp(min=0.0)).backward()


def _backward_torch(params: dict, step: int, dtype: type) -> None:
    x, y = _batch(step, dtype)
    _loss(params, torch.from_numpy(x), torch.from_numpy(y), torch.relu).backward()


def _groups(params: dict, split: bool) -> list:
    if not split:
        return list(params.values())
    return [{"params": [params["w1"], params["b1"]]},
            {"params": [params["w2"], params["scale"], params["unused"]], "lr": 0.03}]


def _train(name: str, kwargs: dict, dtype: type, steps: int = 5, split: bool = False) -> None:
    cs_params, t_params = _cs_model(dtype), _torch_model(dtype)
    cs_opt = getattr(optim, name)(_groups(cs_params, split), **kwargs)
    t_opt = getattr(torch.optim, name)(_groups(t_params, split), **kwargs)
    for step in range(steps):
        cs_opt.zero_grad()
        t_opt.zero_grad()
        _backward_cs(cs_params, step, dtype)
        _backward_torch(t_params, step, dtype)
        cs_opt.step()
        t_opt.step()
    for key in SHAPES:
        assert cs_params[key].dtype == np.dtype(dtype)
        assert_close(cs_params[key].numpy(), t_params[key].detach().numpy(), dtype, f"{name} {kwargs} {key}")
    assert cs_params["unused"].grad is None
    np.testing.assert_array_equal(cs_params["unused"].numpy(), _initial(dtype)["unused"])


SGD_CONFIGS = [
    {"lr": 0.1},
    {"lr": 0.05, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.8, "dampening": 0.3},
    {"lr": 0.05, "momentum": 0.9, "nesterov": True},
    {"lr": 0.1, "weight_decay": 0.01},
    {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.05, "nesterov": True},
    {"lr": 0.05, "momentum": 0.5, "dampening": 0.5, "weight_decay": 0.1, "maximize": True},
]

ADAM_CONFIGS = [
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("Adam", {"lr": 0.02, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.02, "weight_decay": 0.1, "amsgrad": True}),
    ("Adam", {"lr": 0.05, "betas": (0.3, 0.5), "eps": 1e-3}),
    ("Adam", {"lr": 0.01, "betas": (0.0, 0.99)}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("Adam", {"lr": 0.01, "maximize": True}),
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.01, "amsgrad": True}),
    ("AdamW", {"lr": 0.02, "weight_decay": 0.3}),
    ("AdamW", {"lr": 0.02, "weight_decay": 0.3, "amsgrad": True}),
]


@pytest.mark.parametrize("kwargs", SGD_CONFIGS, ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sgd_matches_torch(kwargs: dict, dtype: type) -> None:
    _train("SGD", kwargs, dtype)


@pytest.mark.parametrize("name,kwargs", ADAM_CONFIGS, ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adam_matches_torch(name: str, kwargs: dict, dtype: type) -> None:
    _train(name, kwargs, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adam_first_moment_is_torchs_lerp_for_small_beta1(dtype: type) -> None:
    """torch's ``lerp_`` computes from the end for weights ≥ 0.5: with ``beta1 = 0`` the first
    moment is the gradient itself, not the old moment plus a difference that cancels when the
    gradient shrinks (betas (0, 0.99) are common for GANs)."""
    w0 = np.ones(4, dtype)
    param, t_param = Parameter(cs.tensor(w0)), torch.nn.Parameter(torch.from_numpy(w0.copy()))
    for betas in [(0.0, 0.99), (0.5, 0.9)]:
        opt, t_opt = optim.Adam([param], lr=0.1, betas=betas), torch.optim.Adam([t_param], lr=0.1, betas=betas)
        for scale in (1.0, 1e-4, 1e-2, 3.0, 1e-5):
            grad = (np.array([1.0, -2.0, 3.0, 0.5]) * scale).astype(dtype)
            param.grad, t_param.grad = grad.copy(), torch.from_numpy(grad.copy())
            opt.step()
            t_opt.step()
            np.testing.assert_array_equal(opt.state[param]["exp_avg"], t_opt.state[t_param]["exp_avg"].numpy())
        assert_close(param.numpy(), t_param.detach().numpy(), dtype, str(betas))


@pytest.mark.parametrize("name,kwargs", [("SGD", {"lr": 0.1, "momentum": 0.9}), ("Adam", {"lr": 0.01}),
                                         ("AdamW", {"lr": 0.01, "amsgrad": True})])
def test_param_groups_with_own_lr(name: str, kwargs: dict) -> None:
    _train(name, kwargs, np.float64, split=True)


def test_adam_state_layout_matches_torch() -> None:
    cs_params, t_params = _cs_model(np.float64), _torch_model(np.float64)
    cs_opt, t_opt = optim.Adam(_groups(cs_params, True), amsgrad=True), torch.optim.Adam(_groups(t_params, True),
                                                                                         amsgrad=True)
    _backward_cs(cs_params, 0, np.float64)
    _backward_torch(t_params, 0, np.float64)
    cs_opt.step()
    t_opt.step()
    cs_sd, t_sd = cs_opt.state_dict(), t_opt.state_dict()
    assert cs_sd["state"].keys() == t_sd["state"].keys()  # the unused parameter has no state in either
    for key, t_state in t_sd["state"].items():
        assert cs_sd["state"][key].keys() == t_state.keys()
        assert cs_sd["state"][key]["step"] == float(t_state["step"])
    assert [g["params"] for g in cs_sd["param_groups"]] == [g["params"] for g in t_sd["param_groups"]]
    for cs_group, t_group in zip(cs_sd["param_groups"], t_sd["param_groups"], strict=True):
        for key, value in cs_group.items():
            assert t_group[key] == value, key


@pytest.mark.parametrize("name,kwargs", [("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
                                         ("Adam", {"lr": 0.01, "amsgrad": True}), ("AdamW", {"lr": 0.02})])
def test_state_dict_round_trip_resumes_exactly(name: str, kwargs: dict) -> None:
    """Save after 3 steps, spoil the old optimizer's live state, load into a new optimizer,
    continue: the same parameters as an uninterrupted run (so the snapshot is a copy)."""
    def run(interrupt: bool) -> dict[str, np.ndarray]:
        params = _cs_model(np.float64)
        opt = getattr(optim, name)(list(params.values()), **kwargs)
        for step in range(6):
            if interrupt and step == 3:
                saved = opt.state_dict()
                for state in opt.state.values():
                    for value in state.values():
                        if isinstance(value, np.ndarray):
                            value[...] = np.nan
                opt = getattr(optim, name)(list(params.values()), **kwargs)
                opt.load_state_dict(saved)
            opt.zero_grad()
            _backward_cs(params, step, np.float64)
            opt.step()
        return {k: p.numpy() for k, p in params.items()}

    straight, resumed = run(False), run(True)
    for key in SHAPES:
        np.testing.assert_array_equal(resumed[key], straight[key])


@pytest.mark.parametrize("name,kwargs", [("SGD", {"lr": 0.05, "momentum": 0.9}), ("Adam", {"lr": 0.01}),
                                         ("AdamW", {"lr": 0.01, "amsgrad": True})])
def test_loads_torch_optimizer_state(name: str, kwargs: dict) -> None:
    """torch trains 3 steps; its state_dict (torch tensors) and weights move to convscope;
    both continue 3 steps and agree."""
    t_params = _torch_model(np.float64)
    t_opt = getattr(torch.optim, name)(list(t_params.values()), **kwargs)
    for step in range(3):
        t_opt.zero_grad()
        _backward_torch(t_params, step, np.float64)
        t_opt.step()
    cs_params = {k: Parameter(cs.tensor(p.detach().numpy().copy())) for k, p in t_params.items()}
    cs_opt = getattr(optim, name)(list(cs_params.values()), **kwargs)
    cs_opt.load_state_dict(t_opt.state_dict())
    for step in range(3, 6):
        for opt, params, backward in ((t_opt, t_params, _backward_torch), (cs_opt, cs_params, _backward_cs)):
            opt.zero_grad()
            backward(params, step, np.float64)
            opt.step()
    for key in SHAPES:
        assert_close(cs_params[key].numpy(), t_params[key].detach().numpy(), np.float64, key)


def test_zero_grad_and_skipped_parameters() -> None:
    params = _cs_model(np.float64)
    opt = optim.SGD(list(params.values()), lr=0.1)
    _backward_cs(params, 0, np.float64)
    assert params["w1"].grad is not None and params["unused"].grad is None
    opt.zero_grad(set_to_none=False)
    assert not params["w1"].grad.any()
    opt.zero_grad()
    assert params["w1"].grad is None


@pytest.mark.parametrize("name,kwargs", [
    ("SGD", {"lr": -0.1}), ("SGD", {"momentum": -0.5}), ("SGD", {"weight_decay": -1.0}),
    ("SGD", {"nesterov": True}), ("SGD", {"momentum": 0.9, "dampening": 0.1, "nesterov": True}),
    ("Adam", {"lr": -1.0}), ("Adam", {"betas": (1.0, 0.9)}), ("Adam", {"betas": (0.9, -0.1)}),
    ("Adam", {"eps": -1.0}), ("AdamW", {"weight_decay": -0.1}),
])
def test_invalid_hyperparameters_refused_like_torch(name: str, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        getattr(torch.optim, name)([torch.nn.Parameter(torch.zeros(2))], **kwargs)
    with pytest.raises(ValueError):
        getattr(optim, name)([Parameter(cs.tensor(np.zeros(2)))], **kwargs)


def test_invalid_params_refused() -> None:
    p = Parameter(cs.tensor(np.zeros(2)))
    with pytest.raises(TypeError):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2.0], lr=0.1)


# --- schedulers ---------------------------------------------------------------------------
def _lr_sequences(make: object, epochs: int, **kwargs: object) -> tuple[list, list]:
    cs_opt = optim.SGD([Parameter(cs.tensor(np.zeros(2)))], lr=0.1)
    cs_opt.add_param_group({"params": [Parameter(cs.tensor(np.zeros(2)))], "lr": 0.5})
    t_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    t_opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.5})
    seqs = []
    for module, opt in ((lr_scheduler, cs_opt), (torch.optim.lr_scheduler, t_opt)):
        sched = getattr(module, make)(opt, **kwargs)
        seq = [sched.get_last_lr()]
        for _ in range(epochs):
            opt.step()
            sched.step()
            seq.append(sched.get_last_lr())
        seqs.append(seq)
    return seqs[0], seqs[1]


@pytest.mark.parametrize("make,kwargs", [
    ("StepLR", {"step_size": 3}), ("StepLR", {"step_size": 2, "gamma": 0.5}),
    ("StepLR", {"step_size": 1, "gamma": 0.9}),
    ("CosineAnnealingLR", {"T_max": 4}), ("CosineAnnealingLR", {"T_max": 5, "eta_min": 0.01}),
    ("CosineAnnealingLR", {"T_max": 1, "eta_min": 0.02}),
])
def test_scheduler_sequences_equal_torch(make: str, kwargs: dict) -> None:
    ours, theirs = _lr_sequences(make, 13, **kwargs)  # 13 epochs: past T_max, through the restart branch
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=1e-15, atol=0)


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch: step order, and step(epoch) is deprecated
@pytest.mark.parametrize("make,kwargs", [("StepLR", {"step_size": 3, "gamma": 0.5}),
                                         ("CosineAnnealingLR", {"T_max": 6, "eta_min": 0.01})])
def test_scheduler_resume_and_closed_form(make: str, kwargs: dict) -> None:
    """Resuming with ``last_epoch`` (closed form on the first step) and ``step(epoch)``."""
    results = []
    for module, opt_cls, param in ((lr_scheduler, optim.SGD, Parameter(cs.tensor(np.zeros(2)))),
                                   (torch.optim.lr_scheduler, torch.optim.SGD, torch.nn.Parameter(torch.zeros(2)))):
        opt = opt_cls([{"params": [param], "lr": 0.3, "initial_lr": 0.4}], lr=0.3)
        sched = getattr(module, make)(opt, last_epoch=4, **kwargs)
        seq = [sched.get_last_lr()[0]]
        for _ in range(4):
            sched.step()
            seq.append(sched.get_last_lr()[0])
        sched.step(2)
        seq.append(sched.get_last_lr()[0])
        results.append(seq)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-15, atol=0)


def test_scheduler_state_dict_round_trip() -> None:
    opt = optim.SGD([Parameter(cs.tensor(np.zeros(2)))], lr=0.1)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=7)
    for _ in range(3):
        sched.step()
    saved = sched.state_dict()
    assert "optimizer" not in saved and saved["last_epoch"] == 3
    opt2 = optim.SGD([Parameter(cs.tensor(np.zeros(2)))], lr=0.1)
    sched2 = lr_scheduler.CosineAnnealingLR(opt2, T_max=7)
    sched2.load_state_dict(saved)
    opt2.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
    sched.step()
    sched2.step()
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_training_with_scheduler_matches_torch() -> None:
    cs_params, t_params = _cs_model(np.float64), _torch_model(np.float64)
    cs_opt = optim.SGD(list(cs_params.values()), lr=0.1, momentum=0.9)
    t_opt = torch.optim.SGD(list(t_params.values()), lr=0.1, momentum=0.9)
    cs_sched = lr_scheduler.StepLR(cs_opt, step_size=2, gamma=0.3)
    t_sched = torch.optim.lr_scheduler.StepLR(t_opt, step_size=2, gamma=0.3)
    for step in range(6):
        for opt, sched, params, backward in ((cs_opt, cs_sched, cs_params, _backward_cs),
                                             (t_opt, t_sched, t_params, _backward_torch)):
            opt.zero_grad()
            backward(params, step, np.float64)
            opt.step()
            sched.step()
    for key in SHAPES:
        assert_close(cs_params[key].numpy(), t_params[key].detach().numpy(), np.float64, key)


def test_step_with_closure_and_named_parameters_like_torch() -> None:
    results = []
    for lib, params, backward in ((optim, _cs_model(np.float64), _backward_cs),
                                  (torch.optim, _torch_model(np.float64), _backward_torch)):
        opt = lib.SGD(list(params.items()), lr=0.1, momentum=0.5)

        def closure(opt: Any = opt, params: dict = params, backward: Callable = backward) -> str:
            opt.zero_grad()
            backward(params, 0, np.float64)
            return "loss"

        assert opt.step(closure) == "loss"
        results.append((opt.state_dict()["param_groups"][0]["param_names"],
                        {k: np.asarray(p.detach().numpy() if hasattr(p, "detach") else p.numpy()).copy()
                         for k, p in params.items()}))
    assert results[0][0] == results[1][0] == list(SHAPES)
    for key in SHAPES:
        assert_close(results[0][1][key], results[1][1][key], np.float64, key)


def test_optimizer_repr_lists_groups() -> None:
    text = repr(optim.Adam([Parameter(cs.tensor(np.zeros(2)))], lr=0.5))
    assert text.startswith("Adam (\nParameter Group 0\n")
    assert "    lr: 0.5\n" in text and "    betas: (0.9, 0.999)" in text
