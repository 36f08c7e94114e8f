"""A progress bar on stderr for library work that takes seconds (drawn by rich, and only when
stderr is a terminal: logs, pipes and tests see nothing)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def steps(total: int, description: str, enabled: bool = True) -> Iterator[Callable[[], None]]:
    """Yields ``advance()``, to call once per finished step of ``total``. While the block runs,
    a bar with the count and the elapsed time stands on stderr, then disappears; without a
    terminal, or when not ``enabled``, ``advance`` does nothing."""
    if not (enabled and sys.stderr.isatty()):
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("", total=total)
        yield lambda: bar.advance(task)
