"""Data: the embedded digits and their split, the loaders (IDX, image folders, .npz) on small
files made here, validation errors, and the seeded minibatch iterator."""

from __future__ import annotations

import builtins
import doctest
import gzip
import importlib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import convscope.data as data
from convscope import ShapeError
from convscope.data import Batches, check_arrays, digits, load, mnist1d, random_shift, read_idx

mnist1d_module = importlib.import_module("convscope.data.mnist1d")  # the module, not the function


# --- the embedded digits ----------------------------------------------------------------------------
def test_digits_splits_shapes_and_sizes() -> None:
    sizes = {"train": 1259, "val": 179, "test": 359, "all": 1797}
    for split, n in sizes.items():
        X, y = digits(split)
        assert X.shape == (n, 1, 8, 8) and X.dtype == np.float32
        assert y.shape == (n,) and y.dtype == np.int64
        assert 0.0 <= X.min() and X.max() == 1.0
        assert set(np.unique(y)) == set(range(10))


def test_digits_split_is_a_stratified_partition_of_all() -> None:
    raw, labels = digits("all", normalize=False)
    assert raw.dtype == np.float32 and raw.max() == 16 and np.all(raw == np.round(raw))
    parts = []
    for split in ("train", "val", "test"):
        X, y = digits(split, normalize=False)
        parts.append(np.concatenate([X.reshape(len(X), -1), y[:, None]], axis=1))
        share = np.bincount(y, minlength=10) / np.bincount(labels, minlength=10)
        expected = {"train": 0.7, "val": 0.1, "test": 0.2}[split]
        assert np.all(np.abs(share - expected) < 0.02), (split, share)
    # the three splits together are exactly the whole set (as a multiset of (image, label) rows)
    whole = np.concatenate([raw.reshape(len(raw), -1), labels[:, None]], axis=1)
    for got, want in zip(np.unique(np.concatenate(parts), axis=0, return_counts=True),
                         np.unique(whole, axis=0, return_counts=True)):
        np.testing.assert_array_equal(got, want)
    assert sum(len(p) for p in parts) == len(whole)


def test_digits_float64_and_errors() -> None:
    X, _ = digits("val", dtype=np.float64)
    assert X.dtype == np.float64
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        digits("validation")
    with pytest.raises(ValueError, match="float type"):
        digits(dtype=np.int32)


def test_digits_ships_small_with_its_license() -> None:
    folder = resources.files("convscope.data")
    assert len(folder.joinpath("digits.npz").read_bytes()) < 60_000
    note = folder.joinpath("LICENSE-digits.txt").read_text()
    assert "CC BY 4.0" in note and "Alpaydin" in note and "Kaynak" in note


# --- IDX / MNIST ------------------------------------------------------------------------------------
def _idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + np.array(arr.shape, ">u4").tobytes()
    return header + arr.tobytes()


def _write_mnist(root: Path, prefix: str, n: int, compress: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
        raw = _idx_bytes(arr)
        name = f"{prefix}-{kind}-ubyte"
        if compress:
            (root / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (root / name).write_bytes(raw)
    return images, labels


def test_read_idx_raw_and_gzip(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=">i4").reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_idx_bytes(arr))
    (tmp_path / "b.idx").write_bytes(gzip.compress(_idx_bytes(arr)))  # detected by content, not by name
    for name in ("a", "b.idx"):
        got = read_idx(tmp_path / name)
        assert got.shape == (2, 3, 4) and got.dtype == np.int32
        np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("damage, match", [
    (lambda raw: raw[:-5], "promises shape"),
    (lambda raw: b"\x01" + raw[1:], "not an IDX file"),
    (lambda raw: raw[:6], "truncated IDX header"),
    (lambda raw: gzip.compress(raw)[:20], "corrupt or truncated gzip"),
])
def test_read_idx_errors(tmp_path: Path, damage: object, match: str) -> None:
    (tmp_path / "bad").write_bytes(damage(_idx_bytes(np.zeros((3, 4, 4), np.uint8))))  # type: ignore[operator]
    with pytest.raises(ValueError, match=match):
        read_idx(tmp_path / "bad")


def test_mnist_folder(tmp_path: Path) -> None:
    images, labels = _write_mnist(tmp_path, "train", 12, compress=True, seed=0)
    _write_mnist(tmp_path, "t10k", 5, compress=False, seed=1)
    splits = load(tmp_path)
    assert set(splits) == {"train", "test"}
    X, y = splits["train"]
    assert X.shape == (12, 1, 28, 28) and X.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(X[:, 0] * 255, images)
    np.testing.assert_array_equal(y, labels)
    assert splits["test"][0].shape == (5, 1, 28, 28)
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        data.load_mnist(tmp_path / "nowhere", "test")


# --- image folders -------------------------------------------------------------------------------
def _write_images(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> None:
    image_mod = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for cls, shapes in sizes.items():
        (root / cls).mkdir(parents=True)
        for i, shape in enumerate(shapes):
            image_mod.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / cls / f"{i}.png")


def test_image_folder(tmp_path: Path) -> None:
    _write_images(tmp_path / "train", {"cat": [(6, 5)] * 2, "dog": [(6, 5)] * 3})
    _write_images(tmp_path / "val", {"cat": [(6, 5)], "dog": [(6, 5)]})
    X, y, classes = data.load_image_folder(tmp_path / "train")
    assert X.shape == (5, 1, 6, 5) and classes == ["cat", "dog"] and y.tolist() == [0, 0, 1, 1, 1]
    assert 0 <= X.min() and X.max() <= 1
    rgb, _, _ = data.load_image_folder(tmp_path / "train", grayscale=False, size=(4, 4))
    assert rgb.shape == (5, 3, 4, 4)
    splits = load(tmp_path)
    assert set(splits) == {"train", "val"} and splits["val"][0].shape == (2, 1, 6, 5)


def test_image_folder_errors(tmp_path: Path) -> None:
    _write_images(tmp_path, {"a": [(6, 5)], "b": [(7, 5)]})
    with pytest.raises(ValueError, match=r"image of shape \(7, 5\) differs .* pass size=\(H, W\)"):
        data.load_image_folder(tmp_path)
    assert data.load_image_folder(tmp_path, size=(6, 5))[0].shape == (2, 1, 6, 5)
    with pytest.raises(ValueError, match="no image files"):
        (tmp_path / "empty" / "x").mkdir(parents=True)
        data.load_image_folder(tmp_path / "empty")


def test_image_folder_without_pillow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    real_import = builtins.__import__

    def no_pil(name: str, *args: object, **kwargs: object) -> object:
        if name == "PIL" or name.startswith("PIL."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pil)
    with pytest.raises(data.MissingDependencyError, match="needs Pillow.*pip install Pillow") as info:
        data.load_image_folder(tmp_path)
    assert isinstance(info.value, ImportError) and isinstance(info.value, ValueError)


# --- .npz ----------------------------------------------------------------------------------------
def test_npz_layouts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "one.npz", X=rng.random((6, 2, 5)), y=np.arange(6) % 2)
    (X, y), = load(tmp_path / "one.npz").values()
    assert X.shape == (6, 2, 5) and X.dtype == np.float64 and y.dtype == np.int64
    keras = {"x_train": rng.integers(0, 256, (4, 3, 3), dtype=np.uint8), "y_train": np.arange(4),
             "x_test": rng.integers(0, 256, (2, 3, 3), dtype=np.uint8), "y_test": np.arange(2),
             "X_valid": rng.random((3, 1, 3, 3)).astype(np.float32), "y_valid": np.arange(3)}
    np.savez(tmp_path / "keras.npz", **keras)
    splits = load(tmp_path / "keras.npz")
    assert set(splits) == {"train", "val", "test"}
    assert splits["train"][0].shape == (4, 1, 3, 3) and splits["train"][0].dtype == np.float32
    np.testing.assert_allclose(splits["train"][0][:, 0] * 255, keras["x_train"])


def test_npz_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "odd.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match=r"expected arrays X and y, or X_train and y_train; found \['a'\]"):
        load(tmp_path / "odd.npz")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match="not a readable .npz file"):
        load(tmp_path / "broken.npz")
    (tmp_path / "text.npz").write_text("hello\n")
    with pytest.raises(ValueError, match=r"text.npz: not an .npz file \(it is no zip archive\)$"):
        load(tmp_path / "text.npz")
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="unsupported data file"):
        load(tmp_path / "data.csv")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load(tmp_path / "missing")


# --- validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("X, y, error, match", [
    (np.zeros(5), np.zeros(5, int), ShapeError, r"set: expected inputs X of shape \(N, \.\.\.\)"),
    (np.zeros((5, 3)), np.zeros((5, 10)), ShapeError, "not one-hot rows"),
    (np.zeros((5, 3)), np.zeros(4, int), ShapeError, "X has 5 examples but y has 4 labels"),
    (np.zeros((0, 3)), np.zeros(0, int), ValueError, "empty"),
    (np.zeros((3, 3)), np.array([0.0, 1.0, 2.0]), ValueError, r"must be integers, got dtype float64\. Hint"),
    (np.zeros((3, 3)), np.array([0, 10, 2]), ValueError, r"0 \.\. 9 \(the model has 10 outputs\), got 10 at index 1"),
    (np.zeros((3, 3)), np.array([0, -1, 2]), ValueError, "got -1 at index 1"),
    (np.array([[0.0, 1], [np.nan, 2], [np.inf, 0]]), np.zeros(3, int), ValueError,
     r"2 NaN or infinite values \(first in example 1\)"),
    (np.array([["a"], ["b"]]), np.zeros(2, int), ValueError, "numeric inputs"),
])
def test_check_arrays_errors(X: np.ndarray, y: np.ndarray, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        check_arrays(X, y, name="set", num_classes=10)


def test_check_arrays_converts() -> None:
    X, y = check_arrays(np.ones((2, 3), np.uint8), np.array([1, 0], np.int32))
    assert X.dtype == np.float32 and y.dtype == np.int64
    X64 = np.ones((2, 3))
    assert check_arrays(X64, [0, 1])[0] is X64


# --- batches ------------------------------------------------------------------------------------------
def test_batches_are_seeded_per_epoch_and_cover_every_example() -> None:
    X = np.arange(10, dtype=np.float32).reshape(10, 1)
    y = np.arange(10) % 3
    b = Batches(X, y, batch_size=4, seed=1)
    assert len(b) == 3
    epoch0 = np.concatenate([xb[:, 0] for xb, _ in b.epoch(0)])
    assert sorted(epoch0) == list(range(10))
    again = np.concatenate([xb[:, 0] for xb, _ in Batches(X, y, batch_size=4, seed=1).epoch(0)])
    np.testing.assert_array_equal(epoch0, again)
    epoch1 = np.concatenate([xb[:, 0] for xb, _ in b.epoch(1)])
    other = np.concatenate([xb[:, 0] for xb, _ in Batches(X, y, batch_size=4, seed=2).epoch(0)])
    assert not np.array_equal(epoch0, epoch1) and not np.array_equal(epoch0, other)
    for xb, yb in b.epoch(3):
        np.testing.assert_array_equal(xb[:, 0].astype(int) % 3, yb)
    iterated = [np.concatenate([xb[:, 0] for xb, _ in b]) for _ in range(2)]
    np.testing.assert_array_equal(iterated[0], epoch0)
    np.testing.assert_array_equal(iterated[1], epoch1)


def test_batches_options_and_errors() -> None:
    X, y = np.zeros((10, 1, 2, 2)), np.zeros(10, int)
    assert [len(yb) for _, yb in Batches(X, y, 4, drop_last=True).epoch(0)] == [4, 4]
    plain = np.concatenate([yb for _, yb in Batches(X, np.arange(10), 3, shuffle=False).epoch(5)])
    np.testing.assert_array_equal(plain, np.arange(10))
    with pytest.raises(ValueError, match="batch_size must be ≥ 1, got 0"):
        Batches(X, y, 0)
    with pytest.raises(ValueError, match="max_shift"):
        Batches(X, y, 2, max_shift=-1)
    with pytest.raises(ValueError, match=r"max_shift must be smaller than the examples' spatial size 2×2, got 2$"):
        Batches(X, y, 2, max_shift=2)  # every example could end up all zeros
    assert len(Batches(X, y, 2, max_shift=1)) == 5


def test_random_shift_moves_content_and_fills_zeros() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((50, 2, 5, 6)) + 1  # no zeros in the data
    out = random_shift(X, 2, np.random.default_rng(3))
    assert out.shape == X.shape
    offsets = np.random.default_rng(3).integers(-2, 3, size=(50, 2))
    for x, o, (dy, dx) in zip(X, out, offsets):
        padded = np.pad(x, ((0, 0), (2, 2), (2, 2)))
        np.testing.assert_array_equal(o, padded[:, 2 - dy:2 - dy + 5, 2 - dx:2 - dx + 6])
    signal = np.arange(1, 9, dtype=float).reshape(1, 1, 8)
    shifted = random_shift(np.repeat(signal, 20, 0), 1, np.random.default_rng(0))
    assert {tuple(s[0]) for s in shifted} <= {tuple(signal[0, 0]), (0, *signal[0, 0, :-1]), (*signal[0, 0, 1:], 0)}
    np.testing.assert_array_equal(random_shift(X, 0, rng), X)


def test_augmented_batches_are_deterministic() -> None:
    X, y = digits("val")
    first = [xb for xb, _ in Batches(X, y, 64, seed=4, max_shift=1).epoch(2)]
    second = [xb for xb, _ in Batches(X, y, 64, seed=4, max_shift=1).epoch(2)]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not all(np.array_equal(a, X[: len(a)]) for a in first)


# --- MNIST-1D -----------------------------------------------------------------------------------------
def test_mnist1d_is_deterministic_standardised_and_balanced() -> None:
    X, y = mnist1d("all")
    assert X.shape == (5000, 1, 40) and X.dtype == np.float32 and y.dtype == np.int64
    assert abs(float(X.mean())) < 1e-5 and abs(float(X.std()) - 1) < 1e-4
    np.testing.assert_array_equal(np.bincount(y), [500] * 10)
    train_X, train_y = mnist1d("train")
    np.testing.assert_array_equal(train_X, X[:4000])
    np.testing.assert_array_equal(mnist1d("test")[1], y[4000:])
    assert not np.array_equal(mnist1d("test", seed=1)[0], mnist1d("test")[0])
    assert set(load("mnist1d")) == {"train", "test"}
    with pytest.raises(ValueError, match="unknown split 'val'"):
        mnist1d("val")


def test_mnist1d_steps_follow_the_recipe() -> None:
    base = mnist1d_module.templates()
    assert base.shape == (10, 12)
    np.testing.assert_allclose(base[:, 0], 0, atol=1e-15)  # signals start at 0
    np.testing.assert_allclose(base.std(1), 1 / 6)
    noise = np.random.default_rng(0).standard_normal(72)
    taps = np.exp(-0.5 * (np.arange(-8, 9) / 2.0) ** 2)
    mirrored = np.concatenate([noise[7::-1], noise, noise[:-9:-1]])
    want = np.convolve(mirrored, taps / taps.sum(), "valid")
    np.testing.assert_allclose(mnist1d_module._smooth(noise[None])[0], want)
    np.testing.assert_allclose(mnist1d_module._resample(np.array([[0.0, 2.0, 9.0]]), 5, np.array([2])),
                               [[0, 0.5, 1, 1.5, 2]])
    signal = np.random.default_rng(1).random((1, 30))
    np.testing.assert_allclose(mnist1d_module._resample(signal, 72)[0],
                               np.interp(np.linspace(0, 1, 72), np.linspace(0, 1, 30), signal[0]))


def test_a_small_conv1d_net_learns_mnist1d() -> None:
    """8 epochs of a 2-layer conv1d net: > 70 % test accuracy (77 % here; chance 10 %, a
    linear model about 34 %)."""
    import convscope as cs
    from convscope import nn
    from convscope.train import evaluate, train

    cs.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 16, 5, stride=2, padding=1), nn.ReLU(),
                          nn.Conv1d(16, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(160, 10))
    train(model, mnist1d("train"), epochs=8, optimizer="adam", lr=1e-2, batch_size=100, progress=False)
    assert evaluate(model, *mnist1d("test"))[1] > 0.70


@pytest.mark.parametrize("module", ["convscope.data.digits", "convscope.data.batches", "convscope.data.mnist1d",
                                    "convscope.data"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_load_array_reads_npy_and_npz_and_names_what_a_file_is_not(tmp_path: Path) -> None:
    a = np.arange(6.0).reshape(1, 2, 3)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "one.npz", image=a)
    np.savez(tmp_path / "two.npz", p=a, q=a)
    x, name = data.load_array(tmp_path / "a.npy")
    assert np.array_equal(x, a) and name == str(tmp_path / "a.npy")
    x, name = data.load_array(tmp_path / "one.npz")
    assert np.array_equal(x, a) and name.endswith("one.npz[image]")
    assert data.load_array(tmp_path / "two.npz", "q")[1].endswith("two.npz[q]")
    (tmp_path / "text.npy").write_text("hello\n")
    (tmp_path / "text.npz").write_text("hello\n")
    np.save(tmp_path / "objects.npy", np.array([{}], dtype=object), allow_pickle=True)
    for file, key, message in [("text.npy", None, "text.npy: not a .npy file (it does not start with NumPy's array "
                                                   "header)"),
                               ("text.npz", None, "text.npz: not an .npz file (it is no zip archive)"),
                               ("objects.npy", None, "objects.npy: Object arrays cannot be loaded"),
                               ("two.npz", None, "holds 2 arrays (p, q); choose one with --key"),
                               ("two.npz", "r", "--key 'r' is not in"),
                               ("a.npy", "p", "a key selects an array of an .npz file"),
                               ("a.txt", None, "a.txt: must be a .npy or .npz file")]:
        with pytest.raises(ValueError) as info:
            data.load_array(tmp_path / file, key)
        assert message in str(info.value) and "\n" not in str(info.value)
