"""Plain records of a summary: one row per layer call, the totals, and the ledger of ops
that ran without a cost rule. Built by :mod:`.summary`, rendered by :mod:`.render`;
neither of those formats or computes the other's part."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FieldAxis:
    """Receptive field of one output unit along one spatial axis, in input pixels."""

    size: float
    jump: float
    start: float


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


@dataclass
class Uncounted:
    """An op that ran but has no cost rule: counted as zero, and listed so nobody is misled."""

    op: str
    calls: int
    output_shape: tuple[int, ...]
    layers: list[str]
