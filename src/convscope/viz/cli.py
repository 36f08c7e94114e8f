"""``convscope viz KIND [options] -o out.png|svg|pdf|gif``: draw one figure or animation.

Errors are ValueError/OSError with a one-line message; ``convscope.cli.main`` turns them
into exit code 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..analyze.conventions import CONVENTIONS
from ..cli import seed
from ..models import EXPECTED
from .figure import FIGURE_SUFFIXES, check_suffix

KINDS = {
    "architecture": "the model as a graph of blocks with output shapes (branches, merges, repeats)",
    "costs": "parameters, MACs and activation memory per layer",
    "share": "each layer kind's share of the MACs and parameters",
    "filters": "a conv layer's kernels as images (block structure for grouped layers)",
    "featuremaps": "every layer's activations for one input",
    "receptive": "the exact input pixels behind one unit per layer (trace influence)",
    "curves": "training curves from a run folder or history file",
    "confusion": "the confusion matrix on a split of the digits set (the test split unless --split)",
    "saliency": "the gradient of a class score with respect to the input",
    "animate": "a GIF of a convolution, transposed convolution or pooling, with every number",
}


def _shape(text: str) -> tuple[int, ...]:
    parts = text.replace("×", "x").lower().replace(",", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 3x7x7, got {text!r}") from None
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return values


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or ints like 1,2, got {text!r}") from None
    return values


def _one_or_many(values: tuple[int, ...]) -> int | tuple[int, ...]:
    return values[0] if len(values) == 1 else values


def _model_arg(p: argparse.ArgumentParser, default: str | None = "digits") -> None:
    if default is None:
        p.add_argument("model", help=EXPECTED)
    else:
        p.add_argument("model", nargs="?", default=default,
                       help=f"{EXPECTED}; default digits. Zoo models and specs get seeded random weights")


def add_cli(subparsers: Any) -> None:
    """Register ``viz`` and its kinds (each ``run`` returns the exit code)."""
    viz = subparsers.add_parser("viz", help="figures and animations computed from the engine's numbers",
                                description="Draw a figure (.png/.svg/.pdf) or an animation (.gif) from real engine "
                                            "values. Headless; deterministic output.")
    kinds = viz.add_subparsers(dest="kind", required=True, metavar="KIND")
    parsers = {kind: kinds.add_parser(kind, help=text, description=text) for kind, text in KINDS.items()}
    for kind, p in parsers.items():
        suffixes = ".gif" if kind == "animate" else "/".join(FIGURE_SUFFIXES)
        p.add_argument("-o", "--out", required=True, help=f"output file ({suffixes})")
        p.set_defaults(run=run)
    for kind in ("architecture", "costs", "share"):
        _model_arg(parsers[kind], None)
        parsers[kind].add_argument("--input", type=_shape, help="input shape without batch, e.g. 3x224x224")
    parsers["architecture"].add_argument("--collapse", type=int, default=3,
                                         help="draw runs of at least N identical blocks once (0: never; default 3)")
    for kind in ("costs", "share"):
        parsers[kind].add_argument("--convention", choices=list(CONVENTIONS), default="convscope")
    parsers["costs"].add_argument("--log", action="store_true", help="log-scale axes")
    parsers["costs"].add_argument("--depth", type=int, help="one bar per module at this path depth")
    p = parsers["filters"]
    _model_arg(p)
    p.add_argument("--layer", help="module path of a conv layer (default: the first conv)")
    p.add_argument("--layout", choices=["auto", "kernels", "pairs"], default="auto")
    p.add_argument("--max-out", type=int, default=64, help="at most this many filters")
    p.add_argument("--max-in", type=int, default=64, help="at most this many input channels")
    for kind in ("featuremaps", "receptive", "saliency"):
        _model_arg(parsers[kind])
        parsers[kind].add_argument("--digit", type=int, default=0, help="digits test image (default 0)")
    parsers["featuremaps"].add_argument("--max-channels", type=int, default=8)
    p = parsers["receptive"]
    p.add_argument("--layers", help="comma-separated module paths (default: every spatial layer and the last)")
    p.add_argument("--point", type=_ints, help="input pixel the units are centred on, e.g. 3,4 (default: centre)")
    p.add_argument("--channel", type=int, default=0)
    parsers["saliency"].add_argument("--target", type=int, help="class (default: the predicted one)")
    p = parsers["curves"]
    p.add_argument("run_dir", metavar="RUN", help="run folder of `convscope train --out`, or history.json/csv")
    p.add_argument("--log-loss", action="store_true", help="log-scale loss axis")
    _model_arg(parsers["confusion"])
    parsers["confusion"].add_argument("--split", choices=["train", "val", "test"], default="test",
                                      help="which split of the digits set (default: test)")
    _animate_args(parsers["animate"])


def _animate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--op", choices=["conv", "conv_transpose", "max_pool", "avg_pool"], default="conv")
    p.add_argument("--input", type=_shape, default=(1, 7, 7),
                   help="C×H×W (or C×L, C×D×H×W for 1-d/3-d), default 1x7x7")
    p.add_argument("--kernel", type=_ints, default=(3,), help="kernel size, e.g. 3 or 2,3,3 (default 3)")
    p.add_argument("--out-channels", type=int, default=None, help="filters (default 1; depthwise: C)")
    p.add_argument("--stride", type=_ints, default=None, help="default 1 (pooling: the kernel size)")
    p.add_argument("--padding", type=_ints, default=(0,))
    p.add_argument("--padding-mode", choices=["zeros", "reflect", "replicate", "circular"], default="zeros")
    p.add_argument("--dilation", type=_ints, default=(1,))
    p.add_argument("--groups", type=int, default=1)
    p.add_argument("--depthwise", action="store_true", help="groups = input channels")
    p.add_argument("--output-padding", type=_ints, default=(0,), help="transposed convolution only")
    p.add_argument("--ceil-mode", action="store_true", help="pooling only")
    p.add_argument("--exclude-pad", action="store_true", help="average pooling: count_include_pad=False")
    p.add_argument("--no-bias", action="store_true")
    p.add_argument("--no-numbers", action="store_true", help="shade cells instead of printing numbers")
    p.add_argument("--seed", type=seed, default=0, help="seed of the small-integer example values")


def _animate(args: argparse.Namespace, out: Path) -> Any:
    from .animate import save_animation
    from .frames import example

    channels = args.input[0]
    groups = channels if args.depthwise else args.groups
    out_channels = args.out_channels if args.out_channels is not None else (channels if args.depthwise else 1)
    anim = example(args.op, args.input, _one_or_many(args.kernel), out_channels=out_channels, seed=args.seed,
                   bias=not args.no_bias, stride=None if args.stride is None else _one_or_many(args.stride),
                   padding=_one_or_many(args.padding), dilation=_one_or_many(args.dilation), groups=groups,
                   padding_mode=args.padding_mode, output_padding=_one_or_many(args.output_padding),
                   ceil_mode=args.ceil_mode, count_include_pad=not args.exclude_pad)
    return save_animation(anim, out, numbers=False if args.no_numbers else None)


def _figure(args: argparse.Namespace, out: Path) -> Any:
    kind = args.kind
    if kind == "architecture":
        from .architecture import architecture_diagram

        return architecture_diagram(args.model, args.input, collapse=args.collapse, out=out)
    if kind == "costs":
        from .costs import cost_chart

        return cost_chart(args.model, args.input, log=args.log, depth=args.depth, convention=args.convention, out=out)
    if kind == "share":
        from .costs import share_chart

        return share_chart(args.model, args.input, convention=args.convention, out=out)
    if kind == "filters":
        from .filters import filter_figure

        return filter_figure(args.model, args.layer, layout=args.layout, max_out=args.max_out, max_in=args.max_in,
                             out=out)
    if kind == "featuremaps":
        from .featuremaps import feature_maps

        return feature_maps(args.model, digit=args.digit, max_channels=args.max_channels, out=out)
    if kind == "receptive":
        from .receptive import receptive_field

        layers = args.layers.split(",") if args.layers else None
        return receptive_field(args.model, digit=args.digit, layers=layers, point=args.point, channel=args.channel,
                               out=out)
    if kind == "saliency":
        from .training import saliency_map

        return saliency_map(args.model, digit=args.digit, target=args.target, out=out)
    if kind == "curves":
        from .training import training_curves

        return training_curves(args.run_dir, log_loss=args.log_loss, out=out)
    from .training import confusion

    return confusion(args.model, split=args.split, out=out)


def run(args: argparse.Namespace) -> int:
    if args.kind == "animate":
        out = check_suffix(args.out, (".gif",))
        _animate(args, out)
    else:
        out = check_suffix(args.out)
        _figure(args, out)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return 0
