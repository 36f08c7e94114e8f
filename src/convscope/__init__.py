"""convscope: convolutional neural networks, transparent and exact.

A NumPy CNN engine with PyTorch semantics, plus tools that explain every number it makes.
"""

from . import functional, nn, optim, zoo
from . import ops as _ops  # noqa: F401  (binds the Tensor operators and methods)
from .errors import ShapeError
from .ops import cat, stack, where
from .random import manual_seed
from .tensor import Tensor, float32, float64, int64, is_grad_enabled, no_grad, tensor

__version__ = "0.1.0"

__all__ = [
    "ShapeError", "Tensor", "cat", "float32", "float64", "functional", "int64", "is_grad_enabled",
    "manual_seed", "nn", "no_grad", "optim", "stack", "tensor", "where", "zoo",
]
