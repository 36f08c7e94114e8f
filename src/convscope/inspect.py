"""Looking inside a trained CNN: per-layer activations, learned filters, the confusion
matrix, the inputs that excite a filter most, and saliency maps.

Every function returns plain ndarrays (the figures and the web page render them) and runs the
model in eval mode without changing its mode, gradients or hooks afterwards.

>>> from convscope import inspect
>>> from convscope.data import digits
>>> from convscope.pretrained import pretrained
>>> net = pretrained("digits")
>>> X, y = digits("test")
>>> acts = inspect.activations(net, X[:2])
>>> [(name, a.shape) for name, a in acts.items()][:3]
[('0', (2, 32, 8, 8)), ('1', (2, 32, 8, 8)), ('2', (2, 32, 8, 8))]
>>> inspect.filters(net, "0").shape
(32, 1, 3, 3)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .nn import Module
from .tensor import Tensor, no_grad
from .train import predict

__all__ = ["activations", "confusion_matrix", "filters", "layers", "saliency", "top_activating"]


def layers(model: Module) -> list[str]:
    """Dotted names of the model's leaf modules (those without children), in tree order."""
    return [name for name, m in model.named_modules() if name and not m._modules]


def _module(model: Module, layer: str) -> Module:
    names = dict(model.named_modules())
    if layer not in names or not layer:
        raise ValueError(f"no layer {layer!r} in {type(model).__name__}; layers: {', '.join(layers(model))}")
    return names[layer]


def _input(model: Module, x: Any) -> Tensor:
    dtype = next((p.dtype for p in model.parameters()), np.dtype(np.float32))
    arr = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
    return Tensor.wrap(np.ascontiguousarray(arr, dtype=dtype))


def check_class_scores(what: str, shape: Sequence[int]) -> None:
    """A classifier's output is one score per class and sample, ``(N, classes)``; any other
    (a feature map ``(N, C, H, W)``) has no class to pick or predict."""
    if len(shape) != 2:
        raise ValueError(f"{what}: needs a classifier, whose output is one score per class (N, classes); this model "
                         f"outputs {'×'.join(map(str, shape[1:]))} per sample")


@contextlib.contextmanager
def _evaluating(model: Module) -> Iterator[None]:
    """Eval mode inside the block; the previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def activations(model: Module, x: Any, layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The output of every leaf layer (or of the named ``layers``, containers included) for
    input ``x``, in the order the layers ran. A layer that runs twice appears again as
    ``"name#2"``.

    Shape:
        ``x (N, C, H, W)`` (as the model expects) → ``{name: (N, C_l, H_l, W_l)}``.
    """
    names = list(layers) if layers is not None else globals()["layers"](model)
    out: dict[str, np.ndarray] = {}
    handles = []

    def hook_for(name: str) -> Any:
        def hook(module: Module, args: tuple, output: Any) -> None:
            if isinstance(output, Tensor):
                key, n = name, 1
                while key in out:
                    n += 1
                    key = f"{name}#{n}"
                out[key] = output.numpy().copy()
        return hook

    try:
        for name in names:
            handles.append(_module(model, name).register_forward_hook(hook_for(name)))
        with _evaluating(model), no_grad():
            model(_input(model, x))
    finally:
        for handle in handles:
            handle.remove()
    return out


def filters(model: Module, layer: str) -> np.ndarray:
    """A copy of the learned weights of ``layer`` (a conv: ``(C_out, C_in / groups, *kernel)``).

    >>> from convscope.pretrained import pretrained
    >>> filters(pretrained("digits"), "2").shape   # the second conv sees all 32 first-layer maps
    (32, 32, 3, 3)
    """
    weight = getattr(_module(model, layer), "weight", None)
    if not isinstance(weight, Tensor):
        with_weights = [n for n in layers(model) if isinstance(getattr(_module(model, n), "weight", None), Tensor)]
        raise ValueError(f"layer {layer!r} has no weight; layers with weights: {', '.join(with_weights)}")
    return weight.numpy().copy()


def confusion_matrix(model: Module, X: np.ndarray, y: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Counts of (true class, predicted class): ``M[i, j]`` examples of class ``i`` were
    predicted as ``j``; the diagonal holds the correct ones.

    Shape:
        ``X (N, ...)``, ``y (N,)`` → ``(K, K)`` int64, ``K`` = the model's number of outputs.
    """
    y = np.asarray(y, np.int64)
    if y.shape != (len(X),):
        raise ValueError(f"confusion_matrix: y must hold one label per example of X ({len(X)}), got shape {y.shape}")
    logits = predict(model, X)
    check_class_scores("confusion_matrix", logits.shape)
    k = num_classes if num_classes is not None else logits.shape[1]
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"confusion_matrix: labels must lie in 0 .. {k - 1}, got {int(y.min())} .. {int(y.max())}")
    return np.bincount(y * k + logits.argmax(1), minlength=k * k).reshape(k, k)


def top_activating(model: Module, layer: str, channel: int, X: np.ndarray, k: int = 9,
                   batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` examples of ``X`` whose strongest response in ``channel`` of ``layer``
    (the maximum over positions) is largest, strongest first; ties keep the lower index.

    Shape:
        ``X (N, ...)`` → indices ``(k,)`` int64 into ``X`` and their scores ``(k,)``.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"top_activating: k must be a whole number ≥ 1, got {k!r}")
    scores = []
    for start in range(0, len(X), batch_size):
        act = activations(model, X[start:start + batch_size], [layer])
        if layer not in act:
            raise ValueError(f"layer {layer!r} did not produce a tensor output")
        a = act[layer]
        if not 0 <= channel < a.shape[1]:
            raise ValueError(f"layer {layer!r} has {a.shape[1]} channels, got channel {channel}")
        scores.append(a[:, channel].reshape(len(a), -1).max(axis=1))
    score = np.concatenate(scores)
    order = np.argsort(-score, kind="stable")[:k]
    return order.astype(np.int64), score[order]


def saliency(model: Module, x: Any, target: int | Sequence[int]) -> np.ndarray:
    """The gradient of the ``target`` class's score (logit) with respect to the input.

    ``np.abs(s).max(axis=1)`` of the result is the usual saliency map. Parameters' ``.grad``
    are left untouched.

    Shape:
        ``x (N, C, H, W)`` and ``target`` an int or ``(N,)`` ints → ``(N, C, H, W)``.
    """
    inp = _input(model, x).requires_grad_()
    targets = np.asarray(target, np.int64)
    if targets.shape not in ((), (inp.shape[0],)):
        raise ValueError(f"saliency: target must be one class or one per example ({inp.shape[0]}), got shape "
                         f"{targets.shape}")
    targets = np.broadcast_to(targets, (inp.shape[0],))
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad = False
        with _evaluating(model):
            logits = model(inp)
            check_class_scores("saliency", logits.shape)
            if not 0 <= targets.min() <= targets.max() < logits.shape[1]:
                raise ValueError(f"saliency: target must lie in 0 .. {logits.shape[1] - 1}, got {target}")
            mask = np.zeros(logits.shape, logits.dtype)
            mask[np.arange(len(targets)), targets] = 1
            (logits * Tensor.wrap(mask)).sum().backward()
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad = flag
    return inp.grad
