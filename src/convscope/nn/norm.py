"""Normalisation layers: batch and instance norm (1/2/3-d), layer norm, group norm and local response norm."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import functional as F
from ..errors import ShapeError
from ..tensor import Tensor
from . import init
from ._utils import check_size, empty_parameter, require_positive, resolve_dtype
from .module import Module

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d",
           "InstanceNorm3d", "LayerNorm", "LocalResponseNorm"]


def _affine(module: Module, shape: tuple[int, ...], enabled: bool, bias: bool, dtype: Any) -> None:
    """Register ``weight`` (ones) and ``bias`` (zeros) of ``shape``, or None in their place."""
    module.weight = empty_parameter(shape, dtype) if enabled else None
    module.bias = empty_parameter(shape, dtype) if enabled and bias else None
    if module.weight is not None:
        init.ones_(module.weight)
    if module.bias is not None:
        init.zeros_(module.bias)


class _NormBase(Module):
    """A per-channel norm's parameters (``weight``, ``bias`` with ``affine``) and running
    statistics (``running_mean``, ``running_var``, ``num_batches_tracked`` with
    ``track_running_stats``), as torch's ``_NormBase``."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, *, bias: bool = True, dtype: Any = None) -> None:
        super().__init__()
        require_positive(self, num_features=num_features)
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.register_parameter("weight", None)
        self.register_parameter("bias", None)
        _affine(self, (num_features,), affine, bias, dtype)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self.register_buffer(name, None)
        if track_running_stats:
            self.running_mean = Tensor(np.zeros(num_features, resolve_dtype(dtype)))
            self.running_var = Tensor(np.ones(num_features, resolve_dtype(dtype)))
            self.num_batches_tracked = Tensor(np.array(0, np.int64))

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class _BatchNorm(_NormBase):
    """Normalise each channel over the batch (and spatial dims).

    Training uses the batch statistics and, with ``track_running_stats``, updates
    ``running_mean``/``running_var`` (unbiased variance) by ``momentum``; ``momentum=None``
    gives the cumulative average ``1/num_batches_tracked``. Eval mode uses the running
    statistics. Meta inputs leave every buffer untouched.
    """

    _ranks: tuple[int, ...]

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        if input.ndim not in self._ranks:
            want = " or ".join(f"{r}D" for r in self._ranks)
            raise ShapeError(f"expected {want} input, got {input.ndim}D input of shape {input.shape}",
                             layer=type(self).__name__)
        check_size(self, input.shape[1], self.num_features, "num_features", source=input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and not input.is_meta:
            self.num_batches_tracked.data += 1
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked.data)
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats
        return F.batch_norm(input, self.running_mean if keep else None, self.running_var if keep else None,
                            self.weight, self.bias, use_batch_stats, factor, self.eps)


class BatchNorm1d(_BatchNorm):
    """Batch norm over ``(N, C)`` or ``(N, C, L)``.

    Shape:
        - Input: :math:`(N, C)` or :math:`(N, C, L)`.
        - Output: the same shape.
    """

    _ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over ``(N, C, H, W)``.

    Shape:
        - Input: :math:`(N, C, H, W)`.
        - Output: :math:`(N, C, H, W)`.
    """

    _ranks = (4,)


class BatchNorm3d(_BatchNorm):
    """Batch norm over ``(N, C, D, H, W)``.

    Shape:
        - Input: :math:`(N, C, D, H, W)`.
        - Output: :math:`(N, C, D, H, W)`.
    """

    _ranks = (5,)


class _InstanceNorm(_NormBase):
    """Normalise each channel of each sample over its spatial positions. torch's defaults: no
    affine parameters and no running statistics; with ``track_running_stats``, training updates
    them (the per-sample statistics averaged over the batch, by ``momentum``) and eval mode
    uses them. A channel count other than ``num_features`` is refused where the parameters or
    statistics need it, else warned about (``num_features`` is then unused), as in torch.
    """

    _spatial: int  # spatial dims

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = False,
                 track_running_stats: bool = False, *, bias: bool = True, dtype: Any = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, bias=bias, dtype=dtype)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        batched = self._spatial + 2
        if input.ndim not in (batched - 1, batched):
            raise ShapeError(f"expected {batched - 1}D (unbatched) or {batched}D input, got {input.ndim}D input of "
                             f"shape {input.shape}", layer=type(self).__name__)
        unbatched = input.ndim < batched
        channels = input.shape[0 if unbatched else 1]
        if self.affine or self.track_running_stats:
            check_size(self, channels, self.num_features, "num_features", source=input)
        elif channels != self.num_features:
            warnings.warn(f"{type(self).__name__}: input has {channels} channels, not num_features "
                          f"({self.num_features}); num_features is unused without affine parameters or running "
                          "statistics", stacklevel=2)
        x = input.unsqueeze(0) if unbatched else input
        y = F.instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training or not self.track_running_stats,
                            0.0 if self.momentum is None else self.momentum, self.eps)
        return y.squeeze(0) if unbatched else y


class InstanceNorm1d(_InstanceNorm):
    """Instance norm over ``(N, C, L)``.

    Shape:
        - Input: :math:`(N, C, L)` or :math:`(C, L)`.
        - Output: the same shape.
    """

    _spatial = 1


class InstanceNorm2d(_InstanceNorm):
    """Instance norm over ``(N, C, H, W)``.

    Shape:
        - Input: :math:`(N, C, H, W)` or :math:`(C, H, W)`.
        - Output: the same shape.
    """

    _spatial = 2


class InstanceNorm3d(_InstanceNorm):
    """Instance norm over ``(N, C, D, H, W)``.

    Shape:
        - Input: :math:`(N, C, D, H, W)` or :math:`(C, D, H, W)`.
        - Output: the same shape.
    """

    _spatial = 3


class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` dims of each sample.

    Shape:
        - Input: :math:`(N, *)` ending in ``normalized_shape``.
        - Output: the same shape.
    """

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, *, dtype: Any = None) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else normalized_shape
        self.normalized_shape = tuple(int(s) for s in shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self.register_parameter("weight", None)
        self.register_parameter("bias", None)
        _affine(self, self.normalized_shape, elementwise_affine, bias, dtype)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        n = len(self.normalized_shape)
        if input.shape[input.ndim - n:] != self.normalized_shape:
            got = input.shape[input.ndim - n:]
            raise ShapeError(f"expected input ending in {self.normalized_shape}, got shape {input.shape}. "
                             f"Hint: set normalized_shape={got}.", layer="LayerNorm")
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class GroupNorm(Module):
    """Normalise each group of ``num_channels / num_groups`` channels per sample.

    Shape:
        - Input: :math:`(N, C, *)` with :math:`C` = ``num_channels``.
        - Output: the same shape.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, *,
                 bias: bool = True, dtype: Any = None) -> None:
        super().__init__()
        require_positive(self, num_groups=num_groups, num_channels=num_channels)
        if num_channels % num_groups:
            raise ShapeError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})",
                             layer="GroupNorm")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        self.register_parameter("weight", None)
        self.register_parameter("bias", None)
        _affine(self, (num_channels,), affine, bias, dtype)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        if input.ndim >= 2:
            check_size(self, input.shape[1], self.num_channels, "num_channels", source=input)
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")


class LocalResponseNorm(Module):
    """Divide by ``(k + alpha/size · Σ x²)^beta`` over ``size`` neighbouring channels (AlexNet).

    Shape:
        - Input: :math:`(N, C, *)`.
        - Output: the same shape.
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        require_positive(self, size=size)
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
