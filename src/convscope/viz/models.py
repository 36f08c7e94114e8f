"""What a figure is drawn for: a model given as a Module, ``"digits"`` (the shipped trained
CNN), a zoo name or a spec file, and its input shape."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import random as cs_random
from .. import zoo
from ..nn import Module, meta_parameters
from ..train import is_run, load_run

DIGITS = "digits"


def resolve(model: Any, input_shape: Sequence[int] | None = None, *, weights: bool = False,
            need_shape: bool = True) -> tuple[Module, str, tuple[int, ...]]:
    """``(module, display name, input shape without batch)``; the shape is ``()`` when a
    Module has none and ``need_shape`` is False.

    ``weights=False`` builds zoo models with meta parameters (shapes only, instant);
    ``weights=True`` gives real weights: the shipped ones for ``"digits"``, a seeded random
    initialisation (``manual_seed(0)``) for zoo models.
    """
    if isinstance(model, Module):
        shape = input_shape or getattr(model, "input_shape", None)
        if shape is None and not need_shape:
            return model, type(model).__name__, ()
        if shape is None:
            raise ValueError(f"{type(model).__name__} has no input_shape attribute; pass input_shape, e.g. (3, 32, 32)")
        return model, type(model).__name__, tuple(int(s) for s in shape)
    if not isinstance(model, (str, Path)):
        raise ValueError(f"expected a convscope.nn.Module, 'digits', a zoo name or a spec file, got {type(model)}")
    text = str(model)
    if text == DIGITS:
        from ..pretrained import pretrained
        from ..pretrained.digits import INPUT_SHAPE

        return pretrained(DIGITS), DIGITS, tuple(input_shape or INPUT_SHAPE)
    if text in zoo.names():
        entry = zoo.entry(text)
        if weights:
            cs_random.manual_seed(0)
            net = entry.builder().eval()
        else:
            with meta_parameters():
                net = entry.builder()
        return net, text, tuple(input_shape or entry.input_shape)
    if is_run(text):  # a training run's folder or checkpoint: the weights it trained
        net, shape = load_run(text)
        return net, _run_name(text), tuple(input_shape or shape)
    if Path(text).suffix == ".spec" or Path(text).is_file():
        from ..spec import load_spec

        net = load_spec(text)
        return net, Path(text).name, tuple(input_shape or net.input_shape)
    zoo.entry(text)  # raises with did-you-mean suggestions
    raise ValueError(f"unknown model {text!r}")  # pragma: no cover (zoo.entry raised)


def _run_name(path: str) -> str:
    """A run's display name: its folder's (``run/checkpoint.npz`` → ``run``)."""
    p = Path(path)
    return p.name if p.is_dir() else p.parent.name or p.name
