"""Spec files: a small line-based text format for sequential and branching CNNs.

>>> from convscope.spec import load_spec
>>> model = load_spec('''
... input 1x28x28
... conv 8 k3 p1     # 8 filters, 3×3, padding 1
... relu
... conv 16 k5
... ''')
>>> model.input_shape, [name for name, _ in model.named_children()]
((1, 28, 28), ['conv1', 'relu1', 'conv2'])
>>> model.conv2.weight.shape          # in_channels 8 was inferred from conv1
(16, 8, 5, 5)

The grammar and every keyword are documented in ``docs/spec.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import nn
from ..files import read_text
from .blocks import Concat, Residual
from .builder import build
from .dump import dump_spec
from .errors import SpecError, SpecShapeError
from .syntax import parse

__all__ = ["Concat", "Residual", "SpecError", "SpecShapeError", "dump_spec", "load_spec"]


def _read(path_or_text: str | os.PathLike, source: str | None) -> tuple[str, str]:
    """(text, source name). A path-like, an existing file, or a one-line string ending in
    ``.spec`` is read as a file; any other string is the spec itself."""
    if isinstance(path_or_text, os.PathLike) or (
            "\n" not in path_or_text and "{" not in path_or_text
            and (path_or_text.endswith(".spec") or os.path.isfile(path_or_text))):
        path = Path(path_or_text)
        return read_text(path), source or str(path_or_text)
    return path_or_text, source or "<spec>"


def load_spec(path_or_text: str | os.PathLike, *, source: str | None = None) -> nn.Sequential:
    """Build the model a spec describes (a file path or the spec text itself).

    Input channels are inferred; each layer is validated on a meta tensor of the ``input``
    shape as it is built. The result is an :class:`~convscope.nn.Sequential` whose children
    carry the spec's names (``conv1``, ``block2.branch1.conv1``, ...) and whose attribute
    ``input_shape`` holds the ``input`` line's shape (no batch dim).

    Raises:
        SpecError: a syntax, argument or shape problem; the message starts with
            ``source:line:column`` (``source`` defaults to the path, or ``<spec>`` for text).
            Shape problems raise :class:`SpecShapeError`, which is also a ``ShapeError``.
        OSError: the file cannot be read.

    Shape:
        - Input: ``(N, *input_shape)``.
        - Output: whatever the last layer gives.
    """
    text, name = _read(path_or_text, source)
    try:
        return build(parse(text))
    except SpecError as err:
        err.with_source(name)
        raise
