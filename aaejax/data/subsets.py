"""Labelled subsets of a training split and the unlabelled rest (host side, deterministic
from a seed): the sources of semi-supervised streams."""

from __future__ import annotations


import numpy as np


def balanced_labeled_subset(
    labels: np.ndarray, num_labeled: int, num_classes: int, seed: int
) -> np.ndarray:
  """Picks a class-balanced subset of examples, e.g. for semi-supervised runs.

  Args:
    labels: Integer labels of shape ``(N,)``.
    num_labeled: Subset size; must be divisible by ``num_classes``.
    num_classes: Number of classes.
    seed: Seed for ``np.random.default_rng``.

  Returns:
    Sorted int64 indices; ``num_labeled // num_classes`` per class, or all
    indices if ``num_labeled == len(labels)``.

  Raises:
    ValueError: If ``num_labeled`` is not positive, not divisible by
      ``num_classes``, or exceeds the examples available in some class.

  Example:

    >>> labels = np.array([0, 1, 0, 1, 0, 1, 2, 2])
    >>> idx = balanced_labeled_subset(labels, 6, 3, seed=0)
    >>> np.bincount(labels[idx]).tolist()
    [2, 2, 2]
  """
  labels = np.asarray(labels)
  if num_labeled == len(labels):
    return np.arange(len(labels))
  if num_labeled <= 0 or num_classes <= 0 or num_labeled % num_classes:
    raise ValueError(
        f"num_labeled={num_labeled} must be a positive multiple of num_classes={num_classes}"
    )
  per_class = num_labeled // num_classes
  rng = np.random.default_rng(seed)
  chosen = []
  for c in range(num_classes):
    candidates = np.flatnonzero(labels == c)
    if len(candidates) < per_class:
      raise ValueError(
          f"Class {c} has {len(candidates)} examples, fewer than the "
          f"{per_class} requested per class"
      )
    chosen.append(rng.choice(candidates, size=per_class, replace=False))
  return np.sort(np.concatenate(chosen))


def labeled_subset(num_labeled: int, num_classes: int):
  """A stream source (:class:`aaejax.core.Stream` ``select``): the class-balanced subset of
  ``num_labeled`` examples that the seed picks (:func:`balanced_labeled_subset`).

  >>> train = {"image": np.arange(8)[:, None], "label": np.array([0, 1, 0, 1, 0, 1, 0, 1])}
  >>> np.bincount(labeled_subset(4, 2)(train, 0)["label"]).tolist()
  [2, 2]
  """

  def select(train, seed):
    keep = balanced_labeled_subset(train["label"], num_labeled, num_classes, seed)
    return {"image": np.asarray(train["image"])[keep], "label": np.asarray(train["label"])[keep]}

  return select


def unlabeled_rest(num_labeled: int, num_classes: int):
  """A stream source: the images outside :func:`labeled_subset`'s pick, labels dropped.

  >>> train = {"image": np.arange(8)[:, None], "label": np.array([0, 1, 0, 1, 0, 1, 0, 1])}
  >>> sorted(unlabeled_rest(4, 2)(train, 0))
  ['image']
  """

  def select(train, seed):
    keep = balanced_labeled_subset(train["label"], num_labeled, num_classes, seed)
    rest = np.setdiff1d(np.arange(len(train["label"])), keep)
    return {"image": np.asarray(train["image"])[rest]}

  return select
