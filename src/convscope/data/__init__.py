"""Data: the embedded UCI digits, generated MNIST-1D, loaders for data users bring, and seeded minibatches.

>>> import convscope as cs
>>> X, y = cs.data.digits("test")       # (359, 1, 8, 8) float32 in [0, 1], (359,) int64
>>> splits = cs.data.load("digits")     # {"train": (X, y), "val": ..., "test": ...}
>>> X1, y1 = cs.data.mnist1d("train")   # generated 1-D signals (4000, 1, 40) for conv1d

Unlike ``torch.utils.data`` there are no Dataset/DataLoader objects: a set is a pair of
arrays ``(X, y)``, and a set of splits is a dict of such pairs.
"""

from .batches import Batches, random_shift
from .checks import Split, check_arrays
from .digits import digits, digits_splits
from .loaders import MissingDependencyError, Splits, load, load_array, load_image_folder, load_mnist, load_npz, read_idx
from .mnist1d import mnist1d

__all__ = [
    "Batches", "MissingDependencyError", "Split", "Splits", "check_arrays", "digits", "digits_splits", "load",
    "load_array", "load_image_folder", "load_mnist", "load_npz", "mnist1d", "random_shift", "read_idx",
]
