"""The tensorflow_datasets fallback of aaejax.data, on tfds's mock data (no network, no files).

Both branches of ``loaders._load_tfds`` are covered: ``tfds.load`` (TensorFlow installed) and
``tfds.data_source`` (without TensorFlow). Skipped where tensorflow_datasets (or, for the
first branch, TensorFlow) is not installed, unless ``$AAEJAX_REQUIRE_TFDS=1``: CI installs
``aaejax[tfds]`` and sets it, so that there a missing package fails instead of skipping.
"""

import importlib
import os

import numpy as np
import pytest

from aaejax import data
from aaejax.data import loaders

REQUIRE_ENV = "AAEJAX_REQUIRE_TFDS"
NUM = 7  # mock examples per split


def _require(module: str):
  try:
    return importlib.import_module(module)
  except ImportError as e:
    if os.environ.get(REQUIRE_ENV) == "1":
      pytest.fail(f"${REQUIRE_ENV}=1 but {module} cannot be imported ({e}); "
                  "pip install 'aaejax[tfds]'")
    pytest.skip(f"{module} is not installed (pip install 'aaejax[tfds]'); CI runs these tests "
                f"with {REQUIRE_ENV}=1")


@pytest.fixture
def tfds():
  return _require("tensorflow_datasets")


@pytest.fixture(params=["tfds.load", "tfds.data_source"])
def branch(request, tfds, monkeypatch):
  """Each way ``_load_tfds`` reads: through TensorFlow, or (TensorFlow hidden) data_source."""
  if request.param == "tfds.load":
    _require("tensorflow")
  else:
    monkeypatch.setattr(loaders, "_has_tensorflow", lambda: False)
  return request.param


def _check_digits(out, n):
  assert sorted(out) == ["image", "label"]
  assert out["image"].dtype == np.uint8 and out["image"].shape == (n, 28, 28, 1)
  assert out["label"].dtype == np.int32 and out["label"].shape == (n,)
  assert 0 <= out["label"].min() and out["label"].max() < 10
  assert out["image"].std() > 0  # real (random) pixels, not a zero-filled placeholder


@pytest.mark.parametrize("name", [n for n in data.SUPPORTED_DATASETS if n not in data.OWN_LOADERS])
def test_load_tfds_format_matches_the_idx_path(tfds, branch, name, tmp_path):
  with tfds.testing.mock_data(num_examples=NUM):
    out = loaders._load_tfds(name, "train", str(tmp_path))
  _check_digits(out, NUM)


def test_load_tfds_is_generic_celeb_a(tfds, branch, tmp_path):
  with tfds.testing.mock_data(num_examples=3):
    out = loaders._load_tfds("celeb_a", "test", str(tmp_path))
  assert sorted(out) == ["image"]  # no "label" feature: none invented
  assert out["image"].dtype == np.uint8 and out["image"].shape == (3, 218, 178, 3)


def test_load_numpy_falls_back_to_tfds(tfds, branch, tmp_path, monkeypatch):
  monkeypatch.setattr(loaders, "_CACHE", {})
  monkeypatch.setitem(data.EXTRA_DATA_DIRS, "mnist", [])
  # conftest: AAEJAX_NO_DOWNLOAD=1 and an empty cache, so only tfds is left.
  with tfds.testing.mock_data(num_examples=NUM):
    out = data.load_numpy("mnist", "test", str(tmp_path))
  _check_digits(out, NUM)
  assert data.source("mnist", "test", str(tmp_path)) == "tensorflow_datasets"
