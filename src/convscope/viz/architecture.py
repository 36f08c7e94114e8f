"""Architecture diagrams: the graph of :mod:`.graph` laid out top to bottom and drawn.

Layout: a node's rank (row) is its longest path from the input; its column follows its
producer (a branch takes the next free column, a merge the leftmost of its inputs). Edges
that would cross boxes are routed through the gutter beside a column. Each group (an
inception module, a residual block) is a labelled box; ``gid`` ``group-<name>`` marks its
box and label in SVG output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import style
from .figure import new_figure, save
from .graph import Graph, Node, build_graph

COLUMN = 2.35   # inches per column
ROW = 0.6       # inches per rank
BOX_W = 2.05
BOX_H = 0.4
MARGIN = 0.25
LABELS = 2.3    # width of the group-label column on the right
GUTTER = 0.07   # distance of a routed edge from the box it passes
GROUP_PAD = 0.13
MIN_WIDTH = 6.0
HEADER = 0.75   # title and legend


@dataclass
class Layout:
    """Grid position (column, rank) of every node id."""

    position: dict[int, tuple[int, int]]
    columns: int
    ranks: int

    def occupied(self, column: int, ranks: range) -> bool:
        return any((column, r) in self._taken for r in ranks)

    def __post_init__(self) -> None:
        self._taken = set(self.position.values())


def _is_shortcut(graph: Graph, node: Node, consumers: dict[int, list[int]]) -> bool:
    """A one-node side path into a two-input merge (a projection shortcut): drawn beside
    the main path instead of in front of it."""
    after = consumers.get(node.id, [])
    return len(after) == 1 and graph.node(after[0]).family == "merge" and len(graph.node(after[0]).inputs) == 2


def layout(graph: Graph) -> Layout:
    consumers: dict[int, list[int]] = {}
    for n in graph.nodes:
        for p in n.inputs:
            consumers.setdefault(p, []).append(n.id)
    rank: dict[int, int] = {}
    for n in graph.nodes:
        rank[n.id] = 1 + max((rank[p] for p in n.inputs), default=-1)
    column: dict[int, int] = {}
    taken: set[tuple[int, int]] = set()
    for n in graph.nodes:
        if len(n.inputs) > 1:
            col = min(column[p] for p in n.inputs)
        elif n.inputs:
            parent = n.inputs[0]
            siblings = [c for c in consumers[parent] if len(graph.node(c).inputs) == 1]
            siblings.sort(key=lambda c: _is_shortcut(graph, graph.node(c), consumers))
            col = column[parent] + siblings.index(n.id)
        else:
            col = 0
        while (col, rank[n.id]) in taken:
            col += 1
        column[n.id] = col
        taken.add((col, rank[n.id]))
    position = {i: (column[i], rank[i]) for i in rank}
    return Layout(position, max(column.values()) + 1, max(rank.values()) + 1)


def _centre(lay: Layout, node_id: int) -> tuple[float, float]:
    col, r = lay.position[node_id]
    return MARGIN + col * COLUMN + COLUMN / 2, HEADER + MARGIN + r * ROW + BOX_H / 2


def route(lay: Layout, source: int, target: int) -> list[tuple[float, float]]:
    """Polyline from the bottom of ``source`` to the top of ``target`` that avoids boxes:
    straight down, or with right-angle bends in the gaps between ranks, or through the
    gutter right of a column when both columns are blocked."""
    (cs, rs), (ct, rt) = lay.position[source], lay.position[target]
    (xs, ys), (xt, yt) = _centre(lay, source), _centre(lay, target)
    start, end = (xs, ys + BOX_H / 2), (xt, yt - BOX_H / 2)
    between = range(rs + 1, rt)
    below, above = start[1] + (ROW - BOX_H) / 2, end[1] - (ROW - BOX_H) / 2
    if not lay.occupied(ct, between):
        return [start, end] if cs == ct else [start, (xs, below), (xt, below), end]
    if not lay.occupied(cs, between):
        return [start, (xs, above), (xt, above), end]
    gutter = MARGIN + max(cs, ct) * COLUMN + COLUMN / 2 + BOX_W / 2 + GUTTER
    return [start, (xs, below), (gutter, below), (gutter, above), (xt, above), end]


def _light(color: str, amount: float = 0.45) -> tuple[float, float, float]:
    """``color`` mixed with ``amount`` of white, so black text on it stays legible."""
    from matplotlib.colors import to_rgb

    return tuple(c + (1 - c) * amount for c in to_rgb(color))


def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def draw(graph: Graph, *, title: str | None = None) -> Any:
    """The diagram of ``graph`` as a matplotlib Figure."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle
    from matplotlib.path import Path as MplPath

    lay = layout(graph)
    width = max(MIN_WIDTH, 2 * MARGIN + lay.columns * COLUMN + LABELS)
    height = HEADER + 2 * MARGIN + lay.ranks * ROW
    fig = new_figure(width, height)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()
    input_shape = _shape_text(graph.nodes[0].output_shape)
    ax.text(MARGIN, 0.22, title or f"{graph.model}: input {input_shape}", fontsize=style.TITLE_SIZE,
            fontweight="bold", va="center", color=style.TEXT)
    ax.text(MARGIN, 0.45, f"{graph.layers} layer calls and ops as {len(graph.nodes) - 1} nodes: norms, activations "
            "and dropout fold into their producer; shapes C×H×W",
            fontsize=style.SMALL_SIZE, va="center", color=style.MUTED)
    families = list(dict.fromkeys(n.family for n in graph.nodes[1:]))
    x = MARGIN
    for family in families:
        ax.add_patch(Rectangle((x, 0.58), 0.14, 0.11, facecolor=_light(style.FAMILY_COLORS.get(family, "#DDDDDD")),
                               edgecolor=style.TEXT, linewidth=0.5))
        ax.text(x + 0.19, 0.635, family, fontsize=style.SMALL_SIZE, va="center", color=style.TEXT)
        x += 0.35 + 0.065 * len(family)
    label_x = MARGIN + lay.columns * COLUMN + 0.1
    for group in graph.groups:
        boxes = [_centre(lay, i) for i in group.nodes]
        x0 = min(b[0] for b in boxes) - BOX_W / 2 - GROUP_PAD
        x1 = max(b[0] for b in boxes) + BOX_W / 2 + GROUP_PAD
        y0 = min(b[1] for b in boxes) - BOX_H / 2 - 0.07
        y1 = max(b[1] for b in boxes) + BOX_H / 2 + 0.07
        gid = f"group-{group.name}"
        for depth in range(min(group.repeat - 1, 2), 0, -1):  # a stack of cards: this block repeats
            ax.add_patch(FancyBboxPatch((x0 + 0.05 * depth, y0 + 0.05 * depth), x1 - x0, y1 - y0,
                                        boxstyle="round,pad=0,rounding_size=0.06", facecolor="#E6E6E6",
                                        edgecolor=style.MUTED, linewidth=0.6, zorder=0))
        ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0,rounding_size=0.06",
                                    facecolor="#F2F2F2", edgecolor=style.MUTED, linewidth=0.8, linestyle="--",
                                    gid=gid, zorder=0))
        ax.plot([x1, label_x - 0.03], [y0 + 0.12, y0 + 0.12], color=style.GRID, linewidth=0.8, zorder=0)
        out = graph.node(group.nodes[-1]).output_shape
        ax.text(label_x, y0 + 0.12, f"{group.title()}\n→ {_shape_text(out)}", fontsize=style.SMALL_SIZE,
                va="top", color=style.TEXT, gid=f"{gid}-label",
                fontweight="bold" if group.repeat > 1 else "normal")
    for source, target in graph.edges():
        points = route(lay, source, target)
        codes = [MplPath.MOVETO] + [MplPath.LINETO] * (len(points) - 1)
        ax.add_patch(FancyArrowPatch(path=MplPath(points, codes), arrowstyle="-|>,head_length=3,head_width=1.6",
                                     color="#555555", linewidth=0.8, zorder=1, shrinkA=0, shrinkB=0))
    for n in graph.nodes:
        xc, yc = _centre(lay, n.id)
        fill = _light(style.FAMILY_COLORS.get(n.family, style.FAMILY_COLORS["other"]))
        ax.add_patch(FancyBboxPatch((xc - BOX_W / 2, yc - BOX_H / 2), BOX_W, BOX_H,
                                    boxstyle="round,pad=0,rounding_size=0.05", facecolor=fill,
                                    edgecolor=style.TEXT, linewidth=1.2 if n.repeat > 1 else 0.6, zorder=2,
                                    gid=f"node-{n.id}"))
        head = n.text() if n.id else "input"
        shape = _shape_text(n.output_shape)
        sub = f"{n.name} · {shape}" if n.block is None and n.id and not n.name.split(".")[-1].isdigit() else shape
        if n.repeat > 1:
            sub = f"{n.name} – {n.last} · {shape}"
        ax.text(xc, yc - 0.075, head, ha="center", va="center", fontsize=style.SMALL_SIZE, color=style.TEXT,
                zorder=3, fontweight="bold" if n.repeat > 1 else "normal")
        ax.text(xc, yc + 0.095, sub, ha="center", va="center", fontsize=style.SMALL_SIZE - 0.5,
                color="#333333", zorder=3)
    return fig


def architecture_diagram(model: Any, input_shape: Sequence[int] | None = None, *, collapse: int = 3,
                 out: str | Path | None = None) -> Any:
    """The architecture diagram of ``model`` (a Module, ``"digits"``, a zoo name or a spec
    file): returns the Figure, and writes it to ``out`` (.png/.svg/.pdf) when given.

    ``collapse``: draw one of each run of at least this many identical consecutive blocks
    with a repeat count (0: draw every block).
    """
    fig = draw(build_graph(model, input_shape, collapse=collapse))
    if out is not None:
        save(fig, out)
    return fig
