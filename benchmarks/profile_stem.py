"""Where the time of ResNet-50's stem forward goes: the one conv under the 70 %-of-roof target.

    python benchmarks/profile_stem.py [--calls 30] [--threads 1 2]

The stem is a 7×7/2 conv, 3 → 64 channels on 8 × 224² (1.89 GFLOP). The engine runs it as
tiles of 28 output rows (3,136 positions): the tile's columns, then the matmul
``(64 × 147) @ (147 × 3136)`` straight into the output, the tiles spread over the threads
(each with single-threaded BLAS). For each thread count this prints, as best and median of
``--calls`` calls:

- ``roof``: NumPy's float32 matmul at 2048², on BLAS's threads and split over the tile
  threads; the faster is the roof, as in the benchmark;
- ``forward``: the whole conv (``convscope.functional.conv2d``);
- ``matmuls -> output``: the 32 tiles' matmuls alone, on columns built once, into an output
  array in memory (as the forward writes it);
- ``matmuls -> cache``: the same matmuls into one tile-sized buffer that stays in cache: the
  arithmetic alone, without the output's memory traffic.

``forward - matmuls -> output`` is what the columns, the stride-phase split and the Python of
each tile cost. Run it on an otherwise idle machine; the benchmark's own table
(``benchmarks/run.py --only stem``) compares the forward with torch.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

import convscope.functional as F
from convscope.functional.parallel import Scratch, matmul, tile_map

N, C_IN, C_OUT, SIZE, KERNEL, STRIDE, PAD = 8, 3, 64, 224, 7, 2, 3
OUT = (SIZE + 2 * PAD - KERNEL) // STRIDE + 1  # 112
TILE_ROWS = 28
TILE = TILE_ROWS * OUT  # positions per tile
FLOPS = 2 * N * C_OUT * C_IN * KERNEL * KERNEL * OUT * OUT


def timings(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """Best and median wall time of ``calls`` calls after one warm-up, seconds."""
    fn()
    took = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        took.append(time.perf_counter() - start)
    return min(took), float(np.median(took))


def profile(threads: int, calls: int) -> list[tuple[str, float, float, float]]:
    """(part, best s, median s, GFLOP/s at best) for the stem on ``threads`` threads."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C_IN, SIZE, SIZE), dtype=np.float32)
    w = rng.standard_normal((C_OUT, C_IN, KERNEL, KERNEL), dtype=np.float32)
    wm = w.reshape(C_OUT, -1)
    cols = rng.standard_normal((wm.shape[1], TILE), dtype=np.float32)
    y = np.empty((N, C_OUT, OUT * OUT), np.float32)
    scratch = Scratch()  # one tile-sized buffer per thread
    tiles = [(n, r) for n in range(N) for r in range(0, OUT * OUT, TILE)]
    big = rng.standard_normal((2048, 2048), dtype=np.float32)

    def into_output(tile: tuple[int, int]) -> None:
        n, r = tile
        np.matmul(wm, cols, out=y[n, :, r:r + TILE])

    def into_cache(tile: tuple[int, int]) -> None:
        np.matmul(wm, cols, out=scratch.take("out", (C_OUT, TILE), np.float32))

    parts = [
        ("roof: BLAS's threads", lambda: big @ big, 2 * 2048**3),
        ("roof: tile threads", lambda: matmul(big, big), 2 * 2048**3),
        ("forward", lambda: F.conv2d(x, w, stride=STRIDE, padding=PAD), FLOPS),
        ("matmuls -> output", lambda: tile_map(into_output, tiles, threads), FLOPS),
        ("matmuls -> cache", lambda: tile_map(into_cache, tiles, threads), FLOPS),
    ]
    rows = []
    with threadpool_limits(threads):
        for name, fn, flops in parts:
            best, median = timings(fn, calls)
            rows.append((name, best, median, flops / best / 1e9))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30, help="timed calls per part (best and median kept)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to profile")
    args = parser.parse_args()
    print(f"stem 7x7/2 {C_IN}->{C_OUT} on {N}x{SIZE}²: {FLOPS / 1e9:.2f} GFLOP, "
          f"{len(range(0, OUT * OUT, TILE)) * N} tiles of {TILE} positions")
    for threads in args.threads:
        rows = profile(threads, args.calls)
        roof = max(rows[0][3], rows[1][3])  # as the benchmark: the faster of the two
        label = f"{threads} thread{'s' if threads > 1 else ''}"
        print(f"\n  {label:<22} {'best ms':>8} {'median ms':>10} {'GFLOP/s':>8} {'%roof':>6}")
        for name, best, median, gflops in rows:
            print(f"  {name:<22} {best * 1e3:8.2f} {median * 1e3:10.2f} {gflops:8.1f} {gflops / roof * 100:6.0f}")
        forward, output = rows[2][1], rows[3][1]
        print(f"  {'columns, split, Python':<22} {(forward - output) * 1e3:8.2f}  (forward - matmuls -> output, best)")


if __name__ == "__main__":
    main()
