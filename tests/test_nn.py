"""convscope.nn against torch.nn: every layer built with the same arguments in both, torch's
weights copied over with ``load_state_dict``; forward output, input and parameter gradients,
buffers and ``repr`` must agree. Plus initialisation, hooks, modes, traversal order,
error naming and meta tensors."""

from __future__ import annotations

import math
import sys
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import convscope as cs
from convscope import nn
from torch_ref import assert_close, both_refuse, compare

TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


def _like(lib: Any, array: np.ndarray) -> Any:
    """The array as a tensor of ``lib`` (torch.nn or convscope.nn)."""
    return torch.tensor(array) if lib is torch.nn else cs.tensor(array)


def _normal(*shape: int) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.standard_normal(shape) * 2


def _positive(*shape: int) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: np.abs(rng.standard_normal(shape)) + 0.1


def _classes(n: int, *shape: int, ignore: int | None = None) -> Callable[[np.random.Generator], np.ndarray]:
    def make(rng: np.random.Generator) -> np.ndarray:
        target = rng.integers(0, n, shape).astype(np.int64)
        if ignore is not None:
            target.flat[::3] = ignore
        return target
    return make


def _probabilities(*shape: int) -> Callable[[np.random.Generator], np.ndarray]:
    def make(rng: np.random.Generator) -> np.ndarray:
        e = np.exp(rng.standard_normal(shape))
        return e / e.sum(axis=1, keepdims=True)
    return make


def _pooled(nd: int, shape: tuple, kernel: int, stride: int) -> Callable[[np.random.Generator], list[np.ndarray]]:
    """(values, indices) from torch's max pooling, as max-unpooling's inputs."""
    def make(rng: np.random.Generator) -> list[np.ndarray]:
        pool = getattr(torch.nn.functional, f"max_pool{nd}d")
        values, indices = pool(torch.from_numpy(rng.standard_normal(shape)), kernel, stride, return_indices=True)
        return [values.numpy(), indices.numpy()]
    return make


W5 = np.array([0.5, 1.0, 2.0, 0.3, 1.5])

# (id, build(lib) -> module, input makers or one maker returning all inputs)
CASES: list[tuple[str, Callable[[Any], Any], Any]] = [
    # convolution
    ("conv1d", lambda n: n.Conv1d(3, 4, 3), [_normal(2, 3, 9)]),
    ("conv1d-groups-dilation", lambda n: n.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2),
     [_normal(2, 4, 11)]),
    ("conv1d-same-reflect", lambda n: n.Conv1d(2, 3, 4, padding="same", padding_mode="reflect"), [_normal(2, 2, 8)]),
    ("conv2d", lambda n: n.Conv2d(3, 5, 3), [_normal(2, 3, 7, 6)]),
    ("conv2d-all-args", lambda n: n.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2),
     [_normal(2, 4, 9, 8)]),
    ("conv2d-depthwise-nobias", lambda n: n.Conv2d(4, 8, 3, padding=1, groups=4, bias=False), [_normal(1, 4, 6, 6)]),
    ("conv2d-reflect", lambda n: n.Conv2d(3, 4, 3, padding=(1, 2), padding_mode="reflect"), [_normal(2, 3, 6, 7)]),
    ("conv2d-replicate", lambda n: n.Conv2d(3, 4, (2, 3), stride=2, padding=1, padding_mode="replicate"),
     [_normal(2, 3, 7, 6)]),
    ("conv2d-circular", lambda n: n.Conv2d(3, 4, 3, padding=2, dilation=2, padding_mode="circular"),
     [_normal(2, 3, 7, 7)]),
    ("conv2d-same-even", lambda n: n.Conv2d(3, 4, (4, 3), padding="same", dilation=(1, 2)), [_normal(2, 3, 7, 8)]),
    ("conv2d-same-circular", lambda n: n.Conv2d(2, 3, 4, padding="same", padding_mode="circular"),
     [_normal(1, 2, 6, 6)]),
    ("conv2d-valid", lambda n: n.Conv2d(3, 2, 3, stride=2, padding="valid"), [_normal(2, 3, 8, 7)]),
    ("conv2d-unbatched", lambda n: n.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), [_normal(3, 5, 5)]),
    ("conv3d", lambda n: n.Conv3d(2, 4, (2, 3, 2), stride=(1, 2, 1), padding=1), [_normal(1, 2, 4, 6, 5)]),
    ("conv3d-replicate-groups", lambda n: n.Conv3d(4, 4, 3, padding=1, groups=2, padding_mode="replicate"),
     [_normal(1, 4, 4, 4, 4)]),
    ("conv-transpose1d", lambda n: n.ConvTranspose1d(3, 4, 3, stride=2, padding=1, output_padding=1),
     [_normal(2, 3, 5)]),
    ("conv-transpose2d-all-args", lambda n: n.ConvTranspose2d(4, 6, (3, 2), stride=(2, 3), padding=(1, 0),
                                                              output_padding=(1, 2), groups=2, dilation=(1, 2)),
     [_normal(2, 4, 4, 5)]),
    ("conv-transpose2d-nobias", lambda n: n.ConvTranspose2d(3, 2, 4, stride=2, padding=1, bias=False),
     [_normal(1, 3, 4, 4)]),
    ("conv-transpose3d", lambda n: n.ConvTranspose3d(2, 3, 2, stride=2), [_normal(1, 2, 3, 3, 2)]),
    # pooling
    ("maxpool1d", lambda n: n.MaxPool1d(3, stride=2, padding=1), [_normal(2, 3, 10)]),
    ("maxpool2d", lambda n: n.MaxPool2d(2), [_normal(2, 3, 8, 8)]),
    ("maxpool2d-ceil-dilation", lambda n: n.MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True),
     [_normal(2, 3, 11, 10)]),
    ("maxpool2d-indices", lambda n: n.MaxPool2d(3, 2, return_indices=True), [_normal(2, 3, 9, 8)]),
    ("maxpool3d", lambda n: n.MaxPool3d(2, stride=(1, 2, 2), padding=1), [_normal(1, 2, 5, 6, 6)]),
    ("avgpool1d", lambda n: n.AvgPool1d(3, stride=2, padding=1, count_include_pad=False), [_normal(2, 3, 10)]),
    ("avgpool2d-ceil", lambda n: n.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), [_normal(2, 3, 10, 9)]),
    ("avgpool2d-divisor", lambda n: n.AvgPool2d((2, 3), stride=(2, 1), padding=1, count_include_pad=False,
                                                divisor_override=5), [_normal(2, 3, 7, 8)]),
    ("avgpool3d", lambda n: n.AvgPool3d(2, ceil_mode=True), [_normal(1, 2, 5, 5, 5)]),
    ("lppool1d", lambda n: n.LPPool1d(2, 3, stride=2), [_normal(2, 3, 9)]),
    ("lppool2d", lambda n: n.LPPool2d(3, (2, 3), stride=(1, 2)), [_positive(2, 3, 6, 7)]),
    ("lppool3d", lambda n: n.LPPool3d(2, 2), [_normal(1, 2, 4, 4, 4)]),
    ("adaptive-avgpool1d", lambda n: n.AdaptiveAvgPool1d(4), [_normal(2, 3, 10)]),
    ("adaptive-avgpool2d-none", lambda n: n.AdaptiveAvgPool2d((3, None)), [_normal(2, 3, 7, 5)]),
    ("adaptive-avgpool3d", lambda n: n.AdaptiveAvgPool3d((2, 3, 1)), [_normal(1, 2, 5, 7, 3)]),
    ("adaptive-maxpool1d", lambda n: n.AdaptiveMaxPool1d(3), [_normal(2, 3, 10)]),
    ("adaptive-maxpool2d-indices", lambda n: n.AdaptiveMaxPool2d((4, 3), return_indices=True), [_normal(2, 3, 9, 7)]),
    ("adaptive-maxpool3d", lambda n: n.AdaptiveMaxPool3d(2), [_normal(1, 2, 5, 4, 3)]),
    ("maxunpool1d", lambda n: n.MaxUnpool1d(2), _pooled(1, (2, 3, 8), 2, 2)),
    ("maxunpool2d", lambda n: n.MaxUnpool2d(3, stride=2), _pooled(2, (1, 2, 7, 9), 3, 2)),
    ("maxunpool3d", lambda n: n.MaxUnpool3d(2), _pooled(3, (1, 2, 4, 4, 6), 2, 2)),
    # normalisation (training mode: batch statistics, running statistics updated once)
    ("batchnorm1d-2d-input", lambda n: n.BatchNorm1d(4), [_normal(6, 4)]),
    ("batchnorm1d-3d-input-cma", lambda n: n.BatchNorm1d(4, momentum=None), [_normal(5, 4, 7)]),
    ("batchnorm2d", lambda n: n.BatchNorm2d(3), [_normal(4, 3, 5, 6)]),
    ("batchnorm2d-no-affine", lambda n: n.BatchNorm2d(3, affine=False), [_normal(4, 3, 5, 6)]),
    ("batchnorm2d-untracked", lambda n: n.BatchNorm2d(3, track_running_stats=False), [_normal(4, 3, 5, 6)]),
    ("batchnorm3d", lambda n: n.BatchNorm3d(2, eps=1e-3, momentum=0.3), [_normal(3, 2, 3, 4, 5)]),
    ("layernorm", lambda n: n.LayerNorm((4, 5)), [_normal(3, 2, 4, 5)]),
    ("layernorm-no-affine", lambda n: n.LayerNorm(6, elementwise_affine=False), [_normal(3, 6)]),
    ("layernorm-no-bias", lambda n: n.LayerNorm(6, bias=False, eps=1e-3), [_normal(2, 3, 6)]),
    ("instancenorm1d", lambda n: n.InstanceNorm1d(4), [_normal(3, 4, 7)]),
    ("instancenorm1d-unbatched-affine", lambda n: n.InstanceNorm1d(4, affine=True), [_normal(4, 7)]),
    ("instancenorm2d-tracked", lambda n: n.InstanceNorm2d(3, momentum=0.3, affine=True, track_running_stats=True),
     [_normal(4, 3, 5, 6)]),
    ("instancenorm2d-tracked-eval", lambda n: n.InstanceNorm2d(3, track_running_stats=True).eval(),
     [_normal(2, 3, 4, 4)]),
    ("instancenorm3d-cma-no-bias", lambda n: n.InstanceNorm3d(2, momentum=None, affine=True, bias=False,
                                                               track_running_stats=True), [_normal(3, 2, 3, 4, 2)]),
    ("groupnorm", lambda n: n.GroupNorm(2, 6), [_normal(3, 6, 4, 5)]),
    ("groupnorm-no-affine", lambda n: n.GroupNorm(3, 6, affine=False), [_normal(2, 6, 7)]),
    ("lrn", lambda n: n.LocalResponseNorm(3), [_normal(2, 6, 5, 5)]),
    ("lrn-args", lambda n: n.LocalResponseNorm(4, alpha=1e-2, beta=0.5, k=2.0), [_normal(2, 5, 7)]),
    # activations
    ("relu", lambda n: n.ReLU(), [_normal(3, 4, 5)]),
    ("relu6", lambda n: n.ReLU6(), [_normal(3, 4, 5)]),
    ("leaky-relu", lambda n: n.LeakyReLU(0.2), [_normal(3, 4, 5)]),
    ("elu", lambda n: n.ELU(0.7), [_normal(3, 4, 5)]),
    ("celu", lambda n: n.CELU(0.4), [_normal(3, 4, 5)]),
    ("selu", lambda n: n.SELU(), [_normal(3, 4, 5)]),
    ("prelu", lambda n: n.PReLU(), [_normal(3, 4, 5)]),
    ("prelu-per-channel", lambda n: n.PReLU(4, init=0.1), [_normal(2, 4, 3, 5)]),
    ("softplus", lambda n: n.Softplus(beta=2, threshold=1.0), [_normal(3, 4, 5)]),
    ("logsigmoid", lambda n: n.LogSigmoid(), [_normal(3, 4, 5)]),
    ("gelu", lambda n: n.GELU(), [_normal(3, 4, 5)]),
    ("gelu-tanh", lambda n: n.GELU("tanh"), [_normal(3, 4, 5)]),
    ("silu", lambda n: n.SiLU(), [_normal(3, 4, 5)]),
    ("mish", lambda n: n.Mish(), [_normal(3, 4, 5)]),
    ("hardswish", lambda n: n.Hardswish(), [_normal(3, 4, 5)]),
    ("hardsigmoid", lambda n: n.Hardsigmoid(), [_normal(3, 4, 5)]),
    ("hardtanh", lambda n: n.Hardtanh(-0.5, 2.0), [_normal(3, 4, 5)]),
    ("sigmoid", lambda n: n.Sigmoid(), [_normal(3, 4, 5)]),
    ("tanh", lambda n: n.Tanh(), [_normal(3, 4, 5)]),
    ("softmax", lambda n: n.Softmax(1), [_normal(3, 4, 5)]),
    ("log-softmax", lambda n: n.LogSoftmax(-1), [_normal(3, 4, 5)]),
    # padding
    ("constantpad1d", lambda n: n.ConstantPad1d((2, -1), 3.5), [_normal(2, 3, 5)]),
    ("constantpad3d", lambda n: n.ConstantPad3d(1, -1.0), [_normal(1, 2, 2, 3, 2)]),
    ("zeropad2d", lambda n: n.ZeroPad2d((1, 0, 2, 3)), [_normal(2, 3, 4, 5)]),
    ("reflectionpad2d-unbatched", lambda n: n.ReflectionPad2d((2, 1, 0, 3)), [_normal(3, 4, 5)]),
    ("reflectionpad3d", lambda n: n.ReflectionPad3d(1), [_normal(1, 2, 3, 3, 4)]),
    ("replicationpad1d", lambda n: n.ReplicationPad1d(3), [_normal(2, 3, 4)]),
    ("replicationpad2d", lambda n: n.ReplicationPad2d((0, 2, 1, 1)), [_normal(2, 3, 4, 5)]),
    ("circularpad2d", lambda n: n.CircularPad2d(2), [_normal(2, 3, 4, 5)]),
    ("circularpad3d", lambda n: n.CircularPad3d((1, 0, 0, 1, 2, 2)), [_normal(1, 2, 3, 3, 4)]),
    # channel and space rearrangements
    ("pixelshuffle", lambda n: n.PixelShuffle(2), [_normal(2, 12, 3, 4)]),
    ("pixelshuffle-unbatched", lambda n: n.PixelShuffle(3), [_normal(18, 2, 2)]),
    ("pixelunshuffle", lambda n: n.PixelUnshuffle(2), [_normal(2, 3, 4, 6)]),
    ("channelshuffle", lambda n: n.ChannelShuffle(3), [_normal(2, 6, 4, 5)]),
    # losses
    ("cross-entropy", lambda n: n.CrossEntropyLoss(), [_normal(6, 5), _classes(5, 6)]),
    ("cross-entropy-weighted-spatial", lambda n: n.CrossEntropyLoss(weight=_like(n, W5), ignore_index=1,
                                                                    label_smoothing=0.1),
     [_normal(3, 5, 4, 2), _classes(5, 3, 4, 2)]),
    ("cross-entropy-sum-ignored", lambda n: n.CrossEntropyLoss(reduction="sum", ignore_index=-1),
     [_normal(7, 5), _classes(5, 7, ignore=-1)]),
    ("cross-entropy-none-probabilities", lambda n: n.CrossEntropyLoss(reduction="none"),
     [_normal(4, 5, 3), _probabilities(4, 5, 3)]),
    ("nll", lambda n: n.NLLLoss(weight=_like(n, W5), ignore_index=2), [_normal(6, 5), _classes(5, 6)]),
    ("nll-none-spatial", lambda n: n.NLLLoss(reduction="none"), [_normal(2, 5, 3, 3), _classes(5, 2, 3, 3)]),
    ("mse", lambda n: n.MSELoss(), [_normal(3, 4), _normal(3, 4)]),
    ("mse-sum", lambda n: n.MSELoss(reduction="sum"), [_normal(2, 3, 4), _normal(2, 3, 4)]),
    # linear, reshaping, dropout, upsampling
    ("linear", lambda n: n.Linear(5, 3), [_normal(2, 4, 5)]),
    ("linear-nobias-1d", lambda n: n.Linear(6, 2, bias=False), [_normal(6)]),
    ("flatten", lambda n: n.Flatten(), [_normal(2, 3, 4, 5)]),
    ("flatten-range", lambda n: n.Flatten(0, 2), [_normal(2, 3, 4, 5)]),
    ("unflatten", lambda n: n.Unflatten(1, (2, 3)), [_normal(4, 6, 5)]),
    ("identity", lambda n: n.Identity(54, unused="x"), [_normal(2, 3)]),
    ("dropout-eval", lambda n: n.Dropout(0.3).eval(), [_normal(4, 5)]),
    ("dropout2d-eval", lambda n: n.Dropout2d(0.5).eval(), [_normal(2, 3, 4, 4)]),
    ("dropout-p0-train", lambda n: n.Dropout(0.0), [_normal(4, 5)]),
    ("upsample-nearest", lambda n: n.Upsample(scale_factor=2), [_normal(1, 2, 3, 4)]),
    ("upsample-bilinear-size", lambda n: n.Upsample(size=(5, 7), mode="bilinear"), [_normal(1, 2, 3, 4)]),
    ("upsample-bilinear-aligned", lambda n: n.Upsample(scale_factor=1.5, mode="bilinear", align_corners=True),
     [_normal(2, 2, 4, 4)]),
    ("upsampling-nearest2d", lambda n: n.UpsamplingNearest2d(size=(6, 5)), [_normal(1, 2, 3, 4)]),
    ("upsampling-bilinear2d", lambda n: n.UpsamplingBilinear2d(scale_factor=2), [_normal(1, 2, 3, 4)]),
]


def _pair(build: Callable[[Any], Any], dtype: type) -> tuple[Any, Any]:
    """The layer in both libraries, in ``dtype``, with torch's state copied into convscope's."""
    theirs = build(torch.nn).to(TORCH_DTYPE[dtype])
    ours = build(nn).to(dtype)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _inputs(makers: Any, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return makers(rng) if callable(makers) else [make(rng) for make in makers]


def _assert_same_state(ours: nn.Module, theirs: torch.nn.Module, dtype: type) -> None:
    """Parameter gradients and every buffer agree."""
    their_params = dict(theirs.named_parameters())
    assert [name for name, _ in ours.named_parameters()] == list(their_params)
    for name, p in ours.named_parameters():
        grad = their_params[name].grad
        if grad is None:
            assert p.grad is None, name
        else:
            assert_close(p.grad, grad.numpy(), dtype, f"grad of {name}")
    their_buffers = dict(theirs.named_buffers())
    assert [name for name, _ in ours.named_buffers()] == list(their_buffers)
    for name, b in ours.named_buffers():
        assert b.dtype == their_buffers[name].numpy().dtype, name
        assert_close(b.numpy(), their_buffers[name].numpy(), dtype, name)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,build,makers", CASES, ids=[c[0] for c in CASES])
def test_module_matches_torch(name: str, build: Callable, makers: Any, dtype: type) -> None:
    ours, theirs = _pair(build, dtype)
    assert repr(ours) == repr(theirs)
    compare(ours, theirs, _inputs(makers, seed=len(name)), dtype=dtype)
    _assert_same_state(ours, theirs, dtype)


BATCHNORMS = [
    ("bn1d", lambda n: n.BatchNorm1d(4), (6, 4)),
    ("bn1d-3d-cma", lambda n: n.BatchNorm1d(4, momentum=None), (5, 4, 3)),
    ("bn2d", lambda n: n.BatchNorm2d(3, momentum=0.2), (4, 3, 5, 5)),
    ("bn2d-no-affine-cma", lambda n: n.BatchNorm2d(3, affine=False, momentum=None), (2, 3, 4, 5)),
    ("bn2d-untracked", lambda n: n.BatchNorm2d(3, track_running_stats=False), (4, 3, 3, 3)),
    ("bn3d", lambda n: n.BatchNorm3d(2), (2, 2, 3, 3, 4)),
]


@pytest.mark.parametrize("name,build,shape", BATCHNORMS, ids=[c[0] for c in BATCHNORMS])
def test_batchnorm_running_stats_then_eval(name: str, build: Callable, shape: tuple) -> None:
    """Several training steps (running statistics equal after each), then eval mode uses them."""
    ours, theirs = _pair(build, np.float64)
    rng = np.random.default_rng(7)
    for _ in range(4):
        x = rng.standard_normal(shape) * 3 + 1
        compare(ours, theirs, [x])
        _assert_same_state(ours, theirs, np.float64)
    ours.eval()
    theirs.eval()
    compare(ours, theirs, [rng.standard_normal(shape)])
    _assert_same_state(ours, theirs, np.float64)


@pytest.mark.parametrize("output_size", [[9, 10], (1, 3, 10, 9), [10, 10]])
def test_conv_transpose_output_size(output_size: Any) -> None:
    ours, theirs = _pair(lambda n: n.ConvTranspose2d(3, 2, 3, stride=2, padding=1), np.float64)
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 5))
    compare(lambda t: ours(t, output_size), lambda t: theirs(t, output_size), [x])


def test_conv_transpose_output_size_out_of_range() -> None:
    ours, theirs = _pair(lambda n: n.ConvTranspose2d(3, 2, 3, stride=2, padding=1), np.float64)
    x = np.zeros((1, 3, 5, 5))
    both_refuse(lambda t: ours(t, [11, 9]), lambda t: theirs(t, [11, 9]), [x],
                match=r"^ConvTranspose2d: requested an output size of \[11, 9\], but valid sizes range from "
                      r"\[9, 9\] to \[10, 10\]")


# --- configuration errors -------------------------------------------------------------------
CONFIG_ERRORS = [
    ("Conv2d", (3, 5, 3), {"groups": 2}, r"^Conv2d: in_channels \(3\) must be divisible by groups \(2\)$"),
    ("Conv2d", (4, 6, 3), {"groups": 4}, r"^Conv2d: out_channels \(6\) must be divisible by groups \(4\)$"),
    ("Conv1d", (2, 2, 3), {"groups": 0}, r"^Conv1d: groups must be positive, got 0$"),
    ("Conv2d", (2, 2, 3), {"stride": 2, "padding": "same"},
     r"^Conv2d: padding='same' needs stride 1, got stride=\(2, 2\)$"),
    ("Conv2d", (2, 2, 3), {"padding": "full"}, r"^Conv2d: padding must be 'same', 'valid' or ints, got 'full'$"),
    ("Conv2d", (2, 2, 3), {"padding_mode": "mirror"}, r"^Conv2d: padding_mode must be one of .*got 'mirror'$"),
    ("ConvTranspose2d", (2, 2, 3), {"padding_mode": "reflect"},
     r"^ConvTranspose2d: only \"zeros\" padding_mode is supported"),
    ("GroupNorm", (4, 6), {}, r"^GroupNorm: num_channels \(6\) must be divisible by num_groups \(4\)$"),
    ("Dropout", (1.5,), {}, r"^Dropout: dropout probability has to be between 0 and 1, got 1.5$"),
]


@pytest.mark.parametrize("cls,args,kwargs,match", CONFIG_ERRORS, ids=[f"{c[0]}-{c[3][:30]}" for c in CONFIG_ERRORS])
def test_invalid_configuration_refused(cls: str, args: tuple, kwargs: dict, match: str) -> None:
    both_refuse(lambda: getattr(nn, cls)(*args, **kwargs), lambda: getattr(torch.nn, cls)(*args, **kwargs), [],
                match=match)


# torch checks these when the layer runs; convscope already when it is built
LATE_ERRORS = [
    (lambda n: n.ConvTranspose2d(2, 2, 3, stride=2, output_padding=2), (1, 2, 4, 4),
     r"^ConvTranspose2d: output_padding \(2, 2\) must be non-negative and smaller than stride \(2, 2\) or dilation"),
    (lambda n: n.MaxPool2d(3, padding=2), (1, 1, 8, 8), r"^MaxPool2d: padding \(2, 2\) must be non-negative and "
                                                         r"at most half the kernel \(3, 3\)$"),
    (lambda n: n.MaxPool2d(3, dilation=3, padding=2), (1, 1, 9, 9), r"^MaxPool2d: padding"),
    (lambda n: n.AvgPool1d(2, padding=2), (1, 1, 8), r"^AvgPool1d: padding \(2,\)"),
    (lambda n: n.MaxPool2d(2, stride=0), (1, 1, 8, 8), r"^MaxPool2d: stride must be positive, got \(0, 0\)$"),
]


@pytest.mark.parametrize("build,shape,match", LATE_ERRORS, ids=[c[2][1:25] for c in LATE_ERRORS])
def test_invalid_configuration_refused_at_construction(build: Callable, shape: tuple, match: str) -> None:
    with pytest.raises((RuntimeError, ValueError)):
        build(torch.nn)(torch.zeros(shape))
    with pytest.raises(cs.ShapeError, match=match):
        build(nn)


# --- wrong inputs, and naming the layer ------------------------------------------------------
INPUT_ERRORS = [
    (lambda n: n.Conv2d(64, 8, 3), (1, 32, 8, 8),
     r"^Conv2d: expected input with 64 channels, got 32\. Hint: the input has 32 channels; give it 64 channels, "
     r"or set in_channels=32\.$"),
    (lambda n: n.Conv1d(4, 8, 3), (4, 3, 9), r"^Conv1d: expected input with 4 channels, got 3\."),
    (lambda n: n.Conv1d(4, 8, 3), (3, 9),
     r"^Conv1d: expected input with 4 channels, got 3 \(its input 3×9 has no batch dim and reads as C×L\)\."),
    (lambda n: n.ConvTranspose2d(6, 3, 2), (1, 4, 5, 5),
     r"^ConvTranspose2d: expected input with 6 channels, got 4\. .*set in_channels=4\.$"),
    (lambda n: n.Linear(128, 10), (2, 64),
     r"^Linear: expected input with 128 features, got 64\. Hint: the input has 64 features; give it 128 features, "
     r"or set in_features=64\.$"),
    (lambda n: n.BatchNorm2d(16), (2, 8, 4, 4), r"^BatchNorm2d: expected input with 16 channels, got 8\. .*"
                                                r"set num_features=8\.$"),
    (lambda n: n.BatchNorm2d(8), (8, 4, 4), r"^BatchNorm2d: expected 4D input, got 3D input of shape \(8, 4, 4\)$"),
    (lambda n: n.BatchNorm1d(8), (2, 8, 4, 4), r"^BatchNorm1d: expected 2D or 3D input, got 4D input"),
    (lambda n: n.GroupNorm(2, 6), (2, 4, 3), r"^GroupNorm: expected input with 6 channels, got 4\. .*"
                                              r"set num_channels=4\.$"),
    (lambda n: n.LayerNorm((4, 5)), (2, 4, 6),
     r"^LayerNorm: expected input ending in \(4, 5\), got shape \(2, 4, 6\)\. Hint: set normalized_shape=\(4, 6\)\.$"),
    (lambda n: n.Conv2d(3, 4, 5), (1, 3, 4, 4), r"^Conv2d: "),
    (lambda n: n.MaxPool2d(4), (1, 1, 3, 3), r"^MaxPool2d: "),
    # one channel is singular ("expected input with 1 channels", "give it 1 channels")
    (lambda n: n.Conv2d(1, 8, 3), (1, 3, 8, 8),
     r"^Conv2d: expected input with 1 channel, got 3\. Hint: the input has 3 channels; give it 1 channel, "
     r"or set in_channels=3\.$"),
]


@pytest.mark.parametrize("build,shape,match", INPUT_ERRORS, ids=[f"{i}" for i in range(len(INPUT_ERRORS))])
def test_wrong_input_refused(build: Callable, shape: tuple, match: str) -> None:
    both_refuse(build(nn), build(torch.nn), [np.zeros(shape)], match=match)


def _cnn(lib: Any) -> Any:
    class Net(lib.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = lib.Sequential(lib.Conv2d(3, 8, 3, padding=1), lib.ReLU(), lib.MaxPool2d(2),
                                           lib.Conv2d(8, 16, 3), lib.ReLU())
            self.classifier = lib.Sequential(lib.Flatten(), lib.Linear(16 * 2 * 2, 10))

        def forward(self, x: Any) -> Any:
            return self.classifier(self.features(x))

    return Net()


def test_error_names_layer_by_index_in_sequential() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(16, 4, 3))
    with pytest.raises(cs.ShapeError, match=r"^2 \(Conv2d\): expected input with 16 channels, got 8\. "
                                            r"Hint: the previous layer outputs 8 maps; set in_channels=8\.$") as info:
        model(cs.tensor(np.zeros((1, 3, 9, 9), np.float32)))
    assert info.value.layer == "2 (Conv2d)"
    assert "expected input with 16 channels" in info.value.message


def test_first_layer_hint_names_the_input_not_a_previous_layer() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    first = r"^0 \(Conv2d\): expected input with 3 channels, got 1\. Hint: the input has 1 channel; "
    with pytest.raises(cs.ShapeError, match=first + r"give it 3 channels, or set in_channels=1\.$"):
        model(cs.tensor(np.zeros((1, 1, 9, 9), np.float32)))
    with pytest.raises(ValueError, match=r"input shape 3×224 has 2 dim\(s\), but the first layer that fixes the "
                                         r"rank, 0 \(Conv2d\), takes 3 per sample \(C×H×W\)"):
        cs.summary(model, (3, 224))  # a 2-d shape for a 2-d conv model: refused before it reads as 1×3×224


def test_error_names_nested_path_and_keeps_op_message() -> None:
    model = _cnn(nn)
    model.features[3] = nn.Conv2d(16, 16, 3)
    with pytest.raises(cs.ShapeError, match=r"^features\.3 \(Conv2d\): expected input with 16 channels, got 8"):
        model(cs.tensor(np.zeros((1, 3, 8, 8), np.float32)))
    model = _cnn(nn)
    with pytest.raises(cs.ShapeError, match=r"^classifier\.1 \(Linear\): expected input with 64 features, got 144"):
        model(cs.tensor(np.zeros((2, 3, 10, 10), np.float32)))
    with pytest.raises(cs.ShapeError) as info:  # an op's own rule: kernel larger than the input
        model(cs.tensor(np.zeros((1, 3, 4, 4), np.float32)))
    assert info.value.layer == "features.3 (Conv2d)"
    out = model(cs.tensor(np.zeros((1, 3, 8, 8), np.float32)))  # the model still works afterwards
    assert out.shape == (1, 10)


def test_error_in_functional_call_names_the_custom_module() -> None:
    class Head(nn.Module):
        def forward(self, x: cs.Tensor) -> cs.Tensor:
            return cs.functional.max_pool2d(x, 5)

    model = nn.Sequential(OrderedDict(body=nn.Sequential(nn.Identity(), Head())))
    with pytest.raises(cs.ShapeError, match=r"^body\.1 \(Head\): "):
        model(cs.tensor(np.zeros((1, 1, 3, 3), np.float32)))


# --- initialisation -------------------------------------------------------------------------
INIT_LAYERS = [
    lambda n: n.Conv2d(3, 64, 3),
    lambda n: n.Conv2d(32, 64, 5, groups=4),
    lambda n: n.Conv1d(16, 128, 7, bias=False),
    lambda n: n.Conv3d(4, 32, 3),
    lambda n: n.ConvTranspose2d(12, 48, 3, groups=3),
    lambda n: n.ConvTranspose1d(64, 8, 4),
    lambda n: n.Linear(10, 500),
    lambda n: n.Linear(1000, 200),
]


@pytest.mark.parametrize("build", INIT_LAYERS, ids=lambda b: repr(b(nn)))
def test_default_init_follows_torch_formula(build: Callable) -> None:
    """Weights and bias ~ U(−b, b), b = 1/√fan_in with torch's fan_in (computed by torch
    itself on torch's weight), matched in bounds, mean and spread by both libraries."""
    cs.manual_seed(0)
    torch.manual_seed(0)
    ours, theirs = build(nn), build(torch.nn)
    fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(theirs.weight)
    bound = 1 / math.sqrt(fan_in)
    for name, their_param in theirs.named_parameters():
        ours_p = getattr(ours, name).numpy()
        assert ours_p.shape == tuple(their_param.shape) and ours_p.dtype == np.float32
        for values in (ours_p, their_param.detach().numpy()):
            n = values.size
            assert np.abs(values).max() <= bound
            assert np.abs(values).max() > bound * (1 - 10 / n)  # the range is used up to the bound
            assert abs(values.mean()) < 4 * bound / math.sqrt(3 * n)
            assert abs(values.std() - bound / math.sqrt(3)) < 0.1 * bound / math.sqrt(3) + 3 * bound / math.sqrt(n)


def test_norm_init_equals_torch() -> None:
    for build in (lambda n: n.BatchNorm2d(5), lambda n: n.LayerNorm((2, 3)), lambda n: n.GroupNorm(2, 4),
                  lambda n: n.BatchNorm1d(3, affine=False)):
        ours, theirs = build(nn).state_dict(), build(torch.nn).state_dict()
        assert list(ours) == list(theirs)
        for key, value in theirs.items():
            assert ours[key].dtype == value.numpy().dtype and ours[key].shape == value.numpy().shape, key
            np.testing.assert_array_equal(ours[key], value.numpy(), err_msg=key)


def test_init_is_deterministic_under_manual_seed() -> None:
    def weights(seed: int) -> list[np.ndarray]:
        cs.manual_seed(seed)
        model = _cnn(nn)
        return [p.numpy().copy() for p in model.parameters()]

    a, b, c = weights(5), weights(5), weights(6)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("nonlinearity,param", [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None),
                                                ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2),
                                                ("leaky_relu", 3), ("selu", None)])
def test_calculate_gain_equals_torch(nonlinearity: str, param: Any) -> None:
    assert nn.init.calculate_gain(nonlinearity, param) == torch.nn.init.calculate_gain(nonlinearity, param)


def test_calculate_gain_refuses_like_torch() -> None:
    for args in (("softsign",), ("leaky_relu", True)):
        with pytest.raises(ValueError):
            torch.nn.init.calculate_gain(*args)
        with pytest.raises(ValueError):
            nn.init.calculate_gain(*args)


INITIALISERS = [
    ("xavier_uniform_", {"gain": 2.0}, "uniform"),
    ("xavier_normal_", {"gain": 0.5}, "normal"),
    ("kaiming_uniform_", {"a": 0.1, "mode": "fan_out", "nonlinearity": "relu"}, "uniform"),
    ("kaiming_normal_", {"mode": "fan_in"}, "normal"),
    ("kaiming_normal_", {"a": 0.3, "mode": "fan_out"}, "normal"),
    ("uniform_", {"a": -0.2, "b": 0.7}, "uniform"),
    ("normal_", {"mean": 1.5, "std": 0.2}, "normal"),
]


@pytest.mark.parametrize("name,kwargs,kind", INITIALISERS, ids=[f"{c[0]}{c[1]}" for c in INITIALISERS])
def test_initialisers_match_torch_distribution(name: str, kwargs: dict, kind: str) -> None:
    """Same mean/std/range as torch's initialiser on a large tensor (the streams differ)."""
    shape = (64, 48, 3, 3)
    ours = getattr(nn.init, name)(cs.tensor(np.zeros(shape)), **kwargs).numpy()
    theirs = getattr(torch.nn.init, name)(torch.zeros(shape, dtype=torch.float64), **kwargs).numpy()
    spread = theirs.std()
    assert abs(ours.mean() - theirs.mean()) < 0.02 * spread + 1e-12
    assert abs(ours.std() - spread) < 0.02 * spread
    if kind == "uniform":
        assert abs(ours.min() - theirs.min()) < 0.01 * spread and abs(ours.max() - theirs.max()) < 0.01 * spread


def _truncated_normal_moments(mean: float, std: float, a: float, b: float) -> tuple[float, float]:
    """Mean and standard deviation of N(mean, std²) conditioned on [a, b] (closed form)."""
    alpha, beta = (a - mean) / std, (b - mean) / std
    pdf = lambda z: 0.0 if math.isinf(z) else math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    tail = lambda z: 0.5 * math.erfc(z / math.sqrt(2))  # P(Z > z), accurate far out
    mass = tail(alpha) - tail(beta) if alpha >= 0 else (1 - tail(-alpha)) - (1 - tail(-beta))
    shift = (pdf(alpha) - pdf(beta)) / mass
    spread = (alpha * pdf(alpha) if pdf(alpha) else 0.0) - (beta * pdf(beta) if pdf(beta) else 0.0)
    return mean + std * shift, std * math.sqrt(1 + spread / mass - shift * shift)


def _ks_distance(x: np.ndarray, y: np.ndarray) -> float:
    """The two-sample Kolmogorov–Smirnov statistic: the largest gap between the empirical CDFs."""
    x, y = np.sort(x.ravel()), np.sort(y.ravel())
    grid = np.concatenate([x, y])
    return float(np.abs(np.searchsorted(x, grid, "right") / x.size - np.searchsorted(y, grid, "right") / y.size).max())


# (mean, std, a, b): torch's ConvNeXt and GoogLeNet calls, the standard ±2 σ, an asymmetric cut, a narrow
# interval at the peak and one on a flank, both tails, a far tail.
TRUNC_NORMAL_CASES = [(0.0, 0.02, -2.0, 2.0), (0.0, 0.01, -2.0, 2.0), (0.0, 1.0, -2.0, 2.0), (0.5, 1.0, 0.0, 3.0),
                      (0.0, 1.0, -0.1, 0.1), (1.0, 2.0, 1.5, 1.6), (0.0, 1.0, 3.0, 5.0), (0.0, 1.0, -5.0, -3.0),
                      (0.0, 1.0, 8.0, 9.0)]


@pytest.mark.parametrize("mean,std,a,b", TRUNC_NORMAL_CASES)
def test_trunc_normal_matches_torch_distribution(mean: float, std: float, a: float, b: float) -> None:
    """Bounds are absolute, as in torch; mean, spread and the whole CDF match torch's draw on the
    same shape and the closed form (torch's own draw is held to the same closed form)."""
    shape = (400, 500)
    cs.manual_seed(0)
    ours = nn.init.trunc_normal_(cs.tensor(np.zeros(shape)), mean, std, a, b).numpy()
    with warnings.catch_warnings():  # torch warns about the tails ("mean is more than 2 std from [a, b]")
        warnings.simplefilter("ignore")
        theirs = torch.nn.init.trunc_normal_(torch.zeros(shape, dtype=torch.float64), mean, std, a, b).numpy()
    want_mean, want_std = _truncated_normal_moments(mean, std, a, b)
    n = ours.size
    for values in (ours, theirs):
        assert a <= values.min() and values.max() <= b
        assert abs(values.mean() - want_mean) < 6 * want_std / math.sqrt(n)
        assert abs(values.std() - want_std) < 6 * want_std / math.sqrt(n)
    assert _ks_distance(ours, theirs) < 0.01  # P(KS > 0.0062) = 0.001 for two equal distributions
    if std <= 1e-2 * (b - a):  # nothing cut: the normal's own spread
        assert abs(ours.std() / std - 1) < 0.01


def test_trunc_normal_dtype_bounds_seed_and_edges() -> None:
    def draw(seed: int) -> np.ndarray:
        cs.manual_seed(seed)
        return nn.init.trunc_normal_(cs.tensor(np.zeros((64, 32, 3, 3), np.float32)), 0.0, 1.0, -0.5, 1.0).numpy()

    x = draw(1)
    assert x.dtype == np.float32 and -0.5 <= x.min() and x.max() <= 1.0
    np.testing.assert_array_equal(x, draw(1))
    assert not np.array_equal(x, draw(2))
    gen = np.random.default_rng(7)
    y = nn.init.trunc_normal_(cs.tensor(np.zeros(5)), generator=gen).numpy()
    np.testing.assert_array_equal(y, nn.init.trunc_normal_(cs.tensor(np.zeros(5)),
                                                           generator=np.random.default_rng(7)).numpy())
    far = nn.init.trunc_normal_(cs.tensor(np.zeros(20_000)), 0.0, 1.0, 6.0, math.inf).numpy()  # torch: overflow
    assert far.min() >= 6 and abs(far.mean() - _truncated_normal_moments(0.0, 1.0, 6.0, math.inf)[0]) < 0.01
    assert (nn.init.trunc_normal_(cs.tensor(np.zeros(3)), 5.0, 0.0, -1.0, 1.0).numpy() == 1.0).all()
    meta = cs.Tensor.meta((2, 3))
    assert nn.init.trunc_normal_(meta) is meta and meta.is_meta
    with pytest.raises(ValueError, match="std must be non-negative"):
        nn.init.trunc_normal_(cs.tensor(np.zeros(3)), std=-1.0)
    with pytest.raises(ValueError, match="empty"):
        nn.init.trunc_normal_(cs.tensor(np.zeros(3)), a=1.0, b=0.0)


def test_constant_initialisers_and_fan_errors() -> None:
    t = cs.tensor(np.zeros((2, 3), np.float32))
    assert (nn.init.constant_(t, 0.25).numpy() == np.float32(0.25)).all()
    assert (nn.init.ones_(t).numpy() == 1).all() and (nn.init.zeros_(t).numpy() == 0).all()
    assert t.dtype == np.float32
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.xavier_uniform_(cs.tensor(np.zeros(4)))
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        torch.nn.init.xavier_uniform_(torch.zeros(4))
    with pytest.warns(UserWarning, match="zero-element"):
        nn.init.kaiming_uniform_(cs.tensor(np.zeros((0, 3))))


# --- hooks, modes, traversal ----------------------------------------------------------------
def test_forward_hooks_see_inputs_and_outputs_and_can_be_removed() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    x = cs.tensor(np.ones((1, 3), np.float32))
    seen: list[tuple] = []
    pre = model[0].register_forward_pre_hook(lambda m, args: seen.append(("pre", m, args[0])))
    post = model[0].register_forward_hook(lambda m, args, out: seen.append(("post", m, args[0], out)))
    out = model(x)
    assert [s[0] for s in seen] == ["pre", "post"]
    assert seen[0][1] is model[0] and seen[0][2] is x and seen[1][2] is x
    np.testing.assert_array_equal(seen[1][3].numpy(), model[0](x).numpy())
    assert out.shape == (1, 2)
    pre.remove()
    post.remove()
    seen.clear()
    model(x)
    assert seen == []


def test_hooks_can_replace_inputs_and_outputs_like_torch() -> None:
    ours, theirs = _pair(lambda n: n.Linear(2, 2), np.float64)
    x = np.array([[1.0, -2.0]])
    results = []
    for layer, wrap in ((ours, cs.tensor), (theirs, torch.tensor)):
        with layer.register_forward_pre_hook(lambda m, args: args[0] * 2):  # a bare tensor replaces args
            handle = layer.register_forward_hook(lambda m, args, out: out + 1)
            hooked = layer(wrap(x)).detach().numpy().copy()
            handle.remove()
        results.append((hooked, layer(wrap(x)).detach().numpy().copy()))
    for ours_out, theirs_out in zip(*results, strict=True):
        assert_close(ours_out, theirs_out)
    assert not np.allclose(results[0][0], results[0][1])


def _nested(lib: Any) -> Any:
    """A model with nesting, a shared module, ModuleList/ModuleDict and buffers."""
    shared = lib.ReLU()
    model = lib.Sequential(OrderedDict([
        ("stem", lib.Sequential(lib.Conv2d(3, 4, 3), lib.BatchNorm2d(4), shared)),
        ("blocks", lib.ModuleList([lib.Sequential(lib.Conv2d(4, 4, 1), shared), lib.Identity()])),
        ("heads", lib.ModuleDict({"cls": lib.Linear(4, 2), "box": lib.Linear(4, 4)})),
        ("act", shared),
    ]))
    model.extra = lib.GroupNorm(2, 4)
    model.stem[0].register_buffer("scratch", _like(lib, np.zeros(2, np.float32)), persistent=False)
    return model


def test_traversal_names_and_order_equal_torch() -> None:
    ours, theirs = _nested(nn), _nested(torch.nn)
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_modules(remove_duplicate=False)] == \
        [n for n, _ in theirs.named_modules(remove_duplicate=False)]
    assert [n for n, _ in ours.named_modules(prefix="net")] == [n for n, _ in theirs.named_modules(prefix="net")]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert list(ours.stem.state_dict(prefix="x.")) == list(theirs.stem.state_dict(prefix="x."))
    assert len(list(ours.parameters())) == len(list(theirs.parameters()))
    assert repr(ours) == repr(theirs)
    assert type(ours.get_submodule("blocks.0.1")).__name__ == "ReLU"


def test_apply_order_equals_torch() -> None:
    orders = []
    for lib in (nn, torch.nn):
        model = _nested(lib)
        names = {id(m): n for n, m in model.named_modules()}
        visited: list[str] = []
        model.apply(lambda m, visited=visited, names=names: visited.append(names[id(m)]))
        orders.append(visited)
    ours, theirs = orders
    # torch visits a shared module once per path; convscope once, at its first post-order place
    assert ours == list(dict.fromkeys(theirs))


def test_train_eval_propagate() -> None:
    model = _nested(nn)
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    model.stem.train(False)
    assert not model.stem[1].training and model.blocks.training
    with pytest.raises(ValueError):
        model.train("yes")


def test_deep_nesting_stays_clear_of_the_recursion_limit() -> None:
    depth = 400
    model: nn.Module = nn.Linear(2, 2)
    for _ in range(depth):
        model = nn.Sequential(model)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(250)
    try:
        assert len(list(model.named_modules())) == depth + 1
        keys = list(model.state_dict())
        model.load_state_dict(model.state_dict())
        model.apply(lambda m: None).eval().double()
        text = repr(model)
        params = list(model.parameters())
    finally:
        sys.setrecursionlimit(limit)
    assert keys == ["0." * depth + "weight", "0." * depth + "bias"]
    assert text.count("Sequential(") == depth and params[0].dtype == np.float64


def test_wide_model_runs_150_layers() -> None:
    layers = []
    for _ in range(50):
        layers += [nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2), nn.ReLU()]
    model = nn.Sequential(*layers)
    assert len(list(model.modules())) == 151
    out = model(cs.Tensor.meta((1, 2, 4, 4)))
    assert out.shape == (1, 2, 4, 4)


def test_attribute_registration_semantics() -> None:
    m = nn.Module()
    m.w = nn.Parameter(cs.tensor(np.ones(2, np.float32)))
    m.sub = nn.Linear(1, 1)
    m.register_buffer("stat", cs.tensor(np.zeros(1, np.float32)))
    m.plain = cs.tensor(np.zeros(1))
    assert list(m.state_dict()) == ["w", "stat", "sub.weight", "sub.bias"]
    with pytest.raises(TypeError):
        m.w = cs.tensor(np.ones(2))  # a plain tensor cannot replace a parameter (torch: TypeError)
    with pytest.raises(TypeError):
        m.stat = np.zeros(1)
    with pytest.raises(KeyError):
        m.register_buffer("w", None)
    m.w = None
    m.stat = cs.tensor(np.ones(1, np.float32))
    assert list(m.state_dict()) == ["stat", "sub.weight", "sub.bias"]
    del m.sub
    assert not hasattr(m, "sub") and list(m.state_dict()) == ["stat"]
    with pytest.raises(AttributeError, match="'Module' object has no attribute 'missing'"):
        _ = m.missing
    with pytest.raises(NotImplementedError):
        m(1)
    p = nn.Parameter(cs.tensor(np.ones(3)))
    assert p.requires_grad and p.is_leaf and repr(p).startswith("Parameter containing:\n")


def test_containers_behave_like_torch() -> None:
    results = []
    for lib in (nn, torch.nn):
        seq = lib.Sequential(lib.ReLU(), lib.Tanh(), lib.Sigmoid())
        seq.append(lib.Identity())
        del seq[1]
        seq[0] = lib.ReLU6()
        lst = lib.ModuleList([lib.ReLU(), lib.Tanh()])
        lst.insert(1, lib.Sigmoid())
        lst += [lib.Identity()]
        del lst[0]
        d = lib.ModuleDict({"a": lib.ReLU()})
        d["b"] = lib.Tanh()
        d.update([("c", lib.Sigmoid())])
        popped = d.pop("a")
        results.append((repr(seq), repr(seq[1:]), repr(seq[-1]), len(seq), list(seq._modules),
                        repr(lst), list(lst._modules), repr(lst[1:]), list(d.keys()), "b" in d, repr(popped),
                        repr(d)))
    assert results[0] == results[1]


def test_to_and_double_keep_parameter_identity() -> None:
    model = _nested(nn)
    params = list(model.parameters())
    model.double()
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    assert all(p.dtype == np.float64 and p.numpy().dtype == np.float64 for p in params)
    assert model.stem[1].num_batches_tracked.dtype == np.int64
    assert model.stem[1].running_var.dtype == np.float64
    model.float()
    assert all(p.numpy().dtype == np.float32 for p in params)
    with pytest.raises(TypeError):
        model.to(np.int64)


def test_zero_grad_and_requires_grad() -> None:
    model = nn.Linear(3, 2)
    model(cs.tensor(np.ones((1, 3), np.float32))).sum().backward()
    assert model.weight.grad is not None
    model.zero_grad()
    assert model.weight.grad is None
    model.requires_grad_(False)
    assert not model.weight.requires_grad


def test_dropout_in_training_drops_and_rescales() -> None:
    cs.manual_seed(1)
    x = cs.tensor(np.ones((200, 100)))
    out = nn.Dropout(0.3)(x).numpy()
    kept = out != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(out[kept], 1 / 0.7)
    cs.manual_seed(1)
    np.testing.assert_array_equal(nn.Dropout(0.3)(x).numpy(), out)


def test_meta_tensors_flow_through_a_model_without_touching_state() -> None:
    cs.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.MaxPool2d(2, ceil_mode=True), nn.Conv2d(8, 8, 3, groups=2), nn.AvgPool2d(2),
                          nn.ConvTranspose2d(8, 4, 3, stride=2), nn.AdaptiveAvgPool2d((2, 3)), nn.Flatten(),
                          nn.Linear(24, 5), nn.LogSoftmax(1))
    before = {k: v.copy() for k, v in model.state_dict().items()}
    meta = model(cs.Tensor.meta((2, 3, 13, 11)))
    assert meta.is_meta
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    real = model(cs.tensor(np.random.default_rng(0).standard_normal((2, 3, 13, 11)).astype(np.float32)))
    assert meta.shape == real.shape == (2, 5) and meta.dtype == real.dtype
    assert int(model[1].num_batches_tracked.item()) == 1


@pytest.mark.parametrize("name,build,makers", CASES, ids=[c[0] for c in CASES])
def test_meta_shape_equals_real_shape(name: str, build: Callable, makers: Any) -> None:
    layer = build(nn).float()
    args = [cs.tensor(a.astype(np.float32) if a.dtype.kind == "f" else a) for a in _inputs(makers, 0)]
    real = layer(*args)
    meta = layer(*[cs.Tensor.meta(a.shape, a.dtype) for a in args])
    real, meta = (real[0], meta[0]) if isinstance(real, tuple) else (real, meta)
    assert meta.is_meta and meta.shape == real.shape and meta.dtype == real.dtype


def test_every_public_module_documents_its_shapes() -> None:
    classes = [getattr(nn, name) for name in nn.__all__ if isinstance(getattr(nn, name), type)]
    modules = [c for c in classes if issubclass(c, nn.Module)]
    assert len(modules) > 50
    missing = [c.__name__ for c in modules if "Shape:" not in (c.__doc__ or "")]
    assert missing == []
