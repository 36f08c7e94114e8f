"""The embedded UCI optical handwritten digits: 1,797 greyscale 8×8 images of 0–9.

E. Alpaydin and C. Kaynak, *Optical Recognition of Handwritten Digits*, UCI Machine Learning
Repository (CC BY 4.0); see ``LICENSE-digits.txt`` next to this file. The images are the copy
scikit-learn ships as ``load_digits``; convscope stores them in ``digits.npz`` (46 KB) and needs
no download and no scikit-learn.

The split is fixed and stored with the data (made once by ``scripts/make_digits_data.py``):
per class, 20 % test, 10 % validation, 70 % train, drawn with a fixed seed.

=========  ========
split      examples
=========  ========
train      1,259
val        179
test       359
all        1,797
=========  ========
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np

SPLITS = {"train": 0, "val": 1, "test": 2}
SIZES = {"train": 1259, "val": 179, "test": 359, "all": 1797}
NUM_CLASSES = 10
MAX_PIXEL = 16
"""Raw pixels are counts of ink in a 4×4 block of a 32×32 bitmap: integers 0..16."""


def _raw() -> dict[str, np.ndarray]:
    with resources.files("convscope.data").joinpath("digits.npz").open("rb") as fh, np.load(fh) as npz:
        return {key: npz[key] for key in ("images", "labels", "split")}


def digits(split: str = "train", *, dtype: Any = np.float32, normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The embedded digits set.

    Args:
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"`` (original order).
        dtype: float dtype of the images.
        normalize: divide pixels by 16 so they lie in ``[0, 1]``; ``False`` keeps 0..16.

    Shape:
        returns ``X (N, 1, 8, 8)`` and ``y (N,)`` int64, with ``N`` from :data:`SIZES`.

    >>> X, y = digits("test")
    >>> X.shape, X.dtype, y[:5].tolist()
    ((359, 1, 8, 8), dtype('float32'), [3, 8, 0, 2, 6])
    """
    if split not in SIZES:
        raise ValueError(f"digits: unknown split {split!r}; expected one of {', '.join(SIZES)}")
    if np.dtype(dtype).kind != "f":
        raise ValueError(f"digits: dtype must be a float type, got {np.dtype(dtype)}")
    raw = _raw()
    keep = slice(None) if split == "all" else raw["split"] == SPLITS[split]
    X = raw["images"][keep].astype(dtype)[:, None]
    if normalize:
        X /= MAX_PIXEL
    return X, raw["labels"][keep].astype(np.int64)


def digits_splits(**options: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": ..., "val": ..., "test": ...}``, each as :func:`digits` returns it."""
    return {name: digits(name, **options) for name in SPLITS}
