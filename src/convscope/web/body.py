"""The base of every JSON request body: a field the endpoint does not take is refused (422
naming it), not silently ignored; a misplaced option would otherwise run with its default."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
