"""The architecture graph a diagram is drawn from: what the forward pass really ran.

The model's own ``forward`` runs once on meta tensors (:func:`convscope.analyze.walk.walk`,
shapes only); every layer call and every op a container runs itself (a residual ``add``, an
inception ``cat``) becomes a node, and an edge joins the node that made a tensor to every
node that used it. Then, for reading:

1. **fuse**: a normalisation, activation or dropout that is the only consumer of its
   producer folds into it (``Conv 3×3 · BN · ReLU``);
2. **group**: nodes inside the same *block* — the outermost container with its own
   ``forward`` (not a ``Sequential``), e.g. ``Inception``, ``Bottleneck`` — form a group;
3. **collapse**: a run of ``collapse`` or more identical consecutive units (groups or lone
   nodes, each fed only by the one before) is kept once with a repeat count (``×35``).

>>> g = build_graph("googlenet")
>>> sum(group.type == "Inception" for group in g.groups)
9
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..analyze.walk import Walk, output_tensors, walk
from ..models import resolve_model
from ..nn import Module, Sequential
from ..nn.module import training_mode
from ..nn.norm import _NormBase
from ..tensor import Tensor
from ..trace.steps import ELEMENTWISE

_FAMILIES: dict[str, tuple[str, ...]] = {
    "conv": tuple(f"conv{t}{n}d" for t in ("", "_transpose") for n in (1, 2, 3)),
    "pool": tuple(f"{kind}_pool{n}d" for kind in ("max", "avg", "lp", "adaptive_max", "adaptive_avg")
                  for n in (1, 2, 3)),
    "linear": ("linear", "matmul", "bilinear"),
    "merge": ("add", "cat", "stack", "mul", "sub", "div"),
    "norm": ("batch_norm", "layer_norm", "group_norm", "instance_norm", "local_response_norm"),
    "activation": (*ELEMENTWISE, "relu6", "softmax", "log_softmax"),
    "dropout": ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"),
    "reshape": ("reshape", "flatten", "view", "permute", "transpose", "squeeze", "unsqueeze"),
}
FAMILY_OF_OP = {op: family for family, ops in _FAMILIES.items() for op in ops}
"""Op name → what it does, for colours, labels and fusing."""

MAIN_FAMILIES = ("conv", "pool", "linear", "merge")
FUSIBLE = ("norm", "activation", "dropout")

_POOL_KINDS = {"max": "Max", "avg": "Avg", "lp": "LP", "adaptive_max": "AdaptiveMax", "adaptive_avg": "AdaptiveAvg"}
_SHORT = {"batch_norm": "BN", "layer_norm": "LN", "group_norm": "GN", "instance_norm": "IN",
          "local_response_norm": "LRN", "relu": "ReLU", "relu6": "ReLU6", "tanh": "Tanh", "sigmoid": "Sigmoid",
          "gelu": "GELU", "silu": "SiLU", "hardswish": "HSwish", "hardsigmoid": "HSigmoid", "leaky_relu": "LReLU",
          "elu": "ELU", "softmax": "Softmax", "log_softmax": "LogSoftmax", "add": "add", "cat": "concat",
          "stack": "stack", "mul": "multiply", "sub": "subtract", "div": "divide", "linear": "Linear",
          "reshape": "flatten", "flatten": "flatten"}


@dataclass
class Node:
    """One drawn box: a layer call or an op a container ran itself.

    ``inputs`` are node ids (0 is the model input); ``output_shape`` has no batch dim;
    ``block`` is the path of the enclosing block (see the module docstring) or None.
    """

    id: int
    name: str
    type: str
    family: str
    label: str
    output_shape: tuple[int, ...]
    input_shapes: list[tuple[int, ...]]
    inputs: list[int] = field(default_factory=list)
    block: str | None = None
    fused: list[str] = field(default_factory=list)
    params: int = 0
    repeat: int = 1
    last: str | None = None  # name of the last unit of a collapsed run

    def text(self) -> str:
        """``Conv 3×3 /2 · BN · ReLU ×3``."""
        times = f" ×{self.repeat}" if self.repeat > 1 else ""
        return " · ".join([self.label, *self.fused]) + times


@dataclass
class Group:
    """Nodes of one block (drawn inside one labelled box); ``repeat`` > 1 when the group
    stands for a run of identical blocks ``name`` … ``last``."""

    name: str
    type: str
    nodes: list[int]
    repeat: int = 1
    last: str | None = None

    def title(self) -> str:
        if self.repeat > 1:
            return f"{self.name} – {self.last}: {self.type} ×{self.repeat}"
        return f"{self.name}: {self.type}"


@dataclass
class Graph:
    """Nodes in execution order (a topological order; node 0 is the input) and groups."""

    model: str
    nodes: list[Node]
    groups: list[Group]
    layers: int  # layer calls and container ops before fusing and collapsing

    def node(self, node_id: int) -> Node:
        return self._by_id()[node_id]

    def _by_id(self) -> dict[int, Node]:
        return {n.id: n for n in self.nodes}

    def edges(self) -> list[tuple[int, int]]:
        """``(producer id, consumer id)`` pairs."""
        return [(p, n.id) for n in self.nodes for p in n.inputs]

    def consumers(self, node_id: int) -> list[int]:
        return [n.id for n in self.nodes if node_id in n.inputs]

    def group_of(self, node_id: int) -> Group | None:
        return next((g for g in self.groups if node_id in g.nodes), None)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "layers": self.layers, "nodes": [asdict(n) for n in self.nodes],
                "groups": [asdict(g) for g in self.groups]}


# --- from the walk to raw nodes ----------------------------------------------------------------
def _is_layer(module: Module) -> bool:
    """A leaf module, or one with parameters of its own (its children's ops are its own)."""
    return not module._modules or bool(module._parameters)


def _is_block(module: Module) -> bool:
    return bool(module._modules) and not isinstance(module, Sequential) and not _is_layer(module)


def _outermost(run: Walk, test: Any) -> list[int | None]:
    """Per call, the outermost call (itself or an ancestor, never the root) passing ``test``."""
    found: list[int | None] = []
    for i, call in enumerate(run.calls):
        parent = call.parent
        outer = found[parent] if parent is not None else None
        own = i if parent is not None and test(call.module) else None
        found.append(outer if outer is not None else own)
    return found


def _label(family: str, op: str, ev: Any, module: Module | None) -> str:
    """``Conv 3×3 /2``, ``MaxPool 2×2``, ``Linear 512→64``, ``BN``, ``add``."""
    attrs = ev.attrs if ev is not None else {}
    if family == "conv" and ev is not None:
        kernel = "×".join(map(str, ev.inputs[1].shape[2:]))
        text = f"{'ConvT' if op.startswith('conv_transpose') else 'Conv'} {kernel}{_stride(attrs.get('stride'))}"
        if max(attrs.get("dilation", (1,))) > 1:
            text += f" dil {_dims(attrs['dilation'])}"
        groups = attrs.get("groups", 1)
        if groups > 1:
            text += " dw" if groups == ev.inputs[0].shape[1] else f" g{groups}"
        return text
    if family == "pool" and ev is not None:
        kind = _POOL_KINDS.get(op.split("_pool")[0], "")
        if kind.startswith("Adaptive"):
            return f"{kind}Pool → {'×'.join(map(str, ev.output.shape[2:]))}"
        kernel = tuple(attrs.get("kernel_size", ()))
        stride = "" if tuple(attrs.get("stride", kernel)) == kernel else _stride(attrs.get("stride"))
        ceil = " ceil" if attrs.get("ceil_mode") else ""
        return f"{kind}Pool {'×'.join(map(str, kernel))}{stride}{ceil}"
    if family == "linear" and ev is not None and op == "linear":
        out_f, in_f = ev.inputs[1].shape
        return f"Linear {in_f}→{out_f}"
    if op == "hardtanh" and attrs.get("min_val") == 0 and attrs.get("max_val") == 6:
        return "ReLU6"
    if family == "dropout":
        return "Dropout"
    if op in _SHORT:
        return _SHORT[op]
    return type(module).__name__ if module is not None else op


def _dims(values: Sequence[int]) -> str:
    values = tuple(values)
    return str(values[0]) if len(set(values)) == 1 else "×".join(map(str, values))


def _stride(stride: Sequence[int] | None) -> str:
    return "" if stride is None or max(stride) == 1 else f" /{_dims(stride)}"


def _family(ops: list[str]) -> str:
    families = [FAMILY_OF_OP.get(op, "other") for op in ops]
    return next((f for f in families if f in MAIN_FAMILIES), families[0] if families else "reshape")


def _raw_nodes(run: Walk) -> list[Node]:
    calls = run.calls
    layer_of = _outermost(run, _is_layer)
    block_of = _outermost(run, _is_block)
    root_is_layer = bool(calls) and _is_layer(calls[0].module)
    owned: dict[int, list[int]] = {}  # layer call -> its events
    items: list[tuple[int, str, int]] = []  # (tick, "call"/"op", index)
    for i, call in enumerate(calls):
        if layer_of[i] == i or (i == 0 and root_is_layer):
            items.append((call.tick, "call", i))
    for k, ev in enumerate(run.events):
        owner = 0 if root_is_layer else (layer_of[ev.call] if ev.call is not None else None)
        if owner is None:
            items.append((ev.tick, "op", k))
        else:
            owned.setdefault(owner, []).append(k)
    input_shape = tuple(run.inputs[0].shape[1:])
    nodes = [Node(0, "input", "input", "input", "input", input_shape, [])]
    producer = {id(t): 0 for t in run.inputs}
    for _, kind, index in sorted(items):
        if kind == "call":
            call = calls[index]
            events = [run.events[k] for k in owned.get(index, [])]
            ops = [ev.op for ev in events]
            family = _family(ops)
            main = next((ev for ev in events if FAMILY_OF_OP.get(ev.op) == family), events[0] if events else None)
            ins, outs = output_tensors(call.inputs), output_tensors(call.output)
            name, typ = call.path or type(call.module).__name__, type(call.module).__name__
            label = _label(family, main.op if main else "", main, call.module)
            block = block_of[call.parent] if call.parent is not None else None
            params = sum(p.numel() for p in call.module.parameters())
        else:
            ev = run.events[index]
            call_index = ev.call
            parent = calls[call_index].path if call_index is not None else ""
            ins, outs = ev.inputs, (ev.output,)
            name, typ = (f"{parent}.{ev.op}" if parent else ev.op), ev.op
            family = FAMILY_OF_OP.get(ev.op, "other")
            label = _label(family, ev.op, ev, None)
            block = block_of[call_index] if call_index is not None else None
            params = 0
        if not outs:
            continue
        node = Node(len(nodes), name, typ, family, label, tuple(outs[0].shape[1:]),
                    [tuple(t.shape[1:]) for t in ins if isinstance(t, Tensor)],
                    block=calls[block].path if block is not None else None, params=params)
        for t in ins:
            source = producer.get(id(t))
            if source is not None and source not in node.inputs:
                node.inputs.append(source)
        for t in outs:
            producer[id(t)] = node.id
        nodes.append(node)
    return nodes


# --- reading aids: fuse, group, collapse ----------------------------------------------------------
def _fuse(nodes: list[Node]) -> list[Node]:
    """Fold each normalisation/activation/dropout into its producer when it is the
    producer's only consumer and both sit in the same block."""
    uses: dict[int, int] = {}
    for n in nodes:
        for p in n.inputs:
            uses[p] = uses.get(p, 0) + 1
    host: dict[int, int] = {}  # fused node -> the node it joined
    tail: dict[int, int] = {}  # host -> the last node folded into it (whose output it now shows)
    by_id = {n.id: n for n in nodes}
    kept = []
    for n in nodes:
        original = list(n.inputs)
        n.inputs = list(dict.fromkeys(host.get(p, p) for p in original))
        if n.family in FUSIBLE and len(original) == 1 and original[0] != 0 and uses.get(original[0]) == 1:
            target = by_id[host.get(original[0], original[0])]
            if tail.get(target.id, target.id) == original[0] and target.block == n.block and target.id != 0:
                target.fused.append(n.label)
                target.output_shape = n.output_shape
                target.params += n.params
                host[n.id], tail[target.id] = target.id, n.id
                continue
        kept.append(n)
    return kept


def _groups(nodes: list[Node]) -> list[Group]:
    """One group per block holding two or more nodes; a lone node takes its block's name."""
    members: dict[str, list[Node]] = {}
    for n in nodes:
        if n.block is not None:
            members.setdefault(n.block, []).append(n)
    groups = []
    for block, inside in members.items():
        if len(inside) == 1:
            inside[0].name, inside[0].block = block, None
        else:
            groups.append(Group(block, "", [n.id for n in inside]))
    return groups


def _signature(unit: list[Node], group_type: str) -> tuple:
    ids = [n.id for n in unit]
    wiring = tuple(tuple(ids.index(p) if p in ids else -1 for p in n.inputs) for n in unit)
    content = tuple((n.family, n.text(), n.output_shape, tuple(n.input_shapes)) for n in unit)
    return group_type, content, wiring


def _collapse(nodes: list[Node], groups: list[Group], min_run: int) -> tuple[list[Node], list[Group]]:
    """Keep one of each run of ``min_run`` or more identical consecutive units."""
    group_of = {i: g for g in groups for i in g.nodes}
    by_id = {n.id: n for n in nodes}
    units: list[tuple[Group | None, list[Node]]] = []
    for n in nodes[1:]:
        g = group_of.get(n.id)
        if g is None:
            units.append((None, [n]))
        elif g.nodes[0] == n.id:
            units.append((g, [by_id[i] for i in g.nodes]))
    removed: set[int] = set()
    alias: dict[int, int] = {}
    start = 0
    while start < len(units):
        group, first = units[start]
        sig = _signature(first, group.type if group else "")
        end = start + 1
        while end < len(units):
            g2, unit = units[end]
            inside = {n.id for n in unit}
            external = {p for n in unit for p in n.inputs if p not in inside}
            if _signature(unit, g2.type if g2 else "") != sig or external != {units[end - 1][1][-1].id}:
                break
            end += 1
        if end - start >= min_run:
            last_group, last_unit = units[end - 1]
            if group is not None:
                group.repeat, group.last = end - start, last_group.name
            else:
                first[0].repeat, first[0].last = end - start, last_unit[0].name
            removed |= {n.id for _, unit in units[start + 1:end] for n in unit}
            alias[last_unit[-1].id] = first[-1].id
        start = end
    kept = [n for n in nodes if n.id not in removed]
    for n in kept:
        n.inputs = list(dict.fromkeys(alias.get(p, p) for p in n.inputs))
    return kept, [g for g in groups if g.nodes[0] not in removed]


def build_graph(model: Any, input_shape: Sequence[int] | None = None, *, collapse: int = 3) -> Graph:
    """The architecture graph of ``model`` (a Module or any MODEL of :mod:`convscope.models`)
    for ``input_shape`` (no batch dim; default: the model's own).

    ``collapse``: keep one of each run of at least this many identical consecutive blocks
    (0 keeps everything).
    """
    if not isinstance(collapse, int) or collapse < 0 or collapse == 1:
        raise ValueError(f"collapse must be 0 (off) or a run length ≥ 2, got {collapse!r}")
    from ..analyze import summary
    from ..analyze.summary import input_dtypes

    found = resolve_model(model)
    net, name = found.module, found.name
    batched = summary(net, found.sample_shape(input_shape, "architecture")).raise_for_error().input_shapes[0]
    with contextlib.ExitStack() as modes:
        # batch statistics need more than one value per channel, which a 1×1 map of one sample
        # lacks (ResNet-18 at 32×32): as in the summary, norm layers use their running statistics
        for norm in (m for m in net.modules() if isinstance(m, _NormBase)):
            modes.enter_context(training_mode(norm, False))
        run = walk(net, (Tensor.meta(batched, input_dtypes(net, 1)[0]),))
    if run.error is not None:
        raise run.error
    raw = _raw_nodes(run)
    nodes = _fuse(raw)
    groups = _groups(nodes)
    calls = {c.path: c for c in run.calls}
    for g in groups:
        g.type = type(calls[g.name].module).__name__
    if collapse:
        nodes, groups = _collapse(nodes, groups, collapse)
    return Graph(name, nodes, groups, len(raw) - 1)
