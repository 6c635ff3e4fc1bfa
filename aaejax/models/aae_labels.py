"""Label-aware adversarial autoencoders (Makhzani et al. 2015, Sec. 3–6).

Models that use labels or learned categories, all :class:`~aaejax.models.aae.AAE`
subclasses trained by the paper's sequence of phases, each phase one Adam update
of its own networks (its own optimizer state, its own ``lr_<phase>``), all inside
one pure ``train_step(state, batch, rng)``:

====================  ==========================================================
model                 what labels or categories do
====================  ==========================================================
SupervisedPriorAAE    the critic sees one-hot(label) with an extra "unlabelled"
                      slot; real samples come from the label's mixture component
                      or swiss-roll segment (paper Fig. 4)
StyleAAE              (:mod:`aaejax.models.aae_style`) the decoder gets
                      [z, one-hot(label)]; z is matched to a gaussian and holds
                      only the style (Fig. 6)
SemiSupervisedAAE     the encoder outputs y = softmax(y_logits) (matched to a
                      uniform categorical) and z (matched to a gaussian); the
                      decoder gets [z, y]; a cross-entropy phase on a labelled
                      mini-batch trains q(y|x) (Fig. 8, Table 2)
ClusteringAAE         the same without labels, y with ``num_clusters``
                      categories (Fig. 9)
DimReductionAAE       representation r = y·W_c + z: learned cluster heads W_c
                      kept at least η apart by a hinge cost (Fig. 10, 11)
====================  ==========================================================

One step (:meth:`AAE.train_step <aaejax.models.aae.AAE.train_step>`), each phase seeing the networks as
the previous phase left them; r(x) is the decoder input, c the critic's
condition (only for the supervised prior) and D_k the critics:

1. ``recon`` (encoder, decoder, cluster heads): recon_weight · L_rec(x, dec(r(x)))
   + the cluster-head hinge (dimensionality reduction only);
2. ``critic`` (all critics, one update of their disjoint parameters, which is
   the same as one update per critic with a shared learning rate):
   Σ_k −log D_k(p_k, c) − log(1 − D_k(q_k(x), c)), p_k a prior sample, q_k(x)
   the matching encoder output, both with ``critic_noise`` gaussian noise added;
3. ``gen`` (encoder): gen_weight · Σ_k −log D_k(q_k(x), c) (non-saturating);
4. ``supervised`` (encoder; only with labels): the cross-entropy
   −log q(y = label | x) on the labelled mini-batch ``batch["labeled_image"]``,
   ``batch["labeled_label"]`` that the training loop samples each step.

Label plumbing: :meth:`train_data` marks the training examples outside a
class-balanced labelled subset with label −1 (supervised prior); the labelled
subset is a data stream (:class:`aaejax.core.Stream` ``"labeled"``) from which
the loop draws each step's labelled mini-batch. The evaluators and figures of
these models live in :mod:`aaejax.evaluation` and :mod:`aaejax.figures`, chosen
by the capabilities each model declares.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from aaejax import core, data
from aaejax import priors as priors_lib
from aaejax.models.aae import AAE


def one_hot_with_unlabelled(labels: jax.Array, num_classes: int) -> jax.Array:
  """(n, num_classes + 1) one-hot of ``labels``; a label < 0 (unlabelled) sets the last slot."""
  labels = jnp.asarray(labels)
  return jax.nn.one_hot(jnp.where(labels < 0, num_classes, labels), num_classes + 1)


def _check_num_labeled(num_labeled: int, num_classes: int) -> None:
  if num_labeled <= 0 or num_labeled % num_classes:
    raise ValueError(f"num_labeled must be a positive multiple of the {num_classes} classes "
                     f"(a class-balanced subset), got {num_labeled}.")


def _require_labels(model, batch, key: str) -> None:
  if isinstance(batch, Mapping) and key not in batch:
    k, unlabelled_ok = model.label_fields()[key]
    raise ValueError(f"{type(model).__name__} needs batch[{key!r}]: integer labels in [0, {k})"
                     + (" or -1 (unlabelled)" if unlabelled_ok else "")
                     + f"; the batch has {sorted(batch)}.")


labeled_subset = data.labeled_subset  # the stream source of the labelled mini-batches


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
    _check_num_labeled(self.num_labeled, self.prior.num_classes)

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
    _require_labels(self, batch, "label")
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
                                   labeled_subset(self.num_labeled, self.prior.num_classes))}


def spread_heads(num_clusters: int, dim: int, spacing: float) -> np.ndarray:
  """(num_clusters, dim) points at least ``spacing`` apart: a regular polygon.

  The vertices of a regular ``num_clusters``-gon of side ``spacing`` in the first
  two coordinates (on a line in 1-D), the other coordinates 0: every pair of
  points is at least ``spacing`` apart, adjacent vertices exactly.
  """
  if dim == 1:
    return (spacing * (np.arange(num_clusters) - (num_clusters - 1) / 2))[:, None]
  angle = 2 * np.pi * np.arange(num_clusters) / num_clusters
  radius = spacing / (2 * np.sin(np.pi / num_clusters))
  heads = np.zeros((num_clusters, dim))
  heads[:, 0], heads[:, 1] = radius * np.cos(angle), radius * np.sin(angle)
  return heads


class ClusterHeads(nn.Module):
  """W_c of the dimensionality-reduction AAE: y ↦ y·W_c, W_c of shape (num_clusters, dim).

  Initialised by :func:`spread_heads` at ``init_spacing`` apart (the hinge's
  margin): Adam moves a head by about the learning rate per step, so heads that
  start close (e.g. drawn at random) take thousands of steps to reach the margin
  while the encoder learns on a representation whose clusters overlap.
  """

  num_clusters: int
  dim: int
  init_spacing: float = 6.0

  @nn.compact
  def __call__(self, y, train: bool = True):
    del train
    heads = spread_heads(self.num_clusters, self.dim, self.init_spacing)
    return y @ self.param("heads", lambda *_: jnp.asarray(heads, jnp.float32))


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class CategoricalAAE(AAE):
  """Encoder heads y = softmax(y_logits) and z; two critics; optional supervised phase.

  ``critic_y`` tells one-hot samples of a uniform categorical over
  ``num_categories`` (real) from y (fake); ``critic_z`` tells prior samples from
  z. The decoder gets the representation r = [z, y] (z first, so that the first
  two coordinates of a q(z) scatter are z's); :meth:`latent` is r as well. With
  ``num_labeled`` > 0, a ``supervised`` phase minimises the cross-entropy of
  q(y|x) on the ``"labeled"`` stream, ``labeled_batch_size`` examples a step.

  Attributes:
    num_categories: categories of y (classes or clusters), >= 2.
    num_classes: classes of the labels (with labels, ``num_categories`` must equal it).
    num_labeled: size of the class-balanced labelled subset (0: unsupervised).
    labeled_batch_size: labelled examples per step.
  """

  num_categories: int = 10
  num_classes: int = 10
  num_labeled: int = 0
  labeled_batch_size: int = 100

  def __post_init__(self):
    if self.num_categories < 2:
      raise ValueError(f"num_clusters (categories of y) must be >= 2, got {self.num_categories}.")
    if self.num_labeled:
      _check_num_labeled(self.num_labeled, self.num_classes)
      if self.num_categories != self.num_classes:
        raise ValueError(f"with labels, y needs one category per class ({self.num_classes}); "
                         f"got num_clusters={self.num_categories}.")
      if self.labeled_batch_size < 1:
        raise ValueError(f"labeled_batch_size must be >= 1, got {self.labeled_batch_size}.")
    super().__post_init__()
    heads = getattr(self.encoder, "num_categories", self.num_categories)
    if heads != self.num_categories:
      raise ValueError(f"the encoder has {heads} categories, the model {self.num_categories}.")

  @classmethod
  def from_config(cls, config, image_shape, **fields):
    num_labeled = int(config.get("num_labeled", 0))
    fields.setdefault("num_categories", int(config.get("num_clusters", 10)))
    if num_labeled:
      fields["labeled_batch_size"] = int(config.get("labeled_batch_size", config.batch_size))
    return super().from_config(config, image_shape, num_labeled=num_labeled,
                               num_classes=int(config.get("num_classes", 10)), **fields)

  def encoder_categories(self):
    return self.num_categories

  def label_fields(self):
    if not self.num_labeled:
      return {}
    return {"label": (self.num_classes, False), "labeled_label": (self.num_classes, False)}

  def capabilities(self):
    return super().capabilities() | {core.CATEGORICAL,
                                     core.CLASSIFY if self.num_labeled else core.CLUSTER}

  def phases(self):
    phases = super().phases()
    if self.num_labeled:
      phases += (core.Phase("supervised", ("encoder",), self.loss_supervised),)
    return phases

  def default_hparams(self):
    hp = super().default_hparams()
    if self.num_labeled:
      hp["lr_supervised"] = 1e-3
    return hp

  def streams(self):
    if not self.num_labeled:
      return {}
    return {"labeled": core.Stream(self.labeled_batch_size,
                                   labeled_subset(self.num_labeled, self.num_classes))}

  def critic_sizes(self):
    return {"critic_y": self.num_categories, "critic_z": self.latent_dim}

  def classify(self, state, images):
    """(n, K) logits of q(y | x): the labels (semi-supervised) or the learned categories."""
    return self.encode(state, images)["y_logits"]

  def representation(self, params, y, z):
    """The decoder input r(y, z) = [z, y]."""
    del params
    return jnp.concatenate([z, y], axis=-1)

  def decoder_input_dim(self):
    return self.latent_dim + self.num_categories

  def derived_heads(self, params, heads):
    y = jax.nn.softmax(heads["y_logits"])
    return dict(heads, y=y, r=self.representation(params, y, heads["z"]))

  def latent(self, heads):
    return heads["r"]

  def decoder_input(self, heads, labels=None):
    del labels
    return heads["r"]

  def adversarial_codes(self, heads):
    return {"critic_y": heads["y"], "critic_z": heads["z"]}

  def _prior_parts(self, state, rng, n, labels=None):
    """(z, one-hot y) prior samples; y is uniform, or ``labels`` where they are >= 0."""
    z_rng, y_rng = jax.random.split(rng)
    z = state.hparams["prior_scale"] * self.prior.sample(z_rng, n)
    c = jax.random.randint(y_rng, (n,), 0, self.num_categories)
    if labels is not None:
      c = jnp.where(labels >= 0, labels, c)
    return z, jax.nn.one_hot(c, self.num_categories)

  def prior_codes(self, state, batch, rng, n):
    del batch
    z, y = self._prior_parts(state, rng, n)
    return {"critic_y": y, "critic_z": z}

  def sample_prior(self, state, rng, n, labels=None):
    """Prior samples of the representation: r(y, z), y uniform one-hot (or ``labels``), z ~ p(z)."""
    z, y = self._prior_parts(state, rng, n, labels)
    return self.representation(state.params, y, z)

  def prepare(self, state, batch, rng):
    if self.num_labeled and ("labeled_image" not in batch or "labeled_label" not in batch):
      raise ValueError("the supervised phase needs batch['labeled_image'] and "
                       "batch['labeled_label'] (the training loop draws them from the "
                       "model's 'labeled' stream).")
    return super().prepare(state, batch, rng)

  def loss_supervised(self, inputs, params, shared=None):
    """Mean cross-entropy −log q(y = label | x) on ``batch["labeled_image"/"labeled_label"]``."""
    del shared
    batch = inputs.batch
    x = self.inputs(batch, "labeled_image")
    heads, ms = self.apply("encoder", params, inputs.state.model_state, x, train=True)
    logits, labels = heads["y_logits"], batch["labeled_label"]
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    acc = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    return loss, ({"supervised_loss": loss, "supervised_acc": acc}, ms)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class SemiSupervisedAAE(CategoricalAAE):
  """Semi-supervised classification (Fig. 8, Table 2); q(y|x) is the classifier.

  Example:

    >>> import jax, jax.numpy as jnp
    >>> from aaejax.models import SemiSupervisedAAE
    >>> model = SemiSupervisedAAE(image_shape=(28, 28, 1), latent_dim=4, num_labeled=100,
    ...                           critic_hidden=(64,))
    >>> state = model.init(jax.random.key(0))
    >>> x = jnp.zeros((4, 28, 28, 1), jnp.uint8)
    >>> batch = {"image": x, "labeled_image": x, "labeled_label": jnp.arange(4)}
    >>> state, m = jax.jit(model.train_step)(state, batch, jax.random.key(1))
    >>> sorted(state.opt_state)
    ['critic', 'gen', 'recon', 'supervised']
  """

  num_labeled: int = 100

  def __post_init__(self):
    if self.num_labeled <= 0:
      raise ValueError("SemiSupervisedAAE needs num_labeled > 0; ClusteringAAE uses no labels.")
    super().__post_init__()

  @classmethod
  def from_config(cls, config, image_shape, **fields):
    return super().from_config(config, image_shape,
                               num_categories=int(config.get("num_classes", 10)), **fields)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class ClusteringAAE(CategoricalAAE):
  """Unsupervised clustering (Fig. 9): y's ``num_categories`` are the clusters."""

  num_categories: int = 16

  def __post_init__(self):
    if self.num_labeled:
      raise ValueError("ClusteringAAE uses no labels (num_labeled must be 0); see "
                       "SemiSupervisedAAE.")
    super().__post_init__()


def head_hinge(heads: jax.Array, margin) -> tuple[jax.Array, jax.Array]:
  """(Σ_{i<j} max(0, margin − ‖h_i − h_j‖), min_{i<j} ‖h_i − h_j‖) over the rows h_i of heads."""
  diff = heads[:, None, :] - heads[None, :, :]
  dist = jnp.sqrt(jnp.sum(jnp.square(diff), axis=-1) + 1e-12)  # finite gradient at 0
  i, j = np.triu_indices(heads.shape[0], 1)
  pairs = dist[i, j]
  return jnp.sum(jax.nn.relu(margin - pairs)), jnp.min(pairs)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class DimReductionAAE(CategoricalAAE):
  """Dimensionality reduction with cluster heads (Fig. 10, 11).

  The representation is r = y·W_c + z (``latent_dim``-dimensional, 2 by
  default): W_c, a learned (num_clusters, latent_dim) matrix, maps each category
  to a cluster head, and z (matched to the gaussian prior) adds the style around
  it. The decoder gets r. The reconstruction phase also trains W_c and adds the
  hinge cost

    head_weight · Σ_{i<j} max(0, η − ‖W_i − W_j‖),   η = ``head_margin``,

  which is zero once every two heads are at least η apart. With labels
  (``num_labeled`` > 0, then 10 clusters) a supervised phase trains q(y|x) as in
  :class:`SemiSupervisedAAE` (``eval/error_rate``); without, the clusters are
  evaluated as :class:`ClusteringAAE`'s (``eval/cluster_error``).

  Attributes:
    head_init_spacing: the heads start at the vertices of a regular polygon of
      this side (:func:`spread_heads`); the config sets it to ``head_margin``.
  """

  latent_dim: int = 2
  head_init_spacing: float = 6.0

  @classmethod
  def from_config(cls, config, image_shape, **fields):
    return super().from_config(config, image_shape,
                               head_init_spacing=float(config.get("head_margin", 6.0)), **fields)

  def phases(self):
    return tuple(dataclasses.replace(p, trains=("encoder", "decoder", "cluster_heads"))
                 if p.name == "recon" else p for p in super().phases())

  def default_hparams(self):
    return dict(super().default_hparams(), head_margin=6.0, head_weight=1.0)

  def networks(self):
    return {**super().networks(),
            "cluster_heads": (ClusterHeads(self.num_categories, self.latent_dim,
                                           self.head_init_spacing), ((2, self.num_categories),))}

  def decoder_input_dim(self):
    return self.latent_dim

  def representation(self, params, y, z):
    """r = y·W_c + z."""
    return self.apply("cluster_heads", params, {}, y, train=False)[0] + z

  def recon_regularizer(self, inputs, params, heads):
    del heads
    hp = inputs.hparams
    loss, min_dist = head_hinge(params["cluster_heads"]["heads"], hp["head_margin"])
    return hp["head_weight"] * loss, {"head_penalty": loss,
                                                 "min_head_distance": min_dist}
