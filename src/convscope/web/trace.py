"""``/trace``: how one value of one layer was made (:func:`convscope.trace`), for the page's
side panel: the reads, weights and products, bias and sum (or the pooling winner), the
receptive field on the input, the sum per input channel, and which layer to step into.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field

from ..trace import WeightedSum
from ..trace import trace as trace_value
from ..trace.path import strongest_read
from ..trace.steps import plain
from .body import RequestBody
from .encode import answer, finite, pack
from .errors import ApiError, engine_errors
from .guard import INPUT, split_call
from .inputs import InputSpec
from .run import model_input
from .store import store_of

router = APIRouter(prefix="/api", tags=["trace"])


class TraceRequest(RequestBody):
    input: InputSpec = Field(default_factory=InputSpec)
    layer: str = Field(..., max_length=200,
                       description="module path as in named_modules(), e.g. '2' or 'layer1.0.conv1'; 'path#2' is "
                                   "the layer's second call")
    index: list[int] = Field(..., min_length=1, max_length=8,
                             description="full index into the layer's output, batch first, e.g. [0, 5, 3, 4]")
    influence: bool = Field(True, description="also send the input cells that influence the value")


def channel_sums(terms: list[dict]) -> list[dict[str, Any]] | None:
    """Per input channel of a convolution's terms: ``{"channel", "sum", "terms"}`` (exact sums)."""
    if not terms or len(terms[0]["read"]["index"]) < 3:
        return None
    by_channel: dict[int, list[float]] = {}
    for term in terms:
        by_channel.setdefault(term["read"]["index"][1], []).append(term["product"] or 0.0)
    return [{"channel": c, "sum": math.fsum(p), "terms": len(p)} for c, p in sorted(by_channel.items())]


def _influence(mask: np.ndarray, box: Any) -> dict[str, Any]:
    """The influence mask as an image: channels merged for a ``(1, C, H, W)`` input."""
    image = mask[0].any(axis=0) if mask.ndim == 4 else mask[0]
    return {"input_shape": list(mask.shape), "count": int(mask.sum()), "receptive_box": box,
            "mask": pack(image.astype(np.float32))}


@router.post("/models/{model_id}/trace")
def trace(model_id: str, request: TraceRequest, http: Request) -> Response:
    """Trace one value: ``convscope.trace(...).to_dict()`` (``value``, ``recomputed``, ``step``
    with its ``terms``/``reads``, ``bias``, ``winner``, ...) plus ``input_from`` (the name of
    what made the values the reads index, from the trace's ``source``: a layer, an op row,
    ``"input"`` for the model input), ``channel_sums`` (a
    convolution's sum per input channel), ``influence`` (``count``, ``receptive_box`` and the
    ``mask`` image of the input cells that influence the value), ``product_sum`` (a weighted
    sum's Σ products, exactly rounded), ``terms_total`` and ``strongest`` (``{"layer",
    "index"}``: the next step of :meth:`~convscope.trace.Trace.path`, the read that
    contributes most; ``"input"`` when it is a cell of the model input). A
    weighted sum of more than ``max_trace_terms`` terms sends the largest products only
    (``terms_truncated``)."""
    store = store_of(http)
    entry = store.get(model_id)
    if not request.layer:
        raise ApiError(422, "validation", "layer must name a layer, not the whole model ('')", "layer")
    with store.engine:
        model, x = model_input(store, entry, request.input)
        path, call = split_call(request.layer)
        known = path in dict(model.named_modules())
        with engine_errors("index" if known else "layer"):
            t = trace_value(model, x, path, request.index, call=call)
            out = t.to_dict()
            out["product_sum"] = t.step.product_sum() if isinstance(t.step, WeightedSum) else None
            if request.influence:
                out["influence"] = _influence(t.influence(), _box(t))
            strongest = strongest_read(t)
    out["strongest"] = None if strongest is None else {"layer": input_from(plain(strongest[0])),
                                                       "index": list(strongest[1])}
    step = out["step"]
    terms = step.get("terms")
    out["terms_total"] = len(terms) if terms is not None else len(step.get("reads") or step.get("operands")
                                                                    or [step.get("read")])
    out["channel_sums"] = channel_sums(terms) if terms else None
    out["terms_truncated"] = False
    if terms is not None and len(terms) > store.limits.max_trace_terms:
        keep = sorted(terms, key=lambda term: -abs(term["product"] or 0.0))[:store.limits.max_trace_terms]
        step["terms"] = keep
        out["terms_truncated"] = True
    out["input_from"] = input_from(out["source"])
    out["model"] = entry.id
    out["layer"] = request.layer
    return answer(finite(out))


def input_from(source: dict | None) -> str | None:
    """The name ``/trace`` takes for what made the values a step read (a trace's ``source``):
    a layer (``"path#k"`` for its k-th call), an op row, ``"input"`` for the model input; None
    for a parameter, a constant or a combination's operands (each names its own)."""
    if source is None or source["origin"] not in ("input", "layer", "op"):
        return None
    if source["origin"] == "input":
        return INPUT
    return f"{source['name']}#{source['call'] + 1}" if source["call"] else source["name"]


def _box(t: Any) -> Any:
    box = t.receptive_box()
    return None if box is None else [list(b) for b in box]
