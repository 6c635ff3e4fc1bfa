"""Tests for aaejax.data."""

from __future__ import annotations

import gzip
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aaejax import data


def _idx_bytes(arr: np.ndarray) -> bytes:
    magic = 2051 if arr.ndim == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _write_idx(path, arr: np.ndarray, compress: bool) -> None:
    raw = _idx_bytes(arr)
    path.write_bytes(gzip.compress(raw) if compress else raw)


def _write_fake_dataset(directory, split: str, n: int = 7, compress: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    image_stem, label_stem = data.IDX_FILES[split]
    suffix = ".gz" if compress else ""
    _write_idx(directory / (image_stem + suffix), rng.integers(0, 256, (n, 28, 28)), compress)
    _write_idx(directory / (label_stem + suffix), np.arange(n) % 10, compress)


@pytest.fixture
def no_tfds(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)


@pytest.fixture
def real_data_dir():
    root = os.environ.get(data.DATA_DIR_ENV)
    stems = [os.path.join(root or "", "mnist", s) for pair in data.IDX_FILES.values() for s in pair]
    if not root or not all(os.path.isfile(s) or os.path.isfile(s + ".gz") for s in stems):
        pytest.skip(f"real MNIST not available under ${data.DATA_DIR_ENV}/mnist")
    return root


# --- read_idx -----------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_roundtrip(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, (3, 4, 5)).astype(np.uint8)
    labels = np.array([0, 9, 4], np.uint8)
    # Compression is detected from magic bytes, so the file name is irrelevant.
    _write_idx(tmp_path / "img.bin", images, compress)
    _write_idx(tmp_path / "lbl.bin", labels, compress)
    got_images, got_labels = data.read_idx(tmp_path / "img.bin"), data.read_idx(tmp_path / "lbl.bin")
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.uint8
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize(
    "content",
    [
        _idx_bytes(np.zeros((2, 3, 3)))[:-1],  # Truncated payload.
        _idx_bytes(np.zeros((2, 3, 3))) + b"\0",  # Trailing bytes.
        b"\x00\x00\x08",  # Truncated header.
        b"\x00\x00\x0d\x01" + (2).to_bytes(4, "big") + b"\0" * 8,  # float32 dtype.
        b"garbage file",  # Bad magic.
        gzip.compress(_idx_bytes(np.zeros((4,))), mtime=0)[:-6],  # Truncated gzip stream.
    ],
)
def test_read_idx_corrupt(tmp_path, content):
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(ValueError):
        data.read_idx(path)


# --- resolve_data_dir / load_numpy ----------------------------------------------


def test_resolve_data_dir(monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    assert data.resolve_data_dir() is None
    monkeypatch.setenv(data.DATA_DIR_ENV, "~/env")
    assert data.resolve_data_dir() == os.path.expanduser("~/env")
    assert data.resolve_data_dir("") == os.path.expanduser("~/env")
    assert data.resolve_data_dir("/explicit") == "/explicit"


def test_load_numpy_fake_files_and_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    _write_fake_dataset(tmp_path / "mnist", "test", n=7, compress=False)
    out = data.load_numpy("mnist", "test", data_dir=str(tmp_path))
    assert out["image"].shape == (7, 28, 28, 1) and out["image"].dtype == np.uint8
    assert out["label"].dtype == np.int32
    np.testing.assert_array_equal(out["label"], np.arange(7))
    assert data.load_numpy("mnist", "test", data_dir=str(tmp_path)) is out
    assert not out["image"].flags.writeable


def test_load_numpy_extra_dirs(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    _write_fake_dataset(tmp_path / "system", "train", n=5)
    monkeypatch.setitem(data.EXTRA_DATA_DIRS, "fashion_mnist", [str(tmp_path / "system")])
    out = data.load_numpy("fashion_mnist", "train")
    assert out["image"].shape == (5, 28, 28, 1)


def test_load_numpy_real_mnist(real_data_dir):
    train = data.load_numpy("mnist", "train", data_dir=real_data_dir)
    test = data.load_numpy("mnist", "test", data_dir=real_data_dir)
    assert train["image"].shape == (60000, 28, 28, 1)
    assert test["image"].shape == (10000, 28, 28, 1)
    for split in (train, test):
        assert split["image"].dtype == np.uint8 and split["label"].dtype == np.int32
        assert split["label"].min() == 0 and split["label"].max() == 9
        assert 30 < split["image"].mean() < 37  # MNIST mean pixel is ~33.
    assert np.bincount(train["label"])[1] == 6742
    assert np.bincount(test["label"])[1] == 1135


def test_load_numpy_env_var_and_arg(real_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, real_data_dir)
    assert data.load_numpy("mnist", "test")["image"].shape == (10000, 28, 28, 1)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))  # Empty: the argument must win.
    assert data.load_numpy("mnist", "test", data_dir=real_data_dir)["label"].shape == (10000,)


@pytest.mark.parametrize("name", [n for n in data.SUPPORTED_DATASETS if n not in data.OWN_LOADERS])
def test_load_numpy_missing(tmp_path, monkeypatch, no_tfds, name):
    monkeypatch.setitem(data.EXTRA_DATA_DIRS, name, [])
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load_numpy(name, "train", data_dir=str(tmp_path))
    msg = str(err.value)
    assert data.DATA_DIR_ENV in msg and "config.data_dir" in msg
    assert str(tmp_path / name) in msg and "train-images-idx3-ubyte" in msg
    assert "aaejax[tfds]" in msg
    assert ("apt-get install dataset-fashion-mnist" in msg) == (name == "fashion_mnist")
    assert isinstance(err.value, FileNotFoundError)


def test_load_numpy_bad_args():
    with pytest.raises(ValueError, match="fashion_mnist"):
        data.load_numpy("cifar10", "train")
    with pytest.raises(ValueError, match="split"):
        data.load_numpy("mnist", "validation")


# --- balanced_labeled_subset ----------------------------------------------------


def test_balanced_labeled_subset():
    labels = np.repeat(np.arange(10), 50)
    idx = data.balanced_labeled_subset(labels, 100, 10, seed=0)
    assert idx.shape == (100,) and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(np.bincount(labels[idx], minlength=10), np.full(10, 10))
    np.testing.assert_array_equal(idx, data.balanced_labeled_subset(labels, 100, 10, seed=0))
    assert not np.array_equal(idx, data.balanced_labeled_subset(labels, 100, 10, seed=1))
    np.testing.assert_array_equal(data.balanced_labeled_subset(labels, 500, 10, 0), np.arange(500))


@pytest.mark.parametrize("num_labeled", [0, 105, 510])
def test_balanced_labeled_subset_errors(num_labeled):
    labels = np.repeat(np.arange(10), 50)
    labels[0] = 1  # Class 0 has 49 examples, so 510 (51 per class) is impossible.
    with pytest.raises(ValueError):
        data.balanced_labeled_subset(labels, num_labeled, 10, seed=0)


# --- on-device pipeline -----------------------------------------------------------


def test_epoch_permutation():
    key = jax.random.key(0)
    perm_fn = jax.jit(data.epoch_permutation, static_argnums=2)
    p0 = np.asarray(perm_fn(key, 0, 100))
    np.testing.assert_array_equal(np.sort(p0), np.arange(100))
    np.testing.assert_array_equal(p0, np.asarray(data.epoch_permutation(key, 0, 100)))
    assert not np.array_equal(p0, np.asarray(perm_fn(key, 1, 100)))


def test_gather_batch_and_device_dataset():
    rng = np.random.default_rng(0)
    arrays = {
        "image": rng.integers(0, 256, (50, 28, 28, 1)).astype(np.uint8),
        "label": np.arange(50, dtype=np.int32),
    }
    ds = data.DeviceDataset(arrays)
    assert ds.num_examples == 50 and isinstance(ds.arrays["image"], jax.Array)
    assert ds.steps_per_epoch(16) == 3 and ds.steps_per_epoch(50) == 1
    for bad in (0, -1, 51):
        with pytest.raises(ValueError):
            ds.steps_per_epoch(bad)
    perm = data.epoch_permutation(jax.random.key(1), 3, ds.num_examples)
    gather = jax.jit(data.gather_batch, static_argnums=3)
    for step in range(ds.steps_per_epoch(16)):
        batch = gather(ds.arrays, perm, jnp.int32(step), 16)
        idx = np.asarray(perm)[step * 16 : (step + 1) * 16]
        for k in arrays:
            np.testing.assert_array_equal(np.asarray(batch[k]), arrays[k][idx])
    with pytest.raises(ValueError):
        data.DeviceDataset({"a": np.zeros(3), "b": np.zeros(4)})


def test_to_float():
    out = data.to_float(np.array([0, 51, 255], np.uint8))
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), [0.0, 0.2, 1.0], rtol=1e-6)


def test_load_device_dataset(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    _write_fake_dataset(tmp_path / "mnist", "train", n=9)
    ds = data.load_device_dataset("mnist", "train", data_dir=str(tmp_path))
    assert ds.num_examples == 9 and ds.arrays["image"].shape == (9, 28, 28, 1)
