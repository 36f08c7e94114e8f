"""``explain output-size``: ``(N − K + 2P)/S + 1``, generalised with dilation and floor/ceil,
worked step by step on the user's numbers.

Covers the non-integer case (PyTorch floors; the right-most cells are then never read — they
are named, and confirmed by the engine's gradient being exactly zero there), ceil mode with
its drop rule (a last window that would start in the right padding is dropped), and a
cross-check of every result against the engine's ``conv2d`` and ``max_pool2d`` on a real
``1×N`` tensor.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from .. import functional as F
from ..errors import ShapeError
from ..functional.windows import span, tap_slices
from ..tensor import Tensor
from ._common import positive, within_budget
from .explanation import Claims, Facts, Option, Topic, mark

_SHOWN = 6  # window starts and pixel lists longer than this are elided in the text


def _visited(n: int, k: int, p: int, s: int, d: int, out: int) -> np.ndarray:
    """Which cells of the padded input (plus any ceil-mode overhang) some window reads."""
    reach = (out - 1) * s + span(k, d)
    read = np.zeros(max(reach, n + 2 * p), bool)
    for t in range(k):
        read[tap_slices((t,), (s,), (d,), (out,))] = True
    return read


def _windows(n: int, k: int, p: int, s: int, d: int, out: int) -> dict:
    """The windows of one mode, in input coordinates (padding before pixel 0 is negative)."""
    read = _visited(n, k, p, s, d, out)
    last_start = (out - 1) * s - p
    last_end = last_start + span(k, d) - 1
    return {"count": out, "starts": [o * s - p for o in range(min(out, _SHOWN))], "last_start": last_start,
            "last_end": last_end, "unvisited_pixels": [int(i) for i in np.flatnonzero(~read[p:p + n])],
            "unvisited_tail": list(range(max(0, last_end + 1), n)),
            "unvisited_right_padding": max(0, (n + p) - max(n, last_end + 1)),
            "overhang": max(0, last_end - (n + p - 1))}


def _engine_widths(n: int, k: int, p: int, s: int, d: int) -> dict:
    """Output widths from the engine on a real ``(1, 1, 1, N)`` tensor, and which pixels get a
    zero gradient through conv2d (floor) and avg_pool2d (ceil mode; dilation 1 only)."""
    x = Tensor(np.ones((1, 1, 1, n)), requires_grad=True)
    y = F.conv2d(x, Tensor(np.ones((1, 1, 1, k))), stride=(1, s), padding=(0, p), dilation=(1, d))
    y.sum().backward()
    facts = {"conv2d": y.shape[-1], "conv2d_zero_grad_pixels": [int(i) for i in np.flatnonzero(x.grad[0, 0, 0] == 0)],
             "max_pool2d_floor": None, "max_pool2d_ceil": None, "pool_refused": None,
             "avg_pool2d_ceil_zero_grad_pixels": None}
    try:
        for mode in (False, True):
            pooled = F.max_pool2d(x.detach(), (1, k), (1, s), (0, p), (1, d), ceil_mode=mode)
            facts["max_pool2d_ceil" if mode else "max_pool2d_floor"] = pooled.shape[-1]
    except ShapeError as exc:
        facts["pool_refused"] = str(exc)
        return facts
    if d == 1:
        x.grad = None
        F.avg_pool2d(x, (1, k), (1, s), (0, p), ceil_mode=True).sum().backward()
        facts["avg_pool2d_ceil_zero_grad_pixels"] = [int(i) for i in np.flatnonzero(x.grad[0, 0, 0] == 0)]
    return facts


def compute(n: int, k: int, p: int, s: int, d: int, ceil: bool) -> tuple[Facts, Claims]:
    n, k, s, d = (positive("output-size", name, v) for name, v in (("n", n), ("k", k), ("s", s), ("d", d)))
    p = positive("output-size", "p", p, zero_ok=True)
    within_budget("output-size", f"a 1×{n} input", n + 2 * p, "use a smaller --n")
    effective, padded = span(k, d), n + 2 * p
    if effective > padded:
        raise ValueError(f"explain output-size: the kernel spans D·(K − 1) + 1 = {effective} cells but the padded "
                         f"input has N + 2P = {padded}; no window fits (use a smaller kernel or dilation, or pad more)")
    room = padded - effective
    floor_out = room // s + 1
    ceil_raw = -(-room // s) + 1
    ceil_last_start = (ceil_raw - 1) * s
    dropped = ceil_last_start >= n + p
    ceil_out = ceil_raw - 1 if dropped else ceil_raw
    engine = _engine_widths(n, k, p, s, d)
    floor_w, ceil_w = _windows(n, k, p, s, d, floor_out), _windows(n, k, p, s, d, ceil_out)
    facts = {"n": n, "k": k, "p": p, "s": s, "d": d, "ceil": bool(ceil), "effective": effective, "padded": padded,
             "room": room, "quotient": Fraction(room, s), "fraction_dropped": Fraction(room % s, s),
             "integer": room % s == 0, "floor_out": floor_out, "ceil_unchecked": ceil_raw,
             "ceil_last_start": ceil_last_start, "ceil_limit": n + p, "ceil_dropped": dropped,
             "ceil_out": ceil_out, "out": ceil_out if ceil else floor_out, "floor_windows": floor_w,
             "ceil_windows": ceil_w, "engine": engine}
    claims = {"floor formula equals the engine's conv2d output size": floor_out == engine["conv2d"],
              "exactly the never-visited pixels get zero gradient through conv2d":
                  engine["conv2d_zero_grad_pixels"] == floor_w["unvisited_pixels"]}
    if engine["pool_refused"] is None:
        claims["floor formula equals max_pool2d(ceil_mode=False)"] = floor_out == engine["max_pool2d_floor"]
        claims["ceil formula with the drop rule equals max_pool2d(ceil_mode=True)"] = (
            ceil_out == engine["max_pool2d_ceil"])
    if engine["avg_pool2d_ceil_zero_grad_pixels"] is not None:
        claims["in ceil mode, exactly the never-visited pixels get zero gradient through avg_pool2d"] = (
            engine["avg_pool2d_ceil_zero_grad_pixels"] == ceil_w["unvisited_pixels"])
    return facts, claims


def _pixels(indices: list[int]) -> str:
    if len(indices) > _SHOWN:
        return ", ".join(map(str, indices[:3])) + f", …, {indices[-1]} ({len(indices)} pixels)"
    return ", ".join(map(str, indices)) or "none"


def _starts(w: dict, s: int) -> str:
    starts = ", ".join(map(str, w["starts"]))
    return starts if w["count"] <= _SHOWN else f"{starts}, …, {w['last_start']}"


def _floor_story(f: Facts) -> list[str]:
    w = f["floor_windows"]
    lines = [f"What PyTorch does (floor, for every conv and by default for pooling): {w['count']} windows starting "
             f"at input pixel {_starts(w, f['s'])}{' (negative: padding)' if f['p'] else ''}; the last one covers "
             f"{w['last_start']}…{w['last_end']}."]
    tail = w["unvisited_tail"]
    if tail:
        plural = "s" if len(tail) > 1 else ""
        lines.append(f"  Never visited: input pixel{plural} {_pixels(tail)} — the right-most {len(tail)}, "
                     f"past the last window (floor drops the fractional part {f['fraction_dropped']} of the quotient).")
    elif not f["integer"] and w["unvisited_right_padding"]:
        lines.append(f"  Only padding is left unread: the last {w['unvisited_right_padding']} padding cell(s) on the "
                     f"right.")
    inner = [i for i in w["unvisited_pixels"] if i not in tail]
    if inner:
        lines.append(f"  Also never visited, between windows or between dilated taps: pixel {_pixels(inner)}.")
    if not w["unvisited_pixels"]:
        lines.append("  Every input pixel is read by some window.")
    return lines


def _ceil_story(f: Facts) -> list[str]:
    w = f["ceil_windows"]
    rule = (f"the last window would start at (ceil − 1)·S = {f['ceil_last_start']} (padded coordinates) ≥ N + P = "
            f"{f['ceil_limit']}, inside the right padding → dropped: {f['ceil_out']}" if f["ceil_dropped"] else
            f"the last window would start at (ceil − 1)·S = {f['ceil_last_start']} < N + P = {f['ceil_limit']} "
            f"→ kept: {f['ceil_out']}")
    lines = [f"Ceil mode (pooling only; conv has none): ceil({float(f['quotient']):g}) + 1 = {f['ceil_unchecked']}; "
             f"drop rule: {rule}.",
             f"  {w['count']} windows; the last covers {w['last_start']}…{w['last_end']}"]
    if w["overhang"]:
        lines[-1] += (f", {w['overhang']} cell(s) past the padded input (ignored: −∞ for max, not counted for "
                      f"average)")
    lines[-1] += f"; never visited: {_pixels(w['unvisited_pixels'])}."
    return lines


def render(f: Facts) -> list[str]:
    n, k, p, s, d = f["n"], f["k"], f["p"], f["s"], f["d"]
    q = f["quotient"]
    exact = (f"{q.numerator} (an integer)" if f["integer"] else
             f"{q.numerator}/{q.denominator} = {float(q):g} — not an integer")
    lines = [f"One spatial dimension: N = {n}, kernel K = {k}, padding P = {p}, stride S = {s}, dilation D = {d}.",
             "",
             f"  1. kernel span       D·(K − 1) + 1 = {d}·({k} − 1) + 1 = {f['effective']}",
             f"  2. padded input      N + 2P = {n} + 2·{p} = {f['padded']}",
             f"  3. room to slide     N + 2P − span = {f['padded']} − {f['effective']} = {f['room']}",
             f"  4. divide by stride  {f['room']} / {s} = {exact}",
             f"  5. floor + 1         floor({float(q):g}) + 1 = {f['floor_out']}",
             f"     ceil + 1          ceil({float(q):g}) + 1 = {f['ceil_unchecked']}"
             + (f", then the drop rule → {f['ceil_out']}" if f["ceil_dropped"] else ""),
             "  With D = 1 the span is K and this is the classic (N − K + 2P)/S + 1"
             + (f"; here D = {d}, so K is replaced by the span {f['effective']}." if d > 1 else "."),
             f"  Output size ({'ceil' if f['ceil'] else 'floor'} mode): {f['out']}",
             ""]
    lines += _floor_story(f) + [""] + _ceil_story(f)
    e = f["engine"]
    lines += ["", f"Cross-check on a real 1×{n} tensor (convscope engine):",
              f"  conv2d, kernel 1×{k}, stride {s}, padding {p}, dilation {d} → width {e['conv2d']} "
              f"{mark(e['conv2d'] == f['floor_out'])}"]
    if e["pool_refused"]:
        lines.append(f"  max_pool2d refuses these numbers: {e['pool_refused']}")
    else:
        lines.append(f"  max_pool2d(ceil_mode=False) → {e['max_pool2d_floor']} "
                     f"{mark(e['max_pool2d_floor'] == f['floor_out'])}; max_pool2d(ceil_mode=True) → "
                     f"{e['max_pool2d_ceil']} {mark(e['max_pool2d_ceil'] == f['ceil_out'])}")
    lines.append(f"  gradient of sum(conv2d) is exactly zero at pixel(s) {_pixels(e['conv2d_zero_grad_pixels'])} "
                 f"{mark(e['conv2d_zero_grad_pixels'] == f['floor_windows']['unvisited_pixels'])}")
    if e["avg_pool2d_ceil_zero_grad_pixels"] is not None:
        zero = e["avg_pool2d_ceil_zero_grad_pixels"]
        lines.append(f"  gradient of sum(avg_pool2d(ceil_mode=True)) is exactly zero at pixel(s) {_pixels(zero)} "
                     f"{mark(zero == f['ceil_windows']['unvisited_pixels'])}")
    return lines


TOPIC = Topic(
    name="output-size",
    title="Output size of a convolution or pooling, step by step",
    summary="(N − K + 2P)/S + 1 with dilation, floor and ceil mode, checked against the engine",
    options=(Option("n", int, 10, "input size N along one dimension"),
             Option("k", int, 3, "kernel size K"),
             Option("p", int, 0, "padding P on each side"),
             Option("s", int, 2, "stride S"),
             Option("d", int, 1, "dilation D"),
             Option("ceil", bool, False, "use ceil mode (pooling) for the final output size")),
    compute=compute,
    render=render,
    aliases=("output_size",),
)
