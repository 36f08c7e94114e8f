"""The dtype rule functional ops share: torch refuses mixed float dtypes between an input and
its parameters or targets, and so do we, instead of casting one of them silently."""

from __future__ import annotations

from ..errors import ShapeError
from ..tensor import Tensor


def check_dtypes(op: str, input: Tensor, **others: Tensor | None) -> None:  # noqa: A002 - torch's name
    """Every tensor in ``others`` (None: absent) has ``input``'s dtype, else a ShapeError naming it."""
    for name, t in others.items():
        if t is not None and t.dtype != input.dtype:
            raise ShapeError(f"{name} dtype {t.dtype} does not match input dtype {input.dtype}", layer=op)
