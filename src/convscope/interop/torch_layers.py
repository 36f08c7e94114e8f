"""The layers that convert one-to-one between ``torch.nn`` and ``convscope.nn``.

convscope.nn mirrors torch.nn's class names, constructor arguments and attribute names, so one
:class:`LayerSpec` per class says which constructor arguments to read from a built module of
either library to build its twin in the other. Nothing here imports torch: the converters
resolve ``spec.name`` in ``torch.nn`` themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["SPECS", "LayerSpec", "constructor_kwargs"]


@dataclass(frozen=True)
class LayerSpec:
    """One layer class, as named in both ``torch.nn`` and ``convscope.nn``.

    ``args`` are constructor keywords whose values both libraries keep as attributes of the
    same name. ``bias`` adds ``bias=(module.bias is not None)`` and ``dtype`` adds the dtype of
    the module's parameters, for the classes whose constructors take them.
    """

    name: str
    args: tuple[str, ...] = ()
    bias: bool = False
    dtype: bool = False


_CONV = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode")
_CONV_TRANSPOSE = _CONV + ("output_padding",)
_MAX_POOL = ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode")
_AVG_POOL = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
_BATCH_NORM = ("num_features", "eps", "momentum", "affine", "track_running_stats")
_DROPOUT = ("p", "inplace")
_DIMS = (1, 2, 3)

SPECS: tuple[LayerSpec, ...] = (
    *(LayerSpec(f"Conv{n}d", _CONV, bias=True, dtype=True) for n in _DIMS),
    *(LayerSpec(f"ConvTranspose{n}d", _CONV_TRANSPOSE, bias=True, dtype=True) for n in _DIMS),
    *(LayerSpec(f"MaxPool{n}d", _MAX_POOL) for n in _DIMS),
    LayerSpec("AvgPool1d", _AVG_POOL),
    *(LayerSpec(f"AvgPool{n}d", _AVG_POOL + ("divisor_override",)) for n in (2, 3)),
    *(LayerSpec(f"LPPool{n}d", ("norm_type", "kernel_size", "stride", "ceil_mode")) for n in _DIMS),
    *(LayerSpec(f"AdaptiveAvgPool{n}d", ("output_size",)) for n in _DIMS),
    *(LayerSpec(f"AdaptiveMaxPool{n}d", ("output_size", "return_indices")) for n in _DIMS),
    *(LayerSpec(f"MaxUnpool{n}d", ("kernel_size", "stride", "padding")) for n in _DIMS),
    *(LayerSpec(f"BatchNorm{n}d", _BATCH_NORM, dtype=True) for n in _DIMS),
    *(LayerSpec(f"InstanceNorm{n}d", _BATCH_NORM, dtype=True) for n in _DIMS),
    LayerSpec("LayerNorm", ("normalized_shape", "eps", "elementwise_affine"), bias=True, dtype=True),
    LayerSpec("GroupNorm", ("num_groups", "num_channels", "eps", "affine"), dtype=True),
    LayerSpec("LocalResponseNorm", ("size", "alpha", "beta", "k")),
    LayerSpec("Linear", ("in_features", "out_features"), bias=True, dtype=True),
    LayerSpec("Flatten", ("start_dim", "end_dim")),
    LayerSpec("Unflatten", ("dim", "unflattened_size")),
    LayerSpec("Dropout", _DROPOUT),
    *(LayerSpec(f"Dropout{n}d", _DROPOUT) for n in _DIMS),
    *(LayerSpec(name, ("inplace",)) for name in ("ReLU", "ReLU6", "SiLU", "Mish", "Hardswish", "Hardsigmoid")),
    LayerSpec("Hardtanh", ("min_val", "max_val", "inplace")),
    LayerSpec("LeakyReLU", ("negative_slope", "inplace")),
    LayerSpec("ELU", ("alpha", "inplace")),
    LayerSpec("CELU", ("alpha", "inplace")),
    LayerSpec("PReLU", ("num_parameters", "init"), dtype=True),
    LayerSpec("SELU", ("inplace",)),
    LayerSpec("Softplus", ("beta", "threshold")),
    LayerSpec("LogSigmoid"),
    LayerSpec("GELU", ("approximate",)),
    LayerSpec("Sigmoid"),
    LayerSpec("Tanh"),
    LayerSpec("Softmax", ("dim",)),
    LayerSpec("LogSoftmax", ("dim",)),
    LayerSpec("Identity"),
    *(LayerSpec(f"ConstantPad{n}d", ("padding", "value")) for n in _DIMS),
    *(LayerSpec(f"{kind}Pad{n}d", ("padding",)) for kind in ("Zero", "Reflection", "Replication", "Circular")
      for n in _DIMS),
    LayerSpec("PixelShuffle", ("upscale_factor",)),
    LayerSpec("PixelUnshuffle", ("downscale_factor",)),
    LayerSpec("ChannelShuffle", ("groups",)),
    LayerSpec("Upsample", ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor")),
    LayerSpec("UpsamplingNearest2d", ("size", "scale_factor")),
    LayerSpec("UpsamplingBilinear2d", ("size", "scale_factor")),
)
"""Every layer class that converts one-to-one (containers are handled by the converters)."""


def constructor_kwargs(spec: LayerSpec, module: Any, convert_dtype: Callable[[Any], Any]) -> dict[str, Any]:
    """The keyword arguments that rebuild ``module`` (of either library) as ``spec.name`` of the
    other. ``convert_dtype`` maps a dtype of the module's library to the other's, or to None
    for a non-floating dtype; the first floating parameter or buffer gives the layer's dtype."""
    kwargs = {name: getattr(module, name) for name in spec.args}
    if spec.bias:
        kwargs["bias"] = getattr(module, "bias", None) is not None
    if spec.dtype:
        tensors = [*module._parameters.values(), *module._buffers.values()]
        dtypes = [convert_dtype(t.dtype) for t in tensors if t is not None]
        floating = [d for d in dtypes if d is not None]
        if floating:
            kwargs["dtype"] = floating[0]
    return kwargs
