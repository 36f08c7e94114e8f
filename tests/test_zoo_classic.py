"""The classic zoo families: LeNet-5, AlexNet, VGG and Network in Network.

For every model: (1) the parameter count equals the published number and a count derived here
by hand from the paper's layer table; (2) the state_dict keys and shapes equal those of the
equivalent plain ``torch.nn`` model written out below in torchvision's layout (plus a few keys
copied from torchvision's source), and loading that model's weights gives the same outputs in
float64 (at least once per family); (3) a forward pass on a meta tensor gives the shape of a
real forward on a small batch.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from torch import nn as tnn

import convscope as cs
from convscope import zoo
from convscope.zoo.lenet import PartialConv2d
from torch_ref import assert_close

# --------------------------------------------------------------------------------------------
# Parameter counts derived by hand from the papers' tables (weights + biases per layer).
# --------------------------------------------------------------------------------------------

# LeNet-5, Section II-B: C1, S2 (coefficient + bias per map), C3 (Table I: 6 maps × 3 inputs,
# 6 × 4, 3 × 4, 1 × 6), S4, C5, F6. The RBF centres (10 × 84) are fixed, not parameters.
LENET5_TRAINABLE = {
    "C1": 6 * 1 * 5 * 5 + 6,                                # 156
    "S2": 6 + 6,                                            # 12
    "C3": (6 * 3 + 6 * 4 + 3 * 4 + 1 * 6) * 5 * 5 + 16,     # 1,516
    "S4": 16 + 16,                                          # 32
    "C5": 120 * 16 * 5 * 5 + 120,                           # 48,120
    "F6": 84 * 120 + 84,                                    # 10,164
}
LENET5_UNCONNECTED = (16 * 6 - (6 * 3 + 6 * 4 + 3 * 4 + 1 * 6)) * 5 * 5  # 36 missing C3 kernels = 900 zero weights

LENET5_MODERN = (
    6 * 1 * 5 * 5 + 6          # conv 6@5×5: 156
    + 16 * 6 * 5 * 5 + 16      # conv 16@5×5: 2,416
    + 120 * 16 * 5 * 5 + 120   # linear 400 → 120: 48,120
    + 84 * 120 + 84            # linear 120 → 84: 10,164
    + 10 * 84 + 10             # linear 84 → 10: 850
)

ALEXNET = (  # torchvision / "One weird trick" single tower
    64 * 3 * 11 * 11 + 64          # conv1: 23,296
    + 192 * 64 * 5 * 5 + 192       # conv2: 307,392
    + 384 * 192 * 3 * 3 + 384      # conv3: 663,936
    + 256 * 384 * 3 * 3 + 256      # conv4: 884,992
    + 256 * 256 * 3 * 3 + 256      # conv5: 590,080
    + 4096 * 256 * 6 * 6 + 4096    # fc6: 37,752,832
    + 4096 * 4096 + 4096           # fc7: 16,781,312
    + 1000 * 4096 + 1000           # fc8: 4,097,000
)

ALEXNET_ORIGINAL = (  # Krizhevsky 2012: conv2, conv4, conv5 see half the input maps (2 groups)
    96 * 3 * 11 * 11 + 96              # conv1: 34,944
    + 256 * (96 // 2) * 5 * 5 + 256    # conv2, 2 groups: 307,456
    + 384 * 256 * 3 * 3 + 384          # conv3: 885,120
    + 384 * (384 // 2) * 3 * 3 + 384   # conv4, 2 groups: 663,936
    + 256 * (384 // 2) * 3 * 3 + 256   # conv5, 2 groups: 442,624
    + 4096 * 256 * 6 * 6 + 4096        # fc6: 37,752,832
    + 4096 * 4096 + 4096               # fc7: 16,781,312
    + 1000 * 4096 + 1000               # fc8: 4,097,000
)

# VGG Table 1, configuration D (VGG-16); the others differ by whole conv layers.
CONV3_64_FROM_3, CONV3_64 = 64 * 3 * 3 * 3 + 64, 64 * 64 * 3 * 3 + 64             # 1,792; 36,928
CONV3_128_FROM_64, CONV3_128 = 128 * 64 * 3 * 3 + 128, 128 * 128 * 3 * 3 + 128    # 73,856; 147,584
CONV3_256_FROM_128, CONV3_256 = 256 * 128 * 3 * 3 + 256, 256 * 256 * 3 * 3 + 256  # 295,168; 590,080
CONV3_512_FROM_256, CONV3_512 = 512 * 256 * 3 * 3 + 512, 512 * 512 * 3 * 3 + 512  # 1,180,160; 2,359,808
VGG_CLASSIFIER = (512 * 7 * 7) * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000  # 123,642,856
VGG16 = (CONV3_64_FROM_3 + CONV3_64 + CONV3_128_FROM_64 + CONV3_128 + CONV3_256_FROM_128 + 2 * CONV3_256
         + CONV3_512_FROM_256 + 2 * CONV3_512 + 3 * CONV3_512 + VGG_CLASSIFIER)
VGG19 = VGG16 + CONV3_256 + 2 * CONV3_512        # E adds conv3_4, conv4_4, conv5_4
VGG13 = VGG16 - CONV3_256 - 2 * CONV3_512        # B drops conv3_3, conv4_3, conv5_3
VGG11 = VGG13 - CONV3_64 - CONV3_128             # A also drops conv1_2, conv2_2
# Batch norm adds a weight and a bias per conv output map.
VGG_MAPS = {
    "vgg11": 64 + 128 + 2 * 256 + 2 * 512 + 2 * 512,
    "vgg13": 2 * 64 + 2 * 128 + 2 * 256 + 2 * 512 + 2 * 512,
    "vgg16": 2 * 64 + 2 * 128 + 3 * 256 + 3 * 512 + 3 * 512,
    "vgg19": 2 * 64 + 2 * 128 + 4 * 256 + 4 * 512 + 4 * 512,
}

NIN = (  # three mlpconv blocks; no fully connected layer
    192 * 3 * 5 * 5 + 192          # conv 192@5×5: 14,592
    + 160 * 192 + 160              # cccp 160@1×1: 30,880
    + 96 * 160 + 96                # cccp 96@1×1: 15,456
    + 192 * 96 * 5 * 5 + 192       # conv 192@5×5: 460,992
    + 2 * (192 * 192 + 192)        # 2 × cccp 192@1×1: 74,112
    + 192 * 192 * 3 * 3 + 192      # conv 192@3×3: 331,968
    + 192 * 192 + 192              # cccp 192@1×1: 37,056
    + 10 * 192 + 10                # cccp 10@1×1: 1,930
)

# name: (published count, hand-derived count) of parameters()
COUNTS = {
    # LeNet-5's 60,000 trainable parameters, plus the 900 zero weights of the rectangular C3 weight
    "lenet5": (60_000 + 900, sum(LENET5_TRAINABLE.values()) + LENET5_UNCONNECTED),
    "lenet5_modern": (61_706, LENET5_MODERN),
    "alexnet": (61_100_840, ALEXNET),
    "alexnet_original": (60_965_224, ALEXNET_ORIGINAL),
    "vgg11": (132_863_336, VGG11),
    "vgg13": (133_047_848, VGG13),
    "vgg16": (138_357_544, VGG16),
    "vgg19": (143_667_240, VGG19),
    "vgg11_bn": (132_868_840, VGG11 + 2 * VGG_MAPS["vgg11"]),
    "vgg13_bn": (133_053_736, VGG13 + 2 * VGG_MAPS["vgg13"]),
    "vgg16_bn": (138_365_992, VGG16 + 2 * VGG_MAPS["vgg16"]),
    "vgg19_bn": (143_678_248, VGG19 + 2 * VGG_MAPS["vgg19"]),
    "nin": (966_986, NIN),
}

# --------------------------------------------------------------------------------------------
# Equivalent models in plain torch.nn (torchvision's layout where torchvision has the model).
# --------------------------------------------------------------------------------------------

# LeNet-5 Table I as printed: rows = S2 maps 0-5, columns = C3 maps 0-15, X = connected.
TABLE_I = (
    "X...XXX..XXXX.XX",
    "XX...XXX..XXXX.X",
    "XXX...XXX..X.XXX",
    ".XXX..XXXX..X.XX",
    "..XXX..XXXX.XX.X",
    "...XXX..XXXX.XXX",
)


class TorchPartialConv2d(tnn.Conv2d):
    def __init__(self, table: torch.Tensor) -> None:
        super().__init__(6, 16, 5)
        self.register_buffer("connection_table", table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.connection_table[:, :, None, None], self.bias)


class TorchSubsampling(tnn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = tnn.Parameter(torch.randn(channels))
        self.bias = tnn.Parameter(torch.randn(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 4 * TF.avg_pool2d(x, 2) * self.weight[:, None, None] + self.bias[:, None, None]


class TorchScaledTanh(tnn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(2 / 3 * x)


class TorchRBF(tnn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("centers", torch.randn(10, 84))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cdist(x, self.centers) ** 2


def torch_lenet5() -> tnn.Sequential:
    table = torch.tensor([[float(row[c] == "X") for row in TABLE_I] for c in range(16)])
    return tnn.Sequential(OrderedDict([
        ("c1", tnn.Conv2d(1, 6, 5)), ("c1_act", TorchScaledTanh()),
        ("s2", TorchSubsampling(6)), ("s2_act", TorchScaledTanh()),
        ("c3", TorchPartialConv2d(table)), ("c3_act", TorchScaledTanh()),
        ("s4", TorchSubsampling(16)), ("s4_act", TorchScaledTanh()),
        ("c5", tnn.Conv2d(16, 120, 5)), ("c5_act", TorchScaledTanh()),
        ("flatten", tnn.Flatten()),
        ("f6", tnn.Linear(120, 84)), ("f6_act", TorchScaledTanh()),
        ("output", TorchRBF()),
    ]))


def torch_lenet5_modern() -> tnn.Sequential:
    return tnn.Sequential(
        tnn.Conv2d(1, 6, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10),
    )


class TorchAlexNet(tnn.Module):
    """torchvision.models.AlexNet (torchvision/models/alexnet.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = tnn.Sequential(
            tnn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), tnn.ReLU(inplace=True),
            tnn.MaxPool2d(kernel_size=3, stride=2),
            tnn.Conv2d(64, 192, kernel_size=5, padding=2), tnn.ReLU(inplace=True),
            tnn.MaxPool2d(kernel_size=3, stride=2),
            tnn.Conv2d(192, 384, kernel_size=3, padding=1), tnn.ReLU(inplace=True),
            tnn.Conv2d(384, 256, kernel_size=3, padding=1), tnn.ReLU(inplace=True),
            tnn.Conv2d(256, 256, kernel_size=3, padding=1), tnn.ReLU(inplace=True),
            tnn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = tnn.AdaptiveAvgPool2d((6, 6))
        self.classifier = tnn.Sequential(
            tnn.Dropout(), tnn.Linear(256 * 6 * 6, 4096), tnn.ReLU(inplace=True),
            tnn.Dropout(), tnn.Linear(4096, 4096), tnn.ReLU(inplace=True),
            tnn.Linear(4096, 1000),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def torch_alexnet_original() -> tnn.Sequential:
    def lrn() -> tnn.LocalResponseNorm:
        return tnn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)  # the paper's α = 1e-4, times n = 5

    return tnn.Sequential(OrderedDict([
        ("conv1", tnn.Conv2d(3, 96, 11, stride=4)), ("relu1", tnn.ReLU()), ("norm1", lrn()),
        ("pool1", tnn.MaxPool2d(3, 2)),
        ("conv2", tnn.Conv2d(96, 256, 5, padding=2, groups=2)), ("relu2", tnn.ReLU()), ("norm2", lrn()),
        ("pool2", tnn.MaxPool2d(3, 2)),
        ("conv3", tnn.Conv2d(256, 384, 3, padding=1)), ("relu3", tnn.ReLU()),
        ("conv4", tnn.Conv2d(384, 384, 3, padding=1, groups=2)), ("relu4", tnn.ReLU()),
        ("conv5", tnn.Conv2d(384, 256, 3, padding=1, groups=2)), ("relu5", tnn.ReLU()),
        ("pool5", tnn.MaxPool2d(3, 2)),
        ("flatten", tnn.Flatten()),
        ("fc6", tnn.Linear(9216, 4096)), ("relu6", tnn.ReLU()), ("drop6", tnn.Dropout()),
        ("fc7", tnn.Linear(4096, 4096)), ("relu7", tnn.ReLU()), ("drop7", tnn.Dropout()),
        ("fc8", tnn.Linear(4096, 1000)),
    ]))


TORCHVISION_VGG_CFGS = {  # torchvision/models/vgg.py, cfgs "A", "B", "D", "E"
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class TorchVGG(tnn.Module):
    """torchvision.models.VGG with make_layers (torchvision/models/vgg.py)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        depth_name, batch_norm = name.removesuffix("_bn"), name.endswith("_bn")
        layers: list[tnn.Module] = []
        in_channels = 3
        for v in TORCHVISION_VGG_CFGS[depth_name]:
            if v == "M":
                layers.append(tnn.MaxPool2d(kernel_size=2, stride=2))
                continue
            layers.append(tnn.Conv2d(in_channels, v, kernel_size=3, padding=1))
            layers += [tnn.BatchNorm2d(v), tnn.ReLU(inplace=True)] if batch_norm else [tnn.ReLU(inplace=True)]
            in_channels = v
        self.features = tnn.Sequential(*layers)
        self.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
        self.classifier = tnn.Sequential(
            tnn.Linear(512 * 7 * 7, 4096), tnn.ReLU(True), tnn.Dropout(),
            tnn.Linear(4096, 4096), tnn.ReLU(True), tnn.Dropout(),
            tnn.Linear(4096, 1000),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def torch_nin() -> tnn.Sequential:
    def mlpconv(c_in: int, k: int, p: int, a: int, b: int, c: int) -> tnn.Sequential:
        return tnn.Sequential(tnn.Conv2d(c_in, a, k, padding=p), tnn.ReLU(), tnn.Conv2d(a, b, 1), tnn.ReLU(),
                              tnn.Conv2d(b, c, 1), tnn.ReLU())

    return tnn.Sequential(OrderedDict([
        ("mlpconv1", mlpconv(3, 5, 2, 192, 160, 96)), ("pool1", tnn.MaxPool2d(3, 2, ceil_mode=True)),
        ("drop1", tnn.Dropout()),
        ("mlpconv2", mlpconv(96, 5, 2, 192, 192, 192)), ("pool2", tnn.AvgPool2d(3, 2, ceil_mode=True)),
        ("drop2", tnn.Dropout()),
        ("mlpconv3", mlpconv(192, 3, 1, 192, 192, 10)), ("pool3", tnn.AdaptiveAvgPool2d(1)),
        ("flatten", tnn.Flatten()),
    ]))


TORCH_EQUIVALENT = {
    "lenet5": torch_lenet5, "lenet5_modern": torch_lenet5_modern, "alexnet": TorchAlexNet,
    "alexnet_original": torch_alexnet_original, "nin": torch_nin,
    **{name: (lambda name=name: TorchVGG(name)) for name in COUNTS if name.startswith("vgg")},
}

# A few keys and shapes copied from torchvision's source (features indices as its make_layers builds them).
TORCHVISION_KEYS = {
    "alexnet": {"features.0.weight": (64, 3, 11, 11), "features.3.weight": (192, 64, 5, 5),
                "features.6.weight": (384, 192, 3, 3), "features.8.weight": (256, 384, 3, 3),
                "features.10.bias": (256,), "classifier.1.weight": (4096, 9216),
                "classifier.4.weight": (4096, 4096), "classifier.6.weight": (1000, 4096)},
    "vgg11": {"features.0.weight": (64, 3, 3, 3), "features.18.weight": (512, 512, 3, 3),
              "classifier.0.weight": (4096, 25088), "classifier.6.bias": (1000,)},
    "vgg16": {"features.0.weight": (64, 3, 3, 3), "features.28.weight": (512, 512, 3, 3),
              "classifier.0.weight": (4096, 25088), "classifier.3.weight": (4096, 4096),
              "classifier.6.weight": (1000, 4096)},
    "vgg19": {"features.34.weight": (512, 512, 3, 3), "classifier.0.weight": (4096, 25088)},
    "vgg16_bn": {"features.1.weight": (64,), "features.1.running_mean": (64,), "features.1.running_var": (64,),
                 "features.1.num_batches_tracked": (), "features.40.weight": (512, 512, 3, 3),
                 "features.41.running_var": (512,), "classifier.0.weight": (4096, 25088)},
    "vgg19_bn": {"features.49.weight": (512, 512, 3, 3), "features.50.num_batches_tracked": ()},
}

# Inputs for the real forward (small where the model allows: the adaptive pools accept them).
SMALL_INPUT = {"alexnet": (3, 64, 64), **{name: (3, 32, 32) for name in COUNTS if name.startswith("vgg")}}


def n_params(model: cs.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def shapes(state: dict) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state.items()}


def meta_and_real_shapes(model: cs.nn.Module, input_shape: tuple[int, ...]) -> tuple[tuple, tuple]:
    """Output shape of a meta forward (batch 1) and of a real forward (batch 2), batch dim dropped."""
    model.eval()
    with cs.no_grad():
        meta = model(cs.Tensor.meta((1, *input_shape)))
        assert meta.is_meta
        x = np.random.default_rng(0).standard_normal((2, *input_shape)).astype(np.float32)
        real = model(cs.tensor(x))
    assert np.isfinite(real.numpy()).all()
    return meta.shape[1:], real.shape[1:]


# --------------------------------------------------------------------------------------------
# (1)-(3) per model: counts, state_dict layout, meta vs real shapes.
# --------------------------------------------------------------------------------------------

# Building a VGG costs ~100M random draws, so most VGGs skip torchvision's extra initialisation
# and run only a meta forward; vgg11 and vgg19_bn (the smallest and the largest) also run a real
# one, and vgg11 keeps init_weights=True to check torchvision's initialisation.
BUILD_OPTIONS = {name: {"init_weights": False} for name in COUNTS if name.startswith("vgg") and name != "vgg11"}
META_ONLY = {name for name in COUNTS if name.startswith("vgg")} - {"vgg11", "vgg19_bn"}


@pytest.mark.parametrize("name", list(COUNTS))
def test_count_layout_and_meta_shapes(name: str) -> None:
    published, by_hand = COUNTS[name]
    assert published == by_hand
    model = zoo.build(name, **BUILD_OPTIONS.get(name, {}))
    assert n_params(model) == published

    with torch.device("meta"):  # layout only: no memory, no initialisation
        reference = TORCH_EQUIVALENT[name]()
    ours = shapes(model.state_dict())
    assert list(ours) == list(reference.state_dict())
    assert ours == shapes(reference.state_dict())
    for key, shape in TORCHVISION_KEYS.get(name, {}).items():
        assert ours[key] == shape, key

    input_shape = zoo.entry(name).input_shape
    classes = 10 if name.startswith(("lenet", "nin")) else 1000
    small = SMALL_INPUT.get(name, input_shape)
    if name in META_ONLY:
        with cs.no_grad():
            assert model(cs.Tensor.meta((2, *small))).shape == (2, classes)
    else:
        meta, real = meta_and_real_shapes(model, small)
        assert meta == real == (classes,)
    with cs.no_grad():
        assert model(cs.Tensor.meta((1, *input_shape))).shape == (1, classes)
    if name == "vgg11":
        assert_torchvision_vgg_init(model)


def assert_torchvision_vgg_init(model: cs.nn.Module) -> None:
    """Convs kaiming-normal (fan_out, ReLU gain √2), linear N(0, 0.01), biases 0."""
    conv = model.features[3].weight.numpy()  # 128 maps × 64 × 3 × 3: fan_out = 128·9
    assert abs(conv.std() / np.sqrt(2 / (128 * 9)) - 1) < 0.05 and not model.features[3].bias.numpy().any()
    fc = model.classifier[0].weight.numpy()
    assert abs(fc.std() / 0.01 - 1) < 0.01 and not model.classifier[0].bias.numpy().any()


def test_registry_entries() -> None:
    expected = {"lenet5": (1, 32, 32), "lenet5_modern": (1, 32, 32), "alexnet": (3, 224, 224),
                "alexnet_original": (3, 227, 227), "nin": (3, 32, 32),
                **{name: (3, 224, 224) for name in COUNTS if name.startswith("vgg")}}
    for name, shape in expected.items():
        entry = zoo.entry(name)
        assert entry.input_shape == shape and entry.description and entry.reference


# --------------------------------------------------------------------------------------------
# LeNet-5: the custom layers.
# --------------------------------------------------------------------------------------------

def test_lenet5_counts_follow_the_paper() -> None:
    model = zoo.build("lenet5")
    assert list(LENET5_TRAINABLE.values()) == [156, 12, 1_516, 32, 48_120, 10_164]
    assert sum(LENET5_TRAINABLE.values()) == 60_000
    c3 = model.c3
    assert isinstance(c3, PartialConv2d)
    assert c3.parameter_count()[0] == LENET5_TRAINABLE["C3"]
    assert c3.parameter_count()[0] * 10 * 10 == 151_600  # connections: every C3 unit at 10×10 positions
    # parameters() holds the full rectangular C3 weight: the 900 unconnected weights are zero.
    assert n_params(model) == 60_000 + LENET5_UNCONNECTED == 60_900
    connected = sum(m.parameter_count()[0] if isinstance(m, PartialConv2d)
                    else sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    assert connected == 60_000
    table = model.c3.connection_table.numpy()
    assert table.shape == (16, 6) and table.sum() == 60
    weight = model.c3.weight.numpy()
    assert not weight[table == 0].any() and weight[table == 1].all()
    # the RBF centres: a buffer of fixed ±1 codes, in the state_dict but not a parameter
    centers = dict(model.named_buffers())["output.centers"].numpy()
    assert centers.shape == (10, 84) and set(np.unique(centers)) == {-1.0, 1.0}
    assert "output.centers" in model.state_dict()
    assert len({tuple(row) for row in centers}) == 10


def test_lenet5_table_i_and_masked_gradient() -> None:
    model = zoo.build("lenet5")
    paper = np.array([[row[c] == "X" for row in TABLE_I] for c in range(16)], dtype=np.float32)
    np.testing.assert_array_equal(model.c3.connection_table.numpy(), paper)
    x = cs.tensor(np.random.default_rng(1).standard_normal((2, 1, 32, 32)).astype(np.float32))
    model(x).sum().backward()
    grad = model.c3.weight.grad
    assert not grad[paper == 0].any() and grad[paper == 1].any()


def test_subsampling_and_squashing() -> None:
    model = zoo.build("lenet5").double()
    s2, act = model.s2, model.s2_act
    x = np.random.default_rng(2).standard_normal((1, 6, 4, 4))
    coef, bias = s2.weight.numpy(), s2.bias.numpy()
    want = x.reshape(1, 6, 2, 2, 2, 2).sum(axis=(3, 5)) * coef[:, None, None] + bias[:, None, None]
    assert_close(s2(cs.tensor(x)).numpy(), want)
    assert_close(act(cs.tensor(np.array([1.0, -1.0]))).numpy(), 1.7159 * np.tanh(2 / 3 * np.array([1.0, -1.0])))


# --------------------------------------------------------------------------------------------
# Same outputs as the torch equivalent (float64), once per family at least.
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, input_shape", [
    ("lenet5", (1, 32, 32)), ("lenet5_modern", (1, 32, 32)), ("alexnet", (3, 64, 64)),
    ("alexnet_original", (3, 227, 227)), ("vgg11_bn", (3, 32, 32)), ("nin", (3, 32, 32)),
])
def test_same_outputs_as_torch(name: str, input_shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    reference = TORCH_EQUIVALENT[name]().double().eval()
    with torch.no_grad():
        for key, buffer in reference.named_buffers():
            if "running" in key:  # make eval-mode batch norm do something
                buffer.copy_(torch.rand_like(buffer) + 0.5)
    model = zoo.build(name, **BUILD_OPTIONS.get(name, {})).double().eval()
    if name == "lenet5":  # the torch stand-in has random centres: give it ours (the fixed digit codes)
        reference.output.centers.copy_(torch.from_numpy(model.output.centers.numpy()))
    model.load_state_dict(reference.state_dict())
    batch = 1 if name == "alexnet_original" else 2
    x = np.random.default_rng(3).standard_normal((batch, *input_shape))
    with torch.no_grad():
        want = reference(torch.from_numpy(x)).numpy()
    with cs.no_grad():
        got = model(cs.tensor(x))
    assert got.dtype == np.float64
    assert_close(got.numpy(), want, np.float64, name)


def test_alexnet_lrn_is_the_papers_formula() -> None:
    """b = a / (k + α Σ_{5 neighbouring maps} a²)^β with k = 2, α = 1e-4, β = 0.75 (Section 3.3)."""
    norm = zoo.build("alexnet_original").norm1
    a = np.random.default_rng(4).standard_normal((1, 8, 3, 3)) * 30
    squares = np.pad(a ** 2, ((0, 0), (2, 2), (0, 0), (0, 0)))
    window = sum(squares[:, i:i + 8] for i in range(5))
    want = a / (2 + 1e-4 * window) ** 0.75
    assert_close(norm(cs.tensor(a)).numpy(), want)


def test_alexnet_original_shapes_follow_the_paper() -> None:
    model = zoo.build("alexnet_original")
    x = cs.Tensor.meta((1, 3, 227, 227))
    seen = {}
    for name, layer in model.named_children():
        x = layer(x)
        seen[name] = x.shape[1:]
    assert seen["conv1"] == (96, 55, 55) and seen["pool1"] == (96, 27, 27)
    assert seen["conv2"] == (256, 27, 27) and seen["pool2"] == (256, 13, 13)
    assert seen["conv5"] == (256, 13, 13) and seen["pool5"] == (256, 6, 6) and seen["fc8"] == (1000,)
    assert model.conv2.groups == model.conv4.groups == model.conv5.groups == 2 and model.conv3.groups == 1


def test_num_classes_option() -> None:
    assert zoo.build("alexnet", num_classes=10).classifier[6].weight.shape == (10, 4096)
    assert zoo.build("vgg11", num_classes=7, init_weights=False).classifier[6].bias.shape == (7,)
    assert zoo.build("lenet5_modern", num_classes=5)[11].weight.shape == (5, 84)
