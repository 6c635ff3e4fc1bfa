"""Shared fixtures: real MNIST through AAEJAX_DATA_DIR (skipped when absent)."""

import os

import numpy as np
import pytest


@pytest.fixture(scope="session")
def mnist_dir():
  from aaejax import data
  d = data.resolve_data_dir()
  if not d or not os.path.exists(os.path.join(d, "mnist", "train-images-idx3-ubyte.gz")):
    pytest.skip("real MNIST not found: set AAEJAX_DATA_DIR (e.g. ../shared/data).")
  return d


@pytest.fixture(scope="session")
def mnist_small(mnist_dir):
  """The first 2,000 training images and labels."""
  from aaejax import data
  train = data.load_numpy("mnist", "train", mnist_dir)
  return {k: np.asarray(v[:2000]) for k, v in train.items()}


@pytest.fixture(scope="session", autouse=True)
def offline(tmp_path_factory):
  """No test downloads (nor reads a developer's download cache): datasets come from
  AAEJAX_DATA_DIR or the tests' own files; test_downloads.py serves its files locally."""
  patch = pytest.MonkeyPatch()
  patch.setenv("AAEJAX_NO_DOWNLOAD", "1")
  patch.setenv("AAEJAX_CACHE_DIR", str(tmp_path_factory.mktemp("aaejax_cache")))
  yield
  patch.undo()


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """One persistent XLA compilation cache for the session: runs that rebuild the same step
  (a resumed run, a solo run beside its sweep member) reuse its compiled program."""
  import jax
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
