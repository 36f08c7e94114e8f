"""Parsers for the values that follow a layer keyword or an option key (``3``, ``3x5``,
``same``, ``off``, ``0.5``, ...). Each raises ``ValueError`` naming what it expects."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_TRUE = ("on", "true", "yes", "1")
_FALSE = ("off", "false", "no", "0")


@dataclass(frozen=True)
class Value:
    """How to read one value, and how error messages describe it (``"a positive integer"``)."""

    parse: Callable[[str], Any]
    describe: str

    def __call__(self, text: str) -> Any:
        try:
            return self.parse(text)
        except (ValueError, OverflowError):
            raise ValueError(f"expects {self.describe}, got {text!r}") from None


def _int(text: str, low: int | None) -> int:
    value = int(text)
    if low is not None and value < low:
        raise ValueError(text)
    return value


def _sizes(text: str, low: int) -> int | tuple[int, ...]:
    """``3`` → 3; ``3x5`` (or ``3×5``, as summaries print shapes) → (3, 5)."""
    parts = [_int(part, low) for part in text.lower().replace("×", "x").split("x")]
    return parts[0] if len(parts) == 1 else tuple(parts)


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _flag(text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(text)


def _shape(text: str) -> tuple[int, ...]:
    sizes = _sizes(text, 1)
    return sizes if isinstance(sizes, tuple) else (sizes,)


def choice(*options: str) -> Value:
    def parse(text: str) -> str:
        if text.lower() not in options:
            raise ValueError(text)
        return text.lower()

    return Value(parse, "one of " + ", ".join(options))


INT = Value(lambda t: _int(t, None), "an integer")
POSITIVE = Value(lambda t: _int(t, 1), "a positive integer")
SIZES = Value(lambda t: _sizes(t, 1), "a positive integer or one per dim like 3x5")
NONNEGATIVE_SIZES = Value(lambda t: _sizes(t, 0), "a non-negative integer or one per dim like 1x2")
PADDING = Value(lambda t: t.lower() if t.lower() in ("same", "valid") else _sizes(t, 0),
                "a non-negative integer, one per dim like 1x2, 'same' or 'valid'")
PADS = Value(lambda t: _sizes(t, 0), "a non-negative integer for every side, or one per side in torch's order "
                                    "(the last dim's two first) like 1x1x0x2")
NUMBER = Value(_number, "a number")
SCALE = Value(lambda t: tuple(_number(p) for p in t.split("x")) if "x" in t else _number(t),
              "a number or one per dim like 2x1.5")
FLAG = Value(_flag, "on or off")
SHAPE = Value(_shape, "sizes like 3x224x224")


def render(value: Any) -> str:
    """The spec text of a parsed value (the inverse of the parsers above)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        if value and all(v == value[0] for v in value) and not isinstance(value[0], float):
            return render(value[0])
        return "x".join(render(v) for v in value)
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)
