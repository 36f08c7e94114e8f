"""The zoo's registry: each family module registers its builders with :func:`register`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ZooEntry:
    """A registered model: its builder, default input shape ``(C, H, W)`` (no batch dim),
    a one-line description and the paper or source it follows."""

    name: str
    builder: Callable[..., Any]
    input_shape: tuple[int, ...]
    description: str
    reference: str = ""
    options: dict[str, Any] = field(default_factory=dict)


ENTRIES: dict[str, ZooEntry] = {}


def register(name: str, *, input_shape: tuple[int, ...], description: str, reference: str = "",
             **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``@register("resnet18", input_shape=(3, 224, 224), description=...)``."""

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in ENTRIES:
            raise ValueError(f"zoo model {name!r} is registered twice")
        ENTRIES[name] = ZooEntry(name, builder, tuple(input_shape), description, reference, options)
        return builder

    return decorate
