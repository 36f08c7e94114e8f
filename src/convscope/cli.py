"""The ``convscope`` command.

Every sub-command is a thin shell over a library function. Bad input exits with code 2
and a one-line message on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .analyze.conventions import CONVENTIONS
from .analyze.symbolic import parse_shape
from .errors import ShapeError
from .models import EXPECTED


def _integer(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number ≥ ``minimum``."""
    what = "a positive integer" if minimum == 1 else f"an integer ≥ {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse


_positive = _integer(1)
seed = _integer(0)  # every --seed: NumPy's generators take seeds ≥ 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    if min(args.height, args.width) < 5:
        raise ValueError(f"--height and --width must be at least 5 for the second layer's 5×5 kernel, got "
                         f"{args.height}×{args.width}")
    try:
        rows, check = demo.run(args.height, args.width, args.k1, args.k2, args.seed)
    except MemoryError:
        raise ValueError(f"--height {args.height} --width {args.width}: the seed example's {args.k1 + args.k2} feature "
                         "maps of that size do not fit in memory; choose a smaller image") from None
    digits = demo.digits_report(args.digit)  # before any output: a bad --digit prints nothing
    print(f"convscope demo: the seed example on a 1×{args.height}×{args.width} image (seed {args.seed}, float64)\n")
    print(demo.render(rows, check))
    print("\n" + "═" * 79 + "\n")
    print(demo.render_digits(digits))
    return 0 if check.ok else 1


def _cmd_summary(args: argparse.Namespace) -> int:
    from .analyze import summary

    _refuse_ignored_options(args)
    shape = parse_shape(args.input, "--input") if args.input else None
    if args.compare:
        from .analyze.compare import compare

        table = compare(args.model, shape)
        _check_no_batch(args.input, table.input_shape, table.model)
        print(table.to_json() if args.format == "json" else table)
        return 0
    result = summary(args.model, shape, convention=args.convention or "convscope", training=args.training,
                     batch_size=args.batch_size, optimizer=args.optimizer or "sgd", erf=args.erf, progress=True)
    _check_no_batch(args.input, result.input_shapes[0], result.model_name)
    if result.ok or result.rows:  # a partial table still shows where the walk stopped
        print(_summary_text(result, args.format, args.by_type, args.depth), end="")
    if result.error is not None:
        print(f"convscope summary: error: {result.error}", file=sys.stderr)
        return 2
    return 0


def _refuse_ignored_options(args: argparse.Namespace) -> None:
    """Options the chosen view has no place for are refused, not silently dropped."""
    if args.compare:
        view, why = "--compare", "it prints every convention's totals, as a table or JSON"
        ignored = {"--by-type": args.by_type, "--depth": args.depth is not None, "--training": args.training,
                   "--erf": args.erf, "--convention": args.convention is not None,
                   "--batch-size": args.batch_size is not None, f"--format {args.format}": args.format in ("csv", "md")}
    elif args.by_type:
        view, why = "--by-type", "it prints MACs and parameters per layer kind"
        ignored = {"--depth": args.depth is not None, "--training": args.training, "--erf": args.erf}
    else:
        view, why = f"--format {args.format}", "it holds the layer rows and totals only; use --format table or json"
        ignored = {"--training": args.training, "--erf": args.erf} if args.format in ("csv", "md") else {}
    if args.optimizer is not None and not args.training:
        raise ValueError("--optimizer names the optimizer state that --training counts; add --training")
    named = [option for option, given in ignored.items() if given]
    if named:
        raise ValueError(f"{view} cannot show {' or '.join(named)}: {why}")


def _check_no_batch(given: str | None, used: tuple[int, ...], name: str) -> None:
    """``--input`` is the shape without batch: refuse one that the summary read as batched
    (it adds a batch unless the shape already has as many dims as the first layer takes)."""
    if given is not None and len(used) == len(parse_shape(given, "--input")):
        raise ValueError(f"--input {given} has {len(used)} dims, at least as many as {name}'s first layer takes "
                         "with the batch; give the shape of one sample without batch (--batch-size sets the batch)")


def _summary_text(result: Any, fmt: str, by_type: bool, depth: int | None) -> str:
    """The summary as ``fmt`` (table, json, csv, md): per layer kind with ``by_type``,
    grouped by module path with ``depth``, else per layer; ends in a newline. The table
    leaves out the error, which goes to stderr."""
    from .analyze import render

    if by_type:
        views = {"table": lambda: render.by_type_table(result) + "\n",
                 "json": lambda: json.dumps(render.by_type_dict(result), indent=2) + "\n",
                 "csv": lambda: render.by_type_csv(result), "md": lambda: render.by_type_markdown(result)}
    elif depth is not None:
        views = {"table": lambda: render.table(result, depth, error=False) + "\n",
                 "json": lambda: json.dumps(render.grouped_dict(result, depth), indent=2) + "\n",
                 "csv": lambda: render.grouped_csv(result, depth), "md": lambda: render.grouped_markdown(result, depth)}
    else:
        views = {"table": lambda: render.table(result, error=False) + "\n", "json": lambda: result.to_json() + "\n",
                 "csv": result.to_csv, "md": result.to_markdown}
    return views[fmt]()


def _cmd_zoo(args: argparse.Namespace) -> int:
    from . import zoo
    from .analyze import summary
    from .analyze.render import clip, human, shape_text

    print(f"{'model':<18}{'input':>12}{'params':>14}{'MACs':>10}  description")
    for name in zoo.names():
        entry = zoo.entry(name)
        totals = summary(name).totals
        print(f"{name:<18}{shape_text(entry.input_shape, False):>12}{totals.params:>14,}{human(totals.macs):>10}  "
              f"{clip(entry.description, 40)}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import CHECKPOINT, run

    options = {"epochs": args.epochs, "optimizer": args.optimizer, "lr": args.lr, "batch_size": args.batch_size,
               "seed": args.seed, "weight_decay": args.weight_decay, "schedule": args.schedule,
               "early_stopping": args.early_stopping, "max_shift": args.max_shift}
    try:
        _, history, test = run(args.model, args.data, out=args.out, resume=args.resume, overwrite=args.overwrite,
                               progress=not args.quiet, **options)
    except KeyboardInterrupt:
        run_folder = Path(args.out or args.resume or "")
        if (run_folder / CHECKPOINT).is_file():  # saved after every finished epoch
            raise KeyboardInterrupt(f"{run_folder} holds the last finished epoch; continue with "
                                    f"--resume {run_folder}") from None
        raise
    last = history.rows[-1] if history.rows else {}
    val = f", val accuracy {last['val_acc']:.2%}" if "val_acc" in last else ""
    stop = f" (stopped early; best epoch {history.best_epoch})" if history.stopped_early else ""
    test_text = f", test accuracy {test[1]:.2%}" if test is not None else ""
    epochs = f"{len(history)} epoch{'' if len(history) == 1 else 's'}"
    print(f"trained {epochs}{stop}: loss {last.get('train_loss', float('nan')):.4f}{val}{test_text}")
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
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--digit", type=int, default=0, help="which held-out test digit to explain (default 0)")
    p.set_defaults(run=_cmd_demo)
    p = sub.add_parser("summary", help="per-layer shapes, parameters, MACs, receptive fields, memory")
    p.add_argument("model", help=EXPECTED)
    p.add_argument("--input", help="input shape without batch, e.g. 3x224x224 (default: the model's own)")
    p.add_argument("--format", choices=["table", "json", "csv", "md"], default="table",
                   help="how to print the rows (per layer, or those of --depth or --by-type); default table")
    p.add_argument("--depth", type=_positive, default=None, help="group rows by module path up to this depth")
    p.add_argument("--convention", choices=list(CONVENTIONS),
                   help="what the totals count (default convscope: every op with a cost rule; paper: conv/fc "
                   "multiply-adds, weights without biases; fvcore, thop, ptflops, torch: those tools' rules)")
    p.add_argument("--compare", action="store_true",
                   help="the totals under every convention side by side, with the reason for each difference")
    p.add_argument("--by-type", action="store_true", help="MACs and parameters per layer kind, with shares")
    p.add_argument("--training", action="store_true",
                   help="add the memory of one training step: saved tensors, gradients, optimizer state")
    p.add_argument("--batch-size", type=_positive, default=None,
                   help="the batch of every shape, and of --training's step (default 1)")
    p.add_argument("--optimizer", choices=["sgd", "plain_sgd", "adam", "adamw", "none"],
                   help="optimizer state counted by --training (default sgd, with momentum)")
    p.add_argument("--erf", action="store_true",
                   help="effective receptive field of the last layer (gradient mass on real weights)")
    p.set_defaults(run=_cmd_summary)
    p = sub.add_parser("zoo", help="list the built-in models with their parameters and MACs")
    p.set_defaults(run=_cmd_zoo)
    p = sub.add_parser("train", help="train a model (default: the digits CNN on the embedded digits)")
    p.add_argument("model", nargs="?", default=None, help="'digits' (default), a zoo model name or a spec file")
    p.add_argument("--data", default=None,
                   help="'digits' (default), an .npz file, an MNIST IDX folder or an image folder")
    p.add_argument("--epochs", type=_positive, default=None)
    p.add_argument("--out", default=None, help="run folder: checkpoint.npz, weights.npz, history.csv/json")
    p.add_argument("--resume", default=None, help="continue the run in this folder")
    p.add_argument("--overwrite", action="store_true", help="replace the run the --out folder holds")
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=_positive, default=None)
    p.add_argument("--seed", type=seed, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--schedule", choices=["none", "step", "cosine"], default=None)
    p.add_argument("--early-stopping", type=_positive, default=None, metavar="PATIENCE")
    p.add_argument("--max-shift", type=int, default=None, help="random-shift augmentation in pixels")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_cmd_train)
    _add_feature_commands(sub)
    return parser


def _add_feature_commands(sub: argparse._SubParsersAction) -> None:
    """Sub-commands that live with their feature (each module's ``add_cli``)."""
    from .bench_cli import add_cli as add_bench
    from .explain.cli import add_cli as add_explain
    from .export.cli import add_cli as add_export_xlsx
    from .trace.cli import add_cli as add_trace
    from .viz.cli import add_cli as add_viz
    from .web.cli import add_cli as add_serve

    add_explain(sub)
    add_trace(sub)
    add_export_xlsx(sub)
    add_viz(sub)
    add_serve(sub)
    add_bench(sub)


# The exit status of a program that a closed pipe stopped (128 + SIGPIPE), as ``head`` leaves it.
_PIPE_CLOSED = 141
# The exit status of a program that Ctrl-C stopped (128 + SIGINT), as shells report it.
_INTERRUPTED = 130


def _own(message: str, command: str) -> str:
    """A library error's ``message`` without the name of the function that raised it when that
    is the command's (``train: …``, ``export_xlsx: …``), which the CLI's prefix already says."""
    for name in {command, command.replace("-", "_")}:
        if message.startswith(f"{name}: "):
            return message[len(name) + 2:]
    return message


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:
        # the reader stopped reading (``convscope summary resnet152 | head``): stop quietly; the
        # rest of the output goes nowhere, so that Python's flush at exit does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _PIPE_CLOSED
    except KeyboardInterrupt as exc:  # Ctrl-C: a line, not a traceback (atomic writes left no half-written file)
        print(f"\nconvscope {args.command}: interrupted{f': {exc}' if str(exc) else ''}", file=sys.stderr)
        return _INTERRUPTED
    except (ShapeError, ValueError, OSError) as exc:
        print(f"convscope {args.command}: error: {_own(str(exc), args.command)}", file=sys.stderr)
        return 2
    except MemoryError as exc:  # numpy's message names the size: "Unable to allocate 335. GiB for an array ..."
        print(f"convscope {args.command}: error: out of memory{f' ({exc})' if str(exc) else ''}; try a smaller "
              "input or model", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
