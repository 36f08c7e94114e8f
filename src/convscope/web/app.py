"""The web explorer's ASGI app: ``create_app()`` → a FastAPI app serving the page and the API.

The page is three static files shipped in the package (``static/``), read once at startup;
the server opens no other file. The API is described at ``/docs`` (and ``/openapi.json``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response

from . import apidocs, errors, explain, models, playground, run, trace, upload
from .bodylimit import BodyLimit
from .explain_worker import ExplainWorker
from .limits import Limits
from .store import ModelStore

STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}


def _static_files() -> dict[str, bytes]:
    folder = resources.files("convscope.web").joinpath("static")
    return {name: folder.joinpath(name).read_bytes() for name in STATIC}


def create_app(limits: Limits | None = None, default_model: str = "digits") -> FastAPI:
    """The app: a fresh model store with ``limits`` (default :class:`Limits`), the page at
    ``/`` (showing ``default_model`` first: ``"digits"``, ``"zoo:NAME"``), the API under
    ``/api``. The explain worker process starts on the first explain request and stops
    with the app."""
    limits = limits or Limits()
    worker = ExplainWorker(limits.explain_seconds, limits.explain_memory_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            worker.stop()

    app = FastAPI(title="convscope", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="A local page where clicking any number shows how it was made.")
    app.state.store = ModelStore(limits)
    app.state.explain_worker = worker
    app.state.default_model = default_model
    try:
        app.state.store.get(default_model)  # an unknown default fails here, not in the page
    except errors.ApiError as err:
        raise ValueError(err.message) from None
    errors.install(app)
    for module in (models, upload, run, trace, playground, explain):
        app.include_router(module.router)
    files = _static_files()

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return Response(files["index.html"], media_type=STATIC["index.html"], headers=_NO_STORE)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC:  # a fixed set of names: no path ever reaches the file system
            raise errors.ApiError(404, "not_found", f"no static file {name!r}", "name")
        return Response(files[name], media_type=STATIC[name], headers=_NO_STORE)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(apidocs.render(app.openapi()))

    app.add_middleware(BodyLimit, limit_for=lambda path: limits.max_onnx_bytes if path == "/api/models/onnx"
                       else limits.max_json_bytes)
    return app


_NO_STORE = {"cache-control": "no-cache"}


def _version() -> str:
    from .. import __version__

    return __version__
