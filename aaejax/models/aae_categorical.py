"""Categorical AAEs (Makhzani et al. 2015, Sec. 5–6): semi-supervised classification and
unsupervised clustering.

The encoder outputs y = softmax(y_logits), matched to a uniform categorical, and z, matched
to a gaussian; the decoder gets [z, y]. With labels, a cross-entropy phase on a labelled
mini-batch trains q(y|x) (Fig. 8, Table 2); without, y holds ``num_clusters`` categories
(Fig. 9). The dimensionality-reduction AAE (:mod:`aaejax.models.aae_dimreduction`) builds on
:class:`CategoricalAAE`.

One step (:meth:`AAE.train_step <aaejax.models.aae.AAE.train_step>`), each phase seeing
the networks as the previous phase left them; r(x) is the decoder input, c the critic's
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

The labelled subset (``num_labeled`` class-balanced examples) is the data stream
``"labeled"`` (:class:`aaejax.core.Stream`); the classification and clustering evaluators and
the cluster-head figures are the shared ones the models' capabilities pick
(:mod:`aaejax.evaluation`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from aaejax import core, data
from aaejax.models.aae import AAE, check_num_labeled


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
      check_num_labeled(self.num_labeled, self.num_classes)
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
                                   data.labeled_subset(self.num_labeled, self.num_classes))}

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
    heads, ms = self.apply("encoder", params, inputs.state.model_state, x, train=True,
                           rngs={"dropout": jax.random.fold_in(inputs.rng, 6)})  # its own key
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
