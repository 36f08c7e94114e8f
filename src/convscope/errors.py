"""The one error type users see for invalid configurations."""

from __future__ import annotations


class ShapeError(ValueError):
    """An invalid shape or configuration.

    The message reads *context: rule with numbers*. ``layer`` starts as the op name
    (``"conv2d"``) and is replaced by the module path and type (``"features.3 (Conv2d)"``)
    when the error passes out of a module's ``forward``.
    """

    def __init__(self, message: str, *, layer: str | None = None) -> None:
        self.message = message
        self.layer = layer
        super().__init__(self._text())

    def _text(self) -> str:
        return f"{self.layer}: {self.message}" if self.layer else self.message

    def with_layer(self, layer: str) -> ShapeError:
        """Name the layer the error belongs to (keeps the rule and numbers)."""
        self.layer = layer
        self.args = (self._text(),)
        return self
