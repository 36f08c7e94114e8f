"""The effective receptive field (Luo et al., "Understanding the Effective Receptive Field
in Deep Convolutional Neural Networks", NIPS 2016): how strongly each input pixel moves one
central output unit, on the model's real weights.

The gradient of the central unit (all channels at the central position) with respect to the
input, in absolute value, summed over input channels and averaged over random N(0, 1)
inputs, normalised to sum 1, is the *density*. Its summary numbers are the radius of the
smallest disc around the unit's centre holding ``mass`` (95 %) of it, and per axis the side
of the smallest centred interval holding ``mass`` of that axis's marginal. For stacks of
convolutions the density is close to a Gaussian whose width grows like √depth, while the
theoretical field grows like depth: the effective field is a shrinking part of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models import resolve_model
from ..nn.module import Module, training_mode
from ..progress import steps
from ..tensor import Tensor
from .walk import output_tensors


@dataclass
class EffectiveField:
    """The effective receptive field of one output unit.

    ``density``: shaped like one input plane, sums to 1. ``centre``: the unit's theoretical
    field centre in input pixels (the density's centroid when the unit sees everything).
    ``radius``: pixels from the centre holding ``mass`` of the density. ``box``: per axis,
    the side in pixels of the centred interval holding ``mass`` of that axis's marginal.
    ``theoretical``: per axis the size of the theoretical field (None: the whole input).
    """

    layer: str
    unit: tuple[int, ...]
    density: np.ndarray
    centre: tuple[float, ...]
    radius: float
    box: tuple[int, ...]
    theoretical: tuple[int, ...] | None
    mass: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "unit": list(self.unit), "centre": list(self.centre), "radius": self.radius,
                "box": list(self.box), "theoretical": None if self.theoretical is None else list(self.theoretical),
                "mass": self.mass, "samples": self.samples}

    def text(self) -> str:
        """``Effective RF (95% of the gradient, 8 random inputs): radius 4.1 px, box 9×9;
        theoretical field 13×13``."""
        theory = "the whole input" if self.theoretical is None else "×".join(map(str, self.theoretical))
        inputs = "1 random input" if self.samples == 1 else f"{self.samples} random inputs"
        return (f"Effective RF ({self.mass:.0%} of the gradient, {inputs}): radius "
                f"{self.radius:.1f} px, box {'×'.join(map(str, self.box))}; theoretical field {theory}")


def _theoretical(model: Module, input_shape: tuple[int, ...], layer: str | None, dtype: Any
                 ) -> tuple[str, Any, tuple[int, ...]]:
    """The target row's name, receptive field and output shape (from the summary); a
    container's (a block's) is its last row's."""
    from .summary import summary

    rows = summary(model, input_shape, dtype=dtype).raise_for_error().rows
    under = [r for r in rows if layer is not None and (r.name == layer or r.name.startswith(f"{layer}."))]
    row = rows[-1] if layer is None else next((r for r in rows if r.name == layer), under[-1] if under else None)
    if row is None:
        names = ", ".join(dict.fromkeys(r.name for r in rows))
        raise ValueError(f"effective_receptive_field: no layer {layer!r}; layers: {names}")
    return row.name, row.receptive_field, row.output_shape


def _captured(model: Module, layer: str | None, x: Tensor) -> Tensor:
    """The output of ``layer`` (a module path; its first call), or of the model, on ``x``."""
    if layer is None:
        return output_tensors(model(x))[0]
    modules = dict(model.named_modules())
    seen: list[Tensor] = []
    handle = modules[layer].register_forward_hook(lambda m, a, out: seen.append(output_tensors(out)[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return seen[0]


def _radius(density: np.ndarray, centre: Sequence[float], mass: float) -> float:
    """The distance from ``centre`` within which the cells hold ``mass`` of the density."""
    grids = np.meshgrid(*[np.arange(n) - c for n, c in zip(density.shape, centre)], indexing="ij")
    distance = np.sqrt(sum(g * g for g in grids)).ravel()
    order = np.argsort(distance, kind="stable")
    reached = np.searchsorted(np.cumsum(density.ravel()[order]), mass * density.sum() * (1 - 1e-12))
    return float(distance[order[min(reached, distance.size - 1)]])


def _sides(density: np.ndarray, centre: Sequence[float], mass: float) -> tuple[int, ...]:
    """Per axis, the number of cells in the smallest centred interval holding ``mass`` of the marginal."""
    sides = []
    for axis, c in enumerate(centre):
        marginal = density.sum(axis=tuple(a for a in range(density.ndim) if a != axis))
        distance = np.abs(np.arange(marginal.size) - c)
        for half in np.unique(distance):
            inside = distance <= half
            if marginal[inside].sum() >= mass * marginal.sum() * (1 - 1e-12):
                sides.append(int(inside.sum()))
                break
    return tuple(sides)


def effective_receptive_field(model: Any, input_shape: Sequence[int], layer: str | None = None, *,
                              samples: int = 8, mass: float = 0.95, seed: int = 0,
                              progress: bool = False) -> EffectiveField:
    """The effective receptive field of the central unit of ``layer`` (default: the model's
    output) for inputs of ``input_shape`` ``(C, H, W)`` (no batch dim).

    The model runs in evaluation mode on ``samples`` random N(0, 1) inputs drawn from its own
    generator (``seed``; a zoo name or a spec is built with weights drawn from it too); its mode,
    parameters, gradients and the global random state are left as they were. The inputs run
    one at a time; ``progress`` shows a bar of them on stderr when it is a terminal.

    >>> import numpy as np, convscope as cs
    >>> conv = cs.nn.Conv2d(1, 1, 3, padding=1, bias=False)
    >>> conv.weight.data[...] = 1 / 9
    >>> erf = effective_receptive_field(cs.nn.Sequential(conv, conv), (1, 9, 9), samples=1)
    >>> erf.box, erf.theoretical
    ((5, 5), (5, 5))
    """
    if not 0 < mass <= 1:
        raise ValueError(f"effective_receptive_field: mass must be in (0, 1], got {mass}")
    if samples < 1:
        raise ValueError(f"effective_receptive_field: samples must be at least 1, got {samples}")
    net = resolve_model(model, weights=True, seed=seed).module
    params = list(net.parameters())
    dtype = params[0].dtype if params else np.dtype(np.float32)
    name, field, out_shape = _theoretical(net, tuple(input_shape), layer, dtype)
    inputs = np.random.default_rng(seed).standard_normal((samples, *input_shape)).astype(dtype)
    density = np.zeros(input_shape[1:], dtype)
    frozen = [(p, p.requires_grad, p.grad) for p in params]
    try:
        for p in params:
            p.requires_grad = False
        # One input at a time: the peak memory of one backward pass, and a step to show.
        with training_mode(net, False), steps(samples, f"effective receptive field of {name}", progress) as advance:
            for sample in inputs:
                x = Tensor(sample[None], requires_grad=True)
                out = _captured(net, layer, x)
                seed_grad = np.zeros(out.shape, out.dtype)
                unit = tuple(n // 2 for n in out.shape[2:])
                seed_grad[(slice(None), slice(None), *unit)] = 1
                out.backward(seed_grad)
                density += np.abs(x.grad[0]).sum(axis=0)
                advance()
    finally:
        for p, requires, grad in frozen:
            p.requires_grad, p.grad = requires, grad
    density = density / density.sum()
    if isinstance(field, list):
        centre = tuple(float(a.start + u * a.jump + (a.size - 1) / 2) for a, u in zip(field, unit))
        theoretical = tuple(int(round(a.size)) for a in field)
    else:
        grids = np.meshgrid(*[np.arange(n) for n in density.shape], indexing="ij")
        centre = tuple(float((g * density).sum()) for g in grids)
        theoretical = None
    return EffectiveField(name, unit, density, centre, _radius(density, centre, mass), _sides(density, centre, mass),
                          theoretical, mass, samples)
