"""Plain records of a summary: one row per layer call, the totals, and the ledger of ops
that ran without a cost rule. Built by :mod:`.summary`, rendered by :mod:`.render`;
neither of those formats or computes the other's part."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class FieldAxis:
    """Receptive field of one output unit along one spatial axis, in input pixels (unit ``i``
    sees ``start + i·jump … start + i·jump + size − 1``). ``input_dependent``: the value
    holds at this input size only (adaptive pooling or a resize to a fixed size before)."""

    size: float
    jump: float
    start: float
    input_dependent: bool = False


@dataclass
class LayerRow:
    """One layer call (a leaf module, or an op run directly by a container's forward)."""

    name: str
    type: str
    depth: int
    input_shapes: list[tuple[int, ...]]
    output_shape: tuple[int, ...] | None
    weight_shape: tuple[int, ...] | None = None
    bias_shape: tuple[int, ...] | None = None
    params: int = 0
    trainable_params: int = 0
    params_formula: str = ""
    use: int = 1  # which call of this module: 2+ means a shared module called again
    macs: int = 0
    flops: int = 0
    cost_formula: str = ""
    activation_bytes: int = 0
    receptive_field: list[FieldAxis] | str | None = None
    ops: list[str] = field(default_factory=list)
    output_formula: list[str] | None = None  # symbolic inputs: one formula per non-batch dim

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_shapes"] = [list(s) for s in self.input_shapes]
        for key in ("output_shape", "weight_shape", "bias_shape"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out


@dataclass
class Totals:
    params: int
    trainable_params: int
    macs: int
    flops: int
    param_bytes: int
    input_bytes: int
    peak_activation_bytes: int
    output_bytes: int
    peak_scratch_bytes: int = 0  # the forward's peak with the ops' scratch arrays (im2col columns, …)


@dataclass
class Uncounted:
    """An op that ran but has no cost rule: counted as zero, and listed so nobody is misled."""

    op: str
    calls: int
    output_shape: tuple[int, ...]
    layers: list[str]


@dataclass
class Validity:
    """The input sizes (of ``symbol``, or of several symbols set equal: ``"H = W"``) at
    which every op accepts its input, the other symbols held at their reference sizes.

    ``intervals`` are inclusive ``(lo, hi)`` within ``1 … limit``; ``hi`` is None when the
    interval reaches ``limit`` (checked up to there, and every size-monotone rule holds
    beyond). ``reason`` names the first check that fails just outside the valid set.
    """

    symbol: str
    intervals: list[tuple[int, int | None]]
    text: str
    held: dict[str, int]
    limit: int
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"intervals": [list(i) for i in self.intervals]}


@dataclass
class Symbolic:
    """What symbolic input sizes add to a summary: the symbolic input shapes, the reference
    size of each symbol (where the shapes and counts of the rows were computed), the valid
    sizes, and notes (e.g. an op past which no formula is known)."""

    input_shapes: list[tuple[int | str, ...]]
    reference: dict[str, int]
    validity: dict[str, Validity]
    notes: list[str] = field(default_factory=list)
    sizes: list[tuple[Any, ...] | None] = field(default_factory=list, repr=False)  # SymSizes per row

    def output_shapes(self, **sizes: int) -> list[tuple[int | None, ...] | None]:
        """Every row's output shape (batch included) at other input sizes, from the formulas
        alone (``None`` for a row without one; a ``None`` dim where the size is unknown).

        >>> import convscope as cs
        >>> cs.summary("lenet5_modern", (1, "H", "W")).symbolic.output_shapes(H=34, W=35)[2]
        (1, 6, 15, 15)
        """
        env = {k: np.array([v]) for k, v in sizes.items()}
        return [None if dims is None else tuple(int(np.asarray(d.value(env)).reshape(-1)[0]) if d.known else None
                                                for d in dims) for dims in self.sizes]

    def to_dict(self) -> dict[str, Any]:
        return {"input_shapes": [list(s) for s in self.input_shapes], "reference": dict(self.reference),
                "validity": {k: v.to_dict() for k, v in self.validity.items()}, "notes": list(self.notes)}
