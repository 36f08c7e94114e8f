"""Cost charts from :func:`convscope.summary`: parameters, MACs and activation memory per
layer (or per block), and the share of each layer kind ("where does the compute go").

The numbers are the summary's own (:class:`CostBars` holds exactly what is drawn); the
chart only formats them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..analyze import Summary, summary
from ..analyze.render import human
from ..models import resolve_model
from . import style
from .figure import new_figure, save

MAX_BARS = 70


@dataclass
class CostBars:
    """One bar per layer (or per module at ``depth``), in execution order."""

    labels: list[str]
    params: list[int]
    macs: list[int]
    memory: list[int]  # bytes of the layers' outputs (summed over a module's layers)
    depth: int | None


def _grouped(s: Summary, depth: int) -> CostBars:
    modules = s.by_module(depth)
    memory: dict[str, int] = {}
    for r in s.rows:  # the same path prefix by_module groups by
        key = ".".join(r.name.split(".")[:depth])
        memory[key] = memory.get(key, 0) + r.activation_bytes
    return CostBars([m["name"] for m in modules], [m["params"] for m in modules], [m["macs"] for m in modules],
                    [memory[m["name"]] for m in modules], depth)


def cost_bars(s: Summary, depth: int | None = None, max_bars: int = MAX_BARS) -> CostBars:
    """The bars of :func:`costs`: per layer, or per module path prefix of ``depth`` parts.

    Without ``depth``, a summary with more than ``max_bars`` rows is grouped at the deepest
    depth that gives at most ``max_bars`` bars.
    """
    if depth is not None:
        if depth < 1:
            raise ValueError(f"depth must be ≥ 1, got {depth}")
        return _grouped(s, depth)
    if len(s.rows) <= max_bars:
        return CostBars([f"{r.name} ({r.type})" for r in s.rows], [r.params for r in s.rows],
                        [r.macs for r in s.rows], [r.activation_bytes for r in s.rows], None)
    deepest = max(r.name.count(".") + 1 for r in s.rows)
    fitting = [d for d in range(1, deepest + 1) if len(s.by_module(d)) <= max_bars]
    return _grouped(s, max(fitting) if fitting else 1)


def compact(value: float) -> str:
    """Tick text: ``250000`` → ``250K``, ``1.5e9`` → ``1.5G``."""
    for suffix, size in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def _bar_panel(ax: Any, labels: list[str], values: list[int], title: str, color: str, log: bool, unit: str) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    y = list(range(len(values)))
    ax.barh(y, values, color=color, edgecolor="none", height=0.75)
    ax.set_yticks(y, labels if ax.get_subplotspec().is_first_col() else [""] * len(y))
    ax.invert_yaxis()
    ax.set_title(title, loc="left")
    if log:
        ax.set_xscale("log", nonpositive="clip")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: compact(v) + unit))
    top = max(values, default=0)
    for yi, v in zip(y, values):
        if v:
            ax.text(v, yi, f" {human(v)}", va="center", fontsize=style.SMALL_SIZE - 1, color=style.TEXT)
    if top and not log:
        ax.set_xlim(0, top * 1.22)
    elif top:
        ax.set_xlim(right=top * 8)
    ax.grid(axis="x", color=style.GRID, linewidth=0.6)
    ax.set_axisbelow(True)


def draw_costs(s: Summary, bars: CostBars, *, log: bool = False) -> Any:
    n = len(bars.labels)
    longest = max((len(label) for label in bars.labels), default=10)
    fig = new_figure(3 * 3.1 + 0.075 * longest, 1.5 + 0.2 * n)
    left = 0.075 * longest / fig.get_figwidth() + 0.02
    grid = fig.add_gridspec(1, 3, left=left, right=0.98, top=1 - 1.0 / fig.get_figheight(),
                            bottom=0.45 / fig.get_figheight(), wspace=0.12)
    panels = [("parameters", bars.params, style.OKABE_ITO["blue"], ""),
              ("MACs (multiply-accumulates)", bars.macs, style.OKABE_ITO["vermillion"], ""),
              ("activation memory (output bytes)", bars.memory, style.OKABE_ITO["bluish_green"], "B")]
    for k, (title, values, color, unit) in enumerate(panels):
        _bar_panel(fig.add_subplot(grid[0, k]), bars.labels, values, title, color, log, unit)
    t = s.totals
    shape = "×".join(map(str, s.input_shapes[0][1:]))
    per = "layer" if bars.depth is None else f"module (path depth {bars.depth})"
    fig.suptitle(f"{s.model_name}: cost per {per}, input {shape}, batch 1\n{human(t.params)} parameters, "
                 f"{human(t.macs)} MACs in total ({s.convention} convention){'; log scales' if log else ''}",
                 x=0.01, ha="left", y=1 - 0.12 / fig.get_figheight(), va="top", fontsize=style.TITLE_SIZE)
    return fig


def cost_chart(model: Any, input_shape: Sequence[int] | None = None, *, log: bool = False, depth: int | None = None,
          convention: str = "convscope", out: str | Path | None = None) -> Any:
    """Bar charts of parameters, MACs and activation memory per layer (per module with
    ``depth``; large models are grouped automatically); ``log`` for log-scale axes."""
    found = resolve_model(model)
    s = summary(found.module, found.sample_shape(input_shape, "costs"), convention=convention).raise_for_error()
    s.model_name = _name(model, s.model_name)
    fig = draw_costs(s, cost_bars(s, depth), log=log)
    if out is not None:
        save(fig, out)
    return fig


def _name(model: Any, fallback: str) -> str:
    return str(model) if isinstance(model, (str, Path)) else fallback


def type_shares(s: Summary) -> list[dict]:
    """:meth:`Summary.by_type` rows that cost anything, by MACs (the chart's data)."""
    return [k for k in s.by_type() if k["macs"] or k["params"]]


def share_chart(model: Any, input_shape: Sequence[int] | None = None, *, convention: str = "convscope",
          out: str | Path | None = None) -> Any:
    """Where the compute and the parameters go: each layer kind's share of the MACs and of
    the parameters (MobileNet's Table 2 as a chart)."""
    found = resolve_model(model)
    s = summary(found.module, found.sample_shape(input_shape, "share"), convention=convention).raise_for_error()
    kinds = type_shares(s)
    labels = [f"{k['type']} ×{k['layers']}" for k in kinds]
    fig = new_figure(9.5, 1.6 + 0.3 * len(kinds))
    grid = fig.add_gridspec(1, 2, left=0.27, right=0.97, top=1 - 0.95 / fig.get_figheight(),
                            bottom=0.5 / fig.get_figheight(), wspace=0.1)
    for k, (key, title, color) in enumerate([("macs", "share of MACs", style.OKABE_ITO["vermillion"]),
                                             ("params", "share of parameters", style.OKABE_ITO["blue"])]):
        ax = fig.add_subplot(grid[0, k])
        shares = [100 * kind[f"{key}_share"] for kind in kinds]
        y = list(range(len(kinds)))
        ax.barh(y, shares, color=color, height=0.7)
        ax.set_yticks(y, labels if k == 0 else [""] * len(y))
        ax.invert_yaxis()
        ax.set_xlim(0, 118)
        ax.set_xlabel("% of the model's total")
        ax.set_title(title, loc="left")
        for yi, value, kind in zip(y, shares, kinds):
            ax.text(value, yi, f" {value:.1f}% ({human(kind[key])})", va="center", fontsize=style.SMALL_SIZE)
        ax.grid(axis="x", color=style.GRID, linewidth=0.6)
        ax.set_axisbelow(True)
    fig.suptitle(f"{_name(model, s.model_name)}: where the compute goes, by layer kind\n{human(s.totals.macs)} "
                 f"MACs, {human(s.totals.params)} parameters in total ({s.convention} convention)",
                 x=0.01, ha="left", y=1 - 0.12 / fig.get_figheight(), va="top", fontsize=style.TITLE_SIZE)
    if out is not None:
        save(fig, out)
    return fig
