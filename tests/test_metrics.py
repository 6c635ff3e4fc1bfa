"""Tests for aaejax.evaluation.metrics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aaejax import penalties, priors
from aaejax.evaluation import metrics


# --- mmd_imq_blockwise ----------------------------------------------------------


@pytest.mark.parametrize("block_size", [128, 300, 1000])  # Uneven, exact and larger than n.
def test_mmd_imq_blockwise_matches_penalties(block_size):
    q = jax.random.normal(jax.random.key(0), (300, 8)) + 0.3
    p = 2.0 * jax.random.normal(jax.random.key(1), (300, 8))
    expected = float(penalties.mmd(q, p, "imq", prior_scale=2.0))
    got = metrics.mmd_imq_blockwise(q, p, prior_scale=2.0, block_size=block_size)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-5)


def test_mmd_imq_blockwise_large():
    q = jax.random.normal(jax.random.key(0), (10_000, 8))
    p = jax.random.normal(jax.random.key(1), (10_000, 8))
    # Same distribution: the unbiased estimate is O(1/n) around 0.
    assert abs(metrics.mmd_imq_blockwise(q, p)) < 1e-3


def test_mmd_imq_blockwise_bad_shapes():
    with pytest.raises(ValueError, match="qz and pz"):
        metrics.mmd_imq_blockwise(jnp.zeros((4, 2)), jnp.zeros((5, 2)))


# --- knn_accuracy -----------------------------------------------------------------


def test_knn_accuracy_separated_clusters():
    rng = np.random.default_rng(0)
    centers = 10.0 * np.eye(3)
    train_labels, test_labels = rng.integers(0, 3, 50), rng.integers(0, 3, 23)
    train = centers[train_labels] + 0.1 * rng.normal(size=(50, 3))
    test = centers[test_labels] + 0.1 * rng.normal(size=(23, 3))
    assert metrics.knn_accuracy(train, train_labels, test, test_labels, k=5, block_size=7) == 1.0


def test_knn_accuracy_half():
    train = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2]])
    train_labels = np.array([0, 0, 0, 1, 1, 1])
    test = np.array([[0.05], [0.15], [10.05], [9.9]])
    test_labels = np.array([0, 1, 1, 0])  # Right, wrong, right, wrong.
    assert metrics.knn_accuracy(train, train_labels, test, test_labels, k=3, block_size=3) == 0.5


def test_knn_accuracy_majority_and_ties():
    train = np.array([[0.5], [1.0], [2.0], [3.0]])
    test = np.array([[0.0], [3.5]])
    # k=3 from 0: labels (2, 5, 5) → majority 5, although the nearest is 2.
    assert metrics.knn_accuracy(train, [2, 5, 5, 2], test[:1], [5], k=3) == 1.0
    # Ties go to the nearest neighbour's label, not the smallest label or train index.
    assert metrics.knn_accuracy(train, [7, 5, 5, 7], test, [7, 7], k=4) == 1.0
    assert metrics.knn_accuracy(train, [2, 5, 1, 7], test, [2, 7], k=2) == 1.0


def test_knn_accuracy_bad_k():
    with pytest.raises(ValueError, match="k must be"):
        metrics.knn_accuracy(np.zeros((3, 2)), [0, 1, 2], np.zeros((2, 2)), [0, 1], k=4)


# --- nearest_center_accuracy, swiss roll segments -----------------------------------


def test_nearest_center_accuracy_hand_made():
    centers = np.array([[0.0, 0.0], [10.0, 0.0]])
    codes = np.array([[1.0, 0.0], [9.0, 1.0], [6.0, 0.0]])
    assert metrics.nearest_center_accuracy(codes, [0, 1, 0], centers) == pytest.approx(2 / 3)


def test_nearest_center_accuracy_gaussian_mixture():
    means = priors.GaussianMixture(dim=4).means()
    labels = np.arange(1000) % 10
    z = np.asarray(means)[labels] + 0.3 * np.random.default_rng(0).normal(size=(1000, 4))
    assert metrics.nearest_center_accuracy(z, labels, means) > 0.95
    assert metrics.nearest_center_accuracy(z, (labels + 1) % 10, means) < 0.05


def test_swiss_roll_segment():
    prior = priors.SwissRoll(num_classes=5)
    u = (jnp.arange(5) + 0.5) / 5  # Segment centres.
    segments = metrics.swiss_roll_segment(prior.position(u), prior)
    np.testing.assert_array_equal(segments, np.arange(5))
    # The roll's ends belong to the first and last segments.
    np.testing.assert_array_equal(
        metrics.swiss_roll_segment(prior.position(jnp.array([0.0, 1.0])), prior), [0, 4])
    assert metrics.segment_accuracy(prior.position(u), np.arange(5), prior) == 1.0
    assert metrics.segment_accuracy(prior.position(u), np.arange(1, 6), prior) == 0.0
    # Noisy points along the roll: nearly all land on their own segment.
    u = np.random.default_rng(0).uniform(size=2000)
    z = prior.position(u) + 0.03 * np.random.default_rng(1).normal(size=(2000, 2))
    assert metrics.segment_accuracy(z, np.floor(5 * u).astype(int), prior) > 0.9


# --- cluster_error, error_rate ---------------------------------------------------------


def test_cluster_error():
    train_clusters = [0, 0, 0, 1, 1, 3]
    train_labels = [4, 4, 2, 1, 1, 1]  # Cluster 0 → 4, 1 → 1, 2 empty, 3 → 1.
    test_clusters = [0, 0, 1, 2, 3]
    test_labels = [4, 2, 1, 0, 1]  # Right, wrong, right, wrong (empty cluster), right.
    got = metrics.cluster_error(train_clusters, train_labels, test_clusters, test_labels,
                                num_clusters=4, num_classes=5)
    assert got == pytest.approx(40.0)


def test_cluster_error_ties_to_smallest_label():
    assert metrics.cluster_error([0, 0], [3, 1], [0, 0], [1, 3], num_clusters=1) == 50.0


def test_error_rate():
    logits = np.array([[0.1, 0.9], [2.0, -1.0], [0.0, 1.0], [3.0, 0.0]])
    labels = np.array([1, 0, 0, 1])
    assert metrics.error_rate(logits, labels) == 50.0
    assert metrics.error_rate(np.array([1, 0, 0, 0]), labels) == 25.0
    with pytest.raises(ValueError, match="logits"):
        metrics.error_rate(np.zeros((4, 2, 2)), labels)
