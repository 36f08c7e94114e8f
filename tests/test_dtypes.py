"""Integer and bool inputs, op by op, against torch: both refuse (convscope with an error naming
the dtype, on real and meta tensors alike), or both give the same dtype and values."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import convscope as cs
from torch_ref import same_or_both_refuse

F = cs.functional
DTYPES = [np.int64, np.int32, np.uint8, np.bool_]


def sample(shape: tuple, dtype, seed: int = 0) -> np.ndarray:
    """Small values, negative ones for signed dtypes."""
    rng = np.random.default_rng(seed)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    return rng.integers(0 if np.dtype(dtype).kind == "u" else -4, 5, shape).astype(dtype)


def functional(name: str, *args, torch_fn=None, **kwargs):
    """(convscope, torch) twins of ``F.name(x, *args, **kwargs)``."""
    twin = torch_fn or getattr(TF, name)
    return (lambda *t: getattr(F, name)(*t, *args, **kwargs)), (lambda *t: twin(*t, *args, **kwargs))


def method(fn):
    """The same lambda for both engines (operators and Tensor methods)."""
    return fn, fn


X1, X, X3 = (1, 2, 6), (1, 2, 4, 4), (1, 2, 4, 4, 4)
# (id, (convscope, torch), input shapes): one registry for every op and dtype.
CASES = [
    ("relu", functional("relu"), [X]),
    ("relu6", functional("relu6"), [X]),
    ("hardtanh", functional("hardtanh"), [X]),
    ("hardtanh_0_2", functional("hardtanh", 0.0, 2.0), [X]),
    ("neg", method(lambda x: -x), [X]),
    ("abs", method(lambda x: x.abs()), [X]),
    # tensor arithmetic: torch's type promotion (a Python float beside integers is float32)
    ("add", method(lambda x, y: x + y), [X, X]),
    ("add_int", method(lambda x: x + 2), [X]),
    ("add_float", method(lambda x: x + 2.5), [X]),
    ("sub", method(lambda x, y: x - y), [X, X]),
    ("mul_float", method(lambda x: x * 0.5), [X]),
    ("div", method(lambda x: x / 2), [X]),
    ("div_tensors", method(lambda x, y: x.div(y)), [X, X]),
    ("rdiv", method(lambda x: 2 / x), [X]),
    ("pow", method(lambda x: x ** 2), [X]),
    ("pow_float", method(lambda x: x ** 0.5), [X]),
    ("rpow", method(lambda x: 2 ** x), [X]),  # negative integer powers: 0 (or ±1 for ±1), not an error
    ("maximum", (lambda x, y: cs.ops.maximum(x, y), torch.maximum), [X, X]),
    ("where_float", (lambda x: cs.where(x > 0, x, 1.5), lambda x: torch.where(x > 0, x, 1.5)), [X]),
    ("clamp", method(lambda x: x.clamp(0, 2)), [X]),
    ("clamp_float", method(lambda x: x.clamp(0.5, 2.5)), [X]),
    ("sum", method(lambda x: x.sum(1)), [X]),
    ("mean", method(lambda x: x.mean()), [X]),
    ("var", method(lambda x: x.var()), [X]),
    ("amax", method(lambda x: x.amax(1)), [X]),
    ("matmul", method(lambda x, y: x @ y), [X, X]),
    # pooling: int64 averages round toward zero; LP pooling of int64 is float32 (its 1/p power)
    ("avg_pool1d", functional("avg_pool1d", 2), [X1]),
    ("avg_pool2d", functional("avg_pool2d", 2), [X]),
    ("avg_pool2d_padded", functional("avg_pool2d", 3, 2, 1, count_include_pad=False), [X]),
    ("avg_pool2d_ceil", functional("avg_pool2d", 3, 2, 1, ceil_mode=True), [X]),
    ("avg_pool2d_divisor", functional("avg_pool2d", 2, divisor_override=3), [X]),
    ("avg_pool2d_negative_divisor", functional("avg_pool2d", 2, divisor_override=-3), [X]),
    ("avg_pool3d", functional("avg_pool3d", 2), [X3]),
    ("lp_pool1d", functional("lp_pool1d", 2, 2), [X1]),
    ("lp_pool2d", functional("lp_pool2d", 2, 2), [X]),
    ("lp_pool2d_1.5", functional("lp_pool2d", 1.5, 2), [X]),
    ("lp_pool3d", functional("lp_pool3d", 2, 2), [X3]),
    ("max_pool1d", functional("max_pool1d", 2), [X1]),
    ("max_pool2d", functional("max_pool2d", 3, 2, 1), [X]),
    ("max_pool2d_indices", functional("max_pool2d", 2, return_indices=True), [X]),
    ("max_pool3d", functional("max_pool3d", 2), [X3]),
    ("adaptive_avg_pool1d", functional("adaptive_avg_pool1d", 4), [X1]),
    ("adaptive_avg_pool2d", functional("adaptive_avg_pool2d", 3), [X]),
    ("adaptive_avg_pool2d_even", functional("adaptive_avg_pool2d", 2), [X]),
    ("adaptive_avg_pool2d_global", functional("adaptive_avg_pool2d", 1), [X]),
    ("adaptive_avg_pool3d", functional("adaptive_avg_pool3d", 3), [X3]),
    ("adaptive_max_pool1d", functional("adaptive_max_pool1d", 4), [X1]),
    ("adaptive_max_pool2d", functional("adaptive_max_pool2d", 3), [X]),
    ("adaptive_max_pool3d", functional("adaptive_max_pool3d", 3), [X3]),
    # normalisation: LRN of int64 is float32 (over a mean of squares rounded down), the rest refuse
    ("local_response_norm", functional("local_response_norm", 2, alpha=1.0, k=0.5), [X]),
    ("local_response_norm_3d", functional("local_response_norm", 3, alpha=1.0, beta=1.0), [X1]),
    ("local_response_norm_5d", functional("local_response_norm", 2), [X3]),
    ("batch_norm", functional("batch_norm", None, None, training=True), [X]),
    ("batch_norm_eval", functional("batch_norm"), [X, (2,), (2,)]),
    ("instance_norm", functional("instance_norm"), [X]),
    ("layer_norm", functional("layer_norm", (4, 4)), [X]),
    ("group_norm", functional("group_norm", 2), [X]),
    ("normalize", functional("normalize"), [X]),
    # softmax, prelu and the losses refuse integers; l1_loss keeps them unless asked for a mean
    ("softmax", functional("softmax", 1), [X]),
    ("softmax_to_float", (lambda x: F.softmax(x, 1, dtype=np.float32), lambda x: TF.softmax(x, 1, dtype=torch.float32)),
     [X]),
    ("log_softmax", functional("log_softmax", 1), [X]),
    ("prelu", functional("prelu"), [X, (1,)]),
    ("mse_loss", functional("mse_loss"), [X, X]),
    ("mse_loss_none", functional("mse_loss", reduction="none"), [X, X]),
    ("l1_loss", functional("l1_loss"), [X, X]),
    ("l1_loss_none", functional("l1_loss", reduction="none"), [X, X]),
    ("l1_loss_sum", functional("l1_loss", reduction="sum"), [X, X]),
    ("bce_with_logits", functional("binary_cross_entropy_with_logits"), [X, X]),
    ("cross_entropy_probabilities", functional("cross_entropy"), [(3, 4), (3, 4)]),
    # products: torch convolves and multiplies integers (transposed convolution int64 only), never bool
    ("conv1d", functional("conv1d"), [X1, (3, 2, 3)]),
    ("conv2d", functional("conv2d", padding=1), [X, (3, 2, 3, 3)]),
    ("conv2d_depthwise", functional("conv2d", groups=2), [X, (4, 1, 3, 3)]),
    ("conv3d", functional("conv3d"), [X3, (3, 2, 3, 3, 3)]),
    ("conv_transpose1d", functional("conv_transpose1d"), [X1, (2, 3, 3)]),
    ("conv_transpose2d", functional("conv_transpose2d", stride=2), [X, (2, 3, 3, 3)]),
    ("conv_transpose3d", functional("conv_transpose3d"), [X3, (2, 3, 3, 3, 3)]),
    ("linear", functional("linear"), [(3, 4), (5, 4)]),
    ("bilinear", functional("bilinear"), [(3, 2), (3, 4), (5, 2, 4)]),
    # nearest upsampling: uint8 only among integers (bilinear/bicubic uint8: see the test below)
    ("interpolate_nearest", functional("interpolate", scale_factor=2), [X]),
    ("interpolate_nearest_exact", functional("interpolate", scale_factor=2, mode="nearest-exact"), [X1]),
    ("interpolate_nearest_3d", functional("interpolate", scale_factor=2), [X3]),
    ("interpolate_area", functional("interpolate", size=2, mode="area"), [X]),
    # element moves keep every dtype (reflect and replicate padding refuse bool)
    ("pad_reflect", functional("pad", (1, 1, 2, 1), mode="reflect"), [X]),
    ("pad_constant", functional("pad", (1, 2, 0, 1)), [X]),
    ("dropout_eval", functional("dropout", training=False), [X]),
    ("pixel_shuffle", functional("pixel_shuffle", 2), [(1, 4, 2, 2)]),
    ("channel_shuffle", functional("channel_shuffle", 2), [X]),
    ("flatten", (lambda x: F.flatten(x, 1), lambda x: torch.flatten(x, 1)), [X]),
    ("pad_replicate", functional("pad", (1, 1), mode="replicate"), [X1]),
    ("pad_circular", functional("pad", (1, 1), mode="circular"), [X1]),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # a division by zero in the data, in both engines
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case,fns,shapes", CASES, ids=[c[0] for c in CASES])
def test_integer_and_bool_inputs_like_torch(case, fns, shapes, dtype):
    same_or_both_refuse(*fns, [sample(s, dtype, i) for i, s in enumerate(shapes)])


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_], ids=lambda d: np.dtype(d).name)
def test_max_unpool_refuses_integer_input_like_torch(dtype):
    x, indices = sample((1, 2, 2, 2), dtype), np.array([0, 3, 9, 14] * 2).reshape(1, 2, 2, 2)
    same_or_both_refuse(*functional("max_unpool2d", kernel_size=2), [x, indices])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_class_index_losses_refuse_integer_scores_like_torch(name, dtype):
    same_or_both_refuse(*functional(name), [sample((3, 4), dtype), np.array([0, 1, 3])])


def test_uint8_bilinear_upsampling_is_refused_unlike_torch():
    """torch has a uint8 bilinear/bicubic kernel with its own fixed-point rounding; convscope
    refuses rather than give other numbers."""
    with pytest.raises(cs.ShapeError, match="mode 'bilinear' needs a floating-point input, got uint8"):
        F.interpolate(sample(X, np.uint8), scale_factor=2, mode="bilinear")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_one_hot_takes_int64_class_indices_only_like_torch(dtype):
    same_or_both_refuse(*functional("one_hot", 5), [np.abs(sample((6,), dtype)).astype(dtype)])
