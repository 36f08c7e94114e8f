"""Model → spec text, the inverse of :func:`~convscope.spec.load_spec` for models made of
``Sequential``, :class:`Residual` and :class:`Concat` containers of the layers the spec
language knows. Options equal to their defaults and inferred channel counts are left out."""

from __future__ import annotations

import inspect
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from .. import nn
from .blocks import Concat, Residual
from .layers import _SHORT_FORM_VALUE_START, KINDS, Kind
from .values import SHAPE, render

# (module, name, path, role) where role is "layer", "branch" or "shortcut"
_Item = tuple[nn.Module, str, str, str]


def _reverse_table() -> dict[type, list[tuple[Kind, str]]]:
    """class → the (kind, keyword) pairs that build it, kinds with fixed settings first
    (``globalavgpool`` before ``adaptiveavgpool``). The bare keyword is used for one-class
    kinds and 2-d classes."""
    table: dict[type, list[tuple[Kind, str]]] = {}
    for kind in sorted(KINDS, key=lambda k: not k.fixed):
        for nd, cls in enumerate(kind.classes, start=1):
            bare = kind.generic and (not kind.dimensional or nd == 2)
            table.setdefault(cls, []).append((kind, kind.name if bare else f"{kind.name}{nd}d"))
    return table


_REVERSE = _reverse_table()


def _keyword(module: nn.Module, path: str) -> tuple[Kind, str]:
    """The first kind whose fixed settings the module has (the last one regardless)."""
    candidates = _REVERSE.get(type(module))
    if not candidates:
        raise ValueError(f"dump_spec: no spec keyword for {path} ({type(module).__name__})")
    for kind, keyword in candidates:
        if all(_plain(getattr(module, key)) == _plain(value) for key, value in kind.fixed.items()):
            return kind, keyword
    return candidates[-1]


def _plain(value: Any) -> Any:
    """Values compared as the spec writes them: ``(3, 3)`` → 3."""
    if isinstance(value, list):
        value = tuple(value)
    if isinstance(value, tuple) and value and all(v == value[0] for v in value):
        return value[0]
    return value


def _default(kind: Kind, kwarg: str, module: nn.Module) -> Any:
    """What the module would hold for ``kwarg`` had the spec not mentioned it."""
    if kwarg in kind.fixed:
        return kind.fixed[kwarg]
    parameter = inspect.signature(type(module)).parameters.get(kwarg)
    default = parameter.default if parameter is not None else inspect.Parameter.empty
    if kwarg == "stride" and default is None:  # pools: stride defaults to the kernel
        return getattr(module, "kernel_size", None)
    return default


def _value(kwarg: str, module: nn.Module) -> Any:
    if kwarg == "bias" and "bias" in module._parameters:
        return module.bias is not None
    return getattr(module, kwarg)


def _arguments(kind: Kind, module: nn.Module) -> list[str]:
    """The words after the keyword: positional values while unbroken, then options."""
    words, bare = [], True
    depthwise = "dw" in (o.key for o in kind.options) and module.groups == module.in_channels > 1
    per_channel = "each" in kind.flags and module.num_parameters > 1  # PReLU: one slope per input channel
    positional = [kind.option(key) for key in kind.positional]
    others = [o for o in kind.options if o not in positional]
    for option in [*positional, *others]:
        if option is None or option.kwarg is None or (depthwise and option.key == "g"):
            continue
        value = _value(option.kwarg, module)
        if value is None or _plain(value) == _plain(_default(kind, option.kwarg, module)):  # None: left unset
            bare = False
            continue
        text = "x".join(map(str, value)) if option.value is SHAPE else render(value)
        if kind.flags.get(option.key) == (option.key, value):
            words.append(option.key)  # a flag named after its option: 'ceil'
        elif option.short and text[0] in _SHORT_FORM_VALUE_START:  # glued as bind reads it: 'p1', not 'psame'
            words.append(f"{option.key}{text}")
        elif bare and option in positional:
            words.append(text)
        else:
            words.append(f"{option.key}={text}")
    if depthwise:
        words.append("dw")
    if per_channel:
        words.append("each")
    params = list(module.parameters())
    if params and not any(p.requires_grad for p in params):
        words.append("frozen")
    return words


def _children(module: nn.Module, path: str) -> Iterator[_Item]:
    def join(name: str) -> str:
        return f"{path}.{name}" if path else name

    if isinstance(module, Residual):
        yield from ((child, name, join(name), "layer") for name, child in module.body())
        if module.shortcut is not None:
            yield module.shortcut, "shortcut", join("shortcut"), "shortcut"
    elif isinstance(module, Concat):
        yield from ((module._modules[name], name, join(name), "branch") for name in module.branch_names)
    else:
        yield from ((child, name, join(name), "layer") for name, child in module._modules.items())


def _container(module: nn.Module, path: str) -> Iterator[_Item]:
    if not isinstance(module, nn.Sequential):
        raise ValueError(f"dump_spec: {path} ({type(module).__name__}) must be a Sequential to be written as a "
                         "branch or shortcut")
    return _children(module, path)


def dump_spec(model: nn.Sequential, input_shape: Sequence[int] | None = None) -> str:
    """The spec text that rebuilds ``model`` (same module names, classes, settings and
    parameter shapes, so its ``state_dict`` loads into ``load_spec(text)``).

    ``input_shape`` (no batch dim) defaults to ``model.input_shape`` (set by ``load_spec``).
    ``repeat`` blocks come back unrolled. Raises ``ValueError`` for a module the spec language
    has no keyword for, or when the written spec would not rebuild the model exactly.
    """
    from . import load_spec  # the verification below; import here to avoid a cycle

    shape = tuple(input_shape) if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError("dump_spec needs input_shape= (the model has no input_shape attribute)")
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"dump_spec writes Sequential models, got {type(model).__name__}")
    lines = [f"input {'x'.join(map(str, shape))}"]
    stack: list[tuple[Iterator[_Item], Counter[str]]] = [(_children(model, ""), Counter())]
    while stack:
        items, counts = stack[-1]
        indent = "  " * (len(stack) - 1)
        item = next(items, None)
        if item is None:
            stack.pop()
            if stack:
                lines.append("  " * (len(stack) - 1) + "}")
            continue
        module, name, path, role = item
        if role == "shortcut":
            lines.append(f"{indent}shortcut {{")
            stack.append((_container(module, path), Counter()))
            continue
        if role == "branch" or isinstance(module, (Residual, Concat, nn.Sequential)):
            prefix = "branch" if role == "branch" else "block"
            keyword = role if role == "branch" else (
                "residual" if isinstance(module, Residual) else "concat" if isinstance(module, Concat) else
                "sequential")
            counts[prefix] += 1
            label = "" if name == f"{prefix}{counts[prefix]}" else f" name={name}"
            lines.append(f"{indent}{keyword}{label} {{")
            children = _container(module, path) if role == "branch" else _children(module, path)
            stack.append((children, Counter()))
            continue
        kind, keyword = _keyword(module, path)
        counts[kind.auto_prefix] += 1
        label = [] if name == f"{kind.auto_prefix}{counts[kind.auto_prefix]}" else [f"name={name}"]
        lines.append(indent + " ".join([keyword, *_arguments(kind, module), *label]))
    text = "\n".join(lines) + "\n"
    _verify(model, load_spec(text, source="<dump_spec>"))
    return text


_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d*)?(?:e[-+]?\d+)?(?![\w.])")


def _settings_text(model: nn.Module) -> list[str]:
    """The model's repr lines with every number written as a float: the spec reads ``6`` as
    6.0, and ``Hardtanh(0, 6)`` is the same layer as ``Hardtanh(0.0, 6.0)``."""
    return [_NUMBER.sub(lambda m: repr(float(m.group())), line) for line in repr(model).splitlines()]


def _verify(model: nn.Module, rebuilt: nn.Module) -> None:
    """The written spec must rebuild the same modules and parameter shapes."""
    want = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    got = [(k, tuple(v.shape)) for k, v in rebuilt.state_dict().items()]
    want_text, got_text = _settings_text(model), _settings_text(rebuilt)
    if want == got and want_text == got_text:
        return
    diff = next(((w, g) for w, g in zip(want_text, got_text) if w != g), None) or next(
        ((w, g) for w, g in zip(want, got) if w != g), (len(want), len(got)))
    raise ValueError(f"dump_spec: the spec would not rebuild this model exactly (model {diff[0]}, spec gives "
                     f"{diff[1]}); a layer may use a setting the spec language does not express")
