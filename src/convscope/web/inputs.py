"""What a request runs a model on: a test digit, a drawing, random numbers or given values.

Digits and drawings are 8×8 images in [0, 1], made the way the UCI digits were: a 32×32
bitmap averaged over 4×4 blocks (:func:`drawing_to_digit`). For a model whose input is not
1×8×8 the image is resized with the engine's ``interpolate`` (bilinear) and repeated
across the input channels.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from .. import functional as F
from ..tensor import Tensor, no_grad
from .body import RequestBody
from .errors import ApiError

DIGIT_SIZE = 8
BITMAP_SIZE = 32


class InputSpec(RequestBody):
    """The model input of a request (batch of one)."""

    source: Literal["digit", "drawing", "random", "values"] = Field(
        "random", description="digit: test image `digit` of the embedded digits set; drawing: `pixels`, a "
                              "32×32 (or 8×8) bitmap in [0, 1], row-major; random: uniform [0, 1) with `seed`; "
                              "values: `values`, the whole input (C·H·W numbers, row-major)")
    digit: int = Field(0, ge=0, description="index into the digits test set")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the random input")
    pixels: list[float] | None = Field(None, description="the drawing: 1024 (32×32) or 64 (8×8) values in [0, 1]")
    values: list[float] | None = Field(None, description="the model input itself, row-major")


def drawing_to_digit(pixels: list[float]) -> np.ndarray:
    """A 32×32 bitmap (or an 8×8 image) in [0, 1] → the 8×8 digit image, like the UCI digits:
    the mean of each 4×4 block (``avg_pool2d`` with kernel 4).

    Shape:
        ``(1024,)`` or ``(64,)`` → ``(8, 8)`` float32.
    """
    arr = np.asarray(pixels, np.float32)
    if arr.size not in (BITMAP_SIZE ** 2, DIGIT_SIZE ** 2):
        raise ApiError(422, "validation", f"input.pixels must hold {BITMAP_SIZE}×{BITMAP_SIZE} = "
                                          f"{BITMAP_SIZE ** 2} or {DIGIT_SIZE}×{DIGIT_SIZE} = {DIGIT_SIZE ** 2} "
                                          f"values, got {arr.size}", "input.pixels")
    if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
        raise ApiError(422, "validation", "input.pixels must be numbers in [0, 1]", "input.pixels")
    side = int(round(arr.size ** 0.5))
    image = arr.reshape(1, 1, side, side)
    if side == DIGIT_SIZE:
        return image[0, 0]
    with no_grad():
        return F.avg_pool2d(Tensor.wrap(image), BITMAP_SIZE // DIGIT_SIZE).numpy()[0, 0]


def _test_digit(index: int) -> np.ndarray:
    from ..data import digits

    images, _ = digits("test")
    if index >= len(images):
        raise ApiError(422, "validation", f"input.digit {index} is out of range: the digits test set has "
                                          f"{len(images)} images (0 … {len(images) - 1})", "input.digit")
    return images[index, 0]


def _fit_image(image: np.ndarray, shape: tuple[int, ...], field: str) -> np.ndarray:
    """An ``(h, w)`` image as a ``(1, *shape)`` input: resized (bilinear) and repeated over channels."""
    if len(shape) != 3:
        raise ApiError(422, "validation", f"{field}: an image input needs a model taking C×H×W input; this one takes "
                                          f"{'×'.join(map(str, shape))}", field)
    c, h, w = shape
    x = image.reshape(1, 1, *image.shape).astype(np.float32)
    if (h, w) != image.shape:
        with no_grad():
            x = F.interpolate(Tensor.wrap(x), size=(h, w), mode="bilinear", align_corners=False).numpy()
    return np.ascontiguousarray(np.repeat(x, c, axis=1))


def make_input(spec: InputSpec, shape: tuple[int, ...] | None, max_values: int,
               dtype: np.dtype | None = None) -> np.ndarray:
    """The ``(1, *shape)`` input ``spec`` describes, in ``dtype``."""
    if shape is None:
        raise ApiError(422, "validation", "this model has no known input shape; upload it with input_shape",
                       "model_id")
    count = int(np.prod(shape, dtype=np.int64))
    if count > max_values:
        raise ApiError(422, "limit", f"the model input {'×'.join(map(str, shape))} has {count:,} values; this "
                                     f"server runs inputs of at most {max_values:,}", "input")
    if spec.source == "random":
        x = np.random.default_rng(spec.seed).random((1, *shape))
    elif spec.source == "values":
        if spec.values is None or len(spec.values) != count:
            got = "none" if spec.values is None else f"{len(spec.values):,}"
            raise ApiError(422, "validation", f"input.values must hold {count:,} numbers (the input "
                                              f"{'×'.join(map(str, shape))}, row-major), got {got}", "input.values")
        x = np.asarray(spec.values, np.float64).reshape(1, *shape)
        if not np.all(np.isfinite(x)):
            raise ApiError(422, "validation", "input.values must be finite numbers", "input.values")
        with np.errstate(over="ignore"):  # finite as float64 may still overflow the model's dtype
            x = x.astype(dtype or np.float32)
        over = int(np.count_nonzero(~np.isfinite(x)))
        if over:
            raise ApiError(422, "validation", f"input.values: {over:,} of {count:,} values overflow {x.dtype} "
                                              f"(largest {float(np.finfo(x.dtype).max):.2g})", "input.values")
    elif spec.source == "digit":
        x = _fit_image(_test_digit(spec.digit), shape, "input.digit")
    else:
        if spec.pixels is None:
            raise ApiError(422, "validation", "input.pixels is required for source 'drawing'", "input.pixels")
        x = _fit_image(drawing_to_digit(spec.pixels), shape, "input.pixels")
    return np.ascontiguousarray(x, dtype=dtype or np.float32)
