"""Tile parallelism (convscope.functional.parallel) and the kernels that use it.

The helpers: results in order, errors raised, BLAS's thread count restored, no nesting. The
kernels: every tiled or blocked path (conv tiles inside samples and whole samples, the
planar, direct, channels-last and depthwise paths, pool and norm blocks) against torch,
with the work split into many tiles and run on one thread and on two.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch.nn.functional as TF
from threadpoolctl import threadpool_info, threadpool_limits

import convscope as cs
import convscope.functional as F
from convscope.functional import conv as conv_module
from convscope.functional import norm as norm_module
from convscope.functional import pool as pool_module
from convscope.functional import winograd as winograd_module
from convscope.functional.parallel import Scratch, block_step, even_blocks, thread_count, tile_map
from torch_ref import compare


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_tile_map_keeps_order_and_restores_blas_threads() -> None:
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        seen = []

        def square(i: int) -> int:
            seen.append(_blas_threads())
            return i * i

        assert tile_map(square, list(range(50))) == [i * i for i in range(50)]
        assert all(counts == [1] * len(counts) for counts in seen)  # BLAS single-threaded inside
        assert _blas_threads() == before


def test_tile_map_raises_the_first_error_and_restores_blas_threads() -> None:
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()

        def fail(i: int) -> int:
            if i == 7:
                raise ValueError("item 7")
            return i

        with pytest.raises(ValueError, match="item 7"):
            tile_map(fail, list(range(20)))
        assert _blas_threads() == before


def test_tile_maps_on_several_caller_threads_restore_blas_threads() -> None:
    """The single-threaded BLAS setting is the process's: callers that overlap must not leave
    BLAS on one thread when the last of them is done (and a first call with an explicit thread
    count finds the BLAS libraries itself)."""
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        start, errors = threading.Barrier(3), []

        def caller() -> None:
            start.wait()
            try:
                for _ in range(200):
                    assert tile_map(lambda i: i, list(range(3)), 2) == [0, 1, 2]
            except BaseException as exc:  # noqa: BLE001 - reported below, on the test's thread
                errors.append(exc)

        callers = [threading.Thread(target=caller) for _ in range(3)]
        for t in callers:
            t.start()
        for t in callers:
            t.join()
        assert not errors
        assert _blas_threads() == before


def test_nested_tile_map_runs_serially_and_one_thread_runs_on_the_caller() -> None:
    with threadpool_limits(2, user_api="blas"):
        assert thread_count() == 2
        inner = tile_map(lambda i: thread_count(), list(range(4)))
        assert inner == [1, 1, 1, 1]
    with threadpool_limits(1, user_api="blas"):
        assert set(tile_map(lambda i: threading.get_ident(), list(range(5)))) == {threading.get_ident()}


def test_tile_map_items_see_the_callers_jit_switch() -> None:
    """A :func:`jit.enabled` block (a context variable) reaches the items the helper threads
    run, not only the caller's, whichever way it is switched (the items sleep so that the
    helper gets some)."""
    import time

    from convscope.functional import jit

    def item(_: int) -> tuple[int, bool]:
        time.sleep(0.002)
        return threading.get_ident(), jit.active()

    with threadpool_limits(2, user_api="blas"):
        for flag in (False, True):
            with jit.enabled(flag):
                seen = tile_map(item, list(range(16)))
            assert len({ident for ident, _ in seen}) == 2, "a helper ran items"
            assert {active for _, active in seen} == {flag and jit.available()}


def test_scratch_reuses_memory_per_thread_and_name() -> None:
    scratch = Scratch()
    a = scratch.take("a", (4, 5), np.float32)
    b = scratch.take("a", (3, 2), np.float32)  # smaller: same memory
    assert np.shares_memory(a, b) and b.shape == (3, 2)
    c = scratch.take("a", (10, 10), np.float32)  # bigger: new memory
    assert c.shape == (10, 10) and not np.shares_memory(a, c)
    assert not np.shares_memory(c, scratch.take("other", (2,), np.float32))
    assert not scratch.zeros("z", (3, 3), np.float64).any()


# (op, input shape, weight shape, kwargs): one sample per kernel path
CONVS = [
    ("conv2d", (3, 4, 9, 8), (6, 4, 3, 3), {"padding": 1}),                        # planar (few channels)
    ("conv2d", (3, 6, 9, 8), (6, 2, 3, 3), {"padding": 1, "groups": 3}),           # planar, grouped
    ("conv2d", (2, 5, 8, 7), (4, 5, 3, 2), {"stride": 2, "padding": (1, 0)}),       # strided: planar or im2col
    ("conv2d", (3, 6, 5, 6), (4, 6, 1, 1), {}),                                    # direct
    ("conv2d", (3, 4, 9, 8), (8, 1, 3, 3), {"padding": 1, "groups": 4}),           # depthwise
    ("conv3d", (2, 3, 5, 6, 5), (4, 3, 3, 3, 2), {"padding": 1, "dilation": (1, 2, 1)}),
    ("conv_transpose2d", (2, 4, 5, 6), (4, 3, 4, 4), {"stride": 2, "padding": 1}),
]


# which convs take the planar path: (stride-1 convs with channels per group below, flat-row
# waste up to, Winograd instead from this many channels; strided convs with channels per group
# below), and from how many channels per group a strided conv's input gradient runs per phase
PLANAR_RULES = {"default": (conv_module._PLANAR_CHANNELS, conv_module._PLANAR_WASTE, conv_module._WINOGRAD_CHANNELS,
                            conv_module._STRIDED_PLANAR_CHANNELS, conv_module._PHASED_CHANNELS),
                "all-planar": (1, 100.0, 10**9, 10**9, 1), "no-planar": (0, 0.0, 10**9, 0, 10**9),
                "winograd": (1, 100.0, 1, 10**9, 1)}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("budget", [1, 2000])
@pytest.mark.parametrize("rule", PLANAR_RULES)
@pytest.mark.parametrize("op,x,w,kwargs", CONVS, ids=[f"{c[0]}-{i}" for i, c in enumerate(CONVS)])
def test_conv_tiles_match_torch(op: str, x: tuple, w: tuple, kwargs: dict, rule: str, budget: int, threads: int,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny budgets split every conv into tiles of single window rows or positions (and the
    depthwise loop into single rows), shared out over the threads; every stride-1 conv runs
    once on each of its possible paths (planar, channels-last, Winograd for 3×3 ones), a strided
    one on the split planar path and on channels-last columns, its input gradient per phase or not."""
    channels, waste, winograd, strided, phased = PLANAR_RULES[rule]
    monkeypatch.setattr(conv_module, "_PLANAR_CHANNELS", channels)
    monkeypatch.setattr(conv_module, "_STRIDED_PLANAR_CHANNELS", strided)
    monkeypatch.setattr(conv_module, "_PHASED_CHANNELS", phased)
    monkeypatch.setattr(conv_module, "_PLANAR_WASTE", waste)
    monkeypatch.setattr(conv_module, "_WINOGRAD_CHANNELS", winograd)
    if rule != "default":
        monkeypatch.setattr(conv_module, "_WINOGRAD_COMPILED", ((winograd, 1),))
    monkeypatch.setattr(winograd_module, "_ITEM_TILES", budget)
    monkeypatch.setattr(winograd_module, "_MIN_ITEM_TILES", 1)
    monkeypatch.setattr(conv_module, "_COLUMN_BYTES", budget)
    monkeypatch.setattr(conv_module, "_MIN_TILE_MACS", 1)
    monkeypatch.setattr(conv_module, "_MIN_TILE_POSITIONS", 1)
    monkeypatch.setattr(conv_module, "_BLOCK_ELEMENTS", 1)
    rng = np.random.default_rng(budget)
    with threadpool_limits(threads, user_api="blas"):
        compare(getattr(F, op), getattr(TF, op), [rng.standard_normal(x), rng.standard_normal(w)], kwargs)


@pytest.mark.parametrize("op,x,w,kwargs", CONVS, ids=[f"{c[0]}-{i}" for i, c in enumerate(CONVS)])
def test_conv_gradients_do_not_depend_on_thread_timing(op: str, x: tuple, w: tuple, kwargs: dict,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Many small tiles on two threads: tiles inside one sample add overlapping input-gradient
    boxes and each thread sums weight-gradient partials, both in a fixed order, so repeated
    runs give the same bits whichever thread takes which tile."""
    monkeypatch.setattr(conv_module, "_COLUMN_BYTES", 64)
    monkeypatch.setattr(conv_module, "_WINOGRAD_CHANNELS", 1)
    monkeypatch.setattr(conv_module, "_WINOGRAD_COMPILED", ((1, 1),))
    monkeypatch.setattr(winograd_module, "_ITEM_TILES", 1)
    monkeypatch.setattr(winograd_module, "_MIN_ITEM_TILES", 1)
    monkeypatch.setattr(conv_module, "_MIN_TILE_MACS", 1)
    monkeypatch.setattr(conv_module, "_MIN_TILE_POSITIONS", 1)
    rng = np.random.default_rng(4)
    xs, ws = (cs.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in (x, w))
    runs = []
    with threadpool_limits(2, user_api="blas"):
        for _ in range(6):
            xs.grad = ws.grad = None
            (getattr(F, op)(xs, ws, **kwargs) ** 2).sum().backward()
            runs.append((xs.grad.copy(), ws.grad.copy()))
    assert all(np.array_equal(a, runs[0][0]) and np.array_equal(b, runs[0][1]) for a, b in runs)


POOLS = [
    (F.max_pool2d, TF.max_pool2d, (2, 5, 9, 8), (3, 2, 1)),
    (F.avg_pool2d, TF.avg_pool2d, (2, 5, 9, 8), (3, 2, 1)),
    (F.max_pool3d, TF.max_pool3d, (2, 3, 5, 6, 4), (2, 1, 1)),
    (F.adaptive_max_pool2d, TF.adaptive_max_pool2d, (2, 5, 8, 6), ((4, 3),)),
    (F.adaptive_avg_pool2d, TF.adaptive_avg_pool2d, (2, 5, 8, 6), ((4, 3),)),
    (F.adaptive_max_pool2d, TF.adaptive_max_pool2d, (2, 5, 8, 10), ((2, 1),)),
    (F.adaptive_avg_pool2d, TF.adaptive_avg_pool2d, (2, 5, 7, 6), ((3, 4),)),
    (F.adaptive_max_pool2d, TF.adaptive_max_pool2d, (2, 5, 6, 5), (1,)),
    (F.adaptive_avg_pool2d, TF.adaptive_avg_pool2d, (2, 5, 6, 5), (1,)),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("fn,ref,shape,args", POOLS, ids=[f"{p[0].__name__}-{i}" for i, p in enumerate(POOLS)])
def test_pool_blocks_match_torch(fn, ref, shape: tuple, args: tuple, threads: int,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """One plane per block; ties (integer-valued inputs) test the first-maximum rule across blocks."""
    monkeypatch.setattr(pool_module, "_POOL_BLOCK_ELEMENTS", 1)
    x = np.random.default_rng(1).integers(-3, 4, shape).astype(np.float64)
    with threadpool_limits(threads, user_api="blas"):
        compare(fn, ref, [x, *args])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_blocks_match_torch(training: bool, threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(norm_module, "_NORM_BLOCK_ELEMENTS", 1)
    rng = np.random.default_rng(2)
    args = [rng.standard_normal((4, 6, 5, 3)), rng.standard_normal(6), rng.random(6) + 0.5,
            rng.standard_normal(6), rng.standard_normal(6)]
    with threadpool_limits(threads, user_api="blas"):
        compare(lambda x, m, v, w, b: F.batch_norm(x, m.detach(), v.detach(), w, b, training=training),
                lambda x, m, v, w, b: TF.batch_norm(x, m.detach(), v.detach(), w, b, training=training), args)


@pytest.mark.parametrize("threads", [1, 2])
def test_instance_and_layer_norm_blocks_match_torch(threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(norm_module, "_NORM_BLOCK_ELEMENTS", 1)
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((3, 4, 5, 6)), rng.standard_normal(4), rng.standard_normal(4)
    with threadpool_limits(threads, user_api="blas"):
        compare(lambda x, w, b: F.instance_norm(x, weight=w, bias=b),
                lambda x, w, b: TF.instance_norm(x, weight=w, bias=b), [x, w, b])
        compare(lambda x, w, b: F.layer_norm(x, (5, 6), w, b), lambda x, w, b: TF.layer_norm(x, (5, 6), w, b),
                [x, rng.standard_normal((5, 6)), rng.standard_normal((5, 6))])
        compare(lambda x, w, b: F.group_norm(x, 2, w, b), lambda x, w, b: TF.group_norm(x, 2, w, b), [x, w, b])


def _shape(t: conv_module._Tile) -> tuple:
    return t.samples, t.windows, tuple(q.stop - q.start for q in t.box), tuple(q.stop - q.start for q in t.reads)


@pytest.mark.parametrize("budget", [64, 700, 5000, 1 << 23])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n,windows,kernel,stride", [
    (1, (7,), (3,), (1,)), (5, (13, 11), (3, 3), (2, 1)), (3, (4, 9, 6), (3, 3, 3), (1, 2, 2)),
    (2, (30, 28), (7, 7), (2, 2)), (2, (1, 1), (1, 1), (1, 1))])
def test_tile_ends_are_the_listed_plans_count_first_and_last(n: int, windows: tuple, kernel: tuple, stride: tuple,
                                                            threads: int, budget: int,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The memory rules' view of a tile plan (how many tiles, the first and the last) is the
    listed plan's, and every listed tile has the first's shape or the last's."""
    monkeypatch.setattr(conv_module, "_COLUMN_BYTES", budget)
    monkeypatch.setattr(conv_module, "_MIN_TILE_MACS", 1)
    monkeypatch.setattr(conv_module, "_MIN_TILE_POSITIONS", 1)
    geo = conv_module._Geometry(kernel, stride, (1,) * len(kernel), 1)
    position_bytes = 4 * 3 * math.prod(kernel)
    for macs, per_thread in ((0, 3), (27 * 16, 1), (10**6, 3)):
        tiles = conv_module._tiles(n, windows, geo, position_bytes, threads, macs, per_thread)
        count, ends = conv_module._tile_ends(n, windows, geo, position_bytes, threads, macs, per_thread)
        assert (count, ends) == (len(tiles), (tiles[0], tiles[-1]))
        assert {_shape(t) for t in tiles} <= {_shape(t) for t in ends}


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("count,per_item,budget", [(0, 5, 10), (1, 5, 10), (131, 45 * 45, 1 << 18), (7, 1, 2),
                                                   (6400, 3136, 1 << 18), (5, 100, 1)])
def test_block_step_is_the_listed_blocks_size(count: int, per_item: int, budget: int, threads: int) -> None:
    """The memory rules' view of :func:`even_blocks` (items a block) is the listed blocks':
    every block but the last holds that many, the last no more."""
    blocks = even_blocks(count, per_item, budget, threads)
    step = block_step(count, per_item, budget, threads)
    assert len(blocks) == -(-count // step)
    assert all(b.stop - b.start == step for b in blocks[:-1]) and all(b.stop - b.start <= step for b in blocks[-1:])
