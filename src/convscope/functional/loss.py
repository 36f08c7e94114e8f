"""Losses with ``torch.nn.functional`` names and semantics, forward beside backward.

Class-index losses (``cross_entropy``, ``nll_loss``) take an input ``(N, C, d1, ...)``,
``(N, C)`` or unbatched ``(C,)`` and an integer target of the input's shape without the
class dim. ``cross_entropy`` with a float target of the input's own shape reads it as class
probabilities. ``reduction="mean"`` of a class-index loss divides by the summed weights of
the targets that are not ``ignore_index`` (so it is ``nan`` when every target is ignored),
as torch does; the class weights are constants (torch refuses gradients for them too).

Unlike PyTorch, the deprecated ``size_average``/``reduce`` arguments are gone, so every
argument after ``weight`` is keyword-only (a positional call would otherwise mean
something else here than in torch).
"""
# ruff: noqa: A002 - parameters keep torch's name ``input`` so keyword calls port unchanged

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from ..errors import ShapeError
from ..ops import array_sign, unbroadcast
from ..tensor import Tensor, make_result
from .activation import _log_sigmoid, _sigmoid, log_softmax
from .dtypes import check_dtypes

__all__ = ["binary_cross_entropy_with_logits", "cross_entropy", "l1_loss", "mse_loss", "nll_loss", "one_hot"]

_REDUCTIONS = ("none", "mean", "sum")


# --- shared rules ---------------------------------------------------------------------------
def _check_reduction(op: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def _check_class_values(op: str, values: np.ndarray, num_classes: int, what: str) -> None:
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
        raise ShapeError(f"{what} {bad.flat[0]} is out of range for {num_classes} classes "
                         f"(valid: 0 to {num_classes - 1})", layer=op)


def _class_axis(op: str, input_shape: tuple) -> int:
    """The class dim: 0 for an unbatched ``(C,)`` input, else 1."""
    if not input_shape:
        raise ShapeError("expected an input with a class dim, (C,), (N, C) or (N, C, d1, ...), got a 0-d input",
                         layer=op)
    return 0 if len(input_shape) == 1 else 1


def _index_target_rule(op: str, input_shape: tuple, target: Tensor, hint: str = "") -> tuple:
    """Class-index targets: integer, shaped like the input without its class dim (which is returned)."""
    axis = _class_axis(op, input_shape)
    if target.dtype.kind not in "iu":
        raise ShapeError(f"class-index target must be an integer tensor, got {target.dtype} target of shape "
                         f"{target.shape} for input {input_shape}{hint}", layer=op)
    expected = input_shape[:axis] + input_shape[axis + 1:]
    if target.shape != expected:
        raise ShapeError(f"expected target of shape {expected} (the input {input_shape} without its class dim "
                         f"{axis}), got {target.shape}", layer=op)
    return expected


def _class_weight(op: str, weight: Tensor | None, num_classes: int) -> None:
    if weight is not None and weight.shape != (num_classes,):
        raise ShapeError(f"weight must have one entry per class, shape ({num_classes},), got {weight.shape}",
                         layer=op)


def _check_smoothing(op: str, label_smoothing: float) -> None:
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")


def _reduce(
    op: str, loss: np.ndarray, reduction: str, total: np.ndarray | float, parents: tuple,
    grads: Callable[[np.ndarray], tuple],
) -> Tensor:
    """Reduce per-element ``loss`` (``mean`` divides by ``total``) and record the op.

    ``grads(coef)`` maps the upstream gradient per loss element to one gradient per parent.
    """
    if reduction == "none":
        return make_result(op, loss, parents, grads, attrs={"reduction": reduction})
    dtype = _reduced_dtype(loss.dtype, reduction)
    with np.errstate(divide="ignore", invalid="ignore"):  # an empty or fully ignored mean is nan, as in torch
        out = loss.sum(dtype=dtype) if reduction == "sum" else loss.sum() / total
        scale = 1 if reduction == "sum" else 1 / np.asarray(total, loss.dtype)

    def backward(g: np.ndarray) -> tuple:
        return grads(np.broadcast_to(g * scale, loss.shape))

    return make_result(op, np.asarray(out, dtype), parents, backward, attrs={"reduction": reduction})


def _reduced_dtype(dtype: np.dtype, reduction: str) -> np.dtype:
    """A loss's dtype after ``reduction``: an integer sum (l1_loss's) is int64, as torch's sum."""
    return dtype if reduction == "none" or dtype.kind == "f" else np.dtype(np.int64)


def _meta_loss(op: str, parents: tuple, reduction: str, elementwise_shape: tuple, dtype: np.dtype) -> Tensor:
    shape = elementwise_shape if reduction == "none" else ()
    return make_result(op, None, parents, None, shape=shape, dtype=_reduced_dtype(dtype, reduction),
                       attrs={"reduction": reduction})


# --- class-index and probability losses -------------------------------------------------------
def _class_index_loss(
    op: str, scores: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int, reduction: str,
    label_smoothing: float,
) -> Tensor:
    """``−w[t]·scores[t]`` per element, blended with ``−Σ_c w_c·scores_c`` by ``label_smoothing``
    (torch's formula), ignored targets giving 0; the mean divides by ``Σ w[t]`` over kept targets."""
    out_shape = _index_target_rule(op, scores.shape, target)
    axis = _class_axis(op, scores.shape)
    num_classes = scores.shape[axis]
    _class_weight(op, weight, num_classes)
    check_dtypes(op, scores, weight=weight)
    parents = (scores, target) if weight is None else (scores, target, weight)
    if any(p.is_meta for p in parents):
        return _meta_loss(op, parents, reduction, out_shape, scores.dtype)
    s, t = scores.data, target.data
    kept = t != ignore_index
    _check_class_values(op, t[kept], num_classes, "target")
    safe = np.expand_dims(np.where(kept, t, 0), axis)
    w = np.ones(num_classes, s.dtype) if weight is None else weight.data
    target_weight = np.where(kept, w[safe.squeeze(axis)], 0)
    picked = np.take_along_axis(s, safe, axis).squeeze(axis)
    loss = np.where(kept, -(target_weight * picked), 0)
    w_classes = w.reshape((num_classes,) + (1,) * (s.ndim - axis - 1))
    if label_smoothing > 0:  # torch skips this term entirely at 0, so -inf scores stay harmless
        smooth = np.where(kept, -(s * w_classes).sum(axis), 0)
        loss = (1 - label_smoothing) * loss + (label_smoothing / num_classes) * smooth

    def grads(coef: np.ndarray) -> tuple:
        coef = np.expand_dims(np.where(kept, coef, 0), axis)  # ignored targets get no gradient, even 0·inf
        d = np.zeros_like(s)
        np.put_along_axis(d, safe, -(1 - label_smoothing) * np.expand_dims(target_weight, axis) * coef, axis)
        if label_smoothing > 0:
            d -= (label_smoothing / num_classes) * w_classes * coef
        return (d,) + (None,) * (len(parents) - 1)

    return _reduce(op, np.asarray(loss, s.dtype), reduction, target_weight.sum(), parents, grads)


def _probability_loss(
    op: str, log_probs: Tensor, target: Tensor, weight: Tensor | None, reduction: str, label_smoothing: float,
) -> Tensor:
    """``−Σ_c w_c·q_c·log_probs_c`` with ``q = (1 − ε)·target + ε/C``; the mean divides by the
    number of loss elements (weights do not enter the divisor here, as in torch)."""
    axis = _class_axis(op, log_probs.shape)
    num_classes = log_probs.shape[axis]
    if target.dtype.kind != "f":
        raise ShapeError(f"target of the input's shape {target.shape} is read as class probabilities and must be "
                         f"floating point, got {target.dtype}", layer=op)
    _class_weight(op, weight, num_classes)
    check_dtypes(op, log_probs, target=target, weight=weight)
    parents = (log_probs, target) if weight is None else (log_probs, target, weight)
    out_shape = log_probs.shape[:axis] + log_probs.shape[axis + 1:]
    if any(p.is_meta for p in parents):
        return _meta_loss(op, parents, reduction, out_shape, log_probs.dtype)
    lp = log_probs.data
    w = 1 if weight is None else weight.data.reshape((num_classes,) + (1,) * (lp.ndim - axis - 1))
    q = target.data * (1 - label_smoothing) + label_smoothing / num_classes if label_smoothing > 0 else target.data
    loss = -(lp * q * w).sum(axis)

    def grads(coef: np.ndarray) -> tuple:
        c = np.expand_dims(coef, axis)
        return (-(q * w) * c, -(1 - label_smoothing) * (lp * w) * c) + (None,) * (len(parents) - 2)

    return _reduce(op, np.asarray(loss, lp.dtype), reduction, int(np.prod(out_shape)), parents, grads)


def cross_entropy(
    input: Tensor, target: Tensor, weight: Tensor | None = None, *, ignore_index: int = -100,
    reduction: str = "mean", label_smoothing: float = 0.0,
) -> Tensor:
    """Cross entropy of logits: ``log_softmax`` over the class dim, then the loss of the target.

    A target of the input's shape is read as class probabilities (float, differentiable);
    any other target holds class indices. With ``label_smoothing`` ε the index target
    becomes ``(1 − ε)·one_hot + ε/C``, weights and the weighted mean as in torch.

    Shape:
        - input: ``(N, C)``, ``(N, C, d1, ..., dK)`` or unbatched ``(C,)``
        - target: class indices ``(N,)``, ``(N, d1, ..., dK)`` or ``()``; or probabilities of the input's shape
        - output: ``()``, or the input's shape without ``C`` for ``reduction="none"``

    Unlike PyTorch, an unbatched ``(C,)`` input needs a 0-d index target (torch also lets a
    ``(1,)`` target through on some paths).
    """
    op = "cross_entropy"
    _check_reduction(op, reduction)
    _check_smoothing(op, label_smoothing)
    axis = _class_axis(op, input.shape)
    if target.shape == input.shape:
        if ignore_index >= 0:
            raise ShapeError(f"ignore_index {ignore_index} is not supported for class-probability targets",
                             layer=op)
        return _probability_loss(op, log_softmax(input, axis), target, weight, reduction, label_smoothing)
    _index_target_rule(op, input.shape, target,  # refuse before doing the softmax
                       hint=". Hint: float targets are class probabilities and must have the input's shape")
    return _class_index_loss(op, log_softmax(input, axis), target, weight, ignore_index, reduction,
                             label_smoothing)


def nll_loss(
    input: Tensor, target: Tensor, weight: Tensor | None = None, *, ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Negative log likelihood: ``−weight[t]·input[t]`` per target, for log-probability inputs.

    Shape:
        - input: ``(N, C)``, ``(N, C, d1, ..., dK)`` or unbatched ``(C,)``
        - target: ``(N,)``, ``(N, d1, ..., dK)`` or ``()``, integer class indices
        - output: ``()``, or the target's shape for ``reduction="none"``
    """
    _check_reduction("nll_loss", reduction)
    return _class_index_loss("nll_loss", input, target, weight, ignore_index, reduction, 0.0)


# --- element-wise losses ----------------------------------------------------------------------
def _pointwise_loss(
    op: str, input: Tensor, target: Tensor, reduction: str,
    fwd: Callable[[np.ndarray], np.ndarray], dfwd: Callable[[np.ndarray], np.ndarray],
) -> Tensor:
    """A loss of ``input − target`` per element (broadcast, with torch's warning), reduced.

    ``fwd(diff)`` is the loss and ``dfwd(diff)`` its derivative in ``diff``.
    """
    _check_reduction(op, reduction)
    try:
        shape = np.broadcast_shapes(input.shape, target.shape)
    except ValueError:
        raise ShapeError(f"target shape {target.shape} cannot be broadcast to input shape {input.shape}",
                         layer=op) from None
    # torch's l1_loss keeps integers (bool refused: no subtraction) but cannot take their mean
    check_dtypes(op, input, "keep" if op == "l1_loss" and reduction != "mean" else "refuse", target=target)
    if target.shape != input.shape:
        warnings.warn(f"{op}: target shape {target.shape} differs from input shape {input.shape}; broadcasting "
                      f"to {shape} will likely give wrong results", stacklevel=3)
    if input.is_meta or target.is_meta:
        return _meta_loss(op, (input, target), reduction, shape, input.dtype)
    diff = np.asarray(input.data - target.data)

    def grads(coef: np.ndarray) -> tuple:
        d = dfwd(diff) * coef
        return unbroadcast(d, input.shape), unbroadcast(-d, target.shape)

    return _reduce(op, np.asarray(fwd(diff), input.dtype), reduction, diff.size, (input, target), grads)


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Squared error ``(input − target)²``, reduced.

    Shape:
        - input, target: any shapes that broadcast (torch warns when they differ; so do we)
        - output: ``()``, or the broadcast shape for ``reduction="none"``
    """
    return _pointwise_loss("mse_loss", input, target, reduction, lambda d: d * d, lambda d: 2 * d)


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Absolute error ``|input − target|``, reduced; the gradient at equality is 0.

    Shape:
        - input, target: any shapes that broadcast (torch warns when they differ; so do we)
        - output: ``()``, or the broadcast shape for ``reduction="none"``
    """
    return _pointwise_loss("l1_loss", input, target, reduction, np.abs, array_sign)


def _broadcasts_to(shape: tuple, target_shape: tuple) -> bool:
    try:
        return np.broadcast_shapes(shape, target_shape) == target_shape
    except ValueError:
        return False


def binary_cross_entropy_with_logits(
    input: Tensor, target: Tensor, weight: Tensor | None = None, *, reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """Binary cross entropy of logits, ``−w·[p·t·log σ(x) + (1 − t)·log(1 − σ(x))]`` with
    ``p = pos_weight``, in torch's stable form ``(1 − t)·x − (1 + (p − 1)·t)·log σ(x)``.

    ``weight`` and ``pos_weight`` broadcast to the input and are constants (torch refuses
    gradients for them); the target is differentiable.

    Shape:
        - input, target: the same shape ``(*)``
        - output: ``()``, or ``(*)`` for ``reduction="none"``
    """
    op = "binary_cross_entropy_with_logits"
    _check_reduction(op, reduction)
    if target.shape != input.shape:
        raise ShapeError(f"target shape {target.shape} must equal input shape {input.shape}", layer=op)
    for name, t in (("weight", weight), ("pos_weight", pos_weight)):
        if t is not None and not _broadcasts_to(t.shape, input.shape):
            raise ShapeError(f"{name} of shape {t.shape} does not broadcast to input shape {input.shape}", layer=op)
    check_dtypes(op, input, target=target, weight=weight, pos_weight=pos_weight)
    parents = tuple(p for p in (input, target, weight, pos_weight) if p is not None)
    if any(p.is_meta for p in parents):
        return _meta_loss(op, parents, reduction, input.shape, input.dtype)
    x, t = input.data, target.data
    w = 1 if weight is None else weight.data
    pw = None if pos_weight is None else pos_weight.data
    log_sig = _log_sigmoid(x)
    log_weight = 1 if pw is None else (pw - 1) * t + 1
    loss = ((1 - t) * x - log_weight * log_sig) * w

    def grads(coef: np.ndarray) -> tuple:
        c = coef * w
        if pw is None:
            gx, gt = _sigmoid(x) - t, -x
        else:
            gx = (pw * t + 1 - t) * _sigmoid(x) - pw * t
            gt = _log_sigmoid(-x) - pw * log_sig
        return (gx * c, gt * c) + (None,) * (len(parents) - 2)

    return _reduce(op, np.asarray(loss, x.dtype), reduction, loss.size, parents, grads)


# --- targets ------------------------------------------------------------------------------------
def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """Class indices ``(*)`` to an int64 one-hot tensor ``(*, num_classes)`` (no gradient).

    ``num_classes=-1`` takes the largest index + 1 (which needs data: a meta tensor must give
    ``num_classes``).
    """
    op = "one_hot"
    if tensor.dtype != np.int64:
        raise ShapeError(f"expected an int64 tensor of class indices (as torch), got {tensor.dtype}. "
                         "Hint: convert it with .to(np.int64)", layer=op)
    if tensor.is_meta:
        if num_classes < 0:
            raise ShapeError("num_classes must be given for a meta tensor (it cannot be read from data)", layer=op)
        return make_result(op, None, (tensor,), None, shape=tensor.shape + (num_classes,), dtype=np.int64)
    t = tensor.data
    if num_classes < 0:
        if t.size == 0:
            raise ShapeError("cannot infer num_classes from an empty tensor; pass num_classes", layer=op)
        num_classes = int(t.max()) + 1
    _check_class_values(op, t, num_classes, "class value")
    out = (t[..., None] == np.arange(num_classes)).astype(np.int64)
    return make_result(op, out, (tensor,), None)
