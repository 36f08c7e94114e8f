"""convscope.summary: shapes against real forward passes, parameter counts against the
published numbers, MACs against torch's flop counter, receptive fields against brute-force
gradients, and reports that leave the model untouched."""

import json
import math

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import convscope as cs
import convscope.functional as F
from convscope import nn
from convscope.cli import main as cli_main

# Published parameter counts (torchvision's model cards; LeCun et al. 1998 for LeNet-5).
PUBLISHED = {
    "alexnet": 61_100_840, "vgg16": 138_357_544, "googlenet": 6_624_904, "resnet18": 11_689_512,
    "resnet50": 25_557_032, "mobilenet_v2": 3_504_872, "squeezenet1_0": 1_248_424, "lenet5": 60_000,
}
# Published multiply-accumulate counts at 224×224 (fvcore/the papers: conv + fc only).
# torchvision's metadata (GFLOPS, meaning multiply-adds) and the ResNeXt paper's 4.2e9 (Table 1)
PUBLISHED_MACS = {"resnet50": 4.09e9, "vgg16": 15.47e9, "resnet18": 1.82e9, "mobilenet_v2": 0.30e9,
                  "resnext50_32x4d": 4.23e9, "resnext101_32x8d": 16.41e9, "wide_resnet50_2": 11.40e9,
                  "densenet121": 2.83e9, "densenet201": 4.29e9}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_totals_match_published_parameter_counts(name):
    assert cs.summary(name).totals.params == PUBLISHED[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED_MACS))
def test_macs_match_published_counts(name):
    macs = cs.summary(name).totals.macs
    assert abs(macs - PUBLISHED_MACS[name]) / PUBLISHED_MACS[name] < 0.01


@pytest.mark.parametrize("name", ["seed", "lenet5_modern", "resnet18", "mobilenet_v2", "googlenet", "squeezenet1_1"])
def test_row_shapes_equal_a_real_forward_pass(name):
    cs.manual_seed(0)
    model = cs.zoo.build(name).eval()
    shape = (3, 64, 64) if cs.zoo.entry(name).input_shape[0] == 3 else cs.zoo.entry(name).input_shape
    real: dict[str, list] = {}

    def hook(module, args, output):
        real.setdefault(paths[id(module)], []).append(tuple(output.shape))

    paths = {id(m): p for p, m in model.named_modules()}
    handles = [m.register_forward_hook(hook) for m in model.modules() if not m._modules]
    with cs.no_grad():
        model(cs.tensor(np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)))
    for h in handles:
        h.remove()
    s = cs.summary(model, shape)
    assert s.ok
    module_rows = [r for r in s.rows if r.name.partition("#")[0] in real]
    assert len(module_rows) == sum(len(v) for v in real.values())
    for row in module_rows:  # a layer's k-th call is row "path#k"
        path, _, k = row.name.partition("#")
        assert row.output_shape == real[path][int(k or 1) - 1], row.name


# --- MACs against torch.utils.flop_counter ------------------------------------------------
LAYERS = [
    ("conv", dict(c_in=3, c_out=8, k=3, s=1, p=1, d=1, g=1)),
    ("conv", dict(c_in=8, c_out=16, k=5, s=2, p=0, d=1, g=2)),
    ("conv", dict(c_in=16, c_out=16, k=3, s=1, p=2, d=2, g=16)),
    ("deconv", dict(c_in=16, c_out=6, k=4, s=2, p=1, d=1, g=2)),
]


def _twins():
    ours, theirs = [], []
    for kind, c in LAYERS:
        if kind == "conv":
            ours.append(nn.Conv2d(c["c_in"], c["c_out"], c["k"], c["s"], c["p"], c["d"], c["g"]))
            theirs.append(torch.nn.Conv2d(c["c_in"], c["c_out"], c["k"], c["s"], c["p"], c["d"], c["g"]))
        else:
            ours.append(nn.ConvTranspose2d(c["c_in"], c["c_out"], c["k"], c["s"], c["p"], groups=c["g"]))
            theirs.append(torch.nn.ConvTranspose2d(c["c_in"], c["c_out"], c["k"], c["s"], c["p"], groups=c["g"]))
    return nn.Sequential(*ours), torch.nn.Sequential(*theirs)


def test_macs_equal_torch_flop_counter():
    ours, theirs = _twins()
    s = cs.summary(ours, (3, 31, 29))
    with FlopCounterMode(display=False) as counter:
        theirs(torch.zeros(1, 3, 31, 29))
    assert s.totals.flops - sum(r.flops for r in s.rows if r.macs == 0) == counter.get_total_flops()
    assert 2 * s.totals.macs == counter.get_total_flops()


def test_linear_macs_and_formula():
    s = cs.summary(nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5)), (20,))
    assert [r.macs for r in s.rows] == [600, 0, 150]
    assert s.rows[0].params_formula == "30·20 + 30 = 630"


# --- receptive fields against brute force ------------------------------------------------
class Branchy(nn.Module):
    """Two paths of different reach, added: the field is the union over paths."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Conv2d(2, 2, 3, dilation=2, padding=2))
        self.b = nn.Conv2d(1, 2, 5, padding=2)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1)
        self.head = nn.Conv2d(4, 1, 3, stride=2)

    def forward(self, x):
        y = self.a(x) + self.b(x)
        return self.head(cs.cat([self.pool(y), self.pool(y.tanh())], 1))


RF_MODELS = {
    "strided": lambda: nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.Tanh(), nn.Conv2d(2, 1, 3, stride=2)),
    "dilated_padded": lambda: nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2, padding=1), nn.Sigmoid(),
                                            nn.Conv2d(2, 1, 3, padding=1, dilation=3)),
    "pooled": lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2), nn.Conv2d(2, 1, 3, stride=2)),
    "branchy": Branchy,
}


@pytest.mark.parametrize("name", sorted(RF_MODELS))
def test_receptive_field_box_equals_gradient_support(name):
    cs.manual_seed(1)
    model = RF_MODELS[name]().double()
    shape = (1, 1, 33, 31)
    field = cs.summary(model, shape[1:], dtype=np.float64).rows[-1].receptive_field
    x = cs.tensor(np.random.default_rng(2).standard_normal(shape), requires_grad=True)
    out = model(x)
    corners = [(0, 0, 0, 0), (0, 0) + tuple(s // 2 for s in out.shape[2:]),
               (0, 0) + tuple(s - 1 for s in out.shape[2:])]
    for index in corners:
        x.grad = None
        out = model(x)
        out[index].backward()
        support = np.nonzero(x.grad[0, 0])
        for axis, (a, pos) in enumerate(zip(field, index[2:])):
            lo = a.start + pos * a.jump
            hi = lo + a.size - 1
            got = (support[axis].min(), support[axis].max())
            if lo >= 0 and hi <= shape[2 + axis] - 1:  # box inside the input: it is the exact extent
                assert got == (lo, hi), (name, index, axis)
            else:  # cells reached only through padding carry no gradient: the extent is within the box
                assert max(0, math.ceil(lo)) <= got[0] and got[1] <= min(shape[2 + axis] - 1, math.floor(hi))


def test_receptive_field_classic_numbers():
    # Two 3×3 convs see 5×5; adding a 2×2/2 pool and another 3×3 conv gives 10×10 with jump 2.
    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3))
    rows = cs.summary(model, (1, 32, 32)).rows
    assert [r.receptive_field[0].size for r in rows] == [3, 5, 6, 10]
    assert rows[-1].receptive_field[0].jump == 2
    # VGG-16's classic numbers: conv5_3 sees 196×196 input pixels, pool5 212×212, jump 32.
    rows = {r.name: r for r in cs.summary("vgg16").rows}
    assert rows["features.28"].receptive_field[0].size == 196
    assert rows["features.30"].receptive_field[0].size == 212
    assert rows["features.30"].receptive_field[0].jump == 32


# --- reports that never half-fail ----------------------------------------------------------
def test_summary_leaves_model_untouched():
    cs.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.ReLU())
    model.train()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    hooks = [dict(m._forward_hooks) for m in model.modules()]
    rng_state = json.dumps(cs.random.get_rng_state())
    cs.summary(model, (3, 8, 8))
    assert model.training and all(m.training for m in model.modules())
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    assert [dict(m._forward_hooks) for m in model.modules()] == hooks
    assert json.dumps(cs.random.get_rng_state()) == rng_state


def test_failing_layer_keeps_rows_and_names_the_layer():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 5), nn.Conv2d(4, 4, 5))
    s = cs.summary(model, (1, 10, 10))
    assert not s.ok
    assert [r.name for r in s.rows] == ["0", "1", "2"]
    assert "3 (Conv2d)" in str(s.error) and "spans 5 > padded input 4" in str(s.error)
    assert str(s.error) in str(s)


def test_shared_module_counted_once_and_functional_calls_counted():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)
            self.extra = nn.Parameter(np.ones((2, 2, 1, 1), np.float32))

        def forward(self, x):
            x = self.conv(self.conv(x))
            return F.conv2d(x, self.extra)

    s = cs.summary(Tied(), (2, 5, 5))
    assert s.totals.params == 2 * 2 * 9 + 2 + 4
    conv_rows = [r for r in s.rows if r.name in ("conv", "conv#2")]
    assert [r.use for r in conv_rows] == [1, 2] and [r.params for r in conv_rows] == [38, 0]
    assert s.totals.macs == 2 * (25 * 2 * 2 * 9) + 25 * 2 * 2
    assert not s.uncounted


class Custom(nn.Module):
    """Runs an op that has no cost rule (made with the engine's own op constructor)."""

    def forward(self, x):
        from convscope.tensor import make_result

        return make_result("mystery", None, (x,), None, shape=x.shape)


def test_uncounted_ops_are_listed_never_silent():
    s = cs.summary(nn.Sequential(nn.Conv2d(1, 2, 1), Custom(), Custom()), (1, 4, 4))
    assert [(u.op, u.calls, u.output_shape) for u in s.uncounted] == [("mystery", 2, (1, 2, 4, 4))]
    assert "Uncounted (no cost rule, counted as 0): mystery ×2" in str(s)
    with pytest.raises(ValueError, match="no cost rule for: mystery"):
        cs.summary(nn.Sequential(Custom()), (1, 4, 4), strict=True)
    assert not cs.summary(nn.Sequential(nn.Conv2d(1, 1, 1), nn.Softmax(1), nn.Flatten()), (1, 4, 4)).uncounted


def test_renderers():
    s = cs.summary("lenet5_modern")
    d = json.loads(s.to_json())
    assert d["totals"]["params"] == 61_706 and d["layers"][0]["weight_shape"] == [6, 1, 5, 5]
    assert s.to_csv().splitlines()[0].startswith("name,type,input_shapes")
    assert s.to_markdown().startswith("| name |")
    assert max(len(line) for line in str(cs.summary("resnet50")).splitlines()) <= 80


def test_cli_summary_and_errors(capsys, tmp_path):
    assert cli_main(["summary", "resnet18", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["params"] == 11_689_512
    assert cli_main(["summary", "lenet5_modern", "--input", "1x8x8"]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "(Conv2d)" in captured.err
    assert cli_main(["summary", "resnet18", "--input", "3xbad"]) == 2
    assert "--input must look like" in capsys.readouterr().err


def test_cli_batch_size_help_says_what_it_does(capsys):
    """--batch-size sets the batch of the whole summary, not only of --training's step (its
    help said "batch size for --training")."""
    assert cli_main(["summary", "seed", "--batch-size", "4"]) == 0
    assert capsys.readouterr().out.startswith("seed: input 4×1×28×28")
    with pytest.raises(SystemExit):
        cli_main(["summary", "--help"])
    assert "--batch-size BATCH_SIZE the batch of every shape," in " ".join(capsys.readouterr().out.split())


# --- counting conventions and the papers' tables -----------------------------------------
def test_mobilenet_table2_by_layer_kind():
    """Howard et al. 2017, Table 2 (mult-adds %, params %). The paper prints 1.19 % for the
    3×3 conv's mult-adds, a digit swap: with 1.19 its column sums to 99.29 %, with 1.91 to 100.01 %."""
    paper = {"Conv2d 1×1": (94.86, 74.59), "Conv2d 3×3 depthwise": (3.06, 1.06), "Conv2d 3×3": (1.91, 0.02),
             "Linear": (0.18, 24.33)}
    s = cs.summary("mobilenet_v1", convention="paper")
    kinds = {k["type"]: k for k in s.by_type() if k["macs"]}
    assert set(kinds) == set(paper)
    for kind, (macs_pct, params_pct) in paper.items():
        assert round(100 * kinds[kind]["macs_share"], 2) == macs_pct
        assert round(100 * kinds[kind]["params_share"], 2) == params_pct
    assert round(s.totals.macs / 1e6) == 569 and round(s.totals.params / 1e6, 1) == 4.2


def test_paper_convention_drops_biases_norms_and_non_mac_costs():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(8 * 3 * 3, 10))
    ours = cs.summary(model, (3, 8, 8))
    paper = cs.summary(model, (3, 8, 8), convention="paper")
    assert ours.totals.params == 8 * 27 + 8 + 16 + 720 + 10
    assert paper.totals.params == 8 * 27 + 720
    assert paper.totals.macs == ours.totals.macs == 36 * 8 * 27 + 720
    assert paper.totals.flops == 2 * paper.totals.macs < ours.totals.flops
    with pytest.raises(ValueError, match="unknown convention 'fancy'"):
        cs.summary(model, (3, 8, 8), convention="fancy")


def test_googlenet_table1_from_the_summary():
    """Szegedy et al. 2014, Table 1: params (K = 1,024 weights) and ops (M multiply-adds)
    per inception module. The paper's params column is inconsistent with its own layer
    widths for 4a and 4c–5b (BVLC/caffe#3067), and its 5a ops are 1072K·49; only the rows
    that agree with the printed widths are pinned."""
    paper_params_k = {"3a": 159, "3b": 380, "4b": 437}
    paper_ops_m = {"3a": 128, "3b": 304, "4a": 73, "4b": 88, "4c": 100, "4d": 119, "4e": 170, "5b": 71}
    groups = {g["name"].removeprefix("inception"): g
              for g in cs.summary("googlenet_paper", convention="paper").by_module(1)}
    for name, k in paper_params_k.items():
        assert abs(groups[name]["params"] / 1024 - k) <= 1, name
    for name, m in paper_ops_m.items():
        assert abs(groups[name]["macs"] / 1e6 - m) <= 1, name
    from convscope.zoo.googlenet import table1

    assert "3a        28×28×256    64     96   128     16    32    32" in table1()


@pytest.mark.parametrize("name,shape", [("resnet18", (3, 64, 64)), ("mobilenet_v2", (3, 64, 64)),
                                        ("googlenet", (3, 96, 96)), ("alexnet_original", (3, 227, 227)),
                                        ("resnext50_32x4d", (3, 64, 64)), ("densenet121", (3, 64, 64)),
                                        ("mobilenet_v3_large", (3, 64, 64)), ("shufflenet_v2_x1_0", (3, 64, 64))])
def test_zoo_macs_equal_torch_flop_counter_on_torch_twins(name, shape):
    """Independent count: torch's flop counter (2 FLOPs per conv/linear MAC) on the torch
    twin of each zoo model, against the conv + linear MACs of the summary."""
    with nn.meta_parameters():
        model = cs.zoo.build(name)
    twin = cs.to_torch(cs.zoo.build(name).eval(), shape, check=False)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        twin(torch.zeros(1, *shape))
    assert 2 * cs.summary(model, shape, convention="paper").totals.macs == counter.get_total_flops()


def test_cli_summary_of_a_torch_builder_and_an_onnx_file(tmp_path, capsys):
    (tmp_path / "net.py").write_text(
        "import torch\n\ndef build():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 4))\n")
    assert cli_main(["summary", f"{tmp_path / 'net.py'}:build", "--input", "3x8x8", "--format", "json"]) == 0
    totals = json.loads(capsys.readouterr().out)["totals"]
    assert totals["params"] == 8 * 27 + 8 + 288 * 4 + 4 and totals["macs"] == 36 * 8 * 27 + 288 * 4
    assert cli_main(["summary", f"{tmp_path / 'net.py'}:nothing", "--input", "3x8x8"]) == 2
    assert "has no function 'nothing'" in capsys.readouterr().err
    onnx_file = tmp_path / "lenet.onnx"
    cs.export_onnx(cs.zoo.build("lenet5_modern"), onnx_file, (1, 32, 32))
    assert cli_main(["summary", str(onnx_file), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["params"] == 61_706


def test_cli_training_memory_and_erf_flags(capsys):
    args = ["summary", "seed", "--training", "--batch-size", "4", "--optimizer", "adam", "--erf"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "Training step (batch 4, adam)" in out and "Effective RF" in out
    s = cs.summary("seed", training=True, batch_size=4, optimizer="adam")
    assert f"peak {cs.analyze.render.human(s.training.peak)}B" in out


# --- the CLI: every option shows in every format, or is refused ----------------------------
def test_cli_depth_groups_rows_in_every_format(capsys):
    groups = cs.summary("resnet18").by_module(1)
    assert cli_main(["summary", "resnet18", "--depth", "1", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "name,layers,output_shape,params,macs,flops" and len(lines) == len(groups) + 1
    assert lines[5].split(",") == ["layer1", "14", "1×64×56×56", str(groups[4]["params"]), str(groups[4]["macs"]),
                                   str(groups[4]["flops"])]
    assert cli_main(["summary", "resnet18", "--depth", "1", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["depth"] == 1 and "layers" not in data and [g["name"] for g in data["groups"]][4] == "layer1"
    assert data["groups"][4]["output_shape"] == [1, 64, 56, 56] and data["totals"]["params"] == 11_689_512
    assert cli_main(["summary", "resnet18", "--depth", "1", "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("| ") for line in out.splitlines()) == len(groups) + 1
    assert "| layer1 | 14 |" in out and out.endswith(" bytes\n")


def test_cli_by_type_in_every_format(capsys):
    kinds = cs.summary("mobilenet_v1").by_type()
    assert cli_main(["summary", "mobilenet_v1", "--by-type", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["by_type"] == kinds
    assert cli_main(["summary", "mobilenet_v1", "--by-type", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "type,layers,macs,macs_share,params,params_share" and len(lines) == len(kinds) + 1
    assert lines[1].startswith(f"Conv2d 1×1,13,{kinds[0]['macs']},")
    assert cli_main(["summary", "mobilenet_v1", "--by-type", "--format", "md"]) == 0
    assert "| Conv2d 1×1 | 13 | 539,492,352 | 94.86% | 3,139,584 | 74.19% |" in capsys.readouterr().out


@pytest.mark.parametrize("options, message", [
    (["--compare", "--format", "csv"], "--compare cannot show --format csv"),
    (["--compare", "--format", "md"], "--compare cannot show --format md"),
    (["--compare", "--by-type"], "--compare cannot show --by-type"),
    (["--compare", "--depth", "1"], "--compare cannot show --depth"),
    (["--compare", "--convention", "paper"], "--compare cannot show --convention"),
    (["--by-type", "--depth", "1"], "--by-type cannot show --depth"),
    (["--by-type", "--training"], "--by-type cannot show --training"),
    (["--format", "csv", "--erf"], "--format csv cannot show --erf"),
    (["--optimizer", "adam"], "--optimizer names the optimizer state that --training counts"),
])
def test_cli_refuses_options_the_view_would_ignore(capsys, options, message):
    assert cli_main(["summary", "seed", *options]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"convscope summary: error: {message}") and err.count("\n") == 1


def test_cli_markdown_ends_with_a_newline(capsys):
    assert cli_main(["summary", "seed", "--format", "md"]) == 0
    assert capsys.readouterr().out.endswith(" bytes\n")
    assert cs.summary("seed").to_markdown().endswith(" bytes\n")


def test_cli_an_error_before_any_row_prints_no_table(capsys):
    assert cli_main(["summary", "vgg16", "--input", "1x224x224"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("convscope summary: error: features.0 (Conv2d): expected input with 3")


def test_cli_input_is_one_sample_without_batch(capsys):
    for shape in ("3x224x224x1", "2x3x224x224"):
        assert cli_main(["summary", "resnet18", "--input", shape]) == 2
        out, err = capsys.readouterr()
        assert out == "" and f"--input {shape} has 4 dims" in err and "without batch" in err


def test_cli_model_argument_errors_name_the_problem(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text("from convscope import nn\n\ndef five():\n    return 5\n\n"
                                   "def needs(x):\n    return nn.Conv2d(3, 8, 3)\n\n"
                                   "def bare():\n    return nn.Sequential(nn.Conv2d(3, 8, 3))\n")
    cases = [(["nonexist.spec"], "no such file or folder 'nonexist.spec'; MODEL is 'digits'"),
             (["m.py"], "m.py is a Python file: name the function that returns the model, as m.py:FUNCTION"),
             (["m.py:five"], "m.py:five: five() returned a value of type int, not a convscope or torch module"),
             (["m.py:needs", "--input", "3x8x8"], "m.py:needs: calling needs() failed: needs() missing 1 required "
                                                  "positional argument"),
             (["m.py:bare"], "m.py:bare has no input shape of its own: give one (input_shape=(3, 224, 224), "
                             "or --input 3x224x224")]
    for argv, message in cases:
        assert cli_main(["summary", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(f"convscope summary: error: {message}") and "Traceback" not in err, err


def test_cli_summary_of_the_shipped_digits_cnn(capsys):
    assert cli_main(["summary", "digits", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "digits" and data["input_shapes"] == [[1, 1, 8, 8]]
    assert data["totals"]["params"] == 43_050


def test_table_columns_never_run_into_each_other():
    """A 3-d field at an input-dependent size ("20×40×40*") is wider than the RF column was."""
    model = nn.Sequential(nn.Conv3d(1, 4, (3, 5, 7)), nn.AdaptiveAvgPool3d(1))
    lines = str(cs.summary(model, (1, 20, 40, 40))).splitlines()
    assert lines[3].split() == ["0", "(Conv3d)", "4×18×36×34", "424", "9.25M", "3×5×7"]
    assert lines[4].split() == ["1", "(AdaptiveAvgPool3d)", "4×1×1×1", "0", "0", "20×40×40*"]
    assert len({len(line) for line in lines[1:6]}) == 1 and len(lines[1]) <= 80


def test_cli_zoo_marks_cut_descriptions(capsys):
    assert cli_main(["zoo"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert len(lines) == len(cs.zoo.names())
    for name, line in zip(cs.zoo.names(), lines):
        full, shown = cs.zoo.entry(name).description, line.split("  ")[-1]
        assert shown == full if len(full) <= 40 else (len(shown) == 40 and shown == full[:39] + "…"), line


def test_sizes_past_a_billion_get_tera_and_peta_units():
    """A 10⁶ × 10⁶ input's activations print in TB, not as 20,000 GB."""
    from convscope.analyze.render import human
    from convscope.viz.costs import compact

    assert (human(1.99999e13), human(3.2e15), human(5e9)) == ("20.00T", "3.20P", "5.00G")
    assert (compact(1.5e12), compact(2e15), compact(4e9)) == ("1.5T", "2P", "4G")
    with nn.meta_parameters():
        net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2))
    assert "Activations: peak 20.00TB" in str(cs.summary(net, (3, 10**6, 10**6)))
