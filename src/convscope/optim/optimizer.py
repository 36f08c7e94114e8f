"""Optimizer base: parameter groups, ``zero_grad``, ``step`` and torch-format state dicts."""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..nn.module import to_numpy
from ..tensor import Tensor

__all__ = ["Optimizer"]


def _copy_state(value: Any, dtype: np.dtype | None = None) -> Any:
    """A deep copy of one state value; arrays (or torch tensors) become ndarrays, cast to
    ``dtype`` when given."""
    if isinstance(value, dict):
        return {k: _copy_state(v, dtype) for k, v in value.items()}
    if isinstance(value, (int, float, bool, str)) or value is None:
        return value
    return np.array(to_numpy(value), dtype=dtype)


class Optimizer:
    """Holds ``param_groups`` (dicts with ``"params"`` and the hyper-parameters) and per-
    parameter ``state``; subclasses implement :meth:`_update` for one group.

    ``params`` is an iterable of parameters, of ``(name, parameter)`` pairs, or of dicts
    that each define a group (missing hyper-parameters come from the defaults).
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            f"but got {type(params).__name__}")
        self.defaults = defaults
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; its hyper-parameters default to the optimizer's."""
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering "
                            "of tensors in sets will change between runs. Please use a list instead.")
        params = list(params)
        named = [p for p in params if isinstance(p, tuple)]
        if named:
            if len(named) != len(params):
                raise ValueError("all optimizer params should be with/without names. Some param names are missing")
            group["param_names"] = [name for name, _ in named]
            params = [p for _, p in named]
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        group["params"] = params
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad = None if set_to_none else np.zeros_like(p.grad)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns ``closure()`` if given
        (it is called first, to recompute the loss and gradients)."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            self._update(group)
        return loss

    def _update(self, group: dict[str, Any]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``, torch's
        layout with parameters replaced by their position. Unlike torch, the arrays are
        copies (a snapshot), not references to the live state."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: _copy_state(s) for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (ours, or torch's with tensors as values). State
        arrays are copied and cast to their parameter's dtype; ``step`` stays a number."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(self.param_groups, saved_groups, strict=True)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                             "optimizer's group")
        params = {i: p for s, g in zip(saved_groups, self.param_groups, strict=True)
                  for i, p in zip(s["params"], g["params"], strict=True)}
        self.state = defaultdict(dict)
        for key, saved in state_dict["state"].items():
            param = params[key]
            self.state[param] = {name: float(to_numpy(value)) if name == "step" else _copy_state(value, param.dtype)
                                 for name, value in saved.items()}
        groups = []
        for group, saved in zip(self.param_groups, saved_groups, strict=True):
            restored = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            restored["params"] = group["params"]
            groups.append(restored)
        self.param_groups = groups

    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines) + "\n)"
