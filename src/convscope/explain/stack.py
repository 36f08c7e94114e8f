"""``explain stack``: what subsequent convolution layers do, on the user's input and layers.

After each layer: the number and size of the feature maps, the kernel shape
``(C_out, C_in/groups, kH, kW)``, parameters with and without bias and MACs, all read from
the engine's real layers and outputs (MACs as :func:`convscope.summary` counts them). Then,
for every conv, a computed demonstration that each filter spans all maps of its input:
shift one map of the previous conv's output and watch which maps of this conv change (all
of them; with groups, only those of its group — shown also for a grouped copy of the second
conv).

Layer syntax, comma-separated: ``conv K KxK [pP] [sS] [dD] [gG]``, ``relu``,
``maxpool KxK [sS] [pP]``, ``avgpool KxK [sS] [pP]``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

from .. import nn
from ..errors import ShapeError
from ..tensor import Tensor
from ._common import (
    changed_maps,
    data,
    generator,
    layer_costs,
    parameter_count,
    seeded,
    sizes,
    with_map_shifted,
    within_budget,
)
from .explanation import Claims, Facts, Option, Topic, count, dims, mark, ranges, table

SYNTAX = "conv K KxK [pP] [sS] [dD] [gG], relu, maxpool KxK [sS] [pP], avgpool KxK [sS] [pP]"
_FLAGS = {"conv": {"p": "padding", "s": "stride", "d": "dilation", "g": "groups"},
          "maxpool": {"p": "padding", "s": "stride"}, "avgpool": {"p": "padding", "s": "stride"}, "relu": {}}


@dataclass(frozen=True)
class LayerSpec:
    """One parsed item of the layer syntax. ``stride`` None means the default (1 for conv,
    the kernel for pooling)."""

    text: str
    kind: str
    maps: int = 0
    kernel: tuple[int, int] = (1, 1)
    padding: int = 0
    stride: int | None = None
    dilation: int = 1
    groups: int = 1


def parse_layers(text: str) -> list[LayerSpec]:
    """Parse ``"conv 8 3x3 p1, relu, conv 16 5x5"``; a ValueError names the item and the rule."""
    specs = []
    for i, item in enumerate(str(text).split(","), 1):
        tokens = item.split()
        where = f"explain stack: layer {i} ({item.strip()!r})"
        if not tokens:
            raise ValueError(f"{where} is empty; expected a comma-separated list: {SYNTAX}")
        kind, rest = tokens[0].lower(), tokens[1:]
        if kind not in _FLAGS:
            raise ValueError(f"{where}: unknown layer {tokens[0]!r}; expected conv, relu, maxpool or avgpool")
        fields: dict = {}
        if kind == "conv":
            if not rest or not rest[0].isdigit() or int(rest[0]) < 1:
                raise ValueError(f"{where}: expected the number of filters after 'conv' ({SYNTAX})")
            fields["maps"] = int(rest.pop(0))
        if kind != "relu":
            if not rest or not re.fullmatch(r"\d+([x×]\d+)?", rest[0].lower()):
                raise ValueError(f"{where}: expected a kernel size like 3x3 ({SYNTAX})")
            k = [int(v) for v in re.split("[x×]", rest.pop(0).lower())]
            fields["kernel"] = (k[0], k[-1])
            if min(fields["kernel"]) < 1:
                raise ValueError(f"{where}: kernel sizes must be positive, got {fields['kernel']}")
        for token in rest:
            match = re.fullmatch(r"([a-z])(\d+)", token.lower())
            if not match or match[1] not in _FLAGS[kind]:
                allowed = ", ".join(f"{f}N" for f in _FLAGS[kind]) or "no options"
                raise ValueError(f"{where}: unknown option {token!r}; {kind} takes {allowed}")
            name, value = _FLAGS[kind][match[1]], int(match[2])
            if name in fields:
                raise ValueError(f"{where}: {name} given twice ({token!r} after {match[1]}{fields[name]})")
            if value < 1 and name != "padding":
                raise ValueError(f"{where}: {name} must be at least 1, got {token!r}")
            fields[name] = value
        specs.append(LayerSpec(" ".join(tokens), kind, **fields))
    return specs


def _module(spec: LayerSpec, in_maps: int) -> nn.Module:
    if spec.kind == "conv":
        stride = 1 if spec.stride is None else spec.stride
        return nn.Conv2d(in_maps, spec.maps, spec.kernel, stride, spec.padding, spec.dilation, spec.groups)
    if spec.kind == "maxpool":
        return nn.MaxPool2d(spec.kernel, spec.stride, spec.padding)
    if spec.kind == "avgpool":
        return nn.AvgPool2d(spec.kernel, spec.stride, spec.padding)
    return nn.ReLU()


def _run(specs: list[LayerSpec], x: Tensor, seed: int) -> tuple[nn.Sequential, list[Tensor]]:
    """Build the layers and run ``x`` through them; ``outs[0]`` is ``x``, ``outs[i]`` layer i's output."""
    rng = generator("stack", seed)
    model, outs = nn.Sequential(), [x]
    for i, spec in enumerate(specs, 1):
        try:
            if spec.kind == "conv":
                within_budget("stack", f"the weight of layer {i} ({spec.text!r})",
                              spec.maps * (outs[-1].shape[1] // spec.groups) * math.prod(spec.kernel),
                              "use fewer filters or a smaller kernel")
            layer = seeded(_module(spec, outs[-1].shape[1]), rng)
            planned = layer(Tensor.meta(outs[-1].shape, outs[-1].dtype)).shape
            within_budget("stack", f"the output of layer {i} ({spec.text!r})", math.prod(planned),
                          "use a smaller --input or fewer filters")
            model.append(layer)
            outs.append(layer(outs[-1]))
        except ShapeError as exc:
            raise ValueError(f"explain stack: layer {i} ({spec.text!r}) on input {dims(outs[-1].shape[1:])}: "
                             f"{exc}") from None
    return model, outs


def _row(i: int, spec: LayerSpec, layer: nn.Module, x: Tensor, y: Tensor, macs: int) -> dict:
    weight = getattr(layer, "weight", None)
    row = {"layer": i, "spec": spec.text, "type": type(layer).__name__, "input_shape": x.shape[1:],
           "output_shape": y.shape[1:], "maps": y.shape[1], "size": y.shape[2:], "kernel_shape": None,
           "groups": None, "params": parameter_count(layer), "params_without_bias": 0, "macs": macs}
    if weight is not None:
        row.update(kernel_shape=weight.shape, groups=spec.groups, params_without_bias=weight.numel(),
                   formula_params=spec.maps * (x.shape[1] // spec.groups) * math.prod(spec.kernel) + spec.maps)
    return row


def _expected(perturbed: int, in_maps: int, out_maps: int, groups: int) -> list[int]:
    """Output maps of the group that reads input map ``perturbed``."""
    group = perturbed // (in_maps // groups)
    per_group = out_maps // groups
    return list(range(group * per_group, (group + 1) * per_group))


def _reach(layers: nn.Sequential, source: Tensor, target: Tensor, perturbed: int) -> list[int]:
    """Maps of ``target`` (= ``layers(source)``) that change when map ``perturbed`` of ``source`` shifts."""
    return changed_maps(target, layers(with_map_shifted(source, perturbed)))


def _demonstrations(model: nn.Sequential, outs: list[Tensor]) -> list[dict]:
    """For every conv: shift the last map of its source (the previous conv's output, or the
    input) and record which of the conv's output maps change."""
    demos, source = [], 0
    for i, layer in enumerate(model, 1):
        if not isinstance(layer, nn.Conv2d):
            continue
        in_maps, out_maps = outs[source].shape[1], outs[i].shape[1]
        perturbed = in_maps - 1
        demos.append({"layer": i, "source": source, "in_maps": in_maps, "out_maps": out_maps,
                      "groups": layer.groups, "kernel_shape": layer.weight.shape, "perturbed_map": perturbed,
                      "changed_maps": _reach(model[source:i], outs[source], outs[i], perturbed),
                      "expected_maps": _expected(perturbed, in_maps, out_maps, layer.groups)})
        source = i
    return demos


def _grouped_contrast(specs: list[LayerSpec], model: nn.Sequential, outs: list[Tensor], demo: dict,
                      seed: int) -> dict:
    """The same demonstration with the conv of ``demo`` given the smallest groups > 1 that divides
    both its input and output map counts."""
    in_maps, out_maps = demo["in_maps"], demo["out_maps"]
    groups = next((g for g in range(2, math.gcd(in_maps, out_maps) + 1) if math.gcd(in_maps, out_maps) % g == 0), 0)
    if not groups:
        return {"layer": demo["layer"], "groups": None,
                "reason": f"{in_maps} input and {out_maps} output maps share no divisor > 1"}
    i, spec = demo["layer"], specs[demo["layer"] - 1]
    grouped = seeded(_module(replace(spec, groups=groups), in_maps), generator("stack", seed + 1))
    layers = nn.Sequential(*list(model[demo["source"]:i - 1]), grouped)
    perturbed = demo["perturbed_map"]
    return {"layer": i, "groups": groups, "kernel_shape": grouped.weight.shape, "params": parameter_count(grouped),
            "params_without_bias": grouped.weight.numel(), "perturbed_map": perturbed,
            "changed_maps": _reach(layers, outs[demo["source"]], layers(outs[demo["source"]]), perturbed),
            "expected_maps": _expected(perturbed, in_maps, out_maps, groups),
            "group": perturbed // (in_maps // groups) + 1}


def compute(input: str, layers: str, seed: int) -> tuple[Facts, Claims]:  # noqa: A002 - the option's name
    # maps×height×width only: "3x224" could mean 3 maps of 224 as well as one 3×224 map
    shape = sizes("stack", "input", input, (3,), "1x28x28 (maps×height×width)")
    specs = parse_layers(layers)
    within_budget("stack", f"the {dims(shape)} input", math.prod(shape), "use a smaller --input")
    model, outs = _run(specs, data(generator("stack", seed), 1, *shape), seed)
    costs = layer_costs(list(model), shape, np.float64)
    rows = [_row(i, spec, layer, outs[i - 1], outs[i], cost["macs"])
            for i, (spec, layer, cost) in enumerate(zip(specs, model, costs), 1)]
    demos = _demonstrations(model, outs)
    second = next((d for d in demos if d["source"] > 0), None)
    contrast = _grouped_contrast(specs, model, outs, second, seed) if second and second["groups"] == 1 else None
    facts = {"input_shape": shape, "layers": rows, "demonstrations": demos, "grouped_contrast": contrast}
    claims = {"parameters equal C_out·(C_in/groups)·kH·kW + C_out for every conv":
              all(r["params"] == r["formula_params"] for r in rows if r["kernel_shape"])}
    for d in demos:
        claims[f"layer {d['layer']}: shifting one input map changes exactly the maps of its group"] = (
            d["changed_maps"] == d["expected_maps"])
    if contrast and contrast["groups"]:
        claims[f"layer {contrast['layer']} with groups={contrast['groups']}: only the shifted map's group changes"] = (
            contrast["changed_maps"] == contrast["expected_maps"])
    return facts, claims


def _source_name(source: int) -> str:
    return "the input" if source == 0 else f"layer {source}'s output"


def render(facts: Facts) -> list[str]:
    c = facts["input_shape"]
    lines = [f"Input {dims(c)}: {c[0]} feature map{'s' if c[0] > 1 else ''} of {dims(c[1:])}.", ""]
    rows = []
    for r in facts["layers"]:
        shape = r["kernel_shape"]
        params = "0" if shape is None else f"{'·'.join(map(str, shape))} + {shape[0]} = {count(r['params'])}"
        rows.append([str(r["layer"]), r["spec"], str(r["maps"]), dims(r["size"]),
                     "-" if shape is None else str(tuple(shape)), params, count(r["params_without_bias"]),
                     count(r["macs"])])
    lines += table(["#", "layer", "maps", "size", "kernel (C_out, C_in/groups, kH, kW)", "parameters",
                    "without bias", "MACs"], rows, right={2, 5, 6, 7})
    for d in facts["demonstrations"]:
        spec = facts["layers"][d["layer"] - 1]["spec"]
        per_filter = d["in_maps"] // d["groups"]
        if d["groups"] > 1:
            span = f"every filter spans only the {per_filter} maps of its group (groups={d['groups']})"
        elif d["in_maps"] == 1:
            span = f"every filter reads the single map of {_source_name(d['source'])}"
        else:
            span = f"every filter spans all {d['in_maps']} maps of {_source_name(d['source'])}"
        lines += ["", f"Layer {d['layer']} ({spec}) has kernel {tuple(d['kernel_shape'])}: {span}.",
                  f"  Shifting map {d['perturbed_map']} of {_source_name(d['source'])} changes maps "
                  f"{ranges(d['changed_maps'])} of layer {d['layer']}: {len(d['changed_maps'])} of {d['out_maps']} "
                  f"(expected {ranges(d['expected_maps'])}) {mark(d['changed_maps'] == d['expected_maps'])}"]
    g = facts["grouped_contrast"]
    if g and g["groups"]:
        lines += ["", f"For contrast, layer {g['layer']} with groups={g['groups']}: kernel {tuple(g['kernel_shape'])}, "
                      f"{count(g['params'])} parameters ({count(g['params_without_bias'])} without bias).",
                  f"  Shifting map {g['perturbed_map']} changes only maps {ranges(g['changed_maps'])} — group "
                  f"{g['group']} of {g['groups']} {mark(g['changed_maps'] == g['expected_maps'])}"]
    elif g:
        lines += ["", f"(No grouped contrast for layer {g['layer']}: {g['reason']}.)"]
    return lines


TOPIC = Topic(
    name="stack",
    title="Subsequent convolution layers, on your numbers",
    summary="feature maps, kernel shapes and parameters after each layer; every filter spans all input maps",
    options=(Option("input", str, "1x28x28", "input maps×height×width"),
             Option("layers", str, "conv 8 3x3 p1, relu, conv 16 5x5", f"layers: {SYNTAX}"),
             Option("seed", int, 0, "seed of the random input and weights")),
    compute=compute,
    render=render,
)
