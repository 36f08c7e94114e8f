"""Optional compiled kernels (numba) for depthwise convolutions, pooling, batch norm and Winograd, and their switch.

NumPy has no fused loop over a kernel's taps: its passes go over the planes once per tap, and
scatters (``np.add.at``) run element by element through Python-level dispatch. With numba
installed (``pip install "convscope[jit]"``) these run compiled loops instead, float32 and
float64, blocks of planes on the engine's threads (as many as ``threadpoolctl`` allows BLAS,
like the other kernels):

- depthwise convolutions (one input channel per group, any channel multiplier, stride,
  dilation, padding, 1-d to 3-d; forward, input and weight gradients): one pass over a plane
  for nine taps (a 3×3 kernel) or three, 1.5-4× faster than the NumPy kernels on MobileNet's
  layers (``_depthwise_numba``); the same kernels run stride-1 grouped convolutions with 2-8
  channels per group (ResNeXt's), forward and both gradients, 1.3-9× faster than the planar
  path's columns;
- the backward of max pooling and of adaptive max pooling over even bins (each window's
  gradient added onto its winning cell, in torch's order), average and LP pooling forward and
  backward, adaptive average pooling over even bins forward, and eval batch norm (``x·scale +
  shift`` per channel, one pass): 1.5-2× faster than the NumPy kernels, float32 sums in torch's
  order; training batch norm's backward (per channel one pass for its float64 sums, one for the
  input gradient: ~1.4× faster) (``_pool_numba``); the batch norms' outputs of 4 MB or more
  are stored past the caches (nontemporal stores, ``_stream_numba``: eval over 8×256×56², 1.4×
  faster);
- the transforms of Winograd's 3×3 convolutions, 2-4× faster than the NumPy ones and with
  their bits, so that Winograd pays from 48 channels instead of 128; 3×3×3 convolutions take
  Winograd only with them (1.6-2× faster than the planar path) (``_winograd_numba``);
- the planar path's columns (convolutions with few channels, such as a stem), a ``memcpy`` a
  run of windows where NumPy loops over strided views: 1.5× faster, the same bits; its split of
  a stride-2 input into stride phases, each row dealt out to both phases in one vector loop
  (the stem's input: 0.60 → 0.12 ms on one thread, the same copies); and a col2im
  for strided input gradients (transposed convolutions) over enough windows: the products of
  every tap from one matmul, added onto their cells through each channel's stride-phase planes,
  instead of the stacked stride phases (1.2-1.5× faster) (``_columns_numba``).

Other dtypes, and every process without numba, run the NumPy kernels; both give the same
results within float rounding (bit for bit where the NumPy kernel sums in the same order),
propagate NaN and infinity alike, and are tested against PyTorch.

``import convscope`` does not import numba. The first call that runs a compiled kernel does
(about half a second) and compiles the kernels for its dtypes (a few seconds, once), then they
load from numba's cache next to the module (``__pycache__``; a read-only install uses the
user's cache directory, or compiles again in each process when there is none). The first
compile in a process logs one warning on the ``convscope`` logger (on stderr unless logging is
configured), since a fresh install's first calls wait on it with nothing else to show.

Switch the compiled kernels off for a block, or for the process:

>>> from convscope.functional import jit
>>> with jit.enabled(False):
...     jit.active()
False
>>> jit.set_enabled(True)

Unlike PyTorch (whose kernels are always compiled in), convscope computes the same results
with or without the extra; :func:`active` says which kernels the next call runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import logging
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["active", "available", "enabled", "kernels", "kernels_for", "runs", "set_enabled"]

# The kernel modules by family: (module name, the ``_State`` attribute that holds it once imported).
_FAMILIES = {"depthwise": ("_depthwise_numba", "module"), "pool": ("_pool_numba", "pool"),
             "winograd": ("_winograd_numba", "winograd"), "columns": ("_columns_numba", "columns")}
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class _State:
    """Whether the compiled kernels may run (the process default, and a per-context override
    from :func:`enabled`), and the kernel modules once imported."""

    default = True
    override: contextvars.ContextVar[bool | None] = contextvars.ContextVar("convscope_jit", default=None)
    lock = threading.Lock()
    installed: bool | None = None  # numba findable, without importing it
    module: ModuleType | None = None  # the depthwise kernels
    pool: ModuleType | None = None  # the pooling and batch-norm kernels
    winograd: ModuleType | None = None  # the Winograd transforms
    columns: ModuleType | None = None  # the planar path's column copies
    error: str | None = None  # why importing kernels failed (then none run)
    listening = False  # whether the first compile will be announced (:func:`_announce_first_compile`)


def available() -> bool:
    """Whether numba is installed and (as far as known) imports; does not import it."""
    if _State.error is not None:
        return False
    if any(getattr(_State, slot) is not None for _, slot in _FAMILIES.values()):
        return True
    if _State.installed is None:
        try:
            _State.installed = importlib.util.find_spec("numba") is not None
        except (ImportError, ValueError):  # a stub in sys.modules, a broken parent: not usable
            _State.installed = False
    return _State.installed


def active() -> bool:
    """Whether the next call that has compiled kernels (float32 or float64) runs them."""
    override = _State.override.get()
    return (_State.default if override is None else override) and available()


def runs(dtype: Any) -> bool:
    """Whether the next call on arrays of ``dtype`` runs compiled kernels: :func:`active`, and
    float32 or float64 (the memory rules ask this; it does not import numba)."""
    return np.dtype(dtype) in _DTYPES and active()


@contextlib.contextmanager
def enabled(flag: bool = True) -> Iterator[None]:
    """Use the compiled kernels (``True``, when numba is installed) or the NumPy ones
    (``False``) inside the ``with`` block, in this thread or task; the setting before is
    restored after."""
    token = _State.override.set(bool(flag))
    try:
        yield
    finally:
        _State.override.reset(token)


def set_enabled(flag: bool) -> None:
    """Use the compiled kernels (``True``, the default) or the NumPy ones (``False``) from now
    on, in every thread (a :func:`enabled` block still decides inside it)."""
    _State.default = bool(flag)


def kernels_for(dtype: Any, family: str = "depthwise") -> ModuleType | None:
    """The compiled kernels of ``family`` (see :func:`kernels`) when they run for arrays of
    ``dtype`` (:func:`runs`), else None."""
    return kernels(family) if runs(dtype) else None


def kernels(family: str = "depthwise") -> ModuleType | None:
    """The compiled kernels of ``family`` (``"depthwise"``, ``"pool"``: pooling and batch
    norm, ``"winograd"``: its transforms, or ``"columns"``: the planar path's column copies
    and col2im), their module imported (with numba) on first call; ``None`` when they are
    switched off or numba is missing or fails to import (a warning says why, once; then no
    family runs)."""
    name, slot = _FAMILIES[family]
    if not active():
        return None
    if getattr(_State, slot) is None:
        with _State.lock:
            if getattr(_State, slot) is None and _State.error is None:
                try:
                    setattr(_State, slot, importlib.import_module(f"{__package__}.{name}"))
                except Exception as exc:  # a broken numba/llvmlite install: fall back, say so
                    _State.error = f"{type(exc).__name__}: {exc}"
                    warnings.warn(f"convscope: the compiled kernels are off: numba failed to import "
                                  f"({_State.error}); the NumPy kernels run instead", RuntimeWarning, stacklevel=2)
                else:
                    _announce_first_compile()
    return None if _State.error is not None else getattr(_State, slot)


def _announce_first_compile() -> None:
    """Log once, at the first compile of one of this package's kernels (numba's cache had no
    copy), that compiling is under way: it takes seconds per kernel, tens of seconds over a
    first run. Cache hits do not compile; other code's numba functions are not counted."""
    if _State.listening:
        return
    from numba.core import event

    class FirstCompile(event.Listener):
        announced = False

        def on_start(self, ev: event.Event) -> None:
            dispatcher = ev.data["dispatcher"]
            if not self.announced and getattr(dispatcher, "py_func", None) is not None and \
                    dispatcher.py_func.__module__.startswith(__package__):
                self.announced = True
                logging.getLogger("convscope").warning(
                    "convscope: compiling the engine's numba kernels on first use (a few seconds each; "
                    "numba caches them)")

        def on_end(self, ev: event.Event) -> None:
            pass

    event.register("numba:compile", FirstCompile())
    _State.listening = True
