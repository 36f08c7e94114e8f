"""convscope.trace: one-layer provenance, multi-layer influence, gradient contributions.

Every model is built twice, in convscope and in torch with the same weights (float64), so
the traced value, the gradient and the max-pool winners are checked against torch, and the
padding sources against ``numpy.pad``; ``recompute()`` must reproduce the engine's value
from the recorded terms alone.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch

import convscope as cs
from convscope.trace import Read, Trace, WeightedSum, WindowMax, WindowMean, trace
from convscope.trace.cli import add_cli
from convscope.trace.render import path_text
from torch_ref import assert_close

Spec = Sequence[tuple[str, tuple, dict]]


# --- twins ------------------------------------------------------------------------------------------
def _randomise_norms(model: cs.nn.Module, rng: np.random.Generator) -> None:
    """Batch norms with non-trivial statistics and affine parameters (defaults are 0/1)."""
    for module in model.modules():
        if getattr(module, "running_mean", None) is not None:
            module.running_mean.data[...] = rng.normal(size=module.running_mean.shape)
            module.running_var.data[...] = rng.uniform(0.5, 2.0, size=module.running_var.shape)
            for p in (module.weight, module.bias):
                if p is not None:
                    p.data[...] = rng.normal(size=p.shape)


def _copy_weights(source: cs.nn.Module, target: torch.nn.Module) -> torch.nn.Module:
    target.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in source.state_dict().items()})
    return target


def twin(spec: Spec, seed: int = 0) -> tuple[cs.nn.Module, torch.nn.Module]:
    """The same Sequential in convscope and torch (float64, eval, equal weights)."""
    cs.manual_seed(seed)
    ours = cs.nn.Sequential(*(getattr(cs.nn, name)(*args, **kw) for name, args, kw in spec)).double().eval()
    _randomise_norms(ours, np.random.default_rng(seed))
    theirs = torch.nn.Sequential(*(getattr(torch.nn, name)(*args, **kw) for name, args, kw in spec)).double().eval()
    return ours, _copy_weights(ours, theirs)


def branching(nn: Any, cat: Callable) -> Any:
    """A residual addition and a channel concatenation in ``forward``, for either engine."""
    class Branching(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(2, 4, 3, padding=1)
            self.act = nn.Tanh()
            self.left = nn.Conv2d(4, 4, 3, padding=2, dilation=2)
            self.right = nn.Conv2d(4, 2, 1, groups=2)
            self.pool = nn.AvgPool2d(2, ceil_mode=True)
            self.head = nn.Conv2d(6, 3, 3, stride=2, padding=1)

        def forward(self, x: Any) -> Any:
            h = self.act(self.stem(x))
            r = self.act(self.left(h)) + h
            return self.head(self.pool(cat([r, self.right(h)], 1)))

    return Branching()


def branching_twin(seed: int = 0) -> tuple[cs.nn.Module, torch.nn.Module]:
    cs.manual_seed(seed)
    ours = branching(cs.nn, cs.cat).double().eval()
    return ours, _copy_weights(ours, branching(torch.nn, torch.cat).double().eval())


def torch_output(model: torch.nn.Module, layer: str, x: np.ndarray) -> np.ndarray:
    """The output of ``layer`` (a module path) when torch runs ``model`` on ``x``."""
    seen = []
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, a, out: seen.append(out[0] if isinstance(out, tuple) else out))
    with torch.no_grad():
        model(torch.from_numpy(x))
    handle.remove()
    return seen[0].numpy()


def torch_gradient(model: torch.nn.Module, layer: str, x: np.ndarray, index: tuple) -> np.ndarray:
    """d layer_output[index] / d x by torch's autograd (one value, or per sample with ``index[0]`` = slice)."""
    seen = []
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, a, out: seen.append(out))
    xt = torch.from_numpy(x).requires_grad_(True)
    model(xt)
    handle.remove()
    seen[0][index].sum().backward()
    return xt.grad.numpy()


def random_indices(shape: tuple, rng: np.random.Generator, count: int) -> list[tuple[int, ...]]:
    """The first and last cell (they see the most padding) and ``count`` random ones."""
    picks = [tuple(0 for _ in shape), tuple(s - 1 for s in shape)]
    picks += [tuple(int(rng.integers(s)) for s in shape) for _ in range(count)]
    return picks


def check_recompute(t: Trace, expected: float) -> None:
    scale = max(1.0, abs(expected))
    assert abs(t.value - expected) <= 1e-10 * scale, f"value {t.value} != torch {expected}"
    assert abs(t.recompute() - t.value) <= 1e-12 * scale, f"recompute {t.recompute()} != value {t.value}"
    d = t.to_dict(influence=True)
    assert json.loads(json.dumps(d, allow_nan=False)) == d


# --- recompute == forward, for every layer type ---------------------------------------------------
def L(name: str, *args: Any, **kw: Any) -> tuple[str, tuple, dict]:  # noqa: N802 - reads like a layer
    return name, args, kw


LAYERS = {
    "conv1d": ([L("Conv1d", 3, 4, 3, stride=2, padding=1)], (2, 3, 11)),
    "conv2d": ([L("Conv2d", 3, 5, 3)], (2, 3, 7, 8)),
    "conv2d-nobias": ([L("Conv2d", 3, 2, 2, bias=False)], (1, 3, 5, 5)),
    "conv2d-grouped": ([L("Conv2d", 4, 6, 3, padding=1, groups=2)], (2, 4, 6, 6)),
    "conv2d-depthwise": ([L("Conv2d", 4, 8, 3, padding=1, groups=4)], (1, 4, 6, 5)),
    "conv2d-dilated": ([L("Conv2d", 3, 4, 3, padding=2, dilation=2)], (1, 3, 9, 8)),
    "conv2d-strided": ([L("Conv2d", 3, 4, (3, 2), stride=(3, 2), padding=(1, 0))], (1, 3, 10, 9)),
    "conv2d-same": ([L("Conv2d", 3, 4, 4, padding="same")], (1, 3, 6, 7)),
    "conv2d-reflect": ([L("Conv2d", 3, 4, 3, padding=2, padding_mode="reflect")], (1, 3, 6, 7)),
    "conv2d-replicate": ([L("Conv2d", 3, 4, 3, padding=(1, 2), stride=2, padding_mode="replicate")], (1, 3, 6, 7)),
    "conv2d-circular": ([L("Conv2d", 4, 4, 3, padding=2, groups=2, padding_mode="circular")], (1, 4, 5, 6)),
    "conv1d-reflect": ([L("Conv1d", 2, 3, 5, padding=3, dilation=2, padding_mode="reflect")], (2, 2, 9)),
    "conv3d": ([L("Conv3d", 2, 3, (2, 3, 2), stride=(1, 2, 1), padding=1)], (1, 2, 4, 5, 4)),
    "conv3d-circular": ([L("Conv3d", 2, 2, 3, padding=1, padding_mode="circular")], (1, 2, 3, 4, 4)),
    "conv_transpose1d": ([L("ConvTranspose1d", 3, 4, 3, stride=2, padding=1, output_padding=1)], (2, 3, 5)),
    "conv_transpose2d": ([L("ConvTranspose2d", 4, 6, 3, stride=2, padding=1, output_padding=1, groups=2,
                            dilation=2)], (1, 4, 4, 5)),
    "conv_transpose3d": ([L("ConvTranspose3d", 2, 2, 2, stride=2)], (1, 2, 2, 3, 2)),
    "max_pool1d": ([L("MaxPool1d", 3, 2, padding=1)], (2, 3, 10)),
    "max_pool2d-ceil": ([L("MaxPool2d", 3, 2, padding=1, ceil_mode=True)], (1, 3, 8, 7)),
    "max_pool2d-dilated": ([L("MaxPool2d", 3, stride=2, dilation=2)], (1, 2, 9, 9)),
    "max_pool3d": ([L("MaxPool3d", 2, ceil_mode=True)], (1, 2, 5, 4, 5)),
    "avg_pool1d-ceil": ([L("AvgPool1d", 3, 2, padding=1, ceil_mode=True)], (2, 3, 10)),
    "avg_pool2d-exclude-pad": ([L("AvgPool2d", 3, 2, padding=1, ceil_mode=True, count_include_pad=False)],
                               (1, 3, 8, 7)),
    "avg_pool2d-override": ([L("AvgPool2d", 2, divisor_override=3)], (1, 2, 6, 6)),
    "avg_pool3d": ([L("AvgPool3d", 2, stride=2, padding=1)], (1, 2, 4, 5, 4)),
    "lp_pool1d": ([L("LPPool1d", 2, 3, stride=2)], (2, 3, 10)),
    "lp_pool2d-ceil": ([L("LPPool2d", 3, 2, ceil_mode=True)], (1, 2, 7, 7)),
    "adaptive_avg_pool1d": ([L("AdaptiveAvgPool1d", 4)], (2, 3, 10)),
    "adaptive_avg_pool2d": ([L("AdaptiveAvgPool2d", (3, 5))], (1, 2, 7, 9)),
    "adaptive_avg_pool3d": ([L("AdaptiveAvgPool3d", 2)], (1, 2, 5, 3, 4)),
    "adaptive_max_pool1d": ([L("AdaptiveMaxPool1d", 3)], (2, 3, 10)),
    "adaptive_max_pool2d": ([L("AdaptiveMaxPool2d", (3, 4))], (1, 2, 7, 9)),
    "linear": ([L("Flatten"), L("Linear", 24, 5)], (3, 2, 3, 4)),
    "batch_norm1d": ([L("BatchNorm1d", 4)], (3, 4, 5)),
    "batch_norm2d": ([L("BatchNorm2d", 3)], (2, 3, 4, 4)),
    "batch_norm2d-plain": ([L("BatchNorm2d", 3, affine=False)], (2, 3, 4, 4)),
    "batch_norm3d": ([L("BatchNorm3d", 2)], (1, 2, 3, 3, 3)),
    "local_response_norm": ([L("LocalResponseNorm", 3, alpha=0.5, beta=0.75, k=2.0)], (2, 5, 4, 4)),
    "local_response_norm-even": ([L("LocalResponseNorm", 4, alpha=0.3, beta=0.6)], (1, 6, 3, 5)),
    "reflection_pad2d": ([L("ReflectionPad2d", (2, 1, 0, 2))], (1, 2, 4, 5)),
    "replication_pad1d": ([L("ReplicationPad1d", 3)], (2, 2, 4)),
    "zero_pad2d": ([L("ZeroPad2d", 1)], (1, 2, 3, 3)),
    "constant_pad3d": ([L("ConstantPad3d", 1, 3.5)], (1, 1, 2, 3, 2)),
    "circular_pad2d": ([L("CircularPad2d", 2)], (1, 2, 3, 4)),
    "relu": ([L("ReLU")], (2, 3, 4)),
    "tanh": ([L("Tanh")], (2, 3, 4)),
    "sigmoid": ([L("Sigmoid")], (2, 3, 4)),
    "leaky_relu": ([L("LeakyReLU", 0.2)], (2, 3, 4)),
    "elu": ([L("ELU", 0.7)], (2, 3, 4)),
    "gelu": ([L("GELU")], (2, 3, 4)),
    "gelu-tanh": ([L("GELU", approximate="tanh")], (2, 3, 4)),
    "silu": ([L("SiLU")], (2, 3, 4)),
    "mish": ([L("Mish")], (2, 3, 4)),
    "hardtanh": ([L("Hardtanh", -0.5, 0.7)], (2, 3, 4)),
    "relu6": ([L("ReLU6")], (2, 3, 4)),
    "hardswish": ([L("Hardswish")], (2, 3, 4)),
    "hardsigmoid": ([L("Hardsigmoid")], (2, 3, 4)),
    "flatten": ([L("Flatten")], (2, 3, 4)),
    "dropout-eval": ([L("Dropout", 0.5)], (2, 3, 4)),
    "identity": ([L("Identity")], (2, 3, 4)),
    "identity-after-tanh": ([L("Tanh"), L("Identity")], (2, 3, 4)),
    "dropout-eval-after-conv": ([L("Conv1d", 3, 2, 2), L("Dropout", 0.5)], (2, 3, 4)),
}
POSITIVE = {"lp_pool2d-ceil"}  # x^3 of a negative window mean has no real cube root (NaN, as in torch)


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_recompute_equals_forward_for_every_layer_type(name: str) -> None:
    spec, shape = LAYERS[name]
    ours, theirs = twin(spec)
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape) * 2
    if name in POSITIVE:
        x = np.abs(x)
    layer = str(len(spec) - 1)
    expected = torch_output(theirs, layer, x)
    for index in random_indices(expected.shape, rng, 4):
        t = trace(ours, x, layer, index)
        check_recompute(t, float(expected[index]))
        assert t.layer_type == spec[-1][0]
        if spec[-1][0] in ("Identity", "Dropout"):
            assert t.step.kind == "copy" and t.step.op == "identity" and t.step.read.index == index
        if "Pad" in spec[-1][0]:  # a cell of the input, the cell the padding copied, or the constant
            read = t.step.read
            copied = read.index if read.padding is None else read.source
            fill = spec[-1][1][-1] if spec[-1][0].startswith("Constant") else 0.0
            assert t.value == (x[copied] if copied is not None else fill)


def test_recompute_in_a_deep_sequential_at_every_layer() -> None:
    spec = [L("Conv2d", 2, 4, 3, padding=1), L("BatchNorm2d", 4), L("ReLU"), L("MaxPool2d", 2),
            L("Conv2d", 4, 4, 3, padding=1, groups=2, padding_mode="reflect"), L("Tanh"),
            L("AvgPool2d", 2, ceil_mode=True), L("Flatten"), L("Linear", 16, 6), L("Sigmoid"), L("Linear", 6, 3)]
    ours, theirs = twin(spec, seed=3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 2, 8, 8))
    for i in range(len(spec)):
        expected = torch_output(theirs, str(i), x)
        for index in random_indices(expected.shape, rng, 2):
            check_recompute(trace(ours, x, str(i), index), float(expected[index]))


def test_recompute_in_a_branching_model() -> None:
    ours, theirs = branching_twin()
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 2, 9, 8))
    for layer in ("stem", "act", "left", "right", "pool", "head", ""):
        expected = torch_output(theirs, layer, x)
        for index in random_indices(expected.shape, rng, 3):
            check_recompute(trace(ours, x, layer, index), float(expected[index]))


# --- the influence mask -------------------------------------------------------------------------------
SMOOTH = {
    "dilated-strided": [L("Conv2d", 4, 3, 1, stride=2), L("Tanh"), L("Conv2d", 3, 4, 3, dilation=2,
                        padding=2), L("Sigmoid"), L("Conv2d", 4, 2, 3, dilation=3)],
    "groups-avgpool": [L("Conv2d", 4, 4, 3, groups=2, padding=1), L("Tanh"), L("Conv2d", 4, 4, 3, groups=4, stride=2),
                       L("Tanh"), L("AvgPool2d", 3, 2, padding=1, count_include_pad=False), L("Conv2d", 4, 2, 1)],
    "padding-modes": [L("Conv2d", 4, 3, 3, padding=2, padding_mode="reflect"), L("Tanh"),
                      L("Conv2d", 3, 3, 3, padding=1, stride=2, padding_mode="circular"), L("Sigmoid"),
                      L("Conv2d", 3, 2, 3, padding=2, padding_mode="replicate")],
    "dilated-1d": [L("Conv1d", 4, 3, 3, dilation=3), L("Tanh"), L("Conv1d", 3, 2, 2, dilation=5, stride=2)],
    "strided-3d": [L("Conv3d", 4, 2, 2, stride=2, padding=1), L("Tanh"), L("Conv3d", 2, 2, (1, 2, 2), dilation=2)],
    "transposed": [L("ConvTranspose2d", 4, 3, 3, stride=2, padding=1), L("Tanh"), L("Conv2d", 3, 2, 3, stride=2)],
    "linear-head": [L("Conv2d", 4, 2, 3, stride=2), L("Tanh"), L("Flatten"), L("Linear", 72, 5), L("Tanh"),
                    L("Linear", 5, 3)],
    "pools-norms": [L("Conv2d", 4, 4, 3), L("BatchNorm2d", 4), L("GELU"), L("LPPool2d", 2, 2, ceil_mode=True),
                    L("Upsample", scale_factor=2, mode="bilinear"), L("GroupNorm", 2, 4),
                    L("AdaptiveAvgPool2d", (2, 3)), L("Conv2d", 4, 2, 1)],
}
SMOOTH_INPUT = {"dilated-strided": (2, 4, 15, 16), "linear-head": (2, 4, 13, 13), "dilated-1d": (2, 4, 19),
                "strided-3d": (2, 4, 5, 6, 7), "transposed": (2, 4, 4, 5)}


def _check_influence_equals_gradient_support(ours: cs.nn.Module, theirs: torch.nn.Module, layer: str,
                                             x: np.ndarray, rng: np.random.Generator) -> list[Trace]:
    out_shape = torch_output(theirs, layer, x).shape
    traces = []
    for index in random_indices(out_shape, rng, 3):
        t = trace(ours, x, layer, index)
        gradient = torch_gradient(theirs, layer, x, index)
        np.testing.assert_array_equal(t.influence(), gradient != 0, err_msg=f"{layer}{index}")
        assert_close(t.contributions(), gradient, what=f"contributions {layer}{index}")
        box = t.receptive_box()
        cells = np.argwhere(gradient != 0)
        assert box == tuple(zip(cells.min(0).tolist(), cells.max(0).tolist(), strict=True))
        traces.append(t)
    return traces


@pytest.mark.parametrize("name", list(SMOOTH))
def test_influence_equals_gradient_support_on_smooth_nets(name: str) -> None:
    spec = SMOOTH[name]
    ours, theirs = twin(spec, seed=5)
    rng = np.random.default_rng(5)
    x = rng.normal(size=SMOOTH_INPUT.get(name, (2, 4, 13, 12)))
    traces = _check_influence_equals_gradient_support(ours, theirs, str(len(spec) - 1), x, rng)
    if name == "dilated-strided":  # the mask is genuinely sparse: holes inside its box
        mask = traces[-1].influence()
        assert mask.sum() < math.prod(hi - lo + 1 for lo, hi in traces[-1].receptive_box())
    if name == "linear-head":  # a linear layer reads every cell of its sample, and no other sample
        mask = traces[-1].influence()
        n = traces[-1].index[0]
        assert mask[n].all() and mask.sum() == mask[n].size


def test_influence_equals_gradient_support_through_residual_and_concat() -> None:
    ours, theirs = branching_twin(seed=6)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 2, 11, 10))
    for layer in ("head", "pool", "right"):
        _check_influence_equals_gradient_support(ours, theirs, layer, x, rng)


def test_influence_of_dilated_conv_is_the_dilated_grid() -> None:
    """One 3×3 conv with dilation 2 and stride 2 reads a 3×3 grid with gaps of one cell."""
    ours, _ = twin([L("Conv2d", 1, 1, 3, stride=2, dilation=2)])
    t = trace(ours, np.ones((1, 1, 9, 9)), "0", (0, 0, 1, 2))
    expected = np.zeros((1, 1, 9, 9), bool)
    expected[0, 0, 2:7:2, 4:9:2] = True
    np.testing.assert_array_equal(t.influence(), expected)
    assert t.receptive_box() == ((0, 0), (0, 0), (2, 6), (4, 8))


def test_influence_through_max_pool_and_relu_is_the_union_of_gradient_supports() -> None:
    """Max pool and ReLU select per input: every support lies in the mask, and over many
    random inputs the supports cover it."""
    spec = [L("Conv2d", 1, 3, 3, padding=1), L("ReLU"), L("MaxPool2d", 2), L("Conv2d", 3, 2, 3), L("ReLU")]
    ours, theirs = twin(spec, seed=7)
    x = np.random.default_rng(7).normal(size=(64, 1, 10, 10))
    for index in [(0, 1, 0, 0), (0, 0, 1, 2), (0, 1, 2, 1)]:
        mask = trace(ours, x[:1], "3", index).influence()[0]
        gradient = torch_gradient(theirs, "3", x, (slice(None), *index[1:]))  # one value per sample
        support = gradient != 0
        assert not (support & ~mask).any(), "a gradient reaches a cell outside the mask"
        assert (support.sum(axis=(1, 2, 3)) < mask.sum()).any(), "max pool and ReLU should select"
        np.testing.assert_array_equal(support.any(axis=0), mask)


# --- what the layer read ------------------------------------------------------------------------------
NUMPY_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_padding_positions_and_sources(mode: str) -> None:
    ours, theirs = twin([L("Conv2d", 1, 1, 3, padding=2, padding_mode=mode)])
    x = np.arange(30.0).reshape(1, 1, 5, 6) / 7
    cells = np.arange(30).reshape(5, 6)
    padded = np.pad(cells, 2, mode=NUMPY_MODE[mode]) if mode != "zeros" else np.pad(cells, 2, constant_values=-1)
    expected = torch_output(theirs, "0", x)
    for index in [(0, 0, 0, 0), (0, 0, 6, 7), (0, 0, 3, 0), (0, 0, 2, 4)]:
        t = trace(ours, x, "0", index)
        check_recompute(t, float(expected[index]))
        for read in t.step.reads:
            row, col = read.index[2], read.index[3]
            source = padded[row + 2, col + 2]
            if 0 <= row < 5 and 0 <= col < 6:
                assert read.padding is None and read.source is None
                assert read.value == x[0, 0, row, col]
            elif mode == "zeros":
                assert (read.padding, read.source, read.value) == ("zeros", None, 0.0)
            else:
                assert read.padding == mode
                assert read.source == (0, 0, *np.unravel_index(source, cells.shape))
                assert read.value == x.reshape(-1)[source]
    corner = trace(ours, x, "0", (0, 0, 0, 0)).step.reads
    assert [r.index[2:] for r in corner] == [(r, c) for r in (-2, -1, 0) for c in (-2, -1, 0)]
    assert sum(r.padding is not None for r in corner) == 8


def test_padding_modes_reach_the_copied_cells() -> None:
    """A corner output of a reflect-padded conv reads padding copied from row/col 1: the
    mask covers those source cells, not the cells outside the input."""
    ours, _ = twin([L("Conv2d", 1, 1, 3, padding=1, padding_mode="reflect")])
    t = trace(ours, np.ones((1, 1, 5, 5)), "0", (0, 0, 0, 0))
    expected = np.zeros((1, 1, 5, 5), bool)
    expected[0, 0, :2, :2] = True
    np.testing.assert_array_equal(t.influence(), expected)


def test_max_pool_winner_and_ties() -> None:
    """Integer-valued inputs tie often; the winner is torch's index, the first maximum in scan order."""
    ours, _ = twin([L("MaxPool2d", 3, 2, padding=1, ceil_mode=True)])
    x = np.random.default_rng(8).integers(0, 3, size=(1, 2, 7, 8)).astype(np.float64)
    _, indices = torch.nn.functional.max_pool2d(torch.from_numpy(x), 3, 2, padding=1, ceil_mode=True,
                                                return_indices=True)
    tied = 0
    for index in np.ndindex(*indices.shape):
        step = trace(ours, x, "0", index).step
        assert isinstance(step, WindowMax)
        winner = step.reads[step.winner]
        assert winner.index[2:] == np.unravel_index(int(indices[index]), (7, 8))
        real = [i for i, r in enumerate(step.reads) if r.padding is None]
        assert step.ties == tuple(i for i in real if step.reads[i].value == winner.value)
        assert step.ties[0] == step.winner
        tied += len(step.ties) > 1
        for r in step.reads:
            if r.padding is not None:
                assert r.value == -math.inf and r.padding in ("-inf", "overhang")
    assert tied > 5


def test_average_pool_divisors_by_hand() -> None:
    """avg_pool1d of [2, 4, 6], kernel 2, padding 1: (0 + 2)/2 = 1 with the padding counted,
    2/1 = 2 without; ceil mode over [1, 2, 3, 4] with kernel 3, stride 2: the last window
    holds 3, 4 and one cell past the input, divided by 2 (torch's clipped count)."""
    x = np.array([[[2.0, 4.0, 6.0]]])
    for include, divisor, value in ((True, 2.0, 1.0), (False, 1.0, 2.0)):
        ours, theirs = twin([L("AvgPool1d", 2, padding=1, count_include_pad=include)])
        t = trace(ours, x, "0", (0, 0, 0))
        assert isinstance(t.step, WindowMean)
        assert (t.step.divisor, t.value, t.recompute()) == (divisor, value, value)
        assert [(r.index, r.value, r.padding) for r in t.step.reads] == [((0, 0, -1), 0.0, "zeros"),
                                                                         ((0, 0, 0), 2.0, None)]
        assert torch_output(theirs, "0", x)[0, 0, 0] == value
    ours, theirs = twin([L("AvgPool1d", 3, 2, ceil_mode=True)])
    x = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    t = trace(ours, x, "0", (0, 0, 1))
    assert (t.step.divisor, t.value) == (2.0, 3.5) == (2.0, float(torch_output(theirs, "0", x)[0, 0, 1]))
    assert [r.padding for r in t.step.reads] == [None, None, "overhang"]


def test_conv_terms_list_the_group_channels_and_weights() -> None:
    ours, _ = twin([L("Conv2d", 4, 6, 2, groups=2)])
    x = np.random.default_rng(9).normal(size=(1, 4, 3, 3))
    step = trace(ours, x, "0", (0, 4, 1, 0)).step
    assert isinstance(step, WeightedSum)
    assert (step.group, step.groups, step.channels) == (1, 2, (2, 3))
    weight = ours[0].weight.numpy()
    assert len(step.terms) == 2 * 2 * 2
    for term in step.terms:
        n, c, i, j = term.read.index
        assert c in (2, 3) and term.read.value == x[n, c, i, j]
        assert term.weight_index[0] == 4 and term.weight == weight[term.weight_index]
        assert term.weight_index[1] == c - 2 and term.weight_index[2:] == (i - 1, j)
        assert term.product == term.read.value * term.weight


def test_conv_transpose_lists_the_cells_that_scattered_into_the_output() -> None:
    """Stride 2, kernel 3, padding 1: output cell o receives input i through tap t where 2i + t = o + 1."""
    ours, _ = twin([L("ConvTranspose1d", 1, 1, 3, stride=2, padding=1)])
    x = np.array([[[1.0, 2.0, 3.0]]])
    step = trace(ours, x, "0", (0, 0, 2)).step
    assert sorted((t.read.index[2], t.weight_index[2]) for t in step.terms) == [(1, 1)]
    step = trace(ours, x, "0", (0, 0, 1)).step
    assert sorted((t.read.index[2], t.weight_index[2]) for t in step.terms) == [(0, 2), (1, 0)]


def test_unbatched_input_and_shared_layer_calls() -> None:
    conv = cs.nn.Conv2d(2, 2, 3, padding=1).double()
    shared = cs.nn.Sequential(conv, cs.nn.Tanh(), conv)
    x = np.random.default_rng(10).normal(size=(2, 5, 5))
    second = shared(cs.tensor(x)).numpy()
    t = trace(shared, x, "0", (1, 2, 3), call=1)
    assert t.value == second[1, 2, 3] and abs(t.recompute() - t.value) < 1e-12
    assert t.influence().shape == x.shape and t.receptive_box() == ((0, 1), (0, 4), (1, 4))



class ChannelsLastTanh(cs.nn.Module):
    """tanh computed on a channels-last view and permuted back, as ConvNeXt wraps its layer norm."""

    def forward(self, x: Any) -> Any:
        return cs.functional.tanh(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def test_a_layer_that_computes_channels_last_is_traced_in_its_input_coordinates() -> None:
    cs.manual_seed(11)
    net = cs.nn.Sequential(cs.nn.Conv2d(2, 3, 3, padding=1), ChannelsLastTanh()).double().eval()
    x = np.random.default_rng(11).normal(size=(1, 2, 4, 5))
    conv = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(net[0].weight.numpy()),
                                      torch.from_numpy(net[0].bias.numpy()), padding=1)
    t = trace(net, x, "1", (0, 2, 1, 4))
    assert t.step.op == "tanh" and t.step.input_shape == (1, 3, 4, 5)
    assert t.step.read.index == (0, 2, 1, 4)  # the layer input's cell, not the permuted (0, 1, 4, 2)
    assert_close(t.step.read.value, conv[0, 2, 1, 4].item())
    assert_close(t.recompute(), math.tanh(conv[0, 2, 1, 4].item()))


def test_layer_norm_reads_every_value_normalised_together() -> None:
    from convscope.zoo.convnext import LayerNorm2d

    cs.manual_seed(12)
    rng = np.random.default_rng(12)
    norm2d = LayerNorm2d(6, eps=1e-6).double()
    norm = cs.nn.LayerNorm((4, 5)).double()
    for p in (norm2d.weight, norm2d.bias, norm.weight, norm.bias):
        p.data[...] = rng.normal(size=p.shape)
    x = rng.normal(size=(1, 6, 4, 5))
    tx = torch.from_numpy(x)
    t = trace(norm2d, x, "", (0, 3, 2, 1))  # over the 6 channels of pixel (2, 1), channels-last inside
    want = torch.nn.functional.layer_norm(tx.permute(0, 2, 3, 1), (6,), torch.from_numpy(norm2d.weight.numpy()),
                                          torch.from_numpy(norm2d.bias.numpy()), 1e-6)[0, 2, 1, 3].item()
    assert t.step.kind == "layer_norm" and t.step.input_shape == (1, 6, 4, 5)
    assert [r.index for r in t.step.reads] == [(0, c, 2, 1) for c in range(6)]
    assert t.step.read.index == (0, 3, 2, 1) and t.step.weight == norm2d.weight.numpy()[3]
    assert_close(t.step.mean, tx[0, :, 2, 1].mean().item())
    assert_close(t.step.var, tx[0, :, 2, 1].var(unbiased=False).item())
    assert_close(t.recompute(), want)
    assert_close(t.value, want)
    t = trace(norm, x, "", (0, 4, 3, 2))  # over the last two dims
    want = torch.nn.functional.layer_norm(tx, (4, 5), torch.from_numpy(norm.weight.numpy()),
                                          torch.from_numpy(norm.bias.numpy()))[0, 4, 3, 2].item()
    assert len(t.step.reads) == 20 and {r.index[:2] for r in t.step.reads} == {(0, 4)}
    assert t.step.bias == norm.bias.numpy()[3, 2]
    assert_close(t.recompute(), want)
    assert "mean" in str(t) and json.loads(json.dumps(t.to_dict()))["step"]["position"] == 17

# --- two-operand arithmetic: residual additions, gates, layer scales ----------------------------------
def combining(nn: Any) -> Any:
    """A residual block, a squeeze-and-excite gate, a layer scale and arithmetic in ``forward``."""
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3))

        def forward(self, x: Any) -> Any:
            return self.body(x) + x

    class Gate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool, self.fc, self.act = nn.AdaptiveAvgPool2d(1), nn.Conv2d(3, 3, 1), nn.Sigmoid()

        def forward(self, x: Any) -> Any:
            return self.act(self.fc(self.pool(x))) * x

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(ones(nn, (3, 1, 1)))
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x: Any) -> Any:
            return x - self.scale * self.conv(x)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.res, self.gate, self.scaled = Residual(), Gate(), Scaled()
            self.side, self.relu, self.halve = nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(), Halve()

        def forward(self, x: Any) -> Any:
            h = self.scaled(self.gate(self.res(x)))
            return self.halve(self.relu(h + self.side(x)))

    class Halve(nn.Module):
        def forward(self, x: Any) -> Any:
            return x / 2

    return Net()


def ones(nn: Any, shape: tuple) -> Any:
    return torch.ones(shape) if nn is torch.nn else cs.tensor(np.ones(shape, np.float32))


def combining_twin(seed: int = 0) -> tuple[cs.nn.Module, torch.nn.Module]:
    cs.manual_seed(seed)
    ours = combining(cs.nn).double().eval()
    _randomise_norms(ours, np.random.default_rng(seed))
    ours.scaled.scale.data[...] = np.random.default_rng(seed).normal(size=(3, 1, 1))
    return ours, _copy_weights(ours, combining(torch.nn).double().eval())


def check_operands(step: Any, theirs: torch.nn.Module, x: np.ndarray) -> list[str]:
    """Every operand's value equals torch's value of what the operand names; its origins."""
    params = dict(theirs.named_parameters())
    for operand in step.operands:
        where = operand.read.index
        if operand.origin == "layer":
            expected = torch_output(theirs, operand.name, x)[where]
        elif operand.origin == "parameter":
            expected = params[operand.name].detach().numpy()[where]
        elif operand.origin == "input":
            expected = x[where]
        else:
            continue
        assert operand.read.value == pytest.approx(float(expected), rel=1e-12, abs=1e-12), operand
    return [o.origin for o in step.operands]


def test_residual_gate_and_scale_values_name_their_operands() -> None:
    ours, theirs = combining_twin(14)
    rng = np.random.default_rng(14)
    x = rng.normal(size=(2, 3, 5, 6))
    for layer, op, origins in [("res", "add", ["layer", "input"]), ("gate", "mul", ["layer", "layer"]),
                               ("scaled", "sub", ["layer", "op"]), ("halve", "div", ["layer", "constant"])]:
        expected = torch_output(theirs, layer, x)
        for index in random_indices(expected.shape, rng, 3):
            t = trace(ours, x, layer, index)
            check_recompute(t, float(expected[index]))
            assert t.step.kind == "combination" and t.step.op == op
            assert check_operands(t.step, theirs, x) == origins
    t = trace(ours, x, "gate", (1, 2, 4, 3))  # the gate is one value per channel, broadcast over the map
    assert [o.read.index for o in t.step.operands] == [(1, 2, 0, 0), (1, 2, 4, 3)]
    assert t.step.operands[0].name == "gate.act" and t.step.operands[1].name == "res"
    scaled = trace(ours, x, "scaled", (1, 2, 4, 3)).step.operands[1]  # scale · conv, made in forward
    assert scaled.name == "scaled.mul" and scaled.step is not None  # its op row: trace follows it
    assert trace(ours, x, scaled.name, scaled.read.index).value == scaled.read.value
    assert check_operands(scaled.step, theirs, x) == ["parameter", "layer"]
    assert scaled.step.operands[0].name == "scaled.scale" and scaled.step.operands[0].read.index == (2, 0, 0)
    assert_close(scaled.step.recompute(), scaled.read.value)
    assert trace(ours, x, "halve", (0, 0, 0, 0)).step.operands[1].read.value == 2


def test_an_activation_after_an_addition_in_forward_shows_the_two_operands() -> None:
    ours, theirs = combining_twin(15)
    x = np.random.default_rng(15).normal(size=(1, 3, 5, 6))
    t = trace(ours, x, "relu", (0, 1, 2, 3))
    made = t.step.made
    assert made is not None and made.op == "add" and check_operands(made, theirs, x) == ["layer", "layer"]
    assert [o.name for o in made.operands] == ["scaled", "side"]
    assert_close(made.recompute(), t.step.read.value)
    assert trace(ours, x, "side", (0, 1, 2, 3)).then is None  # no made-in-code step where a layer made it
    text = str(t)
    assert "x = a + b (in the model's code, not a layer), where" in text
    assert f"b = layer side output[0, 1, 2, 3] = {made.operands[1].read.value:.4g}" in text
    d = json.loads(json.dumps(t.to_dict()))
    assert d["step"]["made"]["kind"] == "combination" and d["step"]["made"]["symbol"] == "+"


def test_str_of_a_layer_scale_shows_the_product_inside_the_difference() -> None:
    ours, _ = combining_twin(16)
    x = np.random.default_rng(16).normal(size=(1, 3, 5, 6))
    t = trace(ours, x, "scaled", (0, 2, 1, 1))
    a, b = t.step.operands
    text = str(t)
    assert f"a − b = {a.read.value:.4g} − {b.read.value:.4g} = {t.value:.4g}" in text
    assert "b = op scaled.mul output[0, 2, 1, 1]" in text
    assert "= a × b, where" in text and "a = parameter scaled.scale[2, 0, 0]" in text


def test_a_parameter_reshaped_in_forward_is_named_as_the_parameter() -> None:
    """``w.reshape(1, C, 1, 1)`` in ``forward`` (LeNet-5's subsampling, a buffer's view) moves
    values that do not depend on the input: the operand names the parameter's own cell, and
    the reshape's op row traces to it too."""
    def build(nn: Any, tensor: Callable) -> Any:
        class Affine(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv = nn.Conv2d(2, 3, 1)
                self.weight = nn.Parameter(tensor(np.array([0.5, -2.0, 3.0])))
                self.register_buffer("shift", tensor(np.array([[1.0, 2.0, 4.0]])))

            def forward(self, x: Any) -> Any:
                return self.conv(x) * self.weight.reshape(1, 3, 1, 1) + self.shift.permute(1, 0)[None, :, :, None]
        return Affine()

    cs.manual_seed(22)
    ours = build(cs.nn, cs.tensor).double()
    theirs = _copy_weights(ours, build(torch.nn, torch.tensor).double())
    x = np.random.default_rng(22).normal(size=(2, 2, 3, 4))
    t = trace(ours, x, "", (1, 2, 1, 3))
    assert t.value == pytest.approx(float(torch_output(theirs, "", x)[1, 2, 1, 3]), rel=1e-12)
    product, shift = t.step.operands
    assert (shift.origin, shift.name, shift.read.index, shift.read.value, shift.shape) == ("buffer", "shift", (0, 2),
                                                                                         4.0, (1, 3))
    weight = product.step.operands[1]
    assert (weight.origin, weight.name, weight.read.index, weight.read.value) == ("parameter", "weight", (2,), 3.0)
    assert "b = parameter weight[2] = 3" in str(t) and "b = buffer shift[0, 2] = 4" in str(t)
    moved = trace(ours, x, "reshape", (0, 1, 0, 0))  # the reshape's op row: a copy of the parameter
    assert (moved.value, moved.step.source.origin, moved.step.source.read.index) == (-2.0, "parameter", (1,))


def flattened(nn: Any) -> Any:
    """A flatten in ``forward`` of a layer's output (a classifier head's ``x.flatten(1)``)."""
    class Flattened(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.act = nn.Conv2d(1, 2, 3), nn.Tanh()

        def forward(self, x: Any) -> Any:
            return self.act(self.conv(x)).flatten(1)
    return Flattened()


def test_a_move_in_forward_of_a_layer_output_is_a_copy_of_that_layer() -> None:
    """The flatten's op row (and the model, whose output it is) copies the Tanh's value: it was
    traced as the Tanh's own step, reading the conv's output, as if the flatten were the Tanh."""
    cs.manual_seed(23)
    ours = flattened(cs.nn).double()
    theirs = _copy_weights(ours, flattened(torch.nn).double())
    x = np.random.default_rng(23).normal(size=(1, 1, 4, 4))
    for layer in ("reshape", ""):
        t = trace(ours, x, layer, (0, 5))
        assert (t.step.kind, t.step.op, t.step.read.index) == ("copy", "reshape", (0, 1, 0, 1))
        assert t.value == pytest.approx(float(torch_output(theirs, "", x)[0, 5]), rel=1e-12)
        assert t.step.read.value == pytest.approx(float(torch_output(theirs, "act", x)[0, 1, 0, 1]), rel=1e-12)


def test_a_trace_names_what_made_the_values_it_read() -> None:
    """``Trace.source``: the layer (and call), op row or model input whose output the step's
    reads index, for a layer, a block or an op row, so every trace can be followed back."""
    cs.manual_seed(24)
    ours = flattened(cs.nn).double()
    x = np.random.default_rng(24).normal(size=(1, 1, 4, 4))
    for layer, index, origin, name, cell in [("conv", (0, 1, 0, 1), "input", None, (0, 0, 0, 1)),
                                             ("act", (0, 1, 0, 1), "layer", "conv", (0, 1, 0, 1)),
                                             ("reshape", (0, 5), "layer", "act", (0, 1, 0, 1))]:
        t = trace(ours, x, layer, index)
        assert (t.source.origin, t.source.name, t.source.read.index) == (origin, name, cell), layer
        assert json.loads(json.dumps(t.to_dict()))["source"]["origin"] == origin
    pooled, _ = combining_twin(24)
    x = np.random.default_rng(25).normal(size=(1, 3, 5, 6))
    assert trace(pooled, x, "res", (0, 1, 2, 3)).source is None  # a sum: its operands name theirs
    relu = trace(pooled, x, "relu", (0, 1, 2, 3)).source  # reads the addition of Net.forward: an op row
    assert (relu.origin, relu.name) == ("op", "add") and trace(pooled, x, "add", (0, 1, 2, 3)).value == relu.read.value
    ours, _ = twin([L("Conv2d", 1, 1, 1), L("ReLU"), L("Conv2d", 1, 1, 1)])
    shared = cs.nn.Sequential(ours[0], ours[1], ours[0])  # the second conv call reads the ReLU
    t = trace(shared, np.ones((1, 1, 2, 2)), "0", (0, 0, 1, 1), call=1)
    assert (t.source.origin, t.source.name, t.source.call) == ("layer", "1", 0)
    again = trace(shared, np.ones((1, 1, 2, 2)), "1", (0, 0, 1, 1))
    assert (again.source.name, again.source.call) == ("0", 0)


def test_every_summary_row_traces_by_its_name_op_rows_included() -> None:
    """``summary`` rows an op of a module's own forward as ``path.op`` (``res.add``; a
    top-level op by its name): ``trace`` takes every row's name."""
    ours, theirs = combining_twin(18)
    x = np.random.default_rng(18).normal(size=(1, 3, 5, 6))
    rows = [row for row in cs.summary(ours, (3, 5, 6), dtype=np.float64).rows if row.output_shape]
    ops = {row.name for row in rows} - {path for path, _ in ours.named_modules()}
    assert ops == {"res.add", "gate.mul", "add"}
    for row in rows:
        index = tuple(n - 1 for n in row.output_shape)
        t = trace(ours, x, row.name, index)
        assert abs(t.recompute() - t.value) <= 1e-12 * max(1.0, abs(t.value)), row.name
    t = trace(ours, x, "add", (0, 2, 4, 5))  # relu(scaled + side), in Net.forward
    with torch.no_grad():
        xt = torch.from_numpy(x)
        want = (theirs.scaled(theirs.gate(theirs.res(xt))) + theirs.side(xt))[0, 2, 4, 5].item()
    assert t.layer_type == "add" and t.step.kind == "combination" and t.then.name == "ReLU"
    assert t.value == pytest.approx(want, rel=1e-12)
    assert [o.name for o in t.step.operands] == ["scaled", "side"]
    assert trace(ours, x, "res.add", (0, 1, 2, 3)).value == trace(ours, x, "res", (0, 1, 2, 3)).value


def test_an_operand_made_by_a_layers_second_call_is_named_as_summary_names_it() -> None:
    ours, theirs = branching_twin(5)  # forward: r = act(left(h)) + h, with h = act(stem(x))
    x = np.random.default_rng(5).normal(size=(1, 2, 9, 8))
    t = trace(ours, x, "add", (0, 2, 3, 4))
    left, h = t.step.operands
    assert (left.name, left.call, h.name, h.call) == ("act", 1, "act", 0)
    assert f"a = layer act#2 output[0, 2, 3, 4] = {left.read.value:.4g}" in str(t)
    assert trace(ours, x, "act#2", (0, 2, 3, 4)).value == left.read.value
    assert "act#2" in {row.name for row in cs.summary(ours, (2, 9, 8), dtype=np.float64).rows}


def test_op_rows_name_what_ran_when_the_op_did_not() -> None:
    ours, _ = combining_twin(19)
    x = np.zeros((1, 3, 5, 6))
    with pytest.raises(ValueError, match=r"no layer 'res.mul' in Net, and no op 'mul' ran in the forward of 'res' "
                                         r"itself \(ops that did: add\); did you mean res"):
        trace(ours, x, "res.mul", (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"no layer 'res.conv' in Net; did you mean"):  # no such op in the model
        trace(ours, x, "res.conv", (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"op 'res.add' ran 1 time\(s\); call 1 \(res.add#2\) does not exist"):
        trace(ours, x, "res.add#2", (0, 0, 0, 0))


def test_then_is_the_activation_only_when_it_is_the_values_one_reader() -> None:
    """``cat([h, -h])`` reads ``h`` twice: no one op comes "next" (the trace said ``→ neg``)."""
    class Both(cs.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = cs.nn.Conv2d(1, 2, 3)

        def forward(self, x: Any) -> Any:
            h = self.conv(x)
            return cs.cat([h, -h], 1)

    net, x = Both().double(), np.random.default_rng(22).normal(size=(1, 1, 5, 5))
    assert trace(net, x, "conv", (0, 1, 1, 1)).then is None
    relu, _ = twin([L("Conv2d", 1, 2, 3), L("ReLU")])
    assert trace(relu, x, "0", (0, 1, 1, 1)).then.name == "ReLU"


@pytest.mark.parametrize("dims, keepdim", [((2, 3), False), ((2, 3), True), (1, False), ((1, 3), True)])
def test_a_sum_over_dims_reads_every_value_along_them(dims: Any, keepdim: bool) -> None:
    """``x.mean(dims)`` runs as a sum and a division: both are op rows, each traced to torch."""
    def build(nn: Any) -> Any:
        class Pooled(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv = nn.Conv2d(2, 3, 3, padding=1)

            def forward(self, x: Any) -> Any:
                return self.conv(x).mean(dims, keepdim=keepdim)
        return Pooled()

    cs.manual_seed(20)
    ours = build(cs.nn).double()
    theirs = _copy_weights(ours, build(torch.nn).double())
    x = np.random.default_rng(20).normal(size=(2, 2, 4, 5))
    with torch.no_grad():
        conv = theirs.conv(torch.from_numpy(x))
        want = conv.sum(dims, keepdim=keepdim).numpy()
    rng = np.random.default_rng(21)
    for index in random_indices(want.shape, rng, 2):
        t = trace(ours, x, "sum", index)
        assert t.step.kind == "sum" and t.step.source.name == "conv" and t.layer_type == "sum"
        assert t.value == pytest.approx(float(want[index]), rel=1e-12, abs=1e-12)
        assert_close(t.recompute(), float(want[index]))
        summed = math.prod(conv.shape[d] for d in ((dims,) if isinstance(dims, int) else dims))
        assert len(t.step.reads) == summed and len({r.index for r in t.step.reads}) == summed
        assert_close(np.array([r.value for r in t.step.reads]), np.array([conv.numpy()[r.index] for r in t.step.reads]))
        mean = trace(ours, x, "div", index)
        assert mean.step.operands[0].name == "sum" and mean.step.operands[1].read.value == summed
        assert mean.value == pytest.approx(float(want[index]) / summed, rel=1e-12, abs=1e-12)
    text = str(trace(ours, x, "sum", (0,) * want.ndim))
    assert f"Σ {summed} values over dim(s) " in text and "reads" in text and "layer conv output" in text


def test_a_concatenation_names_the_layer_each_value_came_from() -> None:
    def build(nn: Any, cat: Callable) -> Any:
        class Branches(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.left, self.right = nn.Conv2d(2, 3, 1), nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Tanh())

            def forward(self, x: Any) -> Any:
                return cat([self.left(x), self.right(x), x], 1)
        return Branches()

    cs.manual_seed(17)
    ours = build(cs.nn, cs.cat).double()
    theirs = _copy_weights(ours, build(torch.nn, torch.cat).double())
    x = np.random.default_rng(17).normal(size=(1, 2, 4, 5))
    for channel, operand, origin, name, cell in [(1, 0, "layer", "left", (0, 1, 2, 3)),
                                                 (4, 1, "layer", "right.1", (0, 1, 2, 3)),
                                                 (6, 2, "input", None, (0, 1, 2, 3))]:
        t = trace(ours, x, "", (0, channel, 2, 3))
        source = t.step.source
        assert (t.step.operand, source.origin, source.name, t.step.read.index) == (operand, origin, name, cell)
        assert check_operands(type("One", (), {"operands": [source]}), theirs, x) == [origin]
        assert t.value == pytest.approx(float(torch_output(theirs, "", x)[0, channel, 2, 3]), rel=1e-12)
    assert "copy (cat) of input 1: layer right.1 output[0, 1, 2, 3] = " in str(trace(ours, x, "", (0, 4, 2, 3)))
    flat, _ = twin([L("Flatten")])
    assert trace(flat, x, "0", (0, 7)).step.source is None  # one input: the layer before it is the source


# --- the strongest path back ----------------------------------------------------------------------
def test_the_strongest_path_follows_the_largest_term_to_the_input() -> None:
    from convscope.trace.path import strongest_read

    spec = [L("Conv2d", 2, 4, 3, padding=1), L("BatchNorm2d", 4), L("ReLU"), L("MaxPool2d", 2),
            L("Conv2d", 4, 4, 3, padding=1, groups=2, padding_mode="reflect"), L("Tanh"),
            L("AvgPool2d", 2, ceil_mode=True), L("Flatten"), L("Linear", 16, 6), L("Sigmoid"), L("Linear", 6, 3)]
    ours, theirs = twin(spec, seed=3)
    x = np.random.default_rng(3).normal(size=(2, 2, 8, 8))
    path = trace(ours, x, "10", (1, 2)).path()
    assert [t.layer for t in path] == [str(i) for i in range(10, -1, -1)]
    for t, after in zip(path, [*path[1:], None], strict=True):
        assert t.value == pytest.approx(float(torch_output(theirs, t.layer, x)[t.index]), rel=1e-10, abs=1e-12)
        operand, cell = strongest_read(t)
        if isinstance(t.step, WeightedSum):  # a product of the followed cell is the largest in magnitude
            followed = max(abs(term.product) for term in t.step.terms if (term.read.source or term.read.index) == cell)
            assert all(abs(term.product) <= followed for term in t.step.terms)
        if isinstance(t.step, WindowMax):
            assert after.value == t.value  # the winner
        if after is None:
            assert operand.origin == "input"
        else:
            assert (operand.name, cell) == (after.layer, after.index)
    assert strongest_read(path[-1])[0].origin == "input"


def test_the_strongest_path_crosses_additions_and_never_follows_a_parameter() -> None:
    from convscope.trace.path import strongest_read

    ours, theirs = combining_twin(23)
    x = np.random.default_rng(23).normal(size=(1, 3, 5, 6))
    path = trace(ours, x, "halve", (0, 1, 2, 3)).path()
    names = [t.layer + (f"#{t.call + 1}" if t.call else "") for t in path]
    assert names[:3] == ["halve", "relu", "add"] and strongest_read(path[-1])[0].origin == "input"
    for t in path:
        if t.step.kind == "combination":
            live = [o for o in t.step.operands if o.origin in ("layer", "op", "input")]
            assert strongest_read(t)[0] is max(live, key=lambda o: abs(o.read.value))
    assert not any(name.endswith("scale") for name in names)
    text = path_text(path)
    assert text.splitlines()[1].startswith(f"  halve[0, 1, 2, 3] = {path[0].value:.4g}  (Halve) a / b; following a")
    assert text.splitlines()[-1].startswith("  ← model input x[0, ")


# --- the worked example and the dict ------------------------------------------------------------------
def test_str_prints_the_arithmetic() -> None:
    ours, theirs = twin([L("Conv2d", 2, 3, 3), L("ReLU")], seed=11)
    x = np.random.default_rng(11).normal(size=(1, 2, 4, 4))
    pre = torch_output(theirs, "0", x)
    index = next(i for i in np.ndindex(*pre.shape) if pre[i] > 0)
    t = trace(ours, x, "0", index)
    text = str(t)
    bias = float(ours[0].bias.numpy()[index[1]])
    value = float(pre[index])
    assert f"bias {bias:.4g} + Σ 18 products = {value:.4g} → ReLU → {value:.4g}" in text
    assert f"output[{', '.join(map(str, index))}] = {value:.4g}" in text
    assert "… 12 more products (all: `convscope trace --full`, or Trace.format(full=True)) …" in text
    assert text.count(" × w[") == 6
    full = t.format(full=True)
    assert full.count(" × w[") == 18 and "more products" not in full
    first = t.terms()[0]
    assert f"x[{', '.join(map(str, first.read.index))}] = {first.read.value:.4g} × w[" in text
    assert len(t.terms()) == 18 and t.then is not None and t.then_value == pytest.approx(value)
    negative = next(i for i in np.ndindex(*pre.shape) if pre[i] < 0)
    assert "→ ReLU → 0\n" in str(trace(ours, x, "0", negative))


def test_str_of_pools_and_batch_norm() -> None:
    ours, theirs = twin([L("BatchNorm2d", 2), L("MaxPool2d", 2), L("AvgPool2d", 2, divisor_override=3)], seed=12)
    x = np.random.default_rng(12).normal(size=(1, 2, 4, 4))
    bn = trace(ours, x, "0", (0, 1, 2, 3))
    module = ours[0]
    assert (f"(x {x[0, 1, 2, 3]:.4g} − mean {module.running_mean.numpy()[1]:.4g}) / √(var "
            f"{module.running_var.numpy()[1]:.4g} + eps 1e-05) · γ {module.weight.numpy()[1]:.4g}") in str(bn)
    pooled = torch_output(theirs, "1", x)
    mx = trace(ours, x, "1", (0, 0, 1, 1))
    assert f"max of 4 cells = {pooled[0, 0, 1, 1]:.4g}" in str(mx) and "◀ winner" in str(mx)
    avg = trace(ours, x, "2", (0, 0, 0, 0))
    assert f"/ 3 = {torch_output(theirs, '2', x)[0, 0, 0, 0]:.4g}" in str(avg) and "divisor_override=3" in str(avg)


def test_to_dict_round_trips_through_json_with_padding_and_infinities() -> None:
    ours, _ = twin([L("MaxPool2d", 3, 2, padding=1)])
    t = trace(ours, np.random.default_rng(13).normal(size=(1, 1, 5, 5)), "0", (0, 0, 0, 0))
    d = t.to_dict(influence=True)
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert d["step"]["kind"] == "max" and d["index"] == [0, 0, 0, 0]
    pads = [r for r in d["step"]["reads"] if r["padding"] == "-inf"]
    assert len(pads) == 5 and all(r["value"] is None for r in pads)
    assert d["influence"]["count"] == 4 and d["influence"]["receptive_box"] == [[0, 0], [0, 0], [0, 1], [0, 1]]
    assert Read(**{**d["step"]["reads"][4], "index": tuple(d["step"]["reads"][4]["index"])}) == t.step.reads[4]


# --- errors and the command line ------------------------------------------------------------------------
def test_errors_name_the_layer_the_rule_and_the_numbers() -> None:
    ours, _ = twin([L("Conv2d", 1, 2, 3), L("BatchNorm2d", 2)])
    x = np.zeros((1, 1, 5, 5))
    with pytest.raises(ValueError, match=r"no layer 'conv9' in Sequential; layers: 0, 1"):
        trace(ours, x, "conv9", (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"shape \(1, 2, 3, 3\) needs a full index of 4 ints .* got 3"):
        trace(ours, x, "0", (0, 1, 1))
    with pytest.raises(ValueError, match=r"index 3 is out of range for dim 2 of size 3"):
        trace(ours, x, "0", (0, 1, 3, 0))
    with pytest.raises(ValueError, match="floating-point"):
        trace(ours, np.zeros((1, 1, 5, 5), np.int64), "0", (0, 0, 0, 0))
    ours.train()
    with pytest.raises(ValueError, match=r"training mode\); trace the model in evaluation mode"):
        trace(ours, np.random.default_rng(0).normal(size=(2, 1, 5, 5)), "1", (0, 0, 0, 0))


def test_the_whole_model_by_its_summary_name_and_a_constant_layer() -> None:
    """``summary`` rows a bare layer by its class (``Conv2d``): ``trace`` takes that name; a
    layer whose output is a constant (an ONNX ``Constant``) says so."""
    conv = cs.nn.Conv2d(1, 2, 3).double()
    x = np.random.default_rng(24).normal(size=(1, 1, 5, 5))
    assert [row.name for row in cs.summary(conv, (1, 5, 5), dtype=np.float64).rows] == ["Conv2d"]
    assert trace(conv, x, "Conv2d", (0, 1, 1, 1)).value == trace(conv, x, "", (0, 1, 1, 1)).value

    class Constant(cs.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("value", cs.tensor(np.ones((1, 1, 5, 5))))

        def forward(self, x: Any) -> Any:
            return self.value

    net = cs.nn.Sequential(Constant(), cs.nn.Conv2d(1, 1, 1)).double()
    with pytest.raises(ValueError, match=r"layer '0' outputs a constant: its value does not depend on the model"):
        trace(net, x, "0", (0, 0, 0, 0))


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="convscope")
    add_cli(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_traces_the_pretrained_digits_model(capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("convscope.pretrained")
    from convscope.data import digits
    from convscope.pretrained import pretrained

    args = _cli(["trace", "digits", "--layer", "2", "--index", "0,5,3,4", "--digit", "7", "--json", "--influence"])
    assert args.run(args) == 0
    d = json.loads(capsys.readouterr().out)
    expected = trace(pretrained("digits"), digits("test")[0][7:8], "2", (0, 5, 3, 4))
    assert d["value"] == expected.value and abs(d["recomputed"] - d["value"]) < 1e-5
    assert d["step"]["kind"] == "weighted_sum" and len(d["step"]["terms"]) == 32 * 9
    assert d["then"]["name"] == "ReLU" and d["influence"]["receptive_box"] == [[0, 0], [0, 0], [1, 5], [2, 6]]
    args = _cli(["trace", "digits", "--layer", "4", "--index", "0,3,1,1", "--digit", "7"])
    assert args.run(args) == 0
    assert "max of 4 cells" in capsys.readouterr().out
    args = _cli(["trace", "digits", "--layer", "8", "--index", "0,2", "--digit", "7", "--path"])
    assert args.run(args) == 0
    lines = capsys.readouterr().out.splitlines()
    path = trace(pretrained("digits"), digits("test")[0][7:8], "8", (0, 2)).path()
    assert [line.split("[")[0].strip() for line in lines[2:-1]] == [t.layer for t in path] == list("876543210")
    assert lines[-1].startswith("  ← model input x[0, 0, ")
    args = _cli(["trace", "digits", "--layer", "8", "--index", "0,2", "--digit", "7", "--path", "--json"])
    assert args.run(args) == 0
    hops = json.loads(capsys.readouterr().out)["path"]
    assert [(h["layer"], h["index"], h["value"]) for h in hops] == [(t.layer, list(t.index), t.value) for t in path[1:]]


def test_cli_refuses_bad_input_with_a_message(tmp_path: Any) -> None:
    for argv, match in [(["digits", "--layer", "nope", "--index", "0"], "no layer 'nope'"),
                        (["digits", "--layer", "0", "--index", "0,0,0,0", "--digit", "9999"], "out of range"),
                        (["nosuchnet", "--layer", "0", "--index", "0"], "unknown zoo model")]:
        args = _cli(["trace", *argv])
        with pytest.raises(ValueError, match=match):
            args.run(args)
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 8), np.float32))
    args = _cli(["trace", "digits", "--layer", "0", "--index", "0,0,0,0", "--input", str(tmp_path / "x.npy")])
    assert args.run(args) == 0
    np.savez(tmp_path / "x.npz", image=np.zeros((1, 8, 8), np.float32))  # .npz, as export-xlsx takes it
    args = _cli(["trace", "digits", "--layer", "0", "--index", "0,0,0,0", "--input", str(tmp_path / "x.npz")])
    assert args.run(args) == 0
    (tmp_path / "text.npy").write_text("not an array\n")
    args = _cli(["trace", "digits", "--layer", "0", "--index", "0,0,0,0", "--input", str(tmp_path / "text.npy")])
    with pytest.raises(ValueError, match="text.npy: not a .npy file"):
        args.run(args)
    with pytest.raises(SystemExit):
        _cli(["trace", "digits", "--layer", "0", "--index", "a,b"])
