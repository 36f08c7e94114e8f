"""Symbolic input sizes: every formula, evaluated at many sizes, equals the shapes of a real
meta walk at those sizes; the valid sizes equal a brute-force sweep (run the summary at
every size and record which succeed); known formulas read as in the textbooks."""

import json

import numpy as np
import pytest

import convscope as cs
import convscope.functional as F
from convscope import nn
from convscope.analyze.compare import compare
from convscope.cli import main as cli_main
from convscope.rules import symbol


def _real_shapes(model, shape):
    r = cs.summary(model, shape)
    return [row.output_shape for row in r.rows] if r.ok else None


def _assert_formulas_match(model, shape, sizes):
    """The formulas at each size equal a real walk there; returns how many sizes were valid."""
    s = cs.summary(model, shape)
    symbols = [d for d in shape if isinstance(d, str)]
    valid = 0
    for values in sizes:
        at = dict(zip(symbols, values))
        real = _real_shapes(model, tuple(at.get(d, d) for d in shape))
        if real is None:
            continue
        valid += 1
        assert s.symbolic.output_shapes(**at) == real, at
    return valid


def _brute_valid(model, shape, symbol_values, mode="eval"):
    """The sizes in ``symbol_values`` (dicts) at which the real summary succeeds."""
    return [cs.summary(model, tuple(v.get(d, d) for d in shape), mode=mode).ok for v in symbol_values]


def _claimed(validity, n):
    return any(lo <= n and (hi is None or n <= hi) for lo, hi in validity.intervals)


# --- zoo models -------------------------------------------------------------------------
ZOO = ["resnet18", "googlenet", "squeezenet1_1", "mobilenet_v2", "alexnet", "lenet5_modern", "vgg11"]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_formulas_equal_real_shapes_at_many_sizes(name):
    c = cs.zoo.entry(name).input_shape[0]
    rng = np.random.default_rng(len(name))
    sizes = [tuple(int(v) for v in rng.integers(20, 320, 2)) for _ in range(8)] + [(n, n) for n in (33, 47, 63, 100)]
    if name == "lenet5_modern":
        sizes = [(h, w) for h in range(31, 37) for w in (32, 35)]
    assert _assert_formulas_match(name, (c, "H", "W"), sizes) >= 4


@pytest.mark.parametrize("name, lo, hi", [("lenet5_modern", 20, 45), ("alexnet", 55, 75), ("vgg11", 20, 45),
                                          ("squeezenet1_1", 1, 30), ("resnet18", 20, 40), ("googlenet", 38, 52)])
def test_zoo_validity_equals_brute_force(name, lo, hi):
    c = cs.zoo.entry(name).input_shape[0]
    s = cs.summary(name, (c, "H", "W"), mode="train")  # batch norm's guard at batch 1 sets the boundary
    ref_w = s.symbolic.reference["W"]
    for key, values in (("H = W", [{"H": n, "W": n} for n in range(lo, hi)]),
                        ("H", [{"H": n, "W": ref_w} for n in range(lo, hi)])):
        brute = _brute_valid(name, (c, "H", "W"), values, mode="train")
        assert brute == [_claimed(s.validity[key], v["H"]) for v in values], key
        assert any(brute) and (not all(brute) or key == "H")  # the square range straddles the boundary


def test_lenet5_modern_is_valid_only_for_32_to_35():
    """400 = 16·5·5 inputs to the first linear layer: 5 = ⌊(⌊(H − 4)/2⌋ − 4)/2⌋ for H = 32 … 35."""
    s = cs.summary("lenet5_modern", (1, "H", "W"))
    assert s.validity["H"].text == "H ∈ [32, 35]" and s.validity["H"].held == {"W": 32}
    assert s.validity["H = W"].intervals == [(32, 35)]
    assert "in_features 400" in s.validity["H"].reason
    assert s.rows[0].output_formula == ["6", "H − 4", "W − 4"]
    assert s.rows[2].output_formula == ["6", "⌊H/2⌋ − 2", "⌊W/2⌋ − 2"]  # ⌊(H − 4 − 2)/2⌋ + 1


def test_resnet_formulas_and_batch_norm_guard():
    assert cs.summary("resnet18", (3, "H", "W")).validity["H = W"].text == "H = W ≥ 1"  # eval mode
    s = cs.summary("resnet18", (3, "H", "W"), mode="train")
    by_name = {r.name: r.output_formula for r in s.rows}
    assert by_name["conv1"] == ["64", "⌊(H − 1)/2⌋ + 1", "⌊(W − 1)/2⌋ + 1"]  # 7×7/2, padding 3
    assert by_name["maxpool"] == ["64", "⌊(H − 1)/4⌋ + 1", "⌊(W − 1)/4⌋ + 1"]
    assert by_name["layer4.1.add"] == ["512", "⌊(H − 1)/32⌋ + 1", "⌊(W − 1)/32⌋ + 1"]
    assert by_name["fc"] == ["1000"]
    # in training mode BatchNorm needs more than one value per channel: a 1×1 map fails (H = W ≤ 32)
    assert s.validity["H = W"].text == "H = W ≥ 33" and s.validity["H"].text == "H ≥ 1"
    assert "batch_norm" in s.validity["H = W"].reason


# --- hand-made networks ---------------------------------------------------------------------
class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class TwoBranches(nn.Module):
    """A strided conv beside a pool: their sizes agree only for even H (⌊(H − 1)/2⌋ + 1 = ⌊H/2⌋)."""

    def __init__(self, combine):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.combine = combine

    def forward(self, x):
        a, b = self.conv(x), self.pool(x)
        return cs.cat([a, b], 1) if self.combine == "cat" else a + b[:, :1]


def _with_reference(model, shape):
    """A model that runs only near one size needs it as its own input shape (the reference)."""
    model.input_shape = shape
    return model


class Reshapes(nn.Module):
    """unsqueeze/squeeze/permute, and view(1, -1, 3): 2·(H − 2)·(W − 2) cells must fill rows of 3."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        y = self.conv(x).unsqueeze(1).squeeze(1).permute(0, 2, 3, 1).reshape(1, -1, 2)
        return y.sum(1, keepdim=True) + y.amax(1, keepdim=True), self.conv(x).reshape(1, -1, 3)


class Unpool(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, return_indices=True)
        self.unpool = nn.MaxUnpool2d(3, stride=2, padding=1)

    def forward(self, x):
        y, idx = self.pool(x)
        return self.unpool(y, idx)


HAND_MADE = {
    "dilation_padding": (nn.Sequential(nn.Conv2d(1, 4, 3, dilation=2, padding=1), nn.ReLU(),
                                       nn.Conv2d(4, 4, (5, 3), stride=(3, 2), padding=(2, 0), dilation=(1, 3))), 1),
    "ceil_mode": (nn.Sequential(nn.MaxPool2d(3, stride=2, ceil_mode=True), nn.AvgPool2d(3, 2, 1, ceil_mode=True),
                                nn.MaxPool2d(2, stride=3, ceil_mode=True), nn.LPPool2d(2, 2, ceil_mode=True)), 1),
    # kernel 2, stride 2, padding 1: the last ceil-mode window sometimes starts in the padding and is dropped
    "ceil_drop": (nn.Sequential(nn.MaxPool2d(2, stride=2, padding=1, ceil_mode=True),
                                nn.MaxPool2d((1, 2), stride=(3, 3), ceil_mode=True)), 1),
    "transposed": (nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.ConvTranspose2d(2, 2, 3, stride=2, padding=1,
                                                                                  output_padding=1),
                                 nn.ConvTranspose2d(2, 1, 4, stride=3, dilation=2)), 1),
    "upsample": (nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=1.5),
                               nn.Upsample(size=(9, 11)), nn.Conv2d(1, 1, 2, stride=2),
                               nn.Upsample(scale_factor=(0.7, 3.0), mode="bilinear")), 1),
    "pad_modes": (nn.Sequential(Lambda(lambda x: F.pad(x, (1, 2, 3, 0), mode="reflect")),
                                Lambda(lambda x: F.pad(x, (2, 2, -1, -2))),
                                Lambda(lambda x: F.pad(x, (3, 1, 0, 2), mode="circular")),
                                Lambda(lambda x: F.pad(x, (1, 0, 1, 0), mode="replicate")),
                                nn.Conv2d(1, 1, 5, padding="same"), nn.AvgPool2d(4, 3)), 1),
    "cat_parity": (TwoBranches("cat"), 2),
    "reshapes": (Reshapes(), 1),
    "add_broadcast": (TwoBranches("add"), 2),
    # valid for H ∈ {13, 14}: ⌊(H − 2 − 3)/2⌋ + 1 = 5 rows reach the linear layer
    "slices_and_flatten": (_with_reference(nn.Sequential(
        Lambda(lambda x: x[:, :, 1:-1, ::2]), nn.Conv2d(1, 2, 3, stride=2), nn.AdaptiveAvgPool2d((None, 3)),
        nn.Flatten(), nn.Linear(2 * 5 * 3, 4)), (1, 14, 30)), 1),
    # LayerNorm(4) fixes W: the unpooled 2·(⌊(W − 1)/2⌋ + 1) − 1 cells must give 4 windows of 3
    "unpool_and_norms": (_with_reference(nn.Sequential(
        Unpool(), nn.GroupNorm(1, 2), nn.Conv2d(2, 2, 3, stride=3), nn.BatchNorm2d(2), nn.LayerNorm(4),
        nn.AdaptiveMaxPool2d(2)), (2, 20, 14)), 2),
}


@pytest.mark.parametrize("name", sorted(HAND_MADE))
def test_hand_made_formulas_and_validity_equal_brute_force(name):
    model, c = HAND_MADE[name]
    s = cs.summary(model, (c, "H", "W"))
    ref_w = s.symbolic.reference["W"]
    square = [{"H": n, "W": n} for n in range(1, 41)]
    tall = [{"H": n, "W": ref_w} for n in range(1, 41)]
    for key, values in (("H = W", square), ("H", tall)):
        assert _brute_valid(model, (c, "H", "W"), values) == [_claimed(s.validity[key], v["H"]) for v in values], key
    sizes = [(v["H"], v["W"]) for v in square + tall] + [(h, w) for h in (5, 13, 14, 23) for w in (7, 13, 14, 31)]
    assert _assert_formulas_match(model, (c, "H", "W"), sizes) >= 5
    assert not s.symbolic.notes


def test_1d_and_3d_formulas_and_validity():
    """avg_pool3d also wants its input at least as large as the kernel before padding (torch's check)."""
    model = nn.Sequential(nn.Conv3d(1, 2, 3, stride=(1, 2, 2), padding=(0, 1, 0)), nn.AvgPool3d(2, ceil_mode=True),
                          nn.MaxPool3d((1, 3, 2), stride=(2, 1, 3), dilation=(1, 2, 1)))
    s = cs.summary(model, (1, "D", "H", "W"))
    values = [{"D": n, "H": n, "W": n} for n in range(1, 25)]
    assert _brute_valid(model, (1, "D", "H", "W"), values) == [_claimed(s.validity["D = H = W"], n) for n in
                                                                range(1, 25)]
    assert _assert_formulas_match(model, (1, "D", "H", "W"), [(d, h, w) for d in (4, 9) for h in (17, 30)
                                                               for w in (9, 20)]) == 8
    model = nn.Sequential(nn.Conv1d(2, 3, 5, dilation=2), nn.MaxPool1d(3, ceil_mode=True), nn.Flatten(),
                          nn.Linear(3 * 4, 2))
    s = cs.summary(_with_reference(model, (2, 20)), (2, "L"))
    assert s.validity["L"].text == "L ∈ [18, 20]"  # 4 = ⌈(L − 8 − 3)/3⌉ + 1
    assert [n for n in range(1, 40) if cs.summary(model, (2, n)).ok] == [18, 19, 20]
    assert s.rows[2].output_formula == ["3·⌊L/3⌋ − 6"]  # 3 channels × (⌊L/3⌋ − 2)


def test_known_texts():
    assert symbol("H").window(3, 2, 1, 1, 1).text == "⌊(H − 1)/2⌋ + 1"  # 3×3/2 conv, padding 1
    s = cs.summary(nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1)), (1, "H", "W"))
    assert s.rows[0].output_formula == ["8", "⌊(H − 1)/2⌋ + 1", "⌊(W − 1)/2⌋ + 1"]
    texts = {r.name: r.output_formula for r in cs.summary(HAND_MADE["transposed"][0], (1, "H", "W")).rows}
    assert texts["0"][1] == "⌊(H − 1)/2⌋"  # ⌊(H − 3)/2⌋ + 1
    assert texts["1"][1] == "2·⌊(H − 1)/2⌋"  # (E − 1)·2 − 2·1 + 3 + 1 = 2E after a strided conv: no closed form
    assert cs.summary(nn.ConvTranspose2d(1, 1, 3, stride=2), (1, "H", "W")).rows[0].output_formula[1] == "2H + 1"
    assert symbol("H").shift(-4).text == "H − 4" and symbol("H").scatter(3, 2, 1, 0, 0).text == "2H + 1"
    # ceil mode k2/s2/p1: ⌈(H + 1)/2⌉ once the drop rule is applied (⌈H/2⌉ + 1 without it)
    drop = cs.summary(HAND_MADE["ceil_drop"][0], (1, "H", "W")).rows[0].output_formula[1]
    assert drop == "⌊H/2⌋ + 1"
    # a 3×3/2 conv (padding 1) beside a 2×2 pool: ⌊(H − 1)/2⌋ + 1 = ⌊H/2⌋ only for even H …
    cat = cs.summary(TwoBranches("cat"), (2, "H", "W"))
    assert cat.validity["H"].text == "H ≥ 2 with H ≡ 0 (mod 2)"
    # … but an addition also broadcasts a size of 1 (H = 2: 1 and 1, H = 3: 2 and 1)
    add = cs.summary(TwoBranches("add"), (2, "H", "W"))
    assert add.validity["H"].text == "H ∈ [2, 3], or H ≥ 4 with H ≡ 0 (mod 2)"


def test_output_shapes_from_formulas_alone():
    s = cs.summary("vgg11", (3, "H", "W"))
    shapes = s.symbolic.output_shapes(H=300, W=200)
    assert shapes[-1] == (1, 1000) and (1, 512, 9, 6) in shapes  # 300 // 32, 200 // 32


def test_symbolic_dims_only_spatial_and_clear_errors():
    with pytest.raises(ValueError, match="only spatial sizes may be symbolic, got 'C' as the channel count"):
        cs.summary("resnet18", ("C", 224, 224))
    with pytest.raises(ValueError, match="'N' as the batch size"):
        cs.summary("resnet18", ("N", 3, "H", "W"))
    with pytest.raises(ValueError, match="fails at every reference size tried"):
        cs.summary(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten(), nn.Linear(7, 1)), (1, "H", "W"))


def test_shared_symbol_and_mixed_sizes():
    s = cs.summary("alexnet", (3, "S", "S"))
    assert list(s.validity) == ["S"] and s.validity["S"].text == "S ≥ 63"
    s = cs.summary("alexnet", (3, "H", 100))
    assert list(s.validity) == ["H"] and s.rows[0].output_formula[2] == str(s.rows[0].output_shape[3])


def test_unknown_op_is_noted_not_guessed():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), Lambda(lambda x: x[:, :, np.array([0, 2])]), nn.Conv2d(2, 2, 2))
    s = cs.summary(model, (1, "H", "W"))
    assert s.rows[-1].output_formula[1] == "?" and "getitem" in s.symbolic.notes[0]
    assert "?" in s.table()


def test_renderers_and_json():
    s = cs.summary("resnet18", (3, "H", "W"), mode="train")
    d = json.loads(s.to_json())
    assert d["layers"][0]["output_formula"] == ["64", "⌊(H − 1)/2⌋ + 1", "⌊(W − 1)/2⌋ + 1"]
    assert d["symbolic"]["reference"] == {"H": 224, "W": 224}
    assert d["symbolic"]["validity"]["H = W"]["intervals"] == [[33, None]]
    assert json.loads(cs.summary("resnet18").to_json())["layers"][0]["output_formula"] is None
    table = s.table()
    assert "⌊(H − 1)/32⌋ + 1" in table and "H = W ≥ 33" in table
    assert max(len(line) for line in table.splitlines()) <= 80
    assert "output_formula" in s.to_csv().splitlines()[0] and "⌊" in s.to_markdown()


def test_cli_symbolic_input(capsys):
    assert cli_main(["summary", "resnet18", "--input", "3xHxW"]) == 0
    out = capsys.readouterr().out
    assert "⌊(H − 1)/2⌋ + 1" in out and "H ≥ 1" in out
    assert cli_main(["summary", "resnet18", "--input", "Cx224x224"]) == 2
    err = capsys.readouterr().err
    assert "only spatial sizes may be symbolic" in err and "Traceback" not in err
    assert cli_main(["summary", "resnet18", "--input", "3xH-1xW"]) == 2
    assert "--input must look like" in capsys.readouterr().err


def test_summary_and_compare_take_the_shape_as_text():
    assert cs.summary("resnet18", "3x224x224").to_dict() == cs.summary("resnet18", (3, 224, 224)).to_dict()
    assert cs.summary("resnet18", "1×3×HxW").rows[0].output_formula == ["64", "⌊(H − 1)/2⌋ + 1", "⌊(W − 1)/2⌋ + 1"]
    several = cs.summary(cs.nn.Conv2d(1, 2, 3), inputs=["1x9x9"])
    assert several.input_shapes == [(1, 1, 9, 9)] and several.rows[0].output_shape == (1, 2, 7, 7)
    assert compare("lenet5", "1x32x32").to_dict() == compare("lenet5", (1, 32, 32)).to_dict()
    with pytest.raises(ValueError, match=r"^input_shape must look like 3x224x224 or 3xHxW, got '3y224'$"):
        cs.summary("resnet18", "3y224")
    with pytest.raises(ValueError, match=r"^input_shape sizes must be positive, got '3x0x9'$"):
        cs.summary("resnet18", "3x0x9")


def test_rearrangements_keep_sizes_symbolic():
    """Pixel shuffles, channel shuffles and unflatten split and merge dims by their factors, not
    by the reference size: ShuffleNet is valid at every size, a 2× pixel shuffle doubles H."""
    validity = cs.summary("shufflenet_v2_x0_5", (3, "H", "W")).validity
    assert validity["H"].text == "H ≥ 1" and validity["W"].text == "W ≥ 1"
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.PixelShuffle(2), nn.PixelUnshuffle(2), nn.Flatten(2),
                          nn.Unflatten(2, (-1, 4)))
    s = cs.summary(model, (1, "H", "W"))
    assert [r.output_formula for r in s.rows][1:] == [["2", "2H", "2W"], ["8", "H", "W"], ["8", "H·W"],
                                                        ["8", "⌊(H·W)/4⌋", "4"]]
    assert s.validity["H = W"].text == "H = W ≥ 2 with H = W ≡ 0 (mod 2)"
