"""What a MODEL names: the one rule that ``convscope.summary`` and every command taking a
model (summary, trace, viz, serve, export-xlsx) follow.

A model is a convscope or torch module, or text naming one:

- ``digits``: the shipped trained digits CNN (:func:`convscope.pretrained`);
- a zoo name (``resnet18``; ``convscope zoo`` lists them);
- ``FILE.py:FUNCTION``: a Python file whose function, called without arguments, returns a
  convscope or torch module;
- a training run's folder (``convscope train --out``) or its ``checkpoint.npz``: the model
  it trained, with its weights (:func:`convscope.train.load_run`);
- an ``.onnx`` file;
- a spec file (``docs/spec.md``), or a spec's text (it holds a line break).

:func:`model_kind` tells which of these a text names without loading anything, and refuses
with a one-line ValueError what names none of them (naming the argument and what a MODEL
may be); :func:`resolve_model` loads it. Heavy packages (torch, onnx) are imported only by
the branch that needs them.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import random as cs_random
from .nn._utils import meta_parameters
from .nn.module import Module

DIGITS = "digits"

EXPECTED = ("'digits' (the shipped trained CNN), a zoo name (convscope zoo lists them), a spec or .onnx file, "
            "FILE.py:FUNCTION returning a torch or convscope module, or a training run's folder "
            "(convscope train --out)")
"""What MODEL may be, for help texts and error messages."""

TORCH_FILES = (".pt", ".pth", ".ckpt", ".pkl")
"""Suffixes of pickled PyTorch files (``torch.save``), refused with what to do instead."""


@dataclass(frozen=True)
class ResolvedModel:
    """A model and what the user's MODEL says about it.

    ``module``: the convscope module. ``input_shape``: one sample's shape without the batch
    dim, None when the model does not declare one (a bare module, a torch module, an ONNX
    graph with symbolic sizes). ``name``: how to show it (the zoo name, the file's name, the
    run's folder, ``FILE.py:FUNCTION``, the module's class). ``kind``: what named it:
    ``"digits"``, ``"zoo"``, ``"python"``, ``"run"``, ``"onnx"`` or ``"spec"`` for text (see
    :func:`model_kind`), ``"module"`` or ``"torch"`` for a module passed in.
    """

    module: Module
    input_shape: tuple[int, ...] | None
    name: str
    kind: str

    @property
    def initialised(self) -> bool:
        """Whether the weights are a seeded initialisation (a zoo model or a spec), rather
        than trained, loaded or the caller's own."""
        return self.kind in ("zoo", "spec")

    def sample_shape(self, given: Sequence[Any] | None, caller: str) -> tuple[Any, ...]:
        """``given`` (one sample's shape, no batch) if any, else the model's own; a ValueError
        from ``caller`` naming the model when there is neither."""
        shape = tuple(given or self.input_shape or ())
        if not shape:
            raise ValueError(f"{caller}: {self.name} has no input shape of its own: give one (input_shape=(3, 224, "
                             "224), or --input 3x224x224 on the command line: one sample, without batch)")
        return shape


def model_kind(model: str | os.PathLike) -> str:
    """Which kind of model the text ``model`` names (``"digits"``, ``"zoo"``, ``"python"``,
    ``"run"``, ``"onnx"`` or ``"spec"``), checked without loading it.

    Raises a ValueError naming ``model`` and what a MODEL may be for empty text, a ``.py``
    file without ``:FUNCTION``, a missing file, a path that is no regular file (a pipe), a
    folder that holds no training run, and a name that is not in the zoo (with the closest
    names)."""
    from . import zoo
    from .train import is_run

    text = os.fspath(model)
    if "\n" in text:
        return "spec"
    if not text.strip():
        raise ValueError(f"MODEL is empty; MODEL is {EXPECTED}")
    if text == DIGITS:
        return "digits"
    if text in zoo.names():
        return "zoo"
    path = Path(text)
    if path.suffix == ".py":
        raise ValueError(f"{text} is a Python file: name the function that returns the model, as {text}:FUNCTION")
    if ".py:" in text:
        file = text.rpartition(":")[0]
        if not Path(file).is_file():
            raise ValueError(f"no such Python file {file!r} (expected FILE.py:FUNCTION)")
        return "python"
    if is_run(path):
        return "run"
    if path.is_dir():
        raise ValueError(f"{text} is a folder without a training run's checkpoint.npz; MODEL is {EXPECTED}")
    if path.is_file() and path.suffix.lower() in TORCH_FILES:
        raise ValueError(f"{text} is a saved PyTorch file, which convscope does not unpickle: name a FILE.py:FUNCTION "
                         "that builds the torch module and loads its weights, or export it to .onnx")
    if path.is_file():
        return "onnx" if path.suffix.lower() == ".onnx" else "spec"
    if path.exists():  # a pipe (the shell's <(...)) or a device: a model may be read more than once
        raise ValueError(f"{text} is not a regular file (a pipe or a device); save the model to a file first")
    if path.suffix or os.sep in text or "/" in text:
        raise ValueError(f"no such file or folder {text!r}; MODEL is {EXPECTED}")
    close = difflib.get_close_matches(text, [DIGITS, *zoo.names()], n=3)
    hint = f". Did you mean {', '.join(close)}?" if close else f"; MODEL is {EXPECTED}"
    raise ValueError(f"unknown zoo model {text!r}{hint}")


def resolve_model(model: Any, *, weights: bool = False, seed: int = 0) -> ResolvedModel:
    """The model that ``model`` names (see the module's docstring for what it may be).

    ``weights=False`` builds zoo models and specs with meta parameters: shapes only, no
    memory, instant (what counting needs). ``weights=True`` gives them real weights drawn
    from ``seed``, and puts every model built from text in eval mode. ``FILE.py:FUNCTION``
    is called with convscope's random state seeded by ``seed`` too (torch's is its own);
    the global random state is left as it was. ``digits``, runs and ONNX files carry their
    own weights; a module passed in is returned as it is.

    Raises a ValueError for text that names no model (:func:`model_kind`) or whose file
    cannot be loaded (a spec's error names the file, line and column), an OSError for a
    file that cannot be read, and a TypeError for a value that is neither a module nor text.
    """
    if isinstance(model, Module):
        return ResolvedModel(model, _declared_shape(model), type(model).__name__, "module")
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        kind = model_kind(text)
        found = _LOADERS[kind](text, weights, seed)
        if weights:
            found.module.eval()
        return found
    torch = sys.modules.get("torch")  # a torch module can only exist if torch was imported
    if torch is not None and isinstance(model, torch.nn.Module):
        from .interop.torch_convert import from_torch

        return ResolvedModel(from_torch(model), None, type(model).__name__, "torch")
    raise TypeError(f"expected a convscope or torch module, or text naming a model ({EXPECTED}); "
                    f"got {type(model).__name__}")


def _declared_shape(module: Module) -> tuple[int, ...] | None:
    """A module's ``input_shape`` attribute (specs and ONNX graphs have one), as a tuple."""
    shape = getattr(module, "input_shape", None)
    return None if shape is None else tuple(shape)


def _built(build: Callable[[], Module], weights: bool, seed: int) -> Module:
    """``build()`` with meta parameters, or with real ones drawn from ``seed``."""
    if not weights:
        with meta_parameters():
            return build()
    return _seeded(build, seed)


def _seeded(build: Callable[[], Any], seed: int) -> Any:
    """``build()`` with convscope's global random state seeded by ``seed``, and restored afterwards."""
    saved = cs_random.get_rng_state()
    try:
        cs_random.manual_seed(seed)
        return build()
    finally:
        cs_random.set_rng_state(saved)


# --- one loader per kind of text: (text, weights, seed) -> ResolvedModel -----------------------------
def _digits(text: str, weights: bool, seed: int) -> ResolvedModel:
    from .pretrained import pretrained
    from .pretrained.digits import INPUT_SHAPE

    return ResolvedModel(pretrained(DIGITS), tuple(INPUT_SHAPE), DIGITS, "digits")


def _zoo(text: str, weights: bool, seed: int) -> ResolvedModel:
    from . import zoo

    entry = zoo.entry(text)
    return ResolvedModel(_built(entry.builder, weights, seed), tuple(entry.input_shape), text, "zoo")


def _python(text: str, weights: bool, seed: int) -> ResolvedModel:
    """``FILE.py:FUNCTION``: import the file, call ``FUNCTION()``; a torch module it returns
    is converted with :func:`convscope.from_torch`."""
    file, _, function = text.rpartition(":")
    path = Path(file)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    try:
        with _script_argv(file):
            spec.loader.exec_module(module)
    except (Exception, SystemExit) as err:  # the user's file: any error its import raises is theirs to fix
        raise ValueError(f"{file}: importing it failed: {_user_error(err)}") from err
    build = getattr(module, function, None)
    if not callable(build):
        raise ValueError(f"{file} has no function {function!r} (expected FILE.py:FUNCTION)")
    try:
        with _script_argv(file):
            built = _seeded(build, seed)
    except (Exception, SystemExit) as err:  # the user's function: a TypeError most likely means it needs arguments
        failure = str(err) if isinstance(err, TypeError) else _user_error(err)
        raise ValueError(f"{text}: calling {function}() failed: {failure} (FUNCTION is called without arguments "
                         "and must return a convscope or torch module)") from err
    try:
        inner = resolve_model(built)
    except TypeError:
        raise ValueError(f"{text}: {function}() returned a value of type {type(built).__name__}, not a convscope or "
                         "torch module") from None
    return ResolvedModel(inner.module, inner.input_shape, f"{path.name}:{function}", "python")


@contextlib.contextmanager
def _script_argv(file: str) -> Iterator[None]:
    """``sys.argv`` as for ``python FILE`` without arguments while the user's code runs: an
    argument parser it runs at import reads no convscope options, and names FILE in its usage."""
    saved = sys.argv
    sys.argv = [file]
    try:
        yield
    finally:
        sys.argv = saved


def _user_error(err: BaseException) -> str:
    """What the user's code raised, in one line; a ``sys.exit`` (an argument parser's, or a
    script's) says where such code belongs."""
    if isinstance(err, SystemExit):
        return (f"it called sys.exit({err.code!r}) (code that runs the file as a script belongs under "
                "if __name__ == '__main__':)")
    return f"{type(err).__name__}: {err}"


def _run(text: str, weights: bool, seed: int) -> ResolvedModel:
    from .train import load_run

    net, shape = load_run(text)
    path = Path(text)
    name = path.name if path.is_dir() else path.parent.name or path.name  # run/checkpoint.npz is "run"
    return ResolvedModel(net, shape, name, "run")


def _onnx(text: str, weights: bool, seed: int) -> ResolvedModel:
    from .data.loaders import MissingDependencyError
    from .interop.onnx_load import load_onnx, require_onnx

    try:
        require_onnx()
    except ImportError as err:  # also a ValueError, so that the command line reports it in one line
        raise MissingDependencyError(f"{text}: {err}") from err
    net = load_onnx(text)
    return ResolvedModel(net, _declared_shape(net), Path(text).name, "onnx")


def _spec(text: str, weights: bool, seed: int) -> ResolvedModel:
    from .spec import load_spec

    source = text if "\n" in text else Path(text)  # a path is always read as one
    net = _built(lambda: load_spec(source), weights, seed)
    return ResolvedModel(net, _declared_shape(net), "spec" if "\n" in text else Path(text).name, "spec")


_LOADERS: dict[str, Callable[[str, bool, int], ResolvedModel]] = {
    "digits": _digits, "zoo": _zoo, "python": _python, "run": _run, "onnx": _onnx, "spec": _spec}
