"""A bounded load test on loopback: 200 trace requests from 8 concurrent clients.

Zero errors allowed, and no corrupted answer: every traced value must equal, bit for bit,
the value the same request got when it ran alone. Other requests (summaries, spec uploads,
runs of another model) are mixed in to disturb any shared state. Latency percentiles of
the trace requests are printed.
"""

from __future__ import annotations

import statistics
import threading
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from convscope.web import create_app  # noqa: E402
from convscope.web.background import BackgroundServer  # noqa: E402

CLIENTS = 8
TRACES = 200
CASES = [("0", [0, 3, 2, 2]), ("2", [0, 5, 3, 4]), ("2", [0, 31, 0, 7]), ("4", [0, 9, 1, 2]), ("6", [0, 17]),
         ("8", [0, 4]), ("1", [0, 0, 7, 7]), ("5", [0, 100])]


def _trace(client, case: int, digit: int) -> tuple[float, float]:
    layer, index = CASES[case]
    started = time.perf_counter()
    r = client.post("/api/models/digits/trace", json={"input": {"source": "digit", "digit": digit}, "layer": layer,
                                                     "index": index})
    elapsed = time.perf_counter() - started
    r.raise_for_status()
    return r.json()["value"], elapsed


def _disturb(client, k: int) -> None:
    """Requests that touch other shared state: uploads, summaries, another model's run."""
    if k % 3 == 0:
        r = client.post("/api/models/spec", json={"text": f"input 1x8x8\nconv {1 + k % 5} k3\nrelu\n"})
    elif k % 3 == 1:
        r = client.get("/api/models/zoo:resnet18/summary")
    else:
        r = client.post("/api/models/zoo:lenet5_modern/run", json={"input": {"source": "random", "seed": k}})
    assert r.status_code in (200, 201), r.text


def test_200_traces_from_8_clients(capsys):
    with BackgroundServer(create_app()) as url:
        with httpx.Client(base_url=url, timeout=60) as alone:
            expected = {(c, d): _trace(alone, c, d)[0] for c in range(len(CASES)) for d in (0, 1)}
        jobs = [(k % len(CASES), (k // len(CASES)) % 2) for k in range(TRACES)]
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def client_loop(worker: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                for n, (case, digit) in enumerate(jobs[worker::CLIENTS]):
                    try:
                        if n % 5 == 4:
                            _disturb(client, worker * 100 + n)
                        value, elapsed = _trace(client, case, digit)
                        with lock:
                            latencies.append(elapsed)
                            if value != expected[case, digit]:
                                errors.append(f"case {case} digit {digit}: {value} != {expected[case, digit]}")
                    except Exception as err:  # every failure is counted, none stops the others
                        with lock:
                            errors.append(f"{type(err).__name__}: {err}")

        started = time.perf_counter()
        threads = [threading.Thread(target=client_loop, args=(w,)) for w in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
    assert errors == []
    assert len(latencies) == TRACES
    ms = np.array(latencies) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    with capsys.disabled():
        print(f"\nload: {TRACES} traces from {CLIENTS} clients in {wall:.1f} s ({TRACES / wall:.0f}/s), "
              f"latency p50 {p50:.0f} ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms, max {ms.max():.0f} ms, "
              f"mean {statistics.fmean(ms):.0f} ms")
