"""The default digits CNN: its architecture and the recipe that trained the shipped weights."""

from __future__ import annotations

from typing import Any

from .. import nn

INPUT_SHAPE = (1, 8, 8)
NUM_CLASSES = 10

RECIPE: dict[str, Any] = {
    "epochs": 30, "optimizer": "adamw", "lr": 5e-3, "batch_size": 64, "weight_decay": 1e-4,
    "schedule": "cosine", "max_shift": 1, "seed": 0,
}
"""The :func:`convscope.train` arguments that produced ``digits.npz`` (see
``scripts/train_pretrained.py``); ``convscope train`` uses them for the default model."""


def digits_cnn() -> nn.Sequential:
    """The default digits CNN (untrained): two 3×3 convs, one 2×2 max pool, two linear layers.

    ``Conv2d(1, 32, 3, padding=1) → ReLU → Conv2d(32, 32, 3, padding=1) → ReLU → MaxPool2d(2)
    → Flatten → Linear(512, 64) → ReLU → Linear(64, 10)``: 43,050 parameters.

    Shape:
        input ``(N, 1, 8, 8)`` (pixels in ``[0, 1]``) → ``(N, 32, 8, 8)`` → ``(N, 32, 8, 8)``
        → ``(N, 32, 4, 4)`` → ``(N, 512)`` → ``(N, 64)`` → logits ``(N, 10)``.
    """
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(512, 64), nn.ReLU(),
        nn.Linear(64, NUM_CLASSES),
    )
