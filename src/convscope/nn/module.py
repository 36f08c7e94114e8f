"""Module: the container for parameters, buffers and submodules, with torch.nn's API.

Every walk over the module tree (``named_modules``, ``state_dict``, ``apply``, ``repr``) is
an explicit stack, never recursion, so a network hundreds of layers deep stays far from
Python's recursion limit.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from ..errors import ShapeError
from ..tensor import Tensor, _as_dtype

__all__ = ["Identity", "Module", "ModuleDict", "ModuleList", "Parameter", "Sequential"]


class Parameter(Tensor):
    """A tensor that a :class:`Module` registers as a learnable parameter.

    ``Parameter(tensor)`` shares the tensor's array (as torch does); other data is copied
    like :func:`convscope.tensor`. ``requires_grad`` defaults to True.
    """

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            data = np.empty(0, np.float32)
        if isinstance(data, Tensor):
            self._init(data.data, data.shape, data.dtype, requires_grad)
        else:
            super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class RemovableHandle:
    """Returned by the ``register_*_hook`` methods; ``remove()`` unregisters the hook."""

    _ids = itertools.count()

    def __init__(self, hooks: dict[int, Callable]) -> None:
        self._hooks = hooks
        self.id = next(self._ids)

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class IncompatibleKeys(NamedTuple):
    """What :meth:`Module.load_state_dict` could not match (empty lists in strict mode)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def _addindent(text: str, spaces: int) -> str:
    first, *rest = text.split("\n")
    return "\n".join([first] + [" " * spaces + line if line.strip() else "" for line in rest])


def to_numpy(value: Any) -> np.ndarray:
    """An ndarray (not copied) from an ndarray, a convscope tensor or a torch tensor."""
    if isinstance(value, Tensor):
        return value.numpy()
    if hasattr(value, "detach"):  # a torch tensor, which may require grad
        return value.detach().numpy()
    return np.asarray(value)


class Module:
    """Base class of all layers and models.

    Assigning a :class:`Parameter`, a ``Module`` or (after :meth:`register_buffer`) a tensor
    as an attribute registers it; :meth:`state_dict` keys follow the attribute names with
    torch's order (a module's parameters, then its persistent buffers, then each child).

    When a :class:`~convscope.ShapeError` leaves ``forward``, the error is renamed after the
    layer it came from, e.g. ``"features.3 (Conv2d): ..."``.

    Shape:
        Defined by each subclass.
    """

    training: bool

    def __init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "training", True)
        set_(self, "_parameters", {})
        set_(self, "_buffers", {})
        set_(self, "_non_persistent_buffers_set", set())
        set_(self, "_modules", {})
        set_(self, "_forward_pre_hooks", {})
        set_(self, "_forward_hooks", {})

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    # --- calling ------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            if self._forward_pre_hooks:
                for hook in tuple(self._forward_pre_hooks.values()):
                    result = hook(self, args)
                    if result is not None:
                        args = result if isinstance(result, tuple) else (result,)
            output = self.forward(*args, **kwargs)
            if self._forward_hooks:
                for hook in tuple(self._forward_hooks.values()):
                    result = hook(self, args, output)
                    if result is not None:
                        output = result
            return output
        except ShapeError as err:
            self._name_layer(err)
            raise

    def _name_layer(self, err: ShapeError) -> None:
        """Rename ``err`` after the innermost module it passed through, by that module's path
        below ``self``. Every enclosing call repeats this, so the outermost call (the root)
        leaves the full path. Runs only on the error path."""
        origin = getattr(err, "module", None)
        if origin is None:
            origin = err.module = self
        for path, module in self.named_modules():
            if module is origin:
                name = type(origin).__name__
                err.with_layer(f"{path} ({name})" if path else name)
                return

    def register_forward_pre_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(module, args)`` runs before ``forward``; a non-None result replaces ``args``."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(module, args, output)`` runs after ``forward``; a non-None result replaces the output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # --- registration -------------------------------------------------------------------
    def _check_new_name(self, name: Any, kind: str, store: dict) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {kind} before Module.__init__() call")
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
        if not name or "." in name:
            raise KeyError(f"{kind} name can't be empty or contain '.', got {name!r}")
        if name not in store and self._has_attribute(name):
            raise KeyError(f"attribute '{name}' already exists")

    def _has_attribute(self, name: str) -> bool:
        """``hasattr(self, name)``, without raising and catching an AttributeError for the
        usual new name (one that no instance attribute, store or class attribute has)."""
        cls = type(self)
        if hasattr(cls, name) or cls.__getattr__ is not Module.__getattr__:
            return hasattr(self, name)  # a class attribute or a custom lookup decides itself
        state = self.__dict__
        return (name in state or name in state.get("_parameters", ()) or name in state.get("_buffers", ())
                or name in state.get("_modules", ()))

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        self._check_new_name(name, "parameter", self.__dict__.get("_parameters", {}))
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                            "(Parameter or None required)")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Register state that is not a parameter (e.g. running statistics); persistent
        buffers are part of :meth:`state_dict`."""
        self._check_new_name(name, "buffer", self.__dict__.get("_buffers", {}))
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' "
                            "(Tensor or None required)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        self._check_new_name(name, "module", self.__dict__.get("_modules", {}))
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._modules[name] = module

    register_module = add_module

    def _forget(self, name: str, keep: dict) -> None:
        """Drop ``name`` from every store except ``keep`` (where it keeps its position)."""
        for store in (self.__dict__, self._parameters, self._buffers, self._modules):
            if store is not keep:
                store.pop(name, None)
        self._non_persistent_buffers_set.discard(name)

    def __setattr__(self, name: str, value: Any) -> None:
        params = self.__dict__.get("_parameters")
        modules = self.__dict__.get("_modules")
        buffers = self.__dict__.get("_buffers")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            self._forget(name, keep=params)
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                "(Parameter or None expected)")
            params[name] = None
        elif isinstance(value, Module):
            if modules is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            self._forget(name, keep=modules)
            modules[name] = value
        elif modules is not None and name in modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' "
                                "(Module or None expected)")
            modules[name] = None
        elif buffers is not None and name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' (Tensor or None expected)")
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        state = self.__dict__  # runs for every parameter, buffer and child access: the stores unrolled
        members = state.get("_parameters")
        if members is not None and name in members:
            return members[name]
        members = state.get("_buffers")
        if members is not None and name in members:
            return members[name]
        members = state.get("_modules")
        if members is not None and name in members:
            return members[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                self._non_persistent_buffers_set.discard(name)
                return
        object.__delattr__(self, name)

    # --- traversal ----------------------------------------------------------------------
    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """All modules in the tree, pre-order with torch's dotted names; a module reachable
        by several paths is yielded once (at its first path) unless ``remove_duplicate`` is
        False."""
        seen = set() if memo is None else memo
        stack: list[tuple[str, Module]] = [(prefix, self)]
        while stack:
            path, module = stack.pop()
            if remove_duplicate:
                if module in seen:
                    continue
                seen.add(module)
            yield path, module
            stack.extend((f"{path}.{name}" if path else name, child)
                         for name, child in reversed(module._modules.items()) if child is not None)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen: set[Module] = set()
        for name, child in self._modules.items():
            if child is not None and child not in seen:
                seen.add(child)
                yield name, child

    def children(self) -> Iterator[Module]:
        for _, child in self.named_children():
            yield child

    def _post_order(self) -> list[Module]:
        """Each module once (where a depth-first walk first meets it), children in order
        before their parent."""
        order: list[Module] = []
        seen: set[Module] = {self}
        stack: list[tuple[Module, Iterator[Module | None]]] = [(self, iter(self._modules.values()))]
        while stack:
            module, children = stack[-1]
            for child in children:
                if child is not None and child not in seen:
                    seen.add(child)
                    stack.append((child, iter(child._modules.values())))
                    break
            else:
                stack.pop()
                order.append(module)
        return order

    def _named_members(self, store: str, prefix: str, recurse: bool,
                       remove_duplicate: bool) -> Iterator[tuple[str, Tensor]]:
        walk = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        seen: set[int] = set()
        for path, module in walk:
            for name, value in getattr(module, store).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{path}.{name}" if path else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    def get_submodule(self, target: str) -> Module:
        """The submodule at dotted path ``target`` (``""`` is ``self``)."""
        module = self
        for name in target.split(".") if target else ():
            child = module._modules.get(name)
            if child is None:
                raise AttributeError(f"{type(module).__name__} has no submodule '{name}' (looking up '{target}')")
            module = child
        return module

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every submodule (children before parents, as torch) and on self."""
        for module in self._post_order():
            fn(module)
        return self

    # --- modes and gradients ------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self.parameters():
            if param.grad is not None:
                param.grad = None if set_to_none else np.zeros_like(param.grad)

    # --- dtype --------------------------------------------------------------------------
    def to(self, dtype: Any) -> Module:
        """Cast floating-point parameters and buffers (and gradients) to ``dtype`` in place;
        integer buffers such as ``num_batches_tracked`` keep their type. The Parameter
        objects stay the same, so optimizers built before the cast still hold them."""
        target = _as_dtype(dtype)
        if target.kind != "f":
            raise TypeError(f"Module.to only accepts floating point dtypes, got {target}")
        for module in self.modules():
            for value in itertools.chain(module._parameters.values(), module._buffers.values()):
                if value is None or value.dtype.kind != "f":
                    continue
                if value.data is not None:
                    value.data = value.data.astype(target)
                if value.grad is not None:
                    value.grad = value.grad.astype(target)
                value.dtype = target
        return self

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:  # noqa: A003 - torch's name
        return self.to(np.float32)

    # --- state dict ---------------------------------------------------------------------
    def state_dict(self, *, prefix: str = "", keep_vars: bool = False) -> OrderedDict[str, Any]:
        """Parameters and persistent buffers by dotted name, in torch's order and with torch's
        keys. Values are the live arrays (like torch's detached tensors), or the tensors
        themselves with ``keep_vars=True``."""
        out: OrderedDict[str, Any] = OrderedDict()
        for path, module in self.named_modules(remove_duplicate=False):
            head = prefix + (path + "." if path else "")
            for name, param in module._parameters.items():
                if param is not None:
                    out[head + name] = param if keep_vars else param.data
            for name, buf in module._buffers.items():
                if buf is not None and name not in module._non_persistent_buffers_set:
                    out[head + name] = buf if keep_vars else buf.data
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy values (ndarrays, convscope or torch tensors) into the parameters and buffers,
        casting to each one's dtype. Checks everything before copying anything.

        Raises :class:`~convscope.ShapeError` listing every shape mismatch (key, expected,
        got) and, when ``strict``, every missing and unexpected key.
        """
        targets = self.state_dict(keep_vars=True)
        missing = [key for key in targets if key not in state_dict]
        unexpected = [key for key in state_dict if key not in targets]
        values = {key: to_numpy(state_dict[key]) for key in targets if key in state_dict}
        problems = []
        if strict and missing:
            problems.append(f"missing keys {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys {unexpected}")
        problems += [f"shape mismatch for '{key}': expected {targets[key].shape}, got {value.shape}"
                     for key, value in values.items() if value.shape != targets[key].shape]
        if problems:
            raise ShapeError("state_dict does not fit the model: " + "; ".join(problems),
                             layer=f"load_state_dict ({type(self).__name__})")
        for key, value in values.items():
            targets[key].data[...] = value
        return IncompatibleKeys(missing, unexpected)

    # --- text ---------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The module's own settings, shown inside its ``repr`` (override in subclasses)."""
        return ""

    def _render(self, children: list[tuple[str, str]]) -> str:
        """This module's repr given its children's (torch's layout)."""
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({key}): {_addindent(text, 2)}" for key, text in children]
        lines = extra_lines + child_lines
        body = ""
        if len(extra_lines) == 1 and not child_lines:
            body = extra_lines[0]
        elif lines:
            body = "\n  " + "\n  ".join(lines) + "\n"
        return f"{type(self).__name__}({body})"

    def __repr__(self) -> str:
        text: dict[int, str] = {}
        for module in self._post_order():
            children = [(name, "None" if child is None else text[id(child)]) for name, child in module._modules.items()]
            text[id(module)] = module._render(children)
        return text[id(self)]


def _index(idx: int, size: int) -> int:
    if not -size <= idx < size:
        raise IndexError(f"index {idx} is out of range for a container of {size} modules")
    return idx % size


@contextlib.contextmanager
def training_mode(model: Module, training: bool) -> Iterator[Module]:
    """``model`` and all its submodules in training (or eval) mode for a ``with`` block; each
    module's own flag is restored after (a model may mix modes: frozen batch norms)."""
    modes = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


class Sequential(Module):
    """Modules called in order, each on the previous one's output.

    ``Sequential(m0, m1, ...)`` names the children ``"0"``, ``"1"``, ...;
    ``Sequential(OrderedDict(name=module, ...))`` keeps the given names.

    Shape:
        - Input: what the first module accepts.
        - Output: what the last module returns.
    """

    def __init__(self, *args: Module) -> None:
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for key, module in args[0].items():
                self.add_module(key, module)
        else:
            for idx, module in enumerate(args):
                self.add_module(str(idx), module)

    def __getitem__(self, idx: int | slice) -> Module:
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return type(self)(OrderedDict(items[idx]))
        return items[_index(idx, len(items))][1]

    def __setitem__(self, idx: int, module: Module) -> None:
        key = list(self._modules)[_index(idx, len(self._modules))]
        setattr(self, key, module)

    def __delitem__(self, idx: int | slice) -> None:
        """Delete, then renumber the remaining children ``"0"``, ``"1"``, ... (as torch)."""
        values = list(self._modules.values())
        del values[idx if isinstance(idx, slice) else _index(idx, len(values))]
        object.__setattr__(self, "_modules", {str(i): m for i, m in enumerate(values)})

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> Sequential:
        for module in modules:
            self.append(module)
        return self

    def forward(self, input: Any) -> Any:  # noqa: A002 - torch's name
        for module in self:
            input = module(input)  # noqa: A001
        return input


class ModuleList(Module):
    """A list of modules, registered under ``"0"``, ``"1"``, ... (not callable itself).

    Shape:
        Not applicable: call the contained modules.
    """

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, idx: int | slice) -> Module | ModuleList:
        values = list(self._modules.values())
        if isinstance(idx, slice):
            return type(self)(values[idx])
        return values[_index(idx, len(values))]

    def __setitem__(self, idx: int, module: Module) -> None:
        setattr(self, str(_index(idx, len(self))), module)

    __delitem__ = Sequential.__delitem__

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __iadd__(self, modules: Iterable[Module]) -> ModuleList:
        return self.extend(modules)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> None:
        values = list(self._modules.values())
        values.insert(index, module)
        object.__setattr__(self, "_modules", {})
        self.extend(values)

    def _render(self, children: list[tuple[str, str]]) -> str:
        """torch's compressed form: equal neighbours print once as ``(i-j): n x ...``."""
        if not children:
            return f"{type(self).__name__}()"
        runs: list[list[Any]] = []
        for i, (_, text) in enumerate(children):
            if runs and runs[-1][2] == text:
                runs[-1][1] = i
            else:
                runs.append([i, i, text])
        lines = [_addindent(f"({a}): {t}" if a == b else f"({a}-{b}): {b - a + 1} x {t}", 2) for a, b, t in runs]
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


class ModuleDict(Module):
    """A dict of modules registered under their keys (not callable itself).

    Shape:
        Not applicable: call the contained modules.
    """

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def keys(self) -> Iterable[str]:
        return self._modules.keys()

    def values(self) -> Iterable[Module]:
        return self._modules.values()

    def items(self) -> Iterable[tuple[str, Module]]:
        return self._modules.items()

    def pop(self, key: str) -> Module:
        return self._modules.pop(key)

    def clear(self) -> None:
        self._modules.clear()

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        for key, module in (modules.items() if isinstance(modules, Mapping) else modules):
            self[key] = module


class Identity(Module):
    """Returns its input unchanged (extra constructor arguments are ignored, as in torch).

    Shape:
        - Input: :math:`(*)`, any shape.
        - Output: :math:`(*)`, the same shape.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: Any) -> Any:  # noqa: A002
        return input
