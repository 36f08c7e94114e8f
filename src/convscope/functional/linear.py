"""Fully connected layers and dropout, with ``torch.nn.functional`` names and semantics.

Dropout draws its mask from ``convscope.random.default_generator()`` (reseeded by
``convscope.manual_seed``) or from a ``generator=`` the caller passes; the streams differ
from torch's, so only the rule is shared: each element (or channel) is kept with
probability ``1 − p`` and scaled by ``1 / (1 − p)``, and the gradient uses the same mask.
Unlike PyTorch, ``inplace=True`` is accepted and ignored: the input keeps its values.
"""
# ruff: noqa: A002 - parameters keep torch's name ``input`` so keyword calls port unchanged

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import ShapeError
from ..ops import kernel_dtype, unbroadcast
from ..random import default_generator
from ..rules import (
    Constraint,
    Cost,
    Saved,
    SavedRule,
    Sizes,
    const,
    cost_rule,
    equal,
    field_rule,
    global_field,
    last_dim_map_field,
    nbytes,
    numel,
    per_element,
    same_field,
    saved_rule,
    size_rule,
)
from ..tensor import Tensor, make_result
from .parallel import matmul

__all__ = ["bilinear", "dropout", "dropout1d", "dropout2d", "dropout3d", "linear", "stochastic_depth"]


def _check_same_dtype(op: str, *tensors: Tensor | None) -> None:
    """torch refuses mixed float dtypes in a matrix product; so do we, instead of upcasting.
    Integers it multiplies, bool it refuses."""
    dtypes = {t.dtype for t in tensors if t is not None}
    if len(dtypes) > 1:
        raise ShapeError(f"all tensors must have the same dtype, got {' and '.join(sorted(map(str, dtypes)))}",
                         layer=op)
    kernel_dtype(op, dtypes.pop(), "keep")


def _check_bias(op: str, bias: Tensor | None, out_features: int) -> None:
    if bias is not None and (bias.ndim > 1 or bias.numel() not in (1, out_features)):
        raise ShapeError(f"bias must have shape ({out_features},) (one per output feature), got {bias.shape}",
                         layer=op)


def _linear_shape(input_shape: tuple, weight_shape: tuple) -> tuple:
    """``(*, in_features) @ (out_features, in_features)ᵀ -> (*, out_features)``."""
    if len(weight_shape) != 2:
        raise ShapeError(f"weight must be 2-d (out_features, in_features), got shape {weight_shape}", layer="linear")
    out_features, in_features = weight_shape
    if not input_shape:
        raise ShapeError(f"expected an input (*, {in_features}), got a 0-d input", layer="linear")
    if input_shape[-1] != in_features:
        got = input_shape[-1]
        raise ShapeError(
            f"expected input with {in_features} features in its last dim, got {got} (input shape {input_shape}). "
            f"Hint: the weight is {weight_shape} (out_features, in_features); the layer before outputs {got} "
            f"features, so set in_features={got}", layer="linear")
    return input_shape[:-1] + (out_features,)


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``y = x·Wᵀ + b``.

    Shape:
        - input: ``(*, in_features)``, any number of leading dims (none for a single vector)
        - weight: ``(out_features, in_features)``; bias: ``(out_features,)``
        - output: ``(*, out_features)``

    Unlike PyTorch, a 1-d weight is refused (torch treats it as a single output feature
    and drops that dim).
    """
    shape = _linear_shape(input.shape, weight.shape)
    _check_bias("linear", bias, weight.shape[0])
    _check_same_dtype("linear", input, weight, bias)
    parents = (input, weight) if bias is None else (input, weight, bias)
    if any(p.is_meta for p in parents):
        return make_result("linear", None, parents, None, shape=shape, dtype=input.dtype)
    x, w = input.data, weight.data
    # parallel.matmul, not ``@``: a multi-threaded BLAS call on these small products stalls for
    # a scheduler slice (20-90 ms measured) whenever the machine is busy (see functional.parallel)
    out = matmul(x, w.T)
    if bias is not None:
        out = out + bias.data

    def backward(g: np.ndarray) -> tuple:
        rows = math.prod(x.shape[:-1])  # spelled out: -1 cannot be inferred when a feature count is 0
        g2 = g.reshape(rows, w.shape[0])
        grads = (matmul(g, w), matmul(g2.T, x.reshape(rows, w.shape[1])))
        return grads if bias is None else grads + (unbroadcast(g2.sum(0), bias.shape),)

    return make_result("linear", out, parents, backward)


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``y_k = x1ᵀ·W_k·x2 + b_k`` for each output feature ``k``.

    Shape:
        - input1: ``(*, in1_features)``; input2: ``(*, in2_features)`` with the same leading dims
        - weight: ``(out_features, in1_features, in2_features)``; bias: ``(out_features,)``
        - output: ``(*, out_features)``
    """
    op = "bilinear"
    if weight.ndim != 3:
        raise ShapeError(f"weight must be 3-d (out_features, in1_features, in2_features), got shape {weight.shape}",
                         layer=op)
    if input1.ndim == 0 or input1.shape[:-1] != input2.shape[:-1]:
        raise ShapeError(f"input1 {input1.shape} and input2 {input2.shape} must have the same leading dims "
                         f"and at least one dim", layer=op)
    for i, t in ((1, input1), (2, input2)):
        if t.shape[-1] != weight.shape[i]:
            raise ShapeError(f"input{i} has {t.shape[-1]} features in its last dim, but the weight {weight.shape} "
                             f"expects {weight.shape[i]}", layer=op)
    _check_bias(op, bias, weight.shape[0])
    _check_same_dtype(op, input1, input2, weight, bias)
    parents = tuple(p for p in (input1, input2, weight, bias) if p is not None)
    shape = input1.shape[:-1] + (weight.shape[0],)
    if any(p.is_meta for p in parents):
        return make_result(op, None, parents, None, shape=shape, dtype=input1.dtype)
    x1, x2, w = input1.data, input2.data, weight.data
    out = np.einsum("...i,kij,...j->...k", x1, w, x2, optimize=True)
    if bias is not None:
        out = out + bias.data

    def backward(g: np.ndarray) -> tuple:
        grads = (
            np.einsum("...k,kij,...j->...i", g, w, x2, optimize=True),
            np.einsum("...k,kij,...i->...j", g, w, x1, optimize=True),
            np.einsum("...k,...i,...j->kij", g, x1, x2, optimize=True),
        )
        if bias is None:
            return grads
        # summed over the leading dims (a reshape(-1, 0) fails with no output features)
        return grads + (unbroadcast(g.sum(axis=tuple(range(g.ndim - 1))), bias.shape),)

    return make_result(op, np.asarray(out), parents, backward)


# --- dropout ----------------------------------------------------------------------------------
def _masked_dropout(op: str, input: Tensor, p: float, training: bool, generator: np.random.Generator | None,
                    mask_shape: tuple, **attrs: Any) -> Tensor:
    """Keep each mask cell with probability ``1 − p`` (broadcast over ``input``), scale by ``1/(1 − p)``.

    Like torch, ``p == 0`` or ``training=False`` returns the input itself, and ``p == 1``
    gives zeros (with zero gradient) instead of dividing by zero.
    """
    if not training or p == 0:
        return input
    attrs = {"p": p, **attrs}
    if input.is_meta:
        return make_result(op, None, (input,), None, shape=input.shape, dtype=input.dtype, attrs=attrs)
    rng = default_generator() if generator is None else generator
    noise = (rng.random(mask_shape) >= p).astype(input.dtype)
    if p < 1:
        noise /= 1 - p
    return make_result(op, input.data * noise, (input,), lambda g: (g * noise,), attrs=attrs)


def _check_p(op: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p}")


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
            generator: np.random.Generator | None = None) -> Tensor:
    """Zero each element with probability ``p`` and scale the kept ones by ``1 / (1 − p)``.

    ``generator`` (a convscope extension) overrides the default generator.

    Shape:
        - input: any shape; output: the same shape
    """
    _check_p("dropout", p)
    return _masked_dropout("dropout", input, p, training, generator, input.shape)


def _feature_dropout(op: str, input: Tensor, p: float, training: bool, generator: np.random.Generator | None,
                     spatial: int) -> Tensor:
    """Zero whole channels: one draw per ``(N, C)`` (per ``C`` for an unbatched input)."""
    _check_p(op, p)
    if input.ndim not in (spatial + 1, spatial + 2):
        raise ShapeError(f"expected a {spatial + 1}-d (C, *spatial) or {spatial + 2}-d (N, C, *spatial) input "
                         f"with {spatial} spatial dims, got shape {input.shape}", layer=op)
    channel_dims = input.ndim - spatial
    mask_shape = input.shape[:channel_dims] + (1,) * spatial
    return _masked_dropout(op, input, p, training, generator, mask_shape)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
              generator: np.random.Generator | None = None) -> Tensor:
    """Channel-wise dropout over 1-d feature maps.

    Shape:
        - input: ``(N, C, L)`` or ``(C, L)``; output: the same shape
    """
    return _feature_dropout("dropout1d", input, p, training, generator, 1)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
              generator: np.random.Generator | None = None) -> Tensor:
    """Channel-wise dropout over 2-d feature maps.

    Like torch (its legacy rule, with a warning), a 3-d input is read as ``(N, C, L)``, one
    draw per ``(N, C)``, not as an unbatched ``(C, H, W)``. Unlike PyTorch, inputs of other
    ranks are refused (torch deprecates them with a warning).

    Shape:
        - input: ``(N, C, H, W)`` or ``(N, C, L)``; output: the same shape
    """
    if input.ndim == 3:
        warnings.warn("dropout2d: a 3-d input is read as (N, C, L) (torch's legacy rule), not as (C, H, W); "
                      "use dropout1d to say so, or add a batch dim", stacklevel=2)
        return _feature_dropout("dropout2d", input, p, training, generator, 1)
    return _feature_dropout("dropout2d", input, p, training, generator, 2)


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
              generator: np.random.Generator | None = None) -> Tensor:
    """Channel-wise dropout over 3-d feature maps. Unlike PyTorch, inputs that are not 4-d or
    5-d are refused (torch deprecates them with a warning).

    Shape:
        - input: ``(N, C, D, H, W)`` or ``(C, D, H, W)``; output: the same shape
    """
    return _feature_dropout("dropout3d", input, p, training, generator, 3)


def stochastic_depth(input: Tensor, p: float, mode: str, training: bool = True, *,
                     generator: np.random.Generator | None = None) -> Tensor:
    """Drop whole residual branches (Huang et al., 2016), as ``torchvision.ops.stochastic_depth``:
    with ``mode="row"`` each sample's values are zeroed together with probability ``p``, with
    ``mode="batch"`` the whole batch at once; the kept ones are scaled by ``1 / (1 − p)``.
    Identity when not training or ``p == 0``.

    Shape:
        - input: ``(N, *)``; output: the same shape
    """
    op = "stochastic_depth"
    _check_p(op, p)
    if mode not in ("batch", "row"):
        raise ValueError(f"{op}: mode has to be either 'batch' or 'row', but got {mode!r}")
    if input.ndim == 0:
        raise ShapeError("expected an input with a batch dim, got a 0-d tensor", layer=op)
    mask_shape = (input.shape[0] if mode == "row" else 1,) + (1,) * (input.ndim - 1)
    return _masked_dropout(op, input, p, training, generator, mask_shape, mode=mode)


# --- analysis rules (see convscope.rules) ------------------------------------------------
@cost_rule("linear")
def _linear_cost(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Cost:
    """in_features × out_features per input row; bias adds are not MACs."""
    rows, (out_f, in_f) = numel(output.shape[:-1]), inputs[1].shape
    macs = rows * in_f * out_f
    text = f"{in_f}·{out_f} = {macs:,}" if rows == 1 else f"{rows} rows × {in_f}·{out_f} = {macs:,}"
    return Cost(macs, 2 * macs, text)


field_rule("bilinear")(global_field)


field_rule("linear", channels=True)(last_dim_map_field)
_DROPOUTS = ("dropout", "dropout1d", "dropout2d", "dropout3d", "stochastic_depth")
cost_rule(*_DROPOUTS)(per_element(1, "mask multiply"))
field_rule(*_DROPOUTS, channels=True)(same_field)


@saved_rule("linear", "bilinear")
def _linear_saved(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
    """The closure keeps the input(s) and the weight; with a bias, ``x·Wᵀ`` is a scratch
    array before the bias is added."""
    with_bias = len(inputs) >= 3 and len(inputs[-1].shape) == 1
    return Saved(tuple(range(len(inputs))), workspace=nbytes(output) if with_bias else 0)


def _dropout_saved(mask_cells: Callable[[tuple[int, ...], dict], int]) -> SavedRule:
    def rule(inputs: Sequence[Tensor], output: Tensor, attrs: dict) -> Saved:
        """The closure keeps the scaled mask (in the input's dtype); drawing it needs a
        float64 uniform array and a bool array of the mask's shape (beyond mask and output)."""
        x = inputs[0]
        cells = mask_cells(x.shape, attrs)
        mask = cells * x.dtype.itemsize
        return Saved(extra=(("dropout mask", mask),), workspace=max(cells * 9 - mask - nbytes(output), 0))

    return rule


saved_rule("dropout")(_dropout_saved(lambda shape, attrs: numel(shape)))
for _n in (1, 2, 3):
    saved_rule(f"dropout{_n}d")(_dropout_saved(lambda shape, attrs, spatial=_n: numel(shape[:len(shape) - spatial])))
del _n
saved_rule("stochastic_depth")(_dropout_saved(lambda shape, attrs: shape[0] if attrs["mode"] == "row" else 1))


@size_rule("linear")
def _linear_sizes(sizes: Sequence[Sizes], inputs: Sequence[Tensor], output: Tensor,
                  attrs: dict) -> tuple[Sizes, list[Constraint]]:
    """``(*, in_features) → (*, out_features)``: valid while the last dim is ``in_features``."""
    x, (out_f, in_f) = sizes[0], inputs[1].shape
    return (*x[:-1], const(out_f)), equal(x[-1], const(in_f), "input features {a} = in_features {b}")
