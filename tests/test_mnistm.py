"""The MNIST-M-style dataset (aaejax.data.mnistm): the blend, determinism, the cache, the missing
scikit-image error, and data.load_numpy("mnist_m_style", ...) on the real MNIST test split."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from aaejax import data
from aaejax.data import loaders
from aaejax.data import mnistm


@pytest.fixture(autouse=True)
def fresh_memory(monkeypatch):
  monkeypatch.setattr(mnistm, "_MEMORY", {})


def _digits(n: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)


def _photos() -> list[np.ndarray]:
  rng = np.random.default_rng(1)
  return [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8),
          rng.integers(0, 256, (30, 90, 3), dtype=np.uint8)]


def test_blend_formula():
  patch = np.random.default_rng(0).integers(0, 256, (1, 28, 28, 3), dtype=np.uint8)
  zero, full = np.zeros((1, 28, 28), np.uint8), np.full((1, 28, 28, 1), 255, np.uint8)
  np.testing.assert_array_equal(mnistm.blend(zero, patch), patch)
  np.testing.assert_array_equal(mnistm.blend(full, patch), 255 - patch)
  mid = np.full((1, 28, 28), 100, np.uint8)
  np.testing.assert_array_equal(mnistm.blend(mid, patch),
                                np.abs(patch.astype(int) - 100).astype(np.uint8))


def test_build_on_flat_photo():
  """A digit of 0 gives the patch (the photo's colour), one of 255 its inverse."""
  photo = np.empty((30, 40, 3), np.uint8)
  photo[:] = (10, 120, 250)
  digits = np.zeros((2, 28, 28, 1), np.uint8)
  digits[1] = 255
  out = mnistm.build(digits, [4, 2], seed=0, photos=[photo])
  assert (out["image"][0] == (10, 120, 250)).all()
  assert (out["image"][1] == (245, 135, 5)).all()
  assert out["label"].tolist() == [4, 2]


def test_each_digit_is_a_crop_of_a_photo():
  photos = _photos()
  digits = np.zeros((20, 28, 28), np.uint8)
  out = mnistm.build(digits, np.zeros(20), seed=3, photos=photos)["image"]
  found = set()
  for img in out:
    hits = [(k, y, x) for k, p in enumerate(photos)
            for y in range(p.shape[0] - 27) for x in range(p.shape[1] - 27)
            if (p[y, x] == img[0, 0]).all() and (p[y:y + 28, x:x + 28] == img).all()]
    assert hits
    found.add(hits[0])
  assert len({k for k, _, _ in found}) == 2 and len(found) > 10  # both photos, many crops


def test_shapes_dtypes_and_determinism():
  images, labels = _digits()
  photos = _photos()
  a = mnistm.build(images, labels, 0, photos=photos)
  assert a["image"].shape == (5, 28, 28, 3) and a["image"].dtype == np.uint8
  assert a["label"].dtype == np.int32 and a["label"].tolist() == labels.tolist()
  np.testing.assert_array_equal(a["image"], mnistm.build(images[..., None], labels, 0,
                                                         photos=photos)["image"])
  assert not np.array_equal(a["image"], mnistm.build(images, labels, 1, photos=photos)["image"])


def test_default_photos_from_skimage():
  pytest.importorskip("skimage")
  photos = mnistm.load_photos()
  assert len(photos) == len(mnistm.PHOTOS)
  assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 for p in photos)
  images, labels = _digits(3)
  out = mnistm.build(images, labels, 0)
  assert out["image"].shape == (3, 28, 28, 3)


def test_bad_inputs():
  with pytest.raises(ValueError, match="28, 28"):
    mnistm.build(np.zeros((2, 32, 32), np.uint8), [0, 1], 0, photos=_photos())
  with pytest.raises(ValueError, match="mnist_labels"):
    mnistm.build(np.zeros((2, 28, 28), np.uint8), [0], 0, photos=_photos())
  with pytest.raises(ValueError, match="split"):
    mnistm.load("valid")


def test_missing_skimage_is_one_clear_error(monkeypatch):
  monkeypatch.setitem(sys.modules, "skimage", None)
  monkeypatch.setitem(sys.modules, "skimage.data", None)
  with pytest.raises(data.DatasetNotFoundError, match=r"pip install 'aaejax\[mnistm\]'"):
    mnistm.build(*_digits(), seed=0)


def _fake_mnist(monkeypatch, calls):
  images, labels = _digits(6)

  def fake_load_numpy(name, split, data_dir=None, *, cache_dir=None, download=True):
    calls.append((name, split, download))
    return {"image": images[..., None], "label": labels.astype(np.int32)}

  monkeypatch.setattr(loaders, "load_numpy", fake_load_numpy)
  monkeypatch.setattr(mnistm, "load_photos", _photos)
  return labels


def test_cache_written_once_then_read(monkeypatch, tmp_path):
  calls = []
  labels = _fake_mnist(monkeypatch, calls)
  first = mnistm.load("train", cache_dir=str(tmp_path), download=False)
  assert calls == [("mnist", "train", False)]
  path = mnistm.cache_path("train", 0, str(tmp_path))
  assert os.path.isfile(path) and mnistm.source("train", None, str(tmp_path)) == path
  assert first["label"].tolist() == labels.tolist() and not first["image"].flags.writeable

  def fail(*args, **kwargs):
    raise AssertionError("built again instead of read from the cache")

  monkeypatch.setattr(mnistm, "build", fail)
  monkeypatch.setattr(mnistm, "_MEMORY", {})
  second = mnistm.load("train", cache_dir=str(tmp_path))
  np.testing.assert_array_equal(second["image"], first["image"])
  assert second["label"].dtype == np.int32 and calls == [("mnist", "train", False)]
  # Keyed by seed (and split): another seed is another file, built anew.
  with pytest.raises(AssertionError, match="built again"):
    mnistm.load("train", cache_dir=str(tmp_path), seed=1)
  assert mnistm.cache_path("train", 1, str(tmp_path)) != path


def test_splits_and_seeds_draw_differently(monkeypatch, tmp_path):
  _fake_mnist(monkeypatch, [])
  train = mnistm.load("train", cache_dir=str(tmp_path))["image"]
  test = mnistm.load("test", cache_dir=str(tmp_path))["image"]
  other = mnistm.load("train", cache_dir=str(tmp_path), seed=5)["image"]
  assert not np.array_equal(train, test) and not np.array_equal(train, other)


def test_torn_cache_file_is_rebuilt(monkeypatch, tmp_path):
  _fake_mnist(monkeypatch, [])
  path = mnistm.cache_path("test", 0, str(tmp_path))
  os.makedirs(os.path.dirname(path))
  with open(path, "wb") as f:
    f.write(b"not an npz")
  assert mnistm.load("test", cache_dir=str(tmp_path))["image"].shape == (6, 28, 28, 3)
  assert mnistm._read_cache(path) is not None


def test_registered_in_data():
  assert "mnist_m_style" in data.SUPPORTED_DATASETS and "mnist_m_style" in data.OWN_LOADERS
  assert data.IMAGE_SHAPES["mnist_m_style"] == (28, 28, 3)
  assert data.NUM_CLASSES["mnist_m_style"] == 10 and data.has_labels("mnist_m_style")


def test_load_numpy_real_mnist_test(tmp_path):
  pytest.importorskip("skimage")
  root = os.environ.get(data.DATA_DIR_ENV)
  if not root or not os.path.isfile(os.path.join(root, "mnist", "t10k-images-idx3-ubyte.gz")):
    pytest.skip(f"real MNIST not available under ${data.DATA_DIR_ENV}/mnist")
  out = data.load_numpy("mnist_m_style", "test", root, cache_dir=str(tmp_path), download=False)
  mnist = data.load_numpy("mnist", "test", root, download=False)
  assert out["image"].shape == (10_000, 28, 28, 3) and out["image"].dtype == np.uint8
  np.testing.assert_array_equal(out["label"], mnist["label"])
  assert out["label"].dtype == np.int32
  assert out["image"].std(axis=(0, 1, 2)).min() > 20  # textured colour, not grey digits
  path = data.source("mnist_m_style", "test", root, cache_dir=str(tmp_path))
  assert path == mnistm.cache_path("test", 0, str(tmp_path)) and os.path.isfile(path)
