"""MNIST-1D, generated procedurally: 1-D signals of the ten digits for ``conv1d`` models.

The recipe is the published one (S. Greydanus and D. Kobak, *Scaling down deep learning with
MNIST-1D*, ICML 2024; github.com/greydanus/mnist1d): each digit is a 12-point template that
is padded with 36–60 zeros, stretched to 72 points, scaled, circularly translated, given
smooth noise where it is zero and white noise everywhere, sheared, and resampled to 40
points; the whole set is then standardised. This implementation follows those steps with its
own NumPy code and random stream (``numpy.random.default_rng(seed)``), so the samples are
*not* those of the published ``mnist1d_data.pkl``, but the task and its difficulty are.
Nothing is downloaded; the 5,000 signals are made in a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEMPLATES = np.array([
    [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
    [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
    [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
    [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
    [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
    [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
    [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
    [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
])
"""The published 12-point templates of the digits 0–9 (before whitening)."""


@dataclass(frozen=True)
class Recipe:
    """The generator's settings (the published defaults)."""

    num_samples: int = 5000
    train_split: float = 0.8
    padding: tuple[int, int] = (36, 60)
    scale_coeff: float = 0.4
    max_translation: int = 48
    corr_noise_scale: float = 0.25
    iid_noise_scale: float = 2e-2
    shear_scale: float = 0.75
    final_seq_length: int = 40


def templates() -> np.ndarray:
    """Whitened templates that start and end at 0, divided by 6 as published: ``(10, 12)``."""
    x = TEMPLATES - TEMPLATES.mean(1, keepdims=True)
    x /= x.std(1, keepdims=True)
    return (x - x[:, :1]) / 6.0


def _resample(x: np.ndarray, n: int, lengths: np.ndarray | None = None) -> np.ndarray:
    """Linear interpolation of each row of ``x`` onto ``n`` evenly spaced points over the
    row's span: its first ``lengths[i]`` values (all of them by default).

    Shape:
        ``x (N, L)`` → ``(N, n)``.
    """
    lengths = np.full(len(x), x.shape[1]) if lengths is None else lengths
    pos = np.linspace(0, 1, n)[None, :] * (lengths[:, None] - 1)
    left = np.minimum(np.floor(pos).astype(np.int64), lengths[:, None] - 2)
    frac = pos - left
    rows = np.arange(len(x))[:, None]
    return x[rows, left] * (1 - frac) + x[rows, left + 1] * frac


def _smooth(x: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """A Gaussian filter along the last axis (radius 4σ, mirrored edges), as
    ``scipy.ndimage.gaussian_filter1d``. Shape: ``(N, L)`` → ``(N, L)``."""
    radius = int(4 * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    padded = np.pad(x, [(0, 0), (radius, radius)], mode="symmetric")
    return np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1, axis=1) @ (taps / taps.sum())


def _transform(base: np.ndarray, recipe: Recipe, rng: np.random.Generator) -> np.ndarray:
    """Signals ``(N, final_seq_length)`` from templates ``(N, 12)``, by the published steps
    (pad, stretch, scale, translate, noise, shear, resample), all rows at once."""
    n, size = base.shape
    low, high = recipe.padding
    length = size + high
    pads = low + (rng.random(n) * (high - low + 1)).astype(np.int64)
    padded = np.concatenate([base + 1e-8, np.zeros((n, high))], axis=1)
    x = _resample(padded, length, lengths=size + pads)
    x *= 1 + recipe.scale_coeff * (rng.random((n, 1)) - 0.5)
    shift = rng.integers(recipe.max_translation, size=(n, 1))
    x = x[np.arange(n)[:, None], (np.arange(length)[None, :] - shift) % length]  # circular shift right
    x = np.where(x != 0, x, _smooth(recipe.corr_noise_scale * rng.standard_normal((n, length))))
    x = x + recipe.iid_noise_scale * rng.standard_normal((n, length))
    x = x - recipe.shear_scale * (rng.random((n, 1)) - 0.5) * np.linspace(-0.5, 0.5, length)
    return _resample(x, recipe.final_seq_length)


def mnist1d(split: str = "train", *, seed: int = 42, recipe: Recipe | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Generate MNIST-1D and return one split (``"train"``: the first 80 %, ``"test"``, or
    ``"all"``). The same ``seed`` and ``recipe`` always give the same arrays.

    Shape:
        ``X (N, 1, 40)`` float32 (standardised over the whole set) and ``y (N,)`` int64;
        ``N`` = 4,000 / 1,000 / 5,000 with the default recipe.

    >>> X, y = mnist1d("test")
    >>> X.shape, y.shape, sorted(set(y.tolist())) == list(range(10))
    ((1000, 1, 40), (1000,), True)
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"mnist1d: unknown split {split!r}; expected 'train', 'test' or 'all'")
    recipe = recipe or Recipe()
    rng = np.random.default_rng(seed)
    base = templates()
    per_class = recipe.num_samples // len(base)
    labels = np.repeat(np.arange(len(base)), per_class)
    signals = _transform(base[labels], recipe, rng)
    order = rng.permutation(len(labels))
    X, y = signals[order], labels[order]
    X = ((X - X.mean()) / X.std()).astype(np.float32)[:, None]
    cut = int(len(y) * recipe.train_split)
    keep = {"train": slice(None, cut), "test": slice(cut, None), "all": slice(None)}[split]
    return X[keep], y[keep].astype(np.int64)
