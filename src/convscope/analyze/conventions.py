"""Counting conventions: which ops' costs and which parameters a total includes.

``convscope`` (the default) counts every op that has a cost rule and every parameter.
``paper`` follows the usual convention of the CNN papers (GoogLeNet, MobileNet, ResNet):
multiply-adds of convolutions and fully-connected layers only — no batch norm, pooling or
activations — and parameters as the weights of those layers, without biases or
normalisation parameters (GoogLeNet's Table 1 then reports them in units of 1,024).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..rules import Cost

MAC_OPS = frozenset({f"conv{n}d" for n in (1, 2, 3)} | {f"conv_transpose{n}d" for n in (1, 2, 3)}
                    | {"linear", "matmul", "bilinear"})


@dataclass(frozen=True)
class Convention:
    """``ops``: the ops whose cost counts (None: all with a rule); ``weights_only``: count
    only parameters with two or more dims (conv and linear weights), leaving out biases and
    normalisation scales and shifts."""

    name: str
    description: str
    ops: frozenset[str] | None = None
    weights_only: bool = False

    def cost(self, op: str, cost: Cost) -> Cost:
        if self.ops is None or op in self.ops:
            return cost
        return Cost(0, 0, f"not counted ({self.name} convention)")

    def counts_parameter(self, ndim: int) -> bool:
        return not self.weights_only or ndim >= 2


CONVENTIONS = {
    "convscope": Convention("convscope", "every op with a cost rule; all parameters incl. biases and norm affine"),
    "paper": Convention("paper", "conv and fully-connected multiply-adds only; weights without biases or norm "
                                 "parameters", ops=MAC_OPS, weights_only=True),
}


def get(name: str) -> Convention:
    if name not in CONVENTIONS:
        raise ValueError(f"unknown convention {name!r}; choose from {', '.join(CONVENTIONS)}")
    return CONVENTIONS[name]
