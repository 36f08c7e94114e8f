"""convscope.viz: figures and animations drawn from engine values.

The checks read content back: graph structure and the ids in the SVG, bar widths, pixel
colours of the rendered PNG, the arrays drawn, every animation frame's numbers against
torch, GIF frame counts. Expected values come from torch, from the papers (ResNet block
counts, MobileNet Table 2) or from hand geometry, never from convscope's own output.
"""

from __future__ import annotations

import argparse
import doctest
import importlib
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("matplotlib")
PIL = pytest.importorskip("PIL")
torch = pytest.importorskip("torch")

import matplotlib  # noqa: E402
from PIL import Image, ImageSequence  # noqa: E402

import convscope as cs  # noqa: E402
from convscope.data import digits  # noqa: E402
from convscope.train import History  # noqa: E402
from convscope.viz import (  # noqa: E402
    animate,
    architecture,
    costs,
    featuremaps,
    filters,
    frames,
    graph,
    receptive,
    style,
    training,
)
from convscope.viz.cli import add_cli  # noqa: E402
from convscope.viz.figure import save, to_array  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TF = torch.nn.functional


def _digits_torch(net: cs.nn.Module) -> torch.nn.Module:
    """The digits CNN rebuilt in torch with the same weights (float64)."""
    tnn = torch.nn
    ref = tnn.Sequential(tnn.Conv2d(1, 32, 3, padding=1), tnn.ReLU(), tnn.Conv2d(32, 32, 3, padding=1), tnn.ReLU(),
                         tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(512, 64), tnn.ReLU(), tnn.Linear(64, 10)).double()
    ref.load_state_dict({k: torch.tensor(np.asarray(v, np.float64)) for k, v in net.state_dict().items()})
    return ref.eval()


# --- packaging -------------------------------------------------------------------------------------
def test_import_convscope_and_viz_do_not_import_matplotlib_or_pillow() -> None:
    code = "import sys, convscope, convscope.viz; print('matplotlib' in sys.modules, 'PIL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


# --- architecture ----------------------------------------------------------------------------------
def test_googlenet_graph_has_nine_inception_modules_each_a_four_branch_concat() -> None:
    g = graph.build_graph("googlenet")
    inceptions = [grp for grp in g.groups if grp.type == "Inception"]
    assert [grp.name for grp in inceptions] == [f"inception{s}" for s in ("3a", "3b", "4a", "4b", "4c", "4d", "4e",
                                                                          "5a", "5b")]
    # GoogLeNet Table 1 output channels of the modules.
    assert [g.node(grp.nodes[-1]).output_shape[0] for grp in inceptions] == [256, 480, 512, 512, 512, 528, 832, 832,
                                                                             1024]
    for grp in inceptions:
        merge = g.node(grp.nodes[-1])
        assert merge.family == "merge" and len(merge.inputs) == 4
        assert set(merge.inputs) <= set(grp.nodes)
        assert sum(g.node(i).output_shape[0] for i in merge.inputs) == merge.output_shape[0]


def test_googlenet_diagram_draws_nine_labelled_groups(tmp_path: Path) -> None:
    fig = architecture.architecture_diagram("googlenet", out=tmp_path / "g.svg")
    svg = (tmp_path / "g.svg").read_text()
    names = [f"inception{s}" for s in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]
    for name in names:
        assert svg.count(f'id="group-{name}"') == 1 and svg.count(f'id="group-{name}-label"') == 1
    assert svg.count('id="group-') == 2 * len(names)
    labels = [t.get_text() for t in fig.axes[0].texts if (t.get_gid() or "").endswith("-label")]
    assert sorted(label.split("\n")[0] for label in labels) == sorted(f"{n}: Inception" for n in names)


@pytest.mark.parametrize("model", ["digits", "googlenet", "resnet18", "mobilenet_v2", "squeezenet1_1", "lenet5"])
def test_graph_edges_carry_the_shapes_the_layers_consumed(model: str) -> None:
    g = graph.build_graph(model, collapse=0)
    for node in g.nodes[1:]:
        produced = [g.node(p).output_shape for p in node.inputs]
        assert produced, node.name
        assert all(shape in node.input_shapes for shape in produced), (node.name, produced, node.input_shapes)
    positions = list(architecture.layout(g).position.values())
    assert len(positions) == len(set(positions))


def test_resnet_shortcuts_are_merges_of_the_block_input_and_its_last_conv() -> None:
    g = graph.build_graph("resnet18")
    assert len(g.groups) == 8
    for grp in g.groups:
        add = g.node(grp.nodes[-1])
        assert add.label == "add" and len(add.inputs) == 2
        outside = [p for p in add.inputs if p not in grp.nodes]
        projected = [n for n in grp.nodes if g.node(n).label.startswith("Conv 1×1")]
        # identity shortcut from outside the block, or a 1×1 projection inside it (layer2-4 .0)
        assert (len(outside), len(projected)) in ((1, 0), (0, 1))
    assert sum(1 for grp in g.groups if any(g.node(n).label.startswith("Conv 1×1") for n in grp.nodes)) == 3


def test_graph_of_a_small_input_that_leaves_one_value_per_channel_for_batch_norm() -> None:
    # ResNet-18 at CIFAR size ends in 512×1×1 maps: batch statistics of one value per channel
    # are undefined, so the drawing uses the running statistics, as the summary does
    g = graph.build_graph("resnet18", (3, 32, 32))
    assert g.nodes[-1].output_shape == (1000,) and g.nodes[-4].output_shape == (512, 1, 1)
    net = cs.zoo.build("mobilenet_v2")
    net.train()
    graph.build_graph(net, (3, 32, 32))
    assert all(m.training for m in net.modules())  # the model's modes are as they were


def test_resnet152_collapses_repeated_bottlenecks_and_keeps_the_count() -> None:
    g = graph.build_graph("resnet152")
    assert len(g.nodes) < 60
    stages = {}
    for grp in g.groups:
        stages[grp.name.split(".")[0]] = stages.get(grp.name.split(".")[0], 0) + grp.repeat
    assert stages == {"layer1": 3, "layer2": 8, "layer3": 36, "layer4": 3}  # He et al., Table 1
    run = next(grp for grp in g.groups if grp.repeat == 35)
    assert (run.name, run.last) == ("layer3.1", "layer3.35")
    assert len(graph.build_graph("resnet152", collapse=0).groups) == 50


def test_digits_graph_folds_activations_into_their_producers() -> None:
    labels = [n.text() for n in graph.build_graph("digits").nodes]
    assert labels == ["input", "Conv 3×3 · ReLU", "Conv 3×3 · ReLU", "MaxPool 2×2", "flatten", "Linear 512→64 · ReLU",
                      "Linear 64→10"]
    with pytest.raises(ValueError, match="collapse"):
        graph.build_graph("digits", collapse=1)


# --- costs ----------------------------------------------------------------------------------------
def test_cost_bars_are_the_summary_numbers() -> None:
    fig = costs.cost_chart("digits")
    rows = cs.summary(cs.pretrained("digits"), (1, 8, 8)).rows
    expected = [[r.params for r in rows], [r.macs for r in rows], [r.activation_bytes for r in rows]]
    drawn = [[bar.get_width() for bar in ax.patches] for ax in fig.axes[:3]]
    assert drawn == expected
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [f"{r.name} ({r.type})" for r in rows]


def test_grouped_cost_bars_add_up_to_the_totals() -> None:
    s = cs.summary("resnet50")
    bars = costs.cost_bars(s, depth=1)
    assert sum(bars.params) == s.totals.params and sum(bars.macs) == s.totals.macs
    assert sum(bars.memory) == sum(r.activation_bytes for r in s.rows)
    auto = costs.cost_bars(cs.summary("resnet152"))
    assert auto.depth is not None and len(auto.labels) <= costs.MAX_BARS


def test_share_chart_reproduces_mobilenet_table_2() -> None:
    fig = costs.share_chart("mobilenet_v1", convention="paper")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    macs = dict(zip(labels, (bar.get_width() for bar in fig.axes[0].patches)))
    params = dict(zip(labels, (bar.get_width() for bar in fig.axes[1].patches)))
    # Howard et al. 2017, Table 2: share of mult-adds and parameters per layer type
    for kind, (mult_adds, parameters) in {"Conv2d 1×1 ×13": (94.86, 74.59), "Conv2d 3×3 depthwise ×13": (3.06, 1.06),
                                          "Linear ×1": (0.18, 24.33)}.items():
        assert macs[kind] == pytest.approx(mult_adds, abs=0.01)
        assert params[kind] == pytest.approx(parameters, abs=0.01)


# --- filters --------------------------------------------------------------------------------------
def test_filter_grid_tiles_hold_the_weights_and_grouped_layouts_show_the_blocks() -> None:
    w = np.random.default_rng(0).normal(size=(16, 2, 3, 3))
    grid = filters.filter_grid(w, groups=4)
    assert grid.layout == "pairs" and grid.total == (16, 8)
    assert len(grid.tiles) == 16 * 2 and len(grid.missing) == 16 * 6
    for (o, i), (top, left) in grid.tiles.items():
        assert i // 2 == o // 4  # input channel i feeds only the 4 filters of its group
        assert np.array_equal(grid.values[top:top + 3, left:left + 3], w[o, i % 2])
    depthwise = filters.filter_grid(w[:8, :1], groups=8)
    assert sorted(depthwise.tiles) == [(c, c) for c in range(8)]


def test_filter_image_pixels_follow_the_weights(tmp_path: Path) -> None:
    net = cs.pretrained("digits")
    w = net[0].weight.numpy()[:, 0]
    fig = filters.filter_figure(net, "0", out=tmp_path / "f.png")
    image = np.asarray(Image.open(tmp_path / "f.png").convert("RGB")).astype(int)
    ax = fig.axes[0]
    grid = filters.filter_grid(net[0].weight.numpy())
    # colour-map entry k shows the values in [k, k + 1) / 256 of the range
    lut = (matplotlib.colormaps[style.DIVERGING](np.arange(256))[:, :3] * 255).round().astype(int)
    shown, weights = [], []
    for (o, _), (top, left) in grid.tiles.items():
        for r in range(3):
            for c in range(3):
                px, py = ax.transData.transform((left + c, top + r))
                colour = image[int(image.shape[0] - py), int(px)]
                shown.append(int(np.argmin(((lut - colour) ** 2).sum(axis=1))))
                weights.append(w[o, r, c])
    shown, weights = np.array(shown), np.array(weights)
    recovered = (shown + 0.5) / 256 * 2 * grid.limit - grid.limit
    assert np.abs(recovered - weights).max() <= 2 * (2 * grid.limit / 256)  # within two colour steps
    order = np.argsort(weights, kind="stable")
    assert np.all(np.diff(shown[order]) >= 0)  # monotone: a larger weight never gets a lower colour


# --- feature maps, receptive fields ---------------------------------------------------------------
def test_feature_maps_draw_every_layers_activations_with_one_scale_per_row() -> None:
    net = cs.pretrained("digits")
    fig = featuremaps.feature_maps(net, digit=5, max_channels=4)
    x = digits("test")[0][5:6]
    ref = _digits_torch(net)
    expected, scales, h = [x[0, 0]], [(x.min(), x.max())], torch.tensor(x, dtype=torch.float64)
    for layer in ref:
        h = layer(h)
        value = h.detach().numpy()[0]
        shown = list(value[:4]) if value.ndim == 3 else [value[None]]
        expected += shown
        scales += [(value.min(), value.max())] * len(shown)  # one scale for the whole layer
    images = [im for ax in fig.axes for im in ax.images]
    assert len(images) == len(expected)
    for im, want, (lo, hi) in zip(images, expected, scales):
        np.testing.assert_allclose(np.asarray(im.get_array()), want, rtol=1e-4, atol=1e-4)
        assert (im.norm.vmin, im.norm.vmax) == pytest.approx((lo, hi), abs=1e-4)


def test_feature_maps_have_no_more_columns_than_the_widest_layer_has_channels() -> None:
    net = cs.pretrained("digits")  # at most 32 channels per layer
    wide, exact = (featuremaps.feature_maps(net, max_channels=n) for n in (100_000, 32))
    assert wide.get_size_inches() == pytest.approx(exact.get_size_inches())
    assert len(wide.axes) == len(exact.axes)
    assert "the first 32 channels of each layer" in wide.texts[0].get_text()


def test_receptive_masks_follow_the_conv_and_pool_geometry() -> None:
    net = cs.pretrained("digits")
    x = digits("test")[0][:1]
    panels = {p.layer: p for p in receptive.field_panels(net, x)}
    box = lambda lo, hi: np.pad(np.ones((hi - lo + 1,) * 2, bool), ((lo, 7 - hi),) * 2)  # noqa: E731
    assert panels["0"].index == (0, 0, 4, 4) and np.array_equal(panels["0"].mask, box(3, 5))  # one 3×3
    assert np.array_equal(panels["2"].mask, box(2, 6))  # two 3×3: 5×5
    assert panels["4"].index == (0, 0, 2, 2) and np.array_equal(panels["4"].mask, box(2, 7))  # 2×2 pool of 5×5
    assert panels["8"].mask.all()  # a logit sees every pixel


class _Gated(cs.nn.Module):
    """A squeeze-and-excitation gate: every output unit after it sees the whole input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.pool, self.out = cs.nn.Conv2d(1, 2, 3, padding=1), cs.nn.AdaptiveAvgPool2d(1), \
            cs.nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: cs.Tensor) -> cs.Tensor:
        h = self.conv(x)
        return self.out(h * cs.functional.sigmoid(self.pool(h)))


def test_receptive_panels_after_a_broadcast_gate() -> None:
    """Past an SE gate units step 0 pixels (their fields all coincide): the middle unit is
    drawn, and it sees every pixel (this divided by the zero jump)."""
    panels = {p.layer: p for p in receptive.field_panels(_Gated(), digits("test")[0][:1])}
    assert panels["conv"].index == (0, 0, 4, 4) and panels["conv"].mask.sum() == 9
    assert panels["out"].index == (0, 0, 4, 4) and panels["out"].mask.all()


def test_receptive_panels_for_layers_trace_cannot_narrate() -> None:
    """LeNet-5's scaled tanh (a product) and RBF output have no one-layer provenance, but
    their influence is well defined: a 5×5 conv's 25 pixels, then 2×2 subsampling's 6×6, and
    every pixel for the output."""
    x = np.random.default_rng(0).random((1, 1, 32, 32), np.float32)
    panels = {p.layer: p for p in receptive.field_panels(cs.zoo.build("lenet5").eval(), x)}
    assert [panels[n].mask.sum() for n in ("c1", "c1_act", "s2", "s2_act")] == [25, 25, 36, 36]
    assert panels["output"].mask.all()


def test_receptive_panels_of_a_block_and_of_a_second_call() -> None:
    """A block (ResNet's ``layer1``, a Sequential) is traced at its output, which its last
    ReLU's second call (``layer1.1.relu#2``) made: the same unit, the same pixels. Both names
    used to fail (the first refused, the second a KeyError)."""
    net = cs.zoo.build("resnet18").eval()
    x = np.random.default_rng(0).random((1, 3, 96, 96), np.float32)
    block, relu = receptive.field_panels(net, x, ["layer1", "layer1.1.relu#2"])
    assert (block.type, relu.type) == ("Sequential", "ReLU") and block.index == relu.index
    # the stem's 7×7/2 and 3×3/2 pool (11 pixels, 4 apart), then four 3×3 convs: 11 + 4·2·4 = 43
    assert np.array_equal(block.mask, relu.mask) and block.mask.sum() == 43 * 43
    with pytest.raises(ValueError, match="no layer or block 'layer9' with an output"):
        receptive.field_panels(net, x, ["layer9"])


@pytest.mark.parametrize("make", [
    lambda: receptive.receptive_field("resnet18", layers=["layer1.0.conv1"], input_shape=(3, 32, 32)),
    lambda: featuremaps.feature_maps("digits", max_channels=1)], ids=["receptive-one-panel", "featuremaps-one-channel"])
def test_a_figure_of_few_panels_is_as_wide_as_its_title(make: Any) -> None:
    """One panel is narrower than the two-line title: the figure widens so the title is not
    cut off at the right edge."""
    fig = make()
    fig.canvas.draw()
    box = fig.texts[0].get_window_extent(fig.canvas.get_renderer())
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width


def test_receptive_overlay_lights_exactly_the_trace_mask(tmp_path: Path) -> None:
    net = cs.pretrained("digits")
    x = digits("test")[0][3:4]
    point = (1, 5)  # off-centre: fields clipped by the border, not symmetric
    fig = receptive.receptive_field(net, digit=3, point=point, out=tmp_path / "rf.png")
    image = np.asarray(Image.open(tmp_path / "rf.png").convert("RGB")).astype(int)
    panels = fig.axes
    layers = ["0", "1", "2", "3", "4", "8"]
    assert len(panels) == len(layers)
    for ax, panel in zip(panels, receptive.field_panels(net, x, point=point)):
        mask = cs.trace(net, x, panel.layer, panel.index).influence()[0, 0]
        lit = np.zeros((8, 8), bool)
        for r in range(8):
            for c in range(8):
                px, py = ax.transData.transform((c, r))
                red, _, blue = image[int(image.shape[0] - py), int(px)]
                lit[r, c] = red - blue > 60  # grey pixels have red == blue
        assert np.array_equal(lit, mask), panel.layer



def test_a_float64_model_gets_float64_inputs_in_every_figure() -> None:
    """A torch module after ``.double()`` (here the digits CNN's float64 twin) was fed float32
    inputs: the architecture and receptive-field figures failed on a dtype mismatch."""
    net = cs.pretrained("digits")
    double = _digits_torch(net)
    converted, _, x, _ = featuremaps.model_input(double, None, 3)
    assert x.dtype == np.float64 and np.array_equal(x, digits("test")[0][3:4])
    ours = receptive.field_panels(net, digits("test")[0][3:4])
    assert [(p.index, p.mask.tolist()) for p in receptive.field_panels(converted, x)] == \
        [(p.index, p.mask.tolist()) for p in ours]
    assert len(receptive.receptive_field(double, digit=3).axes) == len(ours)
    assert [(n.type, n.output_shape) for n in graph.build_graph(double, (1, 8, 8)).nodes] == \
        [(n.type, n.output_shape) for n in graph.build_graph(net, (1, 8, 8)).nodes]

# --- training figures ------------------------------------------------------------------------------
def test_training_curves_plot_the_history_from_json_and_csv(tmp_path: Path) -> None:
    history = History(rows=[{"epoch": e, "lr": 0.1 / e, "train_loss": 2.0 / e, "train_acc": 0.5 + e / 10,
                                      "val_loss": 2.2 / e, "val_acc": 0.4 + e / 10, "seconds": 0.1 * e}
                                     for e in range(1, 5)], best_epoch=3)
    history.to_json(tmp_path / "history.json")
    history.to_csv(tmp_path / "history.csv")
    for source, best in ((tmp_path, [3, 3]), (tmp_path / "history.csv", None)):  # CSV rows carry no best epoch
        fig = training.training_curves(source)
        loss, acc, lr = fig.axes
        assert list(loss.lines[0].get_ydata()) == pytest.approx([2.0, 1.0, 2 / 3, 0.5])
        assert list(acc.lines[1].get_ydata()) == pytest.approx([50, 60, 70, 80])
        assert list(lr.lines[0].get_ydata()) == pytest.approx([0.1, 0.05, 0.1 / 3, 0.025])
        marker = list(loss.lines[-1].get_xdata()) if len(loss.lines) == 3 else None
        assert marker == best
    with pytest.raises(ValueError, match="no run history"):
        training.training_curves(tmp_path / "missing")
    np.save(tmp_path / "x.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"x.npy: expected a run folder, history.json or history.csv$"):
        training.training_curves(tmp_path / "x.npy")
    (tmp_path / "latin1.csv").write_bytes("epoch,train_loss\n1,0.5 # Größe\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.csv: not UTF-8 text \(byte 0xf6 at offset 27\)$"):
        training.training_curves(tmp_path / "latin1.csv")


@pytest.mark.parametrize("name, text, message", [
    ("history.json", "{oops", r"history.json: not valid JSON \(Expecting property name"),
    ("history.json", '{"rows": [1]}', r"history.json: row 1 must be an object of metrics, got 1$"),
    ("history.json", '{"rows": [{"epoch": 1}, {"lr": 0.1}]}', r"history.json: row 2 has no 'epoch' \(it holds lr\)$"),
    ("history.json", '{"rows": [{"epoch": 1, "lr": "x"}]}', r"history.json: row 1: lr must be a number, got 'x'$"),
    ("history.json", '{"rows": 3}', r"history.json: expected a convscope history with a 'rows' list$"),
    ("history.csv", "epoch,lr\n1,abc\n", r"history.csv: line 2: lr must be a number, got 'abc'$"),
    ("history.csv", "epoch,lr\n1,0.1,9\n", r"history.csv: line 2 has 3 cells; the header has 2 columns$"),
    ("history.csv", "epoch,lr\n1,0.1\n2\n", r"history.csv: line 3 has 1 cell; the header has 2 columns$"),
    ("history.csv", "lr\n0.1\n", r"history.csv: line 2 has no 'epoch' \(it holds lr\)$"),
])
def test_training_curves_refuse_a_malformed_history_naming_the_file_and_row(tmp_path: Path, name: str, text: str,
                                                                            message: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        training.training_curves(tmp_path / name)


def test_training_curves_of_a_history_without_losses_draw_no_empty_legend(tmp_path: Path) -> None:
    (tmp_path / "history.json").write_text('{"rows": [{"epoch": 1, "lr": 0.1}, {"epoch": 2, "lr": 0.05}]}')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = training.training_curves(tmp_path / "history.json")
    assert [ax.get_legend() for ax in fig.axes] == [None, None, None]


def test_training_curves_leave_a_gap_where_a_row_lacks_a_metric(tmp_path: Path) -> None:
    rows = [{"epoch": 1, "lr": 0.1, "train_loss": 1.0, "val_loss": 2.0}, {"epoch": 2, "lr": 0.1, "train_loss": 0.5}]
    History(rows=rows).to_json(tmp_path / "history.json")
    loss = training.training_curves(tmp_path / "history.json").axes[0]
    assert list(loss.lines[1].get_ydata()) == pytest.approx([2.0, np.nan], nan_ok=True)


def test_confusion_cells_count_the_predictions() -> None:
    net = cs.pretrained("digits")
    fig = training.confusion(net)
    X, y = digits("test")
    predicted = _digits_torch(net)(torch.tensor(X, dtype=torch.float64)).argmax(1).numpy()
    expected = np.zeros((10, 10), int)
    for t, p in zip(y, predicted):
        expected[t, p] += 1
    ax = fig.axes[0]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): int(t.get_text()) for t in ax.texts}
    assert cells == {(i, j): int(expected[i, j]) for i in range(10) for j in range(10)}


def test_saliency_map_is_the_input_gradient_torch_computes() -> None:
    net = cs.pretrained("digits")
    fig = training.saliency_map(net, digit=7, target=4)
    x = torch.tensor(digits("test")[0][7:8], dtype=torch.float64, requires_grad=True)
    _digits_torch(net)(x)[0, 4].backward()
    np.testing.assert_allclose(np.asarray(fig.axes[1].images[0].get_array()), x.grad.abs().amax(1)[0].numpy(),
                               rtol=1e-4, atol=1e-5)


# --- animation data against torch -----------------------------------------------------------------
def _torch_pad(x: np.ndarray, pad: tuple[int, ...], mode: str) -> torch.Tensor:
    t = torch.tensor(x[None])
    pairs = [p for q in reversed(pad) for p in (q, q)]
    return t if mode == "zeros" else TF.pad(t, pairs, mode=mode)


CONV_CASES = [
    dict(shape=(3, 7, 7), w=(2, 3, 3, 3)),
    dict(shape=(2, 6, 5), w=(4, 1, 3, 2), stride=(2, 1), padding=(1, 2), groups=2),
    dict(shape=(3, 6, 6), w=(3, 1, 3, 3), padding=2, dilation=2, groups=3, padding_mode="reflect"),
    dict(shape=(2, 5, 5), w=(1, 2, 3, 3), padding=1, padding_mode="circular"),
    dict(shape=(1, 5, 5), w=(2, 1, 2, 2), padding=1, padding_mode="replicate", stride=2),
    dict(shape=(2, 9), w=(1, 2, 3), stride=2, padding=1),
    dict(shape=(1, 3, 4, 4), w=(2, 1, 2, 3, 3), padding=(0, 1, 1)),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c["shape"])))
def test_conv_frames_match_torch_at_every_step(case: dict) -> None:
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=case["shape"]), rng.normal(size=case["w"])
    b = rng.normal(size=case["w"][0])
    params = {k: case.get(k, d) for k, d in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1),
                                            ("padding_mode", "zeros"))}
    anim = frames.conv_frames(x, w, b, **params)
    nd = len(case["shape"]) - 1
    mode = params["padding_mode"]
    pad = (params["padding"],) * nd if isinstance(params["padding"], int) else params["padding"]
    conv = getattr(TF, f"conv{nd}d")
    ref = conv(_torch_pad(x, pad, mode), torch.tensor(w), torch.tensor(b), params["stride"],
               params["padding"] if mode == "zeros" else 0, params["dilation"], params["groups"]).numpy()[0]
    steps = [f for f in anim.frames if f.kind == "step"]
    assert [f.kind for f in anim.frames[:1] + anim.frames[-1:]] == ["intro", "outro"]
    assert len(anim.frames) == 2 + ref.size  # one frame per output element, plus intro and outro
    np.testing.assert_allclose(anim.frames[-1].output, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(steps[-1].output, ref, rtol=1e-12, atol=1e-12)
    stride = np.broadcast_to(params["stride"], nd)
    dilation = np.broadcast_to(params["dilation"], nd)
    taps = np.array(list(np.ndindex(*w.shape[2:])))
    padded = _torch_pad(x, pad, mode).numpy()[0] if mode != "zeros" else np.pad(x, [(0, 0)] + [(p, p) for p in pad])
    per_group = w.shape[0] // params["groups"]
    for k, f in enumerate(steps):
        assert np.isnan(f.output).sum() == ref.size - k - 1
        assert f.value == pytest.approx(ref[(f.out_channel, *f.position)], abs=1e-12)
        np.testing.assert_array_equal(f.cells, np.asarray(f.position) * stride + taps * dilation)
        assert f.channels == tuple(range(f.out_channel // per_group * w.shape[1],
                                         (f.out_channel // per_group + 1) * w.shape[1]))
        np.testing.assert_array_equal(f.reads.reshape(len(f.channels), -1),
                                      padded[list(f.channels)][(slice(None), *f.cells.T)])
        np.testing.assert_allclose(f.products.reshape(len(f.channels), -1).sum(1), f.channel_sums, atol=1e-12)
        assert f.channel_sums.sum() + f.bias == pytest.approx(f.value, abs=1e-12)


@pytest.mark.parametrize("params", [dict(stride=2, padding=1, output_padding=1), dict(stride=3, dilation=2, groups=2),
                                    dict(stride=1, padding=2)])
def test_conv_transpose_frames_scatter_to_the_torch_output(params: dict) -> None:
    rng = np.random.default_rng(2)
    groups = params.get("groups", 1)
    x, w, b = rng.normal(size=(2, 3, 3)), rng.normal(size=(2, 4 // groups, 3, 3)), rng.normal(size=4)
    anim = frames.conv_transpose_frames(x, w, b, **params)
    ref = TF.conv_transpose2d(torch.tensor(x[None]), torch.tensor(w), torch.tensor(b), **params).numpy()[0]
    assert len(anim.frames) == 2 + 4 * 9  # per output channel, one frame per input cell
    np.testing.assert_allclose(anim.output, ref, rtol=1e-12, atol=1e-12)
    canvas = anim.frames[-2].output
    crop = canvas[(slice(None), *(slice(p, p + n) for p, n in zip(anim.offset, ref.shape[1:])))]
    np.testing.assert_allclose(np.nan_to_num(crop) + b[:, None, None], ref, rtol=1e-12, atol=1e-12)
    stride, dilation = params.get("stride", 1), params.get("dilation", 1)
    taps = np.array(list(np.ndindex(3, 3)))
    for f in anim.frames[1:-1]:
        np.testing.assert_array_equal(f.cells, np.asarray(f.position) * stride + taps * dilation)
        np.testing.assert_array_equal(f.products, f.reads[:, None, None] * f.weights)


@pytest.mark.parametrize("params", [dict(kind="max", kernel_size=3, stride=2, padding=1, ceil_mode=True),
                                    dict(kind="max", kernel_size=2, stride=1, dilation=2),
                                    dict(kind="avg", kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                         count_include_pad=False),
                                    dict(kind="avg", kernel_size=2, padding=1)])
def test_pool_frames_match_torch_and_show_winner_or_divisor(params: dict) -> None:
    x = np.random.default_rng(3).normal(size=(2, 7, 7))
    anim = frames.pool_frames(x, **params)
    kind = params.pop("kind")
    ref = getattr(TF, f"{kind}_pool2d")(torch.tensor(x[None]), **params).numpy()[0]
    assert len(anim.frames) == 2 + ref.size
    np.testing.assert_allclose(anim.frames[-1].output, ref, rtol=1e-12, atol=1e-12)
    for f in anim.frames[1:-1]:
        assert f.value == pytest.approx(ref[(f.out_channel, *f.position)], abs=1e-12)
        reads = f.reads.ravel()
        if kind == "max":
            assert reads[f.winner] == f.value == reads.max()
        else:
            assert np.sum(reads) / f.divisor == pytest.approx(f.value, abs=1e-12)


@pytest.mark.parametrize("op, shape, steps", [("conv", (1, 87, 87), 85 * 85), ("max_pool", (1, 86, 86), 85 * 85),
                                              ("conv_transpose", (1, 49, 49), 49 * 49)])
def test_animations_refuse_frames_beyond_the_memory_bound(op: str, shape: tuple, steps: int) -> None:
    """Every frame copies the output so far, so frames grow as (output cells)²: a 1×500×500
    input filled 20 GB until the OOM killer came. Just over the bound is refused, before the
    frames are made; the canonical example stays far below it."""
    cells = 85 * 85 if op != "conv_transpose" else ((49 - 1) * 3 + 3) ** 2  # stride 3, kernel 3: a 147×147 canvas
    assert (steps + 2) * cells > frames.MAX_FRAME_VALUES
    with pytest.raises(ValueError, match=rf"^animation: .* takes {steps:,} steps, .* more than the "):
        frames.example(op, shape, 3 if op != "max_pool" else 2, stride=3 if op == "conv_transpose" else 1)
    with pytest.raises(ValueError, match="an input of 100,000,000 cells is more than an animation keeps"):
        frames.example("conv", (1, 10_000, 10_000), 3)


def test_animation_refuses_groups_below_one() -> None:
    for groups in (0, -2):  # 0 divided the channels by zero (a traceback from viz animate --groups 0)
        with pytest.raises(ValueError, match=rf"^animation: groups must be a positive integer, got {groups}$"):
            frames.example("conv", (2, 5, 5), 3, groups=groups)


def test_animation_refuses_out_channels_below_one() -> None:
    with pytest.raises(ValueError, match=r"^animation: out_channels must be a positive integer, got -3$"):
        frames.example("conv", (1, 5, 5), 3, out_channels=-3)  # was NumPy's 'negative dimensions are not allowed'


@pytest.mark.parametrize("op, option, message", [
    ("max_pool", {"output_padding": 1}, "output_padding=1 applies to conv_transpose only, not max_pool"),
    ("conv", {"ceil_mode": True}, "ceil_mode=True applies to max_pool and avg_pool only, not conv"),
    ("max_pool", {"count_include_pad": False}, "count_include_pad=False applies to avg_pool only, not max_pool"),
    ("avg_pool", {"dilation": 2}, "dilation=2 applies to conv, conv_transpose and max_pool only, not avg_pool"),
    ("conv_transpose", {"padding_mode": "reflect"}, "padding_mode='reflect' applies to conv only, not conv_transpose"),
    ("avg_pool", {"groups": 2}, "groups=2 applies to conv and conv_transpose only, not avg_pool"),
    ("max_pool", {"bias": False}, "bias=False applies to conv and conv_transpose only, not max_pool"),
    ("max_pool", {"out_channels": 4}, "out_channels=4 applies to conv and conv_transpose only, not max_pool"),
])
def test_animation_refuses_an_option_its_op_does_not_have(op: str, option: dict, message: str) -> None:
    with pytest.raises(ValueError, match=rf"^animation: {re.escape(message)}$"):  # it was silently dropped
        frames.example(op, (2, 6, 6), 2, **option)
    defaults = {name: frames.OPTION_OPS[name][1] for name in option}
    assert frames.example(op, (2, 6, 6), 2, **defaults).frames  # the defaults pass


# --- animation rendering ---------------------------------------------------------------------------
def test_gif_has_one_frame_per_output_element_plus_intro_and_outro(tmp_path: Path) -> None:
    start = time.perf_counter()
    anim = frames.example("conv", (1, 7, 7), 3)  # the canonical 7×7 input, 3×3 kernel
    path = animate.save_animation(anim, tmp_path / "conv.gif")
    assert time.perf_counter() - start < 5
    gif = Image.open(path)
    decoded = [frame.convert("RGB") for frame in ImageSequence.Iterator(gif)]
    assert len(decoded) == 1 + 5 * 5 + 1
    ref = TF.conv2d(torch.tensor(anim.x[None]), torch.tensor(anim.weight), torch.tensor(anim.bias)).numpy()[0]
    np.testing.assert_array_equal(anim.frames[-1].output, ref)
    rendered = animate.render(anim)
    for k in (0, 13, len(decoded) - 1):  # the file holds the rendered frames (up to palette rounding)
        assert np.abs(np.asarray(decoded[k], int) - np.asarray(rendered[k], int)).max() <= 40


def test_output_cells_fill_in_as_the_frames_compute_them() -> None:
    anim = frames.example("conv", (2, 4, 4), 3, out_channels=1, padding=0)
    images = animate.render(anim)
    fonts = animate._fonts()
    cell = animate._cell_size(anim, fonts, True)
    lay = animate._layout(anim, animate._Painter((1, 1), fonts, cell, True))
    y0 = lay.out_rows[0] + animate.OUT_LABEL
    for frame, image in zip(anim.frames, images):
        pixels = np.asarray(image)
        corner = [pixels[y0 + r * cell + 3, lay.out_x + c * cell + 3] for r in range(2) for c in range(2)]
        filled = [tuple(p) != (255, 255, 255) for p in corner]
        assert filled == list(~np.isnan(frame.output[0].ravel()))


def test_animations_of_every_kind_render_and_are_deterministic(tmp_path: Path) -> None:
    cases = [dict(op="conv_transpose", input_shape=(1, 2, 2), kernel=3, stride=2),
             dict(op="max_pool", input_shape=(1, 4, 4), kernel=2),
             dict(op="conv", input_shape=(1, 3, 3, 3), kernel=2),
             dict(op="conv", input_shape=(2, 4, 4), kernel=3, groups=2, out_channels=2, padding=1)]
    for k, case in enumerate(cases):
        anim = frames.example(**case)
        first = animate.save_animation(anim, tmp_path / f"a{k}.gif").read_bytes()
        second = animate.save_animation(frames.example(**case), tmp_path / f"b{k}.gif").read_bytes()
        assert first == second
        assert Image.open(tmp_path / f"a{k}.gif").n_frames == len(anim.frames)
    with pytest.raises(ValueError, match=r"\.gif"):
        animate.save_animation(anim, tmp_path / "x.png")


# --- determinism, CLI, gallery -------------------------------------------------------------------
def test_figures_are_byte_identical_across_renders(tmp_path: Path) -> None:
    for suffix in (".png", ".svg", ".pdf"):
        a = save(architecture.architecture_diagram("digits"), tmp_path / f"a{suffix}").read_bytes()
        b = save(architecture.architecture_diagram("digits"), tmp_path / f"b{suffix}").read_bytes()
        assert a == b
    assert b"Software" not in (tmp_path / "a.png").read_bytes()
    assert to_array(costs.cost_chart("digits")).shape[2] == 4


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="convscope")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


def test_cli_writes_figures_and_animations_and_refuses_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture
                                                                   ) -> None:
    assert _cli(["viz", "architecture", "digits", "-o", str(tmp_path / "a.svg")]) == 0
    assert _cli(["viz", "animate", "--op", "max_pool", "--input", "1x4x4", "--kernel", "2",
                 "-o", str(tmp_path / "p.gif")]) == 0
    assert Image.open(tmp_path / "p.gif").n_frames == 2 + 4
    assert "wrote" in capsys.readouterr().out
    for argv, message in [(["viz", "filters", "-o", str(tmp_path / "f.jpg")], "must end in .png, .svg, .pdf"),
                          (["viz", "animate", "-o", str(tmp_path / "f.png")], r"must end in \.gif"),
                          (["viz", "filters", "-o", ""], "output file '' must end in"),  # was named '.'
                          (["viz", "animate", "-o", ""], "output file '' must end in .gif"),
                          (["viz", "animate", "--input", "3x5x5", "--groups", "2", "-o", str(tmp_path / "g.gif")],
                           "divisible by groups"),
                          (["viz", "curves", str(tmp_path / "none"), "-o", str(tmp_path / "c.png")], "no run history")]:
        with pytest.raises(ValueError, match=message) as err:
            _cli(argv)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("argv, message", [
    (["saliency", "examples/seed.spec"], r"^saliency: needs a classifier, whose output is one score per class "
                                         r"\(N, classes\); this model outputs 16×24×24 per sample$"),
    (["confusion", "examples/seed.spec"], r"^confusion: seed.spec takes 1×28×28 inputs, but the digits test set "
                                          r"holds 1×8×8 examples$"),
    (["filters", "digits", "--max-out", "0"], r"^filters: max_out and max_in must be ≥ 1, got 0 and 64$"),
    (["filters", "digits", "--layer", "6"], r"^filters: layer '6' is a Linear, not a convolution; conv layers: 0, 2$"),
    (["filters", "digits", "--layer", "nope"], r"^filters: layer 'nope' is not a layer of digits; conv layers: 0, 2$"),
    (["filters", "resnet18", "--layer", "bn1"], r"^filters: layer 'bn1' is a BatchNorm2d, not a convolution; conv "
                                                r"layers: conv1, layer1\.0\.conv1, "),
    (["receptive", "digits", "--point", "100,-5"], r"^receptive field: point \(100, -5\) must be 2 coordinates "
                                                   r"\(row, column\) inside the 8×8 input"),
    (["receptive", "digits", "--point", "8,0"], r"inside the 8×8 input, each in 0 \.\. size − 1$"),
])
def test_cli_refuses_a_model_or_option_the_figure_cannot_use(tmp_path: Path, argv: list[str], message: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    with pytest.raises(ValueError, match=message):
        _cli(["viz", *argv, "-o", str(tmp_path / "f.png")])
    assert not (tmp_path / "f.png").exists()


@pytest.mark.parametrize("spec", ["input 2x16\nconv 4 k3\nflatten\nfc 3\n",
                                  "input 2x4x4x4\nconv 4 k3\nflatten\nfc 3\n"])
def test_saliency_of_a_model_that_takes_no_image_is_refused(spec: str) -> None:
    """A 1-d or 3-d classifier's saliency got as far as matplotlib's ``imshow``, a TypeError."""
    with pytest.raises(ValueError, match=r"^saliency figures need an image input \(1, C, H, W\), got shape \(1, 2,"):
        training.saliency_map(spec)


def test_class_scores_are_required_by_the_library_too() -> None:
    net = cs.load_spec(ROOT / "examples" / "seed.spec")
    x = np.zeros((2, 1, 28, 28), np.float32)
    with pytest.raises(ValueError, match=r"^saliency: needs a classifier.*outputs 16×24×24 per sample$"):
        cs.inspect.saliency(net, x, 0)
    with pytest.raises(ValueError, match=r"^confusion_matrix: needs a classifier"):
        cs.inspect.confusion_matrix(net, x, np.zeros(2, np.int64))


def test_gallery_page_shows_every_image_and_stays_small() -> None:
    page = (ROOT / "docs" / "gallery.md").read_text()
    images = sorted(p for p in (ROOT / "docs" / "gallery").iterdir() if p.suffix in (".png", ".gif"))
    assert len(images) >= 12
    for image in images:
        assert f"gallery/{image.name}" in page
    assert sum(p.stat().st_size for p in images) < 3_000_000
    for kind in ("architecture", "costs", "share", "filters", "featuremaps", "receptive", "curves", "confusion",
                 "saliency"):
        assert any(p.name.startswith(kind) for p in images), kind
    assert sum(p.suffix == ".gif" for p in images) >= 5


@pytest.mark.parametrize("module", ["convscope.viz", "convscope.viz.graph", "convscope.viz.frames"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
