"""The models one server knows: the pretrained digits CNN, the zoo, and uploads.

Shared state lives here and nowhere else. The engine keeps process-wide state while it runs
(the grad mode, op observers, hooks a trace adds to a model, parameters it freezes), so
every engine computation of the server runs under :attr:`ModelStore.engine`, one at a time;
the store's own tables are guarded by a second lock. Uploaded models are kept per id (the
hash of what was uploaded) in a bounded least-recently-used table; zoo models are built
with seeded random weights on first run and a few are kept.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import zoo
from ..models import ResolvedModel
from ..nn.module import Module
from .errors import ApiError
from .limits import Limits

DIGITS = "digits"


@dataclass
class ModelEntry:
    """One model the page can pick. ``build`` makes the runnable model (seeded weights for
    zoo models and specs); ``summary`` (the summary's ``to_dict``) is filled on first use."""

    id: str
    name: str
    kind: str  # "pretrained", "zoo", "spec" or "onnx" (uploads), "run" or "python" (serve's MODEL)
    input_shape: tuple[int, ...] | None
    description: str
    build: Callable[[], Module] = field(repr=False)
    summarize: Callable[[], Any] = field(repr=False)
    model: Module | None = field(default=None, repr=False)
    summary: dict | None = field(default=None, repr=False)
    graph: dict[str, str | None] | None = field(default=None, repr=False)

    def listing(self) -> dict:
        return {"id": self.id, "name": self.name, "kind": self.kind, "description": self.description,
                "input_shape": None if self.input_shape is None else list(self.input_shape)}


def content_id(kind: str, data: bytes) -> str:
    """``"spec:1a2b3c4d5e6f"``: the same upload always gets the same id."""
    return f"{kind}:{hashlib.sha256(data).hexdigest()[:12]}"


class ModelStore:
    """Model entries by id, with the engine lock every computation holds."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.engine = threading.Lock()
        self._lock = threading.Lock()
        self._uploads: OrderedDict[str, ModelEntry] = OrderedDict()
        self._built: OrderedDict[str, None] = OrderedDict()  # zoo ids whose model is built, oldest first
        self._builtin: dict[str, ModelEntry] = {DIGITS: _digits_entry()}
        self._zoo_names = zoo.names()

    # --- looking up ---------------------------------------------------------------------
    def entries(self) -> list[dict]:
        """Listings of every model: the pretrained one, the zoo, then uploads (newest last)."""
        builtin = [self._builtin[DIGITS].listing()]
        zoo_rows = [{"id": f"zoo:{n}", "name": n, "kind": "zoo", "description": zoo.entry(n).description,
                     "input_shape": list(zoo.entry(n).input_shape)} for n in self._zoo_names]
        with self._lock:
            uploads = [e.listing() for e in self._uploads.values()]
        return builtin + zoo_rows + uploads

    def get(self, model_id: str) -> ModelEntry:
        """The entry of ``model_id``; a 404 naming the known kinds of id otherwise."""
        with self._lock:
            if model_id in self._builtin:
                return self._builtin[model_id]
            if model_id in self._uploads:
                self._uploads.move_to_end(model_id)
                return self._uploads[model_id]
            if model_id.startswith("zoo:") and model_id[4:] in self._zoo_names:
                entry = _zoo_entry(model_id[4:])
                self._builtin[model_id] = entry
                return entry
        raise ApiError(404, "not_found", f"no model {model_id!r}: ids are 'digits', 'zoo:NAME' (GET /api/models) or "
                                         "the id an upload returned (uploads are kept for the "
                                         f"{self.limits.max_uploads} most recently used)", "model_id")

    def add(self, entry: ModelEntry) -> ModelEntry:
        """Keep an uploaded model (an existing one with the same id is reused)."""
        with self._lock:
            if entry.id in self._uploads:
                self._uploads.move_to_end(entry.id)
                return self._uploads[entry.id]
            self._uploads[entry.id] = entry
            while len(self._uploads) > self.limits.max_uploads:
                self._uploads.popitem(last=False)
            return entry

    # --- building (call with the engine lock held) ----------------------------------------
    def runnable(self, entry: ModelEntry) -> Module:
        """The built model of ``entry`` in eval mode; builds it on first use."""
        if entry.model is None:
            entry.model = entry.build().eval()
            if entry.kind == "zoo":
                self._remember_built(entry)
        elif entry.kind == "zoo":
            with self._lock:
                if entry.id in self._built:
                    self._built.move_to_end(entry.id)
        return entry.model

    def _remember_built(self, entry: ModelEntry) -> None:
        with self._lock:
            self._built[entry.id] = None
            while len(self._built) > self.limits.max_built:
                old, _ = self._built.popitem(last=False)
                if old in self._builtin:
                    self._builtin[old].model = None


def _digits_entry() -> ModelEntry:
    from ..pretrained import pretrained
    from ..pretrained.digits import INPUT_SHAPE

    def summarize() -> Any:
        from ..analyze import summary

        return summary(pretrained(DIGITS), INPUT_SHAPE)

    return ModelEntry(DIGITS, "digits (pretrained)", "pretrained", tuple(INPUT_SHAPE),
                      "The shipped digits CNN, trained on the embedded 8×8 UCI digits (99.72% test accuracy)",
                      lambda: pretrained(DIGITS), summarize)


def _zoo_entry(name: str) -> ModelEntry:
    from ..analyze import summary
    from ..models import resolve_model

    info = zoo.entry(name)
    return ModelEntry(f"zoo:{name}", name, "zoo", tuple(info.input_shape),
                      f"{info.description} (random weights, seed 0)",
                      lambda: resolve_model(name, weights=True, seed=0).module,  # the same weights every build
                      lambda: summary(name))


def local_entry(found: ResolvedModel) -> ModelEntry:
    """The entry of a model ``convscope serve`` loaded from this machine (a training run, a
    ``FILE.py:FUNCTION`` builder), with the weights it came with."""
    from ..analyze import summary

    model, shape = found.module, found.input_shape
    if shape is None:
        raise ValueError(f"{found.name} has no input shape of its own, which the explorer needs: give it an "
                         "input_shape attribute, or serve a spec or ONNX file")
    origin = "the weights its training run saved" if found.kind == "run" else "the weights its Python function gave"
    return ModelEntry(f"{found.kind}:{found.name}", found.name, found.kind, shape, f"{found.name}, with {origin}",
                      lambda: model, lambda: summary(model, shape), model=model)


def store_of(request: Any) -> ModelStore:
    """The store of the app serving ``request``."""
    return request.app.state.store
