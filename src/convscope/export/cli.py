"""``convscope export-xlsx MODEL --input IMAGE -o model.xlsx``: the CNN as a live spreadsheet.

Errors are ValueError/OSError with a one-line message; ``convscope.cli.main`` turns them
into exit code 2.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ..cli import seed
from ..models import EXPECTED, ResolvedModel, resolve_model


def add_cli(subparsers: Any) -> None:
    """Register the ``export-xlsx`` sub-command (its ``run`` returns the exit code)."""
    p = subparsers.add_parser(
        "export-xlsx", help="write a workbook that computes the CNN with spreadsheet formulas",
        description="Write an .xlsx in which the model is computed by formulas: the input, every weight tensor and "
                    "every feature map on their own sheets, each output cell a live formula (SUMPRODUCT, MAX, ...), "
                    "ending in the class scores and the predicted class. Edit an input pixel and it all recomputes.")
    p.add_argument("model", nargs="?", default="digits",
                   help=f"{EXPECTED}; default digits. A sequential classifier small enough for a spreadsheet")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", metavar="IMAGE", help="a .npy or .npz array: one sample, (C, H, W) or (F,)")
    source.add_argument("--digit", type=int, metavar="N", help="test image N of the embedded digits set")
    p.add_argument("--key", help="which array of an .npz --input holding several")
    p.add_argument("--weights", help="a state_dict .npz to load into a spec or zoo model (e.g. from `convscope train`)")
    p.add_argument("--seed", type=seed, default=0, help="seed of a spec or zoo model's initial weights (default 0)")
    p.add_argument("-o", "--output", required=True, help="the .xlsx to write")
    p.set_defaults(run=run)


def load_model(name: str, weights: str | None, seed: int) -> ResolvedModel:
    """The model MODEL names (:mod:`convscope.models`) in eval mode: a spec or zoo model
    with initial weights drawn from ``seed``, or with ``weights`` (a state_dict file) loaded
    into it; other models come with their own weights."""
    found = resolve_model(name, weights=True, seed=seed)
    if weights is not None:
        if not found.initialised:
            raise ValueError(f"--weights applies to a spec or zoo model; {found.name} comes with its own weights")
        from ..data.loaders import load_arrays

        found.module.load_state_dict(load_arrays(weights))
    return found


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


def _check_fits(found: ResolvedModel, sample: np.ndarray, described: str) -> None:
    """A clear message when the sample cannot be the input of a model that declares its shape."""
    expected = found.input_shape
    if expected is not None and tuple(sample.shape[-len(expected):]) != tuple(expected):
        raise ValueError(f"{described} has shape {sample.shape}, but the model takes "
                         f"{'x'.join(map(str, expected))} (the input shape of {found.name})")


def run(args: argparse.Namespace) -> int:
    from .xlsx import export_xlsx

    found = load_model(args.model, args.weights, args.seed)
    sample, described = load_sample(args.input, args.key, args.digit)
    _check_fits(found, sample, described)
    try:
        result = export_xlsx(found.module, sample, args.output)
    except ImportError as err:
        raise ValueError(str(err)) from None
    confidence = float(result.probabilities[result.prediction])
    print(f"wrote {result.path}: {len(result.sheets)} sheets, {result.n_cells:,} cells ({result.n_formulas:,} "
          f"formulas) computing {args.model} on {described}")
    print(f"the engine predicts class {result.prediction} (probability {confidence:.3f}); open the file in Excel or "
          f"LibreOffice Calc to compute the same with formulas, and edit the 'input' sheet to see it change")
    return 0
