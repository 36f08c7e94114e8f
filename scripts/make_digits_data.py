"""Convert the UCI optical handwritten digits (the copy scikit-learn ships as ``digits.csv.gz``)
into convscope's own compressed array ``src/convscope/data/digits.npz``.

Run once by the maintainers; scikit-learn is *not* a convscope dependency. The source file is
taken from the command line, or from an installed scikit-learn if none is given::

    python scripts/make_digits_data.py [path/to/digits.csv.gz]

The stored arrays are ``images`` (1797, 8, 8) uint8 in 0..16, ``labels`` (1797,) uint8 and
``split`` (1797,) uint8 (0 train, 1 validation, 2 test): a split stratified per class, drawn
once from ``numpy.random.default_rng(SPLIT_SEED)`` and stored, so it never depends on NumPy's
random streams at load time.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np

SPLIT_SEED = 20240601
FRACTIONS = {"val": 0.10, "test": 0.20}
OUT = Path(__file__).resolve().parents[1] / "src" / "convscope" / "data" / "digits.npz"


def _default_source() -> Path:
    import sklearn  # only to locate the maintainer's source file; never a convscope dependency

    return Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"


def stratified_split(labels: np.ndarray, seed: int) -> np.ndarray:
    """Per class: shuffle the indices, give the first 20 % to test, the next 10 % to
    validation, the rest to train. Returns split codes ``(N,)`` uint8."""
    rng = np.random.default_rng(seed)
    split = np.zeros(labels.shape, np.uint8)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = round(FRACTIONS["test"] * idx.size)
        n_val = round(FRACTIONS["val"] * idx.size)
        split[idx[:n_test]] = 2
        split[idx[n_test:n_test + n_val]] = 1
    return split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=None)
    source = parser.parse_args().source or _default_source()
    with gzip.open(source, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",")
    if table.shape != (1797, 65):
        raise SystemExit(f"{source}: expected a 1797×65 table, got {table.shape}")
    images = table[:, :64].astype(np.uint8).reshape(-1, 8, 8)
    labels = table[:, 64].astype(np.uint8)
    split = stratified_split(labels, SPLIT_SEED)
    np.savez_compressed(OUT, images=images, labels=labels, split=split)
    counts = np.bincount(split, minlength=3)
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes): train {counts[0]}, val {counts[1]}, test {counts[2]}")


if __name__ == "__main__":
    main()
