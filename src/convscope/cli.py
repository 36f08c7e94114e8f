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
