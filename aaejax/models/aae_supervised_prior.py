"""The supervised-prior AAE (Makhzani et al. 2015, Sec. 3, Fig. 4): the label shapes q(z).

The critic sees one-hot(label) with an extra "unlabelled" slot; real samples come from the
label's mixture component or swiss-roll segment. The phases are the AAE's
(:mod:`aaejax.models.aae`); its regularisation phases also see a labelled mini-batch.

Label plumbing: :meth:`SupervisedPriorAAE.train_data` marks the training examples outside a
class-balanced labelled subset with label −1; the labelled subset is also a data stream
(:class:`aaejax.core.Stream` ``"labeled"``) from which the loop draws each step's labelled
mini-batch. Its evaluator (``label_component``) and figures are the shared ones its
capabilities pick (:mod:`aaejax.evaluation`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from aaejax import core, data
from aaejax import priors as priors_lib
from aaejax.models.aae import AAE, check_num_labeled, require_labels


def one_hot_with_unlabelled(labels: jax.Array, num_classes: int) -> jax.Array:
  """(n, num_classes + 1) one-hot of ``labels``; a label < 0 (unlabelled) sets the last slot."""
  labels = jnp.asarray(labels)
  return jax.nn.one_hot(jnp.where(labels < 0, num_classes, labels), num_classes + 1)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class SupervisedPriorAAE(AAE):
  """AAE whose critic knows the label: each class fills its own part of the prior (Fig. 4).

  The critic D(z, c) gets c = one-hot(label) of size K + 1 (K = the prior's
  classes), the last slot meaning "unlabelled". For a labelled example the real
  sample is drawn from the label's mixture component or swiss-roll segment, for an
  unlabelled one from the whole prior; the fake z carries the same c.

  Attributes:
    num_labeled: training examples that keep their label (a class-balanced
      subset chosen by the run's seed in :meth:`train_data`); the rest get
      label −1.
    labeled_batch_size: labelled examples added to each step's regularization
      phases (0: none), the ``"labeled"`` stream drawn from that subset
      (``batch["labeled_image"]``, ``batch["labeled_label"]``), so that the
      label signal per step does not shrink with ``num_labeled``: the phases
      see the batch (labels as above) plus these.

  Example:

    >>> import jax, jax.numpy as jnp
    >>> from aaejax.models import SupervisedPriorAAE
    >>> model = SupervisedPriorAAE(image_shape=(28, 28, 1), latent_dim=2,
    ...                            prior="swiss_roll", critic_hidden=(64,))
    >>> state = model.init(jax.random.key(0))
    >>> batch = {"image": jnp.zeros((4, 28, 28, 1), jnp.uint8),
    ...          "label": jnp.array([3, -1, 0, -1])}
    >>> state, m = jax.jit(model.train_step)(state, batch, jax.random.key(1))
    >>> sorted(m)
    ['critic_acc', 'critic_loss', 'gen_loss', 'recon_loss']
  """

  prior: Any = "gaussian_mixture"
  num_labeled: int = 10_000
  labeled_batch_size: int = 0

  def __post_init__(self):
    super().__post_init__()
    if not isinstance(self.prior, (priors_lib.GaussianMixture, priors_lib.SwissRoll)):
      raise ValueError("the supervised prior needs a prior with classes, 'gaussian_mixture' or "
                       f"'swiss_roll'; got {self.prior!r}.")
    check_num_labeled(self.num_labeled, self.prior.num_classes)

  @classmethod
  def from_config(cls, config, image_shape, **fields):
    return super().from_config(config, image_shape, num_labeled=int(config.num_labeled),
                               labeled_batch_size=int(config.get("labeled_batch_size", 0)),
                               **fields)

  def capabilities(self):
    return super().capabilities() | {core.LABEL_PRIOR}

  def critic_condition_size(self):
    return self.prior.num_classes + 1

  def label_fields(self):
    k = self.prior.num_classes
    return {"label": (k, True), "labeled_label": (k, False)}

  def prepare(self, state, batch, rng):
    """The AAE's step inputs; ``batch["label"]`` (integers in [0, K), −1: unlabelled) is
    required."""
    require_labels(self, batch, "label")
    return super().prepare(state, batch, rng)

  def critic_condition(self, batch):
    return one_hot_with_unlabelled(batch["label"], self.prior.num_classes)

  def prior_codes(self, state, batch, rng, n):
    return {"critic": self.sample_prior(state, rng, n, batch["label"])}

  def regularization_batch(self, batch):
    if "labeled_image" not in batch:
      return batch
    return {k: jnp.concatenate([batch[k], batch[f"labeled_{k}"]]) for k in ("image", "label")}

  def train_data(self, train, seed):
    """The labels of a class-balanced subset of ``num_labeled`` examples stay, the rest get −1."""
    labels = np.asarray(train["label"])
    keep = data.balanced_labeled_subset(labels, self.num_labeled, self.prior.num_classes, seed)
    relabelled = np.full_like(labels, -1)
    relabelled[keep] = labels[keep]
    return {**train, "label": relabelled}

  def streams(self):
    if not self.labeled_batch_size:
      return {}
    return {"labeled": core.Stream(self.labeled_batch_size,
                                   data.labeled_subset(self.num_labeled, self.prior.num_classes))}
