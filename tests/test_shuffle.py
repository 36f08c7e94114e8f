"""Pixel shuffle, pixel unshuffle and channel shuffle (functional/shuffle.py) against torch,
values and gradients, and their refusals of sizes that do not divide."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as TF

import convscope as cs
import convscope.functional as F
from torch_ref import compare


@pytest.mark.parametrize("op,args,shape", [
    ("pixel_shuffle", (2,), (2, 8, 3, 5)), ("pixel_shuffle", (3,), (18, 2, 3)),
    ("pixel_shuffle", (2,), (2, 1, 4, 2, 2)),
    ("pixel_unshuffle", (2,), (2, 3, 4, 6)), ("pixel_unshuffle", (3,), (2, 6, 3)),
    ("channel_shuffle", (2,), (2, 6, 3, 3)), ("channel_shuffle", (3,), (2, 6, 4)),
])
def test_shuffles_match_torch_with_gradients(op: str, args: tuple, shape: tuple) -> None:
    compare(lambda x: getattr(F, op)(x, *args), lambda x: getattr(TF, op)(x, *args),
            [np.random.default_rng(len(shape)).standard_normal(shape)], dtype=np.float64)


@pytest.mark.parametrize("op,args,shape,match", [
    ("pixel_shuffle", (2,), (2, 6, 3, 3), r"pixel_shuffle: 6 channels do not divide into groups of upscale_factor² "
                                          r"= 4"),
    ("pixel_shuffle", (0,), (2, 8, 3, 3), r"pixel_shuffle: upscale_factor must be a positive integer, got 0"),
    ("pixel_unshuffle", (2,), (2, 3, 5, 4), r"pixel_unshuffle: height 5 and width 4 must be multiples of"),
    ("channel_shuffle", (4,), (2, 6, 3, 3), r"channel_shuffle: 6 channels do not divide into 4 groups"),
    ("channel_shuffle", (2,), (6, 3), r"channel_shuffle: expected an input \(N, C, \*\) of 3 or more dims"),
])
def test_shuffles_refuse_sizes_that_do_not_divide(op: str, args: tuple, shape: tuple, match: str) -> None:
    with pytest.raises(cs.ShapeError, match=match):
        getattr(F, op)(cs.Tensor.meta(shape), *args)
