"""Shared fixtures: real MNIST through AAEJAX_DATA_DIR (skipped when absent)."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "experiments"))


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
