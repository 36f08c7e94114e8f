"""One engine's benchmark process: convscope or PyTorch, never both at work in one process.

    python benchmarks/worker.py --engine convscope|torch --threads N             # serve commands
    python benchmarks/worker.py --engine convscope|torch --memory CASE          # one memory probe

Serving, it reads one JSON command per line on stdin and answers one JSON line on stdout:

- ``{"op": "time", "case": NAME, "phase": PHASE, "repeats": R}`` → ``{"best": seconds}``, the
  best of at least R timed calls, more for fast ops (see ``ROUND_S``; the first call of a case
  and phase is an untimed warm-up);
- ``{"op": "output", "case": NAME, "path": FILE}`` → saves the forward output as ``.npy``;
- ``{"op": "roof"}`` → ``{"gflops": ...}``, this engine's float32 matmul speed at 2048²;
- ``{"op": "macs", "case": NAME}`` → the model's multiply-adds per sample (convscope only);
- ``{"op": "quit"}``.

While the runner talks to the other engine this process blocks on stdin, so it is idle;
torch's OpenMP workers are told to sleep when idle (``OMP_WAIT_POLICY=PASSIVE``, set by the
runner) instead of spinning. Inputs are drawn from the same seed in both engines, and model
weights are built once by convscope (seeded) and copied into the torch twin made by
:func:`convscope.interop.torch_convert.to_torch`.

The memory probe runs in a fresh process: it runs each kind of layer once on a few cells
(loading what a process loads on its first call), builds the case, resets the kernel's peak-RSS
mark (``/proc/self/clear_refs``), runs one forward and reports the peak resident memory
above the resident memory before the call (and, for convscope, the tracemalloc peak of the
NumPy allocations).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
from cases import BY_NAME, ConvCase, ModelCase, OpCase

Timed = tuple[Callable[[], Any], Callable[[Any], Any]]  # (untimed preparation, timed call of its result)


# --- engines ----------------------------------------------------------------------------------------
class Convscope:
    name = "convscope"

    def __init__(self) -> None:
        import convscope as cs
        import convscope.functional as F

        self.cs, self.F = cs, F

    def tensor(self, a: np.ndarray, grad: bool = False) -> Any:
        return self.cs.tensor(a, requires_grad=grad)

    def grad(self, a: np.ndarray) -> Any:
        return a

    def no_grad(self) -> Any:
        return self.cs.no_grad()

    def numpy(self, t: Any) -> np.ndarray:
        return t.numpy()

    def model(self, case: ModelCase) -> Any:
        return build_model(self.cs, case)

    def optimizer(self, model: Any) -> Any:
        return self.cs.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=1e-4)

    def cross_entropy(self, logits: Any, labels: np.ndarray) -> Any:
        return self.F.cross_entropy(logits, self.cs.tensor(labels))


class Torch:
    name = "torch"

    def __init__(self) -> None:
        import torch

        self.torch, self.F = torch, torch.nn.functional

    def tensor(self, a: np.ndarray, grad: bool = False) -> Any:
        return self.torch.from_numpy(np.array(a)).requires_grad_(grad)

    def grad(self, a: np.ndarray) -> Any:
        return self.torch.from_numpy(a)

    def no_grad(self) -> Any:
        return self.torch.no_grad()

    def numpy(self, t: Any) -> np.ndarray:
        return t.detach().numpy()

    def model(self, case: ModelCase) -> Any:
        import convscope as cs
        from convscope.interop.torch_convert import to_torch

        source = build_model(cs, case)
        twin = to_torch(source, case.input_shape, check=False)
        state = {k: self.torch.from_numpy(np.array(v.numpy() if hasattr(v, "numpy") else v))
                 for k, v in source.state_dict().items()}
        twin.load_state_dict(state)
        return twin.train(source.training)

    def optimizer(self, model: Any) -> Any:
        return self.torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=1e-4)

    def cross_entropy(self, logits: Any, labels: np.ndarray) -> Any:
        return self.F.cross_entropy(logits, self.torch.from_numpy(labels))


def build_model(cs: Any, case: ModelCase) -> Any:
    """The seeded convscope model of ``case`` (both engines start from these weights)."""
    cs.manual_seed(0)
    if case.model == "digits":
        from convscope.pretrained import digits_cnn

        return digits_cnn().train()
    return cs.zoo.build(case.model).eval()


# --- cases -> timed calls ---------------------------------------------------------------------------
def _inputs(shape: tuple[int, ...], seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32) * np.float32(scale)


def _backward(engine: Any, make: Callable[[], Any], g: np.ndarray) -> Timed:
    """Prepare: a fresh forward with its graph; timed: the backward from it."""
    grad = engine.grad(g)
    return make, lambda y: y.backward(grad)


def conv_calls(engine: Any, case: ConvCase, phase: str) -> Timed:
    fn = getattr(engine.F, f"conv_transpose{case.nd}d" if case.transposed else f"conv{case.nd}d")
    kwargs = dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups)
    x_arr, w_arr = _inputs(case.input_shape()), _inputs(case.weight_shape(), 1, 0.05)
    x, w = engine.tensor(x_arr, phase == "bwd_in"), engine.tensor(w_arr, phase == "bwd_w")
    if phase == "fwd":
        def forward(_: Any) -> Any:
            with engine.no_grad():
                return fn(x, w, None, **kwargs)
        return (lambda: None), forward
    g = _inputs((case.n, case.c_out, *case.output_size()), 2)
    return _backward(engine, lambda: fn(x, w, None, **kwargs), g)


def op_calls(engine: Any, case: OpCase, phase: str) -> Timed:
    F = engine.F
    x = engine.tensor(_inputs(case.shape), phase != "fwd")
    if case.kind == "max_pool":
        call = lambda: F.max_pool2d(x, case.kernel, case.stride, case.padding)  # noqa: E731
    elif case.kind == "avg_pool":
        call = lambda: F.avg_pool2d(x, case.kernel, case.stride, case.padding)  # noqa: E731
    elif case.kind == "adaptive_avg":
        call = lambda: F.adaptive_avg_pool2d(x, case.output_size)  # noqa: E731
    elif case.kind == "adaptive_max":
        call = lambda: F.adaptive_max_pool2d(x, case.output_size)  # noqa: E731
    else:
        c = case.shape[1]
        weight = engine.tensor(1 + _inputs((c,), 3, 0.1), phase != "fwd")
        bias = engine.tensor(_inputs((c,), 4, 0.1), phase != "fwd")
        mean, var = engine.tensor(np.zeros(c, np.float32)), engine.tensor(np.ones(c, np.float32))
        training = case.kind == "batch_norm"
        call = lambda: F.batch_norm(x, mean, var, weight, bias, training=training)  # noqa: E731
    if phase == "fwd":
        def forward(_: Any) -> Any:
            with engine.no_grad():
                return call()
        return (lambda: None), forward
    return _backward(engine, call, _inputs(case.output_shape(), 2))


def model_calls(engine: Any, case: ModelCase, phase: str) -> Timed:
    model = engine.model(case)
    x = engine.tensor(np.random.default_rng(0).random((case.n, *case.input_shape), dtype=np.float32))
    if case.train:
        labels = np.random.default_rng(1).integers(0, 10, case.n)
        opt = engine.optimizer(model)

        def step(_: Any) -> Any:
            opt.zero_grad()
            loss = engine.cross_entropy(model(x), labels)
            loss.backward()
            opt.step()
            return loss
        return (lambda: None), step

    def forward(_: Any) -> Any:
        with engine.no_grad():
            return model(x)
    return (lambda: None), forward


def calls(engine: Any, name: str, phase: str) -> Timed:
    case = BY_NAME[name]
    if isinstance(case, ConvCase):
        return conv_calls(engine, case, phase)
    if isinstance(case, OpCase):
        return op_calls(engine, case, phase)
    return model_calls(engine, case, phase)


# A round times at least ``repeats`` calls, and more (up to ROUND_CALLS) until they have taken
# ROUND_S: a sub-millisecond op's best of a few calls right after the other engine ran is mostly
# cache and scheduler noise (eval batch norm's best of 3 cold calls moved 0.8-1.3× torch).
ROUND_S = 0.05
ROUND_CALLS = 50


def best_time(prepare: Callable[[], Any], run: Callable[[Any], Any], repeats: int) -> float:
    best, spent, calls = math.inf, 0.0, 0
    while calls < repeats or (spent < ROUND_S and calls < ROUND_CALLS):
        state = prepare()
        start = time.perf_counter()
        run(state)
        took = time.perf_counter() - start
        best, spent, calls = min(best, took), spent + took, calls + 1
        del state
    return best


def matmul_roof(engine: Any, size: int = 2048, repeats: int = 5) -> float:
    a = _inputs((size, size))
    if engine.name == "torch":
        t = engine.torch.from_numpy(a)
        runs = [lambda _: t @ t]
    else:  # NumPy's BLAS on all its threads, and split over the engine's tile threads (one BLAS thread each)
        from convscope.functional.parallel import matmul

        runs = [lambda _: a @ a, lambda _: matmul(a, a)]
    best = math.inf
    for run in runs:
        run(None)
        best = min(best, best_time(lambda: None, run, repeats))
    return 2 * size**3 / best / 1e9


# --- the two modes ---------------------------------------------------------------------------------
def serve(engine: Any) -> None:
    prepared: dict[tuple[str, str], Timed] = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "quit":
            return
        try:
            if op == "roof":
                reply = {"gflops": matmul_roof(engine)}
            elif op == "macs":
                reply = {"macs": model_macs(BY_NAME[cmd["case"]])}
            elif op == "output":
                key = (cmd["case"], "fwd")
                prepare, run = prepared.get(key) or calls(engine, *key)
                np.save(cmd["path"], engine.numpy(run(prepare())))
                reply = {"saved": cmd["path"]}
            else:
                key = (cmd["case"], cmd["phase"])
                if key not in prepared:
                    prepared.clear()  # keep one case's inputs alive at a time
                    gc.collect()
                    prepared[key] = calls(engine, *key)
                    best_time(*prepared[key], 1)  # warm-up
                reply = {"best": best_time(*prepared[key], cmd["repeats"])}
        except Exception as exc:  # report, keep serving: one failing case must not end the run
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)


def model_macs(case: ModelCase) -> int:
    import convscope as cs

    if case.macs_per_sample:
        return case.macs_per_sample
    return int(cs.summary(build_model(cs, case), case.input_shape).totals.macs)


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not found in /proc/self/status")


def warm_up(engine: Any) -> None:
    """Run a depthwise conv, the pools and an eval batch norm once on a few cells: what a
    process loads on its first call (convscope's optional numba kernels, ~140 MiB with numba
    itself) is not memory of a forward; torch's kernels are loaded at import."""
    x = engine.tensor(np.zeros((1, 2, 6, 6), np.float32))
    w = engine.tensor(np.zeros((2, 1, 3, 3), np.float32))
    stats = engine.tensor(np.ones(2, np.float32))
    f = engine.F
    with engine.no_grad():
        y = f.conv2d(x, w, padding=1, groups=2)
        pooled = f.max_pool2d(y, 2) + f.avg_pool2d(y, 2) + f.adaptive_avg_pool2d(y, 3) + f.adaptive_max_pool2d(y, 3)
        f.batch_norm(pooled, stats, stats)


def memory_probe(engine: Any, name: str) -> dict[str, float]:
    """Peak resident memory of one forward above the resident memory just before it (MiB).

    Each kind of layer runs once first on a few cells (:func:`warm_up`).
    """
    warm_up(engine)
    prepare, run = calls(engine, name, "fwd")
    state = prepare()
    gc.collect()
    before = _rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:  # resets VmHWM to the current RSS (Linux >= 4.0)
        fh.write("5")
    run(state)
    result = {"rss_peak_mib": (_rss_kib("VmHWM") - before) / 1024}
    if engine.name == "convscope":
        tracemalloc.start()
        run(state)
        result["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["convscope", "torch"], required=True)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--memory", metavar="CASE", help="run one memory probe and exit")
    args = parser.parse_args()
    engine: Any
    if args.engine == "torch":
        engine = Torch()
        if args.threads:
            engine.torch.set_num_threads(args.threads)
    else:
        engine = Convscope()
    limits = None
    if args.threads:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(limits=args.threads, user_api="blas")  # noqa: F841 (kept for the process life)
    if args.memory:
        print(json.dumps(memory_probe(engine, args.memory)), flush=True)
    else:
        print(json.dumps({"ready": engine.name}), flush=True)
        serve(engine)
    del limits


if __name__ == "__main__":
    main()
