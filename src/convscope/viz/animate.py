"""Convolution animations: the frames of :mod:`.frames` drawn with Pillow and written as a GIF.

Each input channel is one row: the (padded) input with the window's cells outlined in its
group's colour, then ``× kernel = products`` and the channel's sum; on the right the output
fills in cell by cell. A transposed convolution shows each input cell scattering the kernel
onto the canvas (the output is the canvas inside the black frame, plus bias); pooling shows
the window and the max (winner outlined) or the average with its divisor. 3-d inputs are
drawn as their depth slices side by side. Numbers are printed in the cells while grids are
small. Drawing with Pillow directly keeps a 7×7, 3×3 animation well under a second.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomic
from . import style
from .frames import OVERHANG, PAD, REAL, Animation, Frame

A = style.ANIMATION
SLICE_GAP = 8
MAX_CHANNELS = 16
MAX_CELLS = 40  # per spatial dim of any drawn grid
_ASCII = str.maketrans({"×": "x", "Σ": "sum ", "−": "-", "·": "*", "→": "->", "∞": "inf", "–": "-", "⌊": "",
                        "⌋": ""})


def _pillow() -> Any:
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise ValueError("convscope.viz animations need Pillow: pip install 'convscope[viz]'") from None
    return Image, ImageDraw, ImageFont


def _font_path() -> str | None:
    """DejaVu Sans from matplotlib's data (found without importing matplotlib)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    return str(path) if path.is_file() else None


@dataclass
class _Fonts:
    normal: Any
    small: Any
    title: Any
    bold: Any
    ascii_only: bool
    cache: dict = field(default_factory=dict)  # (text, font, anchor, ink) -> (solid, mask, dx, dy)


def _fonts() -> _Fonts:
    _, _, ImageFont = _pillow()
    path = _font_path()
    if path is None:  # Pillow's own font: no ×, Σ or −, so text falls back to ASCII
        return _Fonts(*(ImageFont.load_default(size) for size in (A["font"], A["small_font"], A["title_font"],
                                                                   A["font"])), True)
    bold = str(Path(path).with_name("DejaVuSans-Bold.ttf"))
    return _Fonts(ImageFont.truetype(path, A["font"]), ImageFont.truetype(path, A["small_font"]),
                  ImageFont.truetype(bold if Path(bold).is_file() else path, A["title_font"]),
                  ImageFont.truetype(bold if Path(bold).is_file() else path, A["font"]), False)


def number(v: float) -> str:
    """Cell text: ``3``, ``-0.25``, ``1.33``, ``−∞``."""
    if not np.isfinite(v):
        return "−∞" if v < 0 else "∞"
    if float(v).is_integer() and abs(v) < 1e4:
        return str(int(v)).replace("-", "−")
    text = f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"
    return text.rstrip("0").rstrip(".").replace("-", "−") if "." in text else text.replace("-", "−")


def _mix(colour: str, amount: float) -> tuple[int, int, int]:
    """``colour`` mixed with ``amount`` of white."""
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    return tuple(int(round(c + (255 - c) * amount)) for c in rgb)


def _slices(shape: Sequence[int]) -> tuple[int, int, int]:
    """(slices, rows, cols) of a 1-, 2- or 3-d grid as drawn."""
    if len(shape) == 1:
        return 1, 1, shape[0]
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    return shape[0], shape[1], shape[2]


def _as3(coord: Sequence[int]) -> tuple[int, int, int]:
    if len(coord) == 1:
        return 0, 0, int(coord[0])
    if len(coord) == 2:
        return 0, int(coord[0]), int(coord[1])
    return int(coord[0]), int(coord[1]), int(coord[2])


class _Painter:
    """Draws grids, text and outlines on one frame image."""

    def __init__(self, size_or_background: Any, fonts: _Fonts, cell: int, numbers: bool) -> None:
        """Draw on a blank image of ``size``, or on a copy of a background image."""
        Image, ImageDraw, _ = _pillow()
        if isinstance(size_or_background, tuple):
            self.image = Image.new("RGB", size_or_background, A["background"])
        else:
            self.image = size_or_background.copy()
        self.draw = ImageDraw.Draw(self.image)
        self.fonts = fonts
        self.cell = cell
        self.numbers = numbers

    def text(self, xy: tuple[float, float], text: str, *, font: Any = None, fill: Any = None, anchor: str = "la",
             target: Any = None) -> None:
        """Paste ``text`` (onto ``target``, default the frame) from the glyph cache: FreeType
        renders each distinct string once per animation."""
        if self.fonts.ascii_only:
            text = text.translate(_ASCII)
        font = font or self.fonts.normal
        ink = fill or A["text"]
        key = (text, id(font), anchor, ink)
        cached = self.fonts.cache.get(key)
        if cached is None:
            Image, ImageDraw, _ = _pillow()
            left, top, right, bottom = font.getbbox(text, anchor=anchor)
            mask = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
            ImageDraw.Draw(mask).text((-left, -top), text, font=font, fill=255, anchor=anchor)
            cached = self.fonts.cache[key] = (Image.new("RGB", mask.size, ink), mask, left, top)
        solid, mask, left, top = cached
        (target or self.image).paste(solid, (int(round(xy[0])) + left, int(round(xy[1])) + top), mask)

    def size(self, shape: Sequence[int]) -> tuple[int, int]:
        """Pixel (width, height) of a grid of ``shape`` (slice labels included for 3-d)."""
        n, rows, cols = _slices(shape)
        label = 14 if n > 1 else 0
        return n * cols * self.cell + (n - 1) * SLICE_GAP, rows * self.cell + label

    def origin(self, x0: int, y0: int, shape: Sequence[int], coord: Sequence[int]) -> tuple[int, int]:
        """Top-left pixel of cell ``coord`` of a grid of ``shape`` drawn at ``(x0, y0)``."""
        cols = _slices(shape)[2]
        d, r, c = _as3(coord)
        return x0 + d * (cols * self.cell + SLICE_GAP) + c * self.cell, y0 + r * self.cell

    def cell_tile(self, text: str | None, fill: Any, ink: Any) -> Any:
        """A cell with its border and centred text, drawn once per (text, fill, ink)."""
        key = ("cell", self.cell, text, fill, ink)
        tile = self.fonts.cache.get(key)
        if tile is None:
            Image, ImageDraw, _ = _pillow()
            tile = Image.new("RGB", (self.cell + 1, self.cell + 1), fill)
            ImageDraw.Draw(tile).rectangle((0, 0, self.cell, self.cell), outline=A["cell_edge"])
            if text is not None:
                self.text((self.cell / 2, self.cell / 2 + 1), text, font=self.fonts.small, fill=ink, anchor="mm",
                          target=tile)
            self.fonts.cache[key] = tile
        return tile

    def grid(self, x0: int, y0: int, values: np.ndarray, style_of: Callable[[tuple[int, ...]], tuple[Any, Any]],
             *, only: Sequence[Sequence[int]] | None = None) -> None:
        """Cells of ``values`` (NaN: empty), or just the cells ``only``; ``style_of(coord)``
        gives (fill, text colour). Without numbers, plain cells are shaded by value."""
        n, rows, cols = _slices(values.shape)
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        coords = np.ndindex(*values.shape) if only is None else (tuple(int(i) for i in c) for c in only)
        for coord in coords:
            fill, ink = style_of(coord)
            v = float(values[coord])
            if not self.numbers and not np.isnan(v) and fill == A["cell_fill"]:
                shade = int(235 - 175 * ((v - lo) / (hi - lo) if hi > lo and np.isfinite(v) else 0.0))
                fill = (shade, shade, shade)
            text = number(v) if self.numbers and not np.isnan(v) else None
            self.image.paste(self.cell_tile(text, fill, ink), self.origin(x0, y0, values.shape, coord))
        if n > 1 and only is None:
            for d in range(n):
                x, _ = self.origin(x0, y0, values.shape, (d, 0, 0))
                self.text((x + cols * self.cell / 2, y0 + rows * self.cell + 2), f"d={d}", font=self.fonts.small,
                          fill=A["muted"], anchor="ma")

    def outline(self, x0: int, y0: int, shape: Sequence[int], coords: Sequence[Sequence[int]], colour: Any,
                width: int = 3) -> None:
        for coord in coords:
            x, y = self.origin(x0, y0, shape, coord)
            self.draw.rectangle((x + 1, y + 1, x + self.cell - 1, y + self.cell - 1), outline=colour, width=width)

    def frame_box(self, x0: int, y0: int, shape: Sequence[int], start: Sequence[int], size: Sequence[int],
                  colour: Any) -> None:
        """A rectangle around the block ``start … start + size`` of every slice it covers."""
        first = _as3(start)
        last = _as3([s + n - 1 for s, n in zip(start, size)])
        for d in range(first[0], last[0] + 1):
            xa, ya = self.origin(x0, y0, shape, (d, first[1], first[2])[3 - len(shape):])
            xb, yb = self.origin(x0, y0, shape, (d, last[1], last[2])[3 - len(shape):])
            self.draw.rectangle((xa - 1, ya - 1, xb + self.cell + 1, yb + self.cell + 1), outline=colour, width=2)


def _cell_size(anim: Animation, fonts: _Fonts, numbers: bool) -> int:
    if not numbers:
        return max(10, min(A["cell"], 360 // max(max(anim.padded.shape[1:]), max(anim.output.shape[1:]))))
    values = [anim.padded, anim.output] + ([anim.weight] if anim.weight is not None else [])
    values += [f.products for f in anim.frames if f.products is not None]
    texts = {number(float(v)) for arr in values for v in np.asarray(arr).ravel()}
    widest = max(fonts.small.getlength(t.translate(_ASCII) if fonts.ascii_only else t) for t in texts)
    return int(min(48, max(A["cell"], widest + 8)))


def _check_size(anim: Animation) -> None:
    if anim.x.shape[0] > MAX_CHANNELS or anim.output.shape[0] > MAX_CHANNELS:
        raise ValueError(f"animation: at most {MAX_CHANNELS} input and output channels can be drawn, got "
                         f"{anim.x.shape[0]} and {anim.output.shape[0]}")
    for name, arr in (("input", anim.padded), ("output", anim.output)):
        if max(arr.shape[1:]) > MAX_CELLS:
            raise ValueError(f"animation: {name} grids of at most {MAX_CELLS} cells per side can be drawn, got "
                             f"{'×'.join(map(str, arr.shape[1:]))}")


@dataclass
class _Layout:
    """Pixel positions shared by every frame of one animation."""

    width: int
    height: int
    rows: list[int]      # y of each input channel row
    grid_x: int          # x of the input grids
    kernel_x: int
    product_x: int
    sum_x: int
    out_x: int
    out_rows: list[int]  # y of each output (or canvas) grid
    result_x: int        # transposed: x of the final output beside each canvas


HEADER = 78
LABEL = 46      # left of each input row: x[c]
OUT_LABEL = 18  # above each output grid: y[o]


def _layout(anim: Animation, painter: _Painter) -> _Layout:
    m, gap = A["margin"], A["gap"]
    in_w, in_h = painter.size(anim.padded.shape[1:])
    k_w, k_h = painter.size(anim.kernel)
    right_shape = anim.frames[0].output.shape[1:]
    out_w, out_h = painter.size(right_shape)
    row_h = max(in_h, k_h if anim.family != "pool" else 0) + gap + 6
    grid_x = m + LABEL
    if anim.family == "pool":
        kernel_x = product_x = grid_x + in_w + gap
        sum_x = kernel_x
        out_x = sum_x + 150
    else:
        kernel_x = grid_x + in_w + (70 if anim.family == "conv_transpose" else 30)
        product_x = kernel_x + k_w + 30
        sum_x = product_x + k_w + 12
        out_x = sum_x + (96 if anim.family == "conv" else 20)
    rows = [HEADER + m + i * row_h for i in range(anim.x.shape[0])]
    out_row_h = OUT_LABEL + out_h + gap + 6
    out_rows = [HEADER + m + i * out_row_h for i in range(anim.output.shape[0])]
    result_x = out_x + out_w + 30
    final_w, _ = painter.size(anim.output.shape[1:])
    width = (result_x + final_w if anim.family == "conv_transpose" else out_x + out_w) + m
    height = max(rows[-1] + row_h, out_rows[-1] + out_row_h) + m
    return _Layout(max(width, 640), height, rows, grid_x, kernel_x, product_x, sum_x, out_x, out_rows, result_x)


def _group_of(anim: Animation, channel: int) -> int:
    per_group = anim.x.shape[0] // anim.groups
    return channel // per_group


def _header(p: _Painter, anim: Animation, frame: Frame, status: str) -> None:
    m = A["margin"]
    shape = "×".join(map(str, anim.x.shape))
    what = f"input {shape}"
    if anim.weight is not None:
        what += f", weight {'×'.join(map(str, anim.weight.shape))}" + (", bias" if anim.bias is not None else "")
    p.text((m, m), f"{anim.op}: {what}", font=p.fonts.title)
    p.text((m, m + 22), anim.description, font=p.fonts.small, fill=A["muted"])
    p.text((m, m + 42), status, font=p.fonts.bold)


def _fmt_index(o: int | None, pos: Sequence[int] | None) -> str:
    return ", ".join(map(str, ([o] if o is not None else []) + list(pos or ())))


def _term(v: float) -> str:
    """A summand: negative numbers in parentheses."""
    return number(v) if v >= 0 else f"({number(v)})"


def _status(anim: Animation, frame: Frame) -> str:
    k = "×".join(map(str, anim.kernel))
    if frame.kind == "intro":
        if anim.family == "conv":
            return (f"A {k} kernel slides over the padded input; each output cell = Σ over channels of "
                    "(window × kernel) + bias.")
        if anim.family == "conv_transpose":
            return f"Each input cell scatters value × {k} kernel onto the canvas; output = framed canvas + bias."
        return f"A {k} window slides over the input; each output cell is the {anim.op[:3]} of the cells it covers."
    if frame.kind == "outro":
        return f"Done: the output is F.{anim.op}(…) as the engine computes it, {'×'.join(map(str, anim.output.shape))}."
    where = _fmt_index(frame.out_channel, frame.position)
    if anim.family == "conv":
        sums = list(frame.channel_sums)
        terms = " + ".join(_term(v) for v in sums) if len(sums) <= 6 else f"Σ over {len(sums)} channels"
        bias = f" + {_term(frame.bias)} (bias)" if anim.bias is not None else ""
        return f"y[{where}] = {terms}{bias} = {number(frame.value)}"
    if anim.family == "conv_transpose":
        pos = _fmt_index(None, frame.position)
        return f"x[:, {pos}] scatters Σ_c x[c, {pos}] · w[c, {frame.out_channel}] onto canvas {frame.out_channel}"
    if frame.winner is not None:
        return f"y[{where}] = max of the window = {number(frame.value)}"
    total = float(np.nansum(np.where(np.isfinite(frame.reads), frame.reads, 0)))
    return f"y[{where}] = {number(total)} / {frame.divisor} = {number(frame.value)}"


def _input_style(anim: Animation, c: int, read: bool) -> Callable[[tuple[int, ...]], tuple[Any, Any]]:
    """Cell colours of input channel ``c``: window cells (``read``) tinted in the group's colour."""
    colour = style.category_color(_group_of(anim, c))
    tint, deep = _mix(colour, 0.78), _mix(colour, 0.55)

    def style_of(coord: tuple[int, ...]) -> tuple[Any, Any]:
        supplied = anim.supplied[coord]
        if read:
            return (deep if supplied != REAL else tint), A["text"]
        if supplied == OVERHANG:
            return A["ceil_fill"], A["muted"]
        if supplied == PAD:
            return A["padding_fill"], A["muted"]
        return A["cell_fill"], A["text"]
    return style_of


def _background(anim: Animation, lay: _Layout, fonts: _Fonts, cell: int, numbers: bool) -> Any:
    """What every frame shares: the input grids without highlights."""
    p = _Painter((lay.width, lay.height), fonts, cell, numbers)
    for c, y in enumerate(lay.rows):
        p.grid(lay.grid_x, y, _shown(anim)[c], _input_style(anim, c, False))
    return p.image


def _shown(anim: Animation) -> np.ndarray:
    """The padded input as drawn: ceil-mode overhang cells (never real data) stay empty."""
    return np.where(anim.supplied == OVERHANG, np.nan, anim.padded)


def _draw_frame(anim: Animation, frame: Frame, lay: _Layout, background: Any, fonts: _Fonts, cell: int,
                numbers: bool) -> Any:
    p = _Painter(background, fonts, cell, numbers)
    _header(p, anim, frame, _status(anim, frame))
    step = frame.kind == "step"
    active = set(frame.channels) if step else set()
    in_shape = anim.padded.shape[1:]
    for c, y in enumerate(lay.rows):
        g = _group_of(anim, c)
        colour = style.category_color(g)
        label_colour = colour if (not step or c in active) else A["muted"]
        p.text((A["margin"], y + 4), f"x[{c}]", font=fonts.bold, fill=label_colour)
        if anim.groups > 1:
            p.text((A["margin"], y + 20), f"g{g}", font=fonts.small, fill=label_colour)
        if step and c in active:
            if anim.family == "conv_transpose":
                p.outline(lay.grid_x, y, in_shape, [frame.position], colour)
            else:
                p.grid(lay.grid_x, y, _shown(anim)[c], _input_style(anim, c, True), only=frame.cells)
                p.outline(lay.grid_x, y, in_shape, frame.cells, colour)
                if frame.winner is not None:
                    p.outline(lay.grid_x, y, in_shape, [frame.cells[frame.winner]], style.HIGHLIGHT_EDGE, 4)
        _draw_kernel_row(p, anim, frame, lay, c, y, colour, _mix(colour, 0.78))
    _draw_outputs(p, anim, frame, lay)
    return p.image


def _draw_kernel_row(p: _Painter, anim: Animation, frame: Frame, lay: _Layout, c: int, y: int, colour: str,
                     tint: Any) -> None:
    """``× kernel = products  Σ = s`` (conv), ``v × kernel = products`` (transposed), the
    reduction (pooling) for input channel ``c``."""
    plain = lambda coord: (tint, A["text"])  # noqa: E731
    if anim.family == "pool":
        if frame.kind == "step" and c in frame.channels:
            what = "max" if frame.winner is not None else f"sum / {frame.divisor}"
            p.text((lay.kernel_x, y + p.cell / 2), f"{what} → {number(frame.value)}", font=p.fonts.bold, fill=colour,
                   anchor="lm")
        return
    channels = frame.channels if frame.kind == "step" else tuple(range(anim.x.shape[0] // anim.groups)) \
        if frame.kind == "intro" else ()
    if c not in channels:
        return
    local = channels.index(c)
    kernel = frame.weights[local] if frame.weights is not None else _first_kernel(anim, c)
    mid = y + min(p.size(anim.kernel)[1], p.size(anim.padded.shape[1:])[1]) / 2
    if anim.family == "conv_transpose" and frame.reads is not None:
        p.text((lay.kernel_x - 8, mid), f"{number(float(frame.reads[local]))} ×", font=p.fonts.bold, anchor="rm")
    else:
        p.text((lay.kernel_x - 15, mid), "×", font=p.fonts.bold, anchor="mm")
    p.grid(lay.kernel_x, y, kernel, plain)
    if frame.products is None:
        return
    p.text((lay.product_x - 15, mid), "=", font=p.fonts.bold, anchor="mm")
    p.grid(lay.product_x, y, frame.products[local], lambda coord: (_mix(colour, 0.62), A["text"]))
    if frame.channel_sums is not None:
        p.text((lay.sum_x, mid), f"Σ = {number(float(frame.channel_sums[local]))}", font=p.fonts.bold, fill=colour,
               anchor="lm")


def _first_kernel(anim: Animation, c: int) -> np.ndarray:
    """The kernel shown before the first step: output channel 0's (transposed: input ``c``'s)."""
    if anim.family == "conv_transpose":
        return anim.weight[c, 0]
    return anim.weight[0, c]


def _draw_outputs(p: _Painter, anim: Animation, frame: Frame, lay: _Layout) -> None:
    grids = frame.output
    shape = grids.shape[1:]
    per_group = max(1, anim.output.shape[0] // anim.groups)
    for o, y in enumerate(lay.out_rows):
        colour = style.category_color(o // per_group) if anim.family != "pool" else style.category_color(0)
        name = "canvas" if anim.family == "conv_transpose" else "y"
        p.text((lay.out_x, y), f"{name}[{o}]", font=p.fonts.bold, fill=colour)
        y += OUT_LABEL
        fill = _mix(colour, 0.85)

        def cell_style(coord: tuple[int, ...], o: int = o, fill: Any = fill) -> tuple[Any, Any]:
            if anim.family == "conv_transpose" and anim.canvas[coord] != REAL:
                return A["padding_fill"], A["muted"]
            return (A["cell_fill"] if np.isnan(grids[(o, *coord)]) else fill), A["text"]

        p.grid(lay.out_x, y, grids[o], cell_style)
        if anim.family == "conv_transpose":
            p.frame_box(lay.out_x, y, shape, anim.offset, anim.output.shape[1:], A["text"])
            if frame.kind == "step" and o == frame.out_channel:
                inside = [cell for cell in frame.cells if all(0 <= v < n for v, n in zip(cell, shape))]
                p.outline(lay.out_x, y, shape, inside, colour)
            if frame.kind == "outro":
                p.text((lay.result_x, y - OUT_LABEL), f"y[{o}] = framed canvas + bias", font=p.fonts.bold,
                       fill=colour)
                p.grid(lay.result_x, y, anim.output[o], lambda coord, fill=fill: (fill, A["text"]))
        elif frame.kind == "step" and o == frame.out_channel:
            p.outline(lay.out_x, y, shape, [frame.position], style.HIGHLIGHT_EDGE, 3)


def render(anim: Animation, *, numbers: bool | None = None) -> list[Any]:
    """Every frame of ``anim`` as a Pillow RGB image (numbers in cells by default while every
    grid is at most ``style.ANIMATION['max_numbered_cells']`` wide)."""
    _check_size(anim)
    fonts = _fonts()
    if numbers is None:
        widest = max(max(anim.padded.shape[1:]), max(anim.frames[0].output.shape[1:]))
        numbers = widest <= A["max_numbered_cells"]
    cell = _cell_size(anim, fonts, numbers)
    probe = _Painter((1, 1), fonts, cell, numbers)
    lay = _layout(anim, probe)
    background = _background(anim, lay, fonts, cell, numbers)
    return [_draw_frame(anim, frame, lay, background, fonts, cell, numbers) for frame in anim.frames]


def durations(anim: Animation) -> list[int]:
    """Milliseconds per frame: a longer intro and outro."""
    return [A["intro_ms"] if f.kind == "intro" else A["outro_ms"] if f.kind == "outro" else A["step_ms"]
            for f in anim.frames]


TRANSPARENT = 255  # palette index meaning "unchanged since the previous frame"


class _Indexer:
    """Nearest-palette-colour lookup for RGB pixels, each distinct colour searched once."""

    def __init__(self, palette: np.ndarray) -> None:
        self.palette = palette.astype(np.int64)  # (colours, 3)
        self.known: dict[int, int] = {}

    def __call__(self, keys: np.ndarray) -> np.ndarray:
        """Packed colours ``R | G << 8 | B << 16`` ``(M,)`` → palette indices ``(M,)`` uint8."""
        unique, inverse = np.unique(keys, return_inverse=True)
        new = [k for k in unique.tolist() if k not in self.known]
        if new:
            rgb = np.array([[k & 255, (k >> 8) & 255, (k >> 16) & 255] for k in new], np.int64)
            nearest = ((rgb[:, None, :] - self.palette[None]) ** 2).sum(-1).argmin(1)
            self.known.update(zip(new, nearest.tolist()))
        return np.array([self.known[k] for k in unique.tolist()], np.uint8)[inverse.reshape(-1)]


def write_gif(images: list[Any], frame_ms: list[int], path: str | Path) -> Path:
    """Write the frames as a looping GIF with one palette (median cut of the first, middle
    and last frames; no dithering); each frame after the first stores only the pixels that changed, the rest
    transparent over the previous frame. Deterministic bytes."""
    Image, _, _ = _pillow()
    given, path = str(path), Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"animation output {given!r} must end in .gif, got {path.suffix or 'none'!r}")
    sample = [images[0], images[len(images) // 2], images[-1]]
    strip = Image.new("RGB", (images[0].width, images[0].height * len(sample)))
    for k, im in enumerate(sample):
        strip.paste(im, (0, k * im.height))
    quantized = strip.quantize(colors=TRANSPARENT, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    colours = (quantized.getpalette() or [])[:3 * TRANSPARENT]
    colours += [0] * (3 * TRANSPARENT - len(colours))
    index = _Indexer(np.array(colours).reshape(-1, 3))
    frames, previous = [], None
    for im in images:
        packed = np.frombuffer(im.convert("RGBX").tobytes(), "<u4").reshape(im.height, im.width) & 0xFFFFFF
        changed = np.ones(packed.shape, bool) if previous is None else packed != previous
        coded = np.full(packed.shape, TRANSPARENT, np.uint8)
        coded[changed] = index(packed[changed])
        frame = Image.fromarray(coded, mode="P")
        frame.putpalette(colours + [255, 255, 255])
        frames.append(frame)
        previous = packed
    return write_atomic(path, lambda fh: frames[0].save(fh, format="GIF", save_all=True, append_images=frames[1:],
                                                        duration=frame_ms, loop=0, optimize=False, disposal=1,
                                                        transparency=TRANSPARENT))


def save_animation(anim: Animation, path: str | Path, *, numbers: bool | None = None) -> Path:
    """Render ``anim`` and write it as a GIF."""
    return write_gif(render(anim, numbers=numbers), durations(anim), path)
