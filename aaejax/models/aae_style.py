"""Style/content AAEs and adversarial feature disentanglement (Makhzani et al. 2015, Fig. 6).

The decoder gets [z, content]; the critic matches z to the (gaussian) prior, so z is free to
hold only the style. Two things can let the digit leak into z anyway, and each has a remedy:

- **The label adversary** (``label_adversary``; hparam ``label_adversary_weight``): a
  classifier A(z) that tries to read the label from z, trained in its own phase, and a term
  in the reconstruction phase that trains the encoder to defeat it. The encoder's term is
  the cross-entropy of A(z) to the *uniform* distribution over the classes (A confused),
  not −CE(A(z), label): the latter is unbounded (the encoder can win by making A
  confidently wrong, which still tells the digit) while the uniform target is reached
  exactly when z tells A nothing. Alternating updates, as the AAE's critic/generator pair.
- **The two-encoder form** (``content_encoder``): a content encoder C(x) (class logits,
  trained on the labels) and the style encoder (z) feed one decoder [z, softmax(C(x))];
  the adversary, if on, sits on the style code. No label is needed at test time: C(x)
  classifies (capability ``classify``).

One step, each phase as the previous left the networks:

1. ``recon`` (encoder, decoder [, content encoder]): recon_weight · L_rec(x, dec([z, c]))
   [+ content_weight · CE(C(x), label)] [+ label_adversary_weight · CE(A(z), uniform)];
2. ``critic``, 3. ``gen``: the AAE's pair on z (:mod:`aaejax.models.aae`);
4. ``label_adversary`` (A, if on): CE(A(z), label), z the codes the critic pair saw (the
   three phases share one encoder pass).

Metric ``eval/z_label_knn_accuracy``: 5-NN digit accuracy of test codes z from training
codes (0.1: z tells the digit no better than chance; 1: z holds it).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from aaejax import core, evaluation
from aaejax.nets import networks
from aaejax.models.aae import AAE, require_labels


def confusion_loss(logits: jax.Array) -> jax.Array:
  """Mean cross-entropy of softmax(logits) to the uniform distribution: log K when A is
  uniform (its minimum), large when A is confident of any class.

  >>> round(float(confusion_loss(jnp.zeros((3, 10)))), 4) == round(float(jnp.log(10.0)), 4)
  True
  """
  return -jnp.mean(jnp.mean(jax.nn.log_softmax(logits), axis=-1))


def _z_label_knn(ctx) -> dict[str, float]:
  """5-NN digit accuracy on z (the shared kNN evaluator, under the style models' name)."""
  out = evaluation.REGISTRY["knn_accuracy"].fn(ctx)
  return {"eval/z_label_knn_accuracy": out["eval/knn_accuracy"]} if out else {}


EVALUATORS = (evaluation.Evaluator("z_label_knn_accuracy", frozenset({core.ENCODE}), _z_label_knn,
                                   applies=evaluation.labelled),)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class StyleAAE(AAE):
  """Style/content disentanglement (Fig. 6): the decoder gets [z, one-hot(label)].

  The label tells the decoder the digit, so the code z, matched to the
  (gaussian) prior by the critic, is free to hold only the style. Training needs
  every example's label.

  Attributes:
    num_classes: size of the label one-hot.
    label_adversary: declare the label adversary A(z) and its phase (the module docstring);
      its strength is the hparam ``label_adversary_weight`` (0 keeps A training but
      leaves the encoder alone).
    adversary_hidden: A's hidden layers.
    content_encoder: the two-encoder form: the content slot of the decoder input is
      softmax(C(x)) of a second encoder trained on the labels, not one-hot(label).

  Example: the adversary is one more declared phase.

    >>> model = StyleAAE(image_shape=(28, 28, 1), latent_dim=4, label_adversary=True)
    >>> [p.name for p in model.phases()]
    ['recon', 'critic', 'gen', 'label_adversary']
  """

  num_classes: int = 10
  label_adversary: bool = False
  adversary_hidden: Sequence[int] = (256, 256)
  content_encoder: bool = False

  @classmethod
  def from_config(cls, config, image_shape, **fields):
    weight = float(config.get("label_adversary_weight", 0.0))
    return super().from_config(
        config, image_shape, num_classes=int(config.get("num_classes", 10)),
        label_adversary=bool(config.get("label_adversary", weight > 0)),
        adversary_hidden=tuple(config.get("adversary_hidden", (256, 256))),
        content_encoder=bool(config.get("content_encoder", False)), **fields)

  def capabilities(self):
    caps = super().capabilities() | {core.STYLE}
    return caps | {core.CLASSIFY} if self.content_encoder else caps

  def evaluators(self):
    return EVALUATORS

  def decoder_input_dim(self):
    return self.latent_dim + self.num_classes

  def label_fields(self):
    return {"label": (self.num_classes, False)}

  # ---- networks and phases -------------------------------------------------------------

  def networks(self):
    nets = super().networks()
    if self.label_adversary:
      nets["label_adversary"] = (networks.MLP(tuple(self.adversary_hidden), self.num_classes,
                                              dtype=self.dtype), ((2, self.latent_dim),))
    if self.content_encoder:
      nets["content_encoder"] = (networks.MLPEncoder(self.num_classes, dtype=self.dtype),
                                 ((2, *self.image_shape),))
    return nets

  def phases(self):
    recon, critic, gen = super().phases()
    if self.content_encoder:
      recon = dataclasses.replace(recon, trains=recon.trains + ("content_encoder",))
    phases = (recon, critic, gen)
    if self.label_adversary:
      phases += (core.Phase("label_adversary", ("label_adversary",), self.loss_label_adversary,
                            forward=gen.forward),)
    return phases

  def default_hparams(self):
    hp = super().default_hparams()
    if self.label_adversary:
      hp.update(lr_label_adversary=1e-3, label_adversary_weight=1.0)
    if self.content_encoder:
      hp["content_weight"] = 1.0
    return hp

  # ---- the step --------------------------------------------------------------------------

  def prepare(self, state, batch, rng):
    """The AAE's step inputs; ``batch["label"]`` (integers in [0, num_classes)) is required."""
    require_labels(self, batch, "label")
    return super().prepare(state, batch, rng)

  def encode_heads(self, params, model_state, x, rng, train=True):
    heads, model_state = super().encode_heads(params, model_state, x, rng, train)
    if self.content_encoder:
      content, model_state = self.apply("content_encoder", params, model_state, x, train=train)
      heads = dict(heads, y_logits=content["z"])
    return heads, model_state

  def recon_regularizer(self, inputs, params, heads):
    """The content encoder's cross-entropy and the encoder's adversary-confusion term."""
    hp, labels = inputs.hparams, inputs.inputs["labels"]
    loss, metrics = jnp.zeros(()), {}
    if self.content_encoder:
      ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(heads["y_logits"], labels))
      loss, metrics["content_loss"] = loss + hp["content_weight"] * ce, ce
    if self.label_adversary:
      logits, _ = self.apply("label_adversary", params, {}, heads["z"], train=True)
      confusion = confusion_loss(logits)
      loss = loss + hp["label_adversary_weight"] * confusion
      metrics["adversary_confusion_loss"] = confusion
    return loss, metrics

  def loss_label_adversary(self, inputs, params, codes):
    """Phase 4: CE(A(z), label) on the codes the critic pair saw (no gradient to z)."""
    z = jax.lax.stop_gradient(codes["critic"])
    logits, _ = self.apply("label_adversary", params, {}, z, train=True)
    labels = inputs.inputs["reg"]["label"]
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    acc = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    return loss, ({"label_adversary_loss": loss, "label_adversary_acc": acc},
                  inputs.state.model_state)

  # ---- inference -------------------------------------------------------------------------

  def encode(self, state, images):
    heads = super().encode(state, images)
    if self.content_encoder:
      x = core.image_inputs(images, self.image_shape, "images", where=None)
      content, _ = self.apply("content_encoder", state.params, state.model_state, x,
                              train=False)
      heads = dict(heads, y_logits=content["z"])
    return heads

  def classify(self, state, images):
    """(n, num_classes) logits of the content encoder (two-encoder form only)."""
    if not self.content_encoder:
      raise ValueError("StyleAAE classifies only in the two-encoder form (content_encoder).")
    return self.encode(state, images)["y_logits"]

  def decoder_input(self, heads, labels=None):
    """[z, content]: content = softmax(C(x)) in the two-encoder form (``labels`` unused),
    else one-hot(``labels``), integers in [0, num_classes), one per code."""
    if self.content_encoder and "y_logits" in heads:
      return jnp.concatenate([heads["z"], jax.nn.softmax(heads["y_logits"])], axis=-1)
    if labels is None:
      raise ValueError("StyleAAE's decoder is conditioned on the label: pass labels.")
    labels = core.check_labels(labels, self.num_classes, "labels", where=None,
                               n=heads["z"].shape[0])
    return jnp.concatenate([heads["z"], jax.nn.one_hot(labels, self.num_classes)], axis=-1)

  def decode_with_labels(self, state, z, labels):
    """Images decoded from style codes ``z`` (n, latent_dim) and class ``labels`` (n,)."""
    z = core.check_codes(z, self.latent_dim)
    return self.decode(state, self.decoder_input({"z": z}, labels))

  def generate(self, state, rng, n):
    """Images decoded from prior codes and uniformly drawn classes."""
    n = core.check_count(n)
    z_rng, y_rng = jax.random.split(rng)
    labels = jax.random.randint(y_rng, (n,), 0, self.num_classes)
    return self.decode_with_labels(state, self.sample_prior(state, z_rng, n), labels)
