"""The training loop: it learns, it is deterministic, resume equals an uninterrupted run, it
matches torch step for step, bad data gets clear errors, and the command line works."""

from __future__ import annotations

import importlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import convscope as cs
from convscope import nn
from convscope.checkpoint import CheckpointError
from convscope.cli import main
from convscope.data import Batches, digits
from convscope.train import evaluate, train
from torch_ref import assert_close

# the module, whatever `convscope.train` is bound to (the package may export the function)
T = importlib.import_module("convscope.train")


def _small(dropout: float = 0.0, dtype: Any = np.float32, batch_norm: bool = False) -> nn.Module:
    """A tiny CNN for the digits: conv 3×3 (4 maps) → [batch norm] → ReLU → max pool → [dropout] → linear."""
    cs.manual_seed(0)
    layers = [nn.Conv2d(1, 4, 3, padding=1), *([nn.BatchNorm2d(4)] if batch_norm else []), nn.ReLU(), nn.MaxPool2d(2),
              nn.Flatten()]
    layers += [nn.Dropout(dropout)] if dropout else []
    model = nn.Sequential(*layers, nn.Linear(64, 10))
    return model.double() if dtype == np.float64 else model


def _subset(n: int, n_val: int = 60) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    X, y = digits("train")
    Xv, yv = digits("val")
    return {"train": (X[:n], y[:n]), "val": (Xv[:n_val], yv[:n_val])}


def _weights(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in model.state_dict().items()}


def _assert_same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# --- learning ---------------------------------------------------------------------------------------
def test_loss_falls_and_reaches_90_percent_on_a_small_fixed_subset() -> None:
    """A tiny CNN (4 conv maps, 690 weights) with Adam on the first 600 training digits, 8
    epochs (under a second): the training loss falls more than tenfold and the accuracy on the
    179 validation digits reaches ≥ 90 % (92.2 % here)."""
    model = _small()
    data = _subset(600, n_val=179)
    history = train(model, data, epochs=8, optimizer="adam", lr=1e-2, batch_size=32, progress=False)
    losses = history["train_loss"]
    assert len(history) == 8 and losses[-1] < losses[0] / 10
    assert history["val_acc"][-1] >= 0.90
    assert not model.training, "the model ends in eval mode"
    assert history["val_loss"][-1] == pytest.approx(evaluate(model, *data["val"])[0])


def test_same_seed_gives_bit_identical_weights() -> None:
    runs = []
    for _ in range(2):
        model = _small(dropout=0.2)
        train(model, _subset(96), epochs=2, optimizer="adam", lr=1e-2, batch_size=32, seed=3, max_shift=1,
              progress=False)
        runs.append(_weights(model))
    _assert_same_weights(*runs)
    other = _small(dropout=0.2)
    train(other, _subset(96), epochs=2, optimizer="adam", lr=1e-2, batch_size=32, seed=4, max_shift=1, progress=False)
    assert not np.array_equal(other.state_dict()["5.weight"], runs[0]["5.weight"])


# --- resume -------------------------------------------------------------------------------------------
RESUME_CASES = {
    "adamw-cosine-dropout-shift": dict(optimizer="adamw", lr=1e-2, weight_decay=1e-2, schedule="cosine", max_shift=1),
    "sgd-step-earlystop": dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-3, schedule="step",
                               step_size=1, gamma=0.5, early_stopping=3),
    "adam-batchnorm": dict(optimizer="adam", lr=1e-2),  # a 0-d buffer: num_batches_tracked
}


@pytest.mark.parametrize("case", RESUME_CASES)
def test_resume_gives_the_weights_of_an_uninterrupted_run(case: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    settings = {**RESUME_CASES[case], "epochs": 4, "batch_size": 32, "seed": 7, "progress": False}
    data = _subset(128)

    def model() -> nn.Module:
        return _small(dropout=0.3, batch_norm="batchnorm" in case)

    whole = model()
    full = train(whole, data, **settings, out=tmp_path / "whole")

    real_epoch = T._run_epoch

    def crash_in_epoch_3(model: Any, opt: Any, batches: Any, epoch: int, bar: Any) -> Any:
        if epoch == 2:
            raise KeyboardInterrupt("power cut")
        return real_epoch(model, opt, batches, epoch, bar)

    monkeypatch.setattr(T, "_run_epoch", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train(model(), data, **settings, out=tmp_path / "cut")
    monkeypatch.undo()
    assert json.loads((tmp_path / "cut" / "history.json").read_text())["rows"][-1]["epoch"] == 2

    resumed = model()
    cs.manual_seed(999)  # the engine RNG state must come from the checkpoint, not from here
    history = train(resumed, data, **settings, out=tmp_path / "cut", resume=tmp_path / "cut")
    _assert_same_weights(_weights(whole), _weights(resumed))
    drop = ("seconds", "samples_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in history.rows] == \
           [{k: v for k, v in r.items() if k not in drop} for r in full.rows]
    saved = np.load(tmp_path / "cut" / "weights.npz")
    _assert_same_weights(dict(saved), _weights(whole))


def test_resume_refuses_other_settings_or_data(tmp_path: Path) -> None:
    data = _subset(64)
    train(_small(), data, epochs=1, lr=1e-2, batch_size=32, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"settings differ from the checkpoint's: lr=0\.02 \(checkpoint: 0\.01\)"):
        train(_small(), data, epochs=2, lr=2e-2, batch_size=32, resume=tmp_path, progress=False)
    other = {"train": (data["train"][0][::-1].copy(), data["train"][1][::-1].copy()), "val": data["val"]}
    with pytest.raises(ValueError, match="training data differ"):
        train(_small(), other, epochs=2, lr=1e-2, batch_size=32, resume=tmp_path, progress=False)


def test_resume_grows_epochs_only_where_the_schedule_does_not_span_them(tmp_path: Path) -> None:
    """A cosine schedule over 2 epochs ends at lr 0; resumed to 4 it used to climb back up
    (lr 0.0, then 0.0025) instead of continuing. Such a resume is refused; schedules that do
    not depend on the epoch count grow."""
    data = _subset(64)
    for schedule, step_size, grows in (("cosine", None, False), ("step", None, False), ("step", 1, True),
                                       (None, None, True)):
        run = tmp_path / f"{schedule}-{step_size}"
        settings = dict(lr=1e-2, batch_size=32, schedule=schedule, step_size=step_size, progress=False)
        train(_small(), data, epochs=2, out=run, **settings)
        if grows:
            assert len(train(_small(), data, epochs=3, resume=run, **settings)) == 3
        else:
            with pytest.raises(ValueError, match=rf"the {schedule} schedule .* epochs=2; resuming to epochs=3 would "
                                                 r"not continue it\. Resume with epochs=2"):
                train(_small(), data, epochs=3, resume=run, **settings)
            assert len(train(_small(), data, epochs=2, resume=run, **settings)) == 2


def test_out_holding_another_run_is_refused_unless_overwrite(tmp_path: Path) -> None:
    data = _subset(64)
    settings = dict(lr=1e-2, batch_size=32, progress=False)
    train(_small(), data, epochs=2, out=tmp_path / "a", **settings)
    before = (tmp_path / "a" / "history.csv").read_text()
    with pytest.raises(ValueError, match=r"already holds a run \(checkpoint\.npz\); continue it with resume="):
        train(_small(), data, epochs=1, out=tmp_path / "a", **settings)
    assert (tmp_path / "a" / "history.csv").read_text() == before
    train(_small(), data, epochs=1, out=tmp_path / "b", **settings)
    with pytest.raises(ValueError, match="already holds a run"):  # resuming a into b would replace b's run
        train(_small(), data, epochs=2, out=tmp_path / "b", resume=tmp_path / "a", **settings)
    assert len(train(_small(), data, epochs=1, out=tmp_path / "a", overwrite=True, **settings)) == 1
    assert len((tmp_path / "a" / "history.csv").read_text().splitlines()) == 2


def test_an_out_folder_that_cannot_hold_the_run_is_refused_before_training(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    epochs: list[dict] = []
    settings = dict(epochs=1, batch_size=32, progress=False, on_epoch=epochs.append)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ValueError, match=r"^train: the run folder .*file is a file; name a folder \(--out run/\)$"):
        train(_small(), _subset(64), out=tmp_path / "file", **settings)
    with pytest.raises(OSError, match=r"train: cannot create the run folder .*file/run: Not a directory$"):
        train(_small(), _subset(64), out=tmp_path / "file" / "run", **settings)
    monkeypatch.setattr(T.os, "access", lambda path, mode: False)  # as a read-only file system
    with pytest.raises(OSError, match=r"train: cannot write into the run folder .*ro \(no write permission"):
        train(_small(), _subset(64), out=tmp_path / "ro", **settings)
    assert epochs == []


def test_resume_from_a_folder_without_a_run_names_it(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()  # was "[Errno 2] No such file or directory: '.../empty/checkpoint.npz'"
    with pytest.raises(ValueError, match=r"^.*empty holds no training run \(no checkpoint\.npz\); name a folder "
                                         r"written by train --out$"):
        T.run(resume=tmp_path / "empty", epochs=1, progress=False)


def test_resume_from_a_corrupt_checkpoint_fails_clearly_and_keeps_the_file(tmp_path: Path) -> None:
    train(_small(), _subset(64), epochs=1, batch_size=32, out=tmp_path, progress=False)
    path = tmp_path / "checkpoint.npz"
    damaged = path.read_bytes()[:-100]
    path.write_bytes(damaged)
    with pytest.raises(CheckpointError, match="checkpoint.npz: truncated or corrupt checkpoint"):
        train(_small(), _subset(64), epochs=2, batch_size=32, out=tmp_path, resume=tmp_path, progress=False)
    assert path.read_bytes() == damaged


# --- early stopping ---------------------------------------------------------------------------------
def test_early_stopping_restores_the_best_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    val_losses = iter([1.0, 0.5, 0.7, 0.8, 0.9, 1.0])
    real_evaluate = T.evaluate
    monkeypatch.setattr(T, "evaluate", lambda model, X, y: (next(val_losses), real_evaluate(model, X, y)[1]))
    model = _small()
    history = train(model, _subset(64), epochs=6, optimizer="sgd", lr=0.05, batch_size=32, early_stopping=2,
                    progress=False)
    assert history.stopped_early and history.best_epoch == 2 and len(history) == 4
    monkeypatch.undo()
    two = _small()
    train(two, _subset(64), epochs=2, optimizer="sgd", lr=0.05, batch_size=32, progress=False)
    _assert_same_weights(_weights(model), _weights(two))


# --- torch cross-check ---------------------------------------------------------------------------------
class _TorchSmall(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                       torch.nn.Flatten(), torch.nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


TORCH_CASES = {
    "sgd-step": dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-3, schedule="step", step_size=1,
                     gamma=0.5),
    "adam": dict(optimizer="adam", lr=1e-2, weight_decay=1e-3),
    "adamw-cosine": dict(optimizer="adamw", lr=1e-2, weight_decay=1e-2, schedule="cosine"),
}


def _torch_optimizer(params: Any, s: dict) -> tuple[torch.optim.Optimizer, Any]:
    if s["optimizer"] == "sgd":
        opt = torch.optim.SGD(params, lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"])
    else:
        cls = torch.optim.Adam if s["optimizer"] == "adam" else torch.optim.AdamW
        opt = cls(params, lr=s["lr"], weight_decay=s["weight_decay"])
    sched = {"step": lambda: torch.optim.lr_scheduler.StepLR(opt, s["step_size"], s["gamma"]),
             "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, s["epochs"]),
             None: lambda: None}[s.get("schedule")]()
    return opt, sched


@pytest.mark.parametrize("case", TORCH_CASES)
def test_training_matches_torch_in_float64(case: str) -> None:
    """Same model, initial weights, batches (shifted the same way) and optimizer: after 3 epochs
    of 4 steps each, convscope's and torch's weights agree to 1e-10 relative."""
    settings = {**TORCH_CASES[case], "epochs": 3, "batch_size": 16, "seed": 1, "max_shift": 1}
    X, y = digits("train")
    X, y = X[:64].astype(np.float64), y[:64]
    model = _small(dtype=np.float64)
    reference = _TorchSmall().double()
    reference.net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()})
    train(model, (X, y), **settings, progress=False)

    opt, sched = _torch_optimizer(reference.parameters(), settings)
    batches = Batches(X, y, settings["batch_size"], seed=settings["seed"], max_shift=settings["max_shift"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: worker threads only add contention on a busy machine
    try:
        for epoch in range(settings["epochs"]):
            for xb, yb in batches.epoch(epoch):
                loss = torch.nn.functional.cross_entropy(reference(torch.from_numpy(xb)), torch.from_numpy(yb))
                opt.zero_grad()
                loss.backward()
                opt.step()
            if sched is not None:
                sched.step()
    finally:
        torch.set_num_threads(threads)
    want = reference.net.state_dict()
    for key, value in model.state_dict().items():
        assert_close(value, want[key].numpy(), np.float64, key)


# --- bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, error, match", [
    (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 77, np.nan, X), y), ValueError,
     r"train data: inputs X contain 1 NaN or infinite values \(first in example 1\)"),
    (lambda X, y: (X, np.where(np.arange(len(y)) == 5, 12, y)), ValueError,
     r"train data: labels must lie in 0 \.\. 9 \(the model has 10 outputs\), got 12 at index 5"),
    (lambda X, y: (np.repeat(X, 3, axis=1), y), cs.ShapeError,
     r"train data: examples of shape \(3, 8, 8\) do not fit the model: 0 \(Conv2d\): expected input with 1 "),
    (lambda X, y: (X, y[:-1]), cs.ShapeError, "X has 32 examples but y has 31 labels"),
    (lambda X, y: (X, y.astype(np.float64)), ValueError, "labels y must be integers"),
])
def test_bad_data_gets_a_clear_error(make: Any, error: type, match: str) -> None:
    X, y = digits("val")
    with pytest.raises(error, match=match):
        train(_small(), make(X[:32], y[:32]), epochs=1, progress=False)


def test_bad_settings_get_a_clear_error() -> None:
    data = _subset(32)
    for kwargs, match in [({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
                          ({"schedule": "linear"}, "unknown schedule 'linear'"),
                          ({"epochs": 0}, "epochs must be ≥ 1, got 0"),
                          ({"lr": -1.0}, "lr must be a positive number, got -1.0"),
                          ({"early_stopping": 0}, "early_stopping .* must be ≥ 1"),
                          ({"seed": -1}, "seed must be ≥ 0, got -1"),
                          ({"epochs": 1.5}, r"^train: epochs must be a whole number, got 1\.5$"),
                          ({"batch_size": 2.5}, r"^train: batch_size must be a whole number, got 2\.5$"),
                          ({"max_shift": 1.5}, r"^train: max_shift must be a whole number, got 1\.5$"),
                          ({"seed": 0.5}, r"^train: seed must be a whole number, got 0\.5$"),
                          ({"epochs": "3"}, r"^train: epochs must be a whole number, got '3'$"),
                          ({"step_size": True, "schedule": "step"}, "step_size must be a whole number, got True"),
                          ({"early_stopping": 2.0}, "early_stopping must be a whole number, got 2.0")]:
        with pytest.raises(ValueError, match=match):
            train(_small(), data, progress=False, **kwargs)
    with pytest.raises(ValueError, match="early_stopping needs a validation set"):
        train(_small(), data["train"], early_stopping=2, progress=False)
    with pytest.raises(ValueError, match="the loss became nan"), warnings.catch_warnings():
        warnings.simplefilter("error")  # the one report is the error: no NumPy overflow warnings before it
        train(_small(), data, lr=1e300, optimizer="sgd", progress=False)


# --- outputs and progress -------------------------------------------------------------------------------
def test_run_folder_holds_checkpoint_weights_and_history(tmp_path: Path) -> None:
    model = _small()
    history = train(model, _subset(64), epochs=2, batch_size=32, out=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz", "history.csv", "history.json",
                                                           "weights.npz"]
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0] == "epoch,lr,train_loss,train_acc,seconds,samples_per_s,val_loss,val_acc" and len(lines) == 3
    stored = json.loads((tmp_path / "history.json").read_text())
    assert stored["rows"] == history.rows and stored["best_epoch"] == history.best_epoch
    fresh = _small()
    fresh.load_state_dict(dict(np.load(tmp_path / "weights.npz")))
    _assert_same_weights(_weights(fresh), _weights(model))


def test_a_run_folder_is_a_model_for_summary_trace_and_viz(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``convscope train --out run/`` then ``summary run/``, ``trace run/``, ``viz ... run/``:
    the model the run trained, with its weights, on the shape of its data's samples."""
    from convscope.models import resolve_model
    from convscope.train import load_run, run

    net, _, _ = run(out=tmp_path / "run", epochs=1, progress=False)
    state = cs.random.get_rng_state()
    loaded, shape = load_run(tmp_path / "run")
    assert shape == digits("test")[0].shape[1:] and not loaded.training
    assert cs.random.get_rng_state()["state"] == state["state"]  # building it drew no random numbers
    _assert_same_weights(_weights(loaded), _weights(net))
    assert _weights(load_run(tmp_path / "run" / "checkpoint.npz")[0]).keys() == _weights(net).keys()
    drawn = resolve_model(str(tmp_path / "run"), weights=True)
    _assert_same_weights(_weights(drawn.module), _weights(net))
    assert (drawn.name, drawn.input_shape, drawn.kind) == ("run", shape, "run")
    table = cs.summary(str(tmp_path / "run"))
    assert table.totals.params == sum(p.size for p in net.state_dict().values())
    assert table.input_shapes[0] == (1, *shape)
    x = digits("test")[0][3:4]
    with cs.no_grad():
        want = net.eval()(cs.tensor(x))  # the logits of test digit 3
    assert main(["trace", str(tmp_path / "run"), "--layer", "8", "--index", "0,7", "--digit", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["value"] == pytest.approx(float(want.numpy()[0, 7]), rel=1e-6)
    assert main(["summary", str(tmp_path)]) == 2
    assert "is a folder without a training run's checkpoint.npz" in capsys.readouterr().err


def test_a_run_of_a_spec_keeps_the_model_it_trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    """A run of ``train my.spec`` rebuilds from the spec text it recorded: it loaded the file
    again by its relative path, so from another folder (or once the file moved) the run was
    unreadable, and after an edit that kept the shapes (relu → tanh) ``summary run/``,
    ``trace run/`` and ``--resume`` used the edited model as if it had been trained."""
    from convscope.train import load_run, run

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    Path("my.spec").write_text("input 1x8x8\nconv 4 k3 p1\nrelu\nflatten\nfc 10\n")
    net, _, _ = run("my.spec", out="run", epochs=2, schedule="none", progress=False)
    Path("my.spec").write_text("input 1x8x8\nconv 4 k3 p1\ntanh\nflatten\nfc 10\n")
    with pytest.raises(ValueError, match="resume: my.spec has changed since the run was trained on it"):
        run("my.spec", resume="run", epochs=3, progress=False)
    monkeypatch.chdir(tmp_path)
    Path("work/my.spec").unlink()
    loaded, shape = load_run("work/run")
    assert shape == (1, 8, 8) and [type(m).__name__ for m in loaded] == ["Conv2d", "ReLU", "Flatten", "Linear"]
    _assert_same_weights(_weights(loaded), _weights(net))
    resumed, history, _ = run(resume="work/run", epochs=3, progress=False)
    assert len(history) == 3 and type(resumed.relu1).__name__ == "ReLU"
    assert main(["summary", "work/run"]) == 0 and "relu1 (ReLU)" in capsys.readouterr().out


def test_a_run_on_a_data_file_loads_and_resumes_from_another_folder(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``--data my.npz`` was recorded by its relative path, so the run could not be loaded
    from another folder; now the path is absolute and the sample shape is recorded, so
    loading the run reads no data at all."""
    from convscope.train import load_run, run

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    X, y = _subset(48)["train"]
    np.savez("my.npz", X_train=X, y_train=y)
    run("digits", "my.npz", out="run", epochs=1, schedule="none", progress=False)
    monkeypatch.chdir(tmp_path)
    resumed, history, _ = run(resume="work/run", epochs=2, progress=False)
    assert len(history) == 2
    (work / "my.npz").unlink()
    loaded, shape = load_run("work/run")
    assert shape == tuple(X.shape[1:])
    _assert_same_weights(_weights(loaded), _weights(resumed))


def test_cli_train_help_names_spec_files(capsys: pytest.CaptureFixture) -> None:
    """``convscope train my.spec`` works; its help said only "'digits' (default) or a zoo model name"."""
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "'digits' (default), a zoo model name or a spec file" in " ".join(capsys.readouterr().out.split())


def test_progress_is_lines_without_a_terminal_and_a_bar_with_one(capsys: pytest.CaptureFixture,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    train(_small(), _subset(32), epochs=2, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and [line[:14] for line in err.splitlines()] == ["epoch   1/2  l", "epoch   2/2  l"]
    assert "\x1b" not in err  # plain lines for logs: no bar, no terminal codes
    train(_small(), _subset(32), epochs=1, progress=False)
    assert capsys.readouterr() == ("", "")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    train(_small(), _subset(32), epochs=1, progress=True)
    train(_small(), _subset(32), epochs=1, progress=False)
    assert screen.getvalue().count("epoch   1/1  loss") == 1


# --- command line ------------------------------------------------------------------------------------
def test_cli_trains_resumes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(run), "--batch-size", "128", "--lr", "0.01",
                 "--schedule", "none"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("trained 1 epoch: loss ") and ", val accuracy " in out and ", test accuracy " in out
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    assert len((run / "history.csv").read_text().splitlines()) == 3
    stored = json.loads((run / "history.json").read_text())
    assert stored["rows"][1]["epoch"] == 2


def test_cli_ctrl_c_says_how_to_resume_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in epoch 2 (KeyboardInterrupt): no traceback, exit 130 as shells report SIGINT,
    and the command that continues the run, which then finishes it."""
    real_epoch = T._run_epoch

    def ctrl_c_in_epoch_2(model: Any, opt: Any, batches: Any, epoch: int, bar: Any) -> Any:
        if epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(model, opt, batches, epoch, bar)

    run = tmp_path / "run"
    monkeypatch.setattr(T, "_run_epoch", ctrl_c_in_epoch_2)
    argv = ["train", "--epochs", "2", "--batch-size", "128", "--schedule", "none", "--quiet"]
    assert main([*argv, "--out", str(run)]) == 130
    assert capsys.readouterr().err == (f"\nconvscope train: interrupted: {run} holds the last finished epoch; "
                                       f"continue with --resume {run}\n")
    monkeypatch.undo()
    assert main([*argv, "--resume", str(run)]) == 0
    assert len(json.loads((run / "history.json").read_text())["rows"]) == 2

    monkeypatch.setattr(T, "_run_epoch", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main([*argv, "--out", str(tmp_path / "new")]) == 130  # before the first checkpoint: nothing to resume
    assert capsys.readouterr().err == "\nconvscope train: interrupted\n"


@pytest.mark.parametrize("argv, match", [
    (["train", "--data", "nowhere.npz", "--out", "{tmp}"], "no such file or folder"),
    (["train", "--epochs", "1"], r"give an output folder \(--out run/\)"),
    (["train", "resnet18", "--out", "{tmp}"], r"train data: examples of shape \(1, 8, 8\) do not fit the model"),
    (["train", "nosuchnet", "--out", "{tmp}"], "unknown zoo model 'nosuchnet'"),
    (["train", "--resume", "{tmp}"], r"error: no run folder or checkpoint file '.*run'$"),  # was [Errno 2] ...
    (["train", "--max-shift", "100", "--out", "{tmp}"], "max_shift must be smaller than the examples' spatial "
                                                          "size 8×8, got 100"),
    (["train", "--weight-decay", "nan", "--out", "{tmp}"], "error: weight_decay must be ≥ 0, got nan$"),
])
def test_cli_bad_input_exits_2_with_one_line(argv: list[str], match: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    assert main([a.replace("{tmp}", str(tmp_path / "run")) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convscope train: error: ") and err.count("\n") == 1
    assert not err.startswith("convscope train: error: train:")  # the command is named once
    assert pytest.importorskip("re").search(match, err), err
    assert not (tmp_path / "run").exists()  # a refused run leaves no folder behind
