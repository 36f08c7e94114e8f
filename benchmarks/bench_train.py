"""Time to train the default digits CNN to ≥ 98 % test accuracy on this machine.

    python benchmarks/bench_train.py [--threads N] [--json out.json]

Trains ``convscope.pretrained.digits_cnn()`` from its seeded initial weights with the shipped
recipe (``RECIPES["digits"]``: AdamW, cosine schedule, random shifts, 30 epochs) on the
1,259 training digits, evaluating the test split after every epoch (evaluation time is
excluded). Reports the first epoch and the training time at which the test accuracy reaches
98 %, the time for the whole recipe and the throughput. The run is the one that produced the
shipped weights (same final accuracy, bit-identical weights on the same machine).

``--threads`` limits the BLAS threads (with threadpoolctl); on a busy machine one thread is
often faster for these small matrices than two.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from contextlib import nullcontext

import numpy as np
from threadpoolctl import threadpool_limits

import convscope as cs
from convscope.data import digits
from convscope.pretrained import RECIPES, digits_cnn
from convscope.train import evaluate, train

TARGET = 0.98


def run(threads: int | None) -> dict[str, object]:
    """One training run; returns the measurements."""
    recipe = RECIPES["digits"]
    X_test, y_test = digits("test")
    cs.manual_seed(recipe["seed"])
    model = digits_cnn()
    log: list[dict[str, float]] = []
    excluded = 0.0

    def on_epoch(row: dict[str, float]) -> None:
        nonlocal excluded
        start = time.perf_counter()
        log.append({"epoch": row["epoch"], "test_acc": evaluate(model, X_test, y_test)[1],
                    "train_seconds": row["seconds"]})
        model.train()
        excluded += time.perf_counter() - start

    limit = threadpool_limits(limits=threads, user_api="blas") if threads else nullcontext()
    with limit:
        start = time.perf_counter()
        train(model, "digits", **recipe, progress=False, on_epoch=on_epoch)
        wall = time.perf_counter() - start - excluded
    reached = next((row for row in log if row["test_acc"] >= TARGET), None)
    to_target = sum(r["train_seconds"] for r in log[: int(reached["epoch"])]) if reached else None
    samples = recipe["epochs"] * len(digits("train")[1])
    return {"threads": threads or "default", "epochs": recipe["epochs"], "wall_seconds": wall,
            "epoch_of_98": reached["epoch"] if reached else None, "seconds_to_98": to_target,
            "final_test_acc": log[-1]["test_acc"], "samples_per_s": samples / wall,
            "params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads (default: NumPy's own)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    result = run(args.threads)
    result.update(machine=platform.machine(), processor=platform.processor(), numpy=np.__version__)
    print(f"digits CNN ({result['params']:,} parameters), BLAS threads: {result['threads']}")
    reached = (f"epoch {result['epoch_of_98']} after {result['seconds_to_98']:.1f} s"
               if result["epoch_of_98"] else "never")
    print(f"  ≥ 98 % test accuracy: {reached}")
    print(f"  all {result['epochs']} epochs: {result['wall_seconds']:.1f} s "
          f"({result['samples_per_s']:,.0f} samples/s), final test accuracy {result['final_test_acc']:.2%}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
