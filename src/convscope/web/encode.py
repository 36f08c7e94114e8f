"""Arrays and answers on the wire.

A feature map travels as ``{"shape": [...], "data": base64}``: its values as little-endian
float32, row-major (``new Float32Array`` in the page, ``np.frombuffer(b64decode(data),
"<f4").reshape(shape)`` in Python). Answers are serialised with ``json.dumps`` directly:
FastAPI's generic encoder would walk every number of a large trace a second time.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np
from fastapi.responses import Response


def pack(array: np.ndarray) -> dict[str, Any]:
    """``{"shape", "data", "min", "max"}`` of ``array`` (min/max None when it has no finite value)."""
    values = np.ascontiguousarray(array, dtype="<f4")
    finite = values[np.isfinite(values)]
    return {"shape": list(values.shape), "data": base64.b64encode(values.tobytes()).decode("ascii"),
            "min": float(finite.min()) if finite.size else None, "max": float(finite.max()) if finite.size else None}


def unpack(packed: dict[str, Any]) -> np.ndarray:
    """The inverse of :func:`pack` (used by tests and Python clients)."""
    return np.frombuffer(base64.b64decode(packed["data"]), "<f4").reshape(packed["shape"])


def finite(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None (JSON has no NaN or infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def answer(payload: dict[str, Any], status: int = 200) -> Response:
    """A JSON response of ``payload`` (plain Python data, finite floats)."""
    return Response(json.dumps(payload, separators=(",", ":")), status_code=status, media_type="application/json")
