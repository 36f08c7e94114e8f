"""Render a :class:`~convscope.analyze.summary.Summary` as text: an 80-column table, CSV
and Markdown. Renderers only format numbers the summary already holds."""

from __future__ import annotations

import csv
import io
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

from ..rules import paren
from .conventions import CONVENTIONS
from .record import LayerRow


def human(n: float) -> str:
    """``1234567`` → ``1.23M``."""
    for unit, size in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:g}"


def shape_text(shape: tuple[int, ...] | None, drop_batch: bool = True) -> str:
    if shape is None:
        return "-"
    dims = shape[1:] if drop_batch and len(shape) > 1 else shape
    return "×".join(map(str, dims))


def formula_text(formula: list[str] | None) -> str:
    """``["64", "⌊(H − 1)/2⌋ + 1"]`` → ``64 × (⌊(H − 1)/2⌋ + 1)``."""
    return "" if formula is None else " × ".join(paren(f) for f in formula)


def _formula_lines(rows: list[tuple[str, tuple[int, ...] | None, list[str] | None]]) -> list[list[str]]:
    """Per row, the ``↳ formula`` line to print under it: only where the formula changes
    from the row before and says more than the numbers."""
    out, last = [], None
    for _, shape, formula in rows:
        text = formula_text(formula)
        show = formula is not None and text != last and formula != [str(d) for d in (shape or ())[1:]]
        out.append([f"    ↳ {text}"] if show else [])
        last = text
    return out


def _symbolic_lines(summary: Any) -> list[str]:
    sym = summary.symbolic
    lines = [f"Valid sizes (checked 1…{next(iter(sym.validity.values())).limit}):"] if sym.validity else []
    for v in sym.validity.values():
        held = ", ".join(f"{k} = {n}" for k, n in v.held.items())
        lines.append(f"  {v.text}" + (f" (at {held})" if held else ""))
        if v.reason:  # wrap between words, never inside a formula's "H − 1"
            glued = v.reason.replace(" − ", "\u00a0−\u00a0").replace(" + ", "\u00a0+\u00a0")
            lines += [line.replace("\u00a0", " ") for line in
                      textwrap.wrap(glued, 80, initial_indent="    ", subsequent_indent="      ")]
    return lines + [clip(f"Note: {n}") for n in sym.notes]


def clip(line: str, width: int = 80) -> str:
    """``line`` cut to ``width`` characters, the last one "…" when it was cut."""
    return line if len(line) <= width else line[:width - 1] + "…"


def field_text(row: LayerRow) -> str:
    rf = row.receptive_field
    if rf is None:
        return "-"
    if rf == "global":
        return "all"
    sizes = [f"{a.size:g}" for a in rf]
    text = "×".join(sizes) if len(set(sizes)) > 1 else (sizes[0] if sizes else "-")
    return text + "*" if any(a.input_dependent for a in rf) else text


def _depends_on_input_size(summary: Any) -> bool:
    return any(isinstance(r.receptive_field, list) and any(a.input_dependent for a in r.receptive_field)
               for r in summary.rows)


def _visible(summary: Any, depth: int | None) -> list[LayerRow]:
    if depth is None:
        return summary.rows
    return [r for r in summary.rows if r.depth <= depth] if depth >= 1 else summary.rows


def grouped(summary: Any, depth: int) -> list[dict]:
    """Rows aggregated by module path prefix of ``depth`` components (e.g. depth 1 gives one
    entry per top-level block): params, MACs, FLOPs summed; output shape of the last row."""
    groups: dict[str, dict] = {}
    for r in summary.rows:
        key = ".".join(r.name.split(".")[:depth])
        g = groups.setdefault(key, {"name": key, "params": 0, "macs": 0, "flops": 0, "layers": 0,
                                    "output_shape": None, "output_formula": None})
        g["params"] += r.params
        g["macs"] += r.macs
        g["flops"] += r.flops
        g["layers"] += 1
        g["output_shape"] = r.output_shape
        g["output_formula"] = r.output_formula
    return list(groups.values())


def table(summary: Any, depth: int | None = None, *, error: bool = True) -> str:
    """The readable table (fits 80 columns), totals, the uncounted ledger and, unless
    ``error=False`` (the CLI prints it on stderr), the error that stopped the walk."""
    sym = getattr(summary, "symbolic", None)
    inputs = ", ".join(shape_text(s, False) for s in (sym.input_shapes if sym else summary.input_shapes))
    at = f"; numbers at {', '.join(f'{k} = {n}' for k, n in sym.reference.items())}" if sym else ""
    if depth is not None:
        groups = grouped(summary, depth)
        extra = _formula_lines([(g["name"], g["output_shape"], g["output_formula"]) for g in groups])
        cells = [(g["name"], shape_text(g["output_shape"]), f"{g['params']:,}", human(g["macs"]), str(g["layers"]))
                 for g in groups]
    else:
        extra = _formula_lines([(r.name, r.output_shape, r.output_formula) for r in summary.rows])
        # a row computed from weights alone (no field: an ONNX file's transposed weight) has no batch dim
        cells = [(f"{r.name} ({r.type})", shape_text(r.output_shape, r.receptive_field is not None), f"{r.params:,}",
                  human(r.macs), field_text(r)) for r in summary.rows]
    # the output and last columns grow to keep a space before their longest cell (a 3-d
    # field "20×40×40*"); the label column gives up that room, so the table stays 79 wide
    widths = [34, 14, 12, 10, 9]
    for k in (1, 4):
        widths[k] = max(widths[k], 1 + max((len(c[k]) for c in cells), default=0))
    widths[0] = max(20, 79 - sum(widths[1:]))
    head = _row(("Layer (type)", "Output", "Params", "MACs", "Layers" if depth is not None else "RF"), widths)
    lines = [f"{summary.model_name}: input {inputs}{at}", head, "─" * len(head)]
    for row, more in zip(cells, extra):
        lines.append(_row(row, widths))
        lines += more
    t = summary.totals
    lines += ["─" * len(head),
              f"Params: {t.params:,} (trainable {t.trainable_params:,}, {human(t.param_bytes)}B)",
              f"MACs: {t.macs:,} ({human(t.macs)})   FLOPs: {t.flops:,} ({human(t.flops)})",
              f"Activations: peak {human(t.peak_activation_bytes)}B in a forward pass "
              f"(input {human(t.input_bytes)}B, output {human(t.output_bytes)}B)"]
    if getattr(summary, "training", None) is not None:
        lines += summary.training.text().splitlines()
    if getattr(summary, "erf", None) is not None:
        lines += textwrap.wrap(summary.erf.text(), 80, subsequent_indent="  ")
    if summary.convention != "convscope":
        lines.append(_convention_line(summary))
    if depth is None and _depends_on_input_size(summary):
        lines.append("RF*: at this input size only (adaptive pooling or a resize to a fixed size)")
    if summary.unused_params:
        lines.append(f"Unused parameters (modules never called): {summary.unused_params:,}")
    if summary.uncounted:
        ops = ", ".join(f"{u.op} ×{u.calls}" for u in summary.uncounted)
        lines.append(f"Uncounted (no cost rule, counted as 0): {ops}")
    if error and summary.error is not None:
        lines.append(f"Error: {summary.error}")
    if sym is not None:
        lines += _symbolic_lines(summary)
    return "\n".join(lines)


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    """One table line: the label left-aligned (cut with "…" to leave a space), numbers right-aligned."""
    label = cells[0] if len(cells[0]) < widths[0] else cells[0][:widths[0] - 2] + "…"
    return f"{label:<{widths[0]}}" + "".join(f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:]))


def _convention_line(summary: Any) -> str:
    """Which convention counted, and its total as the tool names it."""
    c = CONVENTIONS.get(summary.convention)
    if c is None:
        return f"Convention: {summary.convention} (each row's formula names the rule it applied)"
    return (f"Convention: {c.name}, which reports {c.reports}: {c.total(summary.totals.macs, summary.totals.flops):,}"
            " (each row's formula names its rule)")


def by_type_table(summary: Any) -> str:
    """:meth:`Summary.by_type` as text: the "where does the compute go" table."""
    head = f"{'layer kind':<28}{'layers':>7}{'MACs':>10}{'share':>8}{'params':>12}{'share':>8}"
    lines = [f"{summary.model_name} ({summary.convention} convention)", head, "─" * len(head)]
    for k in summary.by_type():
        if k["macs"] or k["params"]:
            lines.append(f"{k['type'][:27]:<28}{k['layers']:>7}{human(k['macs']):>10}{k['macs_share']:>8.2%}"
                         f"{k['params']:>12,}{k['params_share']:>8.2%}")
    return "\n".join(lines)


BY_TYPE_COLUMNS = ("type", "layers", "macs", "macs_share", "params", "params_share")


def by_type_dict(summary: Any) -> dict[str, Any]:
    """:meth:`Summary.by_type` with the model, convention and totals, for JSON."""
    return {"model": summary.model_name, "convention": summary.convention,
            "totals": {"params": summary.totals.params, "macs": summary.totals.macs}, "by_type": summary.by_type()}


def by_type_csv(summary: Any) -> str:
    """:meth:`Summary.by_type` as CSV, one row per layer kind (shares as fractions)."""
    return _csv(BY_TYPE_COLUMNS, ([k[c] for c in BY_TYPE_COLUMNS] for k in summary.by_type()))


def by_type_markdown(summary: Any) -> str:
    """:meth:`Summary.by_type` as a Markdown table (shares in percent)."""
    rows = [[k["type"], k["layers"], f"{k['macs']:,}", f"{k['macs_share']:.2%}", f"{k['params']:,}",
             f"{k['params_share']:.2%}"] for k in summary.by_type()]
    return _markdown(BY_TYPE_COLUMNS, rows) + "\n"


def _group_columns(summary: Any) -> tuple[str, ...]:
    symbolic = getattr(summary, "symbolic", None) is not None
    return ("name", "layers", "output_shape", "params", "macs", "flops") + (("output_formula",) if symbolic else ())


def _group_cells(group: dict, columns: Sequence[str]) -> list[Any]:
    return [shape_text(group[c], False) if c == "output_shape" else formula_text(group[c]) if c == "output_formula"
            else group[c] for c in columns]


def grouped_dict(summary: Any, depth: int) -> dict[str, Any]:
    """:meth:`Summary.to_dict` with the rows grouped by module path (``groups`` in place of
    ``layers``), for JSON."""
    groups = [g | {"output_shape": None if g["output_shape"] is None else list(g["output_shape"])}
              for g in grouped(summary, depth)]
    return {k: v for k, v in summary.to_dict().items() if k != "layers"} | {"depth": depth, "groups": groups}


def grouped_csv(summary: Any, depth: int) -> str:
    """The rows grouped by module path (see :func:`grouped`) as CSV."""
    columns = _group_columns(summary)
    return _csv(columns, (_group_cells(g, columns) for g in grouped(summary, depth)))


def grouped_markdown(summary: Any, depth: int) -> str:
    """The rows grouped by module path (see :func:`grouped`) as Markdown, then the totals."""
    columns = _group_columns(summary)
    table = _markdown(columns, [_group_cells(g, columns) for g in grouped(summary, depth)])
    return f"{table}\n\n{_markdown_totals(summary)}\n"


def _csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue()


def _markdown(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _markdown_totals(summary: Any) -> str:
    t = summary.totals
    return (f"**Total params** {t.params:,} · **MACs** {t.macs:,} · **FLOPs** {t.flops:,} · "
            f"**peak activations** {t.peak_activation_bytes:,} bytes")


COLUMNS = ("name", "type", "input_shapes", "output_shape", "weight_shape", "bias_shape", "params",
           "trainable_params", "params_formula", "macs", "flops", "cost_formula", "activation_bytes",
           "receptive_field", "use")


def _cell(row: LayerRow, key: str) -> str:
    if key == "receptive_field":
        return field_text(row)
    value = getattr(row, key)
    if key == "input_shapes":
        return "; ".join(shape_text(s, False) for s in value)
    if key == "output_formula":
        return formula_text(value)
    if key.endswith("shape"):
        return shape_text(value, False)
    return str(value)


def csv_text(summary: Any) -> str:
    columns = COLUMNS + (("output_formula",) if getattr(summary, "symbolic", None) else ())
    return _csv(columns, ([_cell(r, k) for k in columns] for r in summary.rows))


def markdown(summary: Any) -> str:
    """The rows as a Markdown table, then the totals; ends with a newline like :func:`csv_text`."""
    cols = ("name", "type", "output_shape", "weight_shape", "params_formula", "macs", "receptive_field")
    rows = [[_cell(r, "output_formula" if k == "output_shape" and r.output_formula else k) for k in cols]
            for r in summary.rows]
    return f"{_markdown(cols, rows)}\n\n{_markdown_totals(summary)}\n"
