"""The layer keywords of the spec language: one :class:`Kind` per keyword, each saying which
``convscope.nn`` class it builds, its options, and which constructor arguments it infers from
the shape that reaches it (``in_channels`` and friends — the user never writes them).

Adding a layer means adding one ``Kind`` to :data:`KINDS`; the parser, the docs test, the
token-coverage test and :func:`~convscope.spec.dump_spec` all read this table.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .. import nn
from .errors import SpecError
from .syntax import Token, normalise
from .values import (
    FLAG,
    INT,
    NONNEGATIVE_SIZES,
    NUMBER,
    PADDING,
    PADS,
    POSITIVE,
    SCALE,
    SHAPE,
    SIZES,
    Value,
    choice,
)


@dataclass(frozen=True)
class Option:
    """One ``key=value`` argument. ``kwarg`` is the constructor keyword (and the attribute
    :func:`dump_spec` reads back); None for spec-only switches such as ``dw``. ``short``
    options may be glued to their value: ``k3``, ``s2``, ``op1``."""

    key: str
    value: Value
    kwarg: str | None
    help: str
    aliases: tuple[str, ...] = ()
    short: bool = False

    def keys(self) -> tuple[str, ...]:
        return (normalise(self.key),) + tuple(normalise(a) for a in self.aliases)

    def with_help(self, help: str) -> Option:  # noqa: A002
        return replace(self, help=help)

    def with_kwarg(self, kwarg: str) -> Option:
        return replace(self, kwarg=kwarg, aliases=(*self.aliases, kwarg))


@dataclass
class Arguments:
    """The bound arguments of one statement: values by option key, and the token each came
    from (errors point at it)."""

    head: Token
    values: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    name: str | None = None
    frozen: bool = False

    def error(self, message: str, key: str | None = None) -> SpecError:
        token = self.tokens.get(key, self.head) if key else self.head
        return SpecError(message, line=token.line, column=token.column)


Infer = Callable[[tuple[int, ...], Arguments], dict[str, Any]]


@dataclass(frozen=True)
class Kind:
    """A layer keyword. ``classes`` is one class (any input rank) or the 1-d, 2-d and 3-d
    classes, picked by the rank of the input (``conv`` → Conv2d on ``(N, C, H, W)``); the
    explicit names ``conv1d``/``conv2d``/``conv3d`` fix the class."""

    name: str
    classes: tuple[type, ...]
    help: str
    example: str
    positional: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()
    flags: Mapping[str, tuple[str, Any]] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    prefix: str = ""
    infer: Infer | None = None
    fixed: Mapping[str, Any] = field(default_factory=dict)
    flat_1d: bool = False   # a 2-d input (N, C) takes the 1-d class (batch norm after flatten)
    generic: bool = True    # whether the bare name (no 1d/2d/3d) exists

    @property
    def auto_prefix(self) -> str:
        return self.prefix or self.name

    @property
    def dimensional(self) -> bool:
        return len(self.classes) == 3

    def option(self, key: str) -> Option | None:
        key = normalise(key)
        return next((opt for opt in self.options if key in opt.keys()), None)

    def class_for(self, shape: tuple[int, ...], nd: int | None, args: Arguments) -> type:
        """The class for an input of ``shape`` (batch first); a rank the layer cannot take is an error."""
        if not self.dimensional:
            return self.classes[0]
        ranks = {d + 2: cls for d, cls in enumerate(self.classes, start=1)}
        if self.flat_1d:
            ranks[2] = self.classes[0]
        allowed = {rank: cls for rank, cls in ranks.items() if nd is None or cls is self.classes[nd - 1]}
        if len(shape) in allowed:
            return allowed[len(shape)]
        wanted = " or ".join(_layout(rank) for rank in sorted(allowed))
        got = "(N, " + ", ".join(map(str, shape[1:])) + ")"
        raise args.error(f"{args.head.text} needs an input {wanted}, but the input here has shape {got}")


def _layout(rank: int) -> str:
    return {2: "(N, C)", 3: "(N, C, L)", 4: "(N, C, H, W)", 5: "(N, C, D, H, W)"}.get(rank, f"of rank {rank}")


# --- what each kind infers from the input shape -----------------------------------------------
def _conv_channels(shape: tuple[int, ...], args: Arguments) -> dict[str, Any]:
    """``in_channels`` from the input; ``dw`` (depthwise) sets groups to it and makes the
    filter count default to it."""
    channels, values = shape[1], args.values
    depthwise = values.get("dw", False)
    if depthwise and "g" in values:
        raise args.error(f"dw already sets groups to the input channels ({channels}); drop g", "g")
    filters = values.get("filters", channels if depthwise else None)
    if filters is None:
        raise args.error(f"{args.head.text} needs the number of filters first, e.g. '{args.head.text} 16 k3'")
    return {"in_channels": channels, "out_channels": filters,
            "groups": channels if depthwise else values.get("g", 1)}


def _channels(kwarg: str) -> Infer:
    return lambda shape, args: {kwarg: shape[1]}


def _avgpool_divisor(shape: tuple[int, ...], args: Arguments) -> dict[str, Any]:
    if "divisor" in args.values and len(shape) == 3:
        raise args.error("1-d average pooling has no divisor option (torch's AvgPool1d neither)", "divisor")
    return {}


# --- shared option groups ---------------------------------------------------------------------
_FILTERS = Option("filters", POSITIVE, "out_channels", "number of filters = output channels", ("out_channels",))
_K = Option("k", SIZES, "kernel_size", "kernel size", ("kernel", "kernel_size"), short=True)
_S = Option("s", SIZES, "stride", "stride", ("stride",), short=True)
_D = Option("d", SIZES, "dilation", "dilation", ("dilation",), short=True)
_G = Option("g", POSITIVE, "groups", "groups", ("groups",), short=True)
_DW = Option("dw", FLAG, None, "depthwise: groups = input channels, filters default to them", ("depthwise",))
_BIAS = Option("bias", FLAG, "bias", "learn a bias")
_CEIL = Option("ceil", FLAG, "ceil_mode", "round the output size up", ("ceil_mode",))
_EPS = Option("eps", NUMBER, "eps", "added to the variance")
_AFFINE = Option("affine", FLAG, "affine", "learn a scale and shift")
_POOL_P = Option("p", NONNEGATIVE_SIZES, "padding", "padding, at most k/2", ("pad", "padding"), short=True)
_CONV_FLAGS = {"dw": ("dw", True), "nobias": ("bias", False)}

_POINTWISE: tuple[tuple[str, type, str, tuple[str, ...]], ...] = (
    ("relu", nn.ReLU, "max(0, x)", ()),
    ("relu6", nn.ReLU6, "min(max(0, x), 6)", ()),
    ("sigmoid", nn.Sigmoid, "1 / (1 + exp(-x))", ()),
    ("tanh", nn.Tanh, "hyperbolic tangent", ()),
    ("silu", nn.SiLU, "x · sigmoid(x)", ("swish",)),
    ("mish", nn.Mish, "x · tanh(softplus(x))", ()),
    ("hardswish", nn.Hardswish, "x · relu6(x + 3) / 6", ()),
    ("hardsigmoid", nn.Hardsigmoid, "relu6(x + 3) / 6", ()),
    ("selu", nn.SELU, "scale · elu(x) with the self-normalising constants", ()),
    ("logsigmoid", nn.LogSigmoid, "log(sigmoid(x))", ()),
    ("identity", nn.Identity, "passes its input through", ()),
)


def _convolutions() -> list[Kind]:
    shared = dict(positional=("filters",), infer=_conv_channels, required=("k",))
    padding = Option("p", PADDING, "padding", "padding on each side, or same or valid", ("pad", "padding"), short=True)
    mode = Option("mode", choice("zeros", "reflect", "replicate", "circular"), "padding_mode", "padding mode",
                  ("padding_mode",))
    modes = {name: ("mode", name) for name in ("reflect", "replicate", "circular")}
    output_padding = Option("op", NONNEGATIVE_SIZES, "output_padding", "output padding, less than the stride",
                            ("output_padding",), short=True)
    return [
        Kind("conv", (nn.Conv1d, nn.Conv2d, nn.Conv3d), "convolution", "conv 16 k3 p1",
             options=(_FILTERS, _K, _S, padding, _D, _G, _DW, _BIAS, mode), flags={**_CONV_FLAGS, **modes}, **shared),
        Kind("deconv", (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), "transposed convolution",
             "deconv 16 k2 s2", aliases=("convtranspose", "convt"), flags=_CONV_FLAGS,
             options=(_FILTERS, _K, _S, _POOL_P.with_help("padding"), output_padding, _D, _G, _DW, _BIAS), **shared),
    ]


def _pools() -> list[Kind]:
    window, ceil = (_K, _S, _POOL_P), {"ceil": ("ceil", True)}
    size = Option("size", SIZES, "output_size", "output size", ("output_size",))
    avg_options = (Option("count_include_pad", FLAG, "count_include_pad", "divide by the whole window, padding "
                          "included"),
                   Option("divisor", POSITIVE, "divisor_override", "divide by this instead", ("divisor_override",)))
    adaptive_avg = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
    adaptive_max = (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
    return [
        Kind("maxpool", (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d), "max pooling", "maxpool k2", positional=("k",),
             required=("k",), options=(*window, _D, _CEIL), flags=ceil),
        Kind("avgpool", (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d), "average pooling", "avgpool k2",
             positional=("k",), required=("k",), options=(*window, _CEIL, *avg_options), flags=ceil,
             infer=_avgpool_divisor),
        Kind("lppool", (nn.LPPool1d, nn.LPPool2d, nn.LPPool3d), "power-average pooling, (Σ x^p)^(1/p)",
             "lppool 2 k3 s2", positional=("norm", "k"), required=("norm", "k"), flags=ceil,
             options=(Option("norm", NUMBER, "norm_type", "the power p", ("norm_type",)), _K, _S, _CEIL)),
        Kind("adaptiveavgpool", adaptive_avg, "average pooling to a fixed output size", "adaptiveavgpool 6x6",
             positional=("size",), required=("size",), options=(size,)),
        Kind("adaptivemaxpool", adaptive_max, "max pooling to a fixed output size", "adaptivemaxpool 1",
             positional=("size",), required=("size",), options=(size,)),
        Kind("globalavgpool", adaptive_avg, "average over all positions: adaptive average pooling to size 1",
             "globalavgpool", aliases=("gap",), prefix="gap", fixed={"output_size": 1}),
        Kind("globalmaxpool", adaptive_max, "max over all positions: adaptive max pooling to size 1",
             "globalmaxpool", aliases=("gmp",), prefix="gmp", fixed={"output_size": 1}),
    ]


def _norms() -> list[Kind]:
    return [
        Kind("bn", (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d), "batch norm over the channels", "bn",
             aliases=("batchnorm",), flat_1d=True, infer=_channels("num_features"),
             options=(_EPS, Option("momentum", NUMBER, "momentum", "running-statistics momentum"), _AFFINE,
                      Option("track", FLAG, "track_running_stats", "keep running statistics",
                             ("track_running_stats",)))),
        Kind("ln", (nn.LayerNorm,), "layer norm over all non-batch dims", "ln", aliases=("layernorm",),
             infer=lambda shape, args: {"normalized_shape": shape[1:]},
             options=(_EPS, _AFFINE.with_kwarg("elementwise_affine"))),
        Kind("instancenorm", (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d),
             "instance norm: each sample's channels over their own positions", "instancenorm affine",
             aliases=("inorm",), prefix="in", infer=_channels("num_features"),
             flags={"affine": ("affine", True), "track": ("track", True)},
             options=(_EPS, Option("momentum", NUMBER, "momentum", "running-statistics momentum"), _AFFINE,
                      Option("track", FLAG, "track_running_stats", "keep running statistics",
                             ("track_running_stats",)))),
        Kind("gn", (nn.GroupNorm,), "group norm", "gn 4", aliases=("groupnorm",), positional=("groups",),
             required=("groups",), infer=_channels("num_channels"),
             options=(Option("groups", POSITIVE, "num_groups", "number of groups", ("num_groups",)), _EPS, _AFFINE)),
        Kind("lrn", (nn.LocalResponseNorm,), "local response norm across channels", "lrn 5 alpha=1e-4 k=2",
             aliases=("localresponsenorm",), positional=("size",), required=("size",),
             options=(Option("size", POSITIVE, "size", "neighbouring channels"),
                      Option("alpha", NUMBER, "alpha", "scale"), Option("beta", NUMBER, "beta", "exponent"),
                      Option("k", NUMBER, "k", "additive constant"))),
    ]


def _activations() -> list[Kind]:
    dim = Option("dim", INT, "dim", "dimension to normalise")
    return [
        *(Kind(name, (cls,), about, name, aliases=aliases) for name, cls, about, aliases in _POINTWISE),
        Kind("leakyrelu", (nn.LeakyReLU,), "x, or slope · x below 0", "leakyrelu 0.1", aliases=("lrelu",),
             positional=("slope",),
             options=(Option("slope", NUMBER, "negative_slope", "slope below 0", ("negative_slope",)),)),
        Kind("elu", (nn.ELU,), "x, or alpha · (exp(x) − 1) below 0", "elu", positional=("alpha",),
             options=(Option("alpha", NUMBER, "alpha", "scale below 0"),)),
        Kind("prelu", (nn.PReLU,), "x, or a learned slope · x below 0 (one, or one per channel)", "prelu each",
             flags={"each": ("each", True)},
             infer=lambda shape, args: {"num_parameters": shape[1]} if args.values.get("each") else {},
             options=(Option("init", NUMBER, "init", "the slopes' starting value"),
                      Option("each", FLAG, None, "one slope per channel"))),
        Kind("celu", (nn.CELU,), "x, or alpha · (exp(x / alpha) − 1) below 0", "celu 0.5", positional=("alpha",),
             options=(Option("alpha", NUMBER, "alpha", "scale below 0"),)),
        Kind("softplus", (nn.Softplus,), "log(1 + exp(beta · x)) / beta, x above threshold / beta", "softplus",
             positional=("beta",), options=(Option("beta", NUMBER, "beta", "sharpness"),
                                            Option("threshold", NUMBER, "threshold", "linear above this beta · x"))),
        Kind("gelu", (nn.GELU,), "x · Φ(x)", "gelu", flags={"tanh": ("approx", "tanh")},
             options=(Option("approx", choice("none", "tanh"), "approximate", "tanh approximation",
                             ("approximate",)),)),
        Kind("hardtanh", (nn.Hardtanh,), "clamp(x, min, max)", "hardtanh min=-1 max=1", positional=("min", "max"),
             options=(Option("min", NUMBER, "min_val", "lower bound", ("min_val",)),
                      Option("max", NUMBER, "max_val", "upper bound", ("max_val",)))),
        Kind("softmax", (nn.Softmax,), "exp(x) / Σ exp(x) along dim", "softmax", fixed={"dim": 1}, options=(dim,)),
        Kind("logsoftmax", (nn.LogSoftmax,), "log(softmax(x)) along dim", "logsoftmax", fixed={"dim": 1},
             options=(dim,)),
    ]


def _others() -> list[Kind]:
    p = Option("p", NUMBER, "p", "drop probability")
    modes = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")
    return [
        Kind("dropout", (nn.Dropout,), "zero each value with probability p, in training only", "dropout 0.5",
             positional=("p",), options=(p,)),
        Kind("dropout", (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d), "zero whole channels with probability p",
             "dropout2d 0.2", positional=("p",), generic=False, options=(p,)),
        Kind("flatten", (nn.Flatten,), "merge dims start to end (default: all but the batch)", "flatten",
             options=(Option("start", INT, "start_dim", "first dim", ("start_dim",)),
                      Option("end", INT, "end_dim", "last dim", ("end_dim",)))),
        Kind("unflatten", (nn.Unflatten,), "split a dim into sizes", "unflatten 16x5x5", positional=("shape",),
             required=("shape",), fixed={"dim": 1},
             options=(Option("shape", SHAPE, "unflattened_size", "the sizes", ("unflattened_size",)),
                      Option("dim", INT, "dim", "the dim to split"))),
        Kind("linear", (nn.Linear,), "fully connected layer", "linear 10", aliases=("fc", "dense"), prefix="fc",
             positional=("features",), required=("features",), flags={"nobias": ("bias", False)},
             infer=lambda shape, args: {"in_features": shape[-1]},
             options=(Option("features", POSITIVE, "out_features", "output features", ("out_features",)), _BIAS)),
        Kind("pixelshuffle", (nn.PixelShuffle,), "each group of r² channels becomes an r×r block of pixels",
             "pixelshuffle 2", positional=("r",), required=("r",),
             options=(Option("r", POSITIVE, "upscale_factor", "the upscale factor r", ("upscale_factor",)),)),
        Kind("pixelunshuffle", (nn.PixelUnshuffle,), "each r×r block of pixels becomes r² channels",
             "pixelunshuffle 2", positional=("r",), required=("r",),
             options=(Option("r", POSITIVE, "downscale_factor", "the downscale factor r", ("downscale_factor",)),)),
        Kind("channelshuffle", (nn.ChannelShuffle,), "interleave the channels of G groups", "channelshuffle 2",
             positional=("groups",), required=("groups",),
             options=(Option("groups", POSITIVE, "groups", "number of groups"),)),
        Kind("upsample", (nn.Upsample,), "resize by a scale factor or to a size", "upsample 2", positional=("scale",),
             flags={normalise(mode): ("mode", mode) for mode in modes},  # bare: 'bilinear'
             options=(Option("scale", SCALE, "scale_factor", "scale factor", ("scale_factor",)),
                      Option("size", SIZES, "size", "output size"),
                      Option("mode", choice(*modes), "mode", "interpolation mode"),
                      Option("align", FLAG, "align_corners", "align corners, linear and bicubic modes only",
                             ("align_corners",)))),
    ]


def _paddings() -> list[Kind]:
    pads = Option("p", PADS, "padding", "padding: one size for every side, or one per side in torch's order",
                  ("pad", "padding"), short=True)
    shared = dict(positional=("p",), required=("p",))
    return [
        Kind("zeropad", (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d), "pad with zeros", "zeropad 1", options=(pads,),
             **shared),
        Kind("constpad", (nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d), "pad with a constant value",
             "constpad 2 value=-1", aliases=("constantpad",), positional=("p", "value"), required=("p", "value"),
             options=(pads, Option("value", NUMBER, "value", "the fill value"))),
        Kind("reflectpad", (nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d),
             "pad with the mirrored cells, edge not repeated", "reflectpad 3", aliases=("reflectionpad",),
             options=(pads,), **shared),
        Kind("replicatepad", (nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d),
             "pad with copies of the edge", "replicatepad 1", aliases=("replicationpad",), options=(pads,), **shared),
        Kind("circularpad", (nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d),
             "pad with the other end's cells (wrap around)", "circularpad 1", options=(pads,), **shared),
    ]


def _kinds() -> tuple[Kind, ...]:
    return (*_convolutions(), *_pools(), *_norms(), *_activations(), *_paddings(), *_others())


KINDS: tuple[Kind, ...] = _kinds()


def _token_table() -> dict[str, tuple[Kind, int | None]]:
    table: dict[str, tuple[Kind, int | None]] = {}
    for kind in KINDS:
        names = (kind.name, *kind.aliases)
        if kind.generic:
            table.update({normalise(n): (kind, None) for n in names})
        if kind.dimensional:
            table.update({normalise(f"{n}{d}d"): (kind, d) for n in names for d in (1, 2, 3)})
    return table


TOKENS: dict[str, tuple[Kind, int | None]] = _token_table()


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """`` Did you mean 'x'?`` (or nothing)."""
    close = difflib.get_close_matches(normalise(word), list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


_SHORT_FORM_VALUE_START = "0123456789."


def bind(kind: Kind, words: list[Token]) -> Arguments:
    """Match the words after the keyword to ``kind``'s positional values, options and flags.
    ``name=`` and ``frozen`` are accepted by every layer."""
    args = Arguments(words[0])
    positional = list(kind.positional)
    token_name = words[0].text

    def store(key: str, raw: str, token: Token, value_column: int) -> None:
        option = kind.option(key)
        if option is None:
            known = _known(kind)
            every_key = known + [alias for opt in kind.options for alias in opt.aliases]
            raise SpecError(f"{token_name} has no option '{key}'.{suggest(key, every_key)} Options: {', '.join(known)}",
                            line=token.line, column=token.column)
        set_value(option, _parse(option, raw, token, value_column, token_name), token)

    def set_value(option: Option, value: Any, token: Token) -> None:
        if option.key in args.values:
            first = args.tokens[option.key]
            raise SpecError(f"{token_name}: {option.key} is given twice (first at column {first.column})",
                            line=token.line, column=token.column)
        args.values[option.key] = value
        args.tokens[option.key] = token
        if option.key in positional:
            positional.remove(option.key)

    for token in words[1:]:
        text = token.text
        word = normalise(text)
        if "=" in text:
            key, raw = text.split("=", 1)
            if normalise(key) == "name":
                if args.name is not None:
                    raise SpecError(f"{token_name}: name is given twice", line=token.line, column=token.column)
                args.name = check_name(raw, token, len(key) + 1)
            else:
                store(key, raw, token, token.column + len(key) + 1)
        elif word == "frozen":
            args.frozen = True
        elif word in kind.flags:
            key, value = kind.flags[word]
            set_value(kind.option(key), value, token)  # type: ignore[arg-type]  (tested: flags name options)
        elif (short := _short_option(kind, text)) is not None:
            option, raw = short
            store(option.key, raw, token, token.column + len(text) - len(raw))
        elif positional:
            store(positional[0], text, token, token.column)
        else:
            raise SpecError(_surplus(kind, token_name, text, args), line=token.line, column=token.column)
    for key in kind.required:
        if key not in args.values:
            option = kind.option(key)
            what = f"{key} ({option.help})" if option else key
            raise args.error(f"{token_name} needs {what}, e.g. '{kind.example}'")
    return args


def _known(kind: Kind) -> list[str]:
    """Every option key and flag word of ``kind``, for listings and suggestions."""
    keys = [opt.key for opt in kind.options]
    return keys + [flag for flag in kind.flags if flag not in keys] + ["name", "frozen"]


def _surplus(kind: Kind, layer: str, text: str, args: Arguments) -> str:
    """The message for a bare word no positional slot is left for."""
    count = len(kind.positional)
    names = ", ".join(kind.positional)
    slots = f"{count} bare value{'s' if count > 1 else ''} ({names})" if count else "no bare values"
    kernel = kind.option("k")
    if text[:1].isdigit() and kernel is not None and kernel.short and "k" not in args.values:
        hint = f" Did you mean 'k{text}' (kernel size)?"
    else:
        hint = suggest(text, _known(kind)) or f" Write options as key=value or glued like k3, e.g. '{kind.example}'."
    return f"{layer} takes {slots}; '{text}' is one too many.{hint}"


def _short_option(kind: Kind, text: str) -> tuple[Option, str] | None:
    """``k3`` → (the k option, "3"): a short key glued to a value that starts with a digit."""
    for option in kind.options:
        if option.short and text.lower().startswith(option.key):
            rest = text[len(option.key):]
            if rest and rest[0] in _SHORT_FORM_VALUE_START:
                return option, rest
    return None


def _parse(option: Option, raw: str, token: Token, column: int, layer: str) -> Any:
    try:
        return option.value(raw)
    except ValueError as err:
        raise SpecError(f"{layer}: {option.key} ({option.help}) {err}", line=token.line, column=column) from None


def check_name(raw: str, token: Token, offset: int) -> str:
    """A ``name=`` value: letters, digits and ``_`` (it becomes one part of a module path)."""
    if not raw or not all(c.isalnum() or c == "_" for c in raw):
        raise SpecError(f"name must be letters, digits and '_' (it becomes a module path part), got {raw!r}",
                        line=token.line, column=token.column + offset)
    return raw


def make_module(kind: Kind, cls: type, args: Arguments, shape: tuple[int, ...]) -> nn.Module:
    """The ``cls`` module for bound ``args`` on an input of ``shape`` (batch first). Constructor
    errors (``ShapeError``/``ValueError``) pass through for the builder to locate."""
    kwargs = dict(kind.fixed)
    for key, value in args.values.items():
        option = kind.option(key)
        if option is not None and option.kwarg:
            kwargs[option.kwarg] = value
    if kind.infer is not None:
        kwargs.update(kind.infer(shape, args))
    module = cls(**kwargs)
    if args.frozen:
        module.requires_grad_(False)
    return module
