"""Padding in every mode, checked against torch (values, gradients, errors)."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest
import torch.nn.functional as TF
from threadpoolctl import threadpool_limits

import convscope as cs
import convscope.functional as F
from torch_ref import both_refuse, compare

pad_module = importlib.import_module("convscope.functional.pad")  # the name `pad` is the function

MODES = ("constant", "reflect", "replicate", "circular")


def _pads(mode: str, sizes: list[int], rng: np.random.Generator) -> tuple[int, ...]:
    """Random asymmetric (possibly cropping) pads, last dim first, inside each mode's limits
    for dims of size >= 4."""
    out: list[int] = []
    for n in reversed(sizes):
        high = {"constant": 3, "reflect": n - 1, "replicate": n + 2, "circular": n - 1}[mode]
        out += [int(rng.integers(-1 if mode != "constant" else -2, high + 1)) for _ in range(2)]
    return tuple(out)


def _samples() -> list[tuple[str, tuple, str, tuple]]:
    rng = np.random.default_rng(7)
    samples = []
    for mode in MODES:
        for nd in (1, 2, 3):
            for batched in (True, False):
                for rep in range(3 if nd < 3 else 2):
                    sizes = [int(s) for s in rng.integers(4, 7 if nd < 3 else 5, nd)]
                    lead = (2, 3) if batched else (3,)
                    samples.append((f"{mode}_{nd}d_{'batched' if batched else 'unbatched'}_{rep}",
                                    lead + tuple(sizes), mode, _pads(mode, sizes, rng)))
    return samples


SAMPLES = _samples() + [
    # cropping beyond one side, as torch computes it (index maps taken relative to the crop)
    ("reflect_crop_past_edge", (1, 2, 5), "reflect", (-7, 4)),
    ("reflect_crop_other_side", (1, 2, 5), "reflect", (4, -7)),
    ("replicate_crop_past_edge", (1, 2, 5), "replicate", (-6, 2)),
    ("replicate_pad_beyond_size", (2, 3, 3), "replicate", (5, 7)),
    ("circular_crop_then_wrap", (1, 2, 5), "circular", (-2, 3)),
    ("circular_full_wrap", (2, 2, 3, 4), "circular", (4, 4, 3, 3)),
    ("circular_crop_to_empty", (2, 2, 5), "circular", (-5, 0)),
    ("circular_zero_channels", (2, 0, 5), "circular", (1, 2)),
    ("reflect_zero_batch", (0, 3, 5), "reflect", (2, 1)),
    ("reflect_size_minus_one", (2, 3, 5), "reflect", (4, 4)),
    ("constant_1d_input", (6,), "constant", (1, 2)),
    ("constant_all_four_dims", (2, 3, 4, 5), "constant", (1, 0, 0, 2, 1, -1, 2, 0)),
    ("constant_crop_to_empty", (2, 3, 5), "constant", (-2, -3)),
    ("constant_zero_pads", (2, 3), "constant", (0, 0)),
    ("constant_no_pads", (2, 3), "constant", ()),
]


@pytest.mark.parametrize("name,shape,mode,pads", SAMPLES, ids=[s[0] for s in SAMPLES])
def test_matches_torch_float64(name: str, shape: tuple, mode: str, pads: tuple) -> None:
    x = np.random.default_rng(len(name)).standard_normal(shape)
    compare(F.pad, TF.pad, [x, pads], {"mode": mode})


@pytest.mark.parametrize("name,shape,mode,pads", SAMPLES[::3], ids=[s[0] for s in SAMPLES[::3]])
def test_matches_torch_float32(name: str, shape: tuple, mode: str, pads: tuple) -> None:
    x = np.random.default_rng(1).standard_normal(shape)
    compare(F.pad, TF.pad, [x, pads], {"mode": mode}, dtype=np.float32, seed=1)


@pytest.mark.parametrize("value", [2.5, -1.0, 0.0])
def test_constant_value(value: float) -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    compare(F.pad, TF.pad, [x, (1, 2, 0, 1)], {"value": value})
    compare(F.pad, TF.pad, [x, (1, 2)], {"value": value}, dtype=np.float32)


def test_constant_on_0d_and_integer_tensors() -> None:
    compare(F.pad, TF.pad, [np.array(1.5), ()])
    compare(F.pad, TF.pad, [np.arange(6).reshape(2, 3), (1, 1)], {"value": 7})


def test_output_is_a_copy_and_float32_stays_float32() -> None:
    x = cs.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    y = F.pad(x, (0, 0), value=0.5)
    assert y.numpy() is not x.numpy() and y.dtype == np.float32
    z = F.pad(x, (1, 1), mode="replicate", value=0.0)
    z.backward(np.ones(z.shape, np.float32))
    assert x.grad.dtype == np.float32 and x.grad[0, 0] == 2.0


@pytest.mark.parametrize("name,shape,mode,pads", SAMPLES[::2], ids=[s[0] for s in SAMPLES[::2]])
def test_meta_shape_matches_real(name: str, shape: tuple, mode: str, pads: tuple) -> None:
    real = F.pad(cs.tensor(np.zeros(shape)), pads, mode=mode)
    meta = F.pad(cs.Tensor.meta(shape, np.float64), pads, mode=mode)
    assert meta.is_meta and meta.shape == real.shape and meta.dtype == real.dtype


def test_docstring_example() -> None:
    assert doctest.testmod(pad_module).failed == 0


ERRORS = [
    ("odd_length", (2, 3, 5), (1,), {}, r"pad has odd length 1"),
    ("too_many_pairs", (5,), (1, 1, 1, 1), {}, r"pad has 2 \(before, after\) pairs but the input has only 1 dims"),
    ("not_ints", (2, 3, 5), (1.0, 1), {}, r"pad must be a sequence of ints, got \(1.0, 1\)"),
    ("unknown_mode", (2, 3, 5), (1, 1), {"mode": "mirror"}, r"unknown mode 'mirror'; expected one of constant"),
    ("constant_crop_too_much", (2, 3, 5), (-7, 4), {}, r"padding \(-7, 4\) crops more than the 5 cells of dim 2"),
    ("constant_crops_both_sides", (2, 3, 5), (-3, -3), {}, r"crops more than the 5 cells"),
    ("reflect_pad_equals_size", (2, 3, 5), (5, 5), {"mode": "reflect"},
     r"reflect padding \(5, 5\) must be smaller than dim 2 of size 5"),
    ("reflect_pad_too_big_on_h", (2, 3, 4, 5), (1, 1, 4, 1), {"mode": "reflect"},
     r"reflect padding \(4, 1\) must be smaller than dim 2 of size 4"),
    ("reflect_value", (2, 3, 5), (1, 1), {"mode": "reflect", "value": 1.0}, r"mode 'reflect' takes no value"),
    ("circular_value", (2, 3, 5), (1, 1), {"mode": "circular", "value": 2.0}, r"mode 'circular' takes no value"),
    ("reflect_on_4d_with_one_pair", (2, 3, 4, 5), (1, 1), {"mode": "reflect"},
     r"got 1 \(before, after\) pairs for a 4-d input"),
    ("replicate_on_1d", (5,), (1, 1), {"mode": "replicate"}, r"got 1 \(before, after\) pairs for a 1-d input"),
    ("circular_on_5d_with_two_pairs", (1, 2, 3, 4, 5), (1, 1, 1, 1), {"mode": "circular"},
     r"got 2 \(before, after\) pairs for a 5-d input"),
    ("replicate_no_pairs", (2, 3, 5), (), {"mode": "replicate"}, r"got 0 \(before, after\) pairs"),
    ("reflect_empty_channels", (2, 0, 5), (1, 1), {"mode": "reflect"},
     r"mode 'reflect' needs non-empty dims except the batch dim, got shape \(2, 0, 5\)"),
    ("replicate_empty_unbatched", (0, 5), (1, 1), {"mode": "replicate"}, r"needs non-empty dims"),
    ("reflect_leaves_nothing", (2, 3, 5), (-3, -3), {"mode": "reflect"},
     r"padding \(-3, -3\) leaves -1 cells of dim 2 of size 5; reflect needs at least 1"),
    ("replicate_leaves_nothing", (2, 3, 5), (-5, 0), {"mode": "replicate"}, r"leaves 0 cells .* replicate needs"),
    ("circular_wraps_twice", (2, 3, 5), (6, 0), {"mode": "circular"},
     r"circular padding \(6, 0\) wraps around more than once: dim 2 of size 5"),
    ("circular_empty_dim", (2, 3, 0), (1, 1), {"mode": "circular"}, r"wraps around more than once"),
    ("circular_negative_size", (2, 3, 5), (-3, -3), {"mode": "circular"}, r"padding \(-3, -3\) leaves -1 cells"),
]


@pytest.mark.parametrize("name,shape,pads,kwargs,match", ERRORS, ids=[e[0] for e in ERRORS])
def test_refused_like_torch(name: str, shape: tuple, pads: tuple, kwargs: dict, match: str) -> None:
    x = np.random.default_rng(0).standard_normal(shape)
    err = both_refuse(F.pad, TF.pad, [x, pads], kwargs, match=match)
    assert err.layer == "pad"


@pytest.mark.parametrize("pads", [(-5, 1), (3, -4), (-7, 4)])
def test_circular_wrap_after_crop_is_refused(pads: tuple) -> None:
    """Unlike torch, which reads uninitialised memory (or fails inside a copy) here."""
    with pytest.raises(cs.ShapeError, match=r"wraps around more than once: dim 2 of size 5 keeps"):
        F.pad(cs.tensor(np.zeros((1, 1, 5))), pads, mode="circular")


@pytest.mark.parametrize("shape,before,after", [
    ((2, 3, 300, 300), (1, 2), (2, 1)),  # blocks of samples
    ((1, 5, 300, 300), (1, 1), (1, 1)),  # one sample: blocks of channels
    ((3, 2, 2, 200, 250), (1, 0, 2), (0, 3, -1)),  # 3-d, a crop at the end of one dim
    ((600, 700), (2, 3), (1, 0)),  # no leading dims: one copy
])
def test_large_pads_are_copied_in_blocks_on_the_threads(shape: tuple, before: tuple, after: tuple,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Arrays past ``_PARALLEL_COPY_BYTES`` are copied in blocks of a leading dim on two threads:
    the same cells as NumPy's pad (and crop)."""
    monkeypatch.setattr(pad_module, "_PARALLEL_COPY_BYTES", 1)
    x = np.random.default_rng(0).standard_normal(shape)
    lead = len(shape) - len(before)
    want = np.pad(x, [(0, 0)] * lead + [(max(b, 0), max(a, 0)) for b, a in zip(before, after)])
    want = want[(Ellipsis,) + tuple(slice(max(-b, 0), want.shape[lead + i] - max(-a, 0))
                                    for i, (b, a) in enumerate(zip(before, after)))]
    with threadpool_limits(2, user_api="blas"):
        got = pad_module.constant_pad_array(x, before, after)
    np.testing.assert_array_equal(got, want)
