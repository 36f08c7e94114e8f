"""Trained models shipped inside the package: no training and no download needed.

>>> import convscope as cs
>>> from convscope.data import digits
>>> from convscope.pretrained import pretrained
>>> net = pretrained("digits")             # the default digits CNN, trained, in eval mode
>>> X, y = digits("test")
>>> round(float((net(cs.tensor(X)).numpy().argmax(1) == y).mean()), 4)   # test accuracy
0.9972

Each model is an architecture defined in code plus a ``<name>.npz`` of its ``state_dict``
(float32) next to this file, made by ``scripts/train_pretrained.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

import numpy as np

from .. import nn
from .digits import RECIPE, digits_cnn

ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {"digits": digits_cnn}
"""Name → builder of the untrained architecture."""

RECIPES = {"digits": RECIPE}
"""Name → the :func:`convscope.train` arguments that produced the shipped weights."""

__all__ = ["ARCHITECTURES", "RECIPES", "digits_cnn", "names", "pretrained", "weights"]


def names() -> list[str]:
    """The shipped pretrained models."""
    return list(ARCHITECTURES)


def _check(name: str) -> None:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown pretrained model {name!r}; available: {', '.join(ARCHITECTURES)}")


def weights(name: str = "digits") -> dict[str, np.ndarray]:
    """The shipped ``state_dict`` of model ``name`` (name → float32 ndarray)."""
    _check(name)
    with resources.files("convscope.pretrained").joinpath(f"{name}.npz").open("rb") as fh, np.load(fh) as npz:
        return {key: npz[key] for key in npz.files}


def pretrained(name: str = "digits") -> nn.Module:
    """The trained model ``name``, in eval mode (float32).

    Shape (``"digits"``):
        input ``(N, 1, 8, 8)`` with pixels in ``[0, 1]`` (as :func:`convscope.data.digits`
        returns them) → logits ``(N, 10)``.
    """
    _check(name)
    model = ARCHITECTURES[name]()
    model.load_state_dict(weights(name))
    return model.eval()
