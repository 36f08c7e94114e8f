"""Op events -> ONNX nodes: the export side of the operator table.

:class:`GraphBuilder` names values (the traced input, op results, and constants, which become
initializers named after the parameter or buffer they are) and collects nodes; ``EMITTERS``
maps each convscope op name, as the tensor observer reports it, to a function that writes
the ONNX node(s) computing the same thing from the event's inputs, output and
hyper-parameters. Where an op's event does not record a hyper-parameter (``cat``'s axis,
``sum``'s dims, ``permute``'s order) it is recovered from the traced shapes and, if several
values fit them, from the traced data. An op without an emitter, or whose settings ONNX
cannot express, raises :class:`~convscope.interop.onnx_node.OnnxError` naming the layer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import nn
from ..functional.activation import _GELU_TANH_KAPPA, _SQRT1_2, _SQRT_2_OVER_PI, SELU_ALPHA, SELU_SCALE
from ..functional.interpolate import CUBIC_A, resize_maps
from ..functional.norm import layer_norm_affine
from ..functional.pool import pool_output_shape
from ..tensor import Tensor
from .onnx_node import ONNX_DTYPES, OnnxError
from .onnx_resize import resize_taps

__all__ = ["EMITTERS", "Event", "GraphBuilder"]

_DTYPE_CODES = {dtype: code for code, dtype in ONNX_DTYPES.items()}


@dataclass
class Event:
    """One traced op: its name, inputs, output, hyper-parameters, and the innermost module
    that ran it (its path, for names and messages)."""

    op: str
    inputs: tuple[Tensor, ...]
    output: Tensor
    attrs: dict
    module: Any
    path: str

    @property
    def where(self) -> str:
        return f"{self.path or 'model'}: {self.op}"

    def fail(self, what: str) -> OnnxError:
        return OnnxError(f"export_onnx: {self.where}: {what}")


class GraphBuilder:
    """Value names, initializers and nodes of the graph being written."""

    def __init__(self, onnx: Any, opset: int, parameter_names: dict[int, str]) -> None:
        self.onnx = onnx
        self.opset = opset
        self.parameter_names = parameter_names
        self.values: dict[int, str] = {}
        self.nodes: list[Any] = []
        self.initializers: dict[str, Any] = {}
        self._counter = itertools.count()
        self._node_names: set[str] = set()
        self._constants: dict[tuple[str, tuple[int, ...], bytes], str] = {}  # one Constant node per value
        self._keep: list[Tensor] = []  # keep traced tensors alive so their ids stay unique

    def bind(self, tensor: Tensor, name: str) -> None:
        self.values[id(tensor)] = name
        self._keep.append(tensor)

    def value(self, tensor: Tensor) -> str:
        """The name of a traced value, or of a new initializer holding a constant tensor."""
        name = self.values.get(id(tensor))
        if name is None:
            if tensor.is_meta:
                raise OnnxError("export_onnx: a constant has no data (a meta parameter?); build the model with data")
            learned = self.parameter_names.get(id(tensor))
            name = self.constant(tensor.numpy()) if learned is None else self.initializer(tensor.numpy(), learned)
            self.bind(tensor, name)
        return name

    def initializer(self, array: Any, hint: str) -> str:
        """An initializer: the model's parameters and buffers, and integer constants."""
        array = np.asarray(array)
        if array.dtype not in _DTYPE_CODES:
            raise OnnxError(f"export_onnx: constant {hint!r} has type {array.dtype}, which the export does not support")
        name = hint
        while name in self.initializers or name in self._node_names or name == "const":
            name = f"{hint}_{next(self._counter)}"
        self.initializers[name] = self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name)
        return name

    def constant(self, array: Any, hint: str = "const") -> str:
        """A value the model does not learn. Floating-point ones are Constant nodes, as torch
        writes them: a loader counts a floating-point initializer as a parameter (GELU's ½
        would add one), one per distinct value. Integer ones (shapes, pads, axes) stay
        initializers."""
        array = np.ascontiguousarray(array)
        if array.dtype.kind != "f":
            return self.initializer(array, hint)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            value = self.onnx.numpy_helper.from_array(array, hint)
            self._constants[key] = self.node("Constant", [], hint, value=value)[0]
        return self._constants[key]

    def ints(self, values: Sequence[int], hint: str) -> str:
        return self.constant(np.asarray(values, np.int64), hint)

    def node(self, op_type: str, inputs: Sequence[str], name: str, outputs: int = 1, **attrs: Any) -> list[str]:
        base, n = name, 0
        while name in self._node_names or name in self.initializers:  # names of values, both
            n += 1
            name = f"{base}_{n}"
        self._node_names.add(name)
        out = [f"{name}:{i}" if outputs > 1 else name for i in range(outputs)]
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), out, name=name, **attrs))
        return out


Emitter = Callable[[GraphBuilder, Event, str], str]


def _ins(g: GraphBuilder, e: Event) -> list[str]:
    return [g.value(t) for t in e.inputs]


def _simple(op_type: str, **fixed: Any) -> Emitter:
    def emit(g: GraphBuilder, e: Event, name: str) -> str:
        return g.node(op_type, _ins(g, e), name, **fixed)[0]

    return emit


def _with_attrs(op_type: str, mapping: dict[str, str]) -> Emitter:
    def emit(g: GraphBuilder, e: Event, name: str) -> str:
        return g.node(op_type, _ins(g, e), name, **{onnx: e.attrs[ours] for ours, onnx in mapping.items()})[0]

    return emit


def _pairs_to_pads(pairs: Sequence[Any]) -> list[int]:
    """Per-dim ``(before, after)`` pairs or symmetric ints -> ONNX ``[begins..., ends...]``."""
    pairs = [(p, p) if np.isscalar(p) else tuple(p) for p in pairs]
    return [int(b) for b, _ in pairs] + [int(a) for _, a in pairs]


def _conv(g: GraphBuilder, e: Event, name: str) -> str:
    a = e.attrs
    weight = e.inputs[1]
    return g.node("Conv", _ins(g, e), name, kernel_shape=list(weight.shape[2:]), strides=list(a["stride"]),
                  pads=_pairs_to_pads(a["padding"]), dilations=list(a["dilation"]), group=int(a["groups"]))[0]


def _conv_transpose(g: GraphBuilder, e: Event, name: str) -> str:
    """``output_padding`` is taken out of the end padding first (the same cells, cropped less):
    torch allows it up to the dilation, onnxruntime refuses one that reaches the stride (what
    exceeds the end padding stays output_padding)."""
    a = e.attrs
    weight = e.inputs[1]
    pads = _pairs_to_pads(a["padding"])
    nd = len(pads) // 2
    folded = [min(extra, end) for extra, end in zip(a["output_padding"], pads[nd:])]
    return g.node("ConvTranspose", _ins(g, e), name, kernel_shape=list(weight.shape[2:]), strides=list(a["stride"]),
                  pads=pads[:nd] + [end - f for end, f in zip(pads[nd:], folded)],
                  output_padding=[int(extra) - f for extra, f in zip(a["output_padding"], folded)],
                  dilations=list(a["dilation"]), group=int(a["groups"]))[0]


def _ceil_mode(e: Event) -> int:
    """``ceil_mode`` only where it adds a window: ONNX before opset 22 keeps a last window
    that would start in the end padding, which torch (and ONNX 22) drop, and then the sizes
    are floor mode's, which both give."""
    a = e.attrs
    floor = pool_output_shape(e.inputs[0].shape, a["kernel_size"], a["stride"], a["padding"],
                              a.get("dilation") or 1, ceil_mode=False, op=e.op)
    return int(e.output.shape != floor)


def _max_pool(g: GraphBuilder, e: Event, name: str) -> str:
    a = e.attrs
    return g.node("MaxPool", _ins(g, e), name, kernel_shape=list(a["kernel_size"]), strides=list(a["stride"]),
                  pads=_pairs_to_pads(a["padding"]), dilations=list(a["dilation"]), ceil_mode=_ceil_mode(e))[0]


def _avg_pool(g: GraphBuilder, e: Event, name: str) -> str:
    a = e.attrs
    if a.get("dilation") and any(d != 1 for d in a["dilation"]):
        raise e.fail("dilated average pooling")
    out = g.node("AveragePool", _ins(g, e), f"{name}/avg" if a["divisor_override"] else name,
                 kernel_shape=list(a["kernel_size"]), strides=list(a["stride"]), pads=_pairs_to_pads(a["padding"]),
                 ceil_mode=_ceil_mode(e), count_include_pad=int(a["count_include_pad"]))[0]
    divisor = a["divisor_override"]
    if not divisor:
        return out
    x = e.inputs[0]
    if any(a["padding"]) or _ceil_mode(e):
        raise e.fail("divisor_override with padding or a ceil-mode overhang (ONNX AveragePool has no divisor)")
    scale = float(np.prod(a["kernel_size"])) / divisor  # every window is whole: its sum is mean × volume
    return g.node("Mul", [out, g.constant(np.asarray(scale, x.dtype), "divisor_scale")], name)[0]


def _adaptive(kind: str) -> Emitter:
    def emit(g: GraphBuilder, e: Event, name: str) -> str:
        sizes, out = e.inputs[0].shape[2:], tuple(e.attrs["output_size"])
        if all(o == 1 for o in out):
            return g.node(f"Global{kind}Pool", _ins(g, e), name)[0]
        if any(n % o for n, o in zip(sizes, out)):
            raise e.fail(f"adaptive pooling from {sizes} to {out} (ONNX has it only when the sizes divide)")
        kernel = [n // o for n, o in zip(sizes, out)]
        return g.node(f"{kind}Pool", _ins(g, e), name, kernel_shape=kernel, strides=kernel)[0]

    return emit


def _hardtanh(g: GraphBuilder, e: Event, name: str) -> str:
    dtype = e.inputs[0].dtype
    low = g.constant(np.asarray(e.attrs["min_val"], dtype), "clip_min")
    high = g.constant(np.asarray(e.attrs["max_val"], dtype), "clip_max")
    return g.node("Clip", [g.value(e.inputs[0]), low, high], name)[0]


def _hardswish(g: GraphBuilder, e: Event, name: str) -> str:
    if g.opset >= 14:
        return g.node("HardSwish", _ins(g, e), name)[0]
    x = g.value(e.inputs[0])  # HardSwish arrived in opset 14: x · hardsigmoid(x)
    return g.node("Mul", [x, g.node("HardSigmoid", [x], f"{name}/gate", alpha=1 / 6, beta=0.5)[0]], name)[0]


def _silu(g: GraphBuilder, e: Event, name: str) -> str:
    x = g.value(e.inputs[0])
    return g.node("Mul", [x, g.node("Sigmoid", [x], f"{name}/sigmoid")[0]], name)[0]


def _mish(g: GraphBuilder, e: Event, name: str) -> str:
    if g.opset >= 18:
        return g.node("Mish", _ins(g, e), name)[0]
    x = g.value(e.inputs[0])  # Mish arrived in opset 18: x · tanh(softplus(x))
    soft = g.node("Softplus", [x], f"{name}/softplus")[0]
    return g.node("Mul", [x, g.node("Tanh", [soft], f"{name}/tanh")[0]], name)[0]


def _linear(g: GraphBuilder, e: Event, name: str) -> str:
    x, weight, *bias = _ins(g, e)
    if e.inputs[0].ndim == 2:
        return g.node("Gemm", [x, weight, *bias], name, transB=1)[0]
    product = g.node("MatMul", [x, g.node("Transpose", [weight], f"{name}/weight_t")[0]], f"{name}/matmul" if bias
                     else name)[0]
    return g.node("Add", [product, bias[0]], name)[0] if bias else product


def _scale_and_bias(g: GraphBuilder, e: Event) -> tuple[str, str]:
    """A per-channel norm's weight and bias, or ones and zeros without them."""
    module, channels, dtype = e.module, e.inputs[0].shape[1], e.inputs[0].dtype
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    return (g.value(weight) if weight is not None else g.constant(np.ones(channels, dtype), "norm_scale"),
            g.value(bias) if bias is not None else g.constant(np.zeros(channels, dtype), "norm_bias"))


def _running_norm(g: GraphBuilder, e: Event, name: str) -> str:
    """A norm that uses its layer's running statistics: BatchNormalization."""
    module = e.module
    if getattr(module, "running_mean", None) is None or getattr(module, "running_var", None) is None:
        raise e.fail(f"{e.op} called outside a norm layer with running statistics: they are unknown")
    return g.node("BatchNormalization", [g.value(e.inputs[0]), *_scale_and_bias(g, e), g.value(module.running_mean),
                                         g.value(module.running_var)], name, epsilon=float(e.attrs["eps"]))[0]


def _batch_norm(g: GraphBuilder, e: Event, name: str) -> str:
    if e.attrs.get("training"):
        raise e.fail("batch normalisation with batch statistics (training mode, or no running statistics); "
                     "ONNX inference graphs use running statistics: call model.eval()")
    return _running_norm(g, e, name)


def _instance_norm(g: GraphBuilder, e: Event, name: str) -> str:
    """Each sample's own statistics (InstanceNormalization), or in eval mode with tracked running
    statistics those (BatchNormalization)."""
    if not e.attrs["use_input_stats"]:
        return _running_norm(g, e, name)
    if not isinstance(e.module, (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)):
        raise e.fail("instance_norm called outside an InstanceNorm layer: its weight and bias are unknown")
    return g.node("InstanceNormalization", [g.value(e.inputs[0]), *_scale_and_bias(g, e)], name,
                  epsilon=float(e.attrs["eps"]))[0]


def _layer_norm(g: GraphBuilder, e: Event, name: str) -> str:
    """LayerNormalization (opset 17) over the trailing ``normalized_shape`` dims; ONNX's Scale is
    required, so a norm without a weight gets ones."""
    if g.opset < 17:
        raise e.fail(f"layer_norm needs opset 17 or later (LayerNormalization), got opset {g.opset}: "
                     "export with opset=17")
    x = e.inputs[0]
    shape, eps = tuple(e.attrs["normalized_shape"]), float(e.attrs["eps"])
    weight, bias = layer_norm_affine(e.inputs, e.attrs)
    scale = g.value(weight) if weight is not None else g.constant(np.ones(shape, x.dtype), "norm_scale")
    inputs = [g.value(x), scale] + ([g.value(bias)] if bias is not None else [])
    return g.node("LayerNormalization", inputs, name, axis=-len(shape), epsilon=eps)[0]


def _selu(g: GraphBuilder, e: Event, name: str) -> str:
    return g.node("Selu", _ins(g, e), name, alpha=SELU_ALPHA, gamma=SELU_SCALE)[0]


def _softplus(g: GraphBuilder, e: Event, name: str) -> str:
    """``where(beta·x > threshold, x, softplus(beta·x)/beta)``: ONNX's Softplus has no beta or threshold."""
    x, dtype = g.value(e.inputs[0]), e.inputs[0].dtype
    beta, threshold = e.attrs["beta"], e.attrs["threshold"]
    scaled = x if beta == 1 else g.node("Mul", [x, g.constant(np.asarray(beta, dtype), "beta")], f"{name}/scaled")[0]
    soft = g.node("Softplus", [scaled], f"{name}/soft")[0]
    if beta != 1:
        soft = g.node("Div", [soft, g.constant(np.asarray(beta, dtype), "beta")], f"{name}/unscaled")[0]
    linear = g.node("Less", [g.constant(np.asarray(threshold, dtype), "threshold"), scaled], f"{name}/linear")[0]
    return g.node("Where", [linear, x, soft], name)[0]


def _prelu(g: GraphBuilder, e: Event, name: str) -> str:
    """ONNX's PRelu broadcasts its slope from the right: one per channel becomes ``(C, 1, …, 1)``."""
    x, weight = e.inputs
    slope = g.value(weight)
    if weight.shape[0] > 1 and x.ndim > 2:
        slope = g.node("Reshape", [slope, g.ints((weight.shape[0],) + (1,) * (x.ndim - 2), "shape")],
                       f"{name}/slope")[0]
    return g.node("PRelu", [g.value(x), slope], name)[0]


def _gelu(g: GraphBuilder, e: Event, name: str) -> str:
    """The Gelu node from opset 20; before, its decomposition in :func:`~convscope.functional.gelu`'s
    own order of operations (so that the file loads back bit for bit): ``(x·0.5)·(1 + Erf(x·(1/√2)))``,
    or ``(0.5·x)·(1 + Tanh(√(2/π)·(x + ((0.044715·x)·x)·x)))``. (onnxruntime has no float64
    Erf kernel, so it cannot run a float64 exact GELU either way.)"""
    approximate = e.attrs["approximate"]
    if g.opset >= 20:
        return g.node("Gelu", _ins(g, e), name, approximate=approximate)[0]
    x, dtype = g.value(e.inputs[0]), e.inputs[0].dtype

    def const(value: float, hint: str) -> str:
        return g.constant(np.asarray(value, dtype), hint)

    def op(op_type: str, a: str, b: str, step: str) -> str:
        return g.node(op_type, [a, b], f"{name}/{step}")[0]

    if approximate == "none":
        cdf = op("Add", g.node("Erf", [op("Mul", x, const(_SQRT1_2, "sqrt_half"), "scaled")], f"{name}/erf")[0],
                 const(1.0, "one"), "one_plus")
        return g.node("Mul", [op("Mul", x, const(0.5, "half"), "half_x"), cdf], name)[0]
    kappa_x = op("Mul", const(_GELU_TANH_KAPPA, "kappa"), x, "kappa_x")
    cube = op("Mul", op("Mul", kappa_x, x, "kappa_x2"), x, "kappa_cube")
    inner = op("Mul", const(_SQRT_2_OVER_PI, "sqrt_2_over_pi"), op("Add", x, cube, "sum"), "inner")
    gate = op("Add", const(1.0, "one"), g.node("Tanh", [inner], f"{name}/tanh")[0], "one_plus")
    return g.node("Mul", [op("Mul", const(0.5, "half"), x, "half_x"), gate], name)[0]


def _logsigmoid(g: GraphBuilder, e: Event, name: str) -> str:
    """``−softplus(−x)``, finite where ``log(sigmoid(x))`` would round to log 0."""
    negated = g.node("Neg", _ins(g, e), f"{name}/negated")[0]
    return g.node("Neg", [g.node("Softplus", [negated], f"{name}/soft")[0]], name)[0]


def _lrn(g: GraphBuilder, e: Event, name: str) -> str:
    a = e.attrs
    if a["size"] % 2 == 0:
        raise e.fail(f"an even LRN size ({a['size']}): ONNX centres the window differently from torch")
    return g.node("LRN", _ins(g, e), name, size=int(a["size"]), alpha=float(a["alpha"]), beta=float(a["beta"]),
                  bias=float(a["k"]))[0]


def _softmax(op_type: str) -> Emitter:
    def emit(g: GraphBuilder, e: Event, name: str) -> str:
        return g.node(op_type, _ins(g, e), name, axis=int(e.attrs["dim"]))[0]

    return emit


def _reshape(g: GraphBuilder, e: Event, name: str) -> str:
    return g.node("Reshape", [g.value(e.inputs[0]), g.ints(e.output.shape, "shape")], name)[0]


def _expand(g: GraphBuilder, e: Event, name: str) -> str:
    return g.node("Expand", [g.value(e.inputs[0]), g.ints(e.output.shape, "shape")], name)[0]


def _unique(e: Event, candidates: list[Any], matches: Callable[[Any], bool], what: str) -> Any:
    """The one candidate hyper-parameter that fits the traced shapes and data."""
    if len(candidates) > 1 and not e.output.is_meta:
        candidates = [c for c in candidates if matches(c)]
    if len(candidates) != 1:
        raise e.fail(f"cannot tell the {what} from the traced shapes and data ({len(candidates)} candidates)")
    return candidates[0]


def _cat(g: GraphBuilder, e: Event, name: str) -> str:
    return g.node("Concat", _ins(g, e), name, axis=int(e.attrs["dim"]))[0]


def _permute(g: GraphBuilder, e: Event, name: str) -> str:
    return g.node("Transpose", _ins(g, e), name, perm=[int(d) for d in e.attrs["dims"]])[0]


def _getitem(g: GraphBuilder, e: Event, name: str) -> str:
    """Basic slicing (``x[:, :c]``, ``x[..., 1::2]``) as one Slice; other indices are refused."""
    shape = e.inputs[0].shape
    index = e.attrs["index"] if isinstance(e.attrs["index"], tuple) else (e.attrs["index"],)
    if Ellipsis in index:
        at = index.index(Ellipsis)
        index = index[:at] + (slice(None),) * (len(shape) - len(index) + 1) + index[at + 1:]
    if not all(isinstance(i, slice) for i in index) or any(i.step is not None and i.step <= 0 for i in index):
        raise e.fail(f"indexing with {e.attrs['index']!r}: the export writes slices with positive steps only")
    bounds = [(axis, *i.indices(shape[axis])) for axis, i in enumerate(index) if i != slice(None)]
    if not bounds:
        return g.node("Identity", _ins(g, e), name)[0]
    axes, starts, stops, steps = zip(*bounds)
    return g.node("Slice", [g.value(e.inputs[0]), g.ints(starts, "starts"), g.ints(stops, "ends"),
                            g.ints(axes, "axes"), g.ints(steps, "steps")], name)[0]


def _reduce(op_type: str, numpy_fn: Callable[..., np.ndarray], axes_input_since: int) -> Emitter:
    def emit(g: GraphBuilder, e: Event, name: str) -> str:
        x, out = e.inputs[0], e.output.shape
        keep = len(out) == x.ndim
        fits = []
        for r in range(x.ndim + 1):
            for axes in itertools.combinations(range(x.ndim), r):
                kept = tuple(1 if i in axes else s for i, s in enumerate(x.shape))
                if (kept if keep else tuple(s for i, s in enumerate(x.shape) if i not in axes)) == out:
                    fits.append(axes)
        if keep:  # reducing a size-1 dim or not gives the same values: take the smallest set
            fits = [min(fits, key=len)] if fits else fits
        axes = _unique(e, fits, lambda a: np.allclose(numpy_fn(x.numpy(), axis=a, keepdims=keep), e.output.numpy()),
                       "reduced dims")
        if not axes:
            return g.node("Identity", [g.value(x)], name)[0]
        if g.opset >= axes_input_since:
            return g.node(op_type, [g.value(x), g.ints(list(axes), "axes")], name, keepdims=int(keep))[0]
        return g.node(op_type, [g.value(x)], name, axes=list(axes), keepdims=int(keep))[0]

    return emit


def _cast(g: GraphBuilder, e: Event, name: str) -> str:
    return g.node("Cast", _ins(g, e), name, to=_DTYPE_CODES[e.output.dtype])[0]


def _pad(g: GraphBuilder, e: Event, name: str) -> str:
    x, pad, mode = e.inputs[0], list(e.attrs["pad"]), e.attrs["mode"]
    begins, ends = [0] * x.ndim, [0] * x.ndim
    for i in range(len(pad) // 2):
        begins[x.ndim - 1 - i], ends[x.ndim - 1 - i] = pad[2 * i], pad[2 * i + 1]
    modes = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
    if mode == "circular" and g.opset < 19:
        raise e.fail("circular padding needs opset 19 (Pad mode 'wrap')")
    inputs = [g.value(x), g.ints(begins + ends, "pads")]
    if mode == "constant":
        inputs.append(g.constant(np.asarray(e.attrs["value"] or 0, x.dtype), "pad_value"))
    return g.node("Pad", inputs, name, mode=modes[mode])[0]


def _interpolate(g: GraphBuilder, e: Event, name: str) -> str:
    a, x = e.attrs, e.inputs[0]
    mode = a["mode"]
    if mode == "nearest":
        settings = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    elif mode == "nearest-exact":
        settings = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
                    "nearest_mode": "round_prefer_ceil"}
    else:
        coordinates = "align_corners" if a["align_corners"] else "half_pixel"
        settings = {"mode": "linear", "coordinate_transformation_mode": coordinates}
        if mode == "bicubic":
            settings.update(mode="cubic", cubic_coeff_a=CUBIC_A)
    return g.node("Resize", [g.value(x), "", *_resize_target(g, e, settings)], name, **settings)[0]


def _resize_target(g: GraphBuilder, e: Event, settings: dict) -> list[str]:
    """Resize's ``scales`` and ``sizes`` inputs (one of them empty), chosen so that ONNX's
    coordinate rules read the cells torch's do.

    ONNX maps by ``x / scale``, with ``scale = out/in`` when given sizes; torch by
    ``1/scale_factor`` when one was given, and it copies an axis whose size is kept (linear
    modes; nearest in 2-d, which also halves ``out = 2·in`` exactly). So ``sizes`` go when
    ONNX's taps (:func:`.onnx_resize.resize_taps`) are torch's
    (:func:`..functional.interpolate.resize_maps`) on every axis; else ``scales``, per axis
    the first of the scale factor, 2 and ``out/in`` (each as the float32 nearest or the next
    above) whose taps are torch's and whose ``⌊in·scale⌋`` is the output size in float32 and
    in float64. An axis whose size is kept must be a copy: onnxruntime copies it whatever the
    scale.
    """
    x, a = e.inputs[0], e.attrs
    maps = resize_maps(x.shape, x.dtype, a["size"], a["scales"], a["mode"], a["align_corners"])
    axes = list(zip(maps, a["size"], a["scales"]))
    if all(_same_taps(settings, taps, n_in, n_out, n_out / n_in) for (_, n_in, taps), n_out, _ in axes):
        return ["", g.ints(list(x.shape[:2]) + list(a["size"]), "sizes")]
    chosen = []
    for (_, n_in, taps), n_out, factor in axes:
        wanted = [c for c in (factor, 2.0, n_out / n_in) if c is not None]
        candidates = ([np.float32(1)] if n_out == n_in else
                      [v for c in wanted for v in (np.float32(c), np.nextafter(np.float32(c), np.float32(np.inf)))])
        scale = next((c for c in candidates if {int(np.floor(c * np.float32(n_in))), int(np.floor(float(c) * n_in))}
                      == {n_out} and _same_taps(settings, taps, n_in, n_out, float(c))), None)
        if scale is None:
            why = " (onnxruntime copies an axis whose size is kept)" if n_out == n_in else ""
            raise e.fail(f"no ONNX Resize scale reads the cells torch's {a['mode']} interpolation reads from "
                         f"{n_in} to {n_out} cells (scale_factor {factor}){why}; resize to another size to export it")
        chosen.append(scale)
    return [g.constant(np.asarray([1, 1, *chosen], np.float32), "scales"), ""]


def _same_taps(settings: dict, taps: list, n_in: int, n_out: int, scale: float) -> bool:
    """ONNX Resize with ``settings`` and ``scale`` maps one axis as torch's ``taps`` do: the
    same ``n_out × n_in`` matrix, within 1e-4 (float32 coordinates; taps clamped onto one cell
    may differ)."""
    theirs, _ = resize_taps(settings["mode"], settings["coordinate_transformation_mode"],
                            settings.get("nearest_mode", ""), n_in, n_out, scale, (0.0, 1.0),
                            settings.get("cubic_coeff_a", CUBIC_A))

    def matrix(pairs: list) -> np.ndarray:
        m = np.zeros((n_out, n_in))
        for index, weight in pairs:
            np.add.at(m, (np.arange(n_out), index), 1.0 if weight is None else weight)
        return m

    return np.allclose(matrix(taps), matrix(theirs), rtol=0, atol=1e-4)


EMITTERS: dict[str, Callable[..., str]] = {
    **{f"conv{n}d": _conv for n in (1, 2, 3)},
    **{f"conv_transpose{n}d": _conv_transpose for n in (1, 2, 3)},
    **{f"max_pool{n}d": _max_pool for n in (1, 2, 3)},
    **{f"avg_pool{n}d": _avg_pool for n in (1, 2, 3)},
    **{f"adaptive_avg_pool{n}d": _adaptive("Average") for n in (1, 2, 3)},
    **{f"adaptive_max_pool{n}d": _adaptive("Max") for n in (1, 2, 3)},
    "relu": _simple("Relu"), "sigmoid": _simple("Sigmoid"), "tanh": _simple("Tanh"),
    "hardsigmoid": _simple("HardSigmoid", alpha=1 / 6, beta=0.5), "hardswish": _hardswish,
    "leaky_relu": _with_attrs("LeakyRelu", {"negative_slope": "alpha"}), "hardtanh": _hardtanh, "silu": _silu,
    "mish": _mish, "elu": _with_attrs("Elu", {"alpha": "alpha"}), "selu": _selu,
    "celu": _with_attrs("Celu", {"alpha": "alpha"}),
    "softplus": _softplus, "logsigmoid": _logsigmoid, "prelu": _prelu, "gelu": _gelu, "erf": _simple("Erf"),
    "softmax": _softmax("Softmax"), "log_softmax": _softmax("LogSoftmax"),
    "add": _simple("Add"), "sub": _simple("Sub"), "mul": _simple("Mul"), "div": _simple("Div"),
    "pow": _simple("Pow"), "matmul": _simple("MatMul"), "maximum": _simple("Max"), "minimum": _simple("Min"),
    "neg": _simple("Neg"), "exp": _simple("Exp"), "log": _simple("Log"), "sqrt": _simple("Sqrt"),
    "abs": _simple("Abs"),
    "linear": _linear, "batch_norm": _batch_norm, "instance_norm": _instance_norm, "layer_norm": _layer_norm,
    "local_response_norm": _lrn,
    "reshape": _reshape, "expand": _expand, "cat": _cat, "permute": _permute, "getitem": _getitem,
    "sum": _reduce("ReduceSum", np.sum, 13), "amax": _reduce("ReduceMax", np.max, 18),
    "to": _cast, "pad": _pad, "interpolate": _interpolate,
}
