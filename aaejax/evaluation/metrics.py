"""Evaluation metrics: blockwise MMD, k-NN / nearest-centre / segment accuracy, errors.

The pairwise metrics (:func:`mmd_imq_blockwise`, :func:`knn_accuracy`, the
nearest-point searches) work on blocks of ``block_size`` rows at a time (a
``jax.lax.map`` over zero-padded blocks), so memory stays O(block_size · n) even
for 10k × 10k inputs. Scalar results are python floats.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from aaejax import penalties


def _row_blocks(fn, xs: tuple[jax.Array, ...], block_size: int) -> jax.Array:
  """Applies ``fn(*blocks)`` to blocks of ``block_size`` rows of the equally long arrays ``xs``.

  ``fn`` maps (b, ...) blocks to (b, ...) results; the last block is zero-padded
  and the rows of the padding are dropped from the concatenated result.
  """
  n = xs[0].shape[0]
  b = min(block_size, n)
  num_blocks = -(-n // b)
  blocks = [jnp.pad(x, [(0, num_blocks * b - n)] + [(0, 0)] * (x.ndim - 1))
            .reshape(num_blocks, b, *x.shape[1:]) for x in xs]
  out = jax.lax.map(lambda blk: fn(*blk), blocks)
  return out.reshape(num_blocks * b, *out.shape[2:])[:n]


@functools.partial(jax.jit, static_argnames="block_size")
def _nearest(x: jax.Array, y: jax.Array, block_size: int = 1000) -> jax.Array:
  """(n,) index of the nearest row of ``y`` for every row of ``x``."""
  return _row_blocks(lambda blk: jnp.argmin(penalties.sq_distances(blk, y), axis=1), (x,),
                     block_size)


@functools.partial(jax.jit, static_argnames="block_size")
def _mmd_imq(qz, pz, prior_scale, block_size):
  n, d = qz.shape
  c_base = 2.0 * d * jnp.square(jnp.asarray(prior_scale, jnp.float32))
  w_within, w_cross = 1.0 / (n * n - n), 2.0 / (n * n)

  def kernel(dist):  # Σ_s C_s / (C_s + D), elementwise
    dist = jnp.maximum(dist, 0.0)
    return sum(c_base * s / (c_base * s + dist) for s in penalties.IMQ_SCALES)

  def row_sums(q, p):
    # Combining the three terms per entry before summing keeps float32 sums small.
    within = kernel(penalties.sq_distances(q, qz)) + kernel(penalties.sq_distances(p, pz))
    return jnp.sum(w_within * within - w_cross * kernel(penalties.sq_distances(q, pz)), axis=1)

  # Each within term's diagonal holds k(0) = 1 per scale: remove it.
  diagonal = 2.0 * n * len(penalties.IMQ_SCALES) * w_within
  return jnp.sum(_row_blocks(row_sums, (qz, pz), block_size)) - diagonal


def mmd_imq_blockwise(qz: jax.Array, pz: jax.Array, prior_scale: float = 1.0,
                      block_size: int = 1000) -> float:
  """The IMQ statistic of ``penalties.mmd(qz, pz, "imq", prior_scale)``, blockwise.

  Sums the kernel values over blocks of ``block_size`` rows, so memory is
  O(block_size · n) instead of O(n²): usable for n = 10,000 on CPU. The diagonal
  of each within-sample term (k(0) = 1 per scale) is subtracted rather than masked.

  Args:
    qz: (n, d) codes.
    pz: (n, d) prior samples.
    prior_scale: σ_p, the prior's scale (C = 2·d·σ_p²·s for each IMQ scale s).
    block_size: rows per block.

  Returns:
    The (unbiased, possibly negative) MMD estimate.

  Example:

    >>> q = jax.random.normal(jax.random.key(0), (50, 3))
    >>> p = jax.random.normal(jax.random.key(1), (50, 3))
    >>> abs(mmd_imq_blockwise(q, p, block_size=16) - float(penalties.mmd(q, p, "imq"))) < 1e-4
    True
  """
  qz, pz = jnp.asarray(qz, jnp.float32), jnp.asarray(pz, jnp.float32)
  if qz.ndim != 2 or qz.shape != pz.shape:
    raise ValueError(f"qz and pz must both be (n, d); got {qz.shape} and {pz.shape}.")
  if qz.shape[0] < 2:
    raise ValueError(f"mmd needs at least 2 samples, got n={qz.shape[0]}.")
  return float(_mmd_imq(qz, pz, prior_scale, block_size))


@functools.partial(jax.jit, static_argnames=("k", "block_size"))
def _knn_predict(train_codes, train_labels, test_codes, k, block_size):
  def predict(block):
    _, idx = jax.lax.top_k(-penalties.sq_distances(block, train_codes), k)  # nearest first
    nbr = train_labels[idx]  # (b, k)
    votes = jnp.sum(nbr[:, :, None] == nbr[:, None, :], axis=2)  # votes for each neighbour's label
    winner = jnp.argmax(votes == jnp.max(votes, axis=1, keepdims=True), axis=1)  # nearest winner
    return jnp.take_along_axis(nbr, winner[:, None], axis=1)[:, 0]

  return _row_blocks(predict, (test_codes,), block_size)


def knn_accuracy(train_codes: jax.Array, train_labels: jax.Array, test_codes: jax.Array,
                 test_labels: jax.Array, k: int = 5, block_size: int = 1000) -> float:
  """Accuracy of a k-nearest-neighbour (Euclidean) majority vote on test codes.

  Each test code takes the most common label among its ``k`` nearest training
  codes. A tie in the vote goes to the tied label of the nearest neighbour (so
  with k = 2 and two different labels, the nearest neighbour decides).

  Args:
    train_codes: (n, d) reference codes.
    train_labels: (n,) integer labels of ``train_codes``.
    test_codes: (m, d) codes to classify.
    test_labels: (m,) integer labels of ``test_codes``.
    k: number of neighbours (1 <= k <= n).
    block_size: test rows per block.

  Returns:
    The fraction of test codes whose vote equals their label, in [0, 1].

  Example:

    >>> train = jnp.array([[0.0], [1.0], [10.0], [11.0]])
    >>> knn_accuracy(train, jnp.array([0, 0, 1, 1]), jnp.array([[0.5], [9.0]]),
    ...              jnp.array([0, 0]), k=2)
    0.5
  """
  train_codes = jnp.asarray(train_codes, jnp.float32)
  test_codes = jnp.asarray(test_codes, jnp.float32)
  train_labels, test_labels = jnp.asarray(train_labels), jnp.asarray(test_labels)
  if train_codes.ndim != 2 or test_codes.ndim != 2 or train_codes.shape[1] != test_codes.shape[1]:
    raise ValueError(f"codes must be (n, d) and (m, d); got {train_codes.shape} and "
                     f"{test_codes.shape}.")
  if train_labels.shape != train_codes.shape[:1] or test_labels.shape != test_codes.shape[:1]:
    raise ValueError("labels must have one entry per code.")
  if not 1 <= k <= train_codes.shape[0]:
    raise ValueError(f"k must be in [1, {train_codes.shape[0]}], got {k}.")
  pred = _knn_predict(train_codes, train_labels, test_codes, k, block_size)
  return float(jnp.mean(pred == test_labels))


def nearest_center_accuracy(codes: jax.Array, labels: jax.Array, centers: jax.Array) -> float:
  """Fraction of codes whose nearest row of ``centers`` (K, d) has the code's label as index.

  For a label-conditioned gaussian mixture prior, ``centers = prior.means()``.

  Example:

    >>> from aaejax import priors
    >>> centers = priors.GaussianMixture().means()
    >>> nearest_center_accuracy(1.1 * centers, jnp.arange(10), centers)
    1.0
  """
  codes, centers = jnp.asarray(codes, jnp.float32), jnp.asarray(centers, jnp.float32)
  if codes.ndim != 2 or centers.ndim != 2 or codes.shape[1] != centers.shape[1]:
    raise ValueError(f"codes and centers must be (n, d) and (K, d); got {codes.shape} and "
                     f"{centers.shape}.")
  return float(jnp.mean(_nearest(codes, centers) == jnp.asarray(labels)))


@functools.partial(jax.jit, static_argnames=("prior", "num_points"))
def swiss_roll_segment(codes: jax.Array, prior, num_points: int = 10_000) -> jax.Array:
  """(n,) class segment of the point of the swiss roll nearest to each 2-D code.

  The roll is sampled at ``num_points`` evenly spaced positions u in [0, 1]
  (``prior.position(u)``); the nearest sample's u gives the segment
  floor(u · K), clipped to K − 1 (K = ``prior.num_classes``). Jitted, with
  ``prior`` (hashable, e.g. :class:`aaejax.priors.SwissRoll`) static.

  Example:

    >>> from aaejax import priors
    >>> roll = priors.SwissRoll()
    >>> swiss_roll_segment(roll.position(jnp.array([0.05, 0.55, 0.95])), roll).tolist()
    [0, 5, 9]
  """
  codes = jnp.asarray(codes, jnp.float32)
  if codes.ndim != 2 or codes.shape[1] != 2:
    raise ValueError(f"codes must be (n, 2), got {codes.shape}.")
  u = jnp.linspace(0.0, 1.0, num_points, dtype=jnp.float32)
  nearest_u = u[_nearest(codes, prior.position(u))]
  k = prior.num_classes
  return jnp.clip(jnp.floor(nearest_u * k).astype(jnp.int32), 0, k - 1)


def segment_accuracy(codes: jax.Array, labels: jax.Array, prior) -> float:
  """Fraction of 2-D codes lying nearest to their own class's swiss-roll segment.

  Example:

    >>> from aaejax import priors
    >>> roll = priors.SwissRoll()
    >>> codes = roll.position(jnp.array([0.05, 0.55, 0.95, 0.95]))
    >>> segment_accuracy(codes, jnp.array([0, 5, 9, 0]), roll)
    0.75
  """
  return float(jnp.mean(swiss_roll_segment(codes, prior) == jnp.asarray(labels)))


def cluster_error(train_clusters, train_labels, test_clusters, test_labels, num_clusters: int,
                  num_classes: int = 10) -> float:
  """Percent test error of clusters labelled by their majority training label.

  Each cluster predicts the most common training label among its members (ties
  go to the smallest label), as in the AAE paper's unsupervised clustering
  evaluation. A cluster with no training member predicts label −1, so its test
  members all count as errors.

  Args:
    train_clusters: (n,) cluster index in [0, num_clusters) of each training example.
    train_labels: (n,) class labels in [0, num_classes).
    test_clusters: (m,) cluster index of each test example.
    test_labels: (m,) class labels.
    num_clusters: number of clusters.
    num_classes: number of classes.

  Returns:
    The test error in percent, in [0, 100].

  Example:

    >>> # Cluster 0 is mostly label 3, cluster 1 label 5, cluster 2 has no training member.
    >>> cluster_error([0, 0, 0, 1], [3, 3, 4, 5], [0, 1, 1, 2], [3, 5, 3, 3], num_clusters=3)
    50.0
  """
  train_clusters, train_labels = np.asarray(train_clusters), np.asarray(train_labels)
  test_clusters, test_labels = np.asarray(test_clusters), np.asarray(test_labels)
  if train_clusters.shape != train_labels.shape or test_clusters.shape != test_labels.shape:
    raise ValueError("clusters and labels must have the same shape.")
  counts = np.zeros((num_clusters, num_classes), np.int64)
  np.add.at(counts, (train_clusters, train_labels), 1)
  majority = np.where(counts.sum(axis=1) > 0, counts.argmax(axis=1), -1)
  return float(100.0 * np.mean(majority[test_clusters] != test_labels))


def matched_error(pred, labels, num_categories: int, num_classes: int = 10) -> float:
  """Percent error of categories used as classes after the best one-to-one matching.

  The matching of category values to classes that maximises the agreements on these
  examples (the Hungarian method on the (categories × classes) confusion counts); with more
  categories than classes the unmatched categories count as errors. This is how an
  unsupervised categorical code (InfoGAN's c) is scored as a digit classifier.

  Example:

    >>> # categories are the labels permuted (0->2, 1->0, 2->1), one mistake in six
    >>> matched_error([2, 2, 0, 0, 1, 0], [0, 0, 1, 1, 2, 2], num_categories=3, num_classes=3)
    16.666666666666664
  """
  pred, labels = np.asarray(pred), np.asarray(labels)
  if pred.shape != labels.shape:
    raise ValueError(f"pred {pred.shape} and labels {labels.shape} differ in shape.")
  counts = np.zeros((num_categories, num_classes), np.int64)
  np.add.at(counts, (pred, labels), 1)
  rows, cols = scipy.optimize.linear_sum_assignment(counts, maximize=True)
  return float(100.0 * (1.0 - counts[rows, cols].sum() / max(len(labels), 1)))


def error_rate(logits_or_pred: jax.Array, labels: jax.Array) -> float:
  """Percent of wrong predictions: argmax of (n, K) logits, or (n,) predicted labels.

  Example:

    >>> error_rate(jnp.array([[2.0, 0.0], [0.0, 1.0]]), jnp.array([0, 0]))
    50.0
    >>> error_rate(jnp.array([1, 1, 0, 1]), jnp.array([1, 1, 1, 1]))
    25.0
  """
  pred = jnp.asarray(logits_or_pred)
  if pred.ndim == 2:
    pred = jnp.argmax(pred, axis=-1)
  labels = jnp.asarray(labels)
  if pred.ndim != 1 or pred.shape != labels.shape:
    raise ValueError(f"expected (n, K) logits or (n,) predictions for {labels.shape} labels; got "
                     f"{jnp.shape(logits_or_pred)}.")
  return float(100.0 * jnp.mean(pred != labels))
