"""Provenance of one output value: ``trace(model, x, layer, index)`` → :class:`Trace`.

One layer: the cells the value read (with padding and what supplied it), the weights,
every product, the bias and the result, recomputable from the record alone. All earlier
layers: the exact input cells that can influence the value (:meth:`Trace.influence`), its
receptive box and the gradient (:meth:`Trace.contributions`).
"""

from .core import Trace, influence, trace
from .steps import (
    Combination,
    Copy,
    Elementwise,
    LayerNormalization,
    Normalization,
    Operand,
    PowerMean,
    Read,
    ResponseNormalization,
    Sum,
    Term,
    WeightedSum,
    WindowMax,
    WindowMean,
)

__all__ = [
    "Combination", "Copy", "Elementwise", "LayerNormalization", "Normalization", "Operand", "PowerMean", "Read",
    "ResponseNormalization", "Sum", "Term", "Trace", "WeightedSum", "WindowMax", "WindowMean", "influence", "trace",
]
