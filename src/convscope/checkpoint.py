"""Atomic ``.npz`` checkpoints: model state_dict, optimizer state, epoch, RNG state, config.

A checkpoint is one ``.npz`` (a zip of ``.npy`` arrays, readable with ``numpy.load``) holding
the arrays ``a0, a1, …`` and ``__meta__``: UTF-8 JSON with the nested structure, in which
every array appears as ``{"__array__": i}``, plus a SHA-256 digest of all arrays.

Writes are atomic: the file is written to a temporary name in the same folder, flushed to
disk, read back and verified, and only then renamed over the target with :func:`os.replace`.
A crash at any point leaves the previous checkpoint intact. Loading checks the zip, the
metadata and the digest, and reports a truncated or corrupt file as a
:class:`CheckpointError` naming the file — never a crash deep inside NumPy.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .atomic import write_atomic
from .tensor import Tensor

FORMAT = "convscope-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: truncated, corrupt, or not a checkpoint."""


@dataclass
class Checkpoint:
    """Everything needed to continue training exactly where it stopped.

    Attributes:
        epoch: epochs completed.
        model: the model's ``state_dict()`` (name → ndarray).
        optimizer: the optimizer's ``state_dict()`` (nested; arrays anywhere).
        scheduler: the learning-rate scheduler's ``state_dict()``, or ``None``.
        rng: the engine's RNG state (:func:`convscope.random.get_rng_state`).
        config: the training configuration (JSON-compatible), including the model's name.
        extra: anything else JSON/array-like (history, early-stopping counters, …).
    """

    epoch: int
    model: dict[str, np.ndarray]
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


# --- nested structure <-> (JSON skeleton, arrays) --------------------------------------------
def _encode(obj: Any, arrays: list[np.ndarray]) -> Any:
    """Replace every array in ``obj`` by a reference into ``arrays``; keep key, tuple and shape
    types (``np.asarray(order="C")``, as ``np.ascontiguousarray`` would make a 0-d array 1-d)."""
    if isinstance(obj, Tensor):
        arrays.append(np.asarray(obj.numpy(), order="C"))
        return {"__array__": len(arrays) - 1, "tensor": True}
    if isinstance(obj, np.ndarray):
        arrays.append(np.asarray(obj, order="C"))
        return {"__array__": len(arrays) - 1}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, arrays) for k, v in obj.items()}
        return {"__items__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"checkpoint: cannot store a value of type {type(obj).__name__}")


def _decode(obj: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__array__" in obj:
        arr = arrays[f"a{obj['__array__']}"]
        return Tensor(arr) if obj.get("tensor") else arr
    if "__items__" in obj:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in obj["__items__"]}
    if "__tuple__" in obj:
        return tuple(_decode(v, arrays) for v in obj["__tuple__"])
    return {k: _decode(v, arrays) for k, v in obj.items()}


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays, key=lambda k: int(k[1:])):
        arr = arrays[key]
        h.update(f"{key}:{arr.dtype.str}:{arr.shape};".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


# --- writing ----------------------------------------------------------------------------------
def _write_npz(fh: BinaryIO, arrays: Mapping[str, np.ndarray]) -> None:
    """Write the zip (uncompressed: trained weights do not compress)."""
    np.savez(fh, **arrays)


def save(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temp file in the same folder, verify,
    :func:`os.replace`). On any failure the temp file is removed and the file previously at
    ``path`` is left untouched. Returns the path."""
    arrays: list[np.ndarray] = []
    skeleton = _encode(vars(checkpoint), arrays)
    named = {f"a{i}": arr for i, arr in enumerate(arrays)}
    meta = {"format": FORMAT, "version": VERSION, "sha256": _digest(named), "checkpoint": skeleton}
    named["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    # read back before the rename: what replaces the previous checkpoint is known to load
    return write_atomic(path, lambda fh: _write_npz(fh, named), verify=load)


# --- reading ----------------------------------------------------------------------------------
def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError, OSError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({type(exc).__name__}: {exc}); "
                              "the file was not changed") from exc


def load(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint written by :func:`save`.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: truncated or corrupt file, not a convscope checkpoint, unknown
            version, or arrays that do not match the recorded digest.
    """
    path = Path(path)
    arrays = _read_arrays(path)
    raw = arrays.pop("__meta__", None)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{path}: not a convscope checkpoint (no __meta__ record); found {sorted(arrays)[:5]}")
    try:
        meta = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a convscope checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {meta.get('version')} is not supported "
                              f"(this convscope reads version {VERSION})")
    if _digest(arrays) != meta.get("sha256"):
        raise CheckpointError(f"{path}: corrupt checkpoint (the arrays do not match the recorded SHA-256)")
    try:
        fields = _decode(meta["checkpoint"], arrays)
        return Checkpoint(**fields)
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: incomplete checkpoint record ({type(exc).__name__}: {exc})") from exc
