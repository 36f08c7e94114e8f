"""The web explorer: ``convscope serve`` starts a local page where clicking any number of a
model shows how it was made, backed by a documented JSON API (``/docs``).

Needs the ``web`` extra (FastAPI and uvicorn): ``pip install convscope[web]``. Importing
``convscope`` (or this package) does not import FastAPI; :func:`create_app` does::

    from convscope.web import create_app
    app = create_app()          # an ASGI app: uvicorn.run(app, host="127.0.0.1", port=8000)

See ``docs/web.md`` for the page, the API and the limits (:mod:`convscope.web.limits`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """:func:`convscope.web.app.create_app` (imported on call: it needs FastAPI)."""
    from .app import create_app as create

    return create(*args, **kwargs)
