"""Running models: a forward pass with every layer's feature maps, one layer's maps, and
the prediction for a drawn digit.

Each request builds its own input and runs the model's own ``forward`` once, in eval mode
and without autograd (:func:`convscope.inspect.activations`), under the store's engine lock.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field

from .. import functional as F
from .. import inspect
from ..nn.module import Module
from ..tensor import Tensor, no_grad
from .body import RequestBody
from .encode import answer, finite, pack
from .errors import ApiError, engine_errors
from .guard import INPUT, check_compute, graph_of, split_call
from .inputs import InputSpec, drawing_to_digit, make_input
from .store import DIGITS, ModelEntry, ModelStore, store_of

router = APIRouter(prefix="/api", tags=["run"])

MAX_CLASSES = 1000  # outputs of at most this many classes get probabilities


class RunRequest(RequestBody):
    input: InputSpec = Field(default_factory=InputSpec)
    maps: bool = Field(True, description="include every layer's feature maps (up to max_response_values)")


class ActivationsRequest(RequestBody):
    input: InputSpec = Field(default_factory=InputSpec)
    layer: str = Field(..., max_length=200, description="a layer name as in the run's `layers`")
    channels: tuple[int, int] | None = Field(None, description="[start, stop) of the channels to send (default all)")


class PredictRequest(RequestBody):
    pixels: list[float] = Field(..., max_length=4096,
                                description="the drawing: 32×32 (or 8×8) values in [0, 1], row-major")


def model_input(store: ModelStore, entry: ModelEntry, spec: InputSpec) -> tuple[Module, np.ndarray]:
    """Check the compute limits, build the model, make its input (call with the engine lock)."""
    check_compute(store, entry)
    with engine_errors("model_id", f"building {entry.name}"):
        model = store.runnable(entry)
    dtype = next((p.dtype for p in model.parameters()), np.dtype(np.float32))
    return model, make_input(spec, entry.input_shape, store.limits.max_input_values, dtype)


def _forward(model: Module, x: np.ndarray) -> tuple[dict[str, np.ndarray], Any]:
    """Every leaf layer's output and the model's output, from one forward pass."""
    captured: list[Any] = []
    handle = model.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        maps = inspect.activations(model, x)
    finally:
        handle.remove()
    return maps, captured[-1] if captured else None


def _output(output: Any) -> dict[str, Any]:
    """The model output's values, and class probabilities (softmax) for an ``(1, K)`` output."""
    first = output[0] if isinstance(output, tuple) else output
    if not isinstance(first, Tensor):
        return {"output": None, "probabilities": None, "prediction": None}
    values = first.numpy()
    out: dict[str, Any] = {"output": pack(values), "probabilities": None, "prediction": None}
    if values.ndim == 2 and values.shape[0] == 1 and 1 < values.shape[1] <= MAX_CLASSES:
        with no_grad():
            probs = F.softmax(Tensor.wrap(values.astype(np.float64)), dim=1).numpy()[0]
        out["probabilities"] = probs.tolist()
        out["prediction"] = int(values[0].argmax())
    return out


def run_payload(store: ModelStore, entry: ModelEntry, spec: InputSpec, maps: bool) -> dict[str, Any]:
    """The answer of ``/run``: input, output, probabilities and the layers' maps."""
    with store.engine:
        model, x = model_input(store, entry, spec)
        with engine_errors("input", f"running {entry.name}"):
            acts, output = _forward(model, x)
            graph = graph_of(entry, model)
            kinds = {path: type(m).__name__ for path, m in model.named_modules()}
    budget = store.limits.max_response_values
    layers = []
    for name, value in acts.items():
        row: dict[str, Any] = {"name": name, "type": kinds.get(split_call(name)[0], "?"), "shape": list(value.shape),
                               "input_from": graph.get(name), "map": None}
        if maps and value.size <= budget:
            row["map"] = pack(value[0])
            budget -= value.size
        layers.append(row)
    return finite({"model": entry.id, "input": pack(x[0]), **_output(output), "layers": layers, "input_name": INPUT})


@router.post("/models/{model_id}/run")
def run(model_id: str, request: RunRequest, http: Request) -> Response:
    """Run a forward pass. Answers ``{"model", "input", "output", "probabilities",
    "prediction", "layers": [{"name", "type", "shape", "input_from", "map"}]}``; arrays are
    ``{"shape", "data", "min", "max"}`` with ``data`` base64 little-endian float32. ``map`` is
    one layer's output without the batch dim, None once ``max_response_values`` are spent
    (ask ``/activations`` for it); ``input_from`` names what made its input, a name
    ``/trace`` takes: a layer, a block, an op of a block's own forward (``"layer1.0.add"``,
    as ``summary`` rows it) or ``"input"`` (the model input); None for anything else."""
    store = store_of(http)
    return answer(run_payload(store, store.get(model_id), request.input, request.maps))


@router.post("/models/{model_id}/activations")
def activations(model_id: str, request: ActivationsRequest, http: Request) -> Response:
    """One layer's feature maps (channels ``[start, stop)`` of its output, batch dropped):
    ``{"layer", "shape", "channels", "map"}``."""
    store = store_of(http)
    entry = store.get(model_id)
    with store.engine:
        model, x = model_input(store, entry, request.input)
        names = inspect.layers(model)
        path = split_call(request.layer)[0]
        if path not in names:
            raise ApiError(422, "validation", f"no layer {request.layer!r} in {entry.name}; layers: "
                                              f"{', '.join(names[:40])}", "layer")
        with engine_errors("layer", f"running {entry.name}"):
            value = inspect.activations(model, x, [path]).get(request.layer)
    if value is None:
        raise ApiError(422, "validation", f"layer {request.layer!r} produced no tensor output", "layer")
    count = value.shape[1] if value.ndim > 1 else 1
    start, stop = request.channels or (0, count)
    if not 0 <= start < stop <= count:
        raise ApiError(422, "validation", f"channels [{start}, {stop}) are out of range for layer {request.layer!r} "
                                          f"with {count} channels (0 ≤ start < stop ≤ {count})", "channels")
    part = value[0, start:stop] if value.ndim > 1 else value[0]
    if part.size > store.limits.max_response_values:
        raise ApiError(422, "limit", f"{part.size:,} values requested; one response carries at most "
                                     f"{store.limits.max_response_values:,}: ask for fewer channels", "channels")
    return answer(finite({"layer": request.layer, "shape": list(value.shape), "channels": [start, stop],
                          "map": pack(part)}))


@router.post("/predict")
def predict(request: PredictRequest, http: Request) -> Response:
    """The pretrained digits CNN on a drawing: the 32×32 bitmap is averaged to the 8×8
    digit image (as the UCI digits were made), then run like ``/run`` (with maps); adds
    ``digit`` (the 8×8 image, row-major)."""
    store = store_of(http)
    spec = InputSpec(source="drawing", pixels=request.pixels)
    digit = drawing_to_digit(request.pixels)
    return answer({**run_payload(store, store.get(DIGITS), spec, True), "digit": digit.ravel().tolist()})
