"""Spec text → a tree of statements.

A statement is the words of one line (or of one ``;``-separated part of a line), and, if it
ends in ``{``, the statements up to the matching ``}``. ``#`` starts a comment. Nothing here
knows what the words mean; :mod:`.builder` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .errors import SpecError

_PUNCTUATION = "{};"


@dataclass(frozen=True)
class Token:
    """One word (or ``{``, ``}``, ``;``, end of line) and where it starts (1-based)."""

    text: str
    line: int
    column: int


@dataclass
class Statement:
    """``words[0]`` is the layer or block keyword, the rest its arguments. ``body`` holds the
    statements between braces, or is None when the statement has no braces."""

    words: list[Token]
    body: list[Statement] | None = None
    brace: Token | None = field(default=None, repr=False)

    @property
    def head(self) -> Token:
        return self.words[0]

    @property
    def keyword(self) -> str:
        return normalise(self.head.text)


def normalise(word: str) -> str:
    """Keywords and option keys ignore case, ``_`` and ``-``: ``BatchNorm2d`` = ``batch_norm2d``."""
    return word.lower().replace("_", "").replace("-", "")


def tokenize(text: str) -> Iterator[Token]:
    """Words and punctuation with their positions; each line ends with a ``"\\n"`` token."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0]
        col = 0
        while col < len(line):
            char = line[col]
            if char.isspace():
                col += 1
            elif char in _PUNCTUATION:
                yield Token(char, number, col + 1)
                col += 1
            else:
                end = col
                while end < len(line) and not line[end].isspace() and line[end] not in _PUNCTUATION:
                    end += 1
                yield Token(line[col:end], number, col + 1)
                col = end
        yield Token("\n", number, len(line) + 1)


def parse(text: str) -> list[Statement]:
    """The statement tree of ``text``; unbalanced braces raise :class:`SpecError`."""
    root: list[Statement] = []
    open_blocks: list[Statement] = []  # innermost last; iterative, so nesting depth is unbounded
    words: list[Token] = []

    def current() -> list[Statement]:
        return open_blocks[-1].body if open_blocks else root  # type: ignore[return-value]

    def flush() -> None:
        if words:
            current().append(Statement(list(words)))
            words.clear()

    for token in tokenize(text):
        if token.text in ("\n", ";"):
            flush()
        elif token.text == "{":
            if not words:
                raise SpecError("'{' must follow a block keyword (residual, concat, branch, shortcut, repeat, "
                                "sequential)", line=token.line, column=token.column)
            block = Statement(list(words), body=[], brace=token)
            words.clear()
            current().append(block)
            open_blocks.append(block)
        elif token.text == "}":
            flush()
            if not open_blocks:
                raise SpecError("unexpected '}': no block is open", line=token.line, column=token.column)
            open_blocks.pop()
        else:
            words.append(token)
    flush()
    if open_blocks:
        block = open_blocks[-1]
        brace = block.brace or block.head
        raise SpecError(f"'{{' of '{block.head.text}' (line {block.head.line}) is never closed; add '}}'",
                        line=brace.line, column=brace.column)
    return root
