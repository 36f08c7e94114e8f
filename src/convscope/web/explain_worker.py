"""``explain`` in a child process, so one request's compute is capped in time and memory.

An explanation computes with the engine on sizes the user picks (a 3-D volume of 4096³
would ask for hundreds of gigabytes). The child (``python -m convscope.web.explain_worker``)
runs topics with its address space capped (``RLIMIT_AS``); the parent waits at most
``explain_seconds`` for an answer, then kills the child and starts a new one on the next
request. They speak JSON lines over the child's stdin/stdout: ``{"topic", "options"}``
in, ``{"ok": true, "answer"}`` or ``{"ok": false, "kind", "message"}`` out.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
from typing import Any

from .errors import ApiError

STARTUP_SECONDS = 20.0  # extra wait for the first answer: the child imports the engine first


def _limit_memory(max_bytes: int) -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    except (ImportError, ValueError, OSError):  # not on this platform: the time cap still holds
        pass


def _answer(topic: str, options: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    from ..explain import explain

    try:
        explanation = explain(topic, **options)
        return {"ok": True, "answer": {**explanation.to_dict(), "text": explanation.render()}}
    except MemoryError:
        return {"ok": False, "kind": "limit", "message": f"explain {topic}: these sizes need more memory than the "
                                                         f"server's explain limit of {max_bytes / 2**30:.3g} GiB"}
    except (ValueError, TypeError, ArithmeticError) as err:
        return {"ok": False, "kind": "model", "message": str(err)}
    except Exception as err:  # a bug, not the user's input: reported as a 500, and the child lives on
        return {"ok": False, "kind": "internal", "message": f"explain {topic}: {type(err).__name__}: {err}"}


def main(max_bytes: int) -> None:
    """The child's loop: one JSON request per stdin line, one JSON answer per stdout line."""
    _limit_memory(max_bytes)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.write(json.dumps(_answer(request["topic"], request["options"], max_bytes)) + "\n")
        sys.stdout.flush()


class ExplainWorker:
    """One child process, started on first use; ``run`` is serialised by a lock."""

    def __init__(self, seconds: float, max_bytes: int) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._warm = False  # True once the child has answered

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self._process = subprocess.Popen([sys.executable, "-m", "convscope.web.explain_worker", str(self.max_bytes)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                         text=True, env=env)
        self._warm = False
        return self._process

    def run(self, topic: str, options: dict[str, Any]) -> dict[str, Any]:
        """The explanation of ``topic`` with ``options``; an :class:`ApiError` on refusal or overrun."""
        with self._lock:
            process = self._process if self._process is not None and self._process.poll() is None else self._start()
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(json.dumps({"topic": topic, "options": options}) + "\n")
            process.stdin.flush()
            wait = self.seconds + (0.0 if self._warm else STARTUP_SECONDS)
            ready, _, _ = select.select([process.stdout], [], [], wait)
            line = process.stdout.readline() if ready else ""
            if not line:
                self.stop()
                reason = f"took longer than the server's limit of {self.seconds:g} s" if not ready else "was stopped"
                raise ApiError(422, "limit", f"explain {topic} {reason}; try smaller sizes", "options")
            self._warm = True
        reply = json.loads(line)
        if reply["ok"]:
            return reply["answer"]
        raise ApiError(500 if reply["kind"] == "internal" else 422, reply["kind"], reply["message"], "options")

    def stop(self) -> None:
        """End the child process (a new one starts on the next request)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        if process is not None:
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))
