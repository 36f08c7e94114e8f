"""``convscope trace MODEL --layer L --index 0,5,3,4``: print (or emit as JSON) a trace.

Errors are ValueError/OSError with a one-line message; ``convscope.cli.main`` turns them
into exit code 2.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from ..cli import seed
from ..models import EXPECTED, resolve_model
from .core import trace
from .render import path_text


def _index(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 0,5,3,4, got {text!r}") from None


def add_cli(subparsers: Any) -> None:
    """Register the ``trace`` sub-command (its ``run`` returns the exit code)."""
    p = subparsers.add_parser("trace", help="the provenance of one output value of one layer",
                              description="Trace one output value of one layer: the input window, weights, every "
                                          "product, bias and result, recomputed from the terms alone.")
    p.add_argument("model", help=f"{EXPECTED}. Zoo models and specs get seeded random weights")
    p.add_argument("--layer", required=True, help="module path as in named_modules(), e.g. conv2 or features.3, or an "
                                                  "op row of `convscope summary`, e.g. layer1.0.add")
    p.add_argument("--index", required=True, type=_index,
                   help="full index into the layer's output, batch first, e.g. 0,5,3,4")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--input", help=".npy or .npz array shaped like the model input (the batch dim is optional "
                                        "when the model declares its input shape)")
    p.add_argument("--key", help="which array of an .npz --input holding several")
    source.add_argument("--digit", type=int, metavar="N", help="test image N of the embedded digits set")
    p.add_argument("--seed", type=seed, default=0, help="seed of the uniform random input used without --input/--digit")
    p.add_argument("--full", action="store_true", help="list every term instead of a summary")
    p.add_argument("--influence", action="store_true", help="also report the input cells that influence the value")
    p.add_argument("--path", action="store_true",
                   help="instead, the strongest path back to the input: one line per layer, each following the "
                        "value read that contributes most")
    p.add_argument("--json", action="store_true", help="print the trace as JSON")
    p.set_defaults(run=run)


def _load_input(args: argparse.Namespace, shape: tuple[int, ...] | None, dtype: np.dtype) -> tuple[np.ndarray, str]:
    """The input to trace and how to describe it: ``--input`` (batched here when it is one
    sample of ``shape``), ``--digit``, else seeded uniform noise of ``shape``."""
    if args.input is not None:
        from ..data import load_array

        x, name = load_array(args.input, args.key)
        if x.dtype.kind not in "fiu":
            raise ValueError(f"--input {name}: expected a numeric array, got dtype {x.dtype}")
        return (x[None] if shape is not None and x.ndim == len(shape) else x).astype(dtype), f"input {name}"
    if args.key is not None:
        raise ValueError("--key selects an array of an .npz --input")
    if shape is None:
        raise ValueError(f"{args.model} has no input shape of its own: give --input, an array shaped like the "
                         "model's input with its batch dim")
    if args.digit is not None:
        from ..data import digits

        images, labels = digits("test")
        if tuple(images.shape[1:]) != shape:
            raise ValueError(f"--digit gives a {'x'.join(map(str, images.shape[1:]))} digits image, but "
                             f"{args.model} takes input {'x'.join(map(str, shape))}; use --input")
        if not 0 <= args.digit < len(images):
            raise ValueError(f"--digit {args.digit} is out of range: the digits test set has {len(images)} images")
        return images[args.digit:args.digit + 1].astype(dtype), f"test digit {args.digit} (label {labels[args.digit]})"
    x = np.random.default_rng(args.seed).random((1, *shape)).astype(dtype)
    return x, f"uniform random input {'x'.join(map(str, (1, *shape)))} (seed {args.seed})"


def run(args: argparse.Namespace) -> int:
    found = resolve_model(args.model, weights=True)
    model = found.module
    first = next(iter(model.parameters()), None)
    x, described = _load_input(args, found.input_shape, np.dtype(np.float32) if first is None else first.dtype)
    t = trace(model, x, args.layer, args.index)
    if args.json:
        body = t.to_dict(influence=args.influence)
        if args.path:
            body["path"] = [hop.to_dict() for hop in t.path()[1:]]
        print(json.dumps({"model": args.model, "input": described, **body}))
        return 0
    print(f"{args.model} on {described}")
    print(path_text(t.path()) if args.path else t.format(full=args.full))
    if args.influence:
        mask = t.influence()
        box = " × ".join(f"{lo}..{hi}" for lo, hi in t.receptive_box() or ())
        print(f"  influence: {int(mask.sum())} of {mask.size} input cells; receptive box [{box}]")
    return 0
