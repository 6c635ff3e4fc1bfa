"""BiGAN / ALI (Donahue et al. 2017; Dumoulin et al. 2017): an encoder learnt without ever
being connected to the generator.

An encoder E: x -> z and a generator G: z -> x play against a critic D on (x, z) pairs: real
pairs (x, E(x)) from the data against fake pairs (G(z), z) from the prior. At the game's
optimum E and G invert each other, so E(x) is a representation of x learnt with no
reconstruction loss. Two phases per step, each one Adam update:

1. ``critic`` (D): −log D(x, E(x)) − log(1 − D(G(z), z)), E and G held fixed;
2. ``gen`` (E and G together, one optimizer state over both): the non-saturating form with
   the labels swapped, gen_weight · (−log(1 − D(x, E(x))) − log D(G(z'), z')), D as phase 1
   left it.

``stochastic_encoder=True`` is ALI's encoder: E outputs a gaussian (mean, log-variance) and
z = μ + σ·ε is drawn in the step (reparameterised); the representation evaluated is μ.
The default prior is the BiGAN paper's uniform(−1, 1)^50 for MNIST.

Signature metrics: ``eval/knn_accuracy`` of E(x) (the shared evaluator; the BiGAN paper
reports about 97 % 1-NN accuracy with its setup), ``eval/cycle_label_accuracy``: how often
G(E(x)) keeps the digit of x, as the project's digit classifier judges (test set);
``bigan_pairs.png``: x beside G(E(x)).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aaejax import core, evaluation, penalties
from aaejax.data import batching
from aaejax.evaluation import digits, feature_nets, figures, plots
from aaejax.models import gan
from aaejax.nets import networks

CYCLE_EXAMPLES = 10_000  # test images whose cycle G(E(x)) the digit classifier judges


class JointCritic(nn.Module):
  """D on (x, z) pairs: [flattened x, z] -> LeakyReLU MLP (optional dropout) -> one logit."""

  hidden: Sequence[int] = networks.AAE_HIDDEN
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, z, train: bool = True):
    h = jnp.concatenate([x.reshape(x.shape[0], -1), z.astype(x.dtype)], -1)
    return networks.MLP(self.hidden, 1, 0.2, self.dropout, dtype=self.dtype,
                        name="mlp")(h, train)[:, 0]


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class BiGAN(gan.AdversarialGenerator):
  """Encoder E, generator G and a critic on (x, z) pairs.

  Attributes (besides the GAN family's):
    encoder: linen module, images -> {"z"} (or {"z", "z_logvar"} with ``stochastic_encoder``).
    critic: a :class:`JointCritic`.
    stochastic_encoder: ALI's gaussian encoder, sampled in the step.

  Hparams (all sweepable): ``lr_gen`` (E and G), ``lr_critic``, ``gen_weight``,
  ``prior_scale``, ``critic_noise`` (gaussian noise on the critic's image input).

  Example:

    >>> import jax, jax.numpy as jnp
    >>> from aaejax.nets import networks
    >>> from aaejax.models import BiGAN
    >>> from aaejax.models.bigan import JointCritic
    >>> model = BiGAN(image_shape=(28, 28, 1), latent_dim=4, prior="uniform",
    ...               generator=networks.MLPDecoder((28, 28, 1), (32,)),
    ...               encoder=networks.MLPEncoder(4, (32,)), critic=JointCritic((32,)))
    >>> state = model.init(jax.random.key(0))
    >>> batch = {"image": jnp.zeros((8, 28, 28, 1), jnp.uint8)}
    >>> state, m = jax.jit(model.train_step)(state, batch, jax.random.key(1))
    >>> sorted(m)
    ['critic_acc', 'critic_loss', 'gen_loss']
    >>> model.encode(state, batch["image"])["z"].shape, model.reconstruct(state, batch["image"]).shape
    ((8, 4), (8, 28, 28, 1))
  """

  encoder: nn.Module | None = None
  stochastic_encoder: bool = False

  def __post_init__(self):
    if self.critic is None:
      object.__setattr__(self, "critic", JointCritic(dtype=self.dtype))
    if self.encoder is None:
      object.__setattr__(self, "encoder", networks.MLPEncoder(
          self.latent_dim, gaussian=self.stochastic_encoder, dtype=self.dtype))
    super().__post_init__()

  @classmethod
  def from_config(cls, config, image_shape, **fields):
    image_shape = tuple(image_shape)
    dtype = networks.compute_dtype(config.get("compute_dtype", "float32"))
    stochastic = bool(config.get("stochastic_encoder", False))
    hidden = tuple(config.get("encoder_hidden", ()) or config.get("hidden", networks.AAE_HIDDEN))
    if config.get("network", "mlp") == "conv":
      encoder = networks.ConvEncoder(config.latent_dim, kernel_size=config.get("conv_kernel", 4),
                                     gaussian=stochastic, dtype=dtype,
                                     conv_impl=config.get("conv_impl", "auto"))
    else:
      encoder = networks.MLPEncoder(config.latent_dim, hidden, gaussian=stochastic, dtype=dtype)
    critic = JointCritic(tuple(config.get("critic_hidden", networks.AAE_HIDDEN)),
                         dropout=config.get("critic_dropout", 0.0), dtype=dtype)
    return super().from_config(config, image_shape, encoder=encoder, critic=critic,
                               stochastic_encoder=stochastic, **fields)

  def networks(self):
    return {"generator": (self.generator, ((2, self.latent_dim),)),
            "encoder": (self.encoder, ((2, *self.image_shape),)),
            "critic": (self.critic, ((2, *self.image_shape), (2, self.latent_dim)))}

  def phases(self):
    return (core.Phase("critic", ("critic",), self.loss_critic),
            core.Phase("gen", ("encoder", "generator"), self.loss_gen, lr_field="learning_rate"))

  def default_hparams(self):
    return {"lr_gen": 2e-4, "lr_critic": 2e-4, "gen_weight": 1.0, "prior_scale": 1.0,
            "critic_noise": 0.0}

  def capabilities(self):
    return frozenset({core.ENCODE, core.DECODE, core.RECONSTRUCT, core.GENERATE, core.PRIOR})

  # ---- the step ------------------------------------------------------------------------

  def prepare(self, state, batch, rng):
    return {"x": core.image_inputs(batch["image"], self.image_shape),
            "keys": jax.random.split(rng, 6)}

  def encoded(self, params, model_state, x, rng, train=True):
    """E(x) as the step uses it (a draw of ALI's gaussian), and the new model state."""
    heads, model_state = self.apply("encoder", params, model_state, x, train=train)
    z = heads["z"]
    if self.stochastic_encoder:
      z = z + jnp.exp(0.5 * heads["z_logvar"]) * jax.random.normal(rng, z.shape, z.dtype)
    return z, model_state

  def pair_logits(self, state, params, model_state, x, z, rng):
    """D's logits of the pairs (x + ``critic_noise`` noise, z), and the new model state."""
    return gan.noisy_critic(self, state, params, model_state, x, rng, z)

  def _pairs(self, state, params, ins):
    """Real pairs (x, E(x)) and fake pairs (G(z), z) of ``ins["x"]``, drawn with
    ``ins["keys"][:2]``, and the model state."""
    x, keys = ins["x"], ins["keys"]
    ez, ms = self.encoded(params, state.model_state, x, keys[0])
    z = self.sample_prior(state, keys[1], x.shape[0])
    gx, ms = self.fake_images(params, ms, z)
    return (x, ez), (gx, z), ms

  def _logits(self, state, params, model_state, real, fake, rng):
    n = real[0].shape[0]
    if "critic" in model_state:  # batch norm in D: real and fake apart
      r, ms = self.pair_logits(state, params, model_state, *real, rng)
      f, ms = self.pair_logits(state, params, ms, *fake, jax.random.fold_in(rng, 1))
      return r, f, ms
    logits, ms = self.pair_logits(state, params, model_state,
                                  jnp.concatenate([real[0], fake[0]]),
                                  jnp.concatenate([real[1], fake[1]]), rng)
    return logits[:n], logits[n:], ms

  def loss_critic(self, inputs, params, shared=None):
    """Phase 1: −log D(x, E(x)) − log(1 − D(G(z), z)), E and G held fixed."""
    del shared
    state, ins = inputs.state, inputs.inputs
    real, fake, ms = self._pairs(state, params, ins)
    real, fake = jax.lax.stop_gradient(real), jax.lax.stop_gradient(fake)
    r, f, ms = self._logits(state, params, ms, real, fake, ins["keys"][2])
    loss = penalties.critic_loss(r, f)
    return loss, ({"critic_loss": loss, "critic_acc": penalties.critic_accuracy(r, f)}, ms)

  def loss_gen(self, inputs, params, shared=None):
    """Phase 2 (E and G): gen_weight · (−log(1 − D(x, E(x))) − log D(G(z'), z'))."""
    del shared
    state, ins = inputs.state, inputs.inputs
    keys = ins["keys"]
    real, fake, ms = self._pairs(state, params, {"x": ins["x"], "keys": keys[3:]})
    r, f, ms = self._logits(state, params, ms, real, fake, keys[5])
    loss = penalties.critic_loss(f, r)  # the critic's loss with the labels swapped
    return state.hparams["gen_weight"] * loss, ({"gen_loss": loss}, ms)

  # ---- inference -----------------------------------------------------------------------

  def encode(self, state, images):
    """E's heads in inference mode (``"z"``: ALI's mean)."""
    x = core.image_inputs(images, self.image_shape, "images", where=None)
    heads, _ = self.apply("encoder", state.params, state.model_state, x, train=False)
    return heads

  def latent(self, heads):
    return heads["z"]

  def decoder_input(self, heads, labels=None):
    """G's input for encoder heads: E's code (ALI: its mean)."""
    del labels
    return heads["z"]

  def reconstruct(self, state, images, labels=None):
    """G(E(x)) in [0, 1]: the cycle through the two nets that never met in training."""
    del labels
    return self.decode(state, self.encode(state, images)["z"])

  def reconstruction_loss(self, state, batch):
    """(n,) Bernoulli loss of x against G(E(x)) (nats; BiGAN does not train for it)."""
    self.check_batch(batch)
    x = core.image_inputs(batch["image"], self.image_shape)
    logits, _ = self.apply("generator", state.params, state.model_state,
                           self.encode(state, batch["image"])["z"], train=False)
    return networks.reconstruction_loss(logits, x, "bernoulli")

  def evaluators(self):
    return (evaluation.Evaluator("cycle_label_accuracy", frozenset({core.RECONSTRUCT}),
                                 _cycle_label_accuracy, applies=_labelled_digits,
                                 nets=("digits",)),)

  def figures(self):
    return (figures.Figure("bigan_pairs", frozenset({core.RECONSTRUCT}), _pairs_figure),)


def _labelled_digits(model, config):
  return evaluation.mnist_like(model, config) and evaluation.labelled(model, config)


@functools.partial(jax.jit, static_argnums=0)
def _reconstruct(model, state, images):
  """G(E(x)) of ``images``, chunked over :data:`aaejax.evaluation.EVAL_BATCH`."""
  return batching.chunked(lambda b: model.reconstruct(state, b["image"]), {"image": images},
                          evaluation.EVAL_BATCH)


def cycle_label_accuracy(classifier_params, cycled, labels) -> float:
  """Share of examples whose cycle G(E(x)) (``cycled``) the digit classifier gives the label
  of x (``labels``)."""
  pred = np.argmax(digits.predict_proba(classifier_params, np.asarray(cycled)), -1)
  return float(np.mean(pred == np.asarray(labels)))


def _cycle_label_accuracy(ctx):
  n = min(int(ctx.config.get("cycle_examples", CYCLE_EXAMPLES)), ctx.test["image"].shape[0])
  images, labels = ctx.test["image"][:n], ctx.test["label"][:n]
  cycled = _reconstruct(ctx.model, ctx.state, images)
  params = feature_nets.digit_classifier(ctx.config)
  return {"eval/cycle_label_accuracy": cycle_label_accuracy(params, cycled, labels)}


def _pairs_figure(c):
  x = c.test["image"][:32]
  cycled = np.asarray(_reconstruct(c.model, c.state, x))
  x = np.asarray(x, np.float32) / (255.0 if np.asarray(x).dtype == np.uint8 else 1.0)
  pairs = np.stack([x, cycled], 1).reshape(-1, *x.shape[1:])  # x, G(E(x)), x, G(E(x)), ...
  return [plots.image_grid(c.path("bigan_pairs.png"), pairs, 8,
                           title="x | G(E(x)) pairs (E and G never met in training)")]


__all__ = ["BiGAN", "JointCritic", "cycle_label_accuracy"]
