"""Receptive fields on any graph, checked by brute force: the summary's box for one output
unit against the input cells that unit's gradient reaches (float64, smooth activations) and
against the trace's structural influence mask, on random branching networks of convolutions,
pools, transposed convolutions, resizes, additions and concatenations. Then the effective
receptive field (Luo et al. 2016) on nets whose behaviour is known in closed form."""

import math

import numpy as np
import pytest

import convscope as cs
from convscope import nn
from convscope.analyze.erf import effective_receptive_field
from convscope.trace import trace


class RandomNet(nn.Module):
    """A random DAG: each node applies one layer to an earlier node, or adds or concatenates
    two earlier nodes of one spatial size; the output combines the last node with others."""

    def __init__(self, layers: list, plan: list) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.plan = plan  # (kind, input nodes, layer index or None)

    def forward(self, x):
        nodes = [x]
        for kind, args, layer in self.plan:
            if kind == "add":
                nodes.append(nodes[args[0]] + nodes[args[1]])
            elif kind == "cat":
                nodes.append(cs.cat([nodes[args[0]], nodes[args[1]]], 1))
            else:
                nodes.append(self.layers[layer](nodes[args[0]]).tanh())
        return nodes[-1].sigmoid()  # the trace follows a value made by a layer or an activation


def _layer(rng, kind, c, size):
    """One layer of ``kind`` on ``c`` channels of spatial ``size`` (h, w), or None if the
    drawn hyper-parameters do not fit; returns (layer, out channels, out size)."""
    c_out = int(rng.integers(1, 4))
    h, w = size
    if kind == "conv":
        k = tuple(int(v) for v in rng.choice([1, 2, 3, 5], 2))
        s = tuple(int(v) for v in rng.choice([1, 1, 2, 3], 2))
        d = tuple(int(v) for v in rng.choice([1, 1, 2], 2))
        p = tuple(int(rng.integers(0, kk // 2 + 2)) for kk in k)
        layer = nn.Conv2d(c, c_out, k, s, p, d)
        out = [(n + 2 * pp - dd * (kk - 1) - 1) // ss + 1 for n, kk, ss, pp, dd in zip(size, k, s, p, d)]
    elif kind == "avgpool":
        k = int(rng.choice([2, 3]))
        s = int(rng.choice([1, 2, k]))
        p = int(rng.integers(0, k // 2 + 1))
        layer, c_out = nn.AvgPool2d(k, s, p, ceil_mode=bool(rng.integers(2))), c
        out = list(layer(cs.Tensor.meta((1, c, h, w))).shape[2:]) if min(h, w) + 2 * p >= k else [0]
    elif kind == "tconv":
        k, s = int(rng.choice([2, 3, 4])), int(rng.choice([1, 2]))
        d, p = int(rng.choice([1, 2])), int(rng.integers(0, 2))
        op = int(rng.integers(0, s))
        layer = nn.ConvTranspose2d(c, c_out, k, s, p, op, dilation=d)
        out = [(n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n in size]
    elif kind == "upsample":
        mode = str(rng.choice(["nearest", "bilinear", "nearest-exact"]))
        corners = bool(rng.integers(2)) if mode == "bilinear" else None
        if rng.integers(2):
            layer = nn.Upsample(scale_factor=float(rng.choice([2, 3, 1.5])), mode=mode, align_corners=corners)
        else:
            layer = nn.Upsample(size=(int(h * 1.7) + 1, int(w * 1.3) + 1), mode=mode, align_corners=corners)
        layer_out = layer(cs.Tensor.meta((1, c, h, w)))
        out, c_out = list(layer_out.shape[2:]), c
    else:  # adaptive average pooling to a smaller, uneven size
        target = (max(1, h * 2 // 3), max(1, w * 3 // 5))
        layer, c_out, out = nn.AdaptiveAvgPool2d(target), c, list(target)
    if min(out) < 2 or max(out) > 40:
        return None
    return layer, c_out, tuple(out)


def random_net(seed: int, kinds=("conv", "conv", "conv", "avgpool", "tconv", "upsample", "adaptive")):
    rng = np.random.default_rng(seed)
    cs.manual_seed(seed)
    nodes = [(1, (23, 19))]  # (channels, spatial size) of each node; node 0 is the input
    layers, plan = [], []
    while len(plan) < 7:
        pairs = [(i, j) for i in range(len(nodes)) for j in range(i + 1, len(nodes)) if nodes[i][1] == nodes[j][1]]
        if pairs and rng.random() < 0.35:
            i, j = pairs[int(rng.integers(len(pairs)))]
            (ci, size), (cj, _) = nodes[i], nodes[j]
            kind = "add" if ci == cj else "cat"
            plan.append((kind, (i, j), None))
            nodes.append((ci if kind == "add" else ci + cj, size))
            continue
        src = int(rng.integers(max(0, len(nodes) - 3), len(nodes)))  # mostly deep chains
        made = _layer(rng, str(rng.choice(kinds)), *nodes[src])
        if made is None:
            continue
        layer, c_out, size = made
        plan.append(("layer", (src,), len(layers)))
        layers.append(layer)
        nodes.append((c_out, size))
    return RandomNet(layers, plan).double(), plan


def _units(shape, rng, count=5):
    """Output units to test: the corners, the centre, and random ones."""
    spatial = shape[2:]
    picks = [tuple(0 for _ in spatial), tuple(s - 1 for s in spatial), tuple(s // 2 for s in spatial)]
    picks += [tuple(int(rng.integers(s)) for s in spatial) for _ in range(count - len(picks))]
    return [(0, int(rng.integers(shape[1])), *p) for p in picks]


def _check(model, x_shape, seed, exact_possible):
    """Every tested unit's gradient support lies in its box; where the box lies inside the
    input along an axis of a net of windows only, the support spans exactly the box; the support
    equals the trace's influence mask (smooth activations, generic weights)."""
    field = cs.summary(model, x_shape[1:], dtype=np.float64).rows[-1].receptive_field
    assert isinstance(field, list) and len(field) == 2
    rng = np.random.default_rng(seed)
    x_data = rng.standard_normal(x_shape)
    x = cs.tensor(x_data, requires_grad=True)
    out = model(x)
    exact = 0
    for index in _units(out.shape, rng):
        x.grad = None
        model(x)[index].backward()
        support = x.grad[0, 0] != 0
        mask = trace(model, x_data, "", index).influence()[0, 0]
        assert np.array_equal(support, mask), (seed, index)
        cells = np.nonzero(support)
        if not cells[0].size:  # the unit reads only padding (the box of a padding cell may still overlap the input)
            continue
        for axis, (a, pos) in enumerate(zip(field, index[2:])):
            lo = a.start + pos * a.jump
            hi = lo + a.size - 1
            first, last = int(cells[axis].min()), int(cells[axis].max())
            assert lo - 1e-9 <= first and last <= hi + 1e-9, (seed, index, axis, (lo, hi), (first, last))
            if exact_possible and lo >= 0 and hi <= x_shape[2 + axis] - 1:
                assert (first, last) == (lo, hi), (seed, index, axis)
                exact += 1
    return exact


@pytest.mark.parametrize("seed", range(12))
def test_random_dag_box_contains_the_gradient_support(seed):
    model, plan = random_net(seed)
    windows_only = all(isinstance(m, (nn.Conv2d, nn.AvgPool2d)) for m in model.layers)
    _check(model, (1, 1, 23, 19), seed, exact_possible=windows_only)


def test_random_dags_of_windows_are_exact_where_inside_the_input():
    """Convolutions, average pools, additions and concatenations only: integral jumps, so
    every unit whose box lies inside the input has the box as its support's extent; and
    where the net has no gaps (no dilation, no stride beyond the kernel) the support fills it."""
    exact_axes = 0
    for seed in range(100, 112):
        model, plan = random_net(seed, kinds=("conv", "avgpool"))
        exact_axes += _check(model, (1, 1, 23, 19), seed, exact_possible=True)
    assert exact_axes >= 20  # the exact comparison really ran


def test_box_equals_support_set_without_gaps():
    """A branching net with no dilation holes: the support is the whole box."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 2, 3, padding=1)
            self.b = nn.Conv2d(1, 2, (5, 3), stride=(2, 1), padding=(2, 1))
            self.c = nn.Conv2d(2, 2, 3, stride=2, padding=1)
            self.pool = nn.AvgPool2d(3, 1, 1)
            self.head = nn.Conv2d(4, 1, 3)

        def forward(self, x):
            y = self.c(self.a(x).tanh()) + self.b(x).tanh()[:, :, :, ::2]
            return self.head(cs.cat([self.pool(y), y.sigmoid()], 1))

    model = Net().double()
    cs.manual_seed(0)
    field = cs.summary(model, (1, 25, 25), dtype=np.float64).rows[-1].receptive_field
    x = cs.tensor(np.random.default_rng(0).standard_normal((1, 1, 25, 25)), requires_grad=True)
    model(x)[0, 0, 3, 4].backward()
    lo = [int(a.start + p * a.jump) for a, p in zip(field, (3, 4))]
    box = np.zeros((25, 25), bool)
    box[lo[0]:lo[0] + int(field[0].size), lo[1]:lo[1] + int(field[1].size)] = True
    assert np.array_equal(x.grad[0, 0] != 0, box)


def test_fractional_jumps_are_attained():
    """After upsampling and transposed convolution the box is an affine bound: every unit's
    support lies inside it, and some unit reaches each of its ends."""
    up = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.Tanh(), nn.Upsample(scale_factor=2.0), nn.Conv2d(1, 1, 3),
                       nn.Tanh(), nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1)).double()
    field = cs.summary(up, (1, 21, 21), dtype=np.float64).rows[-1].receptive_field
    x = cs.tensor(np.random.default_rng(0).standard_normal((1, 1, 21, 21)), requires_grad=True)
    out = up(x)
    low_hit = high_hit = False
    for i in range(out.shape[2]):
        x.grad = None
        up(x)[0, 0, i, 5].backward()
        rows = np.nonzero((x.grad[0, 0] != 0).any(axis=1))[0]
        lo = field[0].start + i * field[0].jump
        hi = lo + field[0].size - 1
        assert lo <= rows.min() and rows.max() <= hi
        low_hit |= 0 <= lo and rows.min() == math.ceil(lo)
        high_hit |= hi <= 20 and rows.max() == math.floor(hi)
    assert low_hit and high_hit


def test_adaptive_pooling_is_reported_as_input_size_dependent():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d((3, 3)), nn.Flatten(), nn.Linear(18, 2))
    s = cs.summary(model, (1, 17, 17))
    rows = s.to_dict()["layers"]
    assert [a["input_dependent"] for a in rows[0]["receptive_field"]] == [False, False]
    pooled = rows[1]["receptive_field"]
    assert all(a["input_dependent"] for a in pooled)
    # 15 cells into 3 bins of 5: each unit sees 3 + 4 = 7 input pixels, stepping 5
    assert (pooled[0]["size"], pooled[0]["jump"]) == (7, 5)
    assert (cs.summary(model, (1, 23, 23)).rows[1].receptive_field[0].size, 9)[0] == 9  # 21 cells: bins of 7
    table = str(s)
    assert "7*" in table and "RF*: at this input size only" in table


# --- effective receptive field -------------------------------------------------------------
def _uniform_stack(depth: int) -> nn.Sequential:
    layers = []
    for _ in range(depth):
        conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        conv.weight.data[...] = 1 / 9
        layers.append(conv)
    return nn.Sequential(*layers).double()


def test_erf_of_uniform_convs_is_the_binomial_kernel():
    """n uniform 3×3 convs: the central unit's gradient is the n-fold convolution of the
    box [1, 1, 1]/3 per axis (a trinomial distribution), whatever the input."""
    depth = 4
    erf = effective_receptive_field(_uniform_stack(depth), (1, 33, 33), samples=2)
    kernel = np.array([1.0])
    for _ in range(depth):
        kernel = np.convolve(kernel, np.ones(3) / 3)
    expected = np.zeros(33)
    expected[16 - depth:16 + depth + 1] = kernel
    assert np.allclose(erf.density, np.outer(expected, expected))
    assert erf.theoretical == (2 * depth + 1, 2 * depth + 1)


def test_erf_radius_grows_like_the_square_root_of_depth():
    """Luo et al.: the ERF of uniform stacks is Gaussian with σ² = n·2/3 per axis (the
    variance of one uniform 3-tap kernel is 2/3), so its 95 % radius grows like √n while the
    theoretical field grows like n."""
    radii = {}
    for depth in (8, 32):
        erf = effective_receptive_field(_uniform_stack(depth), (1, 81, 81), samples=1)
        sigma = math.sqrt(2 * depth / 3)
        radii[depth] = erf.radius
        assert abs(erf.radius - sigma * math.sqrt(2 * math.log(20))) <= 0.5  # the 95 % disc of a 2-d Gaussian
        assert abs(erf.box[0] - (2 * 1.96 * sigma + 1)) <= 2  # the 95 % interval of its marginal
        assert erf.box[0] < erf.theoretical[0] == 2 * depth + 1
    assert 1.8 < radii[32] / radii[8] < 2.2  # √(32/8) = 2; the theoretical field grows 4×


def test_erf_on_real_weights_and_model_untouched():
    cs.manual_seed(0)
    model = cs.zoo.build("seed").train()
    state = {k: v.copy() for k, v in model.state_dict().items()}
    erf = effective_receptive_field(model, (1, 28, 28), samples=3)
    assert model.training and all(np.array_equal(state[k], v) for k, v in model.state_dict().items())
    assert erf.density.shape == (28, 28) and abs(erf.density.sum() - 1) < 1e-6
    assert erf.box[0] <= erf.theoretical[0] == 7 and erf.radius <= math.hypot(3, 3)  # inside the 7×7 field
    s = cs.summary(model, (1, 28, 28), erf=True)
    assert s.erf is not None and s.to_dict()["erf"]["radius"] == pytest.approx(s.erf.radius)
    assert "Effective RF" in str(s)


def test_erf_density_matches_torch_autograd_over_a_batch():
    """The inputs run one at a time; the density is torch's gradient of the central unit over
    the whole batch at once, in absolute value, summed over channels, averaged and normalised."""
    torch = pytest.importorskip("torch")
    cs.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Tanh(),
                          nn.Conv2d(3, 2, 3, stride=2, dilation=2, padding=2)).double().eval()
    model[1].running_mean.data[...] = [0.1, -0.2, 0.3]
    twin = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.BatchNorm2d(3), torch.nn.Tanh(),
                               torch.nn.Conv2d(3, 2, 3, stride=2, dilation=2, padding=2)).double().eval()
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    erf = effective_receptive_field(model, (2, 11, 11), samples=4, seed=5)
    x = torch.from_numpy(np.random.default_rng(5).standard_normal((4, 2, 11, 11))).requires_grad_()
    twin(x)[:, :, 3, 3].sum().backward()
    expected = x.grad.abs().sum(1).mean(0).numpy()
    np.testing.assert_allclose(erf.density, expected / expected.sum(), rtol=1e-12, atol=1e-15)


def test_erf_progress_bar_counts_the_inputs_on_a_terminal_only(monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, shown in ((io.StringIO(), False), (Terminal(), True)):
        monkeypatch.setattr(sys, "stderr", stream)
        effective_receptive_field(_uniform_stack(2), (1, 9, 9), samples=3, progress=True)
        assert ("3/3" in stream.getvalue()) is shown and ("effective receptive field" in stream.getvalue()) is shown


def test_channels_last_blocks_keep_each_pixels_field():
    """ConvNeXt's blocks run the pointwise part on channels-last maps (permute → layer norm
    over C → linear → GELU → linear → permute back): the box still equals the gradient support
    of a unit, where a layer norm or linear over a spatial dim would make it global."""
    from convscope.zoo.convnext import ConvNeXt, LayerNorm2d, Permute

    model = ConvNeXt((4, 6), (1, 1), stochastic_depth=0.0, layer_scale=1.0).features.double()
    x = cs.tensor(np.random.default_rng(0).standard_normal((1, 3, 128, 128)), requires_grad=True)
    rows = {r.name: r for r in cs.summary(model, (3, 128, 128), dtype=np.float64).rows}
    assert [rows[f"1.0.block.{i}"].receptive_field[0].size for i in (0, 3, 6)] == [4 + 6 * 4] * 3
    field = rows["3.0"].receptive_field
    assert [a.size for a in field] == [4 + 6 * 4 + 4 + 6 * 8] * 2
    for unit in ((7, 8), (8, 8)):
        x.grad = None
        model(x)[0, 1, unit[0], unit[1]].backward()
        support = np.nonzero((x.grad[0] != 0).any(0))
        box = [(int(a.start + p * a.jump), int(a.start + p * a.jump + a.size - 1)) for a, p in zip(field, unit)]
        assert all(0 <= lo and hi < 128 for lo, hi in box)
        assert [(int(s.min()), int(s.max())) for s in support] == box

    def field_after(*layers):
        net = nn.Sequential(nn.Conv2d(2, 4, 3), *layers)
        return cs.summary(net, (2, 9, 9)).rows[-1].receptive_field

    assert field_after(Permute([0, 2, 3, 1]), nn.LayerNorm(4))[0].size == 3
    assert field_after(Permute([0, 2, 3, 1]), nn.Linear(4, 5), Permute([0, 3, 1, 2]), nn.Conv2d(5, 1, 3))[0].size == 5
    assert field_after(LayerNorm2d(4))[1].size == 3
    assert field_after(nn.LayerNorm(7)) == "global"  # over W
    assert field_after(nn.Linear(7, 3)) == "global"  # over W
    assert field_after(Permute([0, 2, 3, 1]), nn.Conv2d(7, 1, 1)) == "global"  # a conv over (W, C) planes
    assert field_after(Permute([1, 0, 2, 3])) == "global"  # the batch dim moved


def test_channels_last_blocks_keep_their_fields_through_onnx(tmp_path):
    """An ONNX file writes a linear layer on a channels-last map as ``x @ Transpose(W) + b``
    (convscope's export, torch's with W pre-transposed): a matmul by a weight over the
    channels keeps each pixel's field, and the loaded model's fields are the model's."""
    pytest.importorskip("onnx")
    from convscope.interop.onnx_export import export_onnx
    from convscope.zoo.convnext import ConvNeXt

    model = ConvNeXt((4, 6), (1, 1), stochastic_depth=0.0, layer_scale=1.0).eval()
    export_onnx(model, tmp_path / "c.onnx", (3, 64, 64))

    def sizes(path_or_model):  # the field sizes along the rows, once each (weights and constants have none)
        rows = cs.summary(path_or_model, (3, 64, 64)).rows
        seen = [tuple(a.size for a in r.receptive_field) if isinstance(r.receptive_field, list) else r.receptive_field
                for r in rows if r.receptive_field is not None]
        return [s for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]

    assert sizes(model) == [(4, 4), (28, 28), (32, 32), (80, 80), (136, 136), "global"]
    assert sizes(str(tmp_path / "c.onnx")) == sizes(model)
