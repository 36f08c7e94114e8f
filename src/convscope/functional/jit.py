"""Optional compiled kernels (numba) for depthwise convolutions, and the switch that turns them off.

NumPy has no fused loop over a depthwise convolution's taps: its kernels make two passes over
the planes per tap. With numba installed (``pip install "convscope[jit]"``), depthwise
convolutions (one input channel per group, any channel multiplier, stride, dilation, padding,
1-d to 3-d; forward, input and weight gradients; float32 and float64) run compiled loops
instead: one pass over a plane for nine taps (a 3×3 kernel) or three, blocks of planes on the
engine's threads (as many as ``threadpoolctl`` allows BLAS, like the other kernels): 1.5-4×
faster than the NumPy kernels on MobileNet's layers. Other dtypes, and every process without
numba, run the NumPy kernels; both give the same results within float rounding, propagate NaN
and infinity alike, and are tested against PyTorch.

``import convscope`` does not import numba. The first depthwise convolution does (about half a
second) and compiles the kernels for its dtype (about five seconds, once), then they load from
numba's cache next to the module (``__pycache__``; a read-only install uses the user's cache
directory, or compiles again in each process when there is none).

Switch the compiled kernels off for a block, or for the process:

>>> from convscope.functional import jit
>>> with jit.enabled(False):
...     jit.active()
False
>>> jit.set_enabled(True)

Unlike PyTorch (whose depthwise kernels are always compiled in), convscope computes the same
convolution with or without the extra; :func:`active` says which kernels the next call runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType

__all__ = ["active", "available", "enabled", "kernels", "set_enabled"]


class _State:
    """Whether the compiled kernels may run (the process default, and a per-context override
    from :func:`enabled`), and the kernel module once imported."""

    default = True
    override: contextvars.ContextVar[bool | None] = contextvars.ContextVar("convscope_jit", default=None)
    lock = threading.Lock()
    installed: bool | None = None  # numba findable, without importing it
    module: ModuleType | None = None
    error: str | None = None  # why importing the kernels failed


def available() -> bool:
    """Whether numba is installed and (as far as known) imports; does not import it."""
    if _State.module is not None:
        return True
    if _State.error is not None:
        return False
    if _State.installed is None:
        try:
            _State.installed = importlib.util.find_spec("numba") is not None
        except (ImportError, ValueError):  # a stub in sys.modules, a broken parent: not usable
            _State.installed = False
    return _State.installed


def active() -> bool:
    """Whether the next depthwise convolution (float32 or float64) runs the compiled kernels."""
    override = _State.override.get()
    return (_State.default if override is None else override) and available()


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


def kernels() -> ModuleType | None:
    """The compiled kernels' module, imported (with numba) on first call; ``None`` when they
    are switched off or numba is missing or fails to import (a warning says why, once)."""
    if not active():
        return None
    if _State.module is None:
        with _State.lock:
            if _State.module is None and _State.error is None:
                try:
                    _State.module = importlib.import_module(f"{__package__}._depthwise_numba")
                except Exception as exc:  # a broken numba/llvmlite install: fall back, say so
                    _State.error = f"{type(exc).__name__}: {exc}"
                    warnings.warn(f"convscope: the compiled depthwise kernels are off: numba failed to import "
                                  f"({_State.error}); the NumPy kernels run instead", RuntimeWarning, stacklevel=2)
    return _State.module
