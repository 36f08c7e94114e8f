"""Spec files: the examples, equivalence with hand-built convscope and torch models, every
keyword and option, channel inference, names, errors at line:column, the docs' code
blocks and dump_spec round trips."""

from __future__ import annotations

import contextlib
import io
import re
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import convscope as cs
import convscope.nn as nn
from convscope.spec import Concat, Residual, SpecError, SpecShapeError, dump_spec, load_spec
from convscope.spec.layers import KINDS, TOKENS, bind
from convscope.spec.syntax import Statement, normalise, tokenize
from torch_ref import assert_close

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.spec"))
DOCS = ROOT / "docs" / "spec.md"


def _param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(path, m) for path, m in model.named_modules() if not m._modules]


def _settings(module: nn.Module) -> dict:
    """A module's public attributes (its constructor settings) and parameter shapes/flags."""
    attrs = {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training"}
    params = {k: (v.shape, v.requires_grad) for k, v in module._parameters.items() if v is not None}
    buffers = {k: v.shape for k, v in module._buffers.items() if v is not None}
    return {"type": type(module), "attrs": attrs, "params": params, "buffers": buffers}


# --- examples ---------------------------------------------------------------------------------
def test_the_requested_examples_exist() -> None:
    assert {p.stem for p in EXAMPLES} >= {"seed", "lenet5_modern", "resnet_tiny", "inception_tiny",
                                          "mobilenet_tiny"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_meta_shape_equals_a_real_forward(path: Path) -> None:
    model = load_spec(path)
    shape = (2, *model.input_shape)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    real = model(cs.tensor(x))
    meta = model(cs.Tensor.meta(shape))
    assert meta.is_meta and not real.is_meta
    assert meta.shape == real.shape
    assert np.isfinite(real.numpy()).all()


# Parameter counts derived by hand from each example's layers (weights + biases + BN affine).
_RESNET_TINY = (3 * 9 * 16 + 2 * 16                                   # stem conv (no bias) + bn
                + 2 * (2 * (16 * 16 * 9) + 2 * 2 * 16)                 # stage 1: two blocks 16 → 16
                + (16 * 32 * 9 + 32 * 32 * 9 + 2 * 2 * 32) + (16 * 32 + 2 * 32)   # 16 → 32 + projection
                + (2 * (32 * 32 * 9) + 2 * 2 * 32)
                + (32 * 64 * 9 + 64 * 64 * 9 + 2 * 2 * 64) + (32 * 64 + 2 * 64)   # 32 → 64 + projection
                + (2 * (64 * 64 * 9) + 2 * 2 * 64)
                + 64 * 10 + 10)                                         # classifier
_MOBILENET_TINY = (3 * 32 * 9 + 2 * 32                                  # full conv + bn
                   + 32 * 9 + 2 * 32 + 32 * 64 + 2 * 64                 # dw 32, pw 32 → 64
                   + 64 * 9 + 2 * 64 + 64 * 128 + 2 * 128               # dw 64 (s2), pw 64 → 128
                   + 2 * (128 * 9 + 2 * 128 + 128 * 128 + 2 * 128)      # repeat 2: dw 128, pw 128 → 128
                   + 128 * 10 + 10)
_INCEPTION_TINY = (3 * 32 * 9 + 32
                   + (32 * 16 + 16) + (32 * 24 + 24) + (24 * 32 * 9 + 32) + (32 * 4 + 4) + (4 * 8 * 25 + 8)
                   + (32 * 8 + 8)
                   + (64 * 32 + 32) + (64 * 32 + 32) + (32 * 48 * 9 + 48) + (64 * 8 + 8) + (8 * 16 * 25 + 16)
                   + (64 * 16 + 16)
                   + 112 * 10 + 10)
EXPECTED_PARAMS = {
    "seed": (1 * 9 * 8 + 8) + (8 * 25 * 16 + 16),
    "lenet5_modern": 61_706,       # (25+1)·6 + (150+1)·16 + 401·120 + 121·84 + 85·10, as the zoo's docstring
    "resnet_tiny": _RESNET_TINY,
    "mobilenet_tiny": _MOBILENET_TINY,
    "inception_tiny": _INCEPTION_TINY,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_example_parameter_counts_match_hand_derivations(name: str) -> None:
    assert _param_count(load_spec(ROOT / "examples" / f"{name}.spec")) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", ["seed", "lenet5_modern"])
def test_examples_equal_the_hand_built_zoo_models(name: str) -> None:
    spec, zoo = load_spec(ROOT / "examples" / f"{name}.spec"), cs.zoo.build(name)
    assert [_settings(m) for _, m in _leaves(spec)] == [_settings(m) for _, m in _leaves(zoo)]
    assert _param_count(spec) == _param_count(zoo)
    spec.load_state_dict(dict(zip(spec.state_dict(), zoo.state_dict().values())))
    x = cs.tensor(np.random.default_rng(1).standard_normal((2, *spec.input_shape)))
    spec.double(), zoo.double()
    np.testing.assert_array_equal(spec(x).numpy(), zoo(x).numpy())


# --- equivalence with torch: sequential, residual, concat ---------------------------------------
class TorchResidual(torch.nn.Module):
    """What the spec's residual block means, written in torch: body(x) + shortcut(x)."""

    def __init__(self, body: OrderedDict, shortcut: torch.nn.Module | None = None) -> None:
        super().__init__()
        for name, module in body.items():
            self.add_module(name, module)
        self.names = list(body)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for name in self.names:
            out = getattr(self, name)(out)
        return out + (x if self.shortcut is None else self.shortcut(x))


class TorchConcat(torch.nn.Module):
    def __init__(self, branches: OrderedDict) -> None:
        super().__init__()
        for name, module in branches.items():
            self.add_module(name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.children()], 1)


def _seq(**layers: torch.nn.Module) -> torch.nn.Sequential:
    return torch.nn.Sequential(OrderedDict(layers))


def torch_lenet5_modern() -> torch.nn.Module:
    tnn = torch.nn
    return _seq(conv1=tnn.Conv2d(1, 6, 5), relu1=tnn.ReLU(), maxpool1=tnn.MaxPool2d(2),
                conv2=tnn.Conv2d(6, 16, 5), relu2=tnn.ReLU(), maxpool2=tnn.MaxPool2d(2), flatten1=tnn.Flatten(),
                fc1=tnn.Linear(400, 120), relu3=tnn.ReLU(), fc2=tnn.Linear(120, 84), relu4=tnn.ReLU(),
                fc3=tnn.Linear(84, 10))


def torch_resnet_tiny() -> torch.nn.Module:
    tnn = torch.nn

    def block(cin: int, cout: int, stride: int) -> TorchResidual:
        body = OrderedDict(conv1=tnn.Conv2d(cin, cout, 3, stride, 1, bias=False), bn1=tnn.BatchNorm2d(cout),
                           relu1=tnn.ReLU(), conv2=tnn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                           bn2=tnn.BatchNorm2d(cout))
        shortcut = None if cin == cout else _seq(conv1=tnn.Conv2d(cin, cout, 1, stride, bias=False),
                                                  bn1=tnn.BatchNorm2d(cout))
        return TorchResidual(body, shortcut)

    layers = OrderedDict(stem=tnn.Conv2d(3, 16, 3, 1, 1, bias=False), bn1=tnn.BatchNorm2d(16), relu1=tnn.ReLU())
    stages = [(16, 16, 1), (16, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1)]
    for index, (cin, cout, stride) in enumerate(stages, start=1):
        layers[f"block{index}"] = block(cin, cout, stride)
        layers[f"relu{index + 1}"] = tnn.ReLU()
    layers.update(gap1=tnn.AdaptiveAvgPool2d(1), flatten1=tnn.Flatten(), fc1=tnn.Linear(64, 10))
    return tnn.Sequential(layers)


def torch_inception_tiny() -> torch.nn.Module:
    tnn = torch.nn

    def inception(cin: int, c1: int, r3: int, c3: int, r5: int, c5: int, proj: int) -> TorchConcat:
        return TorchConcat(OrderedDict(
            branch1=_seq(conv1=tnn.Conv2d(cin, c1, 1), relu1=tnn.ReLU()),
            branch2=_seq(conv1=tnn.Conv2d(cin, r3, 1), relu1=tnn.ReLU(), conv2=tnn.Conv2d(r3, c3, 3, padding=1),
                         relu2=tnn.ReLU()),
            branch3=_seq(conv1=tnn.Conv2d(cin, r5, 1), relu1=tnn.ReLU(), conv2=tnn.Conv2d(r5, c5, 5, padding=2),
                         relu2=tnn.ReLU()),
            branch4=_seq(maxpool1=tnn.MaxPool2d(3, 1, 1), conv1=tnn.Conv2d(cin, proj, 1), relu1=tnn.ReLU())))

    return _seq(conv1=tnn.Conv2d(3, 32, 3, padding=1), relu1=tnn.ReLU(), pool1=tnn.MaxPool2d(3, 2, 1),
                inception1=inception(32, 16, 24, 32, 4, 8, 8), inception2=inception(64, 32, 32, 48, 8, 16, 16),
                maxpool2=tnn.MaxPool2d(3, 2, ceil_mode=True), gap1=tnn.AdaptiveAvgPool2d(1),
                flatten1=tnn.Flatten(), dropout1=tnn.Dropout(0.4), fc1=tnn.Linear(112, 10))


def _randomise_bn_statistics(model: torch.nn.Module, rng: np.random.Generator) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.from_numpy(rng.standard_normal(n)))
            module.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, n)))
            module.weight.data.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, n)))
            module.bias.data.copy_(torch.from_numpy(rng.standard_normal(n)))


@pytest.mark.parametrize("name, torch_model", [("lenet5_modern", torch_lenet5_modern),
                                               ("resnet_tiny", torch_resnet_tiny),
                                               ("inception_tiny", torch_inception_tiny)])
def test_spec_model_equals_the_torch_model(name: str, torch_model: Callable[[], torch.nn.Module]) -> None:
    """Same layer list, weight shapes and state_dict keys; after loading torch's weights the
    same outputs (train and eval mode) and the same parameter gradients, in float64."""
    rng = np.random.default_rng(2)
    ours, theirs = load_spec(ROOT / "examples" / f"{name}.spec"), torch_model().double()
    _randomise_bn_statistics(theirs, rng)
    t_state = theirs.state_dict()
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == [(k, tuple(v.shape))
                                                                           for k, v in t_state.items()]
    assert [type(m).__name__ for _, m in _leaves(ours)] == [type(m).__name__ for m in theirs.modules()
                                                           if not list(m.children())]
    assert _param_count(ours) == sum(p.numel() for p in theirs.parameters())
    ours.double().load_state_dict(t_state)
    x = rng.standard_normal((2, *ours.input_shape))

    ours.eval(), theirs.eval()
    assert_close(ours(cs.tensor(x)).numpy(), theirs(torch.from_numpy(x)).detach().numpy(), np.float64, "eval")

    if name == "inception_tiny":   # dropout draws differ between engines; compare with it off
        ours.dropout1.p = theirs.dropout1.p = 0.0
    ours.train(), theirs.train()
    weights = rng.standard_normal((2, 10))
    out = ours(cs.tensor(x))
    t_out = theirs(torch.from_numpy(x))
    assert_close(out.numpy(), t_out.detach().numpy(), np.float64, "train")
    (out * cs.tensor(weights)).sum().backward()
    (t_out * torch.from_numpy(weights)).sum().backward()
    t_params = dict(theirs.named_parameters())
    for key, param in ours.named_parameters():
        assert_close(param.grad, t_params[key].grad.numpy(), np.float64, f"grad {key}")


# --- every keyword and option -----------------------------------------------------------------
# (spec line, one sample's input shape, the module it must build, written by hand)
LAYER_CASES: list[tuple[str, tuple[int, ...], Callable[[], nn.Module]]] = [
    ("conv 8 k3", (4, 9, 9), lambda: nn.Conv2d(4, 8, 3)),
    ("conv 8 k3x5 s2 p1x2 d2 g2 bias=off mode=reflect", (4, 16, 16),
     lambda: nn.Conv2d(4, 8, (3, 5), stride=2, padding=(1, 2), dilation=2, groups=2, bias=False,
                       padding_mode="reflect")),
    ("conv 8 k=3x2 s=1 p=same", (4, 9, 9), lambda: nn.Conv2d(4, 8, (3, 2), stride=1, padding="same")),
    ("conv 8 k3 p=valid nobias replicate", (4, 9, 9), lambda: nn.Conv2d(4, 8, 3, padding="valid", bias=False,
                                                                       padding_mode="replicate")),
    ("conv 8 k3 p1 circular", (4, 9, 9), lambda: nn.Conv2d(4, 8, 3, padding=1, padding_mode="circular")),
    ("conv 8 k3 p2 reflect", (4, 9, 9), lambda: nn.Conv2d(4, 8, 3, padding=2, padding_mode="reflect")),
    ("conv dw k3", (4, 9, 9), lambda: nn.Conv2d(4, 4, 3, groups=4)),
    ("conv 8 dw k3 p1", (4, 9, 9), lambda: nn.Conv2d(4, 8, 3, padding=1, groups=4)),
    ("conv 8 k3 depthwise=on", (4, 9, 9), lambda: nn.Conv2d(4, 8, 3, groups=4)),
    ("Conv2d out_channels=8 kernel_size=3 stride=2 padding=1 dilation=1 groups=1 padding_mode=zeros", (4, 9, 9),
     lambda: nn.Conv2d(4, 8, 3, stride=2, padding=1)),
    ("conv 8 k3", (4, 20), lambda: nn.Conv1d(4, 8, 3)),
    ("conv1d 8 k5 s2", (4, 20), lambda: nn.Conv1d(4, 8, 5, stride=2)),
    ("conv 8 k3", (4, 5, 6, 7), lambda: nn.Conv3d(4, 8, 3)),
    ("conv3d 8 k1x3x3 p0x1x1", (4, 5, 6, 7), lambda: nn.Conv3d(4, 8, (1, 3, 3), padding=(0, 1, 1))),
    ("deconv 8 k3 s2 p1 op1", (4, 5, 5), lambda: nn.ConvTranspose2d(4, 8, 3, stride=2, padding=1, output_padding=1)),
    ("convtranspose 8 k2 s2 g2 bias=off", (4, 5, 5), lambda: nn.ConvTranspose2d(4, 8, 2, stride=2, groups=2,
                                                                                  bias=False)),
    ("convt 8 k3 d2 op=1 s2 nobias", (4, 5, 5), lambda: nn.ConvTranspose2d(4, 8, 3, stride=2, dilation=2,
                                                                           output_padding=1, bias=False)),
    ("deconv dw k2 s2", (4, 5, 5), lambda: nn.ConvTranspose2d(4, 4, 2, stride=2, groups=4)),
    ("deconv1d 8 k4 s2 p1", (4, 10), lambda: nn.ConvTranspose1d(4, 8, 4, stride=2, padding=1)),
    ("convtranspose3d 2 k2 s2", (4, 3, 3, 3), lambda: nn.ConvTranspose3d(4, 2, 2, stride=2)),
    ("maxpool k2", (4, 9, 9), lambda: nn.MaxPool2d(2)),
    ("maxpool 3 s2 p1 d2 ceil", (4, 9, 9), lambda: nn.MaxPool2d(3, stride=2, padding=1, dilation=2,
                                                                ceil_mode=True)),
    ("maxpool k3 s1 ceil=on", (4, 9, 9), lambda: nn.MaxPool2d(3, stride=1, ceil_mode=True)),
    ("maxpool1d k2", (4, 9), lambda: nn.MaxPool1d(2)),
    ("maxpool3d k2 s1", (4, 3, 4, 5), lambda: nn.MaxPool3d(2, stride=1)),
    ("avgpool k3 s2 p1 ceil count_include_pad=off divisor=5", (4, 9, 9),
     lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False, divisor_override=5)),
    ("avgpool 2", (4, 9, 9), lambda: nn.AvgPool2d(2)),
    ("avgpool1d k2", (4, 9), lambda: nn.AvgPool1d(2)),
    ("avgpool3d k2", (4, 4, 4, 4), lambda: nn.AvgPool3d(2)),
    ("lppool 2 k3 s2 ceil", (4, 9, 9), lambda: nn.LPPool2d(2.0, 3, stride=2, ceil_mode=True)),
    ("lppool1d norm=3 k=2", (4, 9), lambda: nn.LPPool1d(3.0, 2)),
    ("lppool3d 1 k2", (4, 4, 4, 4), lambda: nn.LPPool3d(1.0, 2)),
    ("adaptiveavgpool 3x2", (4, 9, 9), lambda: nn.AdaptiveAvgPool2d((3, 2))),
    ("adaptiveavgpool1d size=3", (4, 9), lambda: nn.AdaptiveAvgPool1d(3)),
    ("adaptiveavgpool3d 1x2x2", (4, 3, 4, 4), lambda: nn.AdaptiveAvgPool3d((1, 2, 2))),
    ("adaptivemaxpool 1", (4, 9, 9), lambda: nn.AdaptiveMaxPool2d(1)),
    ("adaptivemaxpool1d 4", (4, 9), lambda: nn.AdaptiveMaxPool1d(4)),
    ("adaptivemaxpool3d 2", (4, 4, 4, 4), lambda: nn.AdaptiveMaxPool3d(2)),
    ("globalavgpool", (4, 9, 9), lambda: nn.AdaptiveAvgPool2d(1)),
    ("gap", (4, 9), lambda: nn.AdaptiveAvgPool1d(1)),
    ("globalavgpool1d", (4, 9), lambda: nn.AdaptiveAvgPool1d(1)),
    ("globalavgpool3d", (4, 3, 3, 3), lambda: nn.AdaptiveAvgPool3d(1)),
    ("globalmaxpool", (4, 9, 9), lambda: nn.AdaptiveMaxPool2d(1)),
    ("gmp2d", (4, 9, 9), lambda: nn.AdaptiveMaxPool2d(1)),
    ("globalmaxpool1d", (4, 9), lambda: nn.AdaptiveMaxPool1d(1)),
    ("gmp3d", (4, 2, 3, 3), lambda: nn.AdaptiveMaxPool3d(1)),
    ("bn", (4, 9, 9), lambda: nn.BatchNorm2d(4)),
    ("bn eps=1e-3 momentum=0.2 affine=off track=off", (4, 9, 9),
     lambda: nn.BatchNorm2d(4, eps=1e-3, momentum=0.2, affine=False, track_running_stats=False)),
    ("bn", (12,), lambda: nn.BatchNorm1d(12)),
    ("batchnorm", (4, 10), lambda: nn.BatchNorm1d(4)),
    ("bn1d track_running_stats=no", (12,), lambda: nn.BatchNorm1d(12, track_running_stats=False)),
    ("batchnorm2d", (4, 9, 9), lambda: nn.BatchNorm2d(4)),
    ("bn3d", (4, 3, 3, 3), lambda: nn.BatchNorm3d(4)),
    ("ln", (4, 5, 5), lambda: nn.LayerNorm((4, 5, 5))),
    ("layernorm eps=1e-6 affine=off", (7,), lambda: nn.LayerNorm(7, eps=1e-6, elementwise_affine=False)),
    ("instancenorm", (4, 5, 5), lambda: nn.InstanceNorm2d(4)),
    ("inorm affine track", (4, 5), lambda: nn.InstanceNorm1d(4, affine=True, track_running_stats=True)),
    ("instancenorm3d eps=1e-3 momentum=0.2 affine=on track=off", (4, 2, 3, 3),
     lambda: nn.InstanceNorm3d(4, eps=1e-3, momentum=0.2, affine=True)),
    ("instancenorm1d", (4, 5), lambda: nn.InstanceNorm1d(4)),
    ("instancenorm2d", (4, 5, 5), lambda: nn.InstanceNorm2d(4)),
    ("gn 2", (4, 5, 5), lambda: nn.GroupNorm(2, 4)),
    ("groupnorm groups=4 eps=1e-3 affine=off", (8, 5, 5), lambda: nn.GroupNorm(4, 8, eps=1e-3, affine=False)),
    ("lrn 5 alpha=2e-4 beta=0.5 k=2", (8, 5, 5), lambda: nn.LocalResponseNorm(5, 2e-4, 0.5, 2.0)),
    ("localresponsenorm size=3", (8, 5, 5), lambda: nn.LocalResponseNorm(3)),
    ("relu", (4, 5), lambda: nn.ReLU()),
    ("relu6", (4, 5), lambda: nn.ReLU6()),
    ("sigmoid", (4, 5), lambda: nn.Sigmoid()),
    ("tanh", (4, 5), lambda: nn.Tanh()),
    ("silu", (4, 5), lambda: nn.SiLU()),
    ("mish", (4, 5), lambda: nn.Mish()),
    ("swish", (4, 5), lambda: nn.SiLU()),
    ("hardswish", (4, 5), lambda: nn.Hardswish()),
    ("hardsigmoid", (4, 5), lambda: nn.Hardsigmoid()),
    ("identity", (4, 5), lambda: nn.Identity()),
    ("leakyrelu 0.2", (4, 5), lambda: nn.LeakyReLU(0.2)),
    ("lrelu slope=0.3", (4, 5), lambda: nn.LeakyReLU(0.3)),
    ("leakyrelu", (4, 5), lambda: nn.LeakyReLU()),
    ("elu 0.5", (4, 5), lambda: nn.ELU(0.5)),
    ("celu alpha=0.5", (4, 5), lambda: nn.CELU(0.5)),
    ("selu", (4, 5), lambda: nn.SELU()),
    ("prelu", (4, 5), lambda: nn.PReLU()),
    ("prelu each init=0.1", (4, 5, 5), lambda: nn.PReLU(4, init=0.1)),
    ("prelu each=on", (6,), lambda: nn.PReLU(6)),
    ("logsigmoid", (4, 5), lambda: nn.LogSigmoid()),
    ("softplus 2 threshold=5", (4, 5), lambda: nn.Softplus(2.0, 5.0)),
    ("zeropad 1", (4, 5, 5), lambda: nn.ZeroPad2d(1)),
    ("zeropad1d p=2x0", (4, 5), lambda: nn.ZeroPad1d((2, 0))),
    ("zeropad2d pad=1x0x2x1", (4, 5, 5), lambda: nn.ZeroPad2d((1, 0, 2, 1))),
    ("zeropad3d padding=1", (4, 2, 3, 3), lambda: nn.ZeroPad3d(1)),
    ("constpad 2 -1", (4, 5, 5), lambda: nn.ConstantPad2d(2, -1.0)),
    ("constpad1d 2 0", (4, 5), lambda: nn.ConstantPad1d(2, 0.0)),
    ("constantpad p1 value=0.5", (4, 5), lambda: nn.ConstantPad1d(1, 0.5)),
    ("constpad2d 1x2x3x4 value=2", (4, 5, 5), lambda: nn.ConstantPad2d((1, 2, 3, 4), 2.0)),
    ("constpad3d 1 value=1", (4, 2, 3, 3), lambda: nn.ConstantPad3d(1, 1.0)),
    ("reflectpad 3", (4, 5, 5), lambda: nn.ReflectionPad2d(3)),
    ("reflectpad1d 1", (4, 5), lambda: nn.ReflectionPad1d(1)),
    ("reflectionpad 2", (4, 5), lambda: nn.ReflectionPad1d(2)),
    ("reflectpad2d 1x0x0x1", (4, 5, 5), lambda: nn.ReflectionPad2d((1, 0, 0, 1))),
    ("reflectpad3d 1", (4, 2, 3, 3), lambda: nn.ReflectionPad3d(1)),
    ("replicatepad 1", (4, 5, 5), lambda: nn.ReplicationPad2d(1)),
    ("replicatepad1d 1", (4, 5), lambda: nn.ReplicationPad1d(1)),
    ("replicationpad 2", (4, 5), lambda: nn.ReplicationPad1d(2)),
    ("replicatepad2d 2", (4, 5, 5), lambda: nn.ReplicationPad2d(2)),
    ("replicatepad3d 1", (4, 2, 3, 3), lambda: nn.ReplicationPad3d(1)),
    ("circularpad 1", (4, 5, 5), lambda: nn.CircularPad2d(1)),
    ("circularpad1d 2", (4, 5), lambda: nn.CircularPad1d(2)),
    ("circularpad2d 1x1x0x0", (4, 5, 5), lambda: nn.CircularPad2d((1, 1, 0, 0))),
    ("circularpad3d 1", (4, 2, 3, 3), lambda: nn.CircularPad3d(1)),
    ("gelu", (4, 5), lambda: nn.GELU()),
    ("gelu tanh", (4, 5), lambda: nn.GELU("tanh")),
    ("gelu approx=none", (4, 5), lambda: nn.GELU("none")),
    ("hardtanh -2 3", (4, 5), lambda: nn.Hardtanh(-2.0, 3.0)),
    ("hardtanh min=-0.5 max=0.5", (4, 5), lambda: nn.Hardtanh(-0.5, 0.5)),
    ("softmax", (10,), lambda: nn.Softmax(dim=1)),
    ("softmax dim=2", (4, 5), lambda: nn.Softmax(dim=2)),
    ("logsoftmax", (10,), lambda: nn.LogSoftmax(dim=1)),
    ("logsoftmax dim=-1", (4, 5), lambda: nn.LogSoftmax(dim=-1)),
    ("dropout", (4, 5), lambda: nn.Dropout()),
    ("dropout 0.3", (4, 5), lambda: nn.Dropout(0.3)),
    ("dropout p=0.1", (4, 5), lambda: nn.Dropout(0.1)),
    ("dropout1d 0.2", (4, 5), lambda: nn.Dropout1d(0.2)),
    ("dropout2d", (4, 5, 5), lambda: nn.Dropout2d()),
    ("dropout3d 0.1", (4, 2, 2, 2), lambda: nn.Dropout3d(0.1)),
    ("flatten", (4, 5, 5), lambda: nn.Flatten()),
    ("flatten start=2 end=3", (4, 5, 5), lambda: nn.Flatten(2, 3)),
    ("unflatten 2x2", (4,), lambda: nn.Unflatten(1, (2, 2))),
    ("unflatten 5x5 dim=2", (4, 25), lambda: nn.Unflatten(2, (5, 5))),
    ("linear 10", (12,), lambda: nn.Linear(12, 10)),
    ("fc 10 bias=off", (12,), lambda: nn.Linear(12, 10, bias=False)),
    ("dense features=3 nobias", (12,), lambda: nn.Linear(12, 3, bias=False)),
    ("linear 10", (4, 5, 6), lambda: nn.Linear(6, 10)),
    ("pixelshuffle 2", (8, 5, 5), lambda: nn.PixelShuffle(2)),
    ("pixelunshuffle r=2", (2, 6, 4), lambda: nn.PixelUnshuffle(2)),
    ("channelshuffle groups=4", (8, 5, 5), lambda: nn.ChannelShuffle(4)),
    ("upsample 2", (4, 5, 5), lambda: nn.Upsample(scale_factor=2)),
    ("upsample size=8x6 bilinear align=on", (4, 5, 5),
     lambda: nn.Upsample(size=(8, 6), mode="bilinear", align_corners=True)),
    ("upsample scale=2x3 mode=nearest-exact", (4, 5, 5), lambda: nn.Upsample(scale_factor=(2.0, 3.0),
                                                                            mode="nearest-exact")),
    ("upsample 2 linear", (4, 5), lambda: nn.Upsample(scale_factor=2, mode="linear")),
    ("upsample 2 trilinear", (4, 2, 2, 2), lambda: nn.Upsample(scale_factor=2, mode="trilinear")),
    ("upsample 3 nearest", (4, 2, 2), lambda: nn.Upsample(scale_factor=3)),
    ("upsample 2 bicubic align=on", (4, 5, 5), lambda: nn.Upsample(scale_factor=2, mode="bicubic", align_corners=True)),
    ("upsample size=2x3 area", (4, 5, 7), lambda: nn.Upsample(size=(2, 3), mode="area")),
    ("upsample 1.5 nearest-exact", (4, 5, 7), lambda: nn.Upsample(scale_factor=1.5, mode="nearest-exact")),
    ("conv 8 k3 frozen", (4, 9, 9), lambda: nn.Conv2d(4, 8, 3).requires_grad_(False)),
    ("bn frozen name=norm", (4, 9, 9), lambda: nn.BatchNorm2d(4).requires_grad_(False)),
]


@pytest.mark.parametrize("line, shape, expected", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_each_layer_line_builds_the_module_written_by_hand(line: str, shape: tuple, expected: Callable) -> None:
    model = load_spec(f"input {'x'.join(map(str, shape))}\n{line}\n")
    ((_, built),) = list(model.named_children())
    assert _settings(built) == _settings(expected())


def test_the_layer_cases_cover_every_keyword_alias_dimension_option_and_flag() -> None:
    used: set[tuple[int, str]] = set()
    for line, _, _ in LAYER_CASES:
        words = list(tokenize(line))[:-1]
        kind, nd = TOKENS[normalise(words[0].text)]
        args = bind(kind, words)
        head = normalise(words[0].text)
        used.add((id(kind), "keyword:" + head.rstrip("123d") if nd else "keyword:" + head))
        used.add((id(kind), f"nd:{nd}"))
        used |= {(id(kind), "option:" + key) for key in args.values}
        used |= {(id(kind), "flag:" + normalise(w.text)) for w in words[1:] if normalise(w.text) in kind.flags}
        used |= {(id(kind), "key:" + normalise(w.text.split("=")[0])) for w in words[1:] if "=" in w.text}
    missing = []
    for kind in KINDS:
        names = (kind.name, *kind.aliases)
        if kind.generic:
            missing += [f"{n}" for n in names if (id(kind), "keyword:" + normalise(n)) not in used]
        if kind.dimensional:
            missing += [f"{kind.name}{d}d" for d in (1, 2, 3) if (id(kind), f"nd:{d}") not in used
                        and not (kind.generic and (id(kind), "nd:None") in used and d == 2)]
        missing += [f"{kind.name} {o.key}" for o in kind.options if (id(kind), "option:" + o.key) not in used]
        missing += [f"{kind.name} {f}" for f in kind.flags if (id(kind), "flag:" + f) not in used]
    assert not missing, f"keywords/options without a test case: {missing}"


def test_every_flag_names_a_real_option() -> None:
    for kind in KINDS:
        for word, (key, _) in kind.flags.items():
            assert kind.option(key) is not None, f"{kind.name}: flag {word} sets unknown option {key}"


def test_one_sample_shape_forms_pick_the_conv_dimension() -> None:
    assert isinstance(load_spec("input 784\nfc 10").fc1, nn.Linear)
    for shape, cls in (("3x100", nn.Conv1d), ("3x32x32", nn.Conv2d), ("3x8x32x32", nn.Conv3d)):
        model = load_spec(f"input {shape}\nconv 4 k3")
        assert type(model.conv1) is cls and model.input_shape == tuple(int(s) for s in shape.split("x"))


# --- channel inference and names ----------------------------------------------------------------
def test_sizes_take_the_times_sign_summaries_print() -> None:
    """``1×28×28`` (copied from a summary's shape column) reads as ``1x28x28``, in the input line
    and in a layer's sizes."""
    text = "input 1×28×28\nconv 8 k3×5 s1×2"
    net, plain = load_spec(text), load_spec(text.replace("×", "x"))
    assert net.input_shape == plain.input_shape == (1, 28, 28)
    assert [(m.kernel_size, m.stride) for m in (net[0], plain[0])] == [((3, 5), (1, 2))] * 2


def test_input_channels_are_inferred_from_the_previous_layer() -> None:
    model = load_spec("""
        input 3x16x16
        conv 5 k3          # 3 → 5
        conv 7 k1          # 5 → 7
        conv dw k3         # 7 → 7, groups 7
        bn
        concat {
          branch { conv 4 k1 }
          branch { conv 6 k3 p1 }
        }                  # 4 + 6 = 10 maps of 12 × 12
        conv 2 k3          # 10 → 2, 10 × 10
        flatten
        fc 9               # 2 · 10 · 10 = 200 features
        fc 3
    """)
    assert (model.conv1.in_channels, model.conv2.in_channels, model.conv3.in_channels) == (3, 5, 7)
    assert model.conv3.groups == 7 and model.conv3.weight.shape == (7, 1, 3, 3)
    assert model.bn1.num_features == 7
    assert model.block1.branch2.conv1.weight.shape == (6, 7, 3, 3)
    assert model.conv4.weight.shape == (2, 10, 3, 3)
    assert model.fc1.weight.shape == (9, 200) and model.fc2.weight.shape == (3, 9)


def test_auto_names_count_per_keyword_and_container() -> None:
    model = load_spec("""
        input 3x8x8
        conv 4 k3 p1
        relu
        conv 4 k3 p1 name=middle
        relu
        residual { conv 4 k3 p1; relu; conv 4 k3 p1 }
        concat name=mix { branch { conv 2 k1 } branch name=pool { maxpool k3 s1 p1 } }
        conv 4 k1
        fc 3
        globalavgpool
    """)
    paths = [path for path, _ in model.named_modules()][1:]
    assert paths == ["conv1", "relu1", "middle", "relu2", "block1", "block1.conv1", "block1.relu1", "block1.conv2",
                     "mix", "mix.branch1", "mix.branch1.conv1", "mix.pool", "mix.pool.maxpool1", "conv3", "fc1",
                     "gap1"]


def test_repeat_unrolls_in_place_and_suffixes_explicit_names() -> None:
    model = load_spec("input 2x8x8\nrepeat 3 {\n conv 2 k3 p1\n relu name=act\n}\nrepeat 2 { repeat 2 { relu } }")
    assert list(model._modules) == ["conv1", "act_1", "conv2", "act_2", "conv3", "act_3",
                                    "relu4", "relu5", "relu6", "relu7"]


def test_sequential_groups_layers_under_a_name() -> None:
    model = load_spec("input 1x8x8\nseq name=features { conv 2 k3; relu }\nsequential { flatten; fc 3 }")
    assert [p for p, _ in model.named_modules()][1:] == ["features", "features.conv1", "features.relu1", "block2",
                                                         "block2.flatten1", "block2.fc1"]
    assert type(model.features) is nn.Sequential


def test_forward_hooks_see_every_layer_with_its_path_on_meta_tensors() -> None:
    model = load_spec(ROOT / "examples" / "inception_tiny.spec")
    seen = []
    for path, module in model.named_modules():
        module.register_forward_hook(lambda m, args, out, path=path: seen.append((path, out.shape)))
    model(cs.Tensor.meta((1, *model.input_shape)))
    paths = [p for p, _ in seen]
    assert sorted(paths) == sorted(p for p, _ in model.named_modules())
    assert dict(seen)["inception1.branch2.conv2"] == (1, 32, 16, 16)
    assert dict(seen)["inception1"] == (1, 64, 16, 16)


# --- residual shortcuts -------------------------------------------------------------------------
def test_identity_shortcut_when_the_body_keeps_the_shape() -> None:
    block = load_spec("input 4x6x6\nresidual { conv 4 k3 p1 }").block1
    assert isinstance(block, Residual) and block.shortcut is None
    x = np.random.default_rng(3).standard_normal((2, 4, 6, 6))
    block.double()
    np.testing.assert_allclose(block(cs.tensor(x)).numpy(), block.conv1(cs.tensor(x)).numpy() + x)


def test_projection_shortcut_is_added_when_the_body_changes_the_shape() -> None:
    with_bn = load_spec("input 4x7x7\nresidual { conv 8 k3 s2 p1; bn }").block1
    assert _settings(with_bn.shortcut.conv1) == _settings(nn.Conv2d(4, 8, 1, stride=2, bias=False))
    assert _settings(with_bn.shortcut.bn1) == _settings(nn.BatchNorm2d(8))      # 7 → 4 needs stride 2
    plain = load_spec("input 4x8x9\nresidual { conv 8 k3x1 s2x1 p1x0 }").block1
    assert list(plain.shortcut._modules) == ["conv1"]
    assert _settings(plain.shortcut.conv1) == _settings(nn.Conv2d(4, 8, 1, stride=(2, 1), bias=False))


@pytest.mark.parametrize("shortcut", ["shortcut conv 8 k1 s2", "shortcut {\n conv 8 k1 s2\n}"])
def test_explicit_shortcut_in_both_forms(shortcut: str) -> None:
    block = load_spec(f"input 4x8x8\nresidual {{\n conv 8 k3 s2 p1\n {shortcut}\n}}").block1
    assert _settings(block.shortcut.conv1) == _settings(nn.Conv2d(4, 8, 1, stride=2))


# --- load_spec inputs ---------------------------------------------------------------------------
def test_load_spec_reads_paths_strings_and_text(tmp_path: Path) -> None:
    path = tmp_path / "net.spec"
    path.write_text("input 1x8x8\nconv 2 k3\n")
    for source in (path, str(path), path.read_text()):
        model = load_spec(source)
        assert model.conv1.weight.shape == (2, 1, 3, 3) and model.input_shape == (1, 8, 8)
    with pytest.raises(FileNotFoundError):
        load_spec(str(tmp_path / "missing.spec"))


def test_frozen_layers_get_no_gradient() -> None:
    model = load_spec("input 1x6x6\nconv 2 k3 frozen\nflatten\nfc 3").double()
    model(cs.tensor(np.ones((2, 1, 6, 6)))).sum().backward()
    assert model.conv1.weight.grad is None and model.fc1.weight.grad is not None


# --- errors at line:column ----------------------------------------------------------------------
ERROR_CASES = [
    ("input 1x28x28\ncovn 8 k3", r"^<spec>:2:1: unknown layer type 'covn'\. Did you mean 'conv'\?$"),
    ("input 1x28x28\nconv 8 k3\n  maxpol k2", r"^<spec>:3:3: unknown layer type 'maxpol'\. Did you mean 'maxpool'\?"),
    ("input 1x28x28\nconv 8 k3 q=2", r"^<spec>:2:11: conv has no option 'q'\. .*Options: filters, k, s, p"),
    ("input 1x28x28\nconv 8 k3 strde=2", r"^<spec>:2:11: conv has no option 'strde'\. Did you mean 'stride'\?"),
    ("input 1x28x28\nconv 8 k3 s=x", r"^<spec>:2:13: conv: s \(stride\) expects a positive integer .*got 'x'"),
    ("input 1x28x28\nconv 8 k3 s0", r"^<spec>:2:12: conv: s \(stride\) expects a positive integer"),
    ("input 1x28x28\nconv 8 k3 bias=maybe", r"^<spec>:2:16: conv: bias \(learn a bias\) expects on or off"),
    ("input 1x28x28\nconv 8", r"^<spec>:2:1: conv needs k \(kernel size\), e\.g\. 'conv 16 k3 p1'"),
    ("input 1x28x28\nconv k3", r"^<spec>:2:1: conv needs the number of filters first"),
    ("input 1x28x28\nconv 8 3", r"^<spec>:2:8: conv takes 1 bare value \(filters\); '3' is one too many\. "
                                r"Did you mean 'k3'"),
    ("input 1x28x28\nrelu 2", r"^<spec>:2:6: relu takes no bare values; '2' is one too many"),
    ("input 1x28x28\nconv 8 k3 k5", r"^<spec>:2:11: conv: k is given twice \(first at column 8\)"),
    ("input 1x28x28\nconv 8 k3 dw g2", r"^<spec>:2:14: dw already sets groups to the input channels \(1\)"),
    ("input 1x28x28\nconv 8 k3 name=a.b", r"^<spec>:2:16: name must be letters, digits and '_'"),
    ("input 1x28x28\nconv 8 k3 name=a name=b", r"^<spec>:2:18: conv: name is given twice"),
    ("input 1x28x28\nconv 8 k3 name=a\nrelu name=a", r"^<spec>:3:1: the name 'a' is already used in this block "
                                                    r"\(line 2\)"),
    ("input 1x28x28\nconv 8 k3\n}", r"^<spec>:3:1: unexpected '}': no block is open"),
    ("input 1x28x28\nresidual {\n  concat {\n  branch { relu }\n}", r"^<spec>:2:10: '\{' of 'residual' \(line 2\) "
                                                                     r"is never closed; add '}'$"),
    ("input 1x28x28\nresidual {\n  concat {\n  branch { relu }\n", r"^<spec>:3:10: '\{' of 'concat' \(line 3\) is "
                                                                  r"never closed"),
    ("input 1x28x28\n{ relu }", r"^<spec>:2:1: '\{' must follow a block keyword"),
    ("input 1x28x28\nconv 8 k3 {\n}", r"^<spec>:2:1: conv is a layer and takes no \{ \.\.\. \} body"),
    ("input 1x28x28\nresidual", r"^<spec>:2:1: residual needs a body in braces"),
    ("input 1x28x28\nresidual { shortcut relu }", r"^<spec>:2:1: residual needs at least one layer"),
    ("input 1x28x28\nresidual { relu\nshortcut relu\nshortcut relu }", r"^<spec>:4:1: a residual block has at most "
                                                                       r"one shortcut"),
    ("input 1x28x28\nresidual { relu; shortcut }", r"^<spec>:2:18: shortcut needs a layer"),
    ("input 1x28x28\nresidual { relu; relu name=shortcut }", r"^<spec>:2:18: the name 'shortcut' is reserved"),
    ("input 1x28x28\nbranch { relu }", r"^<spec>:2:1: branch belongs directly inside concat"),
    ("input 1x28x28\nshortcut relu", r"^<spec>:2:1: shortcut belongs directly inside residual"),
    ("input 1x28x28\nconcat {\n  relu\n}", r"^<spec>:3:3: only 'branch \{ \.\.\. \}' goes directly inside concat; "
                                           r"got 'relu'"),
    ("input 1x28x28\nconcat { branch { relu } }", r"^<spec>:2:1: concat needs at least 2 branches, got 1"),
    ("input 1x28x28\nconcat size=2 { branch { relu } }", r"^<spec>:2:8: concat takes only name=\.\.\., got 'size=2'"),
    ("input 1x28x28\nrepeat x { relu }", r"^<spec>:2:8: repeat expects a positive integer, got 'x'"),
    ("input 1x28x28\nrepeat 2 relu", r"^<spec>:2:1: repeat takes one count"),
    ("conv 8 k3", r"^<spec>:1:1: a spec starts with 'input'"),
    ("", r"^<spec>:1:1: a spec starts with 'input'"),
    ("input 1x28x28", r"^<spec>:1:1: the spec has no layers after 'input'"),
    ("input 1x0x28\nrelu", r"^<spec>:1:7: input expects sizes like 3x224x224, got '1x0x28'"),
    ("input 1x28x28\nrelu\ninput 1x2x2", r"^<spec>:3:1: input may appear only once"),
    ("input 1x28x28\nflatten\nconv 8 k3", r"^<spec>:3:1: conv needs an input \(N, C, L\) or \(N, C, H, W\) or "
                                          r"\(N, C, D, H, W\), but the input here has shape \(N, 784\)"),
    ("input 1x28x28\nconv2d 8 k3\nflatten\nbn2d", r"^<spec>:4:1: bn2d needs an input \(N, C, H, W\), but the input "
                                                  r"here has shape \(N, 5408\)"),
    ("input 1x28\navgpool k2 divisor=2", r"^<spec>:2:12: 1-d average pooling has no divisor option"),
    ("input 1x28x28\nupsample mode=cubic", r"^<spec>:2:15: upsample: mode \(interpolation mode\) expects one of"),
]

SHAPE_ERROR_CASES = [
    ("input 1x8x8\nconv 8 k3\nconv 8 k3\nconv 8 k3\n\nconv 16 k5",
     r"^<spec>:6:1: conv4 \(Conv2d\): kernel 5 with dilation 1 spans 5 > padded input 2"),
    ("input 1x8x8\nresidual {\n  conv 8 k3 p1\n  maxpool 8\n  maxpool 2\n}",
     r"^<spec>:5:3: block1\.maxpool2 \(MaxPool2d\): .*2"),
    ("input 1x8x8\nconcat {\n branch { conv 8 k3 }\n branch { conv 4 k1 }\n}",
     r"^<spec>:2:1: block1 \(Concat\): branch outputs must agree in every dim but the channels \(dim 1\) to be "
     r"concatenated; got branch1 \(2, 8, 6, 6\), branch2 \(2, 4, 8, 8\)"),
    ("input 4x8x8\nresidual { conv 8 k3 p1\n shortcut conv 4 k1 }",
     r"^<spec>:2:1: block1 \(Residual\): the body gives shape \(2, 8, 8, 8\) but the shortcut gives "
     r"\(2, 4, 8, 8\); a residual sum needs equal shapes"),
    ("input 3x28x28\nconv 8 k3 g=2", r"^<spec>:2:1: conv1 \(Conv2d\): in_channels \(3\) must be divisible by groups "
                                     r"\(2\)"),
    ("input 3x28x28\nconv 8 k3 p=same s2", r"^<spec>:2:1: conv1 \(Conv2d\): padding='same' needs stride 1"),
    ("input 3x28x28\nmaxpool k2 p2", r"^<spec>:2:1: maxpool1 \(MaxPool2d\): padding \(2, 2\) must be non-negative "
                                     r"and at most half the kernel"),
    ("input 3x28x28\ndropout 1.5", r"^<spec>:2:1: dropout1 \(Dropout\): dropout probability has to be between 0 "
                                   r"and 1, got 1\.5"),
    ("input 3x28x28\ngn 2", r"^<spec>:2:1: gn1 \(GroupNorm\): num_channels \(3\) must be divisible by num_groups "
                            r"\(2\)"),
    ("input 3x8x8\nupsample 2 bilinear\nupsample 2 trilinear", r"^<spec>:3:1: upsample2 \(Upsample\): mode "
                                                                 r"'trilinear' needs a 5-d input"),
]


@pytest.mark.parametrize("text, message", ERROR_CASES, ids=[c[1][:40] for c in ERROR_CASES])
def test_errors_point_at_line_and_column(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load_spec(text)


@pytest.mark.parametrize("text, message", SHAPE_ERROR_CASES, ids=[c[1][:40] for c in SHAPE_ERROR_CASES])
def test_shape_errors_are_located_spec_and_shape_errors(text: str, message: str) -> None:
    with pytest.raises(SpecShapeError, match=message) as info:
        load_spec(text)
    assert isinstance(info.value, cs.ShapeError) and isinstance(info.value, ValueError)


def test_residual_that_no_projection_can_fix_asks_for_a_shortcut() -> None:
    with pytest.raises(SpecError, match=r"^<spec>:2:1: the residual body maps shape \(2, 1, 8, 8\) to "
                                        r"\(2, 1, 16, 16\); no strided 1×1 conv maps size 8 to 16\. Write the "
                                        r"shortcut yourself"):
        load_spec("input 1x8x8\nresidual { upsample 2 }")


def test_error_attributes_and_file_names(tmp_path: Path) -> None:
    path = tmp_path / "model.spec"
    path.write_text("input 1x8x8\n# a comment\nconv 8 k3\nrelu\nconv 8 k3\nrelu\n  conv 16 k5   # too big\n")
    with pytest.raises(SpecShapeError) as info:
        load_spec(path)
    err = info.value
    assert (err.line, err.column, err.source) == (7, 3, str(path))
    assert str(err).startswith(f"{path}:7:3: conv3 (Conv2d): kernel 5 ")
    assert err.layer == "conv3 (Conv2d)"
    with pytest.raises(SpecError, match=r"^net:2:1: unknown layer"):
        load_spec("input 1x8x8\nfoo", source="net")
    path.write_bytes(b"input 1x8x8\n\xff\n")
    with pytest.raises(ValueError, match=r"model.spec: not UTF-8 text \(byte 0xff at offset 12\)$"):
        load_spec(path)


# --- the docs ---------------------------------------------------------------------------------
def _doc_blocks() -> list[tuple[str, str]]:
    return re.findall(r"```(\S*)\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)


def test_docs_spec_blocks_load() -> None:
    blocks = [body for lang, body in _doc_blocks() if lang == "spec"]
    assert len(blocks) >= 6
    for body in blocks:
        model = load_spec(body)
        model(cs.Tensor.meta((2, *model.input_shape)))


def test_docs_error_blocks_raise_the_message_shown_after_them() -> None:
    blocks = _doc_blocks()
    pairs = [(body, blocks[i + 1]) for i, (lang, body) in enumerate(blocks) if lang == "spec-error"]
    assert len(pairs) >= 4
    for body, (lang, shown) in pairs:
        assert lang == "text"
        with pytest.raises(SpecError) as info:
            load_spec(body)
        assert str(info.value) == shown.strip()


def test_docs_python_blocks_run_and_print_what_their_comments_say(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for body in [body for lang, body in _doc_blocks() if lang == "python"]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(body, str(DOCS), "exec"), {})
        said = [line.split("# ", 1)[1] for line in body.splitlines() if line.startswith("# ")]
        if said:
            assert out.getvalue().splitlines() == said


def test_docs_mention_every_keyword_and_option() -> None:
    text = DOCS.read_text(encoding="utf-8")
    missing = [name for kind in KINDS for name in (kind.name, *kind.aliases)
               if kind.generic and not re.search(rf"`{name}[` ]", text)]
    # options by key (`k`, `bias=off`), positional ones also by placeholder (`FILTERS`, `[SLOPE]`)
    missing += [f"{kind.name} {o.key}" for kind in KINDS for o in kind.options
                if not re.search(rf"`{re.escape(o.key)}[`= ]", text)
                and not (o.key in kind.positional and re.search(rf"`\[?{o.key.upper()}\]?[` ]", text))]
    missing += [w for w in ("residual", "concat", "branch", "shortcut", "repeat", "sequential", "frozen", "name=")
                if w not in text]
    assert not missing


# --- dump_spec --------------------------------------------------------------------------------
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_dump_spec_round_trips_the_examples(path: Path) -> None:
    model = load_spec(path)
    rebuilt = load_spec(dump_spec(model))
    assert repr(rebuilt) == repr(model)
    assert [(k, v.shape) for k, v in rebuilt.state_dict().items()] == [(k, v.shape)
                                                                       for k, v in model.state_dict().items()]
    assert rebuilt.input_shape == model.input_shape


def test_dump_spec_of_a_hand_built_sequential_keeps_its_names_and_weights() -> None:
    model = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5, padding=2,
                          padding_mode="reflect"), nn.AvgPool2d(3, stride=1, ceil_mode=True), nn.Flatten(),
                          nn.BatchNorm1d(16 * 12 * 12), nn.Linear(16 * 12 * 12, 10, bias=False))
    text = dump_spec(model, input_shape=(1, 32, 32))
    assert text.splitlines()[:3] == ["input 1x32x32", "conv 6 k5 name=0", "relu name=1"]
    rebuilt = load_spec(text)
    rebuilt.load_state_dict(model.state_dict())
    x = cs.tensor(np.random.default_rng(4).standard_normal((2, 1, 32, 32)).astype(np.float32))
    np.testing.assert_array_equal(rebuilt(x).numpy(), model(x).numpy())


def test_dump_spec_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError, match="needs input_shape"):
        dump_spec(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match=r"no spec keyword for 0 \(MSELoss\)"):
        dump_spec(nn.Sequential(nn.MSELoss()), input_shape=(3,))
    with pytest.raises(ValueError, match="writes Sequential models"):
        dump_spec(nn.Conv2d(1, 2, 3), input_shape=(1, 8, 8))
    odd = nn.Sequential(nn.Flatten(), nn.LayerNorm(4))   # LayerNorm over part of the sample: not expressible
    with pytest.raises(ValueError, match="would not rebuild this model exactly"):
        dump_spec(odd, input_shape=(2, 2, 4))


def test_residual_and_concat_modules_check_shapes_at_run_time_too() -> None:
    block = Residual(OrderedDict(conv=nn.Conv2d(2, 3, 1)))
    with pytest.raises(cs.ShapeError, match=r"^Residual: the body gives shape \(1, 3, 4, 4\) but the shortcut "
                                            r"gives \(1, 2, 4, 4\)"):
        block(cs.Tensor.meta((1, 2, 4, 4)))
    mix = Concat(OrderedDict(a=nn.Sequential(), b=nn.Sequential(nn.MaxPool2d(2))))
    with pytest.raises(cs.ShapeError, match=r"^Concat: branch outputs must agree .* got a \(1, 2, 4, 4\), "
                                            r"b \(1, 2, 2, 2\)"):
        mix(cs.Tensor.meta((1, 2, 4, 4)))


def test_the_package_docstring_example_runs() -> None:
    import doctest

    import convscope.spec

    result = doctest.testmod(convscope.spec)
    assert result.attempted >= 3 and result.failed == 0


def test_statement_tree_keeps_positions() -> None:
    from convscope.spec.syntax import parse

    (first, block) = parse("input 1x8x8\nresidual {  # comment\n conv 2 k3 ; relu }")
    assert isinstance(block, Statement) and block.head.line == 2 and block.brace.column == 10
    assert [(s.head.text, s.head.line, s.head.column) for s in block.body] == [("conv", 3, 2), ("relu", 3, 14)]


def test_dump_spec_writes_the_layers_the_spec_language_grew() -> None:
    """Instance norm, padding, PReLU (one slope per channel: ``each``), the ELU family and the
    shuffles round-trip: the dumped text rebuilds the same modules and outputs."""
    model = nn.Sequential(nn.ReflectionPad2d(2), nn.Conv2d(2, 8, 5), nn.InstanceNorm2d(8, affine=True),
                          nn.PReLU(8, init=0.1), nn.ZeroPad2d((1, 0, 2, 1)), nn.PixelUnshuffle(1), nn.SELU(),
                          nn.ChannelShuffle(2), nn.CELU(0.5), nn.Softplus(2.0, 5.0), nn.PReLU(), nn.LogSigmoid(),
                          nn.PixelShuffle(2), nn.CircularPad2d(1))
    text = dump_spec(model, input_shape=(2, 9, 9))
    assert "prelu init=0.1 each name=3" in text.splitlines() and "prelu name=10" in text.splitlines()
    rebuilt = load_spec(text)
    rebuilt.load_state_dict(model.state_dict())
    x = cs.tensor(np.random.default_rng(5).standard_normal((2, 2, 9, 9)))
    np.testing.assert_array_equal(rebuilt.double()(x).numpy(), model.double()(x).numpy())


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_dump_spec_writes_word_valued_padding_as_key_value(padding: str) -> None:
    """A glued short option needs a number after the key ('p1'); 'psame' would not parse."""
    model = nn.Sequential(nn.Conv2d(2, 4, 4, padding=padding, dilation=3, padding_mode="circular"))
    text = dump_spec(model, input_shape=(2, 11, 11))
    assert text.splitlines()[1] == f"conv 4 k4 p={padding} d3 mode=circular name=0"
    assert repr(load_spec(text)) == repr(model)


def test_dump_spec_takes_integer_valued_numbers_written_as_ints() -> None:
    """``Hardtanh(0, 6)`` (torch's idiom) is the layer the spec ``hardtanh 0 6`` builds, though
    the spec reads its numbers as floats; same outputs as torch's module."""
    model = nn.Sequential(nn.Hardtanh(0, 6), nn.LeakyReLU(0), nn.ELU(1), nn.Softplus(2, 5), nn.ConstantPad2d(1, 0),
                          nn.BatchNorm2d(3, momentum=0), nn.Dropout(0), nn.LPPool2d(2, 2, stride=1))
    text = dump_spec(model, input_shape=(3, 8, 8))
    assert text.splitlines()[1:3] == ["hardtanh 0 6 name=0", "leakyrelu 0 name=1"]
    rebuilt = load_spec(text).double().eval()
    x = np.random.default_rng(7).standard_normal((2, 3, 8, 8)) * 4
    theirs = torch.nn.Sequential(torch.nn.Hardtanh(0, 6), torch.nn.LeakyReLU(0), torch.nn.ELU(1),
                                 torch.nn.Softplus(2, 5), torch.nn.ConstantPad2d(1, 0), torch.nn.BatchNorm2d(3).eval(),
                                 torch.nn.Dropout(0), torch.nn.LPPool2d(2, 2, stride=1)).double()
    assert_close(rebuilt(cs.tensor(x)).numpy(), theirs(torch.from_numpy(x)).detach().numpy())


@pytest.mark.parametrize("pool, shape", [(nn.LPPool1d(2, 3), (2, 9)), (nn.LPPool2d(1.5, 2), (2, 8, 8)),
                                         (nn.LPPool3d(3, 2), (2, 4, 4, 4))])
def test_dump_spec_leaves_out_a_pool_stride_left_unset(pool: nn.Module, shape: tuple[int, ...]) -> None:
    """LPPool keeps ``stride=None`` (the kernel, as torch): nothing to write, not 'sNone'."""
    model = nn.Sequential(nn.ReLU(), pool)
    text = dump_spec(model, input_shape=shape)
    assert "s" not in text.splitlines()[2].split()[2:-1]
    x = cs.tensor(np.random.default_rng(6).standard_normal((2, *shape)))
    np.testing.assert_array_equal(load_spec(text).double()(x).numpy(), model.double()(x).numpy())


@pytest.mark.parametrize("text", ["input 1x8x8\nrelu name=training", "input 1x8x8\nconv 2 k3 name=forward",
                                  "input 1x8x8\nrelu name=input_shape", "input 1x8x8\nseq name=_modules { relu }",
                                  "input 1x8x8\nresidual { relu name=body }",
                                  "input 1x8x8\nconcat { branch name=branch_names { }\n branch { } }",
                                  "input 1x8x8\nseq { relu name=__init__ }"])
def test_a_name_that_is_an_attribute_of_its_container_is_a_located_error(text: str) -> None:
    """torch's add_module refuses such names with a KeyError; the spec says where and why."""
    line = text.count("\n", 0, text.index("name=")) + 1
    with pytest.raises(SpecError, match=rf"^<spec>:{line}:\d+: the name '\w+' is reserved here"):
        load_spec(text)


def test_upsample_takes_every_mode_as_a_bare_word_as_torch_computes_it() -> None:
    """docs/spec.md: mode=... 'or the bare mode name', nearest-exact included."""
    rng = np.random.default_rng(8)
    for mode, shape in [("nearest-exact", (3, 5, 7)), ("bilinear", (3, 5, 7)), ("area", (3, 5, 7)),
                        ("linear", (3, 7)), ("trilinear", (3, 2, 5, 7))]:
        sample = rng.standard_normal((2, *shape))
        model = load_spec(f"input {'x'.join(map(str, shape))}\nupsample 1.5 {mode}").double()
        want = torch.nn.Upsample(scale_factor=1.5, mode=mode)(torch.from_numpy(sample)).numpy()
        assert_close(model(cs.tensor(sample)).numpy(), want)


@pytest.mark.parametrize("text, where", [("input 100000x8x8\nconv 100000 k3", "2:1: conv1 \\(Conv2d\\)"),
                                         ("input 3x8x8\nflatten\nfc 1000000000000", "3:1: fc1 \\(Linear\\)")])
def test_a_layer_too_big_for_memory_is_a_located_error(text: str, where: str) -> None:
    """100000 · 100000 · 3 · 3 float32 weights are 335 GiB: a one-line error, not a MemoryError."""
    message = rf"^<spec>:{where}: its parameters do not fit in memory \(Unable to allocate .* [GT]iB"
    with pytest.raises(SpecError, match=message):
        load_spec(text)


@pytest.mark.parametrize("text", ["input 1x8x8\nrepeat 100000000000000000000 { relu }",
                                  "input 1x8x8\nrepeat 1000 { repeat 1000 { relu } }",
                                  "input 1x8x8\nrepeat 2 {\n repeat 60000 { relu } }"])
def test_a_repeat_count_too_large_to_unroll_is_an_error_not_a_hang(text: str) -> None:
    """Each case would write out more than 100,000 statements (the first 10^20, once a MemoryError)."""
    with pytest.raises(SpecError, match=r"^<spec>:2:8: repeat \d+ would write out [\d,]+ statements, "
                                        r"more than the 100,000 a spec may unroll"):
        load_spec(text)


def test_a_spec_file_saved_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    """Windows Notepad starts UTF-8 files with U+FEFF; the spec still starts with 'input'."""
    path = tmp_path / "bom.spec"
    path.write_bytes("\ufeffinput 1x8x8\r\nconv 4 k3  # 4 × 6 × 6\r\n".encode())
    assert load_spec(path).conv1.weight.shape == (4, 1, 3, 3)


@pytest.mark.parametrize("text", ["input 1x8x8\nresidual name=a name=b { relu }",
                                  "input 1x8x8\nconcat { branch name=a name=b { }\n branch { } }"])
def test_a_block_name_given_twice_is_an_error_as_for_layers(text: str) -> None:
    """Not silently the last one: 'conv 8 k3 name=x name=y' is refused the same way."""
    with pytest.raises(SpecError, match=r"^<spec>:2:\d+: (residual|branch): name is given twice$"):
        load_spec(text)
