"""The fast paths of max pooling, adaptive max pooling and eval batch norm against torch.

Max pooling records each window's winning cell as a small offset from the window's first
cell and adds the gradients back with ``np.add.at`` (overlapping windows) or one fancy write
(disjoint windows), block by block on the threads; eval batch norm maps channel tiles with
spread scale and shift rows. These tests reach the cases the generated sweeps rarely do:
offsets wider than a byte, many blocks on one or two threads, disjoint windows with padding,
and torch's float32 summation order for cells that several windows pick.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from threadpoolctl import threadpool_limits

import convscope as cs
import convscope.functional as F
from convscope.functional import pool
from convscope.functional.norm import _affine_tiles
from torch_ref import compare, pool_input


def _input(shape: tuple, kind: str) -> np.ndarray:
    return pool_input(np.random.default_rng(0), shape, kind)


def _both(op: str, x: np.ndarray, dtype: Any, **kwargs: Any) -> tuple[cs.Tensor, torch.Tensor, tuple, tuple]:
    """One call and backward (seeded upstream gradient) in both engines: (inputs, outputs)."""
    a, t = cs.tensor(x.astype(dtype), requires_grad=True), torch.tensor(x.astype(dtype), requires_grad=True)
    ours, theirs = getattr(F, op)(a, **kwargs), getattr(TF, op)(t, **kwargs)
    ours, theirs = (ours, theirs) if isinstance(ours, tuple) else ((ours,), (theirs,))
    upstream = np.random.default_rng(1).standard_normal(theirs[0].shape).astype(dtype)
    ours[0].backward(upstream)
    theirs[0].backward(torch.from_numpy(upstream))
    return a, t, ours, theirs


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=3, stride=1),
                                    dict(kernel_size=2, stride=1, dilation=2, padding=1, ceil_mode=True),
                                    dict(kernel_size=3, stride=2, ceil_mode=True)], ids=str)
@pytest.mark.parametrize("kind", ["normal", "ties"])
def test_max_pool_gradient_is_torchs_float32_sum(kwargs: dict, kind: str) -> None:
    """Cells that overlapping windows pick receive the gradients summed in torch's order
    (output raster order), so the float32 gradient is equal bit for bit, not just close."""
    x = _input((2, 5, 23, 26), kind)
    a, t, ours, theirs = _both("max_pool2d", x, np.float32, return_indices=True, **kwargs)
    np.testing.assert_array_equal(ours[0].numpy(), theirs[0].detach().numpy())
    np.testing.assert_array_equal(ours[1].numpy(), theirs[1].numpy())
    np.testing.assert_array_equal(a.grad, t.grad.numpy())


@pytest.mark.parametrize("op,shape,kwargs,dtype", [
    ("max_pool2d", (1, 2, 9, 140), dict(kernel_size=3, stride=2, padding=1), np.uint16),
    ("max_pool2d", (1, 2, 12, 300), dict(kernel_size=(2, 3), dilation=(1, 2)), np.uint16),
    ("max_pool3d", (1, 2, 5, 30, 31), dict(kernel_size=3, padding=1, stride=(1, 2, 2)), np.uint16),
    ("max_pool1d", (2, 3, 600), dict(kernel_size=5, dilation=70), np.uint16),
    ("max_pool2d", (1, 2, 7, 20), dict(kernel_size=3, stride=2, padding=1), np.uint8),
], ids=str)
@pytest.mark.parametrize("kind", ["normal", "ties", "nan", "inf"])
def test_winning_offsets_wider_than_a_byte(op: str, shape: tuple, kwargs: dict, dtype: Any, kind: str) -> None:
    """A window's largest tap offset (``(k − 1)·d`` rows of the plane down, plus the columns)
    picks the winners' integer type; past 255 it takes two bytes, and ties, NaN (last NaN
    wins) and −∞ windows (first real cell) still report torch's index."""
    geo = pool.pool_geometry(shape, op=op, **kwargs)
    assert pool._offset_type(geo.kernel, geo.dilation, geo.input) == np.dtype(dtype)
    compare(lambda v: getattr(F, op)(v, return_indices=True, **kwargs),
            lambda v: getattr(TF, op)(v, return_indices=True, **kwargs), [_input(shape, kind)])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("op,kwargs", [("max_pool2d", dict(kernel_size=3, stride=2, padding=1)),
                                       ("max_pool2d", dict(kernel_size=2)),
                                       ("adaptive_max_pool2d", dict(output_size=(45, 30))),
                                       ("adaptive_max_pool2d", dict(output_size=30))], ids=str)
def test_many_blocks_on_one_or_two_threads(op: str, kwargs: dict, threads: int) -> None:
    """Planes split into several blocks (and a short last one) shared out over the threads."""
    shape = (3, 70, 90, 90)  # 210 planes of 8100 cells: 8 blocks of 27 planes (and 21)
    with threadpool_limits(threads):
        assert len(pool._plane_blocks(210, 90 * 90)) % threads == 0
        compare(lambda v: getattr(F, op)(v, return_indices=True, **kwargs),
                lambda v: getattr(TF, op)(v, return_indices=True, **kwargs), [_input(shape, "ties")],
                dtype=np.float32)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=3, stride=3, padding=1),
                                    dict(kernel_size=3, stride=4, padding=1, ceil_mode=True),
                                    dict(kernel_size=2, stride=3, dilation=2)], ids=str)
@pytest.mark.parametrize("kind", ["normal", "nan", "inf"])
def test_disjoint_windows_write_their_gradient(kwargs: dict, kind: str) -> None:
    """Windows that share no cell (stride ≥ span) write the gradient instead of adding it."""
    geo = pool.pool_geometry((2, 3, 17, 19), **kwargs)
    assert all(s >= pool.span(k, d) for k, s, d in zip(geo.kernel, geo.stride, geo.dilation))
    compare(lambda v: F.max_pool2d(v, return_indices=True, **kwargs),
            lambda v: TF.max_pool2d(v, return_indices=True, **kwargs), [_input((2, 3, 17, 19), kind)])


def test_disjoint_window_without_real_cells_sends_nothing() -> None:
    """Kernel 2, dilation 3, padding 1 over one cell: the only window reads padding alone
    (torch: −∞ at index 2, past the plane); its gradient goes nowhere, even though the
    windows are disjoint (stride 4 ≥ span 4)."""
    kwargs = dict(kernel_size=2, stride=4, padding=1, dilation=3, ceil_mode=True, return_indices=True)
    (out, index), _ = compare(lambda v: F.max_pool1d(v, **kwargs), lambda v: TF.max_pool1d(v, **kwargs),
                              [np.ones((2, 3, 1))], grad=False)
    assert np.all(np.isneginf(out.numpy())) and np.all(index.numpy() == 2)
    x = cs.tensor(np.ones((2, 3, 1)), requires_grad=True)
    F.max_pool1d(x, **kwargs)[0].sum().backward()
    assert not x.grad.any()


@pytest.mark.parametrize("shape,output_size", [((2, 3, 14, 14), 7), ((2, 3, 12, 20), (4, 5)),
                                                ((2, 3, 6, 8, 10), (3, 2, 5))], ids=str)
@pytest.mark.parametrize("kind", ["normal", "ties", "nan", "inf"])
def test_adaptive_max_even_bins_as_windows(shape: tuple, output_size: Any, kind: str) -> None:
    """Even bins (bins of 2 read through phase copies, wider ones directly) keep winning
    offsets and scatter back like a max pool with kernel = stride = bin."""
    op = f"adaptive_max_pool{len(shape) - 2}d"
    compare(lambda v: getattr(F, op)(v, output_size, return_indices=True),
            lambda v: getattr(TF, op)(v, output_size, return_indices=True), [_input(shape, kind)])


def test_max_pool_backward_keeps_only_the_winners() -> None:
    """The backward reads neither the input nor the maxima: the closure holds one winning
    offset per window (a byte here) besides plain shapes."""
    x = cs.tensor(np.random.default_rng(0).standard_normal((2, 3, 8, 8)), requires_grad=True)
    y = F.max_pool2d(x, 2)
    held = [c.cell_contents for c in y._backward.__closure__ if isinstance(c.cell_contents, np.ndarray)]
    assert [(a.dtype, a.shape) for a in held] == [(np.dtype(np.uint8), (6, 4, 4))]


# --- eval batch norm: tiles of channels ---------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(2, 131, 45, 45), (3, 7, 200, 190), (5, 300), (4, 9, 33), (1, 2048, 7, 7),
                                   (0, 4, 3, 3), (2, 3, 0)], ids=str)
def test_eval_batch_norm_tiles(shape: tuple, threads: int) -> None:
    """Samples larger than a tile split into equal tiles of channels per thread (131
    channels: 66 and 65); small ones run as one tile, several samples per pass."""
    rng = np.random.default_rng(0)
    c = shape[1]
    stats = [np.abs(rng.standard_normal(c)) + 0.5 for _ in range(2)]
    params = [rng.standard_normal(c) for _ in range(2)]
    with threadpool_limits(threads):
        compare(lambda v, w, b: F.batch_norm(v, cs.tensor(stats[0] - 0.5), cs.tensor(stats[1]), w, b),
                lambda v, w, b: TF.batch_norm(v, torch.tensor(stats[0] - 0.5), torch.tensor(stats[1]), w, b),
                [rng.standard_normal(shape), *params], grad=0 not in shape)


def test_eval_batch_norm_tiles_of_one_size_per_thread() -> None:
    tiles = _affine_tiles(131, 45 * 45, 2)
    assert [t.stop - t.start for t in tiles][:1] == [66] and len(tiles) == 2
    assert len(_affine_tiles(256, 56 * 56, 2)) % 2 == 0
    assert _affine_tiles(32, 24 * 24, 2) == [slice(0, 32)]  # one tile: no thread to wake


def test_instance_norm_with_running_stats_uses_the_same_map() -> None:
    rng = np.random.default_rng(3)
    mean, var = rng.standard_normal(6), np.abs(rng.standard_normal(6)) + 0.1
    compare(lambda v, w: F.instance_norm(v, cs.tensor(mean), cs.tensor(var), w, None, use_input_stats=False),
            lambda v, w: TF.instance_norm(v, torch.tensor(mean), torch.tensor(var), w, None, use_input_stats=False),
            [rng.standard_normal((2, 6, 5, 7)), rng.standard_normal(6)])
