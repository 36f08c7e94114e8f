"""Seeded minibatches, with optional random-shift augmentation.

The order of epoch ``e`` is drawn from ``numpy.random.default_rng([seed, e])``: it depends on
the seed and the epoch number only, so a run resumed at epoch ``e`` sees exactly the batches
an uninterrupted run would, without saving any iterator state.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .checks import check_arrays


def random_shift(X: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Shift every example by a random whole number of cells in ``[-max_shift, max_shift]``
    along each spatial axis, filling the uncovered border with zeros.

    Shape:
        ``X (N, C, *spatial)`` (1-D signals, 2-D images, 3-D volumes) → same shape, a new array.
    """
    if max_shift < 0:
        raise ValueError(f"random_shift: max_shift must be ≥ 0, got {max_shift}")
    n, spatial = X.shape[0], X.shape[2:]
    offsets = rng.integers(-max_shift, max_shift + 1, size=(n, len(spatial)))
    if max_shift == 0 or not spatial:
        return X.copy()
    pad = [(0, 0), (0, 0)] + [(max_shift, max_shift)] * len(spatial)
    padded = np.pad(X, pad)
    out = np.empty_like(X)
    shifts, group = np.unique(offsets, axis=0, return_inverse=True)
    for g, shift in enumerate(shifts):
        rows = np.flatnonzero(group.reshape(-1) == g)
        # a shift of +d moves content towards higher indices: read from max_shift − d
        window = tuple(slice(max_shift - d, max_shift - d + size) for d, size in zip(shift, spatial))
        out[rows] = padded[(rows, slice(None), *window)]
    return out


class Batches:
    """Minibatches of ``(X, y)`` in a seeded order, redrawn every epoch.

    Args:
        X, y: the set (checked with :func:`~convscope.data.checks.check_arrays`).
        batch_size: examples per batch; the last batch may be smaller unless ``drop_last``.
        shuffle: draw a new permutation per epoch; ``False`` keeps the stored order.
        seed: the seed of every epoch's order and augmentation.
        max_shift: random-shift augmentation (cells per spatial axis); 0 turns it off.

    Shape:
        yields ``X_batch (B, ...)`` and ``y_batch (B,)``, ``B ≤ batch_size``.

    >>> import numpy as np
    >>> b = Batches(np.zeros((10, 1, 4, 4)), np.arange(10) % 3, batch_size=4, seed=0)
    >>> [len(yb) for _, yb in b.epoch(0)], len(b)
    ([4, 4, 2], 3)
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, batch_size: int = 64, *, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, max_shift: int = 0) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"Batches: batch_size must be ≥ 1, got {batch_size}")
        if max_shift < 0:
            raise ValueError(f"Batches: max_shift must be ≥ 0, got {max_shift}")
        self.X, self.y = check_arrays(X, y, name="Batches")
        spatial = self.X.shape[2:]
        if spatial and max_shift >= min(spatial):  # such a shift can move every pixel out of the image
            raise ValueError(f"Batches: max_shift must be smaller than the examples' spatial size "
                             f"{'×'.join(map(str, spatial))}, got {max_shift}")
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.max_shift = int(max_shift)
        self._next_epoch = 0

    def __len__(self) -> int:
        n = self.X.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """The example indices of epoch ``epoch``, in visiting order ``(N,)``."""
        if not self.shuffle:
            return np.arange(self.X.shape[0])
        return np.random.default_rng([self.seed, epoch]).permutation(self.X.shape[0])

    def epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The batches of epoch ``epoch`` (a function of ``seed`` and ``epoch`` alone)."""
        order = self.order(epoch)
        aug_rng = np.random.default_rng([self.seed, epoch, 1])
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start:start + self.batch_size]
            xb = self.X[idx]
            if self.max_shift:
                xb = random_shift(xb, self.max_shift, aug_rng)
            yield xb, self.y[idx]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Each ``iter()`` runs the next epoch: 0, 1, 2, …"""
        epoch, self._next_epoch = self._next_epoch, self._next_epoch + 1
        return self.epoch(epoch)
