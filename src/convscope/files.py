"""Reading the text files users give (specs, training histories) with errors that name them."""

from __future__ import annotations

import os
from pathlib import Path


def read_text(path: str | os.PathLike) -> str:
    """The UTF-8 text of ``path``, without the byte-order mark some editors (Notepad) write
    first; a file that is not UTF-8 text (an array, an image, another encoding) is a one-line
    ValueError naming the file and the first byte that is not."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})") from None
