"""convscope next to PyTorch on the issue-10 benchmark set, in one command.

    python benchmarks/run.py [--quick] [--json out.json] [--threads N] [--rounds R] [--only TEXT]
    convscope bench [same options]

Two worker processes (:mod:`worker`), one per engine, run the same cases on the same inputs
with the same number of threads; the runner asks them in turn, round after round (the
engine that goes first alternates), and keeps each engine's best time, so a busy machine
slows both alike and the idle engine never competes for the cores. The machine's roof is
NumPy's float32 matmul speed at 2048², on BLAS's own threads or split over the engine's tile
threads, whichever is faster (best of the measurements at the start and the end).
Whole-model rows also get a correctness check (both engines' outputs on the same input and
weights) and, in fresh processes, the peak resident memory of one forward.

The table gives per case and phase: convscope's and torch's time, the ratio (torch time /
convscope time, > 1 = convscope faster), GFLOP/s (2 × multiply-adds / time) and its share of
the roof, and for memory-bound ops (depthwise convs, pooling, batch norm) GB/s of compulsory
traffic (every operand read once, every result written once). The summary checks the
issue's targets.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cases import BY_NAME, CASES, QUICK, ConvCase, ModelCase  # noqa: E402

ENGINES = ("convscope", "torch")
SLOW_S = 3.0  # a call slower than this gets two rounds instead of --rounds


class Worker:
    """A running :mod:`worker` process of one engine, spoken to in JSON lines."""

    def __init__(self, engine: str, threads: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE")
        self.proc = subprocess.Popen([sys.executable, str(HERE / "worker.py"), "--engine", engine,
                                      "--threads", str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, cwd=HERE)
        self.engine = engine
        ready = self._read()
        if ready.get("ready") != engine:
            raise OSError(f"the {engine} worker did not start: {ready}")

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise OSError(f"the {self.engine} worker exited (code {self.proc.poll()})")
        return json.loads(line)

    def ask(self, **cmd: Any) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write('{"op": "quit"}\n')
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)


def memory_probe(engine: str, case: str, threads: int) -> dict[str, Any]:
    """Peak extra memory of one forward, in a fresh process of ``engine``."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE")
    out = subprocess.run([sys.executable, str(HERE / "worker.py"), "--engine", engine, "--threads", str(threads),
                          "--memory", case], capture_output=True, text=True, env=env, cwd=HERE)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout)


def time_case(workers: dict[str, Worker], case: str, phase: str, rounds: int, repeats: int) -> dict[str, Any]:
    """Each engine's best time over ``rounds`` alternating rounds of ``repeats`` calls."""
    best = {e: math.inf for e in ENGINES}
    errors: dict[str, str] = {}
    r = 0
    while r < rounds:
        order = ENGINES if r % 2 == 0 else ENGINES[::-1]
        for engine in order:
            if engine in errors:
                continue
            reply = workers[engine].ask(op="time", case=case, phase=phase, repeats=repeats)
            if "error" in reply:
                errors[engine] = reply["error"]
            else:
                best[engine] = min(best[engine], reply["best"])
        done = [v for v in best.values() if v < math.inf]
        if r == 0 and done and max(done) > SLOW_S:
            rounds = min(rounds, 2)
        r += 1
    row: dict[str, Any] = {"case": case, "phase": phase}
    for engine in ENGINES:
        row[f"{engine}_s"] = None if engine in errors else best[engine]
    if errors:
        row["errors"] = errors
    return row


def check_outputs(workers: dict[str, Worker], case: str, folder: str) -> float | None:
    """max |convscope − torch| / max |torch| of a forward on the same input and weights."""
    import numpy as np

    paths = {}
    for engine in ENGINES:
        path = os.path.join(folder, f"{engine}.npy")
        if "error" in workers[engine].ask(op="output", case=case, path=path):
            return None
        paths[engine] = path
    a, b = np.load(paths["convscope"]).astype(np.float64), np.load(paths["torch"]).astype(np.float64)
    if a.shape != b.shape:
        return math.inf
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def _flop_factor(case: Any, phase: str) -> int:
    """FLOPs per multiply-add of the phase: 2 per pass, a training step is three passes."""
    return 6 if phase == "step" else 2


def enrich(row: dict[str, Any], roof: float) -> None:
    case = BY_NAME[row["case"]]
    cs_s, torch_s = row["convscope_s"], row["torch_s"]
    row["ratio"] = torch_s / cs_s if cs_s and torch_s else None
    macs = case.macs()
    if macs and cs_s:
        row["gflops"] = _flop_factor(case, row["phase"]) * macs / cs_s / 1e9
        row["torch_gflops"] = _flop_factor(case, row["phase"]) * macs / torch_s / 1e9 if torch_s else None
        row["roof_share"] = row["gflops"] / roof
        row["gflop"] = _flop_factor(case, row["phase"]) * macs / 1e9
    if case.memory_bound and cs_s and row["phase"] != "step":
        row["gbps"] = case.traffic(row["phase"]) / cs_s / 1e9


def geomean(values: list[float]) -> float | None:
    values = [v for v in values if v]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def targets(rows: list[dict[str, Any]], memory: dict[str, dict]) -> list[dict[str, Any]]:
    """The issue's performance targets, each with the measured value and whether it is met."""
    fwd = [r for r in rows if r["phase"] in ("fwd",) and r.get("ratio")]
    bwd = [r for r in rows if r["phase"] in ("bwd_in", "bwd_w", "bwd", "step") and r.get("ratio")]
    out = []
    g = geomean([r["ratio"] for r in fwd])
    out.append({"target": "forward geometric-mean ratio ≥ 1.0", "value": g, "met": g is not None and g >= 1.0})
    worst = min(fwd, key=lambda r: r["ratio"], default=None)
    out.append({"target": "no forward case below 0.5", "value": worst and worst["ratio"],
                "where": worst and worst["case"], "met": worst is not None and worst["ratio"] >= 0.5})
    g = geomean([r["ratio"] for r in bwd])
    out.append({"target": "backward geometric-mean ratio ≥ 0.8", "value": g, "met": g is not None and g >= 0.8})
    big = [r for r in fwd if isinstance(BY_NAME[r["case"]], ConvCase) and r.get("gflop", 0) >= 1.0
           and not BY_NAME[r["case"]].memory_bound]
    low = [r for r in big if r["roof_share"] < 0.7]
    out.append({"target": "convs ≥ 1 GFLOP at ≥ 70% of the matmul roof (forward)",
                "value": min((r["roof_share"] for r in big), default=None),
                "where": [f"{r['case']} {100 * r['roof_share']:.0f}%" for r in low], "met": not low if big else None})
    mem_bound = [r for r in rows if BY_NAME[r["case"]].memory_bound and r.get("ratio")]
    slow = [r for r in mem_bound if r["ratio"] < 1.0]
    out.append({"target": "depthwise and pooling at least as fast as torch",
                "value": min((r["ratio"] for r in mem_bound), default=None),
                "where": [f"{r['case']} {r['phase']} {r['ratio']:.2f}" for r in slow],
                "met": not slow if mem_bound else None})
    m = memory.get("resnet50 forward (N=8)", {})
    cs_m, t_m = m.get("convscope", {}).get("rss_peak_mib"), m.get("torch", {}).get("rss_peak_mib")
    ratio = cs_m / t_m if cs_m and t_m else None
    out.append({"target": "ResNet-50 forward (N=8) peak extra memory ≤ 1.5× torch's", "value": ratio,
                "met": None if ratio is None else ratio <= 1.5})
    return out


# --- rendering ---------------------------------------------------------------------------------------
_PHASE = {"fwd": "fwd", "bwd_in": "bwd-in", "bwd_w": "bwd-w", "bwd": "bwd", "step": "step"}


def _num(value: float | None, fmt: str, width: int) -> str:
    return f"{value:{fmt}}".rjust(width) if value is not None else "—".rjust(width)


def render(result: dict[str, Any]) -> str:
    lines = [f"convscope benchmark, {result['date']}",
             f"machine: {result['machine']}; {result['threads']} threads; {result['blas']}; torch {result['torch']}; "
             f"numpy {result['numpy']}",
             f"load average (1 min) at start / end: {result['load'][0]:.1f} / {result['load'][1]:.1f}",
             f"roof (NumPy float32 matmul 2048²): {result['roof_gflops']:.1f} GFLOP/s "
             f"(torch's matmul: {result['torch_roof_gflops']:.1f})", ""]
    head = (f"{'case':<32}{'phase':<7}{'convscope ms':>13}{'torch ms':>10}{'×torch':>8}{'GFLOP/s':>9}"
            f"{'%roof':>7}{'GB/s':>7}")
    lines += [head, "-" * len(head)]
    for r in result["rows"]:
        roof = 100 * r["roof_share"] if r.get("roof_share") is not None else None
        ms = lambda s: s * 1e3 if s else None  # noqa: E731
        lines.append(f"{r['case'][:31]:<32}{_PHASE[r['phase']]:<7}{_num(ms(r['convscope_s']), '.2f', 13)}"
                     f"{_num(ms(r['torch_s']), '.2f', 10)}{_num(r.get('ratio'), '.2f', 8)}"
                     f"{_num(r.get('gflops'), '.1f', 9)}{_num(roof, '.0f', 7)}{_num(r.get('gbps'), '.1f', 7)}"
                     + (f"  error: {r['errors']}" if r.get("errors") else ""))
    if result["memory"]:
        lines += ["", f"{'whole model (one forward)':<32}{'convscope MiB':>14}{'torch MiB':>11}{'ratio':>7}"
                      f"{'tracemalloc MiB':>17}{'max rel. diff':>15}"]
        for name, m in result["memory"].items():
            c, t = m.get("convscope", {}).get("rss_peak_mib"), m.get("torch", {}).get("rss_peak_mib")
            lines.append(f"{name[:31]:<32}{_num(c, '.0f', 14)}{_num(t, '.0f', 11)}"
                         f"{_num(c / t if c and t else None, '.2f', 7)}"
                         f"{_num(m.get('convscope', {}).get('tracemalloc_peak_mib'), '.0f', 17)}"
                         f"{_num(result['checks'].get(name), '.1e', 15)}")
    lines += ["", "targets:"]
    for t in result["targets"]:
        value = t["value"]
        text = "—" if value is None else (f"{value:.2f}" if isinstance(value, float) else str(value))
        where = t.get("where")
        where = f" ({'; '.join(where) if isinstance(where, list) else where})" if where else ""
        state = "n/a: no case" if t["met"] is None else "met" if t["met"] else "NOT met"
        lines.append(f"  [{state}] {t['target']}: {text}{where}")
    for key, label in (("import", "import convscope"), ("summary", "summary(resnet152)")):
        if key in result:
            t = result[key]
            value = t.get("total_s", t.get("best_s"))
            lines.append(f"  [{'met' if value <= t['target_s'] else 'NOT met'}] {label} ≤ "
                         f"{t['target_s'] * 1e3:.0f} ms: {value * 1e3:.0f} ms")
    return "\n".join(lines)


# --- the run -----------------------------------------------------------------------------------------
def _machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{platform.machine()} {model} ({os.cpu_count()} logical cores), {platform.system()}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch
    from threadpoolctl import threadpool_info

    names = QUICK if args.quick else [c.name for c in CASES]
    if args.only:
        names = [n for n in names if args.only.lower() in n.lower()]
        if not names:
            raise ValueError(f"--only {args.only!r} matches no case; cases: {', '.join(c.name for c in CASES)}")
    load_start = os.getloadavg()[0]
    workers = {e: Worker(e, args.threads) for e in ENGINES}
    rows, checks, memory = [], {}, {}
    try:
        roofs = [workers["convscope"].ask(op="roof")["gflops"]]
        torch_roof = workers["torch"].ask(op="roof")["gflops"]
        with tempfile.TemporaryDirectory(prefix="convscope-bench-") as folder:
            for name in names:
                case = BY_NAME[name]
                for phase in case.phases:
                    row = time_case(workers, name, phase, args.rounds, args.repeats)
                    rows.append(row)
                    if not args.quiet:
                        print(f"  {name} {phase}: convscope {row['convscope_s']}, torch {row['torch_s']}",
                              file=sys.stderr, flush=True)
                if isinstance(case, ModelCase) and not case.train:
                    checks[name] = check_outputs(workers, name, folder)
        macs = {n: workers["convscope"].ask(op="macs", case=n).get("macs", 0) for n in names
                if isinstance(BY_NAME[n], ModelCase)}
        roofs.append(workers["convscope"].ask(op="roof")["gflops"])
    finally:
        for w in workers.values():
            w.close()
    if not args.no_memory:
        for name in names:
            case = BY_NAME[name]
            if isinstance(case, ModelCase) and case.memory:
                memory[name] = {e: memory_probe(e, name, args.threads) for e in ENGINES}
    roof = max(roofs)
    for row in rows:
        case = BY_NAME[row["case"]]
        if isinstance(case, ModelCase):
            object.__setattr__(case, "macs_per_sample", macs.get(row["case"], 0))
        enrich(row, roof)
    blas = ", ".join(sorted({f"{i['internal_api']} {i.get('version') or ''} ({i.get('architecture') or '?'})"
                             for i in threadpool_info() if i["user_api"] == "blas"}))
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": _machine(),
              "threads": args.threads, "blas": blas, "torch": torch.__version__, "numpy": np.__version__,
              "load": (load_start, os.getloadavg()[0]), "roof_gflops": roof, "roofs": roofs,
              "torch_roof_gflops": torch_roof, "rows": rows, "memory": memory, "checks": checks}
    result["targets"] = targets(rows, memory)
    if not args.no_tools:
        from bench_summary import time_import, time_summary

        result["import"], result["summary"] = time_import(), time_summary()
    return result


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="ten representative cases (about two minutes)")
    parser.add_argument("--only", help="only the cases whose name contains this text")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both engines")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per case (best kept)")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per engine and round")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--no-memory", action="store_true", help="skip the whole-model memory probes")
    parser.add_argument("--no-tools", action="store_true", help="skip the import and summary timings")
    parser.add_argument("--quiet", action="store_true", help="no per-case progress on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads < 1 or args.rounds < 1 or args.repeats < 1:
        raise ValueError("--threads, --rounds and --repeats must be positive")
    result = run(args)
    print(render(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
