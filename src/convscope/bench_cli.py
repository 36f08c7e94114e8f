"""``convscope bench``: the speed and memory tables against PyTorch (``benchmarks/run.py``).

The harness lives in the source checkout's ``benchmarks/`` folder (it needs torch, which
convscope itself never imports); this command finds it next to the package and runs it
with the same options. Errors are ValueError/OSError with a one-line message, which
``convscope.cli.main`` turns into exit code 2.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

_HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``bench`` sub-command (its ``run`` returns the exit code)."""
    p = subparsers.add_parser("bench", help="time convscope next to PyTorch (conv, pool, norm, whole models)",
                              description="Run the benchmark set of benchmarks/run.py: convscope and PyTorch in "
                                          "separate processes with the same threads, the NumPy matmul roof, a "
                                          "table of times, ratios, GFLOP/s, GB/s and peak memory, and the targets.")
    _load_harness_parser(p)
    p.set_defaults(run=run)
    return p


def _harness() -> Any:
    if not _HARNESS.is_file():
        raise OSError(f"convscope bench needs the source checkout's benchmarks/run.py (looked at {_HARNESS}); "
                      "run it from a clone of the repository")
    spec = importlib.util.spec_from_file_location("convscope_bench_run", _HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_harness_parser(p: argparse.ArgumentParser) -> None:
    """The harness's own options, or (without a checkout) none: ``run`` then says why."""
    try:
        _harness().build_parser(p)
    except (OSError, ImportError):
        pass


def run(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ValueError("convscope bench compares with PyTorch, which is not installed: "
                         "pip install convscope[torch]") from None
    harness = _harness()
    argv = []
    for action in harness.build_parser()._actions:
        if action.dest == "help" or not hasattr(args, action.dest):
            continue
        value = getattr(args, action.dest)
        flag = action.option_strings[0]
        if isinstance(action, argparse._StoreTrueAction):
            argv += [flag] if value else []
        elif value is not None:
            argv += [flag, str(value)]
    return harness.main(argv)
