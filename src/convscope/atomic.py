"""Atomic file writes: a reader, or a crash, never sees a half-written file.

:func:`write_atomic` writes to a temporary file in the target's folder, flushes it to disk,
optionally verifies it, and renames it over the target (:func:`os.replace`). Checkpoints,
training logs, ONNX files and figures all go through it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None],
                 verify: Callable[[Path], Any] | None = None) -> Path:
    """Create or replace ``path`` atomically: ``write(fh)`` fills a temporary file in the same
    folder, which is flushed to disk, checked with ``verify(temp_path)`` (which raises if the
    file is bad) and renamed over ``path``. On any failure the temporary file is removed and
    the previous file at ``path`` is untouched. The file gets the mode a plain ``open`` would
    give it (0666 less the umask)."""
    path = Path(path)
    # not tempfile.mkstemp: its 0600 mode would stick to the file after the rename
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError as exc:  # from mkdir: the folder named is a file (the temporary name is new)
        raise OSError(errno.ENOTDIR, f"cannot write {path}: {path.parent} is a file, not a folder") from exc
    except OSError as exc:
        raise cannot_write(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise cannot_write(path, exc) from exc
        raise
    _sync_folder(path.parent)
    return path


def cannot_write(path: Path, exc: OSError) -> OSError:
    """``exc`` retold about ``path``: the temporary file it may name is ours, not the user's
    (``cannot write out/d.png: Is a directory``)."""
    return OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}")


def _sync_folder(folder: Path) -> None:
    """Make the rename durable where the platform allows it (POSIX); best effort."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
