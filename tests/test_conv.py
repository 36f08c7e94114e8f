"""Convolution and transposed convolution, checked against torch.

One registry of valid samples (a seeded random sweep plus named corner cases) drives the
differential tests (output and every gradient, float64 and float32), the meta-tensor
checks and the pure shape rules; one registry of invalid samples drives the error tests.
"""

from __future__ import annotations

import doctest
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from threadpoolctl import threadpool_limits

import convscope as cs
import convscope.functional as F
from convscope.functional import conv as conv_module
from convscope.functional import jit
from torch_ref import both_refuse, compare

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")


@dataclass
class Sample:
    name: str
    op: str
    input_shape: tuple
    weight_shape: tuple
    bias: bool = True
    kwargs: dict = field(default_factory=dict)

    @property
    def transposed(self) -> bool:
        return self.op.startswith("conv_transpose")

    def arrays(self, seed: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        arrays = [rng.standard_normal(self.input_shape), rng.standard_normal(self.weight_shape)]
        if self.bias:
            c_out = self.weight_shape[1] * self.kwargs.get("groups", 1) if self.transposed else self.weight_shape[0]
            arrays.append(rng.standard_normal(c_out))
        return arrays

    def __str__(self) -> str:
        return self.name


def _maybe_int(values: list[int], rng: np.random.Generator) -> int | tuple[int, ...]:
    """Equal values sometimes collapse to an int, so both argument forms get exercised."""
    values = [int(v) for v in values]
    return values[0] if len(set(values)) == 1 and rng.random() < 0.5 else tuple(values)


def _channels(kind: str, rng: np.random.Generator) -> tuple[int, int, int]:
    """(C_in, C_out, groups) for a conv of the given kind."""
    if kind == "plain":
        return int(rng.integers(1, 5)), int(rng.integers(1, 5)), 1
    if kind == "grouped":
        groups = int(rng.integers(2, 4))
        return groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3)), groups
    c_in = int(rng.integers(1, 6))
    multiplier = 1 if kind == "depthwise" else int(rng.integers(2, 4))
    return c_in, c_in * multiplier, c_in


KINDS = ("plain", "plain", "grouped", "depthwise", "multiplier")
MAX_SIZE = {1: 12, 2: 8, 3: 5}


def random_conv(i: int, rng: np.random.Generator) -> Sample:
    nd = int(rng.choice([1, 2, 2, 3]))
    kind = KINDS[i % len(KINDS)]
    c_in, c_out, groups = _channels(kind, rng)
    kernel = rng.integers(1, 5 if nd < 3 else 4, nd)
    dilation = rng.integers(1, 3, nd)
    mode = rng.choice(["int", "tuple", "same", "valid"], p=[0.35, 0.35, 0.15, 0.15])
    stride = np.ones(nd, int) if mode == "same" else rng.integers(1, 4, nd)
    if mode == "same":
        padding, total = "same", dilation * (kernel - 1)
    elif mode == "valid":
        padding, total = "valid", np.zeros(nd, int)
    else:
        pads = rng.integers(0, 3, nd) if mode == "tuple" else np.full(nd, rng.integers(0, 3))
        padding, total = _maybe_int(pads, rng) if mode == "tuple" else int(pads[0]), 2 * pads
    # the smallest input the dilated kernel fits in, plus a random margin
    sizes = [max(1, int(d * (k - 1) + 1 - t + rng.integers(0, MAX_SIZE[nd] - 2)))
             for k, d, t in zip(kernel, dilation, total, strict=True)]
    batch = rng.choice([0, 1, 2, 3], p=[0.15, 0.3, 0.35, 0.2])
    lead = (int(batch),) if batch else ()
    kwargs = {"stride": _maybe_int(stride, rng), "padding": padding, "dilation": _maybe_int(dilation, rng),
              "groups": groups}
    return Sample(f"rand{i}_{nd}d_{kind}", f"conv{nd}d", lead + (c_in, *sizes),
                  (c_out, c_in // groups, *map(int, kernel)), bool(rng.random() < 0.75), kwargs)


def random_transpose(i: int, rng: np.random.Generator, stride1: bool = False) -> Sample:
    nd = int(rng.choice([1, 2, 2, 3]))
    kind = KINDS[i % len(KINDS)]
    # the conv this is the gradient of has C_in and C_out swapped, so it is of the same kind
    c_out, c_in, groups = _channels(kind, rng)
    kernel = rng.integers(1, 5 if nd < 3 else 4, nd)
    stride = np.ones(nd, int) if stride1 else rng.integers(1, 4, nd)
    dilation = rng.integers(1, 4 if stride1 else 3, nd)
    sizes = rng.integers(1, 6 if nd < 3 else 4, nd)
    extra = np.array([rng.integers(0, max(s, d)) for s, d in zip(stride, dilation, strict=True)])
    full = (sizes - 1) * stride + dilation * (kernel - 1) + extra + 1
    pad = np.array([rng.integers(0, (f - 1) // 2 + 1) for f in full])
    batch = rng.choice([0, 1, 2])
    lead = (int(batch),) if batch else ()
    kwargs = {"stride": _maybe_int(stride, rng), "padding": _maybe_int(pad, rng),
              "output_padding": _maybe_int(extra, rng), "groups": groups, "dilation": _maybe_int(dilation, rng)}
    return Sample(f"trand{i}_{nd}d_{kind}", f"conv_transpose{nd}d", lead + (c_in, *map(int, sizes)),
                  (c_in, c_out // groups, *map(int, kernel)), bool(rng.random() < 0.75), kwargs)


_rng = np.random.default_rng(20240601)
RANDOM_CONV = [random_conv(i, _rng) for i in range(160)]
RANDOM_TRANSPOSE = [random_transpose(i, _rng) for i in range(60)]
# stride 1 in every dim, output_padding below the dilation in some
RANDOM_TRANSPOSE_S1 = [s for s in (random_transpose(i, _rng, stride1=True) for i in range(60))
                       if max(np.atleast_1d(s.kwargs["output_padding"])) > 0][:30]

NAMED = [
    Sample("1d_stride_gt_kernel", "conv1d", (2, 3, 13), (4, 3, 2), kwargs={"stride": 3}),
    Sample("1d_odd_dilated_same", "conv1d", (2, 2, 9), (3, 2, 4), kwargs={"padding": "same", "dilation": 3}),
    Sample("2d_asymmetric_tuples", "conv2d", (2, 3, 9, 7), (4, 3, 3, 2),
           kwargs={"stride": (2, 1), "padding": (1, 0), "dilation": (1, 2)}),
    Sample("2d_same_even_kernel", "conv2d", (1, 2, 6, 7), (3, 2, 4, 2), kwargs={"padding": "same", "dilation": (1, 3)}),
    Sample("2d_valid", "conv2d", (2, 3, 6, 5), (2, 3, 3, 3), kwargs={"padding": "valid"}),
    Sample("2d_stride_gt_kernel", "conv2d", (2, 2, 11, 10), (3, 2, 2, 3), kwargs={"stride": (4, 5)}),
    Sample("2d_groups", "conv2d", (2, 6, 7, 7), (9, 2, 3, 3), kwargs={"groups": 3, "padding": 1}),
    Sample("2d_depthwise", "conv2d", (2, 4, 8, 8), (4, 1, 3, 3), kwargs={"groups": 4, "padding": 1, "stride": 2}),
    Sample("2d_depthwise_multiplier", "conv2d", (2, 3, 7, 6), (6, 1, 3, 2), kwargs={"groups": 3, "dilation": 2}),
    Sample("2d_single_input_channel", "conv2d", (2, 1, 8, 8), (5, 1, 3, 3), kwargs={"padding": 1}),
    Sample("2d_batch1", "conv2d", (1, 3, 6, 6), (4, 3, 3, 3)),
    Sample("2d_unbatched", "conv2d", (3, 6, 7), (4, 3, 3, 3), kwargs={"padding": 1}),
    Sample("2d_unbatched_depthwise", "conv2d", (3, 6, 7), (3, 1, 3, 3), kwargs={"groups": 3}),
    Sample("2d_no_bias", "conv2d", (2, 3, 6, 6), (4, 3, 3, 3), bias=False, kwargs={"stride": 2}),
    Sample("2d_1x1_direct", "conv2d", (2, 5, 4, 6), (7, 5, 1, 1)),
    Sample("2d_1x1_grouped_padded", "conv2d", (2, 6, 4, 5), (4, 3, 1, 1), kwargs={"groups": 2, "padding": 1}),
    Sample("2d_1x1_stride2", "conv2d", (2, 5, 7, 6), (3, 5, 1, 1), kwargs={"stride": 2}),
    Sample("2d_zero_batch", "conv2d", (0, 3, 6, 6), (4, 3, 3, 3), kwargs={"padding": 1}),
    Sample("2d_kernel_equals_input", "conv2d", (2, 2, 3, 4), (3, 2, 3, 4)),
    Sample("3d_groups_tuples", "conv3d", (2, 4, 5, 6, 4), (6, 2, 3, 2, 2),
           kwargs={"groups": 2, "stride": (1, 2, 1), "padding": (1, 0, 1), "dilation": (1, 1, 2)}),
    Sample("3d_depthwise", "conv3d", (1, 3, 5, 5, 5), (3, 1, 2, 3, 2), kwargs={"groups": 3, "padding": "same"}),
    Sample("3d_unbatched", "conv3d", (2, 4, 5, 3), (3, 2, 2, 2, 2)),
    Sample("t1d_output_padding", "conv_transpose1d", (2, 3, 5), (3, 2, 3), kwargs={"stride": 2, "output_padding": 1}),
    Sample("t2d_output_padding_below_dilation", "conv_transpose2d", (2, 2, 4, 3), (2, 3, 3, 2),
           kwargs={"stride": 2, "padding": 1, "output_padding": (2, 1), "dilation": 3}),
    Sample("t2d_groups", "conv_transpose2d", (2, 4, 5, 4), (4, 3, 3, 3), kwargs={"groups": 2, "stride": 2}),
    Sample("t2d_depthwise", "conv_transpose2d", (2, 4, 5, 5), (4, 1, 3, 3),
           kwargs={"groups": 4, "stride": 2, "padding": 1, "output_padding": 1}),
    Sample("t2d_1x1_output_padding", "conv_transpose2d", (2, 3, 4, 4), (3, 2, 1, 1),
           kwargs={"output_padding": 1, "dilation": 2}),
    Sample("t2d_unbatched_no_bias", "conv_transpose2d", (3, 4, 5), (3, 2, 2, 3), bias=False, kwargs={"stride": (1, 3)}),
    Sample("t2d_k4_s2", "conv_transpose2d", (2, 4, 6, 6), (4, 3, 4, 4), kwargs={"stride": 2, "padding": 1}),
    Sample("t3d_tuples", "conv_transpose3d", (1, 2, 3, 4, 3), (2, 2, 2, 3, 2),
           kwargs={"stride": (2, 1, 3), "padding": (0, 1, 1), "output_padding": (1, 0, 2)}),
    # stride 1 with output_padding (below the dilation): the last cells of the full output are
    # reached by no input; they were left unwritten (uninitialised memory) or read short
    Sample("t2d_s1_output_padding_wide", "conv_transpose2d", (64, 11, 6), (64, 64, 2, 5),
           kwargs={"output_padding": (1, 0), "dilation": (2, 1)}),
    Sample("t2d_s1_output_padding_cropped", "conv_transpose2d", (1, 1, 1, 4), (1, 2, 2, 1),
           kwargs={"padding": (0, 1), "output_padding": (0, 1), "dilation": (1, 2)}),
    Sample("t1d_s1_output_padding_beyond_crop", "conv_transpose1d", (2, 2, 1), (2, 3, 1),
           kwargs={"padding": 1, "output_padding": 2, "dilation": 3}),
    Sample("t3d_s1_output_padding_depthwise", "conv_transpose3d", (2, 4, 3, 4, 3), (4, 1, 2, 3, 2),
           kwargs={"groups": 4, "stride": (1, 2, 1), "padding": (1, 1, 0), "output_padding": (1, 1, 0),
                   "dilation": (2, 1, 1)}),
]

SAMPLES = NAMED + RANDOM_CONV + RANDOM_TRANSPOSE + RANDOM_TRANSPOSE_S1


def run(sample: Sample, dtype: type = np.float64, seed: int = 0) -> None:
    compare(getattr(F, sample.op), getattr(TF, sample.op), sample.arrays(seed), sample.kwargs, dtype=dtype, seed=seed)


@pytest.mark.parametrize("sample", SAMPLES, ids=str)
def test_matches_torch_float64(sample: Sample) -> None:
    run(sample)


@pytest.mark.parametrize("sample", SAMPLES[::4], ids=str)
def test_matches_torch_float32(sample: Sample) -> None:
    run(sample, np.float32, seed=1)


def test_sweep_covers_every_feature() -> None:
    """The random sweep itself (not only the named cases) reaches each feature."""
    convs = RANDOM_CONV
    assert {s.op for s in convs} == {"conv1d", "conv2d", "conv3d"}
    assert sum(s.kwargs["padding"] == "same" for s in convs) >= 10
    assert sum(s.kwargs["padding"] == "valid" for s in convs) >= 10
    assert sum(len(s.input_shape) == len(s.weight_shape) - 1 for s in convs) >= 15  # unbatched
    assert sum(s.input_shape[0] == 1 and len(s.input_shape) == len(s.weight_shape) for s in convs) >= 15
    assert sum(not s.bias for s in convs) >= 15
    assert sum(s.weight_shape[1] == 1 and s.weight_shape[0] > s.kwargs["groups"] > 1 for s in convs) >= 10
    assert sum(max(np.atleast_1d(s.kwargs["stride"])) > max(s.weight_shape[2:]) for s in convs) >= 5
    assert sum(isinstance(s.kwargs["stride"], tuple) and len(set(s.kwargs["stride"])) > 1 for s in convs) >= 10
    assert sum(max(np.atleast_1d(s.kwargs["dilation"])) > 1 for s in convs) >= 30
    assert sum(max(np.atleast_1d(s.kwargs["output_padding"])) > 0 for s in RANDOM_TRANSPOSE) >= 15
    assert sum(s.kwargs["groups"] > 1 for s in RANDOM_TRANSPOSE) >= 20


@pytest.mark.parametrize("sample", SAMPLES[::3], ids=str)
def test_im2col_weight_times_columns_matches_torch(sample: Sample, monkeypatch: pytest.MonkeyPatch) -> None:
    """The im2col forward's other product order (weight × columns, taken from
    ``_IM2COL_POSITIONS_FIRST`` outputs per group; the sweep's layers have fewer)."""
    monkeypatch.setattr(conv_module, "_IM2COL_POSITIONS_FIRST", 0)
    run(sample)


@pytest.mark.parametrize("budget", [1, 3000, 40000])
@pytest.mark.parametrize("name", ["2d_groups", "3d_groups_tuples", "t2d_k4_s2", "2d_1x1_stride2",
                                  "2d_asymmetric_tuples", "t2d_output_padding_below_dilation"])
def test_tiling_matches_torch(name: str, budget: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny column budgets force tiles of a few samples, of one sample's rows, and of single rows."""
    monkeypatch.setattr(conv_module, "_COLUMN_BYTES", budget)
    run(next(s for s in NAMED if s.name == name))


# Convs on the planar path. Strided ones (columns from the input split into its stride phases):
# strides 2 and 3, dilations sharing a factor with the stride or not, groups, padding, 1-3 d,
# odd sizes (phases of unequal length), strides above the kernel (phases no tap reads), and
# transposed convs whose backward runs a strided conv; two of stride 1 (one phase: the input).
PLANAR = [
    Sample("s2_1d_odd", "conv1d", (2, 3, 15), (4, 3, 5), kwargs={"stride": 2, "padding": 2}),
    Sample("s3_1d_dilated", "conv1d", (2, 2, 20), (3, 2, 3), kwargs={"stride": 3, "dilation": 2, "padding": 1}),
    Sample("s2_2d_stem", "conv2d", (2, 3, 23, 21), (4, 3, 7, 7), kwargs={"stride": 2, "padding": 3}),
    Sample("s3_2d_groups", "conv2d", (2, 6, 17, 16), (6, 2, 4, 3),
           kwargs={"stride": 3, "padding": (1, 2), "groups": 3}),
    Sample("s2_2d_dilation_2", "conv2d", (2, 4, 13, 12), (5, 4, 3, 3),
           kwargs={"stride": 2, "dilation": 2, "padding": 1}),
    Sample("s23_2d_mixed", "conv2d", (1, 3, 14, 19), (2, 3, 3, 5),
           kwargs={"stride": (2, 3), "dilation": (3, 1), "padding": (2, 0)}),
    Sample("s3_2d_above_kernel", "conv2d", (2, 2, 11, 10), (3, 2, 2, 2), kwargs={"stride": 3}),
    Sample("s2_2d_1x1", "conv2d", (2, 5, 9, 8), (3, 5, 1, 1), bias=False, kwargs={"stride": 2}),
    Sample("s2_2d_unbatched", "conv2d", (3, 12, 11), (4, 3, 3, 3), kwargs={"stride": 2, "padding": 1}),
    Sample("s2_2d_depthwise_mixed", "conv2d", (2, 3, 9, 10), (3, 1, 3, 3), kwargs={"stride": (1, 2), "groups": 3}),
    Sample("s2_3d", "conv3d", (2, 3, 7, 8, 9), (4, 3, 3, 2, 3), kwargs={"stride": (2, 1, 3), "padding": 1}),
    Sample("s2_3d_dilated_groups", "conv3d", (1, 4, 9, 7, 8), (4, 2, 2, 3, 2),
           kwargs={"stride": 2, "dilation": (1, 2, 3), "groups": 2}),
    Sample("t_s2_2d", "conv_transpose2d", (2, 4, 6, 5), (4, 3, 3, 4), kwargs={"stride": 2, "padding": 1}),
    Sample("t_s3_1d", "conv_transpose1d", (2, 3, 7), (3, 2, 4), kwargs={"stride": 3, "output_padding": 2}),
    Sample("s1_2d_groups", "conv2d", (2, 4, 9, 8), (6, 2, 3, 2), kwargs={"groups": 2, "padding": (1, 0)}),
    Sample("s1_3d_dilated", "conv3d", (2, 3, 6, 7, 8), (2, 3, 2, 3, 3), kwargs={"dilation": (2, 1, 2), "padding": 1}),
]
# columns of flat runs (the cells past each row's last window computed and dropped), or of the
# windows alone (a tile inside one sample multiplies straight into the output)
COLUMNS = {"flat runs": 10**9, "windows": 1}


def kernel_path(sample: Sample, compiled: bool = False) -> str:
    """The kernel path the sample's conv takes (``compiled``: with the compiled kernels running)."""
    kwargs = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1} | sample.kwargs
    if sample.transposed:
        plan = conv_module._conv_transpose_plan(sample.op, sample.input_shape, sample.weight_shape,
                                                **{"output_padding": 0} | kwargs)
    else:
        plan = conv_module._conv_plan(sample.op, sample.input_shape, sample.weight_shape, **kwargs)
    return conv_module._path(sample.weight_shape[1], plan.geometry, plan.padded, compiled)


@pytest.mark.parametrize("columns", COLUMNS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sample", PLANAR, ids=str)
def test_planar_matches_torch(sample: Sample, dtype: type, columns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """(Without the compiled kernels, which take a stride-1 grouped conv with few channels per group.)"""
    assert kernel_path(sample) == "planar"
    monkeypatch.setattr(conv_module, "_EXACT_WIDTH", COLUMNS[columns])
    with jit.enabled(False):
        run(sample, dtype, seed=2)


@pytest.mark.parametrize("columns", COLUMNS)
@pytest.mark.parametrize("budget", [1, 3000])
@pytest.mark.parametrize("name", ["s2_2d_stem", "s3_2d_groups", "s2_3d", "t_s2_2d", "s1_3d_dilated"])
def test_planar_tiles_match_torch(name: str, budget: int, columns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiles of single window rows (and positions), a sample's rows shared out over two threads,
    and the phase split in blocks of single planes."""
    monkeypatch.setattr(conv_module, "_EXACT_WIDTH", COLUMNS[columns])
    monkeypatch.setattr(conv_module, "_COLUMN_BYTES", budget)
    monkeypatch.setattr(conv_module, "_MIN_TILE_MACS", 1)
    monkeypatch.setattr(conv_module, "_MIN_TILE_POSITIONS", 1)
    monkeypatch.setattr(conv_module, "_BLOCK_ELEMENTS", 1)
    with threadpool_limits(2, user_api="blas"), jit.enabled(False):
        run(next(s for s in PLANAR if s.name == name))


@pytest.mark.parametrize("batch", [0, 2])
def test_transposed_stacked_phases_of_any_batch(batch: int) -> None:
    """A k6/3 transposed conv runs per stride phase (without the compiled taps), its nine
    2×2 phases as one stacked conv whose output cells are a view of the result, also when
    that is empty."""
    with jit.enabled(False):
        run(Sample("t2d_stacked_phases", "conv_transpose2d", (batch, 8, 14, 14), (8, 8, 6, 6),
                   kwargs={"stride": 3, "padding": 1}))


@pytest.mark.parametrize("columns", COLUMNS)
def test_planar_into_strided_output(columns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The input gradient of a strided conv with 8 channels runs per stride phase, each phase a
    stride-1 planar conv written into a strided view of the gradient (never straight from the
    matmul, which needs the tile's windows contiguous)."""
    monkeypatch.setattr(conv_module, "_EXACT_WIDTH", COLUMNS[columns])
    sample = Sample("s2_phased", "conv2d", (2, 8, 13, 12), (6, 8, 3, 3), kwargs={"stride": 2, "padding": 1})
    assert conv_module._phased(8, conv_module._Geometry((3, 3), (2, 2), (1, 1), 1))
    run(sample)


@pytest.mark.parametrize("columns", COLUMNS)
@pytest.mark.parametrize("stride,kernel", [(3, 2), (2, 3)])
def test_planar_ignores_cells_no_window_reads(stride: int, kernel: int, columns: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Cells no window reads: every third one for a stride 3 over 2 taps (a phase no tap reads),
    the last row and column for a stride 2 over 3 taps on 14 cells (in the phase of the middle
    tap, which reaches one cell less than the others). Infinities there reach neither the output
    nor the gradients, as in torch, whichever cells of the phases the columns' runs read."""
    monkeypatch.setattr(conv_module, "_EXACT_WIDTH", COLUMNS[columns])
    x = np.random.default_rng(3).standard_normal((2, 3, 14, 14))
    unread = slice(2, None, 3) if stride == 3 else slice(-1, None)
    x[:, :, unread] = np.inf
    x[:, :, :, unread] = -np.inf
    sample = Sample("unread", "conv2d", x.shape, (4, 3, kernel, kernel), kwargs={"stride": stride})
    assert kernel_path(sample) == "planar"
    compare(F.conv2d, TF.conv2d, [x, *sample.arrays(0)[1:]], sample.kwargs)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("groups", [1, 2])
def test_planar_non_finite_weight_like_torch(groups: int) -> None:
    """An infinite and a NaN weight: the stride-1 planar input gradient (a conv of the output
    gradient with a zero border) would add ``0·inf`` where torch adds nothing; non-finite
    weights take col2im's route, which adds only the products the conv made."""
    rng = np.random.default_rng(12)
    w = rng.standard_normal((6, 16 // groups, 3, 3))
    w[1, 2, 0, 0], w[4, 3, 2, 1] = np.inf, np.nan
    sample = Sample("inf_weight", "conv2d", (2, 16, 9, 8), w.shape, kwargs={"padding": 1, "groups": groups})
    assert kernel_path(sample) == "planar"
    with jit.enabled(False):
        compare(F.conv2d, TF.conv2d, [rng.standard_normal(sample.input_shape), w], sample.kwargs)


# Every kernel path with a non-finite cell in the input, the weight or the output gradient:
# (transposed, C_in, C_out, groups, kernel, stride, padding, dilation)
NON_FINITE = [(t, *c, *k) for t in (False, True)
              for c in ((16, 8, 1), (3, 8, 1), (8, 8, 8), (16, 16, 4), (128, 8, 1))
              for k in ((3, 1, 1, 1), (3, 2, 1, 1), (4, 2, 1, 1), (1, 1, 0, 1), (1, 2, 0, 1), (3, 1, 2, 2),
                        (7, 2, 3, 1))]


def _same_non_finite(got: np.ndarray, want: np.ndarray, what: str) -> None:
    for test in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(test(got), test(want), err_msg=f"{what}: {test.__name__}")
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-9, atol=1e-9, err_msg=what)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("compiled", [True, False], ids=["jit_on", "jit_off"])
@pytest.mark.parametrize("where", ["input", "weight", "output gradient"])
@pytest.mark.parametrize("case", NON_FINITE, ids=str)
def test_non_finite_cells_reach_torchs_cells(case: tuple, where: str, compiled: bool) -> None:
    """An infinity and a NaN reach exactly torch's cells of the output and both gradients on
    every path (with and without the compiled kernels): the kernels' extra products (a flat
    run's cells past each row's last window, the zero border of a phase's or a flipped conv's
    input) must not make NaN of finite cells."""
    transposed, c_in, c_out, groups, k, s, p, d = case
    rng = np.random.default_rng(hash(case) % 2**32)
    x = rng.standard_normal((2, c_in, 12, 12))
    w = rng.standard_normal((c_in, c_out // groups, k, k) if transposed else (c_out, c_in // groups, k, k))
    if where == "input":
        x[1, 0, 5, 6], x[0, -1, 0, 0] = np.inf, np.nan
    if where == "weight":
        w[0, 0, 0, 0], w[-1, -1, -1, -1] = np.inf, np.nan
    op = "conv_transpose2d" if transposed else "conv2d"
    kwargs = {"stride": s, "padding": p, "dilation": d, "groups": groups}
    cx, cw = cs.tensor(x, requires_grad=True), cs.tensor(w, requires_grad=True)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    with jit.enabled(compiled):
        cy, ty = getattr(F, op)(cx, cw, **kwargs), getattr(TF, op)(tx, tw, **kwargs)
        g = rng.standard_normal(cy.shape)
        if where == "output gradient":
            g[0, 0, 1, 1] = np.inf
        cy.backward(g)
    ty.backward(torch.from_numpy(g))
    _same_non_finite(cy.numpy(), ty.detach().numpy(), "output")
    _same_non_finite(cx.grad, tx.grad.numpy(), "input gradient")
    _same_non_finite(cw.grad, tw.grad.numpy(), "weight gradient")


def test_only_some_inputs_require_grad() -> None:
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    cx, cw = cs.tensor(x), cs.tensor(w, requires_grad=True)
    tx, tw = torch.tensor(x), torch.tensor(w, requires_grad=True)
    g = rng.standard_normal((2, 4, 3, 3))
    F.conv2d(cx, cw, stride=2, padding=1).backward(g)
    TF.conv2d(tx, tw, stride=2, padding=1).backward(torch.from_numpy(g))
    assert cx.grad is None
    np.testing.assert_allclose(cw.grad, tw.grad.numpy(), rtol=1e-12)
    with cs.no_grad():
        assert not F.conv2d(cs.tensor(x, requires_grad=True), cw).requires_grad


def test_float32_stays_float32() -> None:
    x = cs.tensor(np.ones((1, 2, 5, 5), np.float32), requires_grad=True)
    w = cs.tensor(np.ones((3, 2, 3, 3), np.float32), requires_grad=True)
    b = cs.tensor(np.ones(3, np.float32), requires_grad=True)
    for y in (F.conv2d(x, w, b, padding=1), F.conv_transpose2d(x, cs.tensor(np.ones((2, 3, 3, 3), np.float32)), b)):
        assert y.dtype == np.float32
        y.backward(np.ones(y.shape, np.float32))
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == np.float32


# --- meta tensors and pure shape rules --------------------------------------------------------
@pytest.mark.parametrize("sample", SAMPLES[::3], ids=str)
def test_meta_and_shape_rule_match_real_output(sample: Sample) -> None:
    arrays = sample.arrays(0)
    real = getattr(F, sample.op)(*[cs.tensor(a) for a in arrays], **sample.kwargs)
    meta = getattr(F, sample.op)(*[cs.Tensor.meta(a.shape, a.dtype) for a in arrays], **sample.kwargs)
    assert meta.is_meta and meta.shape == real.shape and meta.dtype == real.dtype
    rule = F.conv_transpose_output_shape if sample.transposed else F.conv_output_shape
    bias_shape = arrays[2].shape if sample.bias else None
    assert rule(sample.input_shape, sample.weight_shape, **sample.kwargs, op=sample.op, bias_shape=bias_shape) \
        == real.shape


def test_meta_mixed_with_real_weight() -> None:
    w = cs.tensor(np.ones((8, 3, 3, 3)))
    out = F.conv2d(cs.Tensor.meta((4, 3, 32, 32), np.float64), w, stride=2, padding=1)
    assert out.is_meta and out.shape == (4, 8, 16, 16)


def test_shape_rule_examples_and_docstrings() -> None:
    assert F.conv_output_shape((8, 3, 224, 224), (64, 3, 7, 7), 2, 3) == (8, 64, 112, 112)
    assert F.conv_output_shape((3, 10), (5, 3, 4), padding="same", op="conv1d") == (5, 10)
    assert F.conv_transpose_output_shape((1, 4, 5, 5), (4, 3, 3, 3), 2, 1, 1) == (1, 3, 10, 10)
    assert doctest.testmod(conv_module).failed == 0
    assert "Shape:" in F.conv3d.__doc__ and "D_out, H_out, W_out" in F.conv3d.__doc__
    assert "Shape:" in F.conv_transpose1d.__doc__ and "(C_in, C_out / groups, kW)" in F.conv_transpose1d.__doc__


# --- invalid configurations -----------------------------------------------------------------
@dataclass
class Bad:
    name: str
    op: str
    input_shape: tuple
    weight_shape: tuple
    kwargs: dict
    match: str
    bias_shape: tuple | None = None


ERRORS = [
    Bad("input_rank_low", "conv2d", (8, 8), (4, 3, 3, 3), {}, r"expected a 3 or 4-d input \(N, C, H, W\)"),
    Bad("input_rank_high", "conv1d", (2, 3, 8, 8), (4, 3, 3), {}, r"got shape \(2, 3, 8, 8\)"),
    Bad("weight_rank", "conv2d", (1, 3, 8, 8), (4, 3, 3), {},
        r"expected a 4-d weight \(C_out, C_in/groups, kH, kW\), got shape \(4, 3, 3\)"),
    Bad("channels", "conv2d", (1, 32, 8, 8), (16, 64, 3, 3), {},
        r"expected input with 64 channels \(weight \(16, 64, 3, 3\): 64 per group × groups 1\), got 32\. "
        r"Hint: set in_channels=32"),
    Bad("channels_not_divisible_by_groups", "conv2d", (1, 5, 8, 8), (6, 2, 3, 3), {"groups": 3},
        r"expected input with 6 channels .* got 5\. Hint: 5 channels cannot be split into groups=3"),
    Bad("c_out_not_divisible_by_groups", "conv2d", (1, 4, 8, 8), (5, 2, 3, 3), {"groups": 2},
        r"weight dim 0 \(C_out\) is 5; it must be a positive multiple of groups 2"),
    Bad("c_out_below_groups", "conv2d", (1, 4, 8, 8), (2, 1, 3, 3), {"groups": 4}, r"C_out\) is 2"),
    Bad("groups_zero", "conv2d", (1, 4, 8, 8), (2, 4, 3, 3), {"groups": 0}, r"groups must be a positive int, got 0"),
    Bad("stride_zero", "conv2d", (1, 3, 8, 8), (4, 3, 3, 3), {"stride": (1, 0)},
        r"stride must be positive, got \(1, 0\)"),
    Bad("stride_negative", "conv1d", (1, 3, 8), (4, 3, 3), {"stride": -1}, r"stride must be positive"),
    Bad("stride_length", "conv2d", (1, 3, 8, 8), (4, 3, 3, 3), {"stride": (1, 1, 1)},
        r"stride must be an int or 2 ints, got \(1, 1, 1\)"),
    Bad("dilation_zero", "conv2d", (1, 3, 8, 8), (4, 3, 3, 3), {"dilation": 0}, r"dilation must be positive"),
    Bad("padding_negative", "conv2d", (1, 3, 8, 8), (4, 3, 3, 3), {"padding": -1},
        r"padding must be non-negative, got \(-1, -1\)"),
    Bad("kernel_wider_than_input", "conv2d", (1, 1, 5, 5), (1, 1, 5, 5), {"dilation": 2, "padding": 1},
        r"kernel 5 with dilation 2 spans 9 > padded input 7 \(spatial dim 0: size 5 \+ padding 1 \+ 1\)"),
    Bad("kernel_wider_than_input_3d", "conv3d", (1, 1, 8, 8, 2), (1, 1, 3, 3, 3), {},
        r"kernel 3 with dilation 1 spans 3 > padded input 2 \(spatial dim 2"),
    Bad("same_with_stride", "conv2d", (1, 3, 8, 8), (4, 3, 3, 3), {"padding": "same", "stride": (1, 2)},
        r"padding='same' needs stride 1, got stride \(1, 2\)"),
    Bad("padding_string", "conv2d", (1, 3, 8, 8), (4, 3, 3, 3), {"padding": "full"},
        r"padding must be 'same', 'valid', an int or 2 ints, got 'full'"),
    Bad("bias_length", "conv2d", (1, 4, 8, 8), (6, 2, 3, 3), {"groups": 2},
        r"expected bias of shape \(6,\) for 6 output channels, got \(5,\)", (5,)),
    Bad("bias_rank", "conv1d", (1, 4, 8), (6, 4, 3), {}, r"got \(6, 1\)", (6, 1)),
    Bad("kernel_zero", "conv2d", (1, 4, 8, 8), (6, 4, 0, 3), {}, r"kernel size must be positive"),
    Bad("empty_spatial", "conv2d", (2, 4, 0, 8), (6, 4, 1, 1), {"padding": 1},
        r"expected non-empty spatial dims, got input shape \(2, 4, 0, 8\)"),
    Bad("t_channels", "conv_transpose2d", (2, 5, 5, 5), (4, 3, 3, 3), {},
        r"expected input with 4 channels \(weight \(4, 3, 3, 3\): dim 0\), got 5"),
    Bad("t_c_in_not_divisible_by_groups", "conv_transpose2d", (2, 3, 5, 5), (3, 3, 3, 3), {"groups": 2},
        r"weight dim 0 \(C_in\) is 3"),
    Bad("t_output_padding_too_big", "conv_transpose2d", (1, 4, 5, 5), (4, 3, 3, 3),
        {"stride": 2, "output_padding": (1, 2)}, r"output_padding 2 must be smaller than stride 2 or dilation 1 "
                                                 r"\(spatial dim 1\)"),
    Bad("t_output_padding_negative", "conv_transpose1d", (1, 4, 5), (4, 3, 3), {"output_padding": -1},
        r"output_padding must be non-negative"),
    Bad("t_padding_negative", "conv_transpose2d", (1, 4, 5, 5), (4, 3, 3, 3), {"padding": -1},
        r"padding must be non-negative"),
    Bad("t_output_not_positive", "conv_transpose2d", (1, 4, 1, 1), (4, 3, 3, 3), {"padding": (1, 2)},
        r"output length -1 is not positive: \(1 − 1\)·1 − 2·2 \+ 1·\(3 − 1\) \+ 0 \+ 1 \(spatial dim 1\)"),
    Bad("t_same", "conv_transpose1d", (1, 4, 5), (4, 3, 3), {"padding": "same"},
        r"padding must be an int or 1 ints, got 'same'"),
    Bad("t_bias", "conv_transpose2d", (1, 4, 5, 5), (4, 3, 3, 3), {}, r"expected bias of shape \(3,\)", (4,)),
    Bad("t_stride_zero", "conv_transpose3d", (1, 4, 3, 3, 3), (4, 3, 2, 2, 2), {"stride": 0},
        r"stride must be positive"),
]


@pytest.mark.parametrize("bad", ERRORS, ids=lambda b: b.name)
def test_refused_like_torch(bad: Bad) -> None:
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(bad.input_shape), rng.standard_normal(bad.weight_shape)]
    if bad.bias_shape:
        args.append(rng.standard_normal(bad.bias_shape))
    err = both_refuse(getattr(F, bad.op), getattr(TF, bad.op), args, bad.kwargs, match=bad.match)
    assert err.layer == bad.op and str(err).startswith(f"{bad.op}: ")


@pytest.mark.parametrize("bad", ERRORS, ids=lambda b: b.name)
def test_shape_rule_refuses_the_same(bad: Bad) -> None:
    rule = F.conv_transpose_output_shape if bad.op.startswith("conv_transpose") else F.conv_output_shape
    with pytest.raises(cs.ShapeError, match=bad.match):
        rule(bad.input_shape, bad.weight_shape, **bad.kwargs, op=bad.op, bias_shape=bad.bias_shape)


@pytest.mark.parametrize("cast", ["input", "bias"])
def test_dtype_mismatch_refused_like_torch(cast: str) -> None:
    rng = np.random.default_rng(0)
    args = [rng.standard_normal((1, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)]

    def call(fn):
        return lambda x, w, b: fn(x.float() if cast == "input" else x, w, b.float() if cast == "bias" else b)

    match = rf"{cast} dtype float32 does not match" if cast == "bias" else r"weight dtype float64 does not match input"
    both_refuse(call(F.conv2d), call(TF.conv2d), args, match=match)
    with pytest.raises(cs.ShapeError, match=r"weight dtype float32 does not match input dtype float64"):
        F.conv_output_shape((1, 3, 6, 6), (4, 3, 3, 3), dtypes=(np.float64, np.float32))


def test_shape_rule_refuses_unknown_op() -> None:
    with pytest.raises(cs.ShapeError, match=r"unknown op 'conv_transpose2d'; expected one of conv1d, conv2d"):
        F.conv_output_shape((1, 3, 6, 6), (4, 3, 3, 3), op="conv_transpose2d")
