"""Pure kernels with ``torch.nn.functional`` names, signatures and defaults.

Each family lives in its own module (conv, pad, pool, activation, norm, loss, linear,
interpolate, shuffle); every op has a backward and accepts meta tensors. Wherever an op takes a
tensor it also takes a NumPy array, used as it is (no copy) as a constant without gradient.
"""

import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from ..ops import flatten
from ..tensor import Tensor

_FAMILIES = ("activation", "conv", "interpolate", "linear", "loss", "norm", "pad", "pool", "shuffle")


def _tensor_argument(op: str, name: str, value: Any, optional: bool) -> Tensor | None:
    if isinstance(value, np.ndarray):
        return Tensor.wrap(value)
    if value is None and optional:
        return None
    wanted = "a Tensor, a NumPy array or None" if optional else "a Tensor or a NumPy array"
    raise TypeError(f"{op}: argument '{name}' must be {wanted}, got {type(value).__name__}")


def _taking_arrays(fn: Callable) -> Callable:
    """``fn``, taking NumPy arrays where its signature says ``Tensor``."""
    if not inspect.isfunction(fn):
        return fn
    slots = [(i if p.kind is p.POSITIONAL_OR_KEYWORD else None, p.name, "None" in str(p.annotation))
             for i, p in enumerate(inspect.signature(fn).parameters.values()) if "Tensor" in str(p.annotation)]
    if not slots:
        return fn

    @functools.wraps(fn)
    def op(*args: Any, **kwargs: Any) -> Any:
        for i, name, optional in slots:
            if i is not None and i < len(args):
                if not isinstance(args[i], Tensor):
                    args = (*args[:i], _tensor_argument(fn.__name__, name, args[i], optional), *args[i + 1:])
            elif name in kwargs and not isinstance(kwargs[name], Tensor):
                kwargs[name] = _tensor_argument(fn.__name__, name, kwargs[name], optional)
        return fn(*args, **kwargs)
    return op


flatten = _taking_arrays(flatten)
__all__ = ["flatten"]
for _family in _FAMILIES:
    # Read each family module by its full name: a function may share the module's name
    # (``linear``, ``pad``, ``interpolate``) and would shadow it as a package attribute.
    _module = importlib.import_module(f"{__name__}.{_family}")
    globals().update({name: _taking_arrays(getattr(_module, name)) for name in _module.__all__})
    __all__ += _module.__all__
del _family, _module
