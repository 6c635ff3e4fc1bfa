"""A small CNN digit classifier, trained by the project itself, to judge generated samples.

:class:`DigitClassifier` is trained on an MNIST-like dataset (10 classes, 28×28×1) by
:func:`train_classifier`; :func:`predict_proba` then classifies a generator's samples and
:func:`mode_coverage` summarises how many classes they cover. The penultimate activations
(``features=True``) can serve as the embedding of a Fréchet distance.
:func:`load_or_train` caches the trained parameters on disk (and in process).

With the default settings it reached 98.77 % MNIST test accuracy in 30 s of training on 2 CPU
cores.
"""

from __future__ import annotations

import functools
import inspect
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from aaejax import data
from aaejax.data import batching, downloads

CLASSIFIER_VERSION = 1  # Bump when the architecture or the training recipe changes.
CACHE_DIR_ENV = downloads.CACHE_DIR_ENV
FEATURE_DIM = 256
IMAGE_SHAPE = (28, 28, 1)

Params = Any  # The variables dict ``{"params": ...}`` of a DigitClassifier.

_PARAMS_CACHE: dict[str, Params] = {}


class DigitClassifier(nn.Module):
  """Stride-2 5×5 convolutions (16 and 32 channels), a 256-unit ReLU layer and a linear head.

  The 256-unit layer is the feature layer (``features=True``). The narrow convolutions keep
  training on CPUs fast; accuracy on MNIST stays near 99 %.

  Example:
    >>> model = DigitClassifier()
    >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    >>> logits, feats = model.apply(variables, jnp.zeros((3, 28, 28, 1)), features=True)
    >>> logits.shape, feats.shape
    ((3, 10), (3, 256))
  """

  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, features: bool = False):
    """Classifies images.

    Args:
      x: Float images in [0, 1] of shape (n, 28, 28, 1).
      features: Whether to also return the penultimate activations.

    Returns:
      (n, num_classes) logits, or ``(logits, features)`` with (n, 256) features.
    """
    x = nn.relu(nn.Conv(16, (5, 5), strides=(2, 2))(x))
    x = nn.relu(nn.Conv(32, (5, 5), strides=(2, 2))(x))
    x = x.reshape(x.shape[0], -1)
    feats = nn.relu(nn.Dense(FEATURE_DIM)(x))
    logits = nn.Dense(self.num_classes)(feats)
    return (logits, feats) if features else logits


def _to_float(images: jax.Array) -> jax.Array:
  """uint8 images → float32 in [0, 1]; float images are only cast to float32."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def train_classifier(images: np.ndarray, labels: np.ndarray, *, steps: int = 1500,
                     batch_size: int = 128, learning_rate: float = 1e-3,
                     seed: int = 0) -> Params:
  """Trains a :class:`DigitClassifier` with Adam (cosine-decayed learning rate) on device.

  The whole dataset is put on the device once; the indices of step ``t`` are drawn (with
  replacement) from ``fold_in(key, t)``, so the result depends only on the data and ``seed``.

  Args:
    images: uint8 images of shape (n, 28, 28, 1).
    labels: Integer class labels of shape (n,), in [0, 10).
    steps: Number of optimiser steps.
    batch_size: Minibatch size.
    learning_rate: Initial Adam learning rate, decayed to 0 over ``steps`` by a cosine.
    seed: Seed of the initialisation and of the batch order.

  Returns:
    The variables dict ``{"params": ...}`` of the trained classifier.

  Raises:
    ValueError: For images or labels of the wrong shape, or non-positive steps/batch_size.
  """
  images = np.asarray(images)
  labels = np.asarray(labels)
  if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
    raise ValueError(f"images must have shape (n, 28, 28, 1), got {images.shape}")
  if labels.shape != images.shape[:1]:
    raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}")
  if steps < 1 or batch_size < 1:
    raise ValueError(f"steps and batch_size must be positive, got {steps}, {batch_size}")
  model = DigitClassifier()
  init_key, data_key = jax.random.split(jax.random.key(seed))
  variables = model.init(init_key, jnp.zeros((1,) + IMAGE_SHAPE, jnp.float32))
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
  opt_state = tx.init(variables)
  x_all = jnp.asarray(images)
  y_all = jnp.asarray(labels, jnp.int32)
  n = images.shape[0]

  # The data are arguments, not closed-over constants (a 47 MB constant in the program;
  # a 20-step training took 32 s instead of 39 s on 2 busy CPU cores).
  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def train_step(variables, opt_state, step, x_all, y_all):
    idx = jax.random.randint(jax.random.fold_in(data_key, step), (batch_size,), 0, n)
    x, y = _to_float(x_all[idx]), y_all[idx]

    def loss_fn(v):
      logits = model.apply(v, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    grads = jax.grad(loss_fn)(variables)
    updates, opt_state = tx.update(grads, opt_state, variables)
    return optax.apply_updates(variables, updates), opt_state

  for step in range(steps):
    variables, opt_state = train_step(variables, opt_state, jnp.int32(step), x_all, y_all)
  return jax.block_until_ready(variables)


# The keyword-only settings of train_classifier and their defaults (part of the cache file name).
_TRAIN_DEFAULTS = {name: p.default
                   for name, p in inspect.signature(train_classifier).parameters.items()
                   if p.kind is inspect.Parameter.KEYWORD_ONLY}


@jax.jit
def _proba_chunk(variables: Params, images: jax.Array) -> jax.Array:
  return jax.nn.softmax(DigitClassifier().apply(variables, _to_float(images)), axis=-1)


def predict_proba(params: Params, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
  """Class probabilities, computed in chunks of ``batch_size`` images.

  Args:
    params: Variables of a trained :class:`DigitClassifier`.
    images: uint8 images, or float images in [0, 1], of shape (n, 28, 28, 1).
    batch_size: Images per jitted call; the last chunk is zero-padded so that every call has
      the same shape.

  Returns:
    A float32 array of shape (n, num_classes) whose rows sum to 1.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
    raise ValueError(f"images must have shape (n, 28, 28, 1), got {images.shape}")
  if not images.shape[0]:
    return np.zeros((0, DigitClassifier().num_classes), np.float32)
  return batching.batched(lambda chunk: _proba_chunk(params, chunk), images, batch_size)


def accuracy(params: Params, images: np.ndarray, labels: np.ndarray) -> float:
  """Share of ``images`` (uint8 or float in [0, 1]) whose predicted class equals ``labels``."""
  labels = np.asarray(labels)
  return float(np.mean(np.argmax(predict_proba(params, images), axis=1) == labels))


def _cache_path(dataset: str, cache_dir: str | None, train_kwargs: dict[str, Any]) -> str:
  """The cache file of ``dataset`` under the full (defaults filled in) training settings."""
  unknown = sorted(set(train_kwargs) - set(_TRAIN_DEFAULTS))
  if unknown:
    raise TypeError(f"unknown train_classifier arguments: {unknown}")
  settings = {**_TRAIN_DEFAULTS, **train_kwargs}
  tag = "-".join(f"{k}={settings[k]!r}" for k in sorted(settings))
  name = f"digits-{dataset}-v{CLASSIFIER_VERSION}-{tag}.npz"
  return os.path.join(downloads.resolve_cache_dir(cache_dir), name)


def _save(path: str, params: Params) -> None:
  """Writes the flattened params to ``path`` atomically (temp file + ``os.replace``)."""
  flat = {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}
  downloads.save_npz_atomic(path, flat)


def _load(path: str) -> Params:
  with np.load(path) as npz:
    flat = {tuple(k.split("/")): jnp.asarray(npz[k]) for k in npz.files}
  return traverse_util.unflatten_dict(flat)


def is_cached(path: str) -> bool:
  """Whether the classifier of cache file ``path`` is loaded or on disk (no training)."""
  return path in _PARAMS_CACHE or os.path.exists(path)


def load_or_train(dataset: str, data_dir: str | None = None, cache_dir: str | None = None,
                  **train_kwargs) -> Params:
  """Returns the classifier of ``dataset``, training and caching it on the first call.

  The params are cached in process and as ``.npz`` in ``cache_dir`` (default
  ``$AAEJAX_CACHE_DIR``, else ``~/.cache/aaejax``), in a file whose name holds the dataset,
  ``CLASSIFIER_VERSION`` and all training settings, so changed settings retrain.

  Args:
    dataset: Dataset name, see :data:`aaejax.data.SUPPORTED_DATASETS`.
    data_dir: Data directory passed to :func:`aaejax.data.load_numpy`.
    cache_dir: Directory of the cached parameter files.
    **train_kwargs: Keyword arguments of :func:`train_classifier`.

  Returns:
    The variables dict ``{"params": ...}`` of the classifier.

  Raises:
    TypeError: For a keyword that :func:`train_classifier` does not take.
  """
  path = _cache_path(dataset, cache_dir, train_kwargs)
  if path in _PARAMS_CACHE:
    return _PARAMS_CACHE[path]
  if os.path.exists(path):
    params = _load(path)
  else:
    train = data.load_numpy(dataset, "train", data_dir, cache_dir=cache_dir)
    params = train_classifier(train["image"], train["label"], **train_kwargs)
    _save(path, params)
  _PARAMS_CACHE[path] = params
  return params


def mode_coverage(probs: np.ndarray, *, min_share: float = 0.01,
                  confidence: float = 0.9) -> dict[str, float]:
  """Summarises which classes the argmax predictions of n generated samples cover.

  Args:
    probs: (n, K) class probabilities, rows summing to 1, n ≥ 1.
    min_share: Share of the samples a class needs as argmax to count as covered.
    confidence: Threshold on the maximum probability of a "confident" sample.

  Returns:
    ``classes_covered``: number of classes (an int) that are the argmax of at least
    ``min_share`` of the samples; ``rarest_class_share``: the smallest argmax share over all K
    classes (0 if a class never wins); ``confident_share``: share of samples whose maximum
    probability is at least ``confidence``.

  Raises:
    ValueError: If ``probs`` is not a non-empty 2-D array of finite, non-negative rows summing
      to 1, or ``min_share`` / ``confidence`` lie outside [0, 1].

  Example:
    >>> probs = np.array([[0.95, 0.05, 0.0], [0.6, 0.4, 0.0], [0.1, 0.9, 0.0], [1.0, 0.0, 0.0]])
    >>> cov = mode_coverage(probs, min_share=0.25)
    >>> cov["classes_covered"], cov["rarest_class_share"], cov["confident_share"]
    (2, 0.0, 0.75)
  """
  probs = np.asarray(probs, np.float64)
  if probs.ndim != 2:
    raise ValueError(f"probs must be a 2-D (n, K) array, got shape {probs.shape}")
  n, k = probs.shape
  if n < 1 or k < 1:
    raise ValueError(f"probs needs at least one sample and one class, got shape {probs.shape}")
  if not np.all(np.isfinite(probs)) or np.any(probs < 0):
    raise ValueError("probs must be finite and non-negative")
  if not np.allclose(probs.sum(axis=1), 1.0, rtol=0.0, atol=1e-3):
    raise ValueError("probs rows must sum to 1")
  if not 0.0 <= min_share <= 1.0:
    raise ValueError(f"min_share must be in [0, 1], got {min_share}")
  if not 0.0 <= confidence <= 1.0:
    raise ValueError(f"confidence must be in [0, 1], got {confidence}")
  shares = np.bincount(np.argmax(probs, axis=1), minlength=k) / n
  return {
      # k/n is correctly rounded, so a share exactly equal to min_share compares equal.
      "classes_covered": int(np.sum(shares >= min_share)),
      "rarest_class_share": float(shares.min()),
      "confident_share": float(np.mean(probs.max(axis=1) >= confidence)),
  }
