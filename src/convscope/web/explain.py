"""``/explain``: the topics of :func:`convscope.explain` and their computed answers.

Answers are computed in the explain worker process (:mod:`.explain_worker`), capped in
time and memory; options are checked here first against the topic's own option list.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from .body import RequestBody
from .encode import answer, finite
from .errors import ApiError

router = APIRouter(prefix="/api/explain", tags=["explain"])

MAX_TEXT = 200  # characters of a text option

Value = Any  # checked against the topic's own options in options_of (a JSON number, string, bool or null)


class ExplainRequest(RequestBody):
    options: dict[str, Value] = Field(default_factory=dict, description="the topic's options by name; missing ones "
                                                                         "take their defaults (GET /api/explain)")


def _topics() -> dict[str, Any]:
    from ..explain import TOPICS

    return TOPICS


def _kind(parse: Any) -> str:
    return parse.__name__ if isinstance(parse, type) else "str"


def options_of(topic: Any, given: dict[str, Value]) -> dict[str, Any]:
    """``given`` checked and converted with the topic's own parsers (a JSON string for an int
    option is parsed as the command line would); 422 naming the option otherwise."""
    known = {o.name: o for o in topic.options}
    out: dict[str, Any] = {}
    for name, value in given.items():
        option = known.get(name)
        field = f"options.{name}"
        if option is None:
            raise ApiError(422, "validation", f"explain {topic.name} has no option {name!r}; options: "
                                              f"{', '.join(known)}", field)
        want = option.parse if isinstance(option.parse, type) else str
        if value is None or isinstance(value, want) and not (want is int and isinstance(value, bool)):
            out[name] = value
        elif isinstance(value, str) and len(value) <= MAX_TEXT:
            try:
                out[name] = option.parse(value)
            except (ValueError, TypeError) as err:
                raise ApiError(422, "validation", f"{field}: expected {_kind(option.parse)}, got {value!r} ({err})",
                               field) from err
        elif want is float and isinstance(value, int) and not isinstance(value, bool):
            out[name] = float(value)
        else:
            raise ApiError(422, "validation", f"{field}: expected {_kind(option.parse)}, got {value!r}", field)
        if isinstance(out[name], str) and len(out[name]) > MAX_TEXT:
            raise ApiError(422, "validation", f"{field}: at most {MAX_TEXT} characters", field)
    return out


@router.get("")
def topics() -> Response:
    """The topics: ``{"topics": [{"name", "title", "summary", "aliases", "options": [{"name",
    "type", "default", "help"}]}]}``."""
    rows = [{"name": t.name, "title": t.title, "summary": t.summary, "aliases": list(t.aliases),
             "options": [{"name": o.name, "type": _kind(o.parse), "default": o.default, "help": o.help}
                         for o in t.options]} for t in _topics().values()]
    return answer({"topics": rows})


@router.post("/{topic}")
async def explain(topic: str, request: ExplainRequest, http: Request) -> Response:
    """The explanation of ``topic``: ``{"topic", "title", "facts", "claims", "ok", "text"}``
    — ``text`` is the rendered answer, ``facts`` the numbers the engine computed, ``claims``
    each statement with whether the computation bore it out."""
    known = _topics()
    found = known.get(topic) or next((t for t in known.values() if topic in t.aliases), None)
    if found is None:
        raise ApiError(404, "not_found", f"no explain topic {topic!r}; topics: {', '.join(known)}", "topic")
    options = options_of(found, request.options)
    worker = http.app.state.explain_worker
    return answer(finite(await run_in_threadpool(worker.run, found.name, options)))
