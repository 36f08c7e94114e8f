"""Famous CNNs, one file per family, written to read like the papers' tables.

``names()`` lists the models, ``build(name, **options)`` constructs one (a ``convscope.nn``
module), ``entry(name)`` gives its default input shape and reference. Family modules are
imported on first use, so ``import convscope`` stays fast.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from .registry import ENTRIES, ZooEntry, register

FAMILIES = ("seed", "lenet", "alexnet", "vgg", "nin", "googlenet", "resnet", "densenet", "mobilenet", "efficientnet",
            "shufflenet", "squeezenet", "convnext")

__all__ = ["FAMILIES", "ZooEntry", "build", "entry", "names", "register"]


def _load_all() -> None:
    for family in FAMILIES:
        importlib.import_module(f"{__name__}.{family}")


def names() -> list[str]:
    """All zoo model names, in family order."""
    _load_all()
    return list(ENTRIES)


def entry(name: str) -> ZooEntry:
    """The registry entry for ``name``; unknown names get a ``ValueError`` with suggestions."""
    _load_all()
    if name not in ENTRIES:
        close = difflib.get_close_matches(name, ENTRIES, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else " See convscope.zoo.names()."
        raise ValueError(f"unknown zoo model {name!r}.{hint}")
    return ENTRIES[name]


def build(name: str, **options: Any) -> Any:
    """Construct zoo model ``name`` with the given options (see each family's builder)."""
    return entry(name).builder(**options)
