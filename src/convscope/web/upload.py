"""Uploads: a spec (text) or an ONNX file (bytes), parsed in memory, never written to disk.

A spec is parsed and built with meta parameters first (no data, no random init) so its
size is known before any memory is spent; its layers after unrolling ``repeat`` are
counted from the parse tree before building. An ONNX file is read by protobuf (no pickle)
and refused if any tensor points at external data (which would read a file of the
server's). Models over the compute limits are kept for their summary but not run.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from ..nn._utils import meta_parameters
from .body import RequestBody
from .encode import answer
from .errors import ApiError, engine_errors
from .guard import summary_of
from .limits import Limits
from .store import ModelEntry, ModelStore, content_id, store_of

router = APIRouter(prefix="/api/models", tags=["upload"])


class SpecUpload(RequestBody):
    text: str = Field(..., description="the spec text (see docs/spec.md), e.g. 'input 1x8x8\\nconv 4 k3\\nrelu'")
    name: str | None = Field(None, max_length=80, description="a display name (default: 'spec')")


def unrolled_layers(statements: list[Any], stop: int) -> int:
    """Statements a spec's parse tree builds once ``repeat N { ... }`` blocks are unrolled
    (counting stops a little past ``stop``). A repeat count the builder would refuse counts once."""
    total = 0
    stack = [(statements, 1)]
    while stack and total <= stop:
        body, times = stack.pop()
        for stmt in body:
            total += times
            if stmt.body is None:
                continue
            count = stmt.words[1].text if stmt.keyword == "repeat" and len(stmt.words) == 2 else "1"
            stack.append((stmt.body, times * (int(count) if count.isdigit() else 1)))
    return total


def spec_entry(text: str, name: str, limits: Limits) -> ModelEntry:
    """The store entry of a spec: counted, then built with meta parameters (call with the engine lock)."""
    from ..analyze import summary
    from ..models import resolve_model
    from ..spec import SpecError, load_spec
    from ..spec.syntax import parse

    source = text if text.endswith("\n") else text + "\n"  # a newline: always read as text, never as a path
    try:
        layers = unrolled_layers(parse(source), limits.max_spec_layers)
    except SpecError as err:
        raise ApiError(422, "model", str(err), "text") from err
    if layers > limits.max_spec_layers:
        raise ApiError(422, "limit", f"the spec builds more than {limits.max_spec_layers:,} layers once repeat "
                                     f"blocks are unrolled (at least {layers:,})", "text")
    with engine_errors("text"), meta_parameters():
        meta = load_spec(source, source=name)
    input_shape = tuple(meta.input_shape)

    return ModelEntry(content_id("spec", source.encode()), name, "spec", input_shape,
                      f"uploaded spec, {layers} statements (random weights, seed 0)",
                      lambda: resolve_model(source, weights=True, seed=0).module,
                      lambda: summary(meta, input_shape))


@router.post("/spec")
def upload_spec(upload: SpecUpload, request: Request) -> Response:
    """Build a model from a spec. Answers ``{"model": listing, "summary": ...}`` (201);
    a malformed spec is a 422 whose message starts ``name:line:column``."""
    store = store_of(request)
    size = len(upload.text.encode())
    if size > store.limits.max_spec_bytes:
        raise ApiError(413, "too_large", f"the spec is {size:,} bytes; the limit is {store.limits.max_spec_bytes:,}",
                       "text")
    with store.engine:
        entry = store.add(spec_entry(upload.text, upload.name or "spec", store.limits))
        summary = summary_of(entry)
    return answer({"model": entry.listing(), "summary": summary}, 201)


# --- ONNX ----------------------------------------------------------------------------------------
def external_tensors(proto: Any, onnx: Any) -> list[str]:
    """Names of the tensors of ``proto`` (initializers, attribute tensors, subgraphs and
    functions) whose data lives in an external file."""
    tensors: list[Any] = []
    stack: list[tuple[str, Any]] = [("graph", proto.graph)] + [("nodes", f.node) for f in proto.functions]
    while stack:
        kind, item = stack.pop()
        if kind == "graph":
            tensors += list(item.initializer) + [s.values for s in item.sparse_initializer]
            stack.append(("nodes", item.node))
            continue
        for node in item:
            for attribute in node.attribute:
                tensors += ([attribute.t] if attribute.HasField("t") else []) + list(attribute.tensors)
                stack += [("graph", g) for g in ([attribute.g] if attribute.HasField("g") else [])]
                stack += [("graph", g) for g in attribute.graphs]
    return [t.name or "(unnamed)" for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL]


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1x8x8"`` → ``(1, 8, 8)``; a 422 naming ``input_shape`` otherwise."""
    if not re.fullmatch(r"[1-9]\d{0,5}(x[1-9]\d{0,5}){0,4}", text):
        raise ApiError(422, "validation", f"input_shape must look like 3x224x224 (positive sizes, no batch dim), "
                                          f"got {text!r}", "input_shape")
    return tuple(int(p) for p in text.split("x"))


def onnx_entry(data: bytes, name: str, shape_text: str | None) -> ModelEntry:
    """The store entry of an ONNX file's bytes (call with the engine lock)."""
    try:
        from ..interop.onnx_load import load_onnx, require_onnx

        onnx = require_onnx()
    except ImportError as err:
        raise ApiError(501, "unsupported", str(err), "body") from err
    from ..analyze import summary

    try:
        proto = onnx.load_model_from_string(data)
    except Exception as err:  # protobuf's DecodeError and friends share no useful base class
        raise ApiError(422, "model", f"not a readable ONNX model: {err}", "body") from err
    external = external_tensors(proto, onnx)
    if external:
        raise ApiError(422, "model", f"tensor(s) {', '.join(external[:5])} keep their data in external files; upload "
                                     "a self-contained model (onnx.save with save_as_external_data=False)", "body")
    with engine_errors("body", "ONNX"):
        model = load_onnx(proto)
    input_shape = parse_shape(shape_text) if shape_text else model.input_shape
    declared = model.graph_inputs[0].dims if model.graph_inputs else None
    if shape_text and declared:  # the graph's rank (its dims are None where symbolic) checks the sizes given
        graph_input = model.graph_inputs[0].name
        written = "×".join("?" if d is None else str(d) for d in declared)
        if len(input_shape) != len(declared) - 1:
            raise ApiError(422, "validation", f"input_shape: the graph's input {graph_input!r} is {written} ("
                                              f"{len(declared)} dims with the batch); expected its {len(declared) - 1} "
                                              f"sizes without the batch, got {shape_text!r}", "input_shape")
    if input_shape is None:
        raise ApiError(422, "validation", "the graph's input shape is not fully known; give input_shape, "
                                          "e.g. ?input_shape=1x8x8", "input_shape")
    return ModelEntry(content_id("onnx", data + (shape_text or "").encode()), name, "onnx", tuple(input_shape),
                      f"uploaded ONNX graph, opset {model.opset}, {len(model.steps)} nodes", lambda: model,
                      lambda: summary(model, input_shape), model=model)


def _add_onnx(store: ModelStore, data: bytes, name: str, shape_text: str | None) -> dict:
    with store.engine:
        entry = store.add(onnx_entry(data, name, shape_text))
        return {"model": entry.listing(), "summary": summary_of(entry)}


@router.post("/onnx", openapi_extra={"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
async def upload_onnx(request: Request, name: str = Query("model.onnx", max_length=80),
                      input_shape: str | None = Query(None, description="input shape without batch, e.g. 1x8x8; "
                                                                            "needed when the graph's is symbolic")
                      ) -> Response:
    """Load an ONNX file sent as the raw request body (``application/octet-stream``, at most
    ``max_onnx_bytes``). Answers ``{"model", "summary"}`` (201); an unsupported operator is
    a 422 naming the node and the operator."""
    store = store_of(request)
    data = await request.body()
    if not data:
        raise ApiError(422, "validation", "the request body must be the bytes of an .onnx file", "body")
    if len(data) > store.limits.max_onnx_bytes:
        raise ApiError(413, "too_large", f"the ONNX file is {len(data):,} bytes; the limit is "
                                         f"{store.limits.max_onnx_bytes:,}", "body")
    return answer(await run_in_threadpool(_add_onnx, store, data, name, input_shape), 201)
