"""The training loop: ``convscope.train(model, data, epochs=..., ...)``.

One function drives everything: seeded minibatches (:class:`~convscope.data.Batches`), the
engine's autograd and optimizers (SGD, Adam, AdamW), learning-rate schedules (step, cosine),
weight decay, early stopping on the validation loss, a rich progress bar, a metrics history
(CSV and JSON) and atomic checkpoints after every epoch that ``resume`` continues from.

Determinism: the model's starting weights, ``seed`` and the data fix the run. Epoch ``e``
visits the batches drawn from ``(seed, e)``, the engine's RNG (dropout) is seeded with
``seed`` and saved in every checkpoint, so the same seed gives bit-identical weights, and a
resumed run ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from . import checkpoint as ckpt
from . import functional as F
from . import optim
from . import random as cs_random
from .atomic import write_atomic
from .data import Batches, check_arrays, load
from .data.checks import Split
from .data.loaders import NAMED_SETS
from .errors import ShapeError
from .files import read_text
from .nn import Module
from .tensor import Tensor, no_grad

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = (None, "step", "cosine")
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3}
CHECKPOINT = "checkpoint.npz"
WEIGHTS = "weights.npz"

__all__ = ["History", "TrainConfig", "evaluate", "predict", "train"]


RECORDS = ("model", "data", "spec", "sample_shape")
"""The fields of :class:`TrainConfig` that record what was trained rather than how."""


@dataclass
class TrainConfig:
    """The settings of a run (everything that shapes the trajectory), stored in checkpoints.

    ``lr=None`` takes :data:`DEFAULT_LR` of the optimizer; ``step_size=None`` (StepLR) is a
    third of the epochs. ``momentum`` applies to SGD only. ``early_stopping`` is the patience
    in epochs without a lower validation loss. ``max_shift`` is random-shift augmentation.
    ``model`` and ``data`` name what the command line rebuilds on ``--resume`` (a data file
    by its absolute path); ``spec`` is the text of a model built from a spec file, so that the
    run rebuilds the model it trained when the file has moved or changed; ``sample_shape`` is
    the shape of one sample of the data (no batch dim), which :func:`load_run` gives the
    model without reading the data. These four are records, not settings.
    """

    epochs: int = 10
    optimizer: str = "adam"
    lr: float | None = None
    batch_size: int = 64
    seed: int = 0
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str | None = None
    step_size: int | None = None
    gamma: float = 0.1
    early_stopping: int | None = None
    max_shift: int = 0
    model: str | None = None
    data: str | None = None
    spec: str | None = None
    sample_shape: list[int] | None = None

    def __post_init__(self) -> None:
        if self.schedule == "none":
            self.schedule = None
        for name in ("epochs", "batch_size", "seed", "max_shift", "step_size", "early_stopping"):
            setattr(self, name, _whole(name, getattr(self, name)))
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"train: unknown optimizer {self.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"train: unknown schedule {self.schedule!r}; expected None, 'step' or 'cosine'")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"train: {name} must be ≥ 1, got {getattr(self, name)}")
        for name in ("seed", "weight_decay", "momentum", "gamma", "max_shift"):
            if not getattr(self, name) >= 0:  # NaN too
                raise ValueError(f"train: {name} must be ≥ 0, got {getattr(self, name)}")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.optimizer]
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"train: lr must be a positive number, got {self.lr}")
        if self.early_stopping is not None and self.early_stopping < 1:
            raise ValueError(f"train: early_stopping (patience in epochs) must be ≥ 1, got {self.early_stopping}")
        if self.step_size is not None and self.step_size < 1:
            raise ValueError(f"train: step_size must be ≥ 1, got {self.step_size}")

    def differences(self, other: Mapping[str, Any]) -> list[str]:
        """Settings that differ from ``other`` (a stored config), ignoring ``epochs``."""
        return [f"{f.name}={getattr(self, f.name)!r} (checkpoint: {other.get(f.name)!r})" for f in fields(self)
                if f.name not in ("epochs", *RECORDS) and other.get(f.name) != getattr(self, f.name)]


def _whole(name: str, value: Any) -> int | None:
    """A setting that counts something (epochs, a batch, a seed, cells) as a plain int; None
    stays None. A fraction, a bool or text is a ValueError naming the setting, rather than
    truncated or failing later deep in the loop."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"train: {name} must be a whole number, got {value!r}")
    return int(value)


@dataclass
class History:
    """Per-epoch metrics: ``rows[i]`` holds ``epoch`` (1-based), ``lr``, ``train_loss``,
    ``train_acc`` (over the epoch's augmented batches), ``val_loss``/``val_acc`` (if there is a
    validation set), ``seconds`` and ``samples_per_s``."""

    rows: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    def __getitem__(self, key: str) -> list[float]:
        """One metric over the epochs, e.g. ``history["val_acc"]``."""
        return [row[key] for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def to_json(self, path: str | Path) -> None:
        """Write ``{"rows": [...], "best_epoch": ..., "stopped_early": ...}`` (atomically)."""
        text = json.dumps(asdict(self), indent=1) + "\n"
        write_atomic(path, lambda fh: fh.write(text.encode()))

    def to_csv(self, path: str | Path) -> None:
        """Write one row per epoch with a header line (atomically)."""
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_atomic(path, lambda fh: fh.write(buffer.getvalue().encode()))


@dataclass
class _Stopping:
    """Early-stopping bookkeeping (kept in checkpoints so resume continues it exactly)."""

    best_loss: float = math.inf
    best_epoch: int | None = None
    bad_epochs: int = 0
    best_state: dict[str, np.ndarray] | None = None

    def update(self, epoch: int, val_loss: float, model: Module, patience: int | None) -> bool:
        """Record epoch ``epoch``'s validation loss; ``True`` when patience has run out."""
        if val_loss < self.best_loss:
            self.best_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            if patience is not None:
                self.best_state = {k: v.copy() for k, v in model.state_dict().items()}
            return False
        self.bad_epochs += 1
        return patience is not None and self.bad_epochs >= patience


# --- evaluation -----------------------------------------------------------------------------------
def _param_dtype(model: Module) -> np.dtype:
    for p in model.parameters():
        return p.dtype
    return np.dtype(np.float32)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def predict(model: Module, X: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The model's outputs for ``X`` in eval mode, without a graph (the mode is restored).

    Shape:
        ``X (N, ...)`` → ``(N, num_classes)`` for a classifier.
    """
    was_training = model.training
    model.eval()
    dtype = _param_dtype(model)
    try:
        with no_grad():
            outs = [model(Tensor.wrap(np.ascontiguousarray(X[s], dtype=dtype))).numpy()
                    for s in _chunks(len(X), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(outs)


def evaluate(model: Module, X: np.ndarray, y: np.ndarray, batch_size: int = 256) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``(X, y)`` (eval mode, no graph).

    Shape:
        ``X (N, ...)``, ``y (N,)`` int → two floats.
    """
    logits = predict(model, X, batch_size)
    loss = F.cross_entropy(Tensor.wrap(logits), Tensor.wrap(np.asarray(y, np.int64)), reduction="sum").item()
    return loss / len(y), float(np.mean(logits.argmax(1) == y))


# --- setup ----------------------------------------------------------------------------------------
def _splits(data: Any) -> dict[str, Split]:
    if isinstance(data, (str, Path)):
        return load(data)
    if isinstance(data, tuple) and len(data) == 2:
        return {"train": data}
    if isinstance(data, Mapping) and "train" in data:
        return {k: v for k, v in data.items() if k in ("train", "val", "test")}
    raise ValueError("train: data must be 'digits', a path, an (X, y) pair, or a dict with 'train' (and 'val') pairs")


def _num_outputs(model: Module, sample_shape: tuple, dtype: np.dtype) -> int:
    """Run the model on a shape-only input: checks the input shape against every layer (a
    ShapeError names the layer) and gives the number of classes."""
    try:
        out = model(Tensor.meta((1, *sample_shape), dtype))
    except ShapeError as err:
        raise ShapeError(f"examples of shape {tuple(sample_shape)} do not fit the model: {err}",
                         layer="train data") from err
    if not isinstance(out, Tensor) or len(out.shape) != 2:
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"train: the model must output class scores of shape (N, classes), got {shape}")
    return out.shape[1]


def _checked_sets(model: Module, data: Any) -> dict[str, Split]:
    """The data's splits, each validated against the model (input shape, number of classes)."""
    splits = _splits(data)
    if "train" not in splits:
        raise ValueError("train: no 'train' set in the data")
    sample_shape = np.shape(splits["train"][0])[1:]
    num_classes = _num_outputs(model, sample_shape, _param_dtype(model))
    sets = {name: check_arrays(X, y, name=f"{name} data", num_classes=num_classes) for name, (X, y) in splits.items()}
    for name, (X, _) in sets.items():
        if X.shape[1:] != sample_shape:
            raise ValueError(f"{name} data: examples of shape {X.shape[1:]} differ from the training "
                             f"examples' {sample_shape}")
    return sets


def _fingerprint(X: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256(f"{X.shape}{X.dtype.str}".encode())
    h.update(np.ascontiguousarray(X).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()[:16]


def _optimizer(model: Module, config: TrainConfig) -> optim.Optimizer:
    params = list(model.parameters())
    if config.optimizer == "sgd":
        return optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    cls = optim.Adam if config.optimizer == "adam" else optim.AdamW
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def _spans_epochs(config: TrainConfig) -> bool:
    """Whether :func:`_scheduler` lays the schedule out over ``config.epochs`` (cosine, or step
    with its default step size), so that it cannot continue past them."""
    return config.schedule == "cosine" or (config.schedule == "step" and config.step_size is None)


def _scheduler(opt: optim.Optimizer, config: TrainConfig) -> optim.lr_scheduler.LRScheduler | None:
    if config.schedule == "step":
        step_size = config.step_size if config.step_size is not None else max(1, config.epochs // 3)
        return optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=config.gamma)
    if config.schedule == "cosine":
        return optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    return None


# --- progress ---------------------------------------------------------------------------------------
class _Progress:
    """A rich progress bar on stderr (epoch, batch, loss, accuracy, samples/s) and a line per
    epoch; only the lines when stderr is not a terminal (CI, pipes, files); silent when
    disabled."""

    def __init__(self, enabled: bool, epochs: int, batches: int) -> None:
        self.epochs, self.batches = epochs, batches
        self.bar: Any = None
        self.lines = enabled and not sys.stderr.isatty()  # no bar, but a line per epoch (logs, pipes)
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:6.2%}"),
                TextColumn("{task.fields[rate]:,.0f} samples/s"),
                TimeElapsedColumn(), console=Console(stderr=True), transient=True)

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def start(self, epoch: int) -> None:
        if self.bar is not None:
            self.task = self.bar.add_task("", total=self.batches, epoch=f"{epoch + 1}/{self.epochs}",
                                          loss=math.nan, acc=0.0, rate=0.0)

    def advance(self, loss: float, acc: float, rate: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, loss=loss, acc=acc, rate=rate)

    def finish(self, row: Mapping[str, float]) -> None:
        val = f"  val loss {row['val_loss']:.4f}  val acc {row['val_acc']:.2%}" if "val_loss" in row else ""
        line = (f"epoch {row['epoch']:>3}/{self.epochs}  loss {row['train_loss']:.4f}  acc {row['train_acc']:.2%}"
                f"{val}  ({row['seconds']:.1f} s)")
        if self.bar is not None:
            self.bar.remove_task(self.task)
            self.bar.console.print(line, highlight=False)
        elif self.lines:
            print(line, file=sys.stderr, flush=True)


# --- the loop ---------------------------------------------------------------------------------------
def _run_epoch(model: Module, opt: optim.Optimizer, batches: Batches, epoch: int, bar: _Progress) -> dict[str, float]:
    model.train()
    dtype = _param_dtype(model)
    loss_sum, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    bar.start(epoch)
    for xb, yb in batches.epoch(epoch):
        # a diverging run overflows to inf and NaN, as in torch without a warning: the loss check
        # below reports it, once, in words
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            logits = model(Tensor.wrap(np.ascontiguousarray(xb, dtype=dtype)))
            loss = F.cross_entropy(logits, Tensor.wrap(yb))
            opt.zero_grad()
            loss.backward()
            opt.step()
        value = loss.item()
        if not math.isfinite(value):
            raise ValueError(f"train: the loss became {value} in epoch {epoch + 1} (batch "
                                     f"{seen // batches.batch_size + 1}); lower the learning rate")
        loss_sum += value * len(yb)
        correct += int(np.sum(logits.numpy().argmax(1) == yb))
        del logits, loss  # free this step's graph before the next forward builds one
        seen += len(yb)
        bar.advance(loss_sum / seen, correct / seen, seen / max(time.perf_counter() - start, 1e-9))
    seconds = time.perf_counter() - start
    return {"epoch": epoch + 1, "lr": float(opt.param_groups[0]["lr"]), "train_loss": loss_sum / seen,
            "train_acc": correct / seen, "seconds": seconds, "samples_per_s": seen / max(seconds, 1e-9)}


def _save_weights(path: Path, model: Module) -> None:
    """The plain state_dict as ``.npz`` (``model.load_state_dict(dict(np.load(path)))``)."""
    state = model.state_dict()
    write_atomic(path, lambda fh: np.savez(fh, **state))


def _save(out: Path, model: Module, opt: optim.Optimizer, sched: Any, config: TrainConfig, history: History,
          stopping: _Stopping, data_id: str) -> None:
    extra = {"history": asdict(history), "stopping": asdict(stopping), "data_fingerprint": data_id}
    state = ckpt.Checkpoint(epoch=len(history), model=dict(model.state_dict()), optimizer=opt.state_dict(),
                            scheduler=sched.state_dict() if sched is not None else None,
                            rng=cs_random.get_rng_state(), config=asdict(config), extra=extra)
    ckpt.save(out / CHECKPOINT, state)
    _save_weights(out / WEIGHTS, model)
    history.to_csv(out / "history.csv")
    history.to_json(out / "history.json")


def _restore(source: Path, model: Module, opt: optim.Optimizer, sched: Any, config: TrainConfig,
             data_id: str) -> tuple[History, _Stopping]:
    path = checkpoint_file(source)
    state = ckpt.load(path)
    changed = config.differences(state.config)
    if changed:
        raise ValueError(f"resume {path}: settings differ from the checkpoint's: {'; '.join(changed)}")
    if state.extra.get("data_fingerprint") != data_id:
        raise ValueError(f"resume {path}: the training data differ from the data the checkpoint was trained on")
    if state.epoch > config.epochs:
        raise ValueError(f"resume {path}: the checkpoint has {state.epoch} epochs, more than epochs={config.epochs}")
    planned = state.config.get("epochs")
    if _spans_epochs(config) and planned != config.epochs:
        what = "decays to 0 over" if config.schedule == "cosine" else "steps every third of"
        raise ValueError(f"resume {path}: the {config.schedule} schedule {what} the run's epochs={planned}; resuming "
                         f"to epochs={config.epochs} would not continue it. Resume with epochs={planned}, or start a "
                         "new run with the new epochs (a schedule of 'none' or an explicit step_size does not "
                         "depend on the epochs, and such runs may grow)")
    model.load_state_dict(state.model)
    opt.load_state_dict(state.optimizer)
    if sched is not None:
        sched.load_state_dict(state.scheduler)
    cs_random.set_rng_state(state.rng)
    history = History(**state.extra["history"])
    return history, _Stopping(**state.extra["stopping"])


def train(model: Module, data: Any = "digits", *, epochs: int = 10, optimizer: str = "adam", lr: float | None = None,
          batch_size: int = 64, seed: int = 0, weight_decay: float = 0.0, momentum: float = 0.9,
          schedule: str | None = None, step_size: int | None = None, gamma: float = 0.1,
          early_stopping: int | None = None, max_shift: int = 0, out: str | Path | None = None,
          resume: str | Path | None = None, overwrite: bool = False, progress: bool = True,
          model_name: str | None = None, model_spec: str | None = None,
          on_epoch: Callable[[dict[str, float]], Any] | None = None, threads: int | None = None) -> History:
    """Train a classifier with cross-entropy; returns the per-epoch :class:`History`.

    Args:
        model: a ``convscope.nn`` module mapping ``(N, ...)`` inputs to logits ``(N, classes)``.
        data: ``"digits"``, a path (see :func:`convscope.data.load`), an ``(X, y)`` pair, or a
            dict with ``"train"`` and optionally ``"val"`` pairs.
        epochs: total epochs (a resumed run continues up to this number).
        optimizer: ``"sgd"`` (with ``momentum``), ``"adam"`` or ``"adamw"``.
        lr: learning rate; ``None`` → 0.05 for SGD, 1e-3 for Adam/AdamW.
        weight_decay: L2 (SGD, Adam) or decoupled (AdamW) weight decay.
        schedule: ``None`` (or ``"none"``), ``"step"`` (×``gamma`` every ``step_size`` epochs,
            by default a third of ``epochs``) or ``"cosine"`` (to 0 over ``epochs``), stepped
            once per epoch.
        early_stopping: patience in epochs without a lower validation loss; the model ends
            with the best epoch's weights. Needs a ``"val"`` set.
        max_shift: random-shift augmentation of the training batches, in cells.
        out: folder for ``checkpoint.npz`` (every epoch, atomic), ``weights.npz`` (the
            state_dict), ``history.csv`` and ``history.json``. A folder that holds another
            run is refused unless ``overwrite``.
        resume: a run folder (or checkpoint file) to continue; the settings and the data
            must be those of the checkpoint. ``epochs`` may grow unless the schedule spans
            the epochs (cosine, or step without ``step_size``), which would not continue.
        overwrite: replace the run that ``out`` holds (other than the one resumed).
        progress: show a progress bar when stderr is a terminal, else a line per epoch.
        model_name: recorded in the checkpoint so ``convscope train --resume`` can rebuild it.
        model_spec: the spec text the model was built from, recorded with ``model_name``.
        on_epoch: called with each epoch's metrics row after the epoch (and its checkpoint);
            it may read the model but must not change it or draw from the engine's RNG.
        threads: BLAS threads while training; ``None`` picks one thread when a batch costs
            under 0.5 GMAC (small matrices run slower split across threads) and the
            library's default otherwise. Results are identical either way.

    Shape:
        inputs ``X (N, ...)`` as the model expects (checked layer by layer on a shape-only
        pass before training), labels ``y (N,)`` in ``0 .. classes − 1``.

    The model ends in eval mode. Unlike ``torch``, the batch order and augmentation come
    from ``seed`` and the epoch number only (see :class:`~convscope.data.Batches`).
    """
    config = TrainConfig(epochs=epochs, optimizer=optimizer, lr=lr, batch_size=batch_size, seed=seed,
                         weight_decay=weight_decay, momentum=momentum, schedule=schedule, step_size=step_size,
                         gamma=gamma, early_stopping=early_stopping, max_shift=max_shift, model=model_name,
                         spec=model_spec, data=_data_record(data))
    sets = _checked_sets(model, data)
    if config.early_stopping is not None and "val" not in sets:
        raise ValueError("train: early_stopping needs a validation set (data with a 'val' split)")
    X_train, y_train = sets["train"]
    config.sample_shape = [int(d) for d in X_train.shape[1:]]
    data_id = _fingerprint(X_train, y_train)
    opt = _optimizer(model, config)
    sched = _scheduler(opt, config)
    if resume is not None:
        history, stopping = _restore(Path(resume), model, opt, sched, config, data_id)
    else:
        cs_random.manual_seed(config.seed)
        history, stopping = History(), _Stopping()
    batches = Batches(X_train, y_train, config.batch_size, seed=config.seed, max_shift=config.max_shift)
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:  # after every check: a refused run leaves no folder behind
        _check_out(out_dir, resume, overwrite)
        _make_out(out_dir)
    if threads is None:
        threads = 1 if _batch_macs(model, X_train.shape[1:], config.batch_size) < 5e8 else None
    with threadpool_limits(threads), _Progress(progress, config.epochs, len(batches)) as bar:
        for epoch in range(len(history), config.epochs):
            if history.stopped_early:
                break
            row = _run_epoch(model, opt, batches, epoch, bar)
            if "val" in sets:
                row["val_loss"], row["val_acc"] = evaluate(model, *sets["val"])
                history.stopped_early = stopping.update(epoch + 1, row["val_loss"], model, config.early_stopping)
                history.best_epoch = stopping.best_epoch
            if sched is not None:
                sched.step()
            history.rows.append(row)
            bar.finish(row)
            if out_dir is not None:
                _save(out_dir, model, opt, sched, config, history, stopping, data_id)
            if on_epoch is not None:
                on_epoch(row)
    if history.stopped_early and stopping.best_state is not None:
        model.load_state_dict(stopping.best_state)
        if out_dir is not None:
            _save_weights(out_dir / WEIGHTS, model)
    model.eval()
    return history


def _check_out(out: Path, resume: str | Path | None, overwrite: bool) -> None:
    """Refuse to write over another run's checkpoint (the run resumed may be continued in place)."""
    if overwrite or not (out / CHECKPOINT).exists():
        return
    if resume is not None:
        source = Path(resume)
        if (source if source.is_dir() else source.parent).resolve() == out.resolve():
            return
    raise ValueError(f"train: {out} already holds a run ({CHECKPOINT}); continue it with resume={str(out)!r} "
                     "(--resume), or pass overwrite=True (--overwrite) to replace it")


def _make_out(out: Path) -> None:
    """Create the run folder ``out``; one that is a file, cannot be created or cannot be written
    into is refused now, before an epoch is spent on a checkpoint that could not be saved."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"train: the run folder {out} is a file; name a folder (--out run/)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno, f"train: cannot create the run folder {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, f"train: cannot write into the run folder {out} (no write permission or a "
                      "read-only file system); the checkpoints could not be saved")


def _batch_macs(model: Module, sample_shape: tuple, batch_size: int) -> int:
    from .analyze import summary

    return summary(model, (batch_size, *sample_shape)).totals.macs


# --- the command line's entry -------------------------------------------------------------------------
def build_model(name: str) -> Module:
    """An untrained model by name: a pretrained architecture (``"digits"``, the default CNN),
    a spec file (``*.spec``, see :func:`convscope.load_spec`) or a zoo model
    (:func:`convscope.zoo.build`)."""
    from . import zoo
    from .pretrained import ARCHITECTURES

    if name in ARCHITECTURES:
        return ARCHITECTURES[name]()
    if _is_spec(name):
        from .spec import load_spec

        return load_spec(Path(name))
    return zoo.build(name)


def _is_spec(name: str) -> bool:
    """Whether :func:`build_model` reads ``name`` as a spec file."""
    from .pretrained import ARCHITECTURES

    return name not in ARCHITECTURES and (name.endswith(".spec") or Path(name).is_file())


def _build(name: str, spec: str | None) -> Module:
    """The model of a run: from the spec text it recorded, else by name (:func:`build_model`)."""
    if spec is None:
        return build_model(name)
    from .spec import load_spec

    return load_spec(spec, source=name)


def _spec_text(name: str, recorded: str | None, named: bool) -> str | None:
    """The spec text of the model ``name``: the one the resumed run ``recorded``, which a spec
    file named again (``named``) must still hold, else the file's; None for other models."""
    if recorded is not None:
        if named and Path(name).is_file() and read_text(name) != recorded:
            raise ValueError(f"resume: {name} has changed since the run was trained on it; resume without naming "
                             "the model to continue the model the run trained, or start a new run")
        return recorded
    return read_text(name) if _is_spec(name) else None


def is_run(path: str | Path) -> bool:
    """Whether ``path`` is a training run's folder (it holds a ``checkpoint.npz``) or a
    checkpoint file, as :func:`load_run` takes."""
    path = Path(path)
    return (path / CHECKPOINT).is_file() if path.is_dir() else path.suffix == ".npz" and path.is_file()


def _data_record(data: Any) -> str | None:
    """What a checkpoint records of ``data``: a file's absolute path (the run may be resumed
    from another folder), a named set's name, None for arrays given in Python."""
    if not isinstance(data, (str, Path)):
        return None
    return str(data) if str(data) in NAMED_SETS or not Path(data).exists() else str(Path(data).resolve())


def checkpoint_file(run: str | Path) -> Path:
    """The checkpoint of ``run``: a run folder's ``checkpoint.npz``, or the file named; a
    ValueError naming ``run`` when it is neither."""
    path = Path(run)
    if path.is_dir():
        if not (path / CHECKPOINT).is_file():
            raise ValueError(f"{run} holds no training run (no {CHECKPOINT}); name a folder written by train --out")
        return path / CHECKPOINT
    if not path.is_file():
        raise ValueError(f"no run folder or checkpoint file {str(run)!r}")
    return path


def load_run(path: str | Path) -> tuple[Module, tuple[int, ...]]:
    """The model a training run trained, and the shape of one sample of its data (no batch
    dim): rebuilt by the model name its checkpoint records (:func:`build_model`), with the
    checkpoint's weights, in eval mode. ``path``: the run's folder (``--out``) or its
    ``checkpoint.npz``. The global random state is left as it was."""
    file = checkpoint_file(path)
    state = ckpt.load(file)
    name = state.config.get("model")
    if not name:
        raise ValueError(f"{file}: the checkpoint records no model to rebuild")
    saved = cs_random.get_rng_state()
    try:
        net = _build(name, state.config.get("spec"))
    finally:
        cs_random.set_rng_state(saved)
    try:
        net.load_state_dict(state.model)
    except (KeyError, ValueError) as err:
        raise ValueError(f"{file}: its weights do not fit model {name!r}: {err}") from None
    sample = state.config.get("sample_shape")
    if sample is None:  # a checkpoint from before the shape was recorded: read the data
        sample = next(iter(load(state.config.get("data") or "digits").values()))[0].shape[1:]
    return net.eval(), tuple(int(d) for d in sample)


def run(model: str | None = None, data: str | None = None, *, out: str | Path | None = None,
        resume: str | Path | None = None, overwrite: bool = False, progress: bool = True,
        **options: Any) -> tuple[Module, History, tuple[float, float] | None]:
    """What ``convscope train`` does: build the model by name (default ``"digits"``), seeded
    with ``seed``, and :func:`train` it; returns the model, its history and, when the data
    has a ``test`` split, the test loss and accuracy of the final model.

    Settings left ``None`` come from the checkpoint when resuming, else from the model's
    recipe (:data:`convscope.pretrained.RECIPES`) if it has one, else :func:`train`'s
    defaults. ``out`` defaults to the resumed folder.
    """
    stored: dict[str, Any] = {}
    if resume is not None:
        path = Path(resume)
        stored = ckpt.load(checkpoint_file(path)).config
        out = out if out is not None else (path if path.is_dir() else path.parent)
    if out is None:
        raise ValueError("train: give an output folder (--out run/) or a run to --resume")
    name = model or stored.get("model") or "digits"
    if stored and stored.get("model") not in (None, name):
        raise ValueError(f"resume: the checkpoint is of model {stored['model']!r}, not {name!r}")
    from .pretrained import RECIPES

    tunable = {f.name for f in fields(TrainConfig)} - set(RECORDS)
    base = {k: v for k, v in stored.items() if k in tunable} if stored else dict(RECIPES.get(name, {}))
    settings = {**base, **{k: v for k, v in options.items() if v is not None}}
    unknown = set(settings) - tunable
    if unknown:
        raise ValueError(f"train: unknown settings {sorted(unknown)}")
    spec = _spec_text(name, stored.get("spec"), model is not None)
    cs_random.manual_seed(TrainConfig(**settings).seed)  # every setting checked before the model is built
    net = _build(name, spec)
    source = data or stored.get("data") or "digits"
    history = train(net, source, **settings, out=out, resume=resume, overwrite=overwrite, progress=progress,
                    model_name=name, model_spec=spec)
    test = load(source).get("test")
    return net, history, evaluate(net, *test) if test is not None else None
