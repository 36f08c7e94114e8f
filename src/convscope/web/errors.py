"""Errors as JSON: every 4xx/5xx body is ``{"error": kind, "message": text, "field": name|null}``.

``kind`` is one of ``"validation"`` (a field is malformed), ``"not_found"``, ``"too_large"``
(a body over its size bound), ``"limit"`` (compute over a bound), ``"model"`` (the engine
refused: a shape rule, a spec or ONNX problem) and ``"internal"``. The message names the
field or thing, the rule and the numbers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("convscope.web")


class ApiError(Exception):
    """A request the server refuses: HTTP ``status``, a ``kind``, a message and the field at fault."""

    def __init__(self, status: int, kind: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.field = field


def body(kind: str, message: str, field: str | None = None) -> dict:
    return {"error": kind, "message": message, "field": field}


@contextlib.contextmanager
def engine_errors(field: str | None = None, what: str = "") -> Iterator[None]:
    """Turn the engine's refusals (ValueError and its subclasses ShapeError, SpecError,
    OnnxError) into a 422 naming ``field``; ``what`` prefixes the message."""
    try:
        yield
    except ApiError:
        raise
    except (ValueError, TypeError, IndexError) as err:
        prefix = f"{what}: " if what else ""
        raise ApiError(422, "model", f"{prefix}{err}", field) from err
    except MemoryError as err:
        raise ApiError(422, "limit", f"{what or 'the request'} ran out of memory", field) from err


def _field_name(error: dict) -> str:
    if error.get("type") == "json_invalid":  # its loc is ("body", character position)
        return "body"
    parts = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def _known_fields(request: Request, path: tuple) -> list[str]:
    """The fields the body model at ``path`` (``()``: the body itself) takes, for the message."""
    body_field = getattr(request.scope.get("route"), "body_field", None)
    model = getattr(getattr(body_field, "field_info", None), "annotation", None)
    for part in path:
        field = getattr(model, "model_fields", {}).get(part)
        model = getattr(field, "annotation", None)
    return list(getattr(model, "model_fields", {}))


def _describe(request: Request, error: dict) -> str:
    where = _field_name(error)
    if error.get("type") == "json_invalid":
        return f"body: not valid JSON ({error.get('ctx', {}).get('error', 'decode error')} at character " \
               f"{error.get('loc', ('', '?'))[-1]})"
    if error.get("type") == "extra_forbidden":
        path = tuple(error.get("loc", ()))[1:-1]  # loc is ("body", ..., the unknown name)
        known = _known_fields(request, path)
        holder = ".".join(map(str, path)) or "the body"
        return f"{where}: unknown field" + (f"; {holder} takes {', '.join(known)}" if known else "")
    return f"{where}: {error.get('msg', 'invalid')}"


def install(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(body(exc.kind, exc.message, exc.field), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors()) or [{"loc": ("body",), "msg": "invalid request"}]
        field = _field_name(errors[0])
        message = "; ".join(_describe(request, e) for e in errors[:5])
        return JSONResponse(body("validation", message, field), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "http"
        found = exc.status_code != 404
        message = str(exc.detail) if found else f"no such endpoint: {request.method} {request.url.path}"
        return JSONResponse(body(kind, message), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse(body("internal", f"internal error: {type(exc).__name__}: {exc}"), status_code=500)
