"""The GAN family and the GAN (Goodfellow et al. 2014; DCGAN nets, Radford et al. 2016).

:class:`AdversarialGenerator` is the family's base: a generator G from noise
z ~ p(z) to images and a critic D on images (later InfoGAN, BiGAN, Triple-GAN
add a Q head, an encoder, a classifier). The GAN's step is two phases, each one
Adam update of its own network:

1. ``critic`` (D): −log D(x) − log(1 − D(G(z))) on the batch x and as many fakes
   (G's output held fixed);
2. ``gen`` (G): gen_weight · −log D(G(z')) on fresh noise z', with D as phase 1
   left it (the non-saturating loss).

D sees its inputs, real and fake, with gaussian "instance noise" of std
``critic_noise`` added (Sønderby et al. 2017; Arjovsky & Bottou 2017): it keeps an
image critic from separating the two distributions perfectly early on, where its
gradient would vanish for G (the latent critics' ``critic_noise`` of the AAE).

Images are in [0, 1] on both sides: G's output is the sigmoid mean of its
logits, as the autoencoders' decoders. With the AAE paper's MLP sizes (two hidden
layers of 1000 units, LeakyReLU 0.2; batch norm in the generator's second layer)
or DCGAN's conv nets (batch norm, stride-2 (transposed) convs, 28×28 or 64×64).
Without batch norm in the MLP generator the critic won within 50 steps and G
collapsed onto one image (BENCHMARKS.md has the screen).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aaejax import core, penalties, priors as priors_lib
from aaejax.nets import networks

DCGAN_GEN_CHANNELS = {28: (256, 128, 64), 64: (512, 256, 128, 64)}
DCGAN_CRITIC_CHANNELS = {28: (64, 128), 64: (64, 128, 256, 512)}


def build_gan_networks(config, image_shape):
  """(generator, critic) of ``config.network`` ("mlp" or "conv") for ``image_shape``."""
  dtype = networks.compute_dtype(config.get("compute_dtype", "float32"))
  if config.get("network", "mlp") == "mlp":
    hidden = tuple(config.get("hidden", networks.AAE_HIDDEN))
    return (networks.MLPDecoder(image_shape, hidden, negative_slope=0.2,
                                batch_norm=config.get("batch_norm", True), dtype=dtype),
            networks.ImageCritic(tuple(config.get("critic_hidden", networks.AAE_HIDDEN)),
                                 dropout=config.get("critic_dropout", 0.0),
                                 minibatch_std=config.get("minibatch_std", 0), dtype=dtype))
  if config.network != "conv":
    raise ValueError(f"unknown network {config.network!r}; expected 'mlp' or 'conv'.")
  side = image_shape[0]
  gen = tuple(config.get("gen_channels", ()) or DCGAN_GEN_CHANNELS.get(side, ()))
  critic = tuple(config.get("critic_channels", ()) or DCGAN_CRITIC_CHANNELS.get(side, ()))
  if not gen or not critic:
    raise ValueError(f"DCGAN nets are defined for 28x28 and 64x64 images, got {side}x{side}; "
                     "set config.gen_channels and config.critic_channels.")
  kernel = config.get("conv_kernel", 4)
  bn = config.get("batch_norm", True)
  impl = config.get("conv_impl", "auto")
  return (networks.ConvDecoder(image_shape, gen, kernel, bn, dtype=dtype, conv_impl=impl),
          networks.ConvCritic(critic, kernel, bn, dtype=dtype, conv_impl=impl,
                              dropout=config.get("critic_dropout", 0.0)))


def noisy_critic(model, state, params, model_state, images, rng, *extra):
  """``model``'s network ``"critic"`` in training mode on ``images`` plus gaussian instance
  noise of std ``hparams["critic_noise"]`` (and on ``extra`` inputs as they are), with a
  dropout rng: ``(output, model_state)``. Shared by the image critics of the GAN family and
  its relatives (BiGAN's pair critic, VAE-GAN's feature critic)."""
  noise_rng, dropout_rng = jax.random.split(rng)
  noisy = images + state.hparams["critic_noise"] * jax.random.normal(noise_rng, images.shape,
                                                                     images.dtype)
  return model.apply("critic", params, model_state, noisy, *extra, train=True,
                     rngs={"dropout": dropout_rng})


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class AdversarialGenerator(core.Model):
  """Base of the GAN family: generator from noise, critic on images.

  Attributes:
    image_shape: (H, W, C) of the data.
    latent_dim: noise dimension.
    prior: the noise distribution p(z) (a prior object or name; default N(0, I)).
    generator: linen module, noise -> image logits (default the AAE paper's MLP sizes
      with LeakyReLU and batch norm).
    critic: linen module, images in [0, 1] -> one logit each (default an MLP).
  """

  image_shape: tuple[int, ...]
  latent_dim: int
  prior: Any = "gaussian"
  generator: nn.Module | None = None
  critic: nn.Module | None = None

  def __post_init__(self):
    if len(self.image_shape) != 3:
      raise ValueError(f"image_shape must be (H, W, C), got {self.image_shape}.")
    set_ = lambda k, v: object.__setattr__(self, k, v)
    set_("image_shape", tuple(self.image_shape))
    prior = priors_lib.get(self.prior, dim=self.latent_dim)
    if prior.dim != self.latent_dim:
      raise ValueError(f"prior dim {prior.dim} != latent_dim {self.latent_dim}.")
    set_("prior", prior)
    if self.generator is None:
      set_("generator", networks.MLPDecoder(self.image_shape, negative_slope=0.2,
                                            batch_norm=True, dtype=self.dtype))
    if self.critic is None:
      set_("critic", networks.ImageCritic(dtype=self.dtype))

  @classmethod
  def from_config(cls, config, image_shape, **fields):
    image_shape = tuple(image_shape)
    generator, critic = build_gan_networks(config, image_shape)
    prior = priors_lib.get(config.prior, dim=config.latent_dim,
                           **dict(config.get("prior_options", {}) or {}))
    fields = {"generator": generator, "critic": critic, **fields}  # a family may bring its own
    return cls(image_shape=image_shape, latent_dim=config.latent_dim, prior=prior,
               **core.optimizer_fields(config), **fields)

  def networks(self):
    return {"generator": (self.generator, ((2, self.latent_dim),)),
            "critic": (self.critic, ((2, *self.image_shape),))}

  def capabilities(self):
    return frozenset({core.GENERATE, core.DECODE, core.PRIOR})

  def decoder_input_dim(self) -> int:
    return self.latent_dim

  def sample_prior(self, state, rng, n, labels=None):
    return state.hparams["prior_scale"] * self.prior.sample(rng, n, labels)

  def fake_images(self, params, model_state, z, train=True):
    """G(z) in [0, 1] and the updated model state."""
    logits, model_state = self.apply("generator", params, model_state, z, train=train)
    return networks.mean_images(logits), model_state

  def decode(self, state, z):
    """G(z) in [0, 1] (inference mode) of float noise ``z`` of shape (n, latent_dim)."""
    z = core.check_codes(z, self.latent_dim)
    return self.fake_images(state.params, state.model_state, z, train=False)[0]

  def generate(self, state, rng, n):
    return self.decode(state, self.sample_prior(state, rng, core.check_count(n)))


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class GAN(AdversarialGenerator):
  """The GAN with the non-saturating generator loss.

  Hparams (all sweepable): ``lr_gen``, ``lr_critic`` (Adam), ``gen_weight``,
  ``prior_scale`` (multiplies the noise), ``critic_noise`` (std of the instance noise
  on the critic's inputs; 0 disables it).

  Example:

    >>> import jax, jax.numpy as jnp
    >>> from aaejax.nets import networks
    >>> from aaejax.models import GAN
    >>> model = GAN(image_shape=(28, 28, 1), latent_dim=8,
    ...             generator=networks.MLPDecoder((28, 28, 1), (32,)),
    ...             critic=networks.ImageCritic((32,)))
    >>> state = model.init(jax.random.key(0))
    >>> batch = {"image": jnp.zeros((8, 28, 28, 1), jnp.uint8)}
    >>> state, metrics = jax.jit(model.train_step)(state, batch, jax.random.key(1))
    >>> sorted(metrics)
    ['critic_acc', 'critic_loss', 'gen_loss']
    >>> model.generate(state, jax.random.key(2), 3).shape
    (3, 28, 28, 1)
  """

  def phases(self):
    return (core.Phase("critic", ("critic",), self.loss_critic),
            core.Phase("gen", ("generator",), self.loss_gen, lr_field="learning_rate"))

  def default_hparams(self):
    return {"lr_gen": 2e-4, "lr_critic": 2e-4, "gen_weight": 1.0, "prior_scale": 1.0,
            "critic_noise": 0.0}

  def critic_logits(self, state, params, model_state, images, rng):
    """D's logits of ``images`` plus ``critic_noise`` gaussian noise, and the new model state."""
    return noisy_critic(self, state, params, model_state, images, rng)

  def prepare(self, state, batch, rng):
    return {"x": core.image_inputs(batch["image"], self.image_shape),
            "keys": jax.random.split(rng, 5)}

  def loss_critic(self, inputs, params, shared=None):
    """Phase 1: −log D(x) − log(1 − D(G(z))), G's output held fixed."""
    del shared
    state, x, keys = inputs.state, inputs.inputs["x"], inputs.inputs["keys"]
    n = x.shape[0]
    z = self.sample_prior(state, keys[0], n)
    fake, model_state = self.fake_images(params, state.model_state, z)
    fake = jax.lax.stop_gradient(fake)
    if "critic" in model_state:  # batch norm: real and fake batches apart, as in DCGAN
      real_l, ms = self.critic_logits(state, params, model_state, x, keys[2])
      fake_l, ms = self.critic_logits(state, params, ms, fake, keys[3])
    else:  # one pass over both
      logits, ms = self.critic_logits(state, params, model_state, jnp.concatenate([x, fake]),
                                      keys[2])
      real_l, fake_l = logits[:n], logits[n:]
    loss = penalties.critic_loss(real_l, fake_l)
    return loss, ({"critic_loss": loss,
                   "critic_acc": penalties.critic_accuracy(real_l, fake_l)}, ms)

  def loss_gen(self, inputs, params, shared=None):
    """Phase 2: gen_weight · −log D(G(z')) on fresh noise, D as phase 1 left it."""
    del shared
    state, keys = inputs.state, inputs.inputs["keys"]
    n = inputs.inputs["x"].shape[0]
    images, ms = self.fake_images(params, state.model_state,
                                  self.sample_prior(state, keys[1], n))
    logits, ms = self.critic_logits(state, params, ms, images, keys[4])
    loss = penalties.generator_loss(logits)
    return state.hparams["gen_weight"] * loss, ({"gen_loss": loss}, ms)
