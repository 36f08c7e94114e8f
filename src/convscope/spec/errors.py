"""Errors of the spec reader: every message starts with ``source:line:column``."""

from __future__ import annotations

from ..errors import ShapeError


class SpecError(ValueError):
    """A spec that cannot be read or built.

    ``str(err)`` is ``"source:line:column: message"``; ``line`` and ``column`` count from 1.
    ``source`` is the file path, or ``"<spec>"`` for text.
    """

    def __init__(self, message: str, *, line: int, column: int, source: str = "<spec>") -> None:
        self.message = message
        self.line = line
        self.column = column
        self.source = source
        ValueError.__init__(self, self._text())

    def _where(self) -> str:
        return f"{self.source}:{self.line}:{self.column}"

    def _text(self) -> str:
        return f"{self._where()}: {self.message}"

    def with_source(self, source: str) -> SpecError:
        """Name the file (or text) the error belongs to."""
        self.source = source
        self.args = (self._text(),)
        return self


class SpecShapeError(SpecError, ShapeError):
    """A layer of the spec does not fit the shape that reaches it: both a :class:`SpecError`
    (``line``, ``column``) and a :class:`~convscope.ShapeError` (``layer`` is the module path
    and type, ``message`` the engine's rule with its numbers)."""

    def __init__(self, error: ShapeError, *, layer: str, line: int, column: int, source: str = "<spec>") -> None:
        self.layer = layer
        self.message = error.message
        self.line = line
        self.column = column
        self.source = source
        ValueError.__init__(self, self._text())

    def _text(self) -> str:
        return f"{self._where()}: {ShapeError._text(self)}"
