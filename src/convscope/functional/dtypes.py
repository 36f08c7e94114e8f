"""The dtype rule functional ops share: torch refuses integer inputs to its losses and mixed float
dtypes between an input and its parameters or targets, and so do we, instead of casting one of
them silently."""

from __future__ import annotations

from ..errors import ShapeError
from ..ops import kernel_dtype
from ..tensor import Tensor


def check_dtypes(op: str, input: Tensor, integers: str = "refuse", **others: Tensor | None) -> None:  # noqa: A002 - torch's name
    """Every tensor in ``others`` (None: absent) has ``input``'s dtype, else a ShapeError naming it;
    an integer or bool ``input`` goes by ``integers`` (:func:`~convscope.ops.kernel_dtype`: torch's
    losses and parametrised activations refuse them)."""
    kernel_dtype(op, input.dtype, integers)
    for name, t in others.items():
        if t is not None and t.dtype != input.dtype:
            raise ShapeError(f"{name} dtype {t.dtype} does not match input dtype {input.dtype}", layer=op)
