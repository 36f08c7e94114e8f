"""The Winograd F(2×2, 3×3) path (convscope.functional.winograd): forced on small and odd
shapes against torch (float64 exactly, float32 within tolerance), its input-gradient route,
its float32 error next to the planar path's, and which convs take it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from threadpoolctl import threadpool_limits

import convscope as cs
import convscope.functional as F
from convscope.functional import conv as conv_module
from convscope.functional import jit
from convscope.functional import winograd as winograd_module
from torch_ref import assert_close, compare

NUMBA = jit.available()
# the compiled transforms (numba) and the NumPy ones
TRANSFORMS = [pytest.param(True, id="compiled", marks=pytest.mark.skipif(not NUMBA, reason="numba is not installed")),
              pytest.param(False, id="numpy")]


@pytest.fixture
def forced(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ungrouped 3×3 stride-1 conv takes the Winograd path, in items of a few tiles."""
    monkeypatch.setattr(conv_module, "_WINOGRAD_CHANNELS", 1)
    monkeypatch.setattr(conv_module, "_WINOGRAD_COMPILED", ((1, 1),))
    monkeypatch.setattr(conv_module, "_PLANAR_WASTE", 100.0)
    monkeypatch.setattr(winograd_module, "_ITEM_TILES", 3)
    monkeypatch.setattr(winograd_module, "_MIN_ITEM_TILES", 1)


def _geometry(groups: int = 1, stride: int = 1, dilation: int = 1) -> conv_module._Geometry:
    return conv_module._Geometry((3, 3), (stride,) * 2, (dilation,) * 2, groups)


def _volume() -> conv_module._Geometry:
    return conv_module._Geometry((3, 3, 3), (1,) * 3, (1,) * 3, 1)


# (input shape, weight shape, padding): odd and even sizes, batch 1, unbatched
SHAPES = [
    ((2, 3, 7, 9), (5, 3, 3, 3), 1),
    ((1, 4, 6, 6), (4, 4, 3, 3), 0),
    ((2, 2, 5, 8), (3, 2, 3, 3), 2),
    ((3, 3, 3, 3), (2, 3, 3, 3), 0),  # one output cell
    ((4, 11, 10), (6, 4, 3, 3), 1),  # unbatched
]


@pytest.mark.parametrize("compiled", TRANSFORMS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("x,w,padding", SHAPES)
def test_forced_winograd_matches_torch_in_float64(forced: None, x: tuple, w: tuple, padding: int,
                                                  threads: int, compiled: bool) -> None:
    assert conv_module._path(w[1], _geometry(), tuple(s + 2 * padding for s in x[-2:]), compiled) == "winograd"
    rng = np.random.default_rng(len(x) + padding)
    with threadpool_limits(threads, user_api="blas"), jit.enabled(compiled):
        compare(F.conv2d, TF.conv2d, [rng.standard_normal(x), rng.standard_normal(w), rng.standard_normal(w[0])],
                {"padding": padding})


@pytest.mark.parametrize("x,w,padding", SHAPES[:3])
def test_forced_winograd_matches_torch_in_float32(forced: None, x: tuple, w: tuple, padding: int) -> None:
    rng = np.random.default_rng(7)
    compare(F.conv2d, TF.conv2d, [rng.standard_normal(x), rng.standard_normal(w)], {"padding": padding},
            dtype=np.float32)


def test_forced_winograd_runs_a_stride_1_transposed_conv(forced: None) -> None:
    """A transposed conv runs the input gradient forward and the forward backward."""
    rng = np.random.default_rng(3)
    compare(F.conv_transpose2d, TF.conv_transpose2d, [rng.standard_normal((2, 4, 5, 7)),
                                                      rng.standard_normal((4, 3, 3, 3))], {"padding": 1})


def test_input_gradient_is_the_full_correlation_with_the_flipped_kernel() -> None:
    rng = np.random.default_rng(5)
    g, w = rng.standard_normal((2, 6, 5, 7)), rng.standard_normal((6, 4, 3, 3))
    gx = winograd_module.grad_input(g, w, (7, 9))
    x = torch.zeros((2, 4, 7, 9), dtype=torch.float64, requires_grad=True)
    TF.conv2d(x, torch.from_numpy(w)).backward(torch.from_numpy(g))
    np.testing.assert_allclose(gx, x.grad.numpy(), rtol=0, atol=1e-12 * np.abs(gx).max())


def test_float32_error_is_close_to_the_planar_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a float64 reference, Winograd's float32 error stays within a small factor of
    the planar path's (the transforms add and subtract only; ``G``'s halves are exact)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 64, 20, 20))
    w = rng.standard_normal((64, 64, 3, 3)) / 24
    want = TF.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    errors = {}
    for name, channels in (("winograd", 1), ("planar", 10**9)):
        monkeypatch.setattr(conv_module, "_WINOGRAD_CHANNELS", channels)
        monkeypatch.setattr(conv_module, "_WINOGRAD_COMPILED", ((channels, 1),))
        got = F.conv2d(cs.tensor(x.astype(np.float32)), cs.tensor(w.astype(np.float32)), padding=1).data
        errors[name] = np.abs(got - want).max() / np.abs(want).max()
    assert errors["winograd"] < 4 * errors["planar"] + 1e-7, errors
    assert errors["winograd"] < 2e-6, errors


# (samples, channels in, out, rows, columns, padding of the input gradient's g): odd and even
# sizes, a plane narrower than a tile, the grad's zero border of 2
BITS = [(2, 3, 5, 7, 9, 0), (1, 4, 4, 6, 6, 1), (3, 2, 3, 5, 8, 2), (2, 3, 2, 3, 3, 0), (1, 5, 3, 1, 4, 2),
        (2, 64, 32, 30, 31, 1), (1, 16, 8, 57, 58, 2)]


@pytest.mark.skipif(not NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("item_tiles", [3, 196])
@pytest.mark.parametrize("n,c,c_out,h,w,pad", BITS)
def test_compiled_transforms_give_the_numpy_transforms_bits(n: int, c: int, c_out: int, h: int, w: int, pad: int,
                                                            item_tiles: int, dtype: type,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled transforms read the cells and add and subtract them in the NumPy
    transforms' order, so the two give the same bits, in items of a few tiles (rows of one
    sample) or of whole samples, with cells of the zero border on every side."""
    monkeypatch.setattr(winograd_module, "_ITEM_TILES", item_tiles)
    monkeypatch.setattr(winograd_module, "_MIN_ITEM_TILES", 1)
    rng = np.random.default_rng(h * w + pad)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    u = winograd_module._weight(rng.standard_normal((c_out, c, 3, 3)).astype(dtype))
    results = []
    for compiled in (True, False):
        y = np.full((n, c_out, h + 2 * pad - 2, w + 2 * pad - 2), np.nan, dtype)
        with jit.enabled(compiled), threadpool_limits(2, user_api="blas"):
            winograd_module._convolve([(x, y)], pad, u)
        results.append(y)
    assert not np.isnan(results[0]).any(), "every output cell written"
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("geometry,per_group,padded,path", [
    (_geometry(), 128, (30, 30), "winograd"),
    (_geometry(), 127, (30, 30), "planar"),
    (_geometry(), 256, (16, 16), "winograd"),  # 14² planes from 256 channels
    (_geometry(), 255, (16, 16), "im2col"),  # small planes: channels-last columns
    (_geometry(), 512, (9, 9), "im2col"),  # 7² planes: the tiles' edges cost more
    (_geometry(stride=2), 128, (30, 30), "im2col"),
    (_geometry(dilation=2), 128, (30, 30), "not winograd"),
    (_geometry(groups=2), 128, (30, 30), "not winograd"),
    (_volume(), 64, (18, 30, 30), "not winograd"),  # 3-d: only with the compiled transforms
    (conv_module._Geometry((5, 5), (1, 1), (1, 1), 1), 128, (32, 32), "not winograd"),
])
def test_which_convs_take_the_winograd_path(geometry: conv_module._Geometry, per_group: int, padded: tuple,
                                             path: str) -> None:
    got = conv_module._path(per_group, geometry, padded)
    assert got != "winograd" if path == "not winograd" else got == path


@pytest.mark.parametrize("geometry,per_group,padded,path", [
    (_geometry(), 48, (30, 30), "winograd"),  # from 48 channels on 28² planes and larger
    (_geometry(), 47, (30, 30), "planar"),
    (_geometry(), 64, (226, 226), "winograd"),
    (_geometry(), 127, (16, 16), "im2col"),  # 14² planes from 128 channels
    (_geometry(), 128, (16, 16), "winograd"),
    (_geometry(), 512, (9, 9), "im2col"),
    (_geometry(stride=2), 128, (30, 30), "im2col"),
    (_geometry(groups=2), 256, (30, 30), "not winograd"),
    (_geometry(dilation=2), 128, (32, 32), "winograd"),  # dilated: its phases' planes
    (_geometry(dilation=2), 128, (30, 30), "im2col"),  # 13² phases
    (_geometry(dilation=3), 48, (90, 90), "winograd"),
    (_volume(), 64, (18, 58, 58), "winograd"),  # 3×3×3 from 16 channels on 14² planes
    (_volume(), 16, (4, 16, 16), "winograd"),
    (_volume(), 15, (18, 58, 58), "planar"),
    (_volume(), 64, (18, 9, 9), "not winograd"),
    (conv_module._Geometry((3, 3, 3), (1,) * 3, (2,) * 3, 1), 64, (18, 58, 58), "not winograd"),
    (conv_module._Geometry((1, 3, 3), (1,) * 3, (1,) * 3, 1), 64, (18, 58, 58), "not winograd"),
])
def test_which_convs_take_the_winograd_path_with_compiled_transforms(geometry: conv_module._Geometry,
                                                                     per_group: int, padded: tuple,
                                                                     path: str) -> None:
    got = conv_module._path(per_group, geometry, padded, compiled=True)
    assert got != "winograd" if path == "not winograd" else got == path


@pytest.mark.parametrize("compiled", TRANSFORMS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n,size,channels", [(8, 30, 64), (1, 58, 64), (2, 17, 96)])
def test_scratch_rule_matches_tracemalloc(n: int, size: int, channels: int, threads: int, compiled: bool) -> None:
    """The rule against the peak of the forward and input-gradient kernels (one thread: exact
    up to small temporaries; two: at most the rule, as a late thread leaves its items; the
    margins of test_memory)."""
    import tracemalloc

    rng = np.random.default_rng(1)
    xp = rng.standard_normal((n, channels, size, size)).astype(np.float32)
    w = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32)
    out = (size - 2, size - 2)
    y = np.empty((n, channels, *out), np.float32)
    with threadpool_limits(threads, user_api="blas"), jit.enabled(compiled):
        for run, flipped in ((lambda: winograd_module.forward(xp, w, y), False),
                             (lambda: winograd_module.grad_input(y, w, (size, size)), True)):
            run()
            tracemalloc.start()
            result = run()
            peak = tracemalloc.get_traced_memory()[1] - (0 if result is None else result.nbytes)
            tracemalloc.stop()
            rule = 4 * winograd_module.scratch_elements(n, channels, channels, (size, size) if flipped else out,
                                                        threads, 4, flipped)
            assert peak <= 1.25 * rule + 80_000, (peak, rule)  # as test_memory: NumPy temporaries
            if threads == 1:
                assert peak >= 0.9 * rule - 80_000, (peak, rule)


def _run_both(x: np.ndarray, w: np.ndarray, g: np.ndarray) -> None:
    cx, cw = cs.tensor(x, requires_grad=True), cs.tensor(w, requires_grad=True)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    cy, ty = F.conv2d(cx, cw, padding=1), TF.conv2d(tx, tw, padding=1)
    cy.backward(g)
    ty.backward(torch.from_numpy(g))
    for got, want, what in ((cy.numpy(), ty.detach().numpy(), "output"), (cx.grad, tx.grad.numpy(), "input grad"),
                            (cw.grad, tw.grad.numpy(), "weight grad")):
        assert_close(got, want, np.float64, what)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("where", ["input", "weight", "output gradient"])
def test_non_finite_cells_like_torch(forced: None, where: str) -> None:
    """An infinite cell gives NaN and ±inf in exactly torch's cells: the Winograd transforms,
    which add and subtract a tile's cells, would spread NaN over the tile, so a conv whose
    Winograd result is not all finite runs the planar kernels instead."""
    rng = np.random.default_rng(11)
    x, w, g = rng.standard_normal((2, 4, 9, 8)), rng.standard_normal((5, 4, 3, 3)), rng.standard_normal((2, 5, 9, 8))
    {"input": x, "weight": w, "output gradient": g}[where].reshape(-1)[37] = np.inf
    assert conv_module._path(4, _geometry(), (11, 10)) == "winograd"
    _run_both(x, w, g)


def test_small_planes_match_torch_and_their_memory_rules() -> None:
    """A 14² conv with 256 channels runs Winograd forward and input gradient, and im2col's weight
    gradient over channels-last copies: torch's results (float64), and the scratch rules
    against tracemalloc (test_memory's check)."""
    from test_memory import assert_scratch_rules_hold

    x, w = (2, 256, 14, 14), (256, 256, 3, 3)
    assert conv_module._path(256, _geometry(), (16, 16)) == "winograd"
    assert conv_module._small_winograd((14, 14)) and not conv_module._small_winograd((28, 28))
    rng = np.random.default_rng(12)
    compare(F.conv2d, TF.conv2d, [rng.standard_normal(x), rng.standard_normal(w) * 0.05], {"padding": 1})
    assert_scratch_rules_hold(("winograd_14", lambda a, b: F.conv2d(a, b, padding=1), [x], [("param", w)]))


# --- dilated 3×3 convs: a Winograd conv per dilation phase ---------------------------------

# (input shape, output channels, padding, dilation): padding a multiple of the dilation (the
# input gradient made without it) or not, phases of unequal sizes, a phase of one window
DILATED = [((2, 3, 11, 12), 4, 2, 2), ((1, 4, 13, 9), 3, 1, 2), ((2, 2, 14, 13), 5, 6, 3), ((1, 3, 8, 9), 2, 0, 3),
           ((2, 3, 10, 10), 4, 4, 2)]


@pytest.mark.parametrize("compiled", TRANSFORMS)
@pytest.mark.parametrize("x,c_out,padding,dilation", DILATED)
def test_dilated_phases_match_torch_in_float64(x: tuple, c_out: int, padding: int, dilation: int, compiled: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """:func:`winograd.forward` and :func:`winograd.grad_input` per dilation phase, with either
    transforms, in items of a few tiles on two threads: torch's output and input gradient."""
    monkeypatch.setattr(winograd_module, "_ITEM_TILES", 3)
    monkeypatch.setattr(winograd_module, "_MIN_ITEM_TILES", 1)
    rng = np.random.default_rng(sum(x) + dilation)
    xs, w = rng.standard_normal(x), rng.standard_normal((c_out, x[1], 3, 3))
    tx = torch.tensor(xs, requires_grad=True)
    want = TF.conv2d(tx, torch.from_numpy(w), padding=padding, dilation=dilation)
    g = rng.standard_normal(want.shape)
    want.backward(torch.from_numpy(g))
    xp = np.pad(xs, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    y = np.empty(want.shape)
    with jit.enabled(compiled), threadpool_limits(2, user_api="blas"):
        winograd_module.forward(xp, w, y, dilation)
        gx = winograd_module.grad_input(g, w, xp.shape[2:], dilation=dilation)
        if padding % dilation == 0 and padding // dilation <= 2:
            unpadded = winograd_module.grad_input(g, w, xp.shape[2:], padding // dilation, dilation)
            assert_close(unpadded, tx.grad.numpy(), np.float64, "input gradient made without the padding")
    assert_close(y, want.detach().numpy(), np.float64, "output")
    inner = (slice(None), slice(None), slice(padding, xp.shape[2] - padding), slice(padding, xp.shape[3] - padding))
    assert_close(gx[inner], tx.grad.numpy(), np.float64, "input gradient")


@pytest.fixture
def forced_dilated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ungrouped 3×3 stride-1 conv (dilated too) takes the Winograd path with the compiled
    transforms, in items of a few tiles."""
    monkeypatch.setattr(conv_module, "_WINOGRAD_COMPILED", ((1, 1),))
    monkeypatch.setattr(winograd_module, "_ITEM_TILES", 3)
    monkeypatch.setattr(winograd_module, "_MIN_ITEM_TILES", 1)


@pytest.mark.skipif(not NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("x,c_out,padding,dilation", DILATED)
def test_forced_dilated_winograd_matches_torch(forced_dilated: None, x: tuple, c_out: int, padding: int,
                                               dilation: int) -> None:
    """Through conv2d: output, input and weight gradients (float64), and float32."""
    geo = conv_module._Geometry((3, 3), (1, 1), (dilation,) * 2, 1)
    assert conv_module._path(x[1], geo, tuple(s + 2 * padding for s in x[2:]), True) == "winograd"
    rng = np.random.default_rng(sum(x))
    arrays = [rng.standard_normal(x), rng.standard_normal((c_out, x[1], 3, 3))]
    kwargs = {"padding": padding, "dilation": dilation}
    compare(F.conv2d, TF.conv2d, arrays, kwargs)
    compare(F.conv2d, TF.conv2d, arrays, kwargs, dtype=np.float32)


@pytest.mark.skipif(not NUMBA, reason="numba is not installed")
def test_dilated_memory_rules() -> None:
    """A dilated conv that takes Winograd unforced: its scratch rules against tracemalloc
    (test_memory's check), the input gradient made without the padding and with it."""
    from test_memory import assert_scratch_rules_hold

    geo = conv_module._Geometry((3, 3), (1, 1), (2, 2), 1)
    assert conv_module._path(128, geo, (32, 32), True) == "winograd"
    for padding in (2, 3):
        assert_scratch_rules_hold((f"dilated_{padding}", lambda a, b, p=padding: F.conv2d(a, b, padding=p, dilation=2),
                                   [(2, 128, 28, 28)], [("param", (64, 128, 3, 3))]))


# --- 3×3×3 convs (compiled transforms only) ------------------------------------------------

@pytest.fixture
def forced_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every 3×3×3 stride-1 conv takes the Winograd path, in items of a few tiles."""
    monkeypatch.setattr(conv_module, "_WINOGRAD_VOLUME", (1, 1))
    monkeypatch.setattr(winograd_module, "_ITEM_TILES", 3)
    monkeypatch.setattr(winograd_module, "_MIN_ITEM_TILES", 1)


# (input shape, output channels, padding): odd and even sizes, fewer depths than a chunk, one
# output depth, unbatched
VOLUMES = [((2, 3, 6, 7, 9), 5, 1), ((1, 4, 5, 6, 6), 4, 0), ((2, 2, 4, 5, 8), 3, 2), ((1, 3, 3, 3, 4), 2, 0),
           ((3, 4, 5, 6), 2, 1)]


@pytest.mark.skipif(not NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("chunk", [1, 4])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("x,c_out,padding", VOLUMES)
def test_forced_volume_winograd_matches_torch_in_float64(forced_volume: None, x: tuple, c_out: int, padding: int,
                                                         threads: int, chunk: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Output, input gradient (the flipped kernel over the gradient's zero border) and weight
    gradient, output depths one or four an item."""
    monkeypatch.setattr(winograd_module, "_DEPTH_CHUNK", chunk)
    w = (c_out, x[-4], 3, 3, 3)
    assert conv_module._path(w[1], _volume(), tuple(s + 2 * padding for s in x[-3:]), True) == "winograd"
    rng = np.random.default_rng(len(x) + padding)
    with threadpool_limits(threads, user_api="blas"):
        compare(F.conv3d, TF.conv3d, [rng.standard_normal(x), rng.standard_normal(w), rng.standard_normal(c_out)],
                {"padding": padding})


@pytest.mark.skipif(not NUMBA, reason="numba is not installed")
def test_forced_volume_winograd_matches_torch_in_float32(forced_volume: None) -> None:
    rng = np.random.default_rng(8)
    compare(F.conv3d, TF.conv3d, [rng.standard_normal((2, 16, 5, 9, 10)), rng.standard_normal((8, 16, 3, 3, 3))],
            {"padding": 1}, dtype=np.float32)


@pytest.mark.skipif(not NUMBA, reason="numba is not installed")
def test_volume_backward_without_the_compiled_transforms_runs_planar(forced_volume: None) -> None:
    """A 3-d conv that took Winograd forward, its backward run with the compiled kernels off:
    the planar kernels make its input gradient (NumPy has no 3-d transforms), torch's results."""
    rng = np.random.default_rng(9)
    x, w = rng.standard_normal((2, 4, 5, 6, 7)), rng.standard_normal((3, 4, 3, 3, 3))
    g = rng.standard_normal((2, 3, 5, 6, 7))
    cx, cw = cs.tensor(x, requires_grad=True), cs.tensor(w, requires_grad=True)
    assert conv_module._path(4, _volume(), (7, 8, 9), True) == "winograd"
    y = F.conv3d(cx, cw, padding=1)
    with jit.enabled(False):
        y.backward(g)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    TF.conv3d(tx, tw, padding=1).backward(torch.from_numpy(g))
    assert_close(cx.grad, tx.grad.numpy(), np.float64, "input grad")
    assert_close(cw.grad, tw.grad.numpy(), np.float64, "weight grad")


@pytest.mark.skipif(not NUMBA, reason="numba is not installed")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_volume_non_finite_cells_like_torch(forced_volume: None) -> None:
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 3, 5, 6, 7))
    x[1, 2, 3, 4, 5] = np.inf
    compare(F.conv3d, TF.conv3d, [x, rng.standard_normal((4, 3, 3, 3, 3))], {"padding": 1})


@pytest.mark.skipif(not NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n,depth,size,channels", [(2, 9, 30, 32), (1, 3, 58, 16)])
def test_volume_scratch_rule_matches_tracemalloc(n: int, depth: int, size: int, channels: int, threads: int) -> None:
    """As test_scratch_rule_matches_tracemalloc, for 3×3×3 convs."""
    import tracemalloc

    rng = np.random.default_rng(2)
    xp = rng.standard_normal((n, channels, depth, size, size)).astype(np.float32)
    w = rng.standard_normal((channels, channels, 3, 3, 3)).astype(np.float32)
    out = (depth - 2, size - 2, size - 2)
    y = np.empty((n, channels, *out), np.float32)
    with threadpool_limits(threads, user_api="blas"):
        for run, flipped in ((lambda: winograd_module.forward(xp, w, y), False),
                             (lambda: winograd_module.grad_input(y, w, (depth, size, size)), True)):
            run()
            tracemalloc.start()
            result = run()
            peak = tracemalloc.get_traced_memory()[1] - (0 if result is None else result.nbytes)
            tracemalloc.stop()
            rule = 4 * winograd_module.scratch_elements(n, channels, channels, xp.shape[2:] if flipped else out,
                                                        threads, 4, flipped)
            assert peak <= 1.25 * rule + 80_000, (peak, rule)
            if threads == 1:
                assert peak >= 0.9 * rule - 80_000, (peak, rule)


@pytest.mark.parametrize("x,w,dilation", [((0, 4, 9, 9), (3, 4, 3, 3), 1), ((0, 4, 9, 9), (3, 4, 3, 3), 2),
                                          ((0, 4, 5, 6, 6), (3, 4, 3, 3, 3), 1),
                                          ((0, 16, 3, 15, 15), (6, 16, 3, 3, 3), 1)])
def test_empty_batch(x: tuple, w: tuple, dilation: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """No samples: empty output and gradients on every Winograd route (2-d, per dilation phase, 3-d;
    the last one's weight gradient in items of whole samples, of which there are none)."""
    monkeypatch.setattr(conv_module, "_WINOGRAD_COMPILED", ((1, 1),))
    monkeypatch.setattr(conv_module, "_WINOGRAD_CHANNELS", 1)
    monkeypatch.setattr(conv_module, "_WINOGRAD_VOLUME", (1, 1))
    compare(getattr(F, f"conv{len(x) - 2}d"), getattr(TF, f"conv{len(x) - 2}d"),
            [np.zeros(x), np.ones(w)], {"padding": dilation, "dilation": dilation})


# --- the weight gradient: Gᵀ [Σ_tiles (A g Aᵀ) ⊙ (Bᵀ d B)] G --------------------------------

# (padded input shape, output channels, dilation): odd and even sizes, tiles past the edges,
# dilation phases of unequal sizes
WEIGHTS = [((2, 3, 9, 11), 5, 1), ((1, 4, 6, 6), 4, 1), ((3, 2, 5, 5), 3, 1), ((2, 2, 13, 12), 3, 2),
           ((1, 5, 16, 17), 3, 3), ((2, 6, 20, 19), 7, 1)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("item_tiles", [3, 196])
@pytest.mark.parametrize("xp,c_out,dilation", WEIGHTS)
def test_weight_gradient_matches_torch_and_both_transforms_agree(xp: tuple, c_out: int, dilation: int,
                                                                 item_tiles: int, threads: int,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """:func:`winograd.grad_weight` against torch's weight gradient (float64), in items of a few
    tiles or whole samples on one or two threads; the compiled and NumPy transforms give the
    same bits."""
    monkeypatch.setattr(winograd_module, "_ITEM_TILES", item_tiles)
    monkeypatch.setattr(winograd_module, "_MIN_ITEM_TILES", 1)
    rng = np.random.default_rng(sum(xp) + dilation)
    x, w = rng.standard_normal(xp), rng.standard_normal((c_out, xp[1], 3, 3))
    tw = torch.tensor(w, requires_grad=True)
    y = TF.conv2d(torch.from_numpy(x), tw, dilation=dilation)
    g = rng.standard_normal(y.shape)
    y.backward(torch.from_numpy(g))
    results = []
    for compiled in ([True, False] if NUMBA else [False]):
        with jit.enabled(compiled), threadpool_limits(threads, user_api="blas"):
            results.append(winograd_module.grad_weight(x, g, dilation))
    assert_close(results[0], tw.grad.numpy(), np.float64, "weight gradient")
    assert all(np.array_equal(r, results[0]) for r in results)


@pytest.mark.skipif(not NUMBA, reason="numba is not installed")
def test_weight_gradient_through_conv2d(monkeypatch: pytest.MonkeyPatch) -> None:
    """A conv on the Winograd path with planes over 14² (so not im2col's weight gradient):
    torch's gradients in float64 and float32, the same bits on every run on two threads."""
    monkeypatch.setattr(conv_module, "_WINOGRAD_COMPILED", ((1, 1),))
    monkeypatch.setattr(winograd_module, "_ITEM_TILES", 5)
    monkeypatch.setattr(winograd_module, "_MIN_ITEM_TILES", 1)
    x, w = (2, 3, 17, 18), (4, 3, 3, 3)
    assert conv_module._path(3, _geometry(), (19, 20), True) == "winograd"
    assert not conv_module._small_winograd((17, 18))
    rng = np.random.default_rng(13)
    arrays = [rng.standard_normal(x), rng.standard_normal(w)]
    compare(F.conv2d, TF.conv2d, arrays, {"padding": 1})
    compare(F.conv2d, TF.conv2d, arrays, {"padding": 1}, dtype=np.float32)
    xs, ws = (cs.tensor(a.astype(np.float32), requires_grad=True) for a in arrays)
    runs = []
    with threadpool_limits(2, user_api="blas"):
        for _ in range(5):
            ws.grad = None
            (F.conv2d(xs, ws, padding=1) ** 2).sum().backward()
            runs.append(ws.grad.copy())
    assert all(np.array_equal(r, runs[0]) for r in runs)


@pytest.mark.skipif(not NUMBA, reason="numba is not installed")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_weight_gradient_non_finite_like_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """An infinite input cell: Winograd's weight gradient is not all finite, so the planar
    path's makes it (torch's NaN and infinities, in torch's cells)."""
    monkeypatch.setattr(conv_module, "_WINOGRAD_COMPILED", ((1, 1),))
    rng = np.random.default_rng(14)
    x = rng.standard_normal((2, 3, 16, 17))
    x[1, 2, 7, 8] = np.inf
    compare(F.conv2d, TF.conv2d, [x, rng.standard_normal((4, 3, 3, 3))], {"padding": 1})


@pytest.mark.parametrize("compiled", TRANSFORMS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n,size,channels,dilation", [(8, 30, 64, 1), (1, 58, 32, 1), (2, 32, 48, 2)])
def test_weight_scratch_rule_matches_tracemalloc(n: int, size: int, channels: int, dilation: int, threads: int,
                                                 compiled: bool) -> None:
    """As test_scratch_rule_matches_tracemalloc, for :func:`winograd.grad_weight`."""
    import tracemalloc

    rng = np.random.default_rng(3)
    xp = rng.standard_normal((n, channels, size, size)).astype(np.float32)
    out = (size - 2 * dilation,) * 2
    g = rng.standard_normal((n, channels, *out)).astype(np.float32)
    with threadpool_limits(threads, user_api="blas"), jit.enabled(compiled):
        winograd_module.grad_weight(xp, g, dilation)
        tracemalloc.start()
        result = winograd_module.grad_weight(xp, g, dilation)
        peak = tracemalloc.get_traced_memory()[1] - result.nbytes
        tracemalloc.stop()
        phase = tuple(-(-o // dilation) for o in out)
        rule = 4 * winograd_module.weight_scratch_elements(n, channels, channels, phase, threads, 4, dilation ** 2)
    assert peak <= 1.25 * rule + 80_000, (peak, rule)
    if threads == 1:
        assert peak >= 0.9 * rule - 80_000, (peak, rule)


@pytest.mark.skipif(not NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("chunk", [1, 4])
@pytest.mark.parametrize("item_tiles", [3, 196])
@pytest.mark.parametrize("xp,c_out", [((2, 3, 6, 9, 11), 5), ((1, 4, 3, 6, 6), 4), ((2, 2, 9, 13, 12), 3)])
def test_volume_weight_gradient_matches_torch(xp: tuple, c_out: int, item_tiles: int, chunk: int,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """:func:`winograd.grad_weight` of a 3×3×3 conv (each output depth against its three input
    slices side by side), items of a few tiles or whole planes, one or four depths an item."""
    monkeypatch.setattr(winograd_module, "_ITEM_TILES", item_tiles)
    monkeypatch.setattr(winograd_module, "_MIN_ITEM_TILES", 1)
    monkeypatch.setattr(winograd_module, "_DEPTH_CHUNK", chunk)
    rng = np.random.default_rng(sum(xp))
    x, w = rng.standard_normal(xp), rng.standard_normal((c_out, xp[1], 3, 3, 3))
    tw = torch.tensor(w, requires_grad=True)
    y = TF.conv3d(torch.from_numpy(x), tw)
    g = rng.standard_normal(y.shape)
    y.backward(torch.from_numpy(g))
    with threadpool_limits(2, user_api="blas"):
        assert_close(winograd_module.grad_weight(x, g), tw.grad.numpy(), np.float64, "weight gradient")


@pytest.mark.skipif(not NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n,depth,size,channels", [(2, 9, 30, 32), (1, 3, 58, 16), (2, 3, 18, 8)])
def test_volume_weight_scratch_rule_matches_tracemalloc(n: int, depth: int, size: int, channels: int,
                                                        threads: int) -> None:
    """As test_weight_scratch_rule_matches_tracemalloc, for 3×3×3 convs (one output depth too)."""
    import tracemalloc

    rng = np.random.default_rng(4)
    xp = rng.standard_normal((n, channels, depth, size, size)).astype(np.float32)
    out = (depth - 2, size - 2, size - 2)
    g = rng.standard_normal((n, channels, *out)).astype(np.float32)
    with threadpool_limits(threads, user_api="blas"):
        winograd_module.grad_weight(xp, g)
        tracemalloc.start()
        result = winograd_module.grad_weight(xp, g)
        peak = tracemalloc.get_traced_memory()[1] - result.nbytes
        tracemalloc.stop()
        rule = 4 * winograd_module.weight_scratch_elements(n, channels, channels, out, threads, 4)
    assert peak <= 1.25 * rule + 80_000, (peak, rule)
    if threads == 1:
        assert peak >= 0.9 * rule - 80_000, (peak, rule)


@pytest.mark.skipif(not NUMBA, reason="numba is not installed")
def test_volume_through_conv3d_and_its_memory_rules() -> None:
    """A 3×3×3 conv on planes over 14² takes Winograd unforced, all three gradients with it:
    torch's results (float64), and the scratch rules against tracemalloc (test_memory's check)."""
    from test_memory import assert_scratch_rules_hold

    x, w = (2, 16, 4, 16, 17), (8, 16, 3, 3, 3)
    assert conv_module._path(16, _volume(), (6, 18, 19), True) == "winograd"
    assert not conv_module._small_winograd((4, 16, 17))
    rng = np.random.default_rng(15)
    compare(F.conv3d, TF.conv3d, [rng.standard_normal(x), rng.standard_normal(w)], {"padding": 1})
    assert_scratch_rules_hold(("winograd_3d", lambda a, b: F.conv3d(a, b, padding=1), [x], [("param", w)]))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n,out,channels", [(1, (5, 7), 6), (4, (28, 28), 512), (3, (224, 224), 128),
                                            (8, (2, 2), 8), (2, (55, 3), 1024)])
def test_first_item_is_the_listed_items_count_and_largest(n: int, out: tuple, channels: int, threads: int) -> None:
    """The memory rules' view of the items (how many, and the first) is the listed one's, and
    no item is larger than the first."""
    def size(it: winograd_module._Item) -> int:
        return (it.batch.stop - it.batch.start) * (it.rows.stop - it.rows.start)

    for least in (1, winograd_module._MIN_ITEM_TILES, winograd_module._ITEM_TILES):
        items = winograd_module._items(n, out, channels, 4, threads, least=least)
        count, first = winograd_module._first_item(n, out, channels, 4, threads, least=least)
        assert (count, first) == (len(items), items[0])
        assert max(map(size, items)) == size(first)
