"""Names shared by both directions of the PyTorch bridge: torch functions by qualified name,
dtypes, and readable names of torch objects for error messages. Callers pass the torch module
in, so importing this file never imports torch."""

from __future__ import annotations

import builtins
import importlib
import sys
from typing import Any

import numpy as np

from .torch_graph import FUNCTIONS, ConversionError

_DTYPES = ("float32", "float64", "int64", "int32", "bool")


def resolve(name: str) -> Any | None:
    """The object a qualified name denotes (``"torch.nn.functional.relu"``, ``"operator.add"``,
    ``"getattr"``), or None when this process has no such object. Only packages already
    imported are looked in: a model cannot call a function of a package it has not imported,
    and importing one (torchvision) can be slow or fail with any error."""
    module_name, _, attr = name.rpartition(".")
    if not module_name:
        return getattr(builtins, name, None)
    if module_name.partition(".")[0] not in sys.modules:
        return None
    try:
        module = importlib.import_module(module_name)
    except Exception:  # a broken installation raises what it raises (RuntimeError, OSError, ...)
        return None
    return getattr(module, attr, None)


def function_names() -> dict[Any, str]:
    """Each torch callable convscope can replay → its :data:`~.torch_graph.FUNCTIONS` key.
    (``torch.nn.functional.conv2d`` is ``torch.conv2d``: the first name wins.)"""
    names: dict[Any, str] = {}
    for name in FUNCTIONS:
        obj = resolve(name)
        if obj is not None:
            names.setdefault(obj, name)
    return names


def numpy_dtype(torch: Any, dtype: Any, what: str) -> np.dtype:
    """The NumPy dtype of a torch dtype; ``what`` names the tensor for the error."""
    for name in _DTYPES:
        if dtype == getattr(torch, name):
            return np.dtype(name)
    raise ConversionError(f"{what} has dtype {dtype}; convscope supports {', '.join(_DTYPES)}. "
                          "Hint: call .float() or .double() on the torch module first.")


def torch_dtype(torch: Any, dtype: Any) -> Any:
    """The torch dtype of a NumPy dtype."""
    return getattr(torch, np.dtype(dtype).name)


def type_name(obj: Any) -> str:
    """``torch.nn.MultiheadAttention`` rather than ``torch.nn.modules.activation.MultiheadAttention``
    when the class is exported higher up."""
    cls = obj if isinstance(obj, type) else type(obj)
    parts = cls.__module__.split(".")
    for depth in range(1, len(parts) + 1):
        module = importlib.import_module(".".join(parts[:depth]))
        if getattr(module, cls.__name__, None) is cls:
            return f"{module.__name__}.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def callable_name(torch: Any, fn: Any) -> str:
    """A readable qualified name for a traced function target (``torch.cumsum``)."""
    try:
        return torch.fx.node._get_qualified_name(fn)
    except (AttributeError, RuntimeError, TypeError):  # a private helper: fall back to the plain name
        return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
