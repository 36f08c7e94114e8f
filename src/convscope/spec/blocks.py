"""The two branching containers a spec builds: :class:`Residual` (``body(x) + shortcut(x)``)
and :class:`Concat` (branches joined along the channels). Both are ordinary modules whose
children carry the spec's names, so module paths read ``block2.branch1.conv1``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from .. import nn
from ..errors import ShapeError
from ..ops import cat
from ..tensor import Tensor

__all__ = ["Concat", "Residual"]


class Residual(nn.Module):
    """The body's layers in order, plus a shortcut: ``body(x) + shortcut(x)``, where the
    shortcut is the identity when ``shortcut`` is None (ResNet's identity shortcut) or a module
    such as a strided 1×1 conv (its projection shortcut).

    The body's layers are direct children (``block1.conv1``); the shortcut is the child
    ``shortcut``. Unlike a plain ``+``, the two shapes must be equal — no broadcasting.

    Shape:
        - Input: :math:`(N, C, *)`.
        - Output: the body's output shape, which must equal the shortcut's.
    """

    shortcut: nn.Module | None

    def __init__(self, body: OrderedDict[str, nn.Module], shortcut: nn.Module | None = None) -> None:
        super().__init__()
        if "shortcut" in body:
            raise ValueError("a residual body layer cannot be named 'shortcut' (the shortcut's own name)")
        for name, module in body.items():
            self.add_module(name, module)
        self.body_names = tuple(body)
        self.shortcut = shortcut  # a child module, or a plain None attribute (as torch keeps ``downsample``)

    def body(self) -> list[tuple[str, nn.Module]]:
        return [(name, self._modules[name]) for name in self.body_names]

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for _, module in self.body():
            out = module(out)
        return self.combine(out, x if self.shortcut is None else self.shortcut(x))

    @staticmethod
    def combine(body: Tensor, shortcut: Tensor) -> Tensor:
        """``body + shortcut`` after checking that the shapes are equal."""
        if body.shape != shortcut.shape:
            raise ShapeError(f"the body gives shape {body.shape} but the shortcut gives {shortcut.shape}; a residual "
                             "sum needs equal shapes. Hint: give the block a projection shortcut (e.g. a 1×1 conv "
                             "with the body's stride and output channels)", layer="Residual")
        return body + shortcut

    def extra_repr(self) -> str:
        return "shortcut=identity" if self.shortcut is None else ""


class Concat(nn.Module):
    """Every branch sees the same input; their outputs are concatenated along the channels
    (dim 1), as in an inception module. An empty :class:`~convscope.nn.Sequential` branch
    passes the input itself through (DenseNet's concatenation).

    Shape:
        - Input: :math:`(N, C, *)`.
        - Output: :math:`(N, \\sum_b C_b, *)`; all branches must agree on every other dim.
    """

    def __init__(self, branches: OrderedDict[str, nn.Module]) -> None:
        super().__init__()
        if not branches:
            raise ValueError("Concat needs at least one branch")
        for name, module in branches.items():
            self.add_module(name, module)
        self.branch_names = tuple(branches)

    def forward(self, x: Tensor) -> Tensor:
        return self.combine([self._modules[name](x) for name in self.branch_names], self.branch_names)

    @staticmethod
    def combine(outputs: Sequence[Tensor], names: Sequence[str]) -> Tensor:
        """Concatenate along dim 1 after checking that the other dims agree."""
        first = outputs[0].shape
        for out in outputs:
            if len(out.shape) != len(first) or len(first) < 2 or out.shape[:1] + out.shape[2:] != first[:1] + first[2:]:
                listing = ", ".join(f"{n} {o.shape}" for n, o in zip(names, outputs))
                raise ShapeError(f"branch outputs must agree in every dim but the channels (dim 1) to be "
                                 f"concatenated; got {listing}", layer="Concat")
        return cat(list(outputs), 1)

    def extra_repr(self) -> str:
        return "dim=1"
