"""``convscope export-xlsx MODEL --input IMAGE -o model.xlsx``: the CNN as a live spreadsheet.

Errors are ValueError/OSError with a one-line message; ``convscope.cli.main`` turns them
into exit code 2.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from ..cli import seed
from ..nn.module import Module


def add_cli(subparsers: Any) -> None:
    """Register the ``export-xlsx`` sub-command (its ``run`` returns the exit code)."""
    p = subparsers.add_parser(
        "export-xlsx", help="write a workbook that computes the CNN with spreadsheet formulas",
        description="Write an .xlsx in which the model is computed by formulas: the input, every weight tensor and "
                    "every feature map on their own sheets, each output cell a live formula (SUMPRODUCT, MAX, ...), "
                    "ending in the class scores and the predicted class. Edit an input pixel and it all recomputes.")
    p.add_argument("model", nargs="?", default="digits",
                   help="'digits' (the shipped trained digits CNN, the default) or a spec file")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", metavar="IMAGE", help="a .npy or .npz array: one sample, (C, H, W) or (F,)")
    source.add_argument("--digit", type=int, metavar="N", help="test image N of the embedded digits set")
    p.add_argument("--key", help="which array of an .npz --input holding several")
    p.add_argument("--weights", help="a state_dict .npz to load into a spec model (e.g. from `convscope train`)")
    p.add_argument("--seed", type=seed, default=0, help="seed of a spec model's initial weights (default 0)")
    p.add_argument("-o", "--output", required=True, help="the .xlsx to write")
    p.set_defaults(run=run)


def load_model(name: str, weights: str | None, seed: int) -> Module:
    """``"digits"`` → the shipped pretrained CNN; a path → the spec it holds (seeded initial
    weights, or ``weights`` loaded into it)."""
    if name == "digits":
        if weights is not None:
            raise ValueError("--weights applies to a spec model; 'digits' ships its own trained weights")
        from ..pretrained import pretrained

        return pretrained("digits")
    if not os.path.isfile(name):
        raise ValueError(f"MODEL must be 'digits' or a spec file; {name!r} is neither")
    from ..random import manual_seed
    from ..spec import load_spec

    manual_seed(seed)
    model = load_spec(name)
    if weights is not None:
        from ..data.loaders import load_arrays

        model.load_state_dict(load_arrays(weights))
    return model.eval()


def load_sample(path: str | None, key: str | None, digit: int | None) -> tuple[np.ndarray, str]:
    """The sample and how to describe it: an array file, or test digit ``digit``."""
    if path is None:
        from ..data import digits

        images, labels = digits("test")
        if not 0 <= digit < len(images):
            raise ValueError(f"--digit {digit} is out of range: the digits test set has {len(images)} images "
                             f"(0 to {len(images) - 1})")
        return images[digit], f"test digit {digit} (label {labels[digit]})"
    from ..data import load_array

    return load_array(path, key)


def _check_fits(model: Module, sample: np.ndarray, described: str) -> None:
    """A clear message when the sample cannot be the model's input (spec models know theirs)."""
    expected = getattr(model, "input_shape", None)
    if expected is not None and tuple(sample.shape[-len(expected):]) != tuple(expected):
        raise ValueError(f"{described} has shape {sample.shape}, but the model takes "
                         f"{'x'.join(map(str, expected))} (the spec's input line)")


def run(args: argparse.Namespace) -> int:
    from .xlsx import export_xlsx

    model = load_model(args.model, args.weights, args.seed)
    sample, described = load_sample(args.input, args.key, args.digit)
    _check_fits(model, sample, described)
    try:
        result = export_xlsx(model, sample, args.output)
    except ImportError as err:
        raise ValueError(str(err)) from None
    confidence = float(result.probabilities[result.prediction])
    print(f"wrote {result.path}: {len(result.sheets)} sheets, {result.n_cells:,} cells ({result.n_formulas:,} "
          f"formulas) computing {args.model} on {described}")
    print(f"the engine predicts class {result.prediction} (probability {confidence:.3f}); open the file in Excel or "
          f"LibreOffice Calc to compute the same with formulas, and edit the 'input' sheet to see it change")
    return 0
