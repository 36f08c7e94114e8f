"""Checkpoints: round trip of every field, atomic writes that survive a crash mid-write, and
clear errors for truncated, corrupt or foreign files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import convscope as cs
from convscope import checkpoint as ckpt
from convscope import random as cs_random


def _checkpoint(epoch: int = 3, fill: float = 1.0) -> ckpt.Checkpoint:
    state = {"0.weight": np.full((4, 1, 3, 3), fill, np.float32), "0.bias": np.arange(4, dtype=np.float64),
             "1.num_batches_tracked": np.array(5), "1.weight": np.arange(6.0).reshape(2, 3).T}  # 0-d, strided
    optimizer = {"state": {0: {"step": 7.0, "exp_avg": np.ones(3)}, 1: {"momentum_buffer": cs.tensor([1.0, 2.0])},
                           2: {"step": cs.tensor(np.array(7.0))}},
                 "param_groups": [{"lr": 0.01, "betas": (0.9, 0.999), "params": [0, 1], "initial_lr": 0.1}]}
    return ckpt.Checkpoint(epoch=epoch, model=state, optimizer=optimizer,
                           scheduler={"last_epoch": 2, "_last_lr": [0.1]}, rng=cs.manual_seed(5).bit_generator.state,
                           config={"model": "digits", "lr": None},
                           extra={"history": [{"epoch": 1, "loss": 0.5}], "__dunder__": 1})


def test_round_trip_keeps_values_types_and_dtypes(tmp_path: Path) -> None:
    original = _checkpoint()
    path = ckpt.save(tmp_path / "run" / "c.npz", original)
    loaded = ckpt.load(path)
    assert loaded.epoch == 3 and loaded.config == original.config and loaded.extra == original.extra
    for key, value in original.model.items():
        assert loaded.model[key].dtype == value.dtype and loaded.model[key].shape == value.shape, key
        np.testing.assert_array_equal(loaded.model[key], value)
    state = loaded.optimizer["state"]
    assert set(state) == {0, 1, 2}, "integer keys survive"
    assert state[2]["step"].shape == (), "0-d tensors stay 0-d"
    assert loaded.optimizer["param_groups"][0]["betas"] == (0.9, 0.999), "tuples survive"
    assert isinstance(state[1]["momentum_buffer"], cs.Tensor)
    np.testing.assert_array_equal(state[0]["exp_avg"], np.ones(3))
    cs_random.set_rng_state(loaded.rng)  # 128-bit integers survive JSON
    assert cs_random.default_generator().random() == cs.manual_seed(5).random()
    assert [p.name for p in path.parent.iterdir()] == ["c.npz"], "no temporary files left behind"


def _partial_writer(fh: object, arrays: dict) -> None:
    fh.write(b"PK\x03\x04 half a zip")  # type: ignore[attr-defined]
    raise RuntimeError("disk pulled out mid-write")


def test_exception_mid_write_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ckpt.save(tmp_path / "c.npz", _checkpoint(epoch=1, fill=1.0))
    before = path.read_bytes()
    monkeypatch.setattr(ckpt, "_write_npz", _partial_writer)
    with pytest.raises(RuntimeError, match="mid-write"):
        ckpt.save(path, _checkpoint(epoch=2, fill=2.0))
    assert path.read_bytes() == before
    assert ckpt.load(path).epoch == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"], "the partial temp file is removed"


def test_killed_writer_leaves_the_previous_checkpoint_intact(tmp_path: Path) -> None:
    """A writer process killed (SIGKILL, no clean-up) in the middle of writing."""
    path = ckpt.save(tmp_path / "c.npz", _checkpoint(epoch=1))
    script = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from convscope import checkpoint as ckpt

        def dying_writer(fh, arrays):
            fh.write(b"PK\\x03\\x04" + bytes(1000))
            fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        ckpt._write_npz = dying_writer
        ckpt.save({str(path)!r}, ckpt.Checkpoint(epoch=2, model={{"w": np.zeros(10)}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert result.returncode == -9, result.stderr.decode()
    assert ckpt.load(path).epoch == 1
    leftovers = [p for p in tmp_path.iterdir() if p.name != "c.npz"]
    assert leftovers and all(p.name.startswith(".c.npz.") for p in leftovers), "only a hidden temp file is left"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip", "empty"])
def test_damaged_file_gets_a_clear_error_and_is_not_changed(tmp_path: Path, damage: str) -> None:
    path = ckpt.save(tmp_path / "c.npz", _checkpoint())
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    elif damage == "flip":
        data[200] ^= 0xFF  # inside the first array's bytes
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match=r"c\.npz: (truncated or corrupt|corrupt)") as info:
        ckpt.load(path)
    assert isinstance(info.value, ValueError)
    assert path.read_bytes() == bytes(data)


def test_foreign_npz_and_missing_file(tmp_path: Path) -> None:
    np.savez(tmp_path / "plain.npz", w=np.zeros(3))
    with pytest.raises(ckpt.CheckpointError, match="not a convscope checkpoint"):
        ckpt.load(tmp_path / "plain.npz")
    with pytest.raises(FileNotFoundError):
        ckpt.load(tmp_path / "missing.npz")


def test_unsupported_values_are_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot store a value of type set"):
        ckpt.save(tmp_path / "c.npz", ckpt.Checkpoint(epoch=0, model={}, extra={"s": {1, 2}}))
    assert not any(tmp_path.iterdir())


def test_load_does_not_allow_pickles(tmp_path: Path) -> None:
    np.savez(tmp_path / "p.npz", __meta__=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ckpt.CheckpointError):
        ckpt.load(tmp_path / "p.npz")


def test_save_verifies_before_replacing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that completes but produces an unreadable file never replaces the good one."""
    path = ckpt.save(tmp_path / "c.npz", _checkpoint(epoch=1))

    def bad_writer(fh: object, arrays: dict) -> None:
        fh.write(b"not a zip at all")  # type: ignore[attr-defined]

    monkeypatch.setattr(ckpt, "_write_npz", bad_writer)
    with pytest.raises(ckpt.CheckpointError):
        ckpt.save(path, _checkpoint(epoch=2))
    assert ckpt.load(path).epoch == 1
    assert os.listdir(tmp_path) == ["c.npz"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_files_get_the_umask_mode(tmp_path: Path, umask: int) -> None:
    """Every file convscope writes atomically has the mode a plain open() gives (mkstemp's 0600
    used to stick after the rename)."""
    from convscope.atomic import write_atomic

    previous = os.umask(umask)
    try:
        path = write_atomic(tmp_path / "run" / "log.csv", lambda fh: fh.write(b"epoch\n"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ["log.csv"]


def test_atomic_write_errors_name_the_target_not_the_temporary_file(tmp_path: Path) -> None:
    """``-o out/d.png`` where d.png is a folder, or under a file: the message names the user's
    path (the temporary file beside it is ours) and nothing is left behind. Under a file it
    names the file (it said "File exists", which reads as if x.png were in the way)."""
    from convscope.atomic import write_atomic

    (tmp_path / "d.png").mkdir()
    (tmp_path / "f").write_bytes(b"")
    for target, reason in [(tmp_path / "d.png", "Is a directory"),
                           (tmp_path / "f" / "x.png", f"{tmp_path / 'f'} is a file, not a folder"),
                           (tmp_path / "f" / "sub" / "x.png", "Not a directory")]:
        with pytest.raises(OSError, match=f"^\\[Errno \\d+\\] cannot write {target}: {reason}$"):
            write_atomic(target, lambda fh: fh.write(b"data"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.png", "f"] and not any((tmp_path / "d.png").iterdir())


def test_figure_and_gif_writes_keep_the_old_file_when_interrupted(tmp_path: Path) -> None:
    """A figure whose rendering fails (or is killed) half way leaves the previous file as it was."""
    from PIL import Image

    from convscope.viz.animate import write_gif
    from convscope.viz.figure import new_figure, save

    fig = new_figure(1, 1)
    target = save(fig, tmp_path / "keep.png")
    before = target.read_bytes()

    def broken(fh: Any, **kwargs: Any) -> None:
        fh.write(b"\x89PNG partial")
        raise KeyboardInterrupt

    fig.savefig = broken
    with pytest.raises(KeyboardInterrupt):
        save(fig, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]

    gif = write_gif([Image.new("RGB", (4, 4), c) for c in ("red", "blue")], [100, 100], tmp_path / "a.gif")
    old = gif.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - whatever Pillow raises for a bad frame
        write_gif([Image.new("RGB", (4, 4)), "not an image"], [100, 100], gif)
    assert gif.read_bytes() == old
