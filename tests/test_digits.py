"""Tests for aaejax.evaluation.digits."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aaejax import data
from aaejax.evaluation import digits


def _one_hot_probs(classes, num_classes=10, peak=1.0):
  """(n, num_classes) rows with ``peak`` on the given class and the rest spread evenly."""
  classes = np.asarray(classes)
  probs = np.full((classes.size, num_classes), (1.0 - peak) / (num_classes - 1))
  probs[np.arange(classes.size), classes] = peak
  return probs


# --- mode_coverage ----------------------------------------------------------------------------


def test_mode_coverage_uniform_classes():
  cov = digits.mode_coverage(_one_hot_probs(np.repeat(np.arange(10), 50)))
  assert cov["classes_covered"] == 10
  assert cov["rarest_class_share"] == pytest.approx(0.1)
  assert cov["confident_share"] == 1.0


def test_mode_coverage_single_class():
  cov = digits.mode_coverage(_one_hot_probs(np.full(200, 3)))
  assert cov["classes_covered"] == 1
  assert cov["rarest_class_share"] == 0.0


@pytest.mark.parametrize("rare_count, covered", [(10, True), (9, False)])  # 1 % and 0.9 %.
def test_mode_coverage_min_share_boundary(rare_count, covered):
  classes = np.concatenate([np.full(rare_count, 7), np.zeros(1000 - rare_count, int)])
  cov = digits.mode_coverage(_one_hot_probs(classes), min_share=0.01)
  assert cov["classes_covered"] == (2 if covered else 1)
  assert cov["rarest_class_share"] == 0.0  # Eight classes never appear.


def test_mode_coverage_confident_share():
  probs = np.concatenate([_one_hot_probs([0, 1, 2], peak=0.95),   # Confident.
                          _one_hot_probs([3], peak=0.9),           # Exactly at the threshold.
                          _one_hot_probs([4, 5, 6, 7], peak=0.5)])  # Not confident.
  assert digits.mode_coverage(probs)["confident_share"] == pytest.approx(0.5)
  assert digits.mode_coverage(probs, confidence=0.99)["confident_share"] == 0.0


@pytest.mark.parametrize("probs, kwargs, match", [
    (np.full(10, 0.1), {}, "probs"),                        # 1-D.
    (np.zeros((0, 10)), {}, "probs"),                       # No samples.
    (np.full((4, 10), 0.2), {}, "probs"),                   # Rows sum to 2.
    (np.array([[1.5, -0.5]]), {}, "probs"),                 # Negative entry.
    (np.array([[np.nan, 1.0]]), {}, "probs"),               # Not finite.
    (np.eye(3), {"min_share": 1.5}, "min_share"),
    (np.eye(3), {"confidence": -0.1}, "confidence"),
])
def test_mode_coverage_bad_inputs(probs, kwargs, match):
  with pytest.raises(ValueError, match=match):
    digits.mode_coverage(probs, **kwargs)


# --- DigitClassifier / train_classifier / predict_proba -----------------------------------------


def test_classifier_shapes():
  model = digits.DigitClassifier()
  variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  x = jax.random.uniform(jax.random.key(1), (5, 28, 28, 1))
  assert model.apply(variables, x).shape == (5, 10)
  logits, feats = model.apply(variables, x, features=True)
  assert logits.shape == (5, 10)
  assert feats.shape == (5, digits.FEATURE_DIM) == (5, 256)


def _synthetic(n=300, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
          rng.integers(0, 10, n).astype(np.int32))


def test_train_classifier_deterministic():
  images, labels = _synthetic()
  kwargs = dict(steps=5, batch_size=32)
  p1 = digits.train_classifier(images, labels, seed=3, **kwargs)
  p2 = digits.train_classifier(images, labels, seed=3, **kwargs)
  p3 = digits.train_classifier(images, labels, seed=4, **kwargs)
  leaves1, leaves2, leaves3 = (jax.tree.leaves(p) for p in (p1, p2, p3))
  assert all(np.array_equal(a, b) for a, b in zip(leaves1, leaves2))
  assert not all(np.array_equal(a, c) for a, c in zip(leaves1, leaves3))


def test_train_classifier_bad_shapes():
  images, labels = _synthetic(8)
  with pytest.raises(ValueError, match="images"):
    digits.train_classifier(images[..., 0], labels, steps=1)
  with pytest.raises(ValueError, match="labels"):
    digits.train_classifier(images, labels[:4], steps=1)


def test_predict_proba_chunks_and_dtypes():
  images, _ = _synthetic(23)
  variables = digits.DigitClassifier().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  full = digits.predict_proba(variables, images)
  assert full.shape == (23, 10)
  np.testing.assert_allclose(full.sum(axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(digits.predict_proba(variables, images, batch_size=5), full,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(digits.predict_proba(variables, images / 255.0), full,
                             rtol=1e-5, atol=1e-6)


# --- real data ------------------------------------------------------------------------------


def test_short_training_on_mnist(mnist_small, mnist_dir):
  params = digits.train_classifier(mnist_small["image"], mnist_small["label"], steps=300)
  test = data.load_numpy("mnist", "test", mnist_dir)
  assert digits.accuracy(params, test["image"][:1000], test["label"][:1000]) > 0.90


def test_load_or_train_writes_then_reuses_cache(mnist_dir, tmp_path, monkeypatch):
  kwargs = dict(steps=20, batch_size=32, seed=1)
  params = digits.load_or_train("mnist", mnist_dir, str(tmp_path), **kwargs)
  files = os.listdir(tmp_path)
  assert len(files) == 1  # No temp file left behind.
  path = tmp_path / files[0]
  assert path.suffix == ".npz"
  assert "mnist" in path.name and f"v{digits.CLASSIFIER_VERSION}" in path.name
  assert "steps=20" in path.name
  mtime = path.stat().st_mtime_ns

  def fail(*args, **kwargs):
    raise AssertionError("load_or_train retrained despite a cache file")

  monkeypatch.setattr(digits, "train_classifier", fail)
  monkeypatch.setattr(digits, "_PARAMS_CACHE", {})  # Force the load from disk.
  loaded = digits.load_or_train("mnist", mnist_dir, str(tmp_path), **kwargs)
  assert path.stat().st_mtime_ns == mtime
  assert jax.tree.structure(loaded) == jax.tree.structure(params)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)))
  # The in-process cache returns the very same object.
  assert digits.load_or_train("mnist", mnist_dir, str(tmp_path), **kwargs) is loaded
  # Changed settings use a different file (and would train).
  with pytest.raises(AssertionError, match="retrained"):
    digits.load_or_train("mnist", mnist_dir, str(tmp_path), **{**kwargs, "seed": 2})


def test_load_or_train_rejects_unknown_kwargs(tmp_path):
  with pytest.raises(TypeError, match="unknown"):
    digits.load_or_train("mnist", cache_dir=str(tmp_path), epochs=3)


def test_first_use_training_is_announced(mnist_dir, tmp_path):
  """The evaluation says, before training, that the classifier trains on first use."""
  from aaejax.evaluation import feature_nets
  config = {"dataset": "mnist", "data_dir": mnist_dir, "cache_dir": str(tmp_path),
            "classifier_options": {"steps": 2}}
  net = feature_nets.get("digits")
  note = net.pending(config)
  assert note.startswith("training the digit classifier on mnist") and str(tmp_path) in note
  feature_nets.embedder("digits", config)
  assert net.pending(config) is None
