"""Convolution speed, convscope next to PyTorch, measured in one run.

    python benchmarks/bench_conv.py [--quick] [--json out.json]

For each case: forward and backward (input + weight gradients) time, GFLOP/s, the ratio
to torch (> 1 = convscope faster) and the share of the machine's float32 matmul roof.
Both engines use the same number of threads; torch's OpenMP workers are told to sleep
when idle (OMP_WAIT_POLICY=PASSIVE) so they do not steal cycles from NumPy's BLAS.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import convscope as cs  # noqa: E402
import convscope.functional as F  # noqa: E402


@dataclass
class Case:
    name: str
    n: int
    c_in: int
    c_out: int
    size: tuple[int, ...]
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    transposed: bool = False

    @property
    def nd(self) -> int:
        return len(self.size)

    def weight_shape(self) -> tuple[int, ...]:
        k = (self.kernel,) * self.nd
        if self.transposed:
            return (self.c_in, self.c_out // self.groups, *k)
        return (self.c_out, self.c_in // self.groups, *k)

    def macs(self, out_shape: tuple[int, ...]) -> int:
        # For a transposed conv the work is the same as the conv it is the gradient of.
        spatial = math.prod(self.size) if self.transposed else math.prod(out_shape[2:])
        per_out = (self.c_out if self.transposed else self.c_in) // self.groups
        channels = self.c_in if self.transposed else self.c_out
        return self.n * channels * spatial * per_out * self.kernel**self.nd


CASES = [
    Case("resnet50 stem 7x7/2", 8, 3, 64, (224, 224), 7, 2, 3),
    Case("resnet50 1x1 64->256 @56", 8, 64, 256, (56, 56), 1),
    Case("resnet50 3x3 128 @28", 8, 128, 128, (28, 28), 3, 1, 1),
    Case("resnet50 3x3 256 @14", 8, 256, 256, (14, 14), 3, 1, 1),
    Case("resnet50 1x1 2048->512 @7", 8, 2048, 512, (7, 7), 1),
    Case("vgg16 3x3 64 @224 (N=1)", 1, 64, 64, (224, 224), 3, 1, 1),
    Case("vgg16 3x3 512 @14", 8, 512, 512, (14, 14), 3, 1, 1),
    Case("mobilenet dw 3x3 32 @112", 8, 32, 32, (112, 112), 3, 1, 1, groups=32),
    Case("mobilenet dw 3x3 512 @14", 8, 512, 512, (14, 14), 3, 1, 1, groups=512),
    Case("mobilenet pw 1x1 512 @14", 8, 512, 512, (14, 14), 1),
    Case("dilated 3x3 d2 256 @28", 8, 256, 256, (28, 28), 3, 1, 2, dilation=2),
    Case("grouped 3x3 g32 256 @28", 8, 256, 256, (28, 28), 3, 1, 1, groups=32),
    Case("transposed k4 s2 128->64 @28", 8, 128, 64, (28, 28), 4, 2, 1, transposed=True),
    Case("conv3d 3x3x3 64 @16x56x56", 8, 64, 64, (16, 56, 56), 3, 1, 1),
]
QUICK = {"resnet50 3x3 128 @28", "mobilenet dw 3x3 512 @14", "resnet50 1x1 64->256 @56",
         "transposed k4 s2 128->64 @28"}


def _best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _conv_fns(case: Case, lib):
    fn_name = f"conv_transpose{case.nd}d" if case.transposed else f"conv{case.nd}d"
    fn = getattr(F if lib is cs else torch.nn.functional, fn_name)
    kwargs = dict(stride=case.stride, padding=case.padding, groups=case.groups, dilation=case.dilation)
    return lambda x, w, b: fn(x, w, b, **kwargs)


def _time_engine(case: Case, lib, arrays: tuple[np.ndarray, ...], repeats: int) -> tuple[float, float, tuple]:
    """Best forward time and best forward+backward time of one engine, and the output shape."""
    conv = _conv_fns(case, lib)
    x, w, b = (lib.tensor(a, requires_grad=True) for a in arrays)
    no_grad = torch.no_grad if lib is torch else cs.no_grad

    def forward():
        with no_grad():
            return conv(x, w, b)

    shape = tuple(forward().shape)
    g = np.ones(shape, np.float32)
    if lib is torch:
        g = torch.from_numpy(g)

    def forward_backward():
        x.grad = w.grad = b.grad = None
        conv(x, w, b).backward(g)

    return _best_time(forward, repeats), _best_time(forward_backward, repeats), shape


def measure(case: Case, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    arrays = (rng.standard_normal((case.n, case.c_in, *case.size), dtype=np.float32),
              rng.standard_normal(case.weight_shape(), dtype=np.float32) * 0.05,
              rng.standard_normal(case.c_out, dtype=np.float32))
    row = {"case": case.name}
    for lib, key in ((cs, "cs"), (torch, "torch")):
        fwd, fwd_bwd, shape = _time_engine(case, lib, arrays, repeats)
        row[f"{key}_fwd_s"] = fwd
        row[f"{key}_bwd_s"] = max(fwd_bwd - fwd, 1e-9)
    row["macs"] = case.macs(shape)
    return row


def matmul_roof(size: int = 2048, repeats: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    t = _best_time(lambda: a @ a, repeats)
    return 2 * size**3 / t / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="four representative cases only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        roof = matmul_roof()
        cases = [c for c in CASES if not args.quick or c.name in QUICK]
        rows = [measure(c, args.repeats) for c in cases]

    blas = ", ".join(sorted({f"{i['internal_api']} {i.get('version', '')}" for i in threadpool_info()}))
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, {args.threads} threads; {blas}; "
          f"torch {torch.__version__}")
    print(f"float32 matmul roof (2048²): {roof:.1f} GFLOP/s\n")
    head = (f"{'case':<30} {'fwd ms':>8} {'GFLOP/s':>8} {'×torch':>7} {'%roof':>6} "
            f"{'bwd ms':>8} {'GFLOP/s':>8} {'×torch':>7}")
    print(head)
    print("-" * len(head))
    ratios_f, ratios_b = [], []
    for r in rows:
        f_gflops = 2 * r["macs"] / r["cs_fwd_s"] / 1e9
        b_gflops = 4 * r["macs"] / r["cs_bwd_s"] / 1e9
        rf = r["torch_fwd_s"] / r["cs_fwd_s"]
        rb = r["torch_bwd_s"] / r["cs_bwd_s"]
        ratios_f.append(rf)
        ratios_b.append(rb)
        r.update(fwd_gflops=f_gflops, bwd_gflops=b_gflops, fwd_ratio=rf, bwd_ratio=rb, fwd_roof=f_gflops / roof)
        print(f"{r['case']:<30} {r['cs_fwd_s'] * 1e3:>8.2f} {f_gflops:>8.1f} {rf:>7.2f} {100 * f_gflops / roof:>5.0f}% "
              f"{r['cs_bwd_s'] * 1e3:>8.2f} {b_gflops:>8.1f} {rb:>7.2f}")
    geo = lambda v: math.exp(sum(map(math.log, v)) / len(v))  # noqa: E731
    print(f"\ngeometric mean ratio to torch: forward {geo(ratios_f):.2f}, backward {geo(ratios_b):.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"roof_gflops": roof, "threads": args.threads, "rows": rows,
                       "cases": [asdict(c) for c in cases]}, fh, indent=2)


if __name__ == "__main__":
    main()
