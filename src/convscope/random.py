"""The engine's random number source: ``manual_seed`` makes initialisation and dropout
reproducible (the streams differ from torch's; seeds are not interchangeable)."""

from __future__ import annotations

import numpy as np


class _Default:
    generator = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the default generator used by initialisers and dropout; returns it."""
    _Default.generator = np.random.default_rng(seed)
    return _Default.generator


def default_generator() -> np.random.Generator:
    return _Default.generator


def get_rng_state() -> dict:
    """The default generator's state (JSON-compatible), for checkpoints."""
    return _Default.generator.bit_generator.state


def set_rng_state(state: dict) -> None:
    gen = np.random.default_rng()
    gen.bit_generator.state = state
    _Default.generator = gen
