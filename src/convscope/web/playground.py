"""``/playground``: one convolution's configuration → its output size (with the formula and
the numbers), parameters, MACs, and the frames of the sliding-kernel animation.

Everything comes from the engine: the layer is built (``nn.Conv2d`` / ``nn.ConvTranspose2d``
with meta parameters), its output shape is the engine's shape rule
(``conv_output_shape``), parameters and MACs are the summary's, and every animation frame
is a :func:`convscope.trace` of one output value on small integer data. A configuration
the engine refuses is answered with ``ok: false`` and the rule it breaks (the engine's
message), not an HTTP error: refusing is the playground's answer, not a failed request.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field

from .. import nn
from ..errors import ShapeError
from ..functional.conv import conv_output_shape, conv_transpose_output_shape
from ..nn._utils import meta_parameters
from ..tensor import Tensor, no_grad
from ..trace import trace
from .body import RequestBody
from .encode import answer, finite
from .errors import ApiError
from .limits import Limits
from .store import store_of

router = APIRouter(prefix="/api", tags=["playground"])

Pair = tuple[int, int]
ANIMATED_SIZE = 16  # inputs up to 16×16 with up to 8 channels are animated
ANIMATED_CHANNELS = 8


class PlaygroundRequest(RequestBody):
    in_channels: int = Field(2, description="C_in")
    out_channels: int = Field(2, description="C_out")
    size: Pair = Field((6, 6), description="input height and width")
    kernel: Pair = Field((3, 3), description="kernel height and width")
    stride: Pair = (1, 1)
    padding: Pair = (1, 1)
    dilation: Pair = (1, 1)
    groups: int = 1
    transposed: bool = False
    output_padding: Pair = Field((0, 0), description="transposed only")
    bias: bool = True
    channel: int = Field(0, ge=0, description="the output channel the animation follows")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the small integer input and weights")


def _check_bounds(req: PlaygroundRequest, limits: Limits) -> None:
    big = limits.max_playground_size
    for name, values in (("in_channels", (req.in_channels,)), ("out_channels", (req.out_channels,)),
                         ("size", req.size), ("kernel", req.kernel), ("stride", req.stride),
                         ("padding", req.padding), ("dilation", req.dilation), ("groups", (req.groups,)),
                         ("output_padding", req.output_padding)):
        if any(abs(v) > big for v in values):
            raise ApiError(422, "limit", f"{name} {list(values)}: the playground takes sizes up to {big}", name)


def _layer(req: PlaygroundRequest) -> nn.Module:
    """The layer the request describes, with meta parameters (no data)."""
    common = dict(stride=req.stride, padding=req.padding, dilation=req.dilation, groups=req.groups, bias=req.bias)
    with meta_parameters():
        if req.transposed:
            return nn.ConvTranspose2d(req.in_channels, req.out_channels, req.kernel,
                                      output_padding=req.output_padding, **common)
        return nn.Conv2d(req.in_channels, req.out_channels, req.kernel, **common)


def _output_shape(req: PlaygroundRequest, weight: tuple[int, ...]) -> tuple[int, ...]:
    shape = (1, req.in_channels, *req.size)
    if req.transposed:
        return conv_transpose_output_shape(shape, weight, req.stride, req.padding, req.output_padding, req.groups,
                                           req.dilation)
    return conv_output_shape(shape, weight, req.stride, req.padding, req.dilation, req.groups)


def formulas(req: PlaygroundRequest, out: tuple[int, ...]) -> list[dict[str, Any]]:
    """Per spatial dim: the output-size formula, with the numbers put in, and the engine's
    size. ``formula_value`` is the formula's own arithmetic; it equals ``value`` (the tests
    check this against the engine and torch)."""
    rows = []
    for axis, n, k, s, p, d, o, value in zip("HW", req.size, req.kernel, req.stride, req.padding, req.dilation,
                                             req.output_padding, out[2:]):
        if req.transposed:
            general = f"{axis}_out = ({axis} − 1)·S − 2·P + D·(K − 1) + output_padding + 1"
            numbers = f"({n} − 1)·{s} − 2·{p} + {d}·({k} − 1) + {o} + 1"
            formula_value = (n - 1) * s - 2 * p + d * (k - 1) + o + 1
        else:
            general = f"{axis}_out = ⌊({axis} + 2·P − D·(K − 1) − 1) / S⌋ + 1"
            top = n + 2 * p - d * (k - 1) - 1
            numbers = f"⌊({n} + 2·{p} − {d}·({k} − 1) − 1) / {s}⌋ + 1 = ⌊{top} / {s}⌋ + 1"
            formula_value = math.floor(top / s) + 1
        rows.append({"axis": axis, "general": general, "numbers": f"{numbers} = {value}", "value": value,
                     "formula_value": formula_value})
    return rows


def _animated(req: PlaygroundRequest) -> str | None:
    """Why the configuration is too big to animate, or None."""
    if max(req.size) > ANIMATED_SIZE or req.in_channels > ANIMATED_CHANNELS or req.out_channels > ANIMATED_CHANNELS:
        return (f"the animation is shown for inputs up to {ANIMATED_SIZE}×{ANIMATED_SIZE} with up to "
                f"{ANIMATED_CHANNELS} input and output channels")
    return None


def frames(req: PlaygroundRequest, limit: int) -> dict[str, Any]:
    """The animation: small integer input, weights and bias (float64, exact), the engine's
    output, one :func:`convscope.trace` per output position of channel ``req.channel``
    (scan order, at most ``limit``), and per input channel the kernel slice those traces
    multiplied it by (``kernels``; None for taps no traced position used)."""
    rng = np.random.default_rng(req.seed)
    common = dict(stride=req.stride, padding=req.padding, dilation=req.dilation, groups=req.groups, bias=req.bias,
                  dtype=np.float64)
    layer = (nn.ConvTranspose2d(req.in_channels, req.out_channels, req.kernel, output_padding=req.output_padding,
                                **common) if req.transposed
             else nn.Conv2d(req.in_channels, req.out_channels, req.kernel, **common))
    layer.weight.data[...] = rng.integers(-2, 3, layer.weight.shape)
    if layer.bias is not None:
        layer.bias.data[...] = rng.integers(-1, 2, layer.bias.shape)
    model = nn.Sequential(layer).eval()
    x = rng.integers(0, 10, (1, req.in_channels, *req.size)).astype(np.float64)
    with no_grad():
        y = model(Tensor.wrap(x)).numpy()
    channel = min(req.channel, y.shape[1] - 1)
    positions = list(np.ndindex(*y.shape[2:]))
    shown = []
    kh, kw = layer.weight.shape[-2:]
    kernels: dict[str, list[list[float | None]]] = {}  # input channel → the kernel slice its terms used
    for i, j in positions[:limit]:
        step = trace(model, x, "0", (0, channel, i, j)).step
        for t in step.terms:
            kernels.setdefault(str(t.read.index[1]), [[None] * kw for _ in range(kh)])[
                t.weight_index[-2]][t.weight_index[-1]] = t.weight
        terms = [[t.read.index[1], t.read.index[2], t.read.index[3], t.read.padding is not None, t.read.value,
                  t.weight, t.product] for t in step.terms]
        sums: dict[int, list[float]] = {}
        for term in terms:
            sums.setdefault(term[0], []).append(term[6])
        shown.append({"out": [i, j], "value": float(y[0, channel, i, j]), "bias": step.bias, "terms": terms,
                      "channel_sums": {str(c): math.fsum(p) for c, p in sorted(sums.items())}})
    return {"input": x[0].tolist(), "weight": layer.weight.numpy().tolist(),
            "bias": None if layer.bias is None else layer.bias.numpy().tolist(), "output": y[0].tolist(),
            "channel": channel, "frames": shown, "positions": len(positions), "kernels": kernels}


@router.post("/playground")
def playground(req: PlaygroundRequest, http: Request) -> Response:
    """Answers ``{"ok": true, "output_shape", "formulas": [{"axis", "general", "numbers",
    "value"}], "params", "macs", "weight_shape", "animation"}`` or ``{"ok": false, "error":
    the rule the configuration breaks}``. ``animation`` is None (with ``animation_note``)
    for inputs over 16×16 or 8 channels."""
    store = store_of(http)
    _check_bounds(req, store.limits)
    from ..analyze import summary

    with store.engine:
        try:
            layer = _layer(req)
            out = _output_shape(req, tuple(layer.weight.shape))
            totals = summary(layer, (1, req.in_channels, *req.size)).raise_for_error().totals
        except (ShapeError, ValueError) as err:
            return answer({"ok": False, "error": str(err), "kind": type(err).__name__})
        note = _animated(req)
        animation = None if note else frames(req, store.limits.max_animation_frames)
    return answer(finite({"ok": True, "output_shape": list(out), "weight_shape": list(layer.weight.shape),
                          "bias_shape": None if layer.bias is None else list(layer.bias.shape),
                          "formulas": formulas(req, out), "params": totals.params, "macs": totals.macs,
                          "animation": animation, "animation_note": note}))
