"""Tool latency: ``import convscope`` and ``summary`` of ResNet-152, against the issue's targets.

    python benchmarks/bench_summary.py [--runs 7]

The import is timed in fresh interpreters (best of ``--runs``), NumPy included, with the
bytecode cache on as in any installed package: this workplace sets
``PYTHONDONTWRITEBYTECODE=1``, which makes every import compile every module from source
(≈ 0.35 s for convscope alone), so the cache is written to a private temporary folder
(``PYTHONPYCACHEPREFIX``) and the source tree stays clean. The child also reports whether
torch, matplotlib or a web server module was imported. ``summary`` is timed in this process:
the first call (which loads the analyzer) and the best of the following ones.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

IMPORT_TARGET_S = 0.3
SUMMARY_TARGET_S = 0.05

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import numpy
t1 = time.perf_counter()
import convscope
t2 = time.perf_counter()
heavy = sorted(m for m in ("torch", "matplotlib", "http.server", "scipy") if m in sys.modules)
print(json.dumps({"numpy": t1 - t0, "convscope": t2 - t1, "total": t2 - t0, "heavy": heavy}))
"""


def time_import(runs: int = 7) -> dict[str, object]:
    """Best-of-``runs`` import times in fresh interpreters, seconds (numpy, convscope's own, total)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="convscope-pyc-") as cache:
        env["PYTHONPYCACHEPREFIX"] = cache
        rows = []
        for _ in range(runs + 1):  # the first run writes the bytecode cache
            out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout))
    best = min(rows[1:], key=lambda r: r["total"])
    return {"total_s": best["total"], "numpy_s": best["numpy"], "convscope_s": best["convscope"],
            "cold_compile_s": rows[0]["total"], "heavy_modules": best["heavy"], "target_s": IMPORT_TARGET_S}


def time_summary(model: str = "resnet152", runs: int = 7) -> dict[str, object]:
    """First and best-of-``runs`` wall time of ``convscope.summary(model)``, seconds."""
    import convscope as cs

    start = time.perf_counter()
    layers = len(cs.summary(model).rows)
    first = time.perf_counter() - start
    best = math.inf
    for _ in range(runs):
        start = time.perf_counter()
        cs.summary(model)
        best = min(best, time.perf_counter() - start)
    return {"model": model, "layers": layers, "first_s": first, "best_s": best, "target_s": SUMMARY_TARGET_S}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    imp, summ = time_import(args.runs), time_summary(runs=args.runs)
    print(f"import convscope: {imp['total_s'] * 1e3:.0f} ms (numpy {imp['numpy_s'] * 1e3:.0f} ms + convscope "
          f"{imp['convscope_s'] * 1e3:.0f} ms; target ≤ {IMPORT_TARGET_S * 1e3:.0f} ms); heavy modules: "
          f"{', '.join(imp['heavy_modules']) or 'none'}; without a bytecode cache {imp['cold_compile_s'] * 1e3:.0f} ms")
    print(f"summary({summ['model']}): {summ['best_s'] * 1e3:.1f} ms ({summ['layers']} layers; first call "
          f"{summ['first_s'] * 1e3:.0f} ms; target ≤ {SUMMARY_TARGET_S * 1e3:.0f} ms)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"import": imp, "summary": summ}, fh, indent=1)


if __name__ == "__main__":
    main()
