"""Write docs/gallery/*.png|gif and docs/gallery.md: every figure and animation kind of
``convscope.viz``, drawn from the shipped pretrained digits CNN and the zoo.

    python scripts/make_gallery.py

The training curves come from re-running the recipe of the shipped weights
(``convscope.pretrained.RECIPES["digits"]``); the page says how close the run's final
weights are to the shipped ones. Output is deterministic: running the script twice gives
identical files.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

import convscope as cs
from convscope.functional import jit
from convscope.pretrained import RECIPES, digits_cnn, weights
from convscope.viz import animate, architecture, costs, featuremaps, filters, frames, receptive, training

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "gallery"
PAGE = ROOT / "docs" / "gallery.md"


def _train_digits(folder: Path) -> float:
    """Re-run the shipped model's recipe into ``folder``; the largest difference between the
    weights it ends with and the shipped ones (0.0: reproduced bit for bit)."""
    recipe = RECIPES["digits"]
    cs.manual_seed(recipe["seed"])
    model = digits_cnn()
    with jit.enabled(False):  # as scripts/train_pretrained.py: the compiled kernels round differently
        cs.train(model, "digits", **recipe, out=folder, progress=False)
    shipped = weights("digits")
    return max(float(np.abs(shipped[k] - np.asarray(v)).max()) for k, v in model.state_dict().items())


def _grouped_conv() -> cs.nn.Module:
    cs.manual_seed(0)
    return cs.nn.Sequential(cs.nn.Conv2d(8, 16, 3, groups=4))


def _digit_conv() -> frames.Animation:
    """The shipped model's first filter on test digit 0: the first step of the real network."""
    net = cs.pretrained("digits")
    x = cs.data.digits("test")[0][0]
    return frames.conv_frames(x, net[0].weight.numpy()[:1], net[0].bias.numpy()[:1], padding=1)


def _reproduced(difference: float) -> str:
    if difference == 0:
        return "The run reproduces the shipped weights bit for bit."
    return (f"Today's run ends with weights within {difference:.2g} of the shipped ones (not bit-identical: the "
            "engine's float32 rounding has changed since they were trained).")


def figures(run: Path, difference: float) -> list[tuple[str, str, str, Callable[[Path], object]]]:
    """(file, title, text, make(path)) for every figure."""
    return [
        ("architecture_digits.png", "Architecture: the digits CNN",
         "Every box is a layer call the forward pass made, with its output shape; the ReLUs fold into the layer "
         "before them. `convscope viz architecture digits -o a.png`",
         lambda p: architecture.architecture_diagram("digits", out=p)),
        ("architecture_googlenet.png", "Architecture: GoogLeNet's nine inception modules",
         "Branches and the concatenation that merges them, drawn from the op events of the model's own forward "
         "(meta tensors, no compute). `convscope viz architecture googlenet -o g.png`",
         lambda p: architecture.architecture_diagram("googlenet", out=p)),
        ("architecture_resnet152.png", "Architecture: ResNet-152, repeated blocks collapsed",
         "515 layer calls; runs of identical bottlenecks are drawn once with their count (×7, ×35), shortcuts as "
         "edges into the `add`. `convscope viz architecture resnet152 -o r.png`",
         lambda p: architecture.architecture_diagram("resnet152", out=p)),
        ("costs_digits.png", "Costs per layer: the digits CNN",
         "Parameters, multiply-accumulates and output bytes of every layer, straight from `convscope.summary`. "
         "`convscope viz costs digits -o c.png`",
         lambda p: costs.cost_chart("digits", out=p)),
        ("costs_resnet50.png", "Costs per block: ResNet-50, log scale",
         "Large models are grouped by module path; `--log` for log axes. `convscope viz costs resnet50 --log -o c.png`",
         lambda p: costs.cost_chart("resnet50", log=True, out=p)),
        ("share_mobilenet_v1.png", "Where the compute goes: MobileNet v1",
         "Each layer kind's share of the multiply-adds and parameters in the paper convention — MobileNet's "
         "Table 2 (1×1 convolutions: 94.86 % of the mult-adds). `convscope viz share mobilenet_v1 --convention paper "
         "-o s.png`",
         lambda p: costs.share_chart("mobilenet_v1", convention="paper", out=p)),
        ("filters_digits_conv1.png", "Filters: the first layer's 32 learned 3×3 kernels",
         "Red positive, blue negative, one colour scale for the layer. `convscope viz filters digits -o f.png`",
         lambda p: filters.filter_figure("digits", "0", out=p)),
        ("filters_digits_conv2.png", "Filters: the second layer, one tile per (output, input) channel pair",
         "Each of the 32 filters spans all 32 maps of the first layer. `convscope viz filters digits --layer 2 "
         "-o f.png`",
         lambda p: filters.filter_figure("digits", "2", out=p)),
        ("filters_grouped.png", "Filters: a grouped convolution's block structure",
         "`Conv2d(8, 16, 3, groups=4)` (seeded random init): each group of 4 filters sees only its 2 input "
         "channels; unconnected pairs are grey.",
         lambda p: filters.filter_figure(_grouped_conv(), "0", out=p)),
        ("featuremaps_digits.png", "Feature maps: every layer's activations for one digit",
         "The shipped model on test digit 0, first 8 channels per layer, one colour scale per row. "
         "`convscope viz featuremaps digits --digit 0 -o m.png`",
         lambda p: featuremaps.feature_maps("digits", digit=0, out=p)),
        ("receptive_digits.png", "Receptive fields, exactly",
         "For one unit per layer, the input pixels that can influence it (`trace(...).influence()`), on the input "
         "image. `convscope viz receptive digits -o r.png`",
         lambda p: receptive.receptive_field("digits", digit=0, out=p)),
        ("curves_digits.png", "Training curves of the shipped model",
         "The recipe that trained the shipped weights (`pretrained.RECIPES[\"digits\"]`), re-run: loss, accuracy "
         f"and the cosine learning-rate schedule. {_reproduced(difference)} `convscope viz curves RUN_FOLDER -o t.png`",
         lambda p: training.training_curves(run, title="the digits CNN's recipe (30 epochs, AdamW, cosine schedule)",
                                            out=p)),
        ("confusion_digits.png", "Confusion matrix on the held-out digits",
         "`convscope viz confusion digits -o c.png`", lambda p: training.confusion("digits", out=p)),
        ("saliency_digits.png", "Saliency",
         "The gradient of the predicted class's logit with respect to every pixel. "
         "`convscope viz saliency digits --digit 0 -o s.png`",
         lambda p: training.saliency_map("digits", digit=0, out=p)),
    ]


def animations() -> list[tuple[str, str, str, Callable[[], frames.Animation]]]:
    """(file, title, text, frames) for every animation."""
    return [
        ("animate_conv_7x7.gif", "Convolution: 7×7 input, 3×3 kernel",
         "`convscope viz animate --input 1x7x7 --kernel 3 -o a.gif`",
         lambda: frames.example("conv", (1, 7, 7), 3)),
        ("animate_conv_channels.gif", "Convolution over three channels: products, per-channel sums, bias",
         "Stride 2, zero padding 1. `convscope viz animate --input 3x5x5 --padding 1 --stride 2 -o a.gif`",
         lambda: frames.example("conv", (3, 5, 5), 3, padding=1, stride=2)),
        ("animate_conv_digit.gif", "The shipped model's first filter on a real digit",
         "Filter 0 of the trained first layer and its bias on test digit 0, padding 1 — the first numbers the "
         "network computes (`viz.conv_frames(x, w, b, padding=1)`).",
         _digit_conv),
        ("animate_conv_dilated_reflect.gif", "Dilation 2 with reflect padding",
         "`convscope viz animate --input 1x5x5 --padding 2 --padding-mode reflect --dilation 2 -o a.gif`",
         lambda: frames.example("conv", (1, 5, 5), 3, padding=2, padding_mode="reflect", dilation=2)),
        ("animate_conv_groups.gif", "Grouped convolution: channels coloured by group",
         "4 input channels, groups=2, 2 filters: each filter reads only its group's channels. "
         "`convscope viz animate --input 4x4x4 --groups 2 --out-channels 2 -o a.gif`",
         lambda: frames.example("conv", (4, 4, 4), 3, groups=2, out_channels=2)),
        ("animate_depthwise.gif", "Depthwise convolution",
         "groups = channels: one filter per channel. `convscope viz animate --input 2x4x4 --depthwise --padding 1 "
         "-o a.gif`",
         lambda: frames.example("conv", (2, 4, 4), 3, groups=2, out_channels=2, padding=1)),
        ("animate_conv_transpose.gif", "Transposed convolution: the kernel scattered by every input cell",
         "Stride 2, padding 1: the output is the framed part of the canvas plus bias. "
         "`convscope viz animate --op conv_transpose --input 1x3x3 --stride 2 --padding 1 -o a.gif`",
         lambda: frames.example("conv_transpose", (1, 3, 3), 3, stride=2, padding=1)),
        ("animate_max_pool.gif", "Max pooling with padding",
         "Padding supplies −∞; the engine's winner is outlined. `convscope viz animate --op max_pool --input 1x5x5 "
         "--kernel 3 --stride 2 --padding 1 -o a.gif`",
         lambda: frames.example("max_pool", (1, 5, 5), 3, stride=2, padding=1)),
        ("animate_avg_pool_ceil.gif", "Average pooling, ceil mode, padding excluded from the divisor",
         "`convscope viz animate --op avg_pool --input 1x5x5 --kernel 2 --ceil-mode --exclude-pad -o a.gif`",
         lambda: frames.example("avg_pool", (1, 5, 5), 2, ceil_mode=True, count_include_pad=False)),
        ("animate_conv3d.gif", "3-D convolution over a stack of maps",
         "Depth slices side by side; a 2×3×3 kernel spans two slices. `convscope viz animate --input 1x3x4x4 "
         "--kernel 2,3,3 -o a.gif`",
         lambda: frames.example("conv", (1, 3, 4, 4), (2, 3, 3))),
    ]


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        if old.suffix in (".png", ".gif"):
            old.unlink()
    lines = ["# Gallery", "",
             "Every picture below is drawn by `convscope.viz` from numbers the engine computed — the shipped "
             "pretrained digits CNN (`convscope.pretrained(\"digits\")`), zoo models on meta tensors, and "
             "`F.conv2d` and friends for the animations. Made by `python scripts/make_gallery.py`; the figures are "
             "deterministic, so rerunning it gives the same files.", "",
             "Colours are colour-blind safe (Okabe–Ito categories, viridis magnitudes, a diverging map for "
             "signed weights). Figures: PNG, SVG or PDF; animations: GIF.", ""]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        difference = _train_digits(run)
        print(f"training run vs shipped weights: largest difference {difference:.3g}")
        lines += ["## Figures", ""]
        for name, title, text, make in figures(run, difference):
            make(OUT / name)
            lines += [f"### {title}", "", text, "", f"![{title}](gallery/{name})", ""]
    lines += ["## Animations", "",
              "One frame per output element (transposed convolution: per input cell), plus an intro and an outro. "
              "Every number — window cells, products, per-channel sums, outputs — comes from the engine "
              "(`convscope.viz.frames`).", ""]
    for name, title, text, make in animations():
        animate.save_animation(make(), OUT / name)
        lines += [f"### {title}", "", text, "", f"![{title}](gallery/{name})", ""]
    PAGE.write_text("\n".join(lines), encoding="utf-8")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {PAGE} and {len(list(OUT.iterdir()))} images ({total:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
