"""convscope: convolutional neural networks, transparent and exact.

A NumPy CNN engine with PyTorch semantics, plus tools that explain every number it makes.
Heavier parts (the analyzer, interop, training, tracing) load on first use, so
``import convscope`` stays fast and never imports torch.
"""

import importlib
from typing import Any

# explain, pretrained, trace and train share their module's name: imported eagerly, the
# function wins the package attribute (a lazy lookup would lose it to the submodule once
# anything imports the latter).
from . import functional, nn, optim, zoo
from . import ops as _ops  # noqa: F401  (binds the Tensor operators and methods)
from .errors import ShapeError
from .explain import explain
from .ops import cat, stack, where
from .pretrained import pretrained
from .random import manual_seed
from .tensor import Tensor, enable_grad, float32, float64, int64, is_grad_enabled, no_grad, tensor
from .trace import trace
from .train import train

__version__ = "0.1.0"

# public name -> (module, attribute); attribute None means the module itself
_LAZY = {
    "summary": ("convscope.analyze", "summary"),
    "Summary": ("convscope.analyze", "Summary"),
    "training_memory": ("convscope.analyze", "training_memory"),
    "effective_receptive_field": ("convscope.analyze", "effective_receptive_field"),
    "analyze": ("convscope.analyze", None),
    "load_spec": ("convscope.spec", "load_spec"),
    "from_torch": ("convscope.interop.torch_convert", "from_torch"),
    "to_torch": ("convscope.interop.torch_convert", "to_torch"),
    "load_onnx": ("convscope.interop.onnx_load", "load_onnx"),
    "export_onnx": ("convscope.interop.onnx_export", "export_onnx"),
    "export_xlsx": ("convscope.export", "export_xlsx"),
    "data": ("convscope.data", None),
    "inspect": ("convscope.inspect", None),
    "viz": ("convscope.viz", None),
}

__all__ = [
    "ShapeError", "Tensor", "cat", "enable_grad", "explain", "float32", "float64", "functional", "int64",
    "is_grad_enabled", "manual_seed", "nn", "no_grad", "optim", "pretrained", "stack", "tensor", "trace", "train",
    "where", "zoo",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'convscope' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value
