"""PyTorch interop: from_torch and to_torch.

Differential tests against torch itself: torch models written here with plain ``torch.nn`` in
torchvision's layout (ResNet-18, a MobileNet-v2 inverted residual, a GoogLeNet inception
block, a SqueezeNet Fire module, a VGG-style Sequential) convert to convscope with the same
outputs (float64 within 1e-10 of the output scale, float32 within 2e-5), state_dict keys and
shapes; the zoo's convscope models convert to torch with the same outputs; both round trips
hold; every one-to-one layer keeps its constructor arguments and outputs; unsupported layers,
functions and methods are refused with the node named; gradients and meta tensors go through
converted models. Batch-norm statistics are randomised so that no layer is an identity.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF

import convscope as cs
from convscope.interop import torch_graph
from convscope.interop.torch_capture import OP_RULES
from convscope.interop.torch_convert import ConversionError, GraphModule, from_torch, to_torch
from convscope.interop.torch_layers import SPECS
from torch_ref import assert_close


# --- torch models, torchvision layout -------------------------------------------------------------
class BasicBlock(tnn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: tnn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.relu = tnn.ReLU(inplace=True)
        self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet18(tnn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(64)
        self.relu = tnn.ReLU(inplace=True)
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, (planes, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), 1):
            downsample = None
            if stride != 1 or inplanes != planes:
                downsample = tnn.Sequential(tnn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            tnn.BatchNorm2d(planes))
            setattr(self, f"layer{i}", tnn.Sequential(BasicBlock(inplanes, planes, stride, downsample),
                                                      BasicBlock(planes, planes)))
            inplanes = planes
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.fc = tnn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def conv_bn_act(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> tnn.Sequential:
    return tnn.Sequential(tnn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                          tnn.BatchNorm2d(cout), tnn.ReLU6(inplace=True))


class InvertedResidual(tnn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[tnn.Module] = [conv_bn_act(inp, hidden, 1)] if expand_ratio != 1 else []
        layers += [conv_bn_act(hidden, hidden, 3, stride, groups=hidden), tnn.Conv2d(hidden, oup, 1, bias=False),
                   tnn.BatchNorm2d(oup)]
        self.conv = tnn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class BasicConv2d(tnn.Module):
    def __init__(self, cin: int, cout: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = tnn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = tnn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return TF.relu(self.bn(self.conv(x)), inplace=True)


class Inception(tnn.Module):
    def __init__(self, cin: int, ch1: int, ch3r: int, ch3: int, ch5r: int, ch5: int, pool_proj: int) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(cin, ch1, kernel_size=1)
        self.branch2 = tnn.Sequential(BasicConv2d(cin, ch3r, kernel_size=1), BasicConv2d(ch3r, ch3, kernel_size=3,
                                                                                         padding=1))
        self.branch3 = tnn.Sequential(BasicConv2d(cin, ch5r, kernel_size=1), BasicConv2d(ch5r, ch5, kernel_size=3,
                                                                                         padding=1))
        self.branch4 = tnn.Sequential(tnn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                      BasicConv2d(cin, pool_proj, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(outputs, 1)


class Fire(tnn.Module):
    def __init__(self, cin: int, squeeze: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = tnn.Conv2d(cin, squeeze, 1)
        self.squeeze_activation = tnn.ReLU(inplace=True)
        self.expand1x1 = tnn.Conv2d(squeeze, e1, 1)
        self.expand1x1_activation = tnn.ReLU(inplace=True)
        self.expand3x3 = tnn.Conv2d(squeeze, e3, 3, padding=1)
        self.expand3x3_activation = tnn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


def vgg_style() -> tnn.Sequential:
    features = tnn.Sequential(tnn.Conv2d(3, 8, 3, padding=1), tnn.BatchNorm2d(8), tnn.ReLU(inplace=True),
                              tnn.MaxPool2d(2, 2), tnn.Conv2d(8, 16, 3, padding=1), tnn.ReLU(inplace=True),
                              tnn.MaxPool2d(2, 2))
    classifier = tnn.Sequential(tnn.Linear(16 * 2 * 2, 32), tnn.ReLU(True), tnn.Dropout(), tnn.Linear(32, 10))
    return tnn.Sequential(OrderedDict(features=features, avgpool=tnn.AdaptiveAvgPool2d((2, 2)),
                                      flatten=tnn.Flatten(), classifier=classifier))


def randomise(model: tnn.Module, seed: int = 0) -> tnn.Module:
    """Random batch-norm statistics and affine parameters (fresh ones make BN an identity)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, tnn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model.eval()


TORCH_MODELS = {
    "resnet18": (lambda: ResNet18(), (3, 32, 32)),
    "inverted_residual": (lambda: tnn.Sequential(InvertedResidual(8, 16, 2, 6), InvertedResidual(16, 16, 1, 6)),
                          (8, 12, 12)),
    "inception": (lambda: Inception(16, 8, 8, 12, 4, 6, 6), (16, 9, 9)),
    "fire": (lambda: Fire(16, 4, 8, 8), (16, 7, 7)),
    "vgg_style": (vgg_style, (3, 8, 8)),
}


@pytest.fixture(scope="module", params=sorted(TORCH_MODELS))
def converted(request: pytest.FixtureRequest) -> tuple[str, tnn.Module, cs.nn.Module, tuple[int, ...]]:
    """(name, torch model, its from_torch conversion, input shape with a batch of 2)."""
    factory, shape = TORCH_MODELS[request.param]
    torch.manual_seed(0)
    net = randomise(factory())
    return request.param, net, from_torch(net), (2, *shape)


def _input(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


# --- from_torch ---------------------------------------------------------------------------------
def test_from_torch_same_state_dict(converted: tuple) -> None:
    _, net, model, _ = converted
    theirs, ours = net.state_dict(), model.state_dict()
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert ours[key].shape == tuple(value.shape), key
        assert ours[key].dtype == value.numpy().dtype, key
        np.testing.assert_array_equal(ours[key], value.numpy(), err_msg=key)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_from_torch_same_outputs(converted: tuple, dtype: Any) -> None:
    _, net, model, shape = converted
    x = _input(shape).astype(dtype)
    if dtype == np.float64:
        net, model = copy.deepcopy(net).double(), copy.deepcopy(model).double()
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = model(cs.tensor(x)).numpy()
    assert got.dtype == want.dtype
    assert_close(got, want, dtype, "output")


def test_from_torch_runs_on_meta_tensors(converted: tuple) -> None:
    _, net, model, shape = converted
    with torch.no_grad():
        want = net(torch.zeros(shape)).shape
    out = model(cs.Tensor.meta(shape))
    assert out.is_meta and out.shape == tuple(want)


def test_from_torch_keeps_class_names_and_graphs() -> None:
    net = randomise(ResNet18())
    model = from_torch(net, input_shape=(3, 32, 32))  # also runs the built-in float64 check
    assert type(model).__name__ == "ResNet18"
    assert isinstance(model, GraphModule)
    block = model.layer2[0]
    assert type(block).__name__ == "BasicBlock" and isinstance(block.downsample, cs.nn.Sequential)
    assert [n.target for n in block.graph_nodes if n.op == "call_function"] == ["operator.add"]
    # torchvision's key layout is the zoo's: both name every tensor alike
    zoo = cs.zoo.build("resnet18", num_classes=10).state_dict()
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in zoo.items()}


def test_from_torch_keeps_flags_and_dtype() -> None:
    net = randomise(Fire(4, 2, 3, 3)).double().train()
    net.squeeze.weight.requires_grad_(False)
    model = from_torch(net)
    assert model.training and all(m.training for m in model.modules())
    assert model.squeeze.weight.dtype == np.float64 and not model.squeeze.weight.requires_grad
    assert model.expand1x1.weight.requires_grad


def test_from_torch_training_mode_matches_batch_statistics() -> None:
    torch.manual_seed(0)
    net = randomise(tnn.Sequential(BasicBlock(4, 8, 2, tnn.Sequential(tnn.Conv2d(4, 8, 1, 2, bias=False),
                                                                      tnn.BatchNorm2d(8))))).double().train()
    model = from_torch(net)
    x = _input((3, 4, 6, 6))
    want = net(torch.from_numpy(x)).detach().numpy()
    assert_close(model(cs.tensor(x)).numpy(), want, np.float64, "train-mode output")
    for key, value in net.state_dict().items():  # running statistics updated alike
        assert_close(np.asarray(model.state_dict()[key], np.float64), value.numpy().astype(np.float64), np.float64,
                     key)


def test_gradients_flow_like_torch() -> None:
    torch.manual_seed(0)
    net = randomise(ResNet18()).double()
    model = from_torch(net)
    x = _input((2, 3, 32, 32))
    upstream = _input((2, 10), seed=2)
    tx = torch.from_numpy(x).requires_grad_()
    net(tx).backward(torch.from_numpy(upstream))
    cx = cs.tensor(x, requires_grad=True)
    model(cx).backward(upstream)
    assert_close(cx.grad, tx.grad.numpy(), np.float64, "input gradient")
    assert_close(model.layer3[0].conv1.weight.grad, net.layer3[0].conv1.weight.grad.numpy(), np.float64,
                 "weight gradient")


def test_functional_calls_and_methods_replay() -> None:
    """A forward written with functions and tensor methods rather than modules."""

    class Head(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = tnn.Conv2d(3, 6, 3)
            self.register_buffer("scale", torch.linspace(0.5, 1.5, 6).reshape(1, 6, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = TF.max_pool2d(TF.leaky_relu(self.conv(x), 0.2), 2, ceil_mode=True).to(torch.float64) * self.scale
            z = y.mean(dim=(2, 3), keepdim=True).sigmoid()
            flat = (y * z).reshape(x.shape[0], -1)
            w = TF.softmax(TF.adaptive_avg_pool2d(y, 1).view(y.size(0), -1), dim=1)
            return torch.cat([flat[:, :5], w.transpose(0, 1).transpose(0, 1) + 1.0], dim=1)

    net = Head().double()
    model = from_torch(net, input_shape=(3, 9, 9))
    x = _input((2, 3, 9, 9))
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert_close(model(cs.tensor(x)).numpy(), want, np.float64, "output")
    assert model(cs.Tensor.meta((4, 3, 9, 9), cs.float64)).shape == (4, 11)


def test_erf_in_all_three_spellings_converts_both_ways() -> None:
    """``torch.erf``, ``torch.special.erf`` and ``Tensor.erf`` replay as ``ops.erf``, with torch's
    gradient; a convscope model using ``erf`` records back to torch."""

    class Erfs(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = tnn.Conv2d(2, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return torch.erf(y) * torch.special.erf(y * 0.5) + (y - 1).erf()

    net = Erfs().double()
    model = from_torch(net, input_shape=(2, 4, 4))
    x = _input((2, 2, 4, 4))
    xt = torch.from_numpy(x).requires_grad_()
    net(xt).sum().backward()
    xc = cs.tensor(x, requires_grad=True)
    out = model(xc)
    out.sum().backward()
    assert_close(out.numpy(), net(xt).detach().numpy(), np.float64, "output")
    assert_close(xc.grad, xt.grad.numpy(), np.float64, "input gradient")

    class Gate(cs.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = cs.nn.Conv2d(2, 3, 1)

        def forward(self, x: cs.Tensor) -> cs.Tensor:
            return self.conv(x).erf()

    ours = Gate().double()
    twin = to_torch(ours, (2, 4, 4))
    with torch.no_grad():
        assert_close(ours(cs.tensor(x)).numpy(), twin(torch.from_numpy(x)).numpy(), np.float64, "to_torch output")


def test_module_traceable_only_inside_its_parent() -> None:
    """A block that branches on a Python argument is traced as part of its parent's graph."""

    class Gate(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = tnn.Conv2d(2, 2, 1)

        def forward(self, x: torch.Tensor, double: bool) -> torch.Tensor:
            return self.conv(x) * 2 if double else self.conv(x)

    class Parent(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gate = Gate()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.gate(x, True) - self.gate(x, False)

    net = Parent().double()
    model = from_torch(net, input_shape=(2, 3, 3))
    assert [n.target for n in model.graph_nodes if n.op == "call_module"] == ["gate.conv", "gate.conv"]
    with pytest.raises(ConversionError, match=r"Gate has no graph of its own: .*TraceError"):
        model.gate(cs.Tensor.meta((1, 2, 3, 3), cs.float64))
    back = to_torch(model, (2, 3, 3))
    x = torch.from_numpy(_input((2, 2, 3, 3)))
    with torch.no_grad():
        np.testing.assert_array_equal(back(x).numpy(), net(x).numpy())
    assert list(back.state_dict()) == list(net.state_dict())


# --- one-to-one layers ----------------------------------------------------------------------------
class PoolUnpool(tnn.Module):
    """Max pooling with indices, then unpooling: a tuple output inside a traced graph."""

    def __init__(self, nd: int) -> None:
        super().__init__()
        self.pool = getattr(tnn, f"MaxPool{nd}d")(2, return_indices=True)
        self.unpool = getattr(tnn, f"MaxUnpool{nd}d")(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, idx = self.pool(x)
        return self.unpool(y, idx)


# (torch layer, input shape); every SPECS class appears (test_every_layer_spec_is_tested)
LAYERS: list[tuple[Any, tuple[int, ...]]] = [
    (lambda: tnn.Conv1d(2, 4, 3, stride=2, padding=1, padding_mode="reflect"), (2, 2, 9)),
    (lambda: tnn.Conv2d(4, 6, 3, padding="same", dilation=2, groups=2, padding_mode="circular"), (2, 4, 7, 7)),
    (lambda: tnn.Conv3d(2, 3, 2, padding=1, bias=False, padding_mode="replicate"), (1, 2, 4, 4, 4)),
    (lambda: tnn.ConvTranspose1d(2, 4, 3, stride=2, output_padding=1), (2, 2, 5)),
    (lambda: tnn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, groups=2, dilation=2), (2, 4, 4, 4)),
    (lambda: tnn.ConvTranspose3d(2, 2, 2, stride=2, bias=False), (1, 2, 2, 3, 3)),
    (lambda: tnn.MaxPool1d(3, 2, 1, ceil_mode=True), (2, 3, 8)),
    (lambda: tnn.MaxPool2d(3, 2, 1, dilation=2), (2, 3, 9, 9)),
    (lambda: tnn.MaxPool3d(2), (1, 2, 4, 4, 4)),
    (lambda: tnn.AvgPool1d(3, 2, 1, count_include_pad=False), (2, 3, 8)),
    (lambda: tnn.AvgPool2d(3, 2, 1, ceil_mode=True, divisor_override=4), (2, 3, 8, 8)),
    (lambda: tnn.AvgPool3d(2, count_include_pad=False), (1, 2, 4, 4, 4)),
    (lambda: tnn.LPPool1d(2, 3, 2), (2, 3, 8)),
    (lambda: tnn.LPPool2d(2, (2, 3), 1), (2, 3, 6, 6)),
    (lambda: tnn.LPPool3d(2, 2), (1, 2, 4, 4, 4)),
    (lambda: tnn.AdaptiveAvgPool1d(3), (2, 3, 8)),
    (lambda: tnn.AdaptiveAvgPool2d((3, None)), (2, 3, 7, 5)),
    (lambda: tnn.AdaptiveAvgPool3d(2), (1, 2, 5, 4, 3)),
    (lambda: tnn.AdaptiveMaxPool1d(3), (2, 3, 8)),
    (lambda: tnn.AdaptiveMaxPool2d((2, 3)), (2, 3, 7, 5)),
    (lambda: tnn.AdaptiveMaxPool3d(2), (1, 2, 5, 4, 3)),
    (lambda: PoolUnpool(1), (2, 3, 8)),
    (lambda: PoolUnpool(2), (2, 3, 4, 4)),
    (lambda: PoolUnpool(3), (1, 2, 4, 4, 4)),
    (lambda: tnn.Sequential(tnn.MaxPool2d(2, return_indices=True)), (2, 3, 4, 4)),
    (lambda: tnn.BatchNorm1d(3, momentum=None), (4, 3, 5)),
    (lambda: tnn.BatchNorm2d(3, eps=1e-3, affine=False), (2, 3, 4, 4)),
    (lambda: tnn.BatchNorm3d(2, track_running_stats=False), (2, 2, 3, 3, 3)),
    (lambda: tnn.InstanceNorm1d(3, affine=True), (2, 3, 5)),
    (lambda: tnn.InstanceNorm2d(3, eps=1e-3, track_running_stats=True), (2, 3, 4, 4)),
    (lambda: tnn.InstanceNorm3d(2, momentum=None, affine=True, track_running_stats=True), (2, 2, 3, 3, 3)),
    (lambda: tnn.LayerNorm((4, 5), eps=1e-4, bias=False), (2, 3, 4, 5)),
    (lambda: tnn.GroupNorm(2, 4, affine=False), (2, 4, 3, 3)),
    (lambda: tnn.LocalResponseNorm(3, alpha=1e-2, beta=0.5, k=2.0), (2, 5, 3, 3)),
    (lambda: tnn.Linear(5, 3), (2, 4, 5)),
    (lambda: tnn.Flatten(1, 2), (2, 3, 4, 5)),
    (lambda: tnn.Unflatten(1, (2, 3)), (2, 6, 4)),
    (lambda: tnn.Dropout(0.3), (2, 5)),
    (lambda: tnn.Dropout1d(0.3), (2, 3, 5)),
    (lambda: tnn.Dropout2d(0.3), (2, 3, 4, 4)),
    (lambda: tnn.Dropout3d(0.3), (1, 2, 3, 3, 3)),
    (lambda: tnn.ReLU(), (2, 7)),
    (lambda: tnn.ReLU6(), (2, 7)),
    (lambda: tnn.SiLU(), (2, 7)),
    (lambda: tnn.Mish(), (2, 7)),
    (lambda: tnn.Upsample(scale_factor=1.7, mode="bicubic"), (2, 3, 4, 5)),
    (lambda: tnn.Upsample(size=(3, 2), mode="area"), (2, 3, 7, 5)),
    (lambda: tnn.Hardswish(), (2, 7)),
    (lambda: tnn.Hardsigmoid(), (2, 7)),
    (lambda: tnn.Hardtanh(-0.5, 0.7), (2, 7)),
    (lambda: tnn.LeakyReLU(0.3), (2, 7)),
    (lambda: tnn.ELU(0.7), (2, 7)),
    (lambda: tnn.CELU(0.6), (2, 7)),
    (lambda: tnn.PReLU(3, 0.1), (2, 3, 4)),
    (lambda: tnn.SELU(), (2, 7)),
    (lambda: tnn.Softplus(2, 1.5), (2, 7)),
    (lambda: tnn.LogSigmoid(), (2, 7)),
    (lambda: tnn.GELU("tanh"), (2, 7)),
    (lambda: tnn.Sigmoid(), (2, 7)),
    (lambda: tnn.Tanh(), (2, 7)),
    (lambda: tnn.Softmax(dim=1), (2, 7)),
    (lambda: tnn.LogSoftmax(dim=0), (2, 7)),
    (lambda: tnn.Identity(), (2, 7)),
    (lambda: tnn.ConstantPad1d((1, 2), -0.5), (2, 3, 5)),
    (lambda: tnn.ConstantPad2d(1, 2.0), (2, 3, 4, 4)),
    (lambda: tnn.ConstantPad3d((1, 0, 0, 2, 1, 1), 1.0), (1, 2, 3, 3, 3)),
    (lambda: tnn.ZeroPad1d(2), (2, 3, 5)),
    (lambda: tnn.ZeroPad2d((1, 2, 0, 3)), (2, 3, 4, 4)),
    (lambda: tnn.ZeroPad3d(1), (1, 2, 3, 3, 3)),
    (lambda: tnn.ReflectionPad1d(2), (2, 3, 5)),
    (lambda: tnn.ReflectionPad2d((1, 2, 3, 0)), (2, 3, 4, 5)),
    (lambda: tnn.ReflectionPad3d(1), (1, 2, 3, 3, 3)),
    (lambda: tnn.ReplicationPad1d((3, 1)), (2, 3, 5)),
    (lambda: tnn.ReplicationPad2d(2), (2, 3, 4, 4)),
    (lambda: tnn.ReplicationPad3d((1, 2, 0, 1, 2, 0)), (1, 2, 3, 3, 3)),
    (lambda: tnn.CircularPad1d(2), (2, 3, 5)),
    (lambda: tnn.CircularPad2d((1, 2, 3, 0)), (2, 3, 4, 4)),
    (lambda: tnn.CircularPad3d(1), (1, 2, 3, 3, 3)),
    (lambda: tnn.PixelShuffle(2), (2, 8, 3, 3)),
    (lambda: tnn.PixelUnshuffle(2), (2, 2, 4, 6)),
    (lambda: tnn.ChannelShuffle(2), (2, 6, 3, 3)),
    (lambda: tnn.Upsample(scale_factor=1.5, mode="bilinear", align_corners=True), (2, 3, 4, 4)),
    (lambda: tnn.UpsamplingNearest2d(size=(5, 7)), (2, 3, 4, 4)),
    (lambda: tnn.UpsamplingBilinear2d(scale_factor=2), (2, 3, 3, 3)),
]


def _leaves(net: tnn.Module) -> list[tnn.Module]:
    return [m for m in net.modules() if not m._modules]


def test_every_layer_spec_is_tested() -> None:
    tested = {type(m).__name__ for factory, _ in LAYERS for m in _leaves(factory())}
    assert tested == {spec.name for spec in SPECS}


@pytest.mark.parametrize("factory,shape", LAYERS, ids=[f"{i}" for i in range(len(LAYERS))])
def test_layer_converts_one_to_one(factory: Any, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = factory().double().eval()
    model = from_torch(net)
    for theirs, ours in zip(_leaves(net), [m for m in model.modules() if not m._modules]):
        assert type(ours).__name__ == type(theirs).__name__
        for spec in SPECS:
            if spec.name == type(theirs).__name__:
                assert {a: getattr(ours, a) for a in spec.args} == {a: getattr(theirs, a) for a in spec.args}
    x = _input(shape)
    with torch.no_grad():
        want = net(torch.from_numpy(x))
    got = model(cs.tensor(x))
    want, got = (want[0], got[0]) if isinstance(want, tuple) else (want, got)
    assert_close(got.numpy(), want.numpy(), np.float64, "output")
    back = to_torch(model, shape[1:])  # and back: same classes, arguments, dtypes, outputs
    assert [type(m) for m in _leaves(back)] == [type(m) for m in _leaves(net)]
    assert {k: v.dtype for k, v in back.state_dict().items()} == {k: v.dtype for k, v in net.state_dict().items()}
    with torch.no_grad():
        again = back(torch.from_numpy(x))
    again = again[0] if isinstance(again, tuple) else again
    np.testing.assert_array_equal(again.numpy(), want.numpy())


# --- to_torch on the zoo ---------------------------------------------------------------------------
ZOO = {  # name → (build options, input shape): reduced class counts and image sizes
    "resnet18": ({"num_classes": 10}, (3, 32, 32)),
    "mobilenet_v2": ({"num_classes": 10}, (3, 32, 32)),
    "densenet121": ({"num_classes": 10}, (3, 32, 32)),  # layers taking a list of every earlier map
    "resnext50_32x4d": ({"num_classes": 10}, (3, 32, 32)),
    "mobilenet_v3_small": ({"num_classes": 10}, (3, 32, 32)),  # squeeze-and-excite: a gate times the maps
    "shufflenet_v2_x0_5": ({"num_classes": 10}, (3, 32, 32)),  # channel split (slices) and shuffle (permute)
    "squeezenet1_0": ({"num_classes": 10}, (3, 48, 48)),
    "googlenet": ({"num_classes": 10}, (3, 32, 32)),
    "alexnet": ({"num_classes": 10}, (3, 64, 64)),
    "vgg11_bn": ({"num_classes": 10, "init_weights": False}, (3, 32, 32)),
    "lenet5_modern": ({}, (1, 32, 32)),
    "lenet5": ({}, (1, 32, 32)),  # the paper's custom layers: parameter reads, constants, sums
}


def randomise_cs(model: cs.nn.Module, seed: int = 0) -> cs.nn.Module:
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, (cs.nn.BatchNorm1d, cs.nn.BatchNorm2d, cs.nn.BatchNorm3d)):
            n = m.num_features
            m.running_mean.data[...] = rng.standard_normal(n) * 0.1
            m.running_var.data[...] = rng.random(n) + 0.5
            m.weight.data[...] = rng.random(n) + 0.5
            m.bias.data[...] = rng.standard_normal(n) * 0.1
    return model.eval()


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_to_torch_same_outputs(name: str) -> None:
    options, shape = ZOO[name]
    cs.manual_seed(0)
    model = randomise_cs(cs.zoo.build(name, **options))
    net = to_torch(model, shape, check=False)
    assert list(net.state_dict()) == list(model.state_dict())
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), model.state_dict()[key], err_msg=key)
    x = _input((2, *shape)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert_close(model(cs.tensor(x)).numpy(), want, np.float32, "float32 output")
    if name not in ("alexnet", "vgg11_bn"):  # the big classifiers: float32 only, to keep the suite fast
        net.double()
        model.double()
        x64 = _input((3, *shape))  # another batch size than the recording's
        with torch.no_grad():
            want = net(torch.from_numpy(x64)).numpy()
        assert_close(model(cs.tensor(x64)).numpy(), want, np.float64, "float64 output")


def test_zoo_to_torch_writes_graphs() -> None:
    model = cs.zoo.build("resnet18", num_classes=10)
    net = to_torch(model, (3, 32, 32))  # with the built-in float64 check
    assert type(net).__name__ == "ResNet" and isinstance(net, torch.fx.GraphModule)
    assert "torch.flatten" in net.code and "self.layer4" in net.code
    block = net.layer2[0]
    assert type(block).__name__ == "BasicBlock" and " + " in block.code
    assert isinstance(block.downsample, tnn.Sequential) and isinstance(block.conv1, tnn.Conv2d)


# --- round trips ---------------------------------------------------------------------------------
def test_round_trip_torch_convscope_torch(converted: tuple) -> None:
    _, net, model, shape = converted
    back = to_torch(model)
    assert list(back.state_dict()) == list(net.state_dict())
    x = torch.from_numpy(_input(shape).astype(np.float32))
    with torch.no_grad():
        assert_close(back(x).numpy(), net(x).numpy(), np.float32, "round-trip output")


@pytest.mark.parametrize("name", ["mobilenet_v2", "googlenet"])
def test_round_trip_convscope_torch_convscope(name: str) -> None:
    options, shape = ZOO[name]
    cs.manual_seed(1)
    model = randomise_cs(cs.zoo.build(name, **options)).double()
    again = from_torch(to_torch(model, shape, check=False))
    assert list(again.state_dict()) == list(model.state_dict())
    x = cs.tensor(_input((2, *shape)))
    assert_close(again(x).numpy(), model(x).numpy(), np.float64, "round-trip output")


# --- refusals -------------------------------------------------------------------------------------
class _Attention(tnn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = tnn.Sequential(tnn.Linear(4, 4), tnn.MultiheadAttention(4, 1))

    def forward(self, x: torch.Tensor) -> Any:
        return self.features(x)


class _Lambda(tnn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> Any:
        return self.fn(x)


@pytest.mark.parametrize("net,match", [
    (_Attention(), r"node 'features_1' in the root module \(_Attention\) calls torch.nn.MultiheadAttention "
                   r"\(module 'features.1'\), which convscope does not support"),
    (_Lambda(lambda x: torch.cumsum(x, 1)), r"node 'cumsum' .* calls torch.cumsum, which convscope does not support"),
    (_Lambda(lambda x: x.chunk(2, 1)[0]), r"node 'chunk' .* calls Tensor.chunk"),
    (_Lambda(lambda x: torch.add(x, x, alpha=2)), r"calls torch.add with alpha=2"),
    (_Lambda(lambda x: x.to("cpu")), r"convscope converts dtypes only"),
    (_Lambda(lambda x: x if x.sum() > 0 else -x), r"torch.fx cannot trace the root module \(_Lambda\)"),
    (tnn.Sequential(tnn.ReLU(), tnn.Softsign()), r"node '_1' .* calls torch.nn.Softsign \(module '1'\)"),
])
def test_from_torch_refuses_unsupported(net: tnn.Module, match: str) -> None:
    with pytest.raises(ConversionError, match=match):
        from_torch(net)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated, but users still bring its modules
@pytest.mark.parametrize("compile_", [torch.jit.script, lambda m: torch.jit.trace(m, torch.zeros(1, 1, 8, 8))])
def test_from_torch_refuses_a_torchscript_module_by_what_it_is(compile_: Any) -> None:
    """A scripted or traced module has no Python forward: torch.fx failed on an assertion and
    the hint spoke of control flow depending on tensor values."""
    net = compile_(tnn.Sequential(tnn.Conv2d(1, 2, 3), tnn.ReLU()))
    with pytest.raises(ConversionError, match=r"^from_torch: \w+ is a TorchScript module \(torch\.jit\.script or "
                                              r"torch\.jit\.trace\), which torch\.fx cannot trace; pass the nn\.Module "
                                              r"it was made from$"):
        from_torch(net)


def test_from_torch_refuses_an_unused_unsupported_layer() -> None:
    net = Fire(4, 2, 2, 2)
    net.fold = tnn.Fold((4, 4), 2)
    with pytest.raises(ConversionError, match=r"module 'fold' is a torch.nn.Fold"):
        from_torch(net)


def test_from_torch_check_catches_a_wrong_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    """The input_shape check really compares: replay ReLU wrongly and it must object."""
    monkeypatch.setitem(torch_graph.FUNCTIONS, "torch.nn.functional.relu", cs.functional.silu)
    net = Inception(3, 2, 2, 2, 2, 2, 2)
    with pytest.raises(ConversionError, match=r"output 0 differs from the original's by up to"):
        from_torch(net, input_shape=(3, 5, 5))


def _conv_2() -> tnn.Conv2d:
    return tnn.Conv2d(2, 2, 3, padding=1)


class _InPlaceChain(tnn.Module):
    """In-place changes under one tensor's names: a method's result (``z``) is ``y`` itself."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.relu = _conv_2(), tnn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        TF.relu(y, True)
        y.add_(-0.5)
        z = y.clamp_(max=1.0)
        z.mul_(3)
        self.relu(y)
        return y - 2 * z + x


class _ReshapedThenChanged(tnn.Module):
    """A view changed in place whose base is not read again; a size read before the change
    and used after it (sizes share no memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = _conv_2()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        shape = y.shape
        v = y.view(-1)
        v.relu_()
        return v.reshape(shape[0], -1)


class _BodyThenInPlaceReLU(tnn.Module):
    """The Sequential cannot return its input, so changing its output leaves ``x`` alone."""

    def __init__(self) -> None:
        super().__init__()
        self.body, self.relu = tnn.Sequential(_conv_2(), tnn.BatchNorm2d(2)), tnn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x)) + x


class _PassThrough(tnn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape)


@pytest.mark.parametrize("net", [_InPlaceChain(), _ReshapedThenChanged(), _BodyThenInPlaceReLU()],
                         ids=lambda n: type(n).__name__)
def test_from_torch_follows_in_place_changes(net: tnn.Module) -> None:
    """In-place ops whose torch result is read under the old name: the conversion reads each
    later use from the op that changed it (checked without input_shape, which would compare)."""
    net = net.double().eval()
    x = _input((2, 2, 5, 5))
    with torch.no_grad():
        want = net(torch.from_numpy(x.copy())).numpy()
    assert_close(from_torch(net)(cs.tensor(x)).numpy(), want, np.float64, "output")


@pytest.mark.parametrize("forward,changed,reached", [
    (lambda m, x: (lambda y: (y[:, :1], y.relu_())[0])(m.conv(x)), "conv", "getitem"),
    (lambda m, x: (lambda y: (y[:, :1].relu_(), y)[1])(m.conv(x)), "getitem", "conv"),
    (lambda m, x: (lambda y: (y.relu_(), x + y)[1])(m.drop(m.same(x))), "drop", "x"),
    (lambda m, x: (lambda y: (m.through(y).relu_(), y * 2)[1])(m.conv(x)), "through", "conv"),
])
def test_from_torch_refuses_in_place_changes_through_shared_memory(forward: Any, changed: str,
                                                                    reached: str) -> None:
    """A change that also reaches a view, the tensor viewed, or a pass-through layer's input
    (Identity, Dropout in eval, a custom forward returning its input) read later."""

    class Net(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.same, self.drop, self.through = _conv_2(), tnn.Identity(), tnn.Dropout(), _PassThrough()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return forward(self, x)

    with pytest.raises(ConversionError, match=rf"node 'relu_' .* changes '{changed}' in place, and with it "
                                              rf"'{reached}' \(read later\), which shares its memory"):
        from_torch(Net().eval())


def test_to_torch_needs_input_shape_for_custom_forward() -> None:
    with pytest.raises(ConversionError, match=r"'layer1.0' \(BasicBlock\)|the model \(ResNet\) has its own forward"):
        to_torch(cs.zoo.build("resnet18"))


def test_to_torch_refuses_ops_a_recording_cannot_express() -> None:
    class Clamp(cs.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = cs.nn.Conv2d(3, 4, 1)

        def forward(self, x: cs.Tensor) -> cs.Tensor:
            return self.conv(x).clamp(0, 1)

    with pytest.raises(ConversionError, match=r"the root module \(Clamp\) computes 'clamp'"):
        to_torch(Clamp(), (3, 4, 4))


def test_to_torch_writes_slices_and_permutations() -> None:
    class Crop(cs.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = cs.nn.Conv2d(3, 4, 1)

        def forward(self, x: cs.Tensor) -> cs.Tensor:
            y = self.conv(x)
            return cs.cat([y[:, :2], y[:, 2:].permute(0, 1, 3, 2)], 1)[..., 1::2]

    model = Crop().double()
    twin = to_torch(model, (3, 4, 4))  # checks the outputs itself; at another batch size here
    x = _input((3, 3, 4, 4))
    with torch.no_grad():
        want = twin(torch.from_numpy(x)).numpy()
    assert_close(model(cs.tensor(x)).numpy(), want, np.float64, "output")


def test_recorded_ops_are_replayable_by_convscope() -> None:
    """Every torch call a recording can write is one convscope can read back."""
    targets = set()
    for op, rule in OP_RULES.items():
        if op not in ("reshape", "sum") and not op.startswith("conv"):
            attrs = {k: 1 for k in ("min_val", "max_val", "negative_slope", "alpha", "beta", "threshold",
                                    "approximate", "dim", "size", "k", "pad", "mode", "value", "align_corners",
                                    "kernel_size", "stride", "padding", "dilation", "ceil_mode",
                                    "count_include_pad", "divisor_override", "output_size", "output_padding",
                                    "groups", "index", "eps")} | {"dims": (0,), "normalized_shape": (1,),
                                                                   "weight": False, "bias": False}
            targets.add(rule(["x"], (), cs.Tensor.meta((1,)), attrs)[0])
    targets |= {"torch.flatten", "torch.reshape", "torch.sum", "operator.pos",
                "torch.nn.functional.conv2d"}
    assert targets <= set(torch_graph.FUNCTIONS)


# --- torch stays optional -------------------------------------------------------------------------
def test_missing_torch_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install convscope\[torch\]"):
        from_torch(object())
    with pytest.raises(ImportError, match=r"pip install convscope\[torch\]"):
        to_torch(cs.nn.ReLU())


def test_import_convscope_without_torch() -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "import convscope, convscope.interop.torch_convert, convscope.interop.torch_import\n"
            "import convscope.interop.torch_export, convscope.interop.torch_capture\n"
            "assert sys.modules['torch'] is None; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_docstring_examples() -> None:
    import doctest

    from convscope.interop import torch_convert, torch_inplace

    for module, examples in ((torch_convert, 2), (torch_inplace, 4)):
        result = doctest.testmod(module)
        assert result.attempted >= examples and result.failed == 0


# --- forwards that read self.training ---------------------------------------------------------------
class ModeDependent(tnn.Module):
    """Functional dropout on the training flag, and a branch on it (an auxiliary output)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = tnn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> Any:
        y = TF.dropout(self.fc(x), 0.5, self.training)
        return (y, y.sum(1)) if self.training else y


def test_a_forward_reading_self_training_runs_the_graph_of_the_current_mode() -> None:
    """from_torch records one graph per mode: before, the flag of the moment the graph was
    traced was baked in, and the converted model kept dropping after eval()."""
    torch.manual_seed(0)
    model = ModeDependent().double()
    ours = from_torch(model)  # converted in training mode
    assert ours.eval_nodes is not None
    x = np.random.default_rng(0).standard_normal((64, 6))
    out, total = ours(cs.tensor(x))
    dropped = out.numpy() == 0
    assert 0.3 < dropped.mean() < 0.7
    kept = model.fc(torch.from_numpy(x)).detach().numpy() * 2
    assert_close(out.numpy()[~dropped], kept[~dropped], np.float64, "training output")
    assert_close(total.numpy(), out.numpy().sum(1), np.float64, "auxiliary output")
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(x)).numpy()
    assert_close(ours.eval()(cs.tensor(x)).numpy(), want, np.float64, "eval output")
    plain = from_torch(tnn.Sequential(tnn.Linear(6, 4)))
    assert all(not isinstance(m, GraphModule) or m.eval_nodes is None for m in plain.modules())


def test_to_torch_of_a_mode_dependent_graph_warns_which_graph_it_writes() -> None:
    ours = from_torch(ModeDependent().double()).eval()
    with pytest.warns(UserWarning, match=r"to_torch: the root module \(ModeDependent\) has one graph for training "
                                         r"and another for eval mode .* runs the eval-mode graph in either mode"):
        theirs = to_torch(ours)
    x = np.random.default_rng(1).standard_normal((3, 6))
    assert_close(theirs(torch.from_numpy(x)).detach().numpy(), ours(cs.tensor(x)).numpy(), np.float64, "eval")


def _fake_torchvision(root: Any) -> None:
    """A package named torchvision whose ops.stochastic_depth is torchvision's (its rule and its
    torch.fx.wrap, from torchvision/ops/stochastic_depth.py); the real one does not import here."""
    ops = root / "torchvision" / "ops"
    ops.mkdir(parents=True)
    (root / "torchvision" / "__init__.py").write_text("from . import ops\n")
    (ops / "__init__.py").write_text("from .stochastic_depth import StochasticDepth, stochastic_depth\n")
    (ops / "stochastic_depth.py").write_text(
        "import torch\nimport torch.fx\n\n\n"
        "def stochastic_depth(input, p, mode, training=True):\n"
        "    if not training or p == 0.0:\n        return input\n"
        "    size = [input.shape[0]] + [1] * (input.ndim - 1) if mode == 'row' else [1] * input.ndim\n"
        "    noise = torch.empty(size, dtype=input.dtype).bernoulli_(1.0 - p)\n"
        "    return input * noise.div_(1.0 - p)\n\n\n"
        "torch.fx.wrap('stochastic_depth')\n\n\n"
        "class StochasticDepth(torch.nn.Module):\n"
        "    def __init__(self, p, mode):\n        super().__init__()\n        self.p, self.mode = p, mode\n\n"
        "    def forward(self, input):\n        return stochastic_depth(input, self.p, self.mode, self.training)\n")


def test_torchvision_stochastic_depth_converts(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_torchvision(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [n for n in sys.modules if n.split(".")[0] == "torchvision"]:
        monkeypatch.delitem(sys.modules, name)
    from torchvision.ops import StochasticDepth

    class Residual(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = tnn.Conv2d(3, 3, 3, padding=1)
            self.stochastic_depth = StochasticDepth(0.5, "row")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.stochastic_depth(self.conv(x))

    torch.manual_seed(0)
    model = Residual().double()
    ours = from_torch(model)
    assert "torchvision.ops.stochastic_depth.stochastic_depth" in ours.stochastic_depth.graph_text()
    x = np.random.default_rng(2).standard_normal((40, 3, 5, 5))
    branch = model.conv(torch.from_numpy(x)).detach().numpy()
    cs.manual_seed(0)
    got = ours(cs.tensor(x)).numpy() - x
    dropped = np.abs(got).reshape(40, -1).max(1) == 0
    assert dropped.any() and not dropped.all()
    assert_close(got[~dropped], 2 * branch[~dropped], np.float64, "kept branches")
    assert_close(ours.eval()(cs.tensor(x)).numpy(), model.eval()(torch.from_numpy(x)).detach().numpy(),
                 np.float64, "eval")
    for name in [n for n in sys.modules if n.split(".")[0] == "torchvision"]:
        monkeypatch.delitem(sys.modules, name)


def test_function_names_skip_packages_that_are_not_imported_or_fail(tmp_path: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A torchvision from the registry fails to import beside this torch (RuntimeError): the
    function table must neither import it nor fail because of it."""
    from convscope.interop.torch_names import resolve

    broken = tmp_path / "torchvision"
    (broken / "ops").mkdir(parents=True)
    (broken / "__init__.py").write_text("")
    (broken / "ops" / "__init__.py").write_text("")
    (broken / "ops" / "stochastic_depth.py").write_text("raise RuntimeError('operator torchvision::nms "
                                                        "does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [n for n in sys.modules if n.split(".")[0] == "torchvision"]:
        monkeypatch.delitem(sys.modules, name)
    assert resolve("torchvision.ops.stochastic_depth.stochastic_depth") is None
    assert "torchvision" not in sys.modules
    import torchvision  # noqa: F401  (the package imports; its submodule raises)

    assert resolve("torchvision.ops.stochastic_depth.stochastic_depth") is None
    assert from_torch(tnn.Sequential(tnn.Linear(2, 2))) is not None
    for name in [n for n in sys.modules if n.split(".")[0] == "torchvision"]:
        monkeypatch.delitem(sys.modules, name)


def test_a_forward_traceable_in_one_mode_only_converts_with_that_graph() -> None:
    class EvalTraceable(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = tnn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.training and x.sum() > 0:  # data-dependent: torch.fx cannot trace it in training mode
                x = -x
            return self.fc(x)

    model = EvalTraceable().double().eval()
    ours = from_torch(model)
    assert ours.eval_nodes is None
    x = np.random.default_rng(3).standard_normal((2, 3))
    assert_close(ours(cs.tensor(x)).numpy(), model(torch.from_numpy(x)).detach().numpy(), np.float64, "eval")


def test_to_torch_writes_layer_norm_calls_with_their_affine_inputs() -> None:
    """A recorded F.layer_norm call names which of weight and bias it was given (ConvNeXt's
    LayerNorm2d calls it between two permutes)."""
    from convscope.zoo.convnext import LayerNorm2d

    class Norms(cs.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm2d = LayerNorm2d(4, eps=1e-6)
            self.scale = cs.nn.Parameter(np.random.default_rng(0).random(5) + 0.5)
            self.shift = cs.nn.Parameter(np.random.default_rng(1).standard_normal(5))

        def forward(self, x: cs.Tensor) -> tuple[cs.Tensor, ...]:
            F = cs.functional
            return (self.norm2d(x), F.layer_norm(x, 5, weight=self.scale), F.layer_norm(x, (5,), bias=self.shift),
                    F.layer_norm(x, (3, 5), eps=1e-3))

    cs.manual_seed(0)
    model = Norms().double()
    model.norm2d.weight.data[:] = np.arange(1.0, 5.0)
    theirs = to_torch(model, (4, 3, 5))
    x = np.random.default_rng(2).standard_normal((2, 4, 3, 5))
    with cs.no_grad():
        want = [t.numpy() for t in model(cs.tensor(x))]
    got = [t.detach().numpy() for t in theirs(torch.from_numpy(x))]
    for g, w in zip(got, want, strict=True):
        assert_close(g, w, np.float64, "layer_norm")
