"""Learning figures: training curves from a run's history, the confusion matrix, saliency.

Curves read what :func:`convscope.train` wrote (``history.json`` or ``history.csv`` in the
run folder, or a :class:`~convscope.train.History`); timing columns are not drawn, so the
figure of a run is the same on every machine. The confusion matrix and saliency come from
:func:`convscope.inspect.confusion_matrix` and :func:`convscope.inspect.saliency`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import functional as F
from .. import inspect
from ..files import read_text
from ..models import resolve_model
from ..tensor import Tensor
from ..train import History, predict
from . import style
from .featuremaps import model_input
from .figure import new_figure, save


def load_history(source: Any) -> History:
    """A :class:`History` from a History, a run folder, ``history.json`` or ``history.csv``."""
    if isinstance(source, History):
        return source
    path = Path(source)
    if path.is_dir():
        for candidate in ("history.json", "history.csv"):
            if (path / candidate).is_file():
                path = path / candidate
                break
        else:
            raise ValueError(f"run folder {str(source)!r} has no history.json or history.csv")
    if not path.is_file():
        raise ValueError(f"no run history at {str(source)!r} (expected a run folder, history.json or history.csv)")
    if path.suffix not in (".json", ".csv"):
        raise ValueError(f"{path}: expected a run folder, history.json or history.csv")
    text = read_text(path)
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
            raise ValueError(f"{path}: expected a convscope history with a 'rows' list")
        rows = [_checked_row(path, f"row {n}", row) for n, row in enumerate(data["rows"], 1)]
        return History(rows=rows, best_epoch=data.get("best_epoch"), stopped_early=data.get("stopped_early", False))
    return History(rows=_csv_rows(path, text))


def _csv_rows(path: Path, text: str) -> list[dict[str, float]]:
    """The rows of a ``history.csv``: one per line under the header, empty cells left out."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    for row in reader:
        where = f"line {reader.line_num}"
        if None in row or None in row.values():
            cells = len(row) - 1 + len(row[None]) if None in row else sum(v is not None for v in row.values())
            raise ValueError(f"{path}: {where} has {cells} cell{'' if cells == 1 else 's'}; the header has "
                             f"{len(reader.fieldnames or ())} columns")
        rows.append(_checked_row(path, where, {k: _number(v) for k, v in row.items() if v != ""}))
    return rows


def _number(text: str) -> float | str:
    """A CSV cell as a float, or as it is when it is not a number (:func:`_checked_row` names it)."""
    try:
        return float(text)
    except ValueError:
        return text


def _checked_row(path: Path, where: str, row: Any) -> dict[str, float]:
    """One epoch's metrics from ``path``: a mapping with an ``epoch``, every value a number;
    else a ValueError naming the file, the row (or line) and the value."""
    if not isinstance(row, dict):
        raise ValueError(f"{path}: {where} must be an object of metrics, got {json.dumps(row)[:40]}")
    if "epoch" not in row:
        raise ValueError(f"{path}: {where} has no 'epoch' (it holds {', '.join(map(str, row)) or 'nothing'})")
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path}: {where}: {key} must be a number, got {value!r}")
    return row


def training_curves(history: Any, *, log_loss: bool = False, title: str | None = None,
                    out: str | Path | None = None) -> Any:
    """Loss, accuracy and learning rate per epoch (train solid, validation dashed; the epoch
    with the lowest validation loss marked when the history records it)."""
    h = load_history(history)
    if not h.rows:
        raise ValueError("training curves: the history has no epochs")
    epochs = h["epoch"]
    fig = new_figure(11, 3.4)
    grid = fig.add_gridspec(1, 3, left=0.06, right=0.98, top=0.8, bottom=0.15, wspace=0.28)
    panels = [("loss", "cross-entropy loss", ("train_loss", "val_loss")),
              ("accuracy", "accuracy (%)", ("train_acc", "val_acc")), ("learning rate", "learning rate", ("lr",))]
    lines = {"train_loss": ("train", "-", "blue"), "val_loss": ("validation", "--", "orange"),
             "train_acc": ("train", "-", "blue"), "val_acc": ("validation", "--", "orange"),
             "lr": ("lr", "-", "bluish_green")}
    for k, (name, ylabel, keys) in enumerate(panels):
        ax = fig.add_subplot(grid[0, k])
        for key in keys:
            if key not in h.rows[0]:
                continue
            label, dash, colour = lines[key]
            values = np.asarray([row.get(key, np.nan) for row in h.rows], dtype=float) * (100 if name == "accuracy"
                                                                                            else 1)
            ax.plot(epochs, values, dash, color=style.OKABE_ITO[colour], label=label, linewidth=1.6,
                    marker="o" if len(epochs) <= 12 else None, markersize=3)
        if h.best_epoch is not None:
            ax.axvline(h.best_epoch, color=style.MUTED, linestyle=":", linewidth=1,
                       label=f"lowest val loss (epoch {h.best_epoch})")
        if name == "loss" and log_loss:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(name, loc="left")
        ax.grid(color=style.GRID, linewidth=0.6)
        if name != "learning rate" and ax.get_legend_handles_labels()[0]:
            ax.legend(frameon=False)
    last = h.rows[-1]
    finals = [f"{key.replace('_', ' ')} {last[key]:.2%}" for key in ("train_acc", "val_acc") if key in last]
    summary_text = ", ".join(finals)
    stop = f"; stopped early, best epoch {h.best_epoch}" if h.stopped_early else ""
    fig.suptitle(f"{title or 'training run'}: {len(h)} epochs; final {summary_text}{stop}", x=0.01, ha="left",
                 fontsize=style.TITLE_SIZE)
    if out is not None:
        save(fig, out)
    return fig


def confusion(model: Any = "digits", X: np.ndarray | None = None, y: np.ndarray | None = None, *,
              split: str = "test", out: str | Path | None = None) -> Any:
    """The confusion matrix of ``model`` on ``(X, y)`` (default: the digits ``split``), with
    the count in every cell."""
    import matplotlib
    from matplotlib.colors import LogNorm

    found = resolve_model(model, weights=True)
    net, name, shape = found.module, found.name, found.input_shape
    if X is None or y is None:
        from ..data import digits

        X, y = digits(split)
        where = f"digits {split} set"
    else:
        where = "the given data"
    if shape and tuple(shape) != X.shape[1:]:  # a model for another input would run, and count nonsense
        raise ValueError(f"confusion: {name} takes {'×'.join(map(str, shape))} inputs, but the {where} holds "
                         f"{'×'.join(map(str, X.shape[1:]))} examples")
    matrix = inspect.confusion_matrix(net, X, y)
    k = matrix.shape[0]
    fig = new_figure(max(4.5, 0.45 * k + 1.8), max(4.2, 0.45 * k + 1.5))
    ax = fig.add_axes((0.16, 0.14, 0.64, 0.7))
    cmap = matplotlib.colormaps[style.SEQUENTIAL]
    norm = LogNorm(1, max(int(matrix.max()), 2))
    shown = np.ma.masked_equal(matrix, 0)
    image = ax.imshow(shown, cmap=cmap, norm=norm)
    ax.set_facecolor("white")
    for i in range(k):
        for j in range(k):
            if matrix[i, j] or k <= 12:
                v = int(matrix[i, j])
                colour = "white" if v and norm(v) < 0.55 else style.TEXT
                ax.text(j, i, str(v), ha="center", va="center", fontsize=style.SMALL_SIZE + 0.5,
                        color=colour if v else style.MUTED)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(image, cax=fig.add_axes((0.83, 0.14, 0.03, 0.7)), label="examples (log scale)")
    correct = int(np.trace(matrix))
    fig.suptitle(f"{name}: confusion matrix on the {where}\n{correct} of {int(matrix.sum())} correct "
                 f"({correct / max(int(matrix.sum()), 1):.2%}); off-diagonal cells are the mistakes",
                 x=0.02, ha="left", fontsize=style.FONT_SIZE + 1)
    if out is not None:
        save(fig, out)
    return fig


def saliency_map(model: Any = "digits", x: Any = None, *, digit: int = 0, target: int | None = None,
                 input_shape: Sequence[int] | None = None, out: str | Path | None = None) -> Any:
    """The input, the saliency ``max_c |∂ score_target / ∂ x_c|`` (:func:`convscope.inspect.saliency`)
    and the two overlaid; ``target`` defaults to the predicted class."""
    import matplotlib

    net, name, x, described = model_input(model, x, digit, input_shape)
    if x.ndim != 4:
        raise ValueError(f"saliency figures need an image input (1, C, H, W), got shape {x.shape}")
    logits = predict(net, x)
    inspect.check_class_scores("saliency", logits.shape)
    logits = logits[0]
    target = int(np.argmax(logits)) if target is None else int(target)
    grad = inspect.saliency(net, x, target)
    sal = np.abs(grad[0]).max(axis=0)
    probs = F.softmax(Tensor.wrap(logits[None].astype(np.float64)), dim=1).numpy()[0]
    image = x[0].mean(axis=0)
    fig = new_figure(9.5, 3.7)
    cmap = matplotlib.colormaps[style.SEQUENTIAL]
    axes = [fig.add_axes((left, 0.08, 0.25, 0.7)) for left in (0.03, 0.34, 0.7)]
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("input")
    shown = axes[1].imshow(sal, cmap=cmap)
    axes[1].set_title(f"saliency for class {target}")
    fig.colorbar(shown, cax=fig.add_axes((0.03 + 0.31 + 0.255, 0.08, 0.012, 0.7)), label="|∂ logit / ∂ pixel|")
    axes[2].imshow(image, cmap="gray")
    axes[2].imshow(sal, cmap=cmap, alpha=0.6)
    axes[2].set_title("overlay")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{name}: saliency of class {target} (p = {probs[target]:.3f}, logit {logits[target]:.2f}) on "
                 f"{described}\nthe gradient of the class score with respect to each input pixel (max over channels)",
                 x=0.02, ha="left", fontsize=style.FONT_SIZE + 1)
    if out is not None:
        save(fig, out)
    return fig
