"""``/api/models``: the list of models, one model's summary, and the server's limits."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .encode import answer, finite
from .errors import ApiError
from .guard import check_compute, summary_of
from .store import store_of

router = APIRouter(prefix="/api", tags=["models"])


@router.get("/models")
def list_models(request: Request) -> Response:
    """Every model the page can pick: ``{"models": [{"id", "name", "kind", "description",
    "input_shape"}], "default": id}``. ``kind`` is ``pretrained`` (the trained digits CNN),
    ``zoo`` (random weights, seed 0), ``spec`` or ``onnx`` (uploads), ``run`` or ``python``
    (a training run or ``FILE.py:FUNCTION`` given to ``convscope serve``)."""
    store = store_of(request)
    return answer({"models": store.entries(), "default": request.app.state.default_model})


@router.get("/models/{model_id}/summary")
def model_summary(model_id: str, request: Request) -> Response:
    """The summary of the model at its input shape (``convscope.summary(...).to_dict()``:
    ``layers`` with ``output_shape``, ``weight_shape``, ``params``, ``macs``, ...; ``totals``)
    plus ``model`` (its listing) and ``runnable``: ``{"ok", "reason"}`` — whether this server
    runs it (feature maps, traces) within its compute limits."""
    store = store_of(request)
    entry = store.get(model_id)
    with store.engine:
        summary = summary_of(entry)
        try:
            check_compute(store, entry)
            runnable = {"ok": True, "reason": None}
        except ApiError as err:
            runnable = {"ok": False, "reason": err.message}
    return answer(finite({**summary, "model": entry.listing(), "runnable": runnable}))


@router.get("/limits")
def limits(request: Request) -> Response:
    """The server's size and compute bounds (see ``convscope.web.limits``)."""
    return answer(store_of(request).limits.to_dict())
