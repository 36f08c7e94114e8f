"""The ``convscope`` command.

Every sub-command is a thin shell over a library function. Bad input exits with code 2
and a one-line message on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import ShapeError


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    rows, check = demo.run(args.height, args.width, args.k1, args.k2, args.seed)
    print(f"convscope demo: the seed example on a 1×{args.height}×{args.width} image (seed {args.seed}, float64)\n")
    print(demo.render(rows, check))
    return 0 if check.ok else 1


def _cmd_train(args: argparse.Namespace) -> int:
    from . import train

    options = {"epochs": args.epochs, "optimizer": args.optimizer, "lr": args.lr, "batch_size": args.batch_size,
               "seed": args.seed, "weight_decay": args.weight_decay, "schedule": args.schedule,
               "early_stopping": args.early_stopping, "max_shift": args.max_shift}
    model, history = train.run(args.model, args.data, out=args.out, resume=args.resume, progress=not args.quiet,
                               **options)
    last = history.rows[-1] if history.rows else {}
    val = f", val accuracy {last['val_acc']:.2%}" if "val_acc" in last else ""
    stop = f" (stopped early; best epoch {history.best_epoch})" if history.stopped_early else ""
    print(f"trained {len(history)} epochs{stop}: loss {last.get('train_loss', float('nan')):.4f}{val}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convscope",
                                     description="Convolutional neural networks, transparent and exact.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run the seed example and check one value by hand arithmetic")
    p.add_argument("--height", type=_positive, default=12, help="image height n (default 12)")
    p.add_argument("--width", type=_positive, default=10, help="image width m (default 10)")
    p.add_argument("--k1", type=_positive, default=8, help="first-layer filters (3×3, padding 1)")
    p.add_argument("--k2", type=_positive, default=16, help="second-layer filters (5×5)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_cmd_demo)
    p = sub.add_parser("train", help="train a model (default: the digits CNN on the embedded digits)")
    p.add_argument("model", nargs="?", default=None, help="'digits' (default) or a zoo model name")
    p.add_argument("--data", default=None,
                   help="'digits' (default), an .npz file, an MNIST IDX folder or an image folder")
    p.add_argument("--epochs", type=_positive, default=None)
    p.add_argument("--out", default=None, help="run folder: checkpoint.npz, weights.npz, history.csv/json")
    p.add_argument("--resume", default=None, help="continue the run in this folder")
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=_positive, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--schedule", choices=["none", "step", "cosine"], default=None)
    p.add_argument("--early-stopping", type=_positive, default=None, metavar="PATIENCE")
    p.add_argument("--max-shift", type=int, default=None, help="random-shift augmentation in pixels")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ShapeError, ValueError, OSError) as exc:
        print(f"convscope {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
