"""Extra data streams a model's step draws besides the training batch, each with its own source."""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class Stream:
  """An extra data stream a model's step needs besides the training batch.

  A stream has its own source: the data set ``dataset`` (None: the run's own) and its
  ``split``, transformed by ``select(arrays, seed)`` (host arrays with a common leading axis
  -> the arrays to draw from; None keeps them all), e.g. a labelled subset
  (:func:`aaejax.data.labeled_subset`), the unlabelled rest, or a second domain's images
  with their labels dropped. Each step the loop draws ``batch_size`` examples uniformly
  (with replacement) from them with the key ``fold_in(step_rng, 1 + i)``, ``i`` the
  stream's index in sorted name order, and adds them to the batch as ``<name>_<key>``
  (e.g. ``labeled_image``). The draw depends only on the run's key and the step, so
  resuming is exact. ``image_shape`` is the shape of the stream's images where it differs
  from the model's (a second domain in colour).
  """

  batch_size: int
  select: Callable[[Mapping[str, np.ndarray], int], dict[str, np.ndarray]] | None = None
  dataset: str | None = None
  split: str = "train"
  image_shape: tuple[int, ...] | None = None

  def arrays(self, source: Mapping[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """The arrays the stream draws from, given its source's arrays."""
    return dict(source) if self.select is None else self.select(source, seed)
