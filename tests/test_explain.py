"""``convscope explain``: every topic's claims, checked against numbers computed here
independently — with torch, with closed-form formulas, or with published figures — plus the
rendering, the JSON form, the CLI and its option errors, and the docs page's outputs.

Run ``python tests/test_explain.py --update-docs`` to regenerate the outputs in docs/explain.md.
"""

from __future__ import annotations

import argparse
import doctest
import importlib
import json
import math
import re
import shlex
import sys
from contextlib import redirect_stdout
from fractions import Fraction
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import torch

import convscope as cs
from convscope.explain import TOPICS, Explanation, SeparatePerMapConv2d, SharedAcrossMapsConv2d, explain
from convscope.explain.cli import add_cli
from convscope.explain.stack import parse_layers
from torch_ref import assert_close

DOCS = Path(__file__).resolve().parents[1] / "docs" / "explain.md"


def _run_cli(argv: list[str]) -> tuple[int, str]:
    """``convscope explain ...`` through the registered sub-command; returns (exit code, stdout)."""
    parser = argparse.ArgumentParser(prog="convscope")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out = StringIO()
    with redirect_stdout(out):
        code = args.run(args)
    return code, out.getvalue()


def _torch_macs(conv: torch.nn.Conv2d, output: torch.Tensor) -> int:
    """MACs by the definition: output elements × (C_in / groups) × kernel area."""
    return output[0].numel() * conv.weight.shape[1] * math.prod(conv.kernel_size)


def _torch_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- stack -------------------------------------------------------------------------------------------
def _torch_stack(text: str, in_maps: int) -> list[torch.nn.Module]:
    layers = []
    for spec in parse_layers(text):
        if spec.kind == "conv":
            layers.append(torch.nn.Conv2d(in_maps, spec.maps, spec.kernel, spec.stride or 1, spec.padding,
                                          spec.dilation, spec.groups))
            in_maps = spec.maps
        elif spec.kind == "relu":
            layers.append(torch.nn.ReLU())
        else:
            pool = torch.nn.MaxPool2d if spec.kind == "maxpool" else torch.nn.AvgPool2d
            layers.append(pool(spec.kernel, spec.stride, spec.padding))
    return layers


@pytest.mark.parametrize("shape, text", [
    ("1x28x28", "conv 8 3x3 p1, relu, conv 16 5x5"),
    ("3x32x30", "conv 12 3x3 p1 s2, relu, maxpool 2x2, conv 8 5x5 p2 g4 d2, avgpool 3x3 s1 p1, conv 6 1x1"),
    ("2x17x19", "conv 6 3x5 p1 g2, maxpool 3x3 s2, conv 9 3x3 g3, relu"),
])
def test_stack_rows_match_torch_layers(shape: str, text: str) -> None:
    """Every layer's maps, size, kernel shape, parameters (with and without bias) and MACs equal
    those of the same layers built and run in torch."""
    dims = tuple(int(v) for v in shape.split("x"))
    e = explain("stack", input=shape, layers=text)
    x = torch.zeros(1, *dims)
    for row, layer in zip(e.facts["layers"], _torch_stack(text, dims[0]), strict=True):
        y = layer(x)
        assert row["output_shape"] == tuple(y.shape[1:]) and row["maps"] == y.shape[1]
        assert row["params"] == _torch_params(layer)
        if isinstance(layer, torch.nn.Conv2d):
            assert row["kernel_shape"] == tuple(layer.weight.shape)
            assert row["params_without_bias"] == layer.weight.numel()
            assert row["macs"] == _torch_macs(layer, y)
        else:
            assert row["kernel_shape"] is None and row["macs"] == 0
        x = y
    assert e.ok, e.failed


def test_stack_second_layer_filters_span_all_first_layer_maps() -> None:
    e = explain("stack", input="1x12x10", layers="conv 8 3x3 p1, relu, conv 16 5x5")
    first, second = e.facts["demonstrations"]
    assert (first["layer"], first["source"], second["layer"], second["source"]) == (1, 0, 3, 1)
    assert second["kernel_shape"] == (16, 8, 5, 5)
    assert second["perturbed_map"] == 7 and second["changed_maps"] == list(range(16))
    assert e.facts["layers"][2]["params"] == 16 * 8 * 5 * 5 + 16 and e.facts["layers"][2]["params_without_bias"] == 3200
    # the grouped contrast: groups=2 → only the 8 maps of the second group read map 7
    g = e.facts["grouped_contrast"]
    assert (g["groups"], g["kernel_shape"], g["params"]) == (2, (16, 4, 5, 5), 16 * 4 * 25 + 16)
    assert g["changed_maps"] == list(range(8, 16)) and g["group"] == 2
    assert e.ok


def test_stack_grouped_layer_changes_only_its_group() -> None:
    e = explain("stack", input="1x16x16", layers="conv 6 3x3, maxpool 2x2, conv 9 3x3 g3")
    demo = e.facts["demonstrations"][1]
    # map 5 of 6 is in the last of 3 groups (2 maps each) → output maps 6, 7, 8 of 9
    assert demo["groups"] == 3 and demo["changed_maps"] == [6, 7, 8]
    assert e.facts["grouped_contrast"] is None and e.ok


def test_stack_without_shared_divisor_says_why_no_contrast() -> None:
    e = explain("stack", input="1x10x10", layers="conv 3 3x3, conv 4 3x3")
    assert e.facts["grouped_contrast"]["groups"] is None
    assert "share no divisor" in e.render()


@pytest.mark.parametrize("layers, message", [
    ("conv 8", r"layer 1 \('conv 8'\): expected a kernel size like 3x3"),
    ("conv x 3x3", r"expected the number of filters after 'conv'"),
    ("conv 8 3x3 q1", r"unknown option 'q1'; conv takes pN, sN, dN, gN"),
    ("conv 8 3x3, pool 2x2", r"layer 2 \('pool 2x2'\): unknown layer 'pool'"),
    ("conv 8 3x3,, relu", r"layer 2 \(''\) is empty"),
    ("relu 3", r"unknown option '3'; relu takes no options"),
    ("conv 8 30x30", r"layer 1 \('conv 8 30x30'\) on input 1×28×28: .*spans 30 > padded input 28"),
    ("conv 8 3x3, conv 4 3x3 g3", r"layer 2 .*in_channels \(8\) must be divisible by groups \(3\)"),
    ("conv 8 3x3 s0", r"layer 1 \('conv 8 3x3 s0'\): stride must be at least 1, got 's0'"),
    ("maxpool 2x2 s0", r"layer 1 \('maxpool 2x2 s0'\): stride must be at least 1, got 's0'"),
    ("conv 8 3x3 d0", r"dilation must be at least 1, got 'd0'"),
    ("conv 8 3x3 p1 p2", r"layer 1 \('conv 8 3x3 p1 p2'\): padding given twice \('p2' after p1\)"),
])
def test_stack_bad_layers_are_one_line_value_errors(layers: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        explain("stack", layers=layers)
    assert "\n" not in str(info.value)


# --- the three conventions ---------------------------------------------------------------------------
def test_conventions_counts_on_the_seed_numbers() -> None:
    """k1 = 8, k2 = 16 on one greyscale map: (1) 128 maps and 8·9 + 16·25 = 472 weights, (2.1) 16 maps
    and 472 weights, (2.2) 16 maps and 8·9 + 16·8·25 = 3,272 weights (+ 8 + 16 biases)."""
    e = explain("conventions", k1=8, k2=16, input="1x12x10")
    c = e.facts["conventions"]
    assert (c["1"]["maps"], c["2.1"]["maps"], c["2.2"]["maps"]) == (128, 16, 16)
    first = e.facts["first_weights"]
    assert [first + c[k]["weights"] for k in ("1", "2.1", "2.2")] == [472, 472, 3272]
    real = _torch_params(torch.nn.Conv2d(1, 8, 3, padding=1)) + _torch_params(torch.nn.Conv2d(8, 16, 5))
    assert e.facts["first_params"] + c["2.2"]["params"] == real == 3296
    assert c["1"]["output_shape"] == (128, 8, 6)
    assert e.ok, e.failed


@pytest.mark.parametrize("k1, k2, shape", [(3, 5, "2x9x7"), (1, 1, "1x5x5"), (6, 4, "3x11x8")])
def test_conventions_claims_hold_for_other_sizes(k1: int, k2: int, shape: str) -> None:
    e = explain("conventions", k1=k1, k2=k2, input=shape)
    c = e.facts["conventions"]
    assert c["1"]["maps"] == k1 * k2 and c["2.1"]["maps"] == k2 == c["2.2"]["maps"]
    assert c["2.1"]["equals_conv_of_map_sum_max_diff"] < 1e-12 and c["2.2"]["equals_3d_kernel_max_diff"] < 1e-12
    assert e.ok, e.failed


def test_conventions_checks_a_subset_of_pairs_for_wide_layers_and_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    e = explain("conventions", k1=32, k2=64, input="1x7x7")
    assert e.facts["conventions"]["1"]["pairs_checked"] == 256 and e.ok
    assert "256 of the 32·64 pairs, evenly spaced" in e.render()
    # a convention-1 layer that orders its maps filter-major (f·k1 + i) is caught
    real = SeparatePerMapConv2d.forward

    def filter_major(self: SeparatePerMapConv2d, x: cs.Tensor) -> cs.Tensor:
        y = real(self, x)
        n, _, h, w = y.shape
        return y.reshape(n, self.in_maps, self.filters, h, w).permute(0, 2, 1, 3, 4).reshape(n, -1, h, w)

    monkeypatch.setattr(SeparatePerMapConv2d, "forward", filter_major)
    e = explain("conventions", k1=3, k2=4)
    assert e.failed == ["1: map i·k2 + f is filter f on map i alone"]


def _torch_separate(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Convention 1 the slow, obvious way: filter f on map i, for every (i, f), in that order."""
    maps = [torch.nn.functional.conv2d(x[:, i:i + 1], w[f:f + 1], b[f:f + 1], padding=1)
            for i in range(x.shape[1]) for f in range(w.shape[0])]
    return torch.cat(maps, dim=1)


def _torch_shared(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Convention 2.1 the obvious way: each filter on the sum of the input maps."""
    return torch.nn.functional.conv2d(x.sum(1, keepdim=True), w, b, padding=1)


def _torch_full(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Convention 2.2: torch's own conv2d."""
    return torch.nn.functional.conv2d(x, w, b, padding=1)


@pytest.mark.parametrize("layer_class, reference", [(SeparatePerMapConv2d, _torch_separate),
                                                     (SharedAcrossMapsConv2d, _torch_shared),
                                                     (cs.nn.Conv2d, _torch_full)])
def test_convention_layers_forward_and_backward_match_torch(layer_class: type, reference: object) -> None:
    rng = np.random.default_rng(3)
    layer = layer_class(4, 3, 3, padding=1, dtype=np.float64)
    x = rng.standard_normal((2, 4, 7, 6))
    upstream = rng.standard_normal(layer(cs.tensor(x)).shape)
    xc = cs.tensor(x, requires_grad=True)
    (layer(xc) * cs.tensor(upstream)).sum().backward()
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(layer.weight.numpy(), requires_grad=True)
    bt = torch.tensor(layer.bias.numpy(), requires_grad=True)
    yt = reference(xt, wt, bt)
    (yt * torch.from_numpy(upstream)).sum().backward()
    assert_close(layer(xc).numpy(), yt.detach().numpy())
    assert_close(xc.grad, xt.grad.numpy(), what="input grad")
    assert_close(layer.weight.grad, wt.grad.numpy(), what="weight grad")
    assert_close(layer.bias.grad, bt.grad.numpy(), what="bias grad")


@pytest.mark.parametrize("make", [lambda: SeparatePerMapConv2d(3, 2, 3), lambda: SharedAcrossMapsConv2d(3, 2, 3),
                                  lambda: cs.nn.Conv2d(3, 2, 3)])
def test_each_convention_trains(make: object) -> None:
    """A few SGD steps lower the loss of each convention layer on a fixed regression target."""
    cs.manual_seed(0)
    layer = make()
    rng = np.random.default_rng(0)
    x = cs.tensor(rng.standard_normal((8, 3, 6, 6)).astype(np.float32))
    target = cs.tensor(rng.standard_normal(layer(x).shape).astype(np.float32))
    opt = cs.optim.SGD(layer.parameters(), lr=0.05)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = cs.functional.mse_loss(layer(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
    assert {n for n, _ in layer.named_parameters()} == {"weight", "bias"}


def test_convention_layers_parameter_counts_and_repr() -> None:
    one, shared = SeparatePerMapConv2d(8, 16, 5), SharedAcrossMapsConv2d(8, 16, 5, bias=False)
    assert sum(p.numel() for p in one.parameters()) == 16 * 25 + 16
    assert sum(p.numel() for p in shared.parameters()) == 16 * 25
    assert one(cs.Tensor.meta((1, 8, 12, 10))).shape == (1, 128, 8, 6)
    assert "bias=False" in repr(shared) and "SeparatePerMapConv2d(8, 16" in repr(one)
    with pytest.raises(cs.ShapeError, match="filters must be positive"):
        SharedAcrossMapsConv2d(8, 0, 5)


# --- output size -------------------------------------------------------------------------------------
GRID = [(n, k, p, s, d) for n in (5, 10, 13) for k in (1, 2, 3, 4) for p in (0, 1, 2) for s in (1, 2, 3)
        for d in (1, 2) if d * (k - 1) + 1 <= n + 2 * p]


def test_output_size_agrees_with_torch_on_a_grid() -> None:
    """Floor = torch conv1d; ceil (with the drop rule) = torch max_pool1d(ceil_mode=True) where
    torch allows the padding; the never-visited pixels = torch's zero input gradient."""
    for n, k, p, s, d in GRID:
        f = explain("output-size", n=n, k=k, p=p, s=s, d=d).facts
        x = torch.ones(1, 1, n, requires_grad=True)
        y = torch.nn.functional.conv1d(x, torch.ones(1, 1, k), stride=s, padding=p, dilation=d)
        y.sum().backward()
        assert f["floor_out"] == y.shape[-1], (n, k, p, s, d)
        assert f["floor_windows"]["unvisited_pixels"] == torch.nonzero(x.grad[0, 0] == 0).flatten().tolist()
        if p <= k // 2:
            for ceil in (False, True):
                pooled = torch.nn.functional.max_pool1d(x.detach(), k, s, p, d, ceil_mode=ceil)
                assert f["ceil_out" if ceil else "floor_out"] == pooled.shape[-1], (n, k, p, s, d, ceil)
        else:
            assert f["engine"]["pool_refused"] is not None
            with pytest.raises(RuntimeError):
                torch.nn.functional.max_pool1d(x.detach(), k, s, p, d)


def test_output_size_non_integer_case_names_the_unvisited_pixels() -> None:
    """N = 10, K = 3, S = 2: (10 − 3)/2 = 3.5 → floor 4 windows at 0, 2, 4, 6; pixel 9 is never read.
    Ceil mode gives 5 (the fifth window starts at 8 < N + P = 10, so it is kept)."""
    e = explain("output-size", n=10, k=3, p=0, s=2, d=1)
    f = e.facts
    assert f["quotient"] == Fraction(7, 2) and not f["integer"]
    assert (f["floor_out"], f["ceil_out"], f["ceil_dropped"]) == (4, 5, False)
    assert f["floor_windows"]["starts"] == [0, 2, 4, 6] and f["floor_windows"]["unvisited_tail"] == [9]
    text = e.render()
    assert "7/2 = 3.5 — not an integer" in text and "Never visited: input pixel 9" in text
    assert e.ok


def test_output_size_ceil_drop_rule() -> None:
    """N = 5, K = 2, P = 1, S = 2 in ceil mode: ceil(4/2) + 1 = 3 — exact, nothing to drop; N = 6, K = 1,
    P = 0, S = 5: ceil(5/5) + 1 = 2 and the second window starts at 5 < 6, kept; N = 12, K = 1, S = 3:
    ceil(11/3) + 1 = 5, but the fifth window would start at 12 ≥ N + P = 12 → dropped: 4."""
    assert explain("output-size", n=5, k=2, p=1, s=2, ceil=True).facts["out"] == 3
    assert explain("output-size", n=6, k=1, p=0, s=5, ceil=True).facts["out"] == 2
    f = explain("output-size", n=12, k=1, p=0, s=3, ceil=True).facts
    assert (f["ceil_unchecked"], f["ceil_dropped"], f["out"]) == (5, True, 4)


@pytest.mark.parametrize("options, message", [
    ({"n": 4, "k": 7}, r"the kernel spans D·\(K − 1\) \+ 1 = 7 cells but the padded input has N \+ 2P = 4"),
    ({"p": -1}, r"--p must be a non-negative integer, got -1"),
    ({"s": 0}, r"--s must be a positive integer, got 0"),
])
def test_output_size_bad_options(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        explain("output-size", **options)


# --- 1×1 convolutions --------------------------------------------------------------------------------
def test_pointwise_googlenet_reduce_numbers_match_torch() -> None:
    """Inception 3a's 5×5 branch (192 maps of 28×28 → 1×1 reduce to 16 → 5×5 to 32) against the
    direct 5×5 conv, counted on torch's own layers and outputs."""
    e = explain("1x1", cin=192, cout=16, size="28x28", conv_k=5, conv_out=32)
    x = torch.zeros(1, 192, 28, 28)
    direct = torch.nn.Conv2d(192, 32, 5, padding=2)
    reduce, conv = torch.nn.Conv2d(192, 16, 1), torch.nn.Conv2d(16, 32, 5, padding=2)
    h = reduce(x)
    d, r = e.facts["direct"], e.facts["reduced"]
    assert d["macs"] == _torch_macs(direct, direct(x)) == 120_422_400
    assert r["macs"] == _torch_macs(reduce, h) + _torch_macs(conv, conv(h)) == 12_443_648
    assert d["params"] == _torch_params(direct) and r["params"] == _torch_params(reduce) + _torch_params(conv)
    assert e.facts["macs_ratio"] == Fraction(12_443_648, 120_422_400)
    assert e.ok, e.failed


def test_pointwise_mixes_and_is_not_a_scaling() -> None:
    f = explain("1x1", cin=5, cout=3, size="4x4").facts["mixing"]
    assert f["per_pixel_linear_max_diff"] < 1e-12 and f["maps_changed_by_last_input_map"] == 3
    assert f["best_single_map_residual"] > 0.05          # no output map is a·(one input map) + b
    assert f["c_in_1_residual"] < 1e-6 and f["c_in_1_scaling_max_diff"] < 1e-12
    ex = f["example"]
    assert ex["by_hand"] == pytest.approx(ex["engine"], abs=1e-12)
    assert f["value_shape"] == (4, 5, 4, 4)               # 16 pixels per map → a batch of 4 for 64 points


def test_pointwise_with_one_input_map_is_a_scaling_and_says_so() -> None:
    e = explain("1x1", cin=1, cout=4, size="300x300", conv_k=3, conv_out=8)
    assert e.facts["mixing"]["reduced"] and e.facts["mixing"]["value_shape"][2:] == (16, 16)
    assert not any("C_in > 1" in claim for claim in e.claims)
    assert "Your C_in is 1" in e.render() and "MACs more" in e.render()
    assert e.ok


# --- quadratic cost ----------------------------------------------------------------------------------
def test_quadratic_second_layer_macs_match_torch_and_scale_by_c_squared() -> None:
    e = explain("quadratic", k1=4, k2=6, input="2x15x13", scales="1,2,3")
    base = None
    for row in e.facts["rows"]:
        c = row["c"]
        first = torch.nn.Conv2d(2, 4 * c, 3, padding=1)
        second = torch.nn.Conv2d(4 * c, 6 * c, 5)
        h = first(torch.zeros(1, 2, 15, 13))
        macs = _torch_macs(second, second(h))
        assert row["second_macs"] == macs and row["first_macs"] == _torch_macs(first, h)
        base = base or macs
        assert macs == c * c * base
    assert e.ok


def test_quadratic_large_scales_are_instant_and_exact() -> None:
    e = explain("quadratic", k1=64, k2=128, input="3x224x224", scales="1,8,32")
    assert [r["second_ratio"] for r in e.facts["rows"]] == [1, 64, 1024]
    assert e.facts["rows"][-1]["second_macs"] == 128 * 32 * 220 * 220 * 64 * 32 * 25


@pytest.mark.parametrize("options, message", [
    ({"scales": "1,0"}, r"--scales expects positive integers like 1,2,4, got '1,0'"),
    ({"scales": "two"}, r"--scales expects positive integers"),
    ({"input": "1x4x4"}, r"needs an input of at least 5×5, got 4×4"),
    ({"input": "28"}, r"--input expects 2 or 3 positive sizes like 1x28x28, got '28'"),
])
def test_quadratic_bad_options(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        explain("quadratic", **options)


# --- pooling -----------------------------------------------------------------------------------------
def _torch_lrn_reach(maps: int, size: int, shifted: int) -> list[int]:
    """The maps torch's LocalResponseNorm changes when one input map shifts (ground truth for the
    channel window, computed by torch)."""
    x = torch.randn(1, maps, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lrn = torch.nn.LocalResponseNorm(size, 1e-4, 0.75, 2.0)
    y = x.clone()
    y[:, shifted] += 5
    return torch.nonzero((lrn(x) != lrn(y)).flatten(2).any(-1)[0]).flatten().tolist()


@pytest.mark.parametrize("maps, lrn_size, group, shifted", [(6, 3, 2, 3), (8, 4, 4, 0), (5, 5, 1, 4)])
def test_pooling_per_map_and_cross_channel_reach(maps: int, lrn_size: int, group: int, shifted: int) -> None:
    e = explain("pooling", maps=maps, size="5x7", kernel=2, group=group, lrn_size=lrn_size, map=shifted)
    for p in e.facts["pools"]:
        assert p["equals_each_map_alone"] and p["changed_maps"] == [shifted]
        assert p["output_shape"] == (maps, 2, 3)
    maxout, lrn, conv = e.facts["across"]
    assert maxout["output_shape"][0] == maps // group and maxout["changed_maps"] == [shifted // group]
    assert lrn["changed_maps"] == _torch_lrn_reach(maps, lrn_size, shifted)
    assert conv["changed_maps"] == list(range(maps)) and conv["params"] == maps * maps + maps
    assert e.ok, e.failed


def test_pooling_bad_options() -> None:
    with pytest.raises(ValueError, match="--maps divisible by --group, got 6 maps in groups of 4"):
        explain("pooling", group=4)
    with pytest.raises(ValueError, match=r"--map must lie in 0 … 5, got 6"):
        explain("pooling", map=6)
    with pytest.raises(ValueError, match="explain pooling: .*kernel"):
        explain("pooling", kernel=9)


# --- conv3d ------------------------------------------------------------------------------------------
def test_conv3d_default_stack_shapes_and_counts_match_torch() -> None:
    """1337 maps of 42×314, kernel 3×4×5: torch on meta tensors agrees on every shape and count."""
    e = explain("conv3d")
    c3, c2 = e.facts["conv3d"], e.facts["conv2d"]
    meta = torch.empty(1, 1, 1337, 42, 314, device="meta")
    conv3 = torch.nn.Conv3d(1, 1, (3, 4, 5), device="meta")
    conv2 = torch.nn.Conv2d(1337, 1, (4, 5), device="meta")
    assert c3["output_shape"] == tuple(conv3(meta).shape[1:]) == (1, 1335, 39, 310)
    assert c3["params"] == _torch_params(conv3) == 61
    assert c3["macs"] == 1335 * 39 * 310 * 60
    assert c2["weight_shape"] == (1, 1337, 4, 5) and c2["params"] == _torch_params(conv2) == 26_741
    assert c2["output_shape"] == tuple(conv2(meta[:, 0]).shape[1:]) == (1, 39, 310)
    check = e.facts["check"]
    assert e.facts["reduced"] and check["value_shape"] == (1, 1, 10, 11, 12)
    assert check["checked"] == check["positions"] == 512 and check["max_diff"] < 1e-12
    assert "reduced 10×11×12 volume" in e.render() and e.ok


def test_conv3d_small_volume_full_size_and_random_subset() -> None:
    e = explain("conv3d", maps=9, height=8, width=10, kernel="3", out_channels=2, sample=50)
    check = e.facts["check"]
    assert not e.facts["reduced"] and check["value_shape"] == (1, 1, 9, 8, 10)
    assert check["positions"] == 7 * 6 * 8 and check["checked"] == 50
    assert len(set(check["order"])) == len(check["order"])
    assert "a random subset of 50 of the 336" in e.render() and e.ok


def test_conv3d_shuffled_check_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the engine's conv3d were wrong at one position, the position-by-position check says so."""
    from convscope.explain import conv3d as topic

    real = topic.F.conv3d

    def off_by_one_cell(*args: object, **kwargs: object) -> cs.Tensor:
        y = real(*args, **kwargs)
        if y.data is not None and y.ndim == 5 and y.shape[1] == 1 and y.shape[2] > 1:
            y.data[0, 0, 1, 1, 1] += 1e-6
        return y

    monkeypatch.setattr(topic.F, "conv3d", off_by_one_cell)
    e = explain("conv3d", maps=6, height=6, width=6, kernel="3")
    assert not e.facts["check"]["equal"] and not e.ok
    assert "FAILED" in e.render()


# --- where ReLU goes ---------------------------------------------------------------------------------
def test_relu_placement_claims_checked_with_torch() -> None:
    e = explain("relu")
    s, c = e.facts["sum"], e.facts["commute"]
    ex = s["example"]
    parts = ex["contributions"]
    assert ex["sum_then_relu"] == pytest.approx(max(0.0, s["bias"] + sum(parts)), abs=1e-12)
    assert ex["relu_then_sum"] == pytest.approx(s["bias"] + sum(max(0.0, v) for v in parts), abs=1e-12)
    assert ex["engine"] == pytest.approx(ex["sum_then_relu"], abs=1e-12) and s["differing"] > 0
    for result in c["monotone"].values():
        assert result["differing"] == 0 and result["max_diff"] == 0
    # the counterexamples, re-checked by torch
    window = torch.tensor(c["gelu_max"]["first"]["values"], dtype=torch.float64)
    gelu = torch.nn.functional.gelu
    assert gelu(window).max() != gelu(window.max())
    assert gelu(window.max()).item() == pytest.approx(c["gelu_max"]["first"]["pool_then_f"], abs=1e-12)
    window = torch.tensor(c["relu_avg"]["first"]["values"], dtype=torch.float64)
    assert torch.relu(window).mean() != torch.relu(window.mean())
    assert c["relu_avg"]["first"]["f_then_pool"] == pytest.approx(torch.relu(window).mean().item(), abs=1e-12)
    bn = e.facts["bn"]
    assert c["gelu_min_at"] == pytest.approx(-0.7518, abs=1e-3) and c["gelu_min"] == pytest.approx(-0.17, abs=1e-3)
    assert bn["fold_max_diff"] < 1e-12 and bn["order_max_diff"] > 1e-3 and bn["relu_then_bn_min"] < 0
    assert e.ok, e.failed


@pytest.mark.parametrize("pool", [5, 8])
def test_relu_placement_finds_the_gelu_counterexample_for_large_pools_too(pool: int) -> None:
    """A P×P window of random values nearly always holds a positive one for P ≥ 5, where GELU is
    monotone; the counterexample must still be found (re-checked by torch), every claim hold."""
    e = explain("relu", pool=pool)
    first = e.facts["commute"]["gelu_max"]["first"]
    window = torch.tensor(first["values"], dtype=torch.float64)
    gelu = torch.nn.functional.gelu
    assert len(first["values"]) == pool * pool and gelu(window).max() != gelu(window.max())
    assert gelu(window.max()).item() == pytest.approx(first["pool_then_f"], abs=1e-12)
    assert e.ok, e.failed


def test_relu_placement_refuses_a_1x1_pool() -> None:
    """Pooling 1×1 windows is the identity: no counterexample can exist, so the claims cannot hold."""
    with pytest.raises(ValueError, match=r"^explain relu: --pool 1 pools 1×1 windows, which is the identity"):
        explain("relu", pool=1)


def test_batch_norm_folding_matches_torch() -> None:
    """The folded conv equals torch's conv → BatchNorm2d (eval) on the same weights and statistics,
    and its weight and bias equal torch's own conv-BN fusion utility."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from convscope.explain.relu_placement import conv_bn_layers, fold

    conv, bn = conv_bn_layers(3, 3, np.random.default_rng(2))
    tconv, tbn = torch.nn.Conv2d(3, 4, 3, padding=1).double(), torch.nn.BatchNorm2d(4).double()
    tconv.load_state_dict({k: torch.from_numpy(v) for k, v in conv.state_dict().items()})
    tbn.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in bn.state_dict().items()})
    tconv.eval(), tbn.eval()
    _, w, b = fold(conv, bn)
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 5))
    with torch.no_grad():
        expected = tbn(tconv(torch.from_numpy(x))).numpy()
        fused = fuse_conv_bn_eval(tconv, tbn)
    assert_close(cs.functional.conv2d(cs.tensor(x), cs.tensor(w), cs.tensor(b), padding=1).numpy(), expected)
    assert_close(w, fused.weight.detach().numpy())
    assert_close(b, fused.bias.detach().numpy())


# --- depthwise-separable -----------------------------------------------------------------------------
def test_separable_mobilenet_layer_and_exact_ratio() -> None:
    """MobileNet v1's second layer (32 → 64 maps at 112×112, 3×3): 231,211,008 MACs standard vs
    3,612,672 + 25,690,112 separable; ratio 1/64 + 1/9 = 73/576."""
    e = explain("separable", cin=32, cout=64, k=3, size="112x112")
    f = e.facts
    assert f["standard"]["macs"] == 112 * 112 * 64 * 32 * 9 == 231_211_008
    assert (f["depthwise"]["macs"], f["pointwise"]["macs"]) == (3_612_672, 25_690_112)
    assert f["macs_ratio"] == f["weights_ratio"] == Fraction(73, 576)
    assert "73/576" in e.render() and e.ok


@pytest.mark.parametrize("cin, cout, k, size, stride", [(3, 5, 5, "9x11", 2), (512, 512, 3, "14x14", 1),
                                                        (16, 7, 4, "10x10", 3)])
def test_separable_counts_match_torch_and_ratio_is_exact(cin: int, cout: int, k: int, size: str, stride: int) -> None:
    f = explain("separable", cin=cin, cout=cout, k=k, size=size, stride=stride).facts
    h, w = (int(v) for v in size.split("x"))
    x = torch.zeros(1, cin, h, w)
    standard = torch.nn.Conv2d(cin, cout, k, stride, k // 2)
    depthwise, pointwise = torch.nn.Conv2d(cin, cin, k, stride, k // 2, groups=cin), torch.nn.Conv2d(cin, cout, 1)
    hd = depthwise(x)
    assert f["standard"]["macs"] == _torch_macs(standard, standard(x))
    assert f["depthwise"]["macs"] + f["pointwise"]["macs"] == _torch_macs(depthwise, hd) + _torch_macs(
        pointwise, pointwise(hd))
    assert f["standard"]["params"] == _torch_params(standard)
    assert f["separable"]["params"] == _torch_params(depthwise) + _torch_params(pointwise)
    assert f["macs_ratio"] == Fraction(1, cout) + Fraction(1, k * k)


def test_separable_saving_is_8_to_9_times_for_3x3_as_mobilenet_reports() -> None:
    """MobileNets (Howard et al. 2017, §3.1): 3×3 depthwise separable convolutions use 8 to 9
    times less computation than standard convolutions (for wide layers)."""
    for n in (256, 512, 1024):
        assert 8 < explain("separable", cin=n, cout=n, k=3, size="14x14").facts["speedup"] < 9


@pytest.mark.parametrize("name", list(TOPICS))
def test_option_help_states_each_default_once(name: str) -> None:
    """An option without a fixed default says what it defaults to; its help read
    "pooling stride (default: the kernel) (default None)"."""
    parser = argparse.ArgumentParser(prog="convscope")
    add_cli(parser.add_subparsers(dest="command", required=True))
    text = " ".join(_help(parser, name).split())
    assert "(default None)" not in text
    for o in TOPICS[name].options:
        if o.parse is not bool:
            assert text.count(f"{o.flag} {o.name.upper()} {o.help}") == 1
            assert (o.default is None) == ("(default" in o.help), o.flag


def _help(parser: argparse.ArgumentParser, topic: str) -> str:
    out = StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit):
        parser.parse_args(["explain", topic, "--help"])
    return out.getvalue()


def test_separable_with_a_1x1_kernel_is_not_called_a_saving() -> None:
    """K = 1: the pair costs 1/N + 1 > 1 of the standard conv; the text said "1.0× fewer MACs"."""
    text = explain("separable", cin=32, cout=64, k=1, size="8x8").render()
    assert "costs 101.6% of the standard conv: 1.6% more MACs, no saving" in text and "fewer" not in text
    assert "costs 12.7% of the standard conv: 7.9× fewer MACs." in explain("separable", size="8x8").render()


def test_separable_with_one_output_map_names_n_not_k_as_the_reason() -> None:
    """N = 1, K = 3: the pair costs 1 + 1/9 of the standard conv; the text blamed "K = 1"."""
    text = explain("separable", cin=32, cout=1, k=3, size="8x8").render()
    assert ("costs 111.1% of the standard conv: 11.1% more MACs, no saving (with N = 1 the depthwise conv alone "
            "costs as much as the standard conv)") in text
    assert "K = 1" not in text


# --- the explanation record and rendering ------------------------------------------------------------
@pytest.mark.parametrize("name", list(TOPICS))
def test_every_topic_renders_and_serialises(name: str) -> None:
    e = explain(name)
    assert e.ok, e.failed
    text = str(e)
    assert text.startswith(TOPICS[name].title) and text.endswith(
        f"Verified by computation: {len(e.claims)} of {len(e.claims)} claims hold.")
    data = json.loads(json.dumps(e.to_dict()))
    assert data["topic"] == name and data["ok"] and data["claims"] == e.claims


def test_failed_claims_are_rendered_and_make_ok_false() -> None:
    e = Explanation("t", "A title", {"n": 3}, {"three is even": False, "three is odd": True},
                    lambda f: [f"n = {f['n']}"])
    assert not e.ok and e.failed == ["three is even"]
    assert e.render().splitlines() == ["A title", "=======", "", "n = 3", "",
                                       "Verified by computation: 1 of 2 claims hold. FAILED: three is even"]


def test_to_dict_converts_arrays_fractions_and_tuples() -> None:
    e = Explanation("t", "T", {"a": np.arange(3), "r": Fraction(73, 576), "s": (1, 2), "x": np.float64(0.5)},
                    {}, lambda f: [])
    assert e.to_dict()["facts"] == {"a": [0, 1, 2], "r": "73/576", "s": [1, 2], "x": 0.5}


def test_unknown_topic_and_option_and_aliases() -> None:
    with pytest.raises(ValueError, match="unknown topic 'nope'; topics: stack, conventions, output-size"):
        explain("nope")
    with pytest.raises(ValueError, match=r"explain separable: unknown option 'kernel'; options: cin, cout, k, size"):
        explain("separable", kernel=3)
    assert explain("pointwise").topic == "1x1" and explain("output_size").topic == "output-size"


def test_explain_doctests() -> None:
    assert doctest.testmod(importlib.import_module("convscope.explain")).failed == 0


# --- the command line --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(TOPICS))
def test_cli_runs_every_topic_with_defaults(name: str) -> None:
    code, out = _run_cli(["explain", name])
    assert code == 0 and out.strip() == explain(name).render()


def test_cli_options_and_json() -> None:
    code, out = _run_cli(["explain", "separable", "--cin", "3", "--cout", "5", "--k", "5", "--json"])
    data = json.loads(out)
    assert code == 0 and data["facts"]["macs_ratio"] == "6/25" and all(data["claims"].values())
    code, out = _run_cli(["explain", "output-size", "--n", "12", "--k", "1", "--s", "3", "--ceil"])
    assert code == 0 and "dropped: 4" in out
    code, out = _run_cli(["explain", "stack", "--input", "2x9x9", "--layers", "conv 4 3x3 g2, conv 2 3x3"])
    assert code == 0 and "(4, 1, 3, 3)" in out


@pytest.mark.parametrize("argv, message", [
    (["explain", "separable", "--k", "0"], "explain separable: --k must be a positive integer, got 0"),
    (["explain", "stack", "--input", "1x28"], None),
    (["explain", "stack", "--input", "3x224"], "--input expects 3 positive sizes like 1x28x28 (maps×height×width), "
                                               "got '3x224'"),
    (["explain", "stack", "--layers", "conv 8 3x3 z2"], "unknown option 'z2'"),
    (["explain", "conv3d", "--kernel", "3x4"], "--kernel expects 1 or 3 positive sizes like 3x4x5, got '3x4'"),
    (["explain", "conv3d", "--maps", "2"], "kernel 3×4×5 on 2×42×314 maps"),
])
def test_cli_bad_options_raise_one_line_value_errors(argv: list[str], message: str | None) -> None:
    with pytest.raises(ValueError) as info:
        _run_cli(argv)
    assert "\n" not in str(info.value) and (message is None or message in str(info.value))


@pytest.mark.parametrize("topic, options, message", [
    ("output-size", {"n": 10 ** 8}, "a 1×100000000 input would hold 100,000,000 values"),
    ("stack", {"input": "3x400x400", "layers": "conv 640 3x3"}, "the output of layer 1 ('conv 640 3x3') would hold"),
    ("stack", {"input": "1x5x5", "layers": "conv 3000 1x1, conv 3000 5x5"},
     "the weight of layer 2 ('conv 3000 5x5') would hold 225,000,000 values"),
    ("conventions", {"k1": 300, "k2": 300, "input": "1x20x20"}, "convention 1's output (300·300 maps of 20×20)"),
    ("pooling", {"maps": 2000, "size": "200x200"}, "use fewer --maps or a smaller --size"),
    ("pooling", {"maps": 20000, "size": "1x1", "kernel": 1}, "the 20000×20000 weight of the contrasting 1×1 conv"),
    ("pooling", {"lrn_size": 10 ** 9}, "the 6 maps of 6×6 padded by the LRN window of 1000000000 would hold"),
    ("conv3d", {"maps": 3 * 10 ** 6, "height": 8, "width": 8, "kernel": "3000000x1x1"},
     "the computed 3000000×8×8 volume would hold 192,000,000 values"),
    ("conv3d", {"maps": 1000, "height": 1000, "width": 1000, "kernel": "500"},
     "use a smaller --kernel (values are computed on a volume of up to kernel + 7 cells per dim)"),
    ("1x1", {"cin": 10 ** 5, "cout": 10 ** 4}, "the 10000×100000 weight would hold"),
    ("1x1", {"cin": 5 * 10 ** 6, "cout": 1}, "the 5000000 maps of 16×16 (×1 samples) the values are computed on"),
    ("1x1", {"cin": 1, "cout": 10 ** 6, "size": "2x2"}, "the 1000000 maps of 2×2 (×16 samples) the values are"),
])
def test_options_too_large_to_compute_are_refused(topic: str, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        explain(topic, **options)


def test_cli_unknown_topic_is_an_argparse_error() -> None:
    with pytest.raises(SystemExit) as info, redirect_stdout(StringIO()):
        _run_cli(["explain", "everything"])
    assert info.value.code == 2


def test_main_maps_explain_errors_to_exit_code_2(capsys: pytest.CaptureFixture) -> None:
    from convscope import cli

    if "explain" not in cli.build_parser().format_help():
        pytest.skip("explain is not wired into convscope.cli yet")
    assert cli.main(["explain", "separable", "--k", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--k must be a positive integer" in err
    assert cli.main(["explain", "quadratic"]) == 0


# --- the docs page -----------------------------------------------------------------------------------
_NOISE = re.compile(r"(?<=difference )(0|\d\.\de-\d\d)\b")  # float64 rounding noise may vary with BLAS


def _doc_blocks(text: str) -> list[tuple[str, str]]:
    """``(command, output)`` for every ``$ convscope explain ...`` console block."""
    return [(m[1], m[2]) for m in re.finditer(r"```console\n\$ (convscope explain[^\n]*)\n(.*?)```", text, re.S)]


def _output(command: str) -> str:
    code, out = _run_cli(shlex.split(command)[1:])
    assert code == 0, command
    return out


def test_docs_page_shows_every_topic_with_its_current_output() -> None:
    blocks = _doc_blocks(DOCS.read_text())
    assert {shlex.split(c)[2] for c, _ in blocks} >= set(TOPICS)
    for command, shown in blocks:
        assert _NOISE.sub("ε", shown) == _NOISE.sub("ε", _output(command)), (
            f"docs/explain.md is stale for `{command}`: run python tests/test_explain.py --update-docs")


if __name__ == "__main__" and sys.argv[1:] == ["--update-docs"]:
    page = DOCS.read_text()
    for command, shown in _doc_blocks(page):
        page = page.replace(f"$ {command}\n{shown}", f"$ {command}\n{_output(command)}", 1)
    DOCS.write_text(page)
