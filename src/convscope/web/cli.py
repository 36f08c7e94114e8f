"""``convscope serve [MODEL] [--port 8000] [--host 127.0.0.1]``: start the web explorer.

Binds 127.0.0.1 by default and prints the URL; another ``--host`` gets a warning (the
server has no authentication). ``MODEL`` is shown first: ``digits`` (default) or any other
model :mod:`convscope.models` names (a zoo name; a spec or ``.onnx`` file, a training run
or ``FILE.py:FUNCTION`` read from the local disk once, at start).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path
from typing import Any

from ..files import read_text
from ..models import EXPECTED


def add_cli(subparsers: Any) -> None:
    """Register the ``serve`` sub-command (its ``run`` returns the exit code)."""
    p = subparsers.add_parser("serve", help="start the web explorer on this machine (127.0.0.1)",
                              description="Start a local web page for exploring a model: its architecture, every "
                                          "layer's feature maps, how any value was computed, a digit you draw, "
                                          "and a convolution playground. JSON API documented at /docs.")
    p.add_argument("model", nargs="?", default="digits", help=f"model shown first (default digits): {EXPECTED}")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--max-macs", type=_macs, default=None,
                   help="largest forward pass the server runs, in MACs (default 2.5e9)")
    p.set_defaults(run=run)


def _macs(text: str) -> int:
    """``--max-macs``: a whole number of MACs ≥ 1, written as an int or a float (``2.5e9``)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 1 or not value.is_integer():  # nan, inf and 2.5 too
        raise argparse.ArgumentTypeError(f"expected a whole number of MACs ≥ 1 such as 2.5e9, got {text!r}")
    return int(value)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _default_model(app: Any, model: str) -> str:
    """The id of ``model`` (a MODEL, or the id ``zoo:NAME``) in ``app``'s store; a spec or
    ONNX file is read now and added as an upload, a run or Python builder loaded now."""
    from ..models import model_kind, resolve_model
    from .errors import ApiError
    from .store import DIGITS, local_entry
    from .upload import onnx_entry, spec_entry

    text = model.removeprefix("zoo:")
    kind = model_kind(text)
    store = app.state.store
    if kind in ("digits", "zoo"):
        return store.get(DIGITS if kind == "digits" else f"zoo:{text}").id
    path = Path(text)
    shown, name = ("spec", "spec") if "\n" in text else (str(path), path.name)  # spec text, or a file
    try:
        with store.engine:
            if kind == "onnx":
                entry = onnx_entry(path.read_bytes(), name, None)
            elif kind == "spec":
                entry = spec_entry(text if "\n" in text else read_text(path), name, store.limits)
            else:
                entry = local_entry(resolve_model(text, weights=True))
    except ApiError as err:  # a spec's message starts with its name and line: the path as given
        message = err.message.removeprefix(f"{name}:")
        raise ValueError(f"{shown}:{message}" if message != err.message else f"{shown}: {message}") from None
    return store.add(entry).id


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .app import create_app
        from .background import bind
        from .limits import Limits
    except ImportError as err:
        print(f"convscope serve: error: the web explorer needs FastAPI and uvicorn ({err.name} is missing): "
              "pip install 'convscope[web]'", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must lie in 0 … 65535, got {args.port}")
    limits = Limits() if args.max_macs is None else Limits(max_macs=args.max_macs)
    app = create_app(limits)
    app.state.default_model = _default_model(app, args.model)
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    if not is_loopback(args.host):
        print(f"convscope serve: warning: listening on {args.host}, reachable from other machines; the explorer has "
              "no authentication and runs models for anyone who can reach it", file=sys.stderr)
    shown = f"[{host}]" if ":" in host else host
    print(f"convscope explorer: http://{shown}:{port}/  (API: http://{shown}:{port}/docs; Ctrl+C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
    return 0
