"""Statement tree → ``convscope.nn`` model.

The builder carries a meta tensor (shape only) through the spec: each layer is constructed
with the channel counts of the tensor that reaches it, then called on that tensor, so the
engine's own shape rules infer ``in_channels`` and validate every layer at load time. Any
error is raised at the statement's line and column.

Recursion follows the brace nesting of the text (a few levels), never the network's depth:
``repeat`` unrolls into a flat work list.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .. import nn
from ..errors import ShapeError
from ..tensor import Tensor
from .blocks import Concat, Residual
from .errors import SpecError, SpecShapeError
from .layers import TOKENS, bind, check_name, make_module, suggest
from .syntax import Statement, Token
from .values import POSITIVE, SHAPE

BLOCKS = ("residual", "concat", "branch", "shortcut", "repeat", "sequential")
BLOCK_ALIASES = {"seq": "sequential"}
KEYWORDS = tuple(sorted({*TOKENS, *BLOCKS, *BLOCK_ALIASES, "input"}))
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# The batch size of the meta tensor the spec is checked with: two, because batch norm without
# running statistics rightly refuses a batch of one, even in eval mode.
META_BATCH = 2
# The most statements one ``repeat`` may write out: far beyond real networks (building takes
# about 0.1 ms a layer), and a count with a few zeros too many is an error, not a hang.
MAX_UNROLLED = 100_000


def _attributes(container: nn.Module) -> frozenset[str]:
    """The names a child of ``container`` cannot take: the container's own attributes and
    methods (``training``, ``forward``, a residual block's ``shortcut``), which ``add_module`` refuses."""
    return frozenset(dir(container)) - set(container._modules)


_SEQUENTIAL_NAMES = _attributes(nn.Sequential())
_RESIDUAL_NAMES = _attributes(Residual(OrderedDict()))
_CONCAT_NAMES = _attributes(Concat(OrderedDict(branch=nn.Sequential())))
_MODEL_NAMES = _SEQUENTIAL_NAMES | {"input_shape"}  # the model's attribute, set after its children


def _error(token: Token, message: str) -> SpecError:
    return SpecError(message, line=token.line, column=token.column)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


@contextmanager
def _located(token: Token, layer: str) -> Iterator[None]:
    """Turn an engine error raised while building or running ``layer`` into a located one."""
    try:
        yield
    except SpecError:
        raise
    except ShapeError as err:
        raise SpecShapeError(err, layer=layer, line=token.line, column=token.column) from err
    except ValueError as err:
        raise SpecError(f"{layer}: {err}", line=token.line, column=token.column) from err
    except MemoryError as err:  # numpy's message names the size: "Unable to allocate 335. GiB for an array ..."
        raise SpecError(f"{layer}: its parameters do not fit in memory ({err or 'out of memory'}); use fewer "
                        "filters or features, or a smaller kernel", line=token.line, column=token.column) from err


def _shape_run(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` on a meta tensor, in eval mode: the shape rules are the same, and batch norm
    does not ask a batch of one for batch statistics."""
    module.eval()
    try:
        return module(x)
    finally:
        module.train()


@dataclass
class _Scope:
    """One container being filled: its path, children and the counters behind auto names."""

    path: str
    modules: OrderedDict[str, nn.Module] = field(default_factory=OrderedDict)
    defined: dict[str, Token] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    reserved: frozenset[str] = _SEQUENTIAL_NAMES

    def name(self, prefix: str, explicit: str | None, suffix: str, token: Token) -> str:
        """``explicit`` (+ the repeat suffix ``_2``), else ``prefix`` + its ordinal here: ``conv3``."""
        self.counts[prefix] += 1
        name = explicit + suffix if explicit else f"{prefix}{self.counts[prefix]}"
        if name in self.reserved:
            raise _error(token, f"the name '{name}' is reserved here (an attribute of its container); "
                                "choose another name=")
        if name in self.defined:
            raise _error(token, f"the name '{name}' is already used in this block (line {self.defined[name].line}); "
                                "give this layer another name=")
        self.defined[name] = token
        return name

    def add(self, name: str, module: nn.Module) -> None:
        self.modules[name] = module


class Builder:
    """Builds one model; ``locations`` maps each module path to the statement that made it."""

    def __init__(self) -> None:
        self.locations: dict[str, Token] = {}

    # --- top level ------------------------------------------------------------------------
    def model(self, statements: list[Statement]) -> nn.Sequential:
        if not statements or statements[0].keyword != "input":
            where = statements[0].head if statements else Token("", 1, 1)
            raise _error(where, "a spec starts with 'input' and the shape of one sample, e.g. 'input 1x28x28' "
                                "(channels x height x width, no batch dim)")
        shape = self._input_shape(statements[0])
        if len(statements) == 1:
            raise _error(statements[0].head, "the spec has no layers after 'input'")
        x = Tensor.meta((META_BATCH, *shape))
        modules, _ = self.sequence(statements[1:], x, "", reserved=_MODEL_NAMES)
        model = nn.Sequential(modules)
        model.input_shape = shape
        self._check(model, x)
        return model

    def _input_shape(self, stmt: Statement) -> tuple[int, ...]:
        if stmt.body is not None or len(stmt.words) != 2:
            raise _error(stmt.head, "input takes one shape, e.g. 'input 3x224x224'")
        token = stmt.words[1]
        try:
            return SHAPE(token.text)
        except ValueError as err:
            raise _error(token, f"input {err}") from None

    def _check(self, model: nn.Sequential, x: Tensor) -> None:
        """Run the assembled model once on the meta input (a safety net: each layer already ran)."""
        try:
            _shape_run(model, x)
        except ShapeError as err:
            path = (err.layer or "").split(" (")[0]
            token = self.locations.get(path, Token("", 1, 1))
            raise SpecShapeError(err, layer=err.layer or "model", line=token.line, column=token.column) from err

    # --- containers -----------------------------------------------------------------------
    def sequence(self, statements: list[Statement], x: Tensor, path: str,
                 reserved: frozenset[str] = _SEQUENTIAL_NAMES) -> tuple[OrderedDict[str, nn.Module], Tensor]:
        """Build ``statements`` in order on input ``x``: the named modules and the output."""
        scope = _Scope(path, reserved=reserved)
        pending = [(stmt, "") for stmt in reversed(statements)]
        while pending:
            stmt, suffix = pending.pop()
            if stmt.keyword == "repeat":
                body, count = self._repeat(stmt)
                for index in range(count, 0, -1):
                    pending.extend((inner, f"{suffix}_{index}") for inner in reversed(body))
            else:
                x = self.statement(stmt, x, scope, suffix)
        return scope.modules, x

    def statement(self, stmt: Statement, x: Tensor, scope: _Scope, suffix: str) -> Tensor:
        keyword = BLOCK_ALIASES.get(stmt.keyword, stmt.keyword)
        if keyword == "input":
            raise _error(stmt.head, "input may appear only once, as the first statement")
        if keyword in ("branch", "shortcut"):
            parent = "concat" if keyword == "branch" else "residual"
            raise _error(stmt.head, f"{keyword} belongs directly inside {parent} {{ ... }}")
        if keyword in ("residual", "concat", "sequential"):
            if stmt.body is None:
                raise _error(stmt.head, f"{keyword} needs a body in braces: {keyword} {{ ... }}")
            name = scope.name("block", bind_block(stmt), suffix, stmt.head)
            build = {"residual": self.residual, "concat": self.concat, "sequential": self.sequential}[keyword]
            module, y = build(stmt, x, _join(scope.path, name))
        else:
            name, module, y = self.layer(stmt, x, scope, suffix)
        scope.add(name, module)
        return y

    def _repeat(self, stmt: Statement) -> tuple[list[Statement], int]:
        if len(stmt.words) != 2:
            raise _error(stmt.head, "repeat takes one count, e.g. 'repeat 3 { ... }'")
        try:
            count = POSITIVE(stmt.words[1].text)
        except ValueError as err:
            raise _error(stmt.words[1], f"repeat {err}") from None
        if not stmt.body:
            raise _error(stmt.head, "repeat needs a non-empty body in braces: repeat 3 { ... }")
        total = count * self._unrolled(stmt.body)
        if total > MAX_UNROLLED:
            raise _error(stmt.words[1], f"repeat {count} would write out {total:,} statements, more than the "
                                        f"{MAX_UNROLLED:,} a spec may unroll; use a smaller count")
        return stmt.body, count

    def _unrolled(self, statements: list[Statement]) -> int:
        """How many statements ``statements`` become with every ``repeat`` written out."""
        total = 0
        for stmt in statements:
            if stmt.keyword == "repeat":
                body, count = self._repeat(stmt)
                total += count * self._unrolled(body)
            else:
                total += 1 + self._unrolled(stmt.body or [])
        return total

    def residual(self, stmt: Statement, x: Tensor, path: str) -> tuple[nn.Module, Tensor]:
        body_statements = [s for s in stmt.body or [] if s.keyword != "shortcut"]
        shortcuts = [s for s in stmt.body or [] if s.keyword == "shortcut"]
        if len(shortcuts) > 1:
            raise _error(shortcuts[1].head, "a residual block has at most one shortcut")
        if not body_statements:
            raise _error(stmt.head, "residual needs at least one layer in its body")
        body, out = self.sequence(body_statements, x, path, reserved=_RESIDUAL_NAMES)
        shortcut: nn.Module | None = None
        short_out = x
        if shortcuts:
            shortcut, short_out = self.shortcut(shortcuts[0], x, path)
        elif out.shape != x.shape:
            shortcut, short_out = self.projection(stmt, x, out, body, path)
        module = Residual(body, shortcut)
        with _located(stmt.head, f"{path} (Residual)"):
            y = Residual.combine(out, short_out)
        self.locations[path] = stmt.head
        return module, y

    def shortcut(self, stmt: Statement, x: Tensor, path: str) -> tuple[nn.Module, Tensor]:
        """``shortcut { ... }`` or the one-layer form ``shortcut conv 64 k1 s2``."""
        if stmt.body is not None and len(stmt.words) > 1:
            raise _error(stmt.words[1], "shortcut takes either one layer on its line or a { ... } body, not both")
        statements = stmt.body if stmt.body is not None else [Statement(stmt.words[1:])] if len(stmt.words) > 1 else []
        if not statements:
            raise _error(stmt.head, "shortcut needs a layer, e.g. 'shortcut conv 64 k1 s2', or a { ... } body")
        modules, out = self.sequence(statements, x, _join(path, "shortcut"))
        return nn.Sequential(modules), out

    def projection(self, stmt: Statement, x: Tensor, out: Tensor, body: OrderedDict[str, nn.Module],
                   path: str) -> tuple[nn.Module, Tensor]:
        """ResNet's projection shortcut for a body that changes the shape: a 1×1 conv (no bias)
        with the body's output channels and the stride that maps the input size to the output
        size, then batch norm if the body has one."""
        head = stmt.head
        if len(out.shape) != len(x.shape) or len(x.shape) < 3:
            raise _error(head, f"the residual body maps shape {x.shape} to {out.shape}; no 1×1 conv projects one onto "
                               "the other. Write the shortcut yourself: shortcut { ... }")
        strides = []
        for n_in, n_out in zip(x.shape[2:], out.shape[2:]):
            stride = next((s for s in range(1, n_in + 1) if (n_in - 1) // s + 1 == n_out), None)
            if stride is None:
                raise _error(head, f"the residual body maps shape {x.shape} to {out.shape}; no strided 1×1 conv maps "
                                   f"size {n_in} to {n_out}. Write the shortcut yourself: shortcut {{ ... }}")
            strides.append(stride)
        has_bn = any(isinstance(m, _BATCH_NORMS) for child in body.values() for m in child.modules())
        words = [Token(text, head.line, head.column) for text in
                 ("conv", str(out.shape[1]), "k1", "s" + "x".join(map(str, strides)), "bias=off")]
        statements = [Statement(words)] + ([Statement([Token("bn", head.line, head.column)])] if has_bn else [])
        modules, short_out = self.sequence(statements, x, _join(path, "shortcut"))
        return nn.Sequential(modules), short_out

    def concat(self, stmt: Statement, x: Tensor, path: str) -> tuple[nn.Module, Tensor]:
        scope = _Scope(path, reserved=_CONCAT_NAMES)
        outputs = []
        for branch in stmt.body or []:
            if branch.keyword != "branch":
                raise _error(branch.head, "only 'branch { ... }' goes directly inside concat; "
                                          f"got '{branch.head.text}'")
            if branch.body is None:
                raise _error(branch.head, "branch needs a body in braces (empty braces pass the input through)")
            name = scope.name("branch", bind_block(branch), "", branch.head)
            modules, out = self.sequence(branch.body, x, _join(path, name))
            scope.add(name, nn.Sequential(modules))
            self.locations[_join(path, name)] = branch.head
            outputs.append(out)
        if len(outputs) < 2:
            raise _error(stmt.head, f"concat needs at least 2 branches, got {len(outputs)}")
        module = Concat(scope.modules)
        with _located(stmt.head, f"{path} (Concat)"):
            y = Concat.combine(outputs, list(scope.modules))
        self.locations[path] = stmt.head
        return module, y

    def sequential(self, stmt: Statement, x: Tensor, path: str) -> tuple[nn.Module, Tensor]:
        if not stmt.body:
            raise _error(stmt.head, "sequential needs at least one layer in its body")
        modules, y = self.sequence(stmt.body, x, path)
        self.locations[path] = stmt.head
        return nn.Sequential(modules), y

    # --- layers ---------------------------------------------------------------------------
    def layer(self, stmt: Statement, x: Tensor, scope: _Scope, suffix: str) -> tuple[str, nn.Module, Tensor]:
        head = stmt.head
        if stmt.keyword not in TOKENS:
            raise _error(head, f"unknown layer type '{head.text}'.{suggest(head.text, KEYWORDS)}")
        if stmt.body is not None:
            raise _error(head, f"{head.text} is a layer and takes no {{ ... }} body; blocks are "
                               f"{', '.join(BLOCKS)}")
        kind, nd = TOKENS[stmt.keyword]
        args = bind(kind, stmt.words)
        name = scope.name(kind.auto_prefix, args.name, suffix, head)
        path = _join(scope.path, name)
        cls = kind.class_for(x.shape, nd, args)
        with _located(head, f"{path} ({cls.__name__})"):
            module = make_module(kind, cls, args, x.shape)
            y = _shape_run(module, x)
        self.locations[path] = head
        return name, module, y


def bind_block(stmt: Statement) -> str | None:
    """The ``name=`` of a block statement (the only argument blocks take)."""
    name = None
    for token in stmt.words[1:]:
        key, _, raw = token.text.partition("=")
        if key.lower() != "name" or not raw:
            raise _error(token, f"{stmt.head.text} takes only name=..., got '{token.text}'")
        if name is not None:
            raise _error(token, f"{stmt.head.text}: name is given twice")
        name = check_name(raw, token, len(key) + 1)
    return name


def build(statements: list[Statement]) -> nn.Sequential:
    """The model for a parsed spec."""
    return Builder().model(statements)
