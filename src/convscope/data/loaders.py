"""Loaders for data users bring: MNIST-style IDX files, a folder of images per class, and
``.npz`` arrays; :func:`load` picks one from a name or path.

Every loader returns plain arrays — images ``(N, C, H, W)`` float32 in ``[0, 1]`` and labels
``(N,)`` int64 — checked by :func:`~convscope.data.checks.check_arrays`. A set of splits is a
dict ``{"train": (X, y), "val": (X, y), "test": (X, y)}`` (``val`` and ``test`` optional).
"""

from __future__ import annotations

import gzip
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .checks import Split, check_arrays
from .digits import digits_splits
from .mnist1d import mnist1d

Splits = dict[str, Split]

# IDX type codes (http://yann.lecun.com/exdb/mnist/): all multi-byte values are big-endian.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MNIST_FILES = {"train": "train", "test": "t10k"}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm", ".webp"}
_SPLIT_ALIASES = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK"  # how .npy files and zip archives (.npz) start


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (the MNIST / Fashion-MNIST format), gzip-compressed or raw.

    Compression is detected from the content, not the file name.

    Shape:
        returns the array with the dimensions stored in the header, e.g. ``(60000, 28, 28)``
        uint8 for an images file and ``(60000,)`` for a labels file.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from exc
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (expected magic 00 00 <type> <ndim>, got {raw[:4].hex(' ')})")
    dtype, ndim = np.dtype(_IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path}: IDX header promises shape {shape} ({expected} bytes), file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (root / name).is_file():
            return root / name
    return None


def load_mnist(root: str | Path, split: str = "train") -> Split:
    """MNIST or Fashion-MNIST from a folder holding the standard IDX files
    (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``, ``t10k-…``).

    Shape:
        returns ``X (N, 1, 28, 28)`` float32 in ``[0, 1]`` and ``y (N,)`` int64.
    """
    if split not in _MNIST_FILES:
        raise ValueError(f"load_mnist: unknown split {split!r}; expected 'train' or 'test'")
    root = Path(root)
    prefix = _MNIST_FILES[split]
    images, labels = _find(root, f"{prefix}-images-idx3-ubyte"), _find(root, f"{prefix}-labels-idx1-ubyte")
    if images is None or labels is None:
        raise FileNotFoundError(f"{root}: no {prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz] files")
    X, y = read_idx(images), read_idx(labels)
    if X.ndim != 3:
        raise ValueError(f"{images}: expected images of shape (N, H, W), got {X.shape}")
    return check_arrays(_scale(X)[:, None], y, name=images.name)


def _scale(X: np.ndarray) -> np.ndarray:
    """uint8 pixels → float32 in ``[0, 1]``; other dtypes pass through as float."""
    if X.dtype == np.uint8:
        return X.astype(np.float32) / 255.0
    return X if X.dtype.kind == "f" else X.astype(np.float32)


class MissingDependencyError(ImportError, ValueError):
    """An optional package a loader needs is not installed (an ``ImportError``, and a
    ``ValueError`` so that the command line reports it as bad input)."""


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise MissingDependencyError("loading a folder of images needs Pillow, which is not installed: "
                          "pip install Pillow (or convert the images to an .npz file)") from exc
    return Image


def load_image_folder(root: str | Path, *, size: tuple[int, int] | None = None, grayscale: bool = True,
                      classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images stored one folder per class (``root/cat/1.png``, ``root/dog/2.png``, …).

    Classes are the sub-folder names in sorted order (or ``classes``, to keep the label
    numbering of another split). Needs Pillow; a clear ``ImportError`` says so if it is missing.

    Args:
        size: ``(height, width)`` to resize every image to; ``None`` requires equal sizes.
        grayscale: convert to one channel (``"L"``); otherwise three (``"RGB"``).

    Shape:
        returns ``X (N, C, H, W)`` float32 in ``[0, 1]`` with ``C`` 1 or 3, ``y (N,)`` int64,
        and the class names.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    classes = list(classes) if classes is not None else found
    if not classes:
        raise ValueError(f"{root}: expected one sub-folder per class, found none")
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(f"{root}: class folders {unknown} are not among the known classes {classes}")
    image_mod = _pillow()
    arrays, labels = [], []
    for label, name in enumerate(classes):
        folder = root / name
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES) if folder.is_dir() else []
        for file in files:
            with image_mod.open(file) as img:
                img = img.convert("L" if grayscale else "RGB")
                if size is not None:
                    img = img.resize((size[1], size[0]))
                arr = np.asarray(img, dtype=np.uint8)
            if arrays and arr.shape != arrays[0].shape:
                raise ValueError(f"{file}: image of shape {arr.shape} differs from the first image's "
                                 f"{arrays[0].shape}; pass size=(H, W) to resize")
            arrays.append(arr)
            labels.append(label)
    if not arrays:
        raise ValueError(f"{root}: no image files ({', '.join(sorted(_IMAGE_SUFFIXES))}) in the class folders")
    X = np.stack(arrays).astype(np.float32) / 255.0
    X = X[:, None] if grayscale else X.transpose(0, 3, 1, 2)
    X, y = check_arrays(np.ascontiguousarray(X), np.asarray(labels), name=str(root), num_classes=len(classes))
    return X, y, classes


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file by name, such as a ``state_dict`` (the ``weights.npz``
    of ``convscope train``). A file that is no readable ``.npz`` (empty, text, truncated) is a
    one-line ValueError naming it; pickled data is never loaded."""
    path = Path(path)
    _require_header(path, _ZIP_MAGIC, "an .npz file (it is no zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from exc


def load_npz(path: str | Path) -> Splits:
    """Arrays from an ``.npz`` file, as splits.

    Recognised keys (``X`` or ``x``): ``X``/``y`` (one set, used as ``train``), or
    ``X_train``/``y_train`` with optional ``X_val`` (also ``valid``, ``validation``) and
    ``X_test`` — the layout of Keras' ``mnist.npz`` works as is.

    uint8 arrays are images: scaled to ``[0, 1]`` float32, and 3-D ones ``(N, H, W)`` get a
    channel axis. Float arrays are kept as stored (e.g. ``(N, C, L)`` for conv1d).

    Shape:
        each split: ``X (N, ...)`` float and ``y (N,)`` int64.
    """
    arrays = load_arrays(path)
    lower = {key.lower(): key for key in arrays}
    pairs: dict[str, tuple[str, str]] = {}
    if "x" in lower and "y" in lower:
        pairs["train"] = (lower["x"], lower["y"])
    for split, aliases in _SPLIT_ALIASES.items():
        for alias in aliases:
            if f"x_{alias}" in lower and f"y_{alias}" in lower:
                pairs[split] = (lower[f"x_{alias}"], lower[f"y_{alias}"])
                break
    if "train" not in pairs:
        raise ValueError(f"{path}: expected arrays X and y, or X_train and y_train; found {sorted(arrays)}")
    splits: Splits = {}
    for split, (xk, yk) in pairs.items():
        X = arrays[xk]
        if X.dtype == np.uint8:
            X = _scale(X[:, None] if X.ndim == 3 else X)
        splits[split] = check_arrays(X, arrays[yk], name=f"{path.name}[{xk}]")
    return splits


def _require_header(path: Path, magic: bytes, what: str) -> None:
    """NumPy reads a file without its own header as a pickle (refused as "pickled data"):
    check the header first, so that the error says what the file is not."""
    with path.open("rb") as fh:
        if not fh.read(len(magic)).startswith(magic):
            raise ValueError(f"{path}: not {what}")


def load_array(path: str | Path, key: str | None = None) -> tuple[np.ndarray, str]:
    """One array from a ``.npy`` file, or from an ``.npz`` file (its only array, or the one
    named ``key``: the CLIs' ``--key``), and how to name it in messages (``x.npz[image]``).

    A file that is not what its suffix says (a text file named ``x.npy``) is a one-line
    ValueError naming it; pickled data is never loaded.
    """
    path = Path(path)
    if path.suffix not in (".npy", ".npz"):
        raise ValueError(f"{path}: must be a .npy or .npz file")
    if path.suffix == ".npy":
        if key is not None:
            raise ValueError(f"{path}: a key selects an array of an .npz file; a .npy file holds one")
        _require_header(path, _NPY_MAGIC, "a .npy file (it does not start with NumPy's array header)")
        try:
            return np.load(path, allow_pickle=False), str(path)
        except ValueError as exc:  # object arrays, a damaged header
            raise ValueError(f"{path}: {exc}") from None
    _require_header(path, _ZIP_MAGIC, "an .npz file (it is no zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            if key is None and len(names) != 1:
                raise ValueError(f"{path} holds {len(names)} arrays ({', '.join(names)}); choose one with --key")
            chosen = key if key is not None else names[0]
            if chosen not in names:
                raise ValueError(f"--key {chosen!r} is not in {path}; it holds {', '.join(names)}")
            return npz[chosen], f"{path}[{chosen}]"
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from None


def _folder_splits(root: Path) -> Splits:
    named = {split: root / alias for split, aliases in _SPLIT_ALIASES.items() for alias in aliases
             if (root / alias).is_dir()}
    if "train" not in named:
        X, y, _ = load_image_folder(root)
        return {"train": (X, y)}
    X, y, classes = load_image_folder(named["train"])
    splits: Splits = {"train": (X, y)}
    for split, folder in named.items():
        if split != "train":
            Xs, ys, _ = load_image_folder(folder, size=X.shape[2:], grayscale=X.shape[1] == 1, classes=classes)
            splits[split] = (Xs, ys)
    return splits


NAMED_SETS: dict[str, Callable[[], Splits]] = {
    "digits": digits_splits,
    "mnist1d": lambda: {split: mnist1d(split) for split in ("train", "test")},
}
"""The data sources :func:`load` knows by name (no file is read)."""


def load(source: str | Path) -> Splits:
    """Resolve a data source to splits.

    ``"digits"`` is the embedded set, ``"mnist1d"`` the generated 1-D set; a ``.npz`` file goes
    to :func:`load_npz`; a folder with ``train-images-idx3-ubyte[.gz]`` is MNIST/Fashion-MNIST
    (``train`` and, if present, ``test``); any other folder is a folder of images per class, optionally with ``train/``,
    ``val/`` and ``test/`` sub-folders.
    """
    if str(source) in NAMED_SETS:
        return NAMED_SETS[str(source)]()
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"data source {str(source)!r}: no such file or folder (or use 'digits' or 'mnist1d')")
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise ValueError(f"{path}: unsupported data file; expected .npz, an IDX folder or an image folder")
        return load_npz(path)
    if _find(path, "train-images-idx3-ubyte") is not None:
        splits = {"train": load_mnist(path, "train")}
        if _find(path, "t10k-images-idx3-ubyte") is not None:
            splits["test"] = load_mnist(path, "test")
        return splits
    return _folder_splits(path)
