"""Loss layers: cross entropy, negative log-likelihood and mean squared error."""

from __future__ import annotations

from .. import functional as F
from ..errors import ShapeError
from ..tensor import Tensor
from .module import Module

__all__ = ["CrossEntropyLoss", "MSELoss", "NLLLoss"]

_REDUCTIONS = ("none", "mean", "sum")


class _Loss(Module):
    """Base of the losses: ``reduction`` is "none", "mean" or "sum"."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ShapeError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}", layer=type(self).__name__)
        self.reduction = reduction


class _WeightedLoss(_Loss):
    """A loss with optional per-class ``weight``, registered as a buffer (so, as in torch,
    it is part of the state dict when given)."""

    def __init__(self, weight: Tensor | None = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.register_buffer("weight", weight)


class CrossEntropyLoss(_WeightedLoss):
    """Cross entropy between logits and class indices (or class probabilities), with
    optional class weights, ``ignore_index`` and ``label_smoothing``.

    Shape:
        - Input: :math:`(N, C)`, :math:`(C)` or :math:`(N, C, d_1, ..., d_K)` logits.
        - Target: :math:`(N)`, :math:`()` or :math:`(N, d_1, ..., d_K)` int64 class indices in
          :math:`[0, C)`, or probabilities of the input's shape.
        - Output: a scalar, or the target's shape with ``reduction="none"``.
    """

    def __init__(self, weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        super().__init__(weight, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of class indices given log-probabilities.

    Shape:
        - Input: :math:`(N, C)`, :math:`(C)` or :math:`(N, C, d_1, ..., d_K)` log-probabilities.
        - Target: :math:`(N)`, :math:`()` or :math:`(N, d_1, ..., d_K)` int64 class indices.
        - Output: a scalar, or the target's shape with ``reduction="none"``.
    """

    def __init__(self, weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(weight, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class MSELoss(_Loss):
    """Mean (or summed) squared difference.

    Shape:
        - Input: :math:`(*)`.
        - Target: :math:`(*)`, the same shape.
        - Output: a scalar, or :math:`(*)` with ``reduction="none"``.
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return F.mse_loss(input, target, reduction=self.reduction)
