"""Tile parallelism for the kernels: independent tiles on a few threads, each calling BLAS single-threaded.

OpenBLAS splits one matmul statically over its threads, and its threads spin while they
wait for each other: on a busy machine one descheduled thread stalls the whole call
(measured on the 2-core development machine under load: 5-30 GFLOP/s for a 64×576×1792
sgemm with 2 threads against a steady 75 with one). Running independent tiles of a kernel
on Python threads instead (NumPy releases the GIL in matmul, copies and ufunc loops), each
calling BLAS with one thread, lets a free thread take the next tile rather than wait: the
throughput of all threads on an idle machine, of the free ones on a busy one. Copies and
element-wise passes of the tiles run in parallel too.

How many threads: as many as NumPy's BLAS is allowed (``threadpoolctl.threadpool_limits``
sets it), so the kernels use the parallelism the caller gave BLAS and no more; with one
BLAS thread everything runs serially on the calling thread. Unlike PyTorch there is no
separate intra-op thread setting.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import math
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["Scratch", "block_step", "even_blocks", "in_flight", "matmul", "thread_count", "tile_map"]

T = TypeVar("T")
R = TypeVar("R")

_local = threading.local()  # ``busy`` on a thread that runs tiles: a kernel it calls runs serially


class _Pool:
    """The worker threads and the BLAS thread controller, made on first use (a process resource,
    like BLAS's own thread pool)."""

    lock = threading.Lock()
    executor: ThreadPoolExecutor | None = None
    size = 0
    controller: Any = None
    blas: Any = None
    modules = 0  # len(sys.modules) at the last scan
    single = 0  # calls inside _single_threaded_blas
    saved: list[tuple[Any, int]] = []  # (library, thread count) before the first of them

    @classmethod
    def blas_controller(cls) -> Any:
        """The controller of the loaded BLAS libraries, scanned again after an import (an
        import may load another BLAS: SciPy brings its own)."""
        if cls.controller is None or cls.modules != len(sys.modules):
            with cls.lock:
                if cls.controller is None or cls.modules != len(sys.modules):
                    from threadpoolctl import ThreadpoolController  # scans the loaded libraries: ~1 ms

                    modules = len(sys.modules)
                    controller = ThreadpoolController()
                    cls.blas = controller.select(user_api="blas")
                    cls.controller, cls.modules = controller, modules
        return cls.controller

    @classmethod
    def workers(cls, count: int) -> ThreadPoolExecutor:
        from concurrent.futures import ThreadPoolExecutor  # on first use: keeps it out of the import time

        with cls.lock:
            if cls.executor is None or cls.size < count:
                cls.executor = ThreadPoolExecutor(count, thread_name_prefix="convscope-tiles")
                cls.size = count
            return cls.executor


def thread_count() -> int:
    """Threads a kernel may use: NumPy's BLAS thread count, or 1 inside a tile (no nesting)."""
    if getattr(_local, "busy", False):
        return 1
    _Pool.blas_controller()
    counts = [lib.num_threads for lib in _Pool.blas.lib_controllers]
    return max(1, min(counts)) if counts else 1


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """BLAS limited to one thread meanwhile (the libraries' own setters: ~1 µs, against ~0.1 ms
    for ``threadpool_limits``). The setting is the process's: when several of the caller's
    threads run kernels at once, the first to enter saves the counts and the last to leave
    restores them (restoring per call could leave BLAS on one thread for good)."""
    _Pool.blas_controller()
    with _Pool.lock:
        if _Pool.single == 0:
            _Pool.saved = [(lib, lib.num_threads) for lib in _Pool.blas.lib_controllers]
            for lib, _ in _Pool.saved:
                lib.set_num_threads(1)
        _Pool.single += 1
    try:
        yield
    finally:
        with _Pool.lock:
            _Pool.single -= 1
            if _Pool.single == 0:
                for lib, count in _Pool.saved:
                    lib.set_num_threads(count)


def tile_map(fn: Callable[[T], R], items: Sequence[T], threads: int | None = None) -> list[R]:
    """``[fn(item) for item in items]``, run on up to ``threads`` (default :func:`thread_count`)
    threads with BLAS limited to one thread meanwhile; results in the order of ``items``.

    Threads take the next item as they finish one, so a thread the OS deschedules delays only
    its own item; each helper runs in a copy of the caller's context (so a
    :func:`.jit.enabled` block reaches the items it runs). ``fn`` must write only to memory no
    other item writes (or serialise that part itself). The calling thread works too and returns
    once every item is done, without waiting for a helper that woke too late to find one
    (waking a thread takes ~40 µs here).
    With one thread or one item the caller does all the work and BLAS keeps its threads (the
    kernels' matmuls go through :func:`matmul`, which then splits them).
    """
    threads = thread_count() if threads is None else threads
    if threads <= 1 or len(items) <= 1:  # a lone item may share its own matmuls out (see :func:`matmul`)
        return [fn(item) for item in items]
    count = len(items)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []
    order = itertools.count()  # next() on a count is atomic under the GIL
    finished = threading.Condition()
    done = 0
    work = [fn]  # emptied at the end: see below

    def run() -> None:
        nonlocal done
        _local.busy = True
        try:
            for i in iter(lambda: next(order), None):
                if i >= count:
                    return
                try:
                    if not errors:  # after an error the remaining items only count as done
                        results[i] = work[0](items[i])
                except BaseException as exc:
                    errors.append(exc)
                finally:
                    with finished:
                        done += 1
                        if done == count:
                            finished.notify_all()
        finally:
            _local.busy = False

    pool = _Pool.workers(threads - 1)
    with _single_threaded_blas():
        for _ in range(min(threads, count) - 1):
            pool.submit(contextvars.copy_context().run, run)
        run()
        with finished:
            finished.wait_for(lambda: done == count)
    # A helper may still be unwinding after the last item: cut its way to ``fn`` (and to the
    # buffers ``fn`` holds) now, so they are freed when the caller returns, not some time later.
    work.clear()
    if errors:
        raise errors[0]
    return results


def even_blocks(count: int, per_item: int, budget: int, threads: int) -> list[slice]:
    """Blocks of ``count`` items of ``per_item`` elements, about ``budget`` elements each; when
    there are several, a multiple of ``threads`` of them, of one size, so that the threads
    finish together (4 blocks of 1337, 1337, 1337 and 85 planes left one thread 30 % more work)."""
    step = block_step(count, per_item, budget, threads)
    return [slice(b, min(b + step, count)) for b in range(0, count, step)]


def block_step(count: int, per_item: int, budget: int, threads: int) -> int:
    """Items in each of :func:`even_blocks`' blocks but the last (which may hold fewer): what
    a memory rule needs, without listing millions of blocks."""
    blocks = -(-count * per_item // budget)
    if blocks > 1:
        blocks = min(count, -(-blocks // threads) * threads)
    return max(1, -(-count // max(blocks, 1)))


def in_flight(count: int, threads: int) -> int:
    """Items of a :func:`tile_map` over ``count`` items on ``threads`` threads that run at once,
    each with its own :class:`Scratch` buffers (the memory rules' count of busy threads)."""
    return min(threads, count) if threads > 1 and count > 1 else 1


class Scratch:
    """Reusable buffers for the tiles of one kernel call, one set per thread.

    ``take(name, shape, dtype)`` returns a C-contiguous array in memory this thread got for
    ``name`` before when it is big enough (tiles after the first are never bigger), else in
    new memory: fresh pages for every tile cost time. ``zeros`` is ``take`` cleared.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[int, str], np.ndarray] = {}

    def take(self, name: str, shape: Sequence[int], dtype: Any) -> np.ndarray:
        key = (threading.get_ident(), name)
        size = math.prod(shape)
        flat = self._buffers.get(key)
        if flat is None or flat.size < size or flat.dtype != dtype:
            flat = self._buffers[key] = np.empty(size, dtype)
        return flat[:size].reshape(tuple(shape))

    def zeros(self, name: str, shape: Sequence[int], dtype: Any) -> np.ndarray:
        out = self.take(name, shape, dtype)
        out.fill(0)
        return out


# Below this many multiply-adds a matmul is not split: the parts' overhead (~20-40 µs) would
# exceed the gain.
_SPLIT_MACS = 4 << 20
# Smallest part of a split matmul along its output rows or columns (BLAS runs its narrowest
# panels below that).
_SPLIT_MIN = 32


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul(a, b, out=out)``, shared out over :func:`thread_count` threads by output
    rows (or columns, whichever there are more of), each part with single-threaded BLAS.

    Unlike a multi-threaded BLAS call it keeps its speed on a busy machine (see the module
    notes); small products run whole, still with single-threaded BLAS. A matrix-vector
    product, too short to pay for waking a thread of its own, runs on BLAS's threads. Inside a
    tile of :func:`tile_map` it is plain ``np.matmul``."""
    threads = 1 if a.ndim < 2 or b.ndim < 2 else thread_count()
    if threads <= 1:  # (a matrix-vector product on BLAS's threads: 16384×49, 88 → 40 µs on two against one)
        return np.matmul(a, b, out=out)
    if out is None:
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        out = np.empty(shape, np.result_type(a, b))
    rows, cols = a.shape[-2], b.shape[-1]
    macs = out.size * a.shape[-1]
    parts = min(threads * 2, macs // _SPLIT_MACS, max(rows, cols) // _SPLIT_MIN)
    if parts <= 1:
        with _single_threaded_blas():
            return np.matmul(a, b, out=out)
    length = max(rows, cols)
    step = -(-length // parts)
    spans = [slice(i, i + step) for i in range(0, length, step)]
    if rows >= cols:
        tile_map(lambda r: np.matmul(a[..., r, :], b, out=out[..., r, :]), spans, threads)
    else:
        tile_map(lambda c: np.matmul(a, b[..., c], out=out[..., c]), spans, threads)
    return out
