"""Counting conventions: what a total counts, described by data.

A :class:`Convention` is a table of :class:`Rule`s keyed by an op name (``"conv2d"``,
``"relu"``, ``"add"``: the op wherever it runs) or by a layer class name (``"Conv2d"``,
``"ReLU"``: the op a standard ``convscope.nn`` layer runs, which converts one-to-one to the
``torch.nn`` layer of that name). A layer key wins over an op key; ops no key names get the
convention's ``default``. Each rule says what one op call costs (``basis`` × ``times``, plus
the bias additions when ``bias`` is set), under which conditions (``when``), and why
(``note``); the formula of every row names the rule it applied, with the numbers.

Presets:

* ``convscope`` (the default): every op's own cost rule, every parameter (docs/anatomy.md).
* ``paper``: the papers' mult-adds (GoogLeNet, MobileNet, ResNet): conv and fully-connected
  multiply-adds only, weights without biases or norm parameters.
* ``fvcore``, ``thop``, ``ptflops``, ``torch``: the rules of those tools, so that a total
  equals what the tool reports for the model's torch twin (:func:`convscope.to_torch`);
  :data:`TOOLS` names the version each table was read from, and docs/why-tools-disagree.md
  explains the differences.

A custom table is a :class:`Convention`, or a dict of key → rule that overrides the
``convscope`` preset: ``summary(model, convention={"BatchNorm2d": 0, "relu": "outputs"})``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..interop.torch_layers import SPECS
from ..rules import COST_RULES, Cost, numel

MAC_OPS = frozenset({f"conv{n}d" for n in (1, 2, 3)} | {f"conv_transpose{n}d" for n in (1, 2, 3)}
                    | {"linear", "matmul", "bilinear"})

LAYERS = frozenset(spec.name for spec in SPECS)
"""The layers that convert one-to-one to the ``torch.nn`` layer of the same name: a tool that
hooks torch modules sees these; any other module's ops are calls in a forward, as in its
torch twin."""


def layer_name(module: Any) -> str | None:
    """The class name of a standard ``convscope.nn`` layer, or None for any other module."""
    cls = type(module)
    return cls.__name__ if cls.__name__ in LAYERS and cls.__module__.startswith("convscope.nn") else None


# --- bases: what a rule counts, from one op call ---------------------------------------------
Basis = Callable[[Sequence[Any], Any, dict, Cost], tuple[int, str]]


def _macs(inputs: Sequence[Any], output: Any, attrs: dict, native: Cost) -> tuple[int, str]:
    """The op's own multiply-accumulates, with its formula up to the result."""
    return native.macs, native.formula.removesuffix(f" = {native.macs:,}") or f"{native.macs:,} MACs"


def _inputs(inputs: Sequence[Any], output: Any, attrs: dict, native: Cost) -> tuple[int, str]:
    n = numel(inputs[0].shape)
    return n, f"{n:,} inputs"


def _outputs(inputs: Sequence[Any], output: Any, attrs: dict, native: Cost) -> tuple[int, str]:
    n = numel(output.shape)
    return n, f"{n:,} outputs"


def _gather(inputs: Sequence[Any], output: Any, attrs: dict, native: Cost) -> tuple[int, str]:
    """Outputs × (input channels / groups) × kernel: the conv formula, also for a transposed conv."""
    x, w = inputs[0], inputs[1]
    per = x.shape[-len(w.shape) + 1] // attrs.get("groups", 1)
    n, kernel = numel(output.shape), math.prod(w.shape[2:])
    return n * per * kernel, f"{n:,} outputs × {per}·{'·'.join(map(str, w.shape[2:]))}"


def _bin_plus_one(inputs: Sequence[Any], output: Any, attrs: dict, native: Cost) -> tuple[int, str]:
    """Adaptive average pooling as thop counts it: (input/output size ratio + 1) per output,
    the ratio in floating point and the product truncated."""
    nd = len(attrs["output_size"])
    ratio = math.prod(float(i) / float(o) for i, o in zip(inputs[0].shape[-nd:], output.shape[-nd:]))
    n = numel(output.shape)
    return int((ratio + 1) * n), f"{n:,} outputs × ({ratio:g} + 1)"


def _softmax_rows(inputs: Sequence[Any], output: Any, attrs: dict, native: Cost) -> tuple[int, str]:
    """Per row of ``n`` values: ``n`` exps, ``n − 1`` adds and ``n`` divides."""
    n = inputs[0].shape[attrs["dim"]]
    rows = numel(inputs[0].shape) // n
    return rows * (3 * n - 1), f"{rows:,} rows × (3·{n} − 1)"


def _interpolate_call(inputs: Sequence[Any], output: Any, attrs: dict, native: Cost) -> tuple[int, str]:
    """ptflops' hook on ``F.interpolate``: the output size when ``size`` is given, else the
    input elements × the scale factors' product (exact for integer factors)."""
    if attrs.get("scale_factor") is None:
        return _outputs(inputs, output, attrs, native)
    n, scale = numel(inputs[0].shape), math.prod(attrs["scale_factor"])
    return int(n * scale), f"{n:,} inputs × {scale:g} (scale)"


BASES: dict[str, Basis] = {"macs": _macs, "inputs": _inputs, "outputs": _outputs, "gather": _gather,
                           "bin_plus_one": _bin_plus_one, "softmax_rows": _softmax_rows,
                           "interpolate_call": _interpolate_call}
"""The bases a rule may name, besides ``"native"`` (the op's own cost) and ``"zero"``."""


def facts(op: str, inputs: Sequence[Any], output: Any, attrs: dict) -> dict[str, Any]:
    """What a rule's ``when`` may test: the op's attributes plus ``affine`` (a norm with a
    weight), ``bias`` (a conv or linear with a bias), ``training`` and ``dims`` (spatial dims)."""
    size = attrs.get("size")  # interpolate's output size (an LRN's "size" is its window)
    dims = len(size) if isinstance(size, (tuple, list)) else max(len(output.shape) - 2, 0)
    return {**attrs, "affine": len(inputs) > 1, "bias": len(inputs) > 2, "training": bool(attrs.get("training")),
            "dims": dims}


# --- rules and conventions -----------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """What one op call costs: ``basis`` (a name in :data:`BASES`, ``"native"`` for the op's
    own cost or ``"zero"``) × ``times``, plus one addition per output element when ``bias``
    is set and the op has a bias. ``when``: conditions on :func:`facts` (all must hold);
    ``note``: why, shown in the row's formula."""

    basis: str = "native"
    times: int = 1
    bias: bool = False
    when: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        if self.basis not in BASES and self.basis not in ("native", "zero"):
            raise ValueError(f"rule basis {self.basis!r} is unknown; choose from native, zero, {', '.join(BASES)}")

    def applies(self, known: Mapping[str, Any]) -> bool:
        return all(known.get(k) == v for k, v in self.when.items())


def zero(note: str) -> Rule:
    return Rule("zero", note=note)


RuleSpec = Rule | tuple[Rule, ...]


@dataclass(frozen=True)
class Convention:
    """A counting convention: ``rules`` by op or layer name (a tuple of rules is tried in
    order, the first whose ``when`` holds wins), the ``default`` rule for everything else,
    which ``params`` count (``"all"``, ``"weights"``: two or more dims, ``"trainable"``,
    ``"ruled"``: those of layers with a rule) and the ``unit`` of the tool's total
    (``"MACs"``, or ``"FLOPs"`` = 2 × multiply-adds). ``reports`` is what the tool calls its
    total, ``tool`` how to get it."""

    name: str
    description: str
    rules: Mapping[str, RuleSpec] = field(default_factory=dict)
    default: Rule = Rule()
    params: str = "all"
    unit: str = "MACs"
    reports: str = "MACs"
    tool: str = ""

    def __post_init__(self) -> None:
        if self.params not in ("all", "weights", "trainable", "ruled"):
            raise ValueError(f"convention {self.name}: params must be all, weights, trainable or ruled, "
                             f"got {self.params!r}")
        if self.unit not in ("MACs", "FLOPs"):
            raise ValueError(f"convention {self.name}: unit must be MACs or FLOPs, got {self.unit!r}")

    def rule_for(self, op: str, layer: str | None, known: Mapping[str, Any] | None = None) -> tuple[str, Rule]:
        """(key, rule) for an op run by ``layer`` (None: a call in a forward); without
        ``known`` facts, the first rule of the key."""
        for key in ((layer, op) if layer else (op,)):
            spec = self.rules.get(key)
            for rule in (spec,) if isinstance(spec, Rule) else spec or ():
                if known is None or rule.applies(known):
                    return key, rule
        return "", self.default

    def cost(self, op: str, native: Cost, inputs: Sequence[Any] = (), output: Any = None, attrs: dict | None = None,
             layer: str | None = None, last: bool = True) -> Cost:
        """The cost of one op call under this convention. ``native`` is the op's own cost;
        ``layer`` the standard layer that ran it (None: a call in a forward); ``last``
        whether it is the last op of that layer call (a layer rule counts the call once)."""
        if layer and layer in self.rules and not last:
            return Cost(0, 0, f"{self.name}: counted once by the {layer} rule")
        attrs = attrs or {}
        known: Mapping[str, Any] | None = None  # the facts, computed only when a rule tests them
        if (layer and layer in self.rules) or op in self.rules:
            known = facts(op, inputs, output, attrs) if output is not None else {}
            key, rule = self.rule_for(op, layer, known)
        else:
            key, rule = "", self.default
        if rule.basis == "native" and not rule.note:
            return native
        label = self._label(rule, op, layer if key != op else None)
        if rule.basis == "native":
            return replace(native, formula=f"{label}{native.formula}")
        if rule.basis == "zero":
            return Cost(0, 0, f"{label}0")
        count, text = BASES[rule.basis](inputs, output, attrs, native)
        count *= rule.times
        text = f"{text} × {rule.times}" if rule.times != 1 else text
        if known is None and rule.bias:
            known = facts(op, inputs, output, attrs) if output is not None else {}
        if rule.bias and known.get("bias"):
            extra = numel(output.shape)
            count += extra
            text += f" + {extra:,} bias adds"
        text = f"{label}{text} = {count:,}"
        if self.unit == "FLOPs":
            return Cost(native.macs if rule.basis == "macs" else 0, count, text)
        return Cost(count, 2 * count, text)

    def _label(self, rule: Rule, op: str, layer: str | None) -> str:
        """``"name: note: "`` (the basis when the rule has no note); a note may name ``{op}``,
        ``{layer}`` and ``{where}`` (the layer, or the op as a call in a forward)."""
        where = f"the {layer} layer" if layer else f"{op} (a call in a forward)"
        note = rule.note or rule.basis
        for key, value in (("{op}", op), ("{layer}", layer or op), ("{where}", where)):
            note = note.replace(key, value)
        return f"{self.name}: {note}: "

    def counts_parameter(self, param: Any, module: Any = None) -> bool:
        if self.params == "weights":
            return param.ndim >= 2
        if self.params == "trainable":
            return bool(param.requires_grad)
        if self.params == "ruled":
            layer = layer_name(module) if module is not None else None
            return layer is not None and self.rule_for("", layer)[0] == layer
        return True

    def total(self, macs: int, flops: int) -> int:
        """The tool's own total from a summary's MACs and FLOPs."""
        return flops if self.unit == "FLOPs" else macs


def _native(note: str = "") -> Rule:
    return Rule("native", note=note)


def _dims(*names: str) -> list[str]:
    return [f"{name}{n}d" for name in names for n in (1, 2, 3)]


# --- the presets -----------------------------------------------------------------------------
CONVSCOPE = Convention("convscope", "every op with a cost rule; all parameters incl. biases and norm affine",
                       tool="convscope.summary(model).totals.macs")

PAPER = Convention("paper", "conv and fully-connected multiply-adds only; weights without biases or norm "
                            "parameters", rules={op: _native() for op in MAC_OPS},
                   default=zero("not counted (paper convention)"), params="weights", reports="mult-adds",
                   tool="the papers' tables (summary(model, convention=\"paper\"))")

_FVCORE_BN = (Rule("inputs", 5, when={"training": True, "affine": True}, note="aten::batch_norm in training, affine"),
              Rule("inputs", 4, when={"training": True}, note="aten::batch_norm in training"),
              Rule("inputs", 2, when={"affine": True}, note="aten::batch_norm in eval, affine"),
              Rule("inputs", 1, note="aten::batch_norm in eval"))
_FVCORE_NORM = (Rule("inputs", 5, when={"affine": True}, note="aten::{op}, affine"),
                Rule("inputs", 4, note="aten::{op}"))
FVCORE = Convention(
    "fvcore", "multiply-adds (named \"flops\") of conv, linear and matmul; batch/group/layer/instance norm, "
              "adaptive_avg_pool2d and 2-d upsampling by fixed factors; every other aten op is 0",
    rules={**{op: _native("aten::_convolution") for op in _dims("conv", "conv_transpose")},
           "linear": _native("aten::linear"), "matmul": _native("aten::matmul"),
           "batch_norm": _FVCORE_BN, "group_norm": _FVCORE_NORM, "layer_norm": _FVCORE_NORM,
           "instance_norm": _FVCORE_NORM,
           "adaptive_avg_pool2d": Rule("inputs", note="aten::adaptive_avg_pool2d"),
           "interpolate": (Rule("outputs", 1, when={"mode": "nearest", "dims": 2}, note="aten::upsample_nearest2d"),
                           Rule("outputs", 4, when={"mode": "bilinear", "dims": 2},
                                note="aten::upsample_bilinear2d"))},
    default=zero("no fvcore handle for aten::{op}, skipped"), reports="\"flops\" = MACs",
    tool="fvcore==0.1.5.post20221221: FlopCountAnalysis(model, x).total()")

_THOP_ZERO = zero("{where} is zero_ops")
_THOP_NORM = (Rule("inputs", 4, when={"affine": True}, note="2 per input, doubled when affine"),
              Rule("inputs", 2, note="2 per input"))
_THOP_UPSAMPLE = (Rule("outputs", 1, when={"mode": "nearest"}, note="nearest, 1 per output"),
                  Rule("outputs", 5, when={"mode": "linear"}, note="linear, 5 per output"),
                  Rule("outputs", 11, when={"mode": "bilinear"}, note="bilinear, 11 per output"),
                  Rule("outputs", 259, when={"mode": "bicubic"}, note="bicubic, 259 per output"),
                  zero("mode not implemented"))
THOP = Convention(
    "thop", "module hooks only: conv and linear multiply-adds (a transposed conv by the conv formula), "
            "norms 2 or 4 per input, average pools, softmax and upsampling; ReLU, max pools and every call "
            "in a forward (residual adds, F.relu) cost 0; parameters of hooked layers only",
    rules={**{name: Rule("gather", note="outputs × C_in/groups × kernel") for name in _dims("Conv")},
           **{name: Rule("gather", note="the conv formula, outputs × C_in/groups × kernel")
              for name in _dims("ConvTranspose")},
           **{name: _THOP_NORM for name in [*_dims("BatchNorm"), "LayerNorm"]},
           **{name: _THOP_ZERO for name in ["ReLU", "ReLU6", "LeakyReLU", "Dropout", *_dims("MaxPool"),
                                            *_dims("AdaptiveMaxPool")]},
           **{name: Rule("outputs", note="1 per output") for name in _dims("AvgPool")},
           **{name: Rule("bin_plus_one", note="(bin size + 1) per output") for name in _dims("AdaptiveAvgPool")},
           "Softmax": Rule("softmax_rows", note="3 per value, less 1 per row"),
           "Linear": Rule("macs", note="in_features × outputs"),
           **{name: _THOP_UPSAMPLE for name in ("Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d")}},
    default=zero("thop has no rule for {where}"), params="ruled",
    tool="thop==0.1.1.post2209072238: thop.profile(model, (x,))[0]")

_PTFLOPS_TWICE = "counted twice, by the layer hook and the patched F.{op} in it"
_PTFLOPS_NORM = (Rule("inputs", 2, when={"affine": True}, note="1 per input, doubled when affine"),
                 Rule("inputs", 1, note="1 per input"))
PTFLOPS = Convention(
    "ptflops", "conv and linear multiply-adds plus their bias adds, 1 per element for ReLU-like "
               "activations, pools and norms (2 with affine), upsampling; ReLU and pool layers count twice "
               "(layer hook + patched functional); `a + b` costs 0; trainable parameters",
    rules={**{name: Rule("macs", bias=True, note="MACs + bias adds") for name in _dims("Conv", "ConvTranspose")},
           "Linear": Rule("macs", bias=True, note="MACs + bias adds"),
           **{name: Rule("outputs", 2, note=_PTFLOPS_TWICE) for name in ("ReLU", "ELU", "GELU")},
           **{name: Rule("outputs", note="1 per output") for name in ("ReLU6", "LeakyReLU")},
           **{name: Rule("inputs", 2, note=_PTFLOPS_TWICE)
              for name in _dims("MaxPool", "AvgPool", "AdaptiveMaxPool", "AdaptiveAvgPool")},
           **{name: _PTFLOPS_NORM for name in [*_dims("BatchNorm"), "GroupNorm"]},
           "LayerNorm": Rule("inputs", note="1 per input (LayerNorm has no .affine)"),
           "Upsample": Rule("outputs", 2, note="counted twice, by the layer hook and the patched F.interpolate"),
           **{op: Rule("inputs", note=f"patched F.{op}")
              for op in ("relu", "elu", "gelu", "silu", "softmax", *_dims("max_pool", "avg_pool", "adaptive_max_pool",
                                                                         "adaptive_avg_pool"))},
           "interpolate": Rule("interpolate_call", note="patched F.interpolate"),
           "add": zero("only torch.add is patched, `a + b` is not seen"),
           "mul": zero("only torch.mul is patched, `a * b` is not seen")},
    default=zero("ptflops has no hook for {where}"), params="trainable", reports="MACs (\"GMac\")",
    tool="ptflops==0.7.5: get_model_complexity_info(model, shape, as_strings=False)[0]")

TORCH = Convention(
    "torch", "FLOPs = 2 × multiply-adds of convolutions and matrix products (mm, addmm, bmm); nothing else",
    rules={**{op: Rule("macs", 2, note="aten.convolution, 2 per MAC") for op in _dims("conv", "conv_transpose")},
           **{op: Rule("macs", 2, note="aten.mm/addmm, 2 per MAC") for op in ("linear", "matmul")}},
    default=zero("no flop formula for aten.{op}"), unit="FLOPs", reports="FLOPs",
    tool="torch.utils.flop_counter.FlopCounterMode: get_total_flops()")

CONVENTIONS: dict[str, Convention] = {c.name: c for c in (CONVSCOPE, PAPER, FVCORE, THOP, PTFLOPS, TORCH)}
TOOLS = {"fvcore": "0.1.5.post20221221", "thop": "0.1.1.post2209072238", "ptflops": "0.7.5", "torch": "2.13.0"}
"""The tool versions whose rules the presets reproduce (pinned in the ``dev`` extra)."""


# --- custom tables ---------------------------------------------------------------------------
def _as_rule(key: str, value: Any) -> RuleSpec:
    if isinstance(value, Rule) or (isinstance(value, tuple) and all(isinstance(r, Rule) for r in value)):
        return value
    if isinstance(value, str):
        return Rule(value, note=f"custom rule for {key}")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return Rule("outputs", value, note=f"custom rule for {key}") if value else zero(f"custom rule for {key}")
    raise ValueError(f"custom convention: the rule for {key!r} must be a Rule, a basis name ({', '.join(BASES)}, "
                     f"native, zero) or a count per output element (an int ≥ 0), got {value!r}")


def _check_key(key: str) -> None:
    if key in COST_RULES or key in LAYERS:
        return
    close = difflib.get_close_matches(key, [*COST_RULES, *LAYERS], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"custom convention: {key!r} is neither an op with a cost rule nor a standard layer{hint}")


def custom(table: Mapping[str, Any], base: str | Convention = "convscope", name: str = "custom") -> Convention:
    """``base`` with the rules of ``table`` added (a key → a :class:`Rule`, a tuple of rules,
    a basis name, or a count per output element; 0 makes the op free)."""
    start = get(base)
    rules = dict(start.rules)
    for key, value in table.items():
        _check_key(key)
        rules[key] = _as_rule(key, value)
    return replace(start, name=name, description=f"{start.name} with custom rules for {', '.join(table)}",
                   rules=rules)


def get(convention: str | Convention | Mapping[str, Any]) -> Convention:
    """A preset by name, a :class:`Convention` as it is, or a dict made a :func:`custom` table."""
    if isinstance(convention, Convention):
        return convention
    if isinstance(convention, Mapping):
        return custom(convention)
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose from {', '.join(CONVENTIONS)}")
    return CONVENTIONS[convention]
