"""The autoencoder family: encoder, decoder, prior, posterior, reconstruction loss.

The base of the AAE, the WAE and the VAE (and later VAE-GAN). It adds to
:class:`aaejax.core.Model` the two networks every autoencoder has, the prior
p(z), the posterior (deterministic, or a reparameterised gaussian q(z|x)), the
reconstruction loss, inference (:meth:`Autoencoder.encode`, ``decode``,
``generate``) and :meth:`Autoencoder.from_config`, which every family member
extends with its own fields.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from aaejax import core, priors as priors_lib
from aaejax.nets import networks

POSTERIORS = ("deterministic", "gaussian")


def build_networks(config, image_shape, gaussian: bool, num_categories: int = 0):
  """(encoder, decoder) of ``config.network`` ("mlp" or "conv") for ``image_shape``; the
  encoder with dropout ``config.encoder_dropout`` (default 0) when training."""
  latent = config.latent_dim
  dtype = networks.compute_dtype(config.get("compute_dtype", "float32"))
  dropout = float(config.get("encoder_dropout", 0.0))
  if config.get("network", "mlp") == "mlp":
    hidden = tuple(config.get("hidden", networks.AAE_HIDDEN))
    return (networks.MLPEncoder(latent, hidden, gaussian, num_categories, dtype=dtype,
                                dropout=dropout),
            networks.MLPDecoder(image_shape, hidden, dtype=dtype))
  if config.network != "conv":
    raise ValueError(f"unknown network {config.network!r}; expected 'mlp' or 'conv'.")
  channels = tuple(config.get("conv_channels", networks.WAE_CHANNELS))
  kernel = config.get("conv_kernel", 4 if image_shape[0] == 28 else 5)
  bn = config.get("batch_norm", True)
  # The WAE paper's decoders mirror the encoder: 7x7 -> 28x28 on MNIST (3 widths),
  # 8x8 -> 64x64 on CelebA (4 widths).
  default_dec = tuple(reversed(channels))[:len(channels) - (image_shape[0] == 28)]
  dec_channels = tuple(config.get("decoder_channels", default_dec))
  impl = config.get("conv_impl", "auto")
  return (networks.ConvEncoder(latent, channels, kernel, bn, gaussian, num_categories,
                               dtype=dtype, conv_impl=impl, dropout=dropout),
          networks.ConvDecoder(image_shape, dec_channels, kernel, bn, dtype=dtype,
                               conv_impl=impl))


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Autoencoder(core.Model):
  """Base of the autoencoder family.

  Attributes:
    image_shape: (H, W, C) of the data.
    latent_dim: code dimension d.
    prior: a prior object (see :mod:`aaejax.priors`) or a prior name.
    encoder, decoder: linen modules; default the AAE paper's MLPs (two hidden
      layers of 1000 ReLU units). The encoder returns a dict of heads (see
      :mod:`aaejax.nets.networks`).
    posterior: ``"deterministic"`` (default) or ``"gaussian"`` (reparameterised
      q(z|x) = N(μ(x), σ²(x))).
    recon_loss: ``"bernoulli"`` (default) or ``"gaussian"``.
  """

  image_shape: tuple[int, ...]
  latent_dim: int
  prior: Any = "gaussian"
  encoder: nn.Module | None = None
  decoder: nn.Module | None = None
  posterior: str = "deterministic"
  recon_loss: str = "bernoulli"

  def __post_init__(self):
    if len(self.image_shape) != 3:
      raise ValueError(f"image_shape must be (H, W, C), got {self.image_shape}.")
    if self.posterior not in POSTERIORS:
      raise ValueError(f"unknown posterior {self.posterior!r}; expected one of {POSTERIORS}.")
    if self.recon_loss not in networks.RECON_LOSSES:
      raise ValueError(
          f"unknown recon_loss {self.recon_loss!r}; expected one of {networks.RECON_LOSSES}.")
    prior = priors_lib.get(self.prior, dim=self.latent_dim)
    if prior.dim != self.latent_dim:
      raise ValueError(f"prior dim {prior.dim} != latent_dim {self.latent_dim}.")
    set_ = lambda k, v: object.__setattr__(self, k, v)
    set_("prior", prior)
    set_("image_shape", tuple(self.image_shape))
    if self.encoder is None:
      set_("encoder", networks.MLPEncoder(self.latent_dim, gaussian=self.posterior == "gaussian",
                                          num_categories=self.encoder_categories(),
                                          dtype=self.dtype))
    if self.decoder is None:
      set_("decoder", networks.MLPDecoder(self.image_shape, dtype=self.dtype))

  @classmethod
  def from_config(cls, config, image_shape, **fields):
    """The model of ``config`` for ``image_shape``; subclasses add their ``fields``."""
    image_shape = tuple(image_shape)
    posterior = fields.pop("posterior", config.get("posterior", "deterministic"))
    prior = priors_lib.get(config.prior, dim=config.latent_dim,
                           **dict(config.get("prior_options", {}) or {}))
    encoder, decoder = build_networks(config, image_shape, posterior == "gaussian",
                                      fields.get("num_categories", 0))
    return cls(image_shape=image_shape, latent_dim=config.latent_dim, prior=prior,
               encoder=encoder, decoder=decoder, posterior=posterior,
               recon_loss=config.get("recon_loss", "bernoulli"), **core.optimizer_fields(config),
               **fields)

  # ---- what family members customise ---------------------------------------------------

  def encoder_categories(self) -> int:
    """Size of the encoder's categorical head y (0: none)."""
    return 0

  def decoder_input_dim(self) -> int:
    return self.latent_dim

  def capabilities(self):
    return frozenset({core.ENCODE, core.DECODE, core.RECONSTRUCT, core.GENERATE, core.PRIOR})

  def networks(self):
    return {"encoder": (self.encoder, ((2, *self.image_shape),)),
            "decoder": (self.decoder, ((2, self.decoder_input_dim()),))}

  # ---- building blocks of train steps ------------------------------------------------------

  def inputs(self, batch: Mapping[str, jax.Array], key: str = "image") -> jax.Array:
    """``batch[key]`` as float32 images in [0, 1] (checked: :func:`aaejax.core.image_inputs`)."""
    if not isinstance(batch, Mapping) or key not in batch:
      keys = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
      raise ValueError(f"{type(self).__name__} needs batch[{key!r}] (images of shape "
                       f"(n, {', '.join(map(str, self.image_shape))})); got {keys}.")
    return core.image_inputs(batch[key], self.image_shape, key)

  def encode_heads(self, params, model_state, x, rng, train=True):
    """Encoder heads with ``"z"`` sampled from q(z|x) (its mean if deterministic); an encoder
    with dropout draws it from ``fold_in(rng, 1)``."""
    heads, model_state = self.apply("encoder", params, model_state, x, train=train,
                                    rngs={"dropout": jax.random.fold_in(rng, 1)})
    if self.posterior == "gaussian":
      heads = dict(heads, z_mean=heads["z"], z=heads["z"] + jnp.exp(0.5 * heads["z_logvar"])
                   * jax.random.normal(rng, heads["z"].shape, heads["z"].dtype))
    return heads, model_state

  def reconstruction(self, params, model_state, x, z):
    """Mean reconstruction loss of ``x`` from decoder input ``z`` (not yet weighted)."""
    logits, model_state = self.apply("decoder", params, model_state, z, train=True)
    return jnp.mean(networks.reconstruction_loss(logits, x, self.recon_loss)), model_state

  def sample_prior(self, state, rng, n, labels=None):
    return state.hparams["prior_scale"] * self.prior.sample(rng, core.check_count(n), labels)

  def latent_critic_logits(self, state, params, z, rng, cond=None, name="critic"):
    """Logits of latent critic ``name`` on ``z`` plus ``critic_noise`` gaussian noise
    (plus :meth:`critic_logit_offset` of the noisy codes, if any)."""
    z = z + state.hparams["critic_noise"] * jax.random.normal(rng, z.shape, z.dtype)
    logits = self.apply(name, params, {}, z, cond, train=True,
                        rngs={"dropout": jax.random.fold_in(rng, 1)})[0]
    offset = self.critic_logit_offset(state, z)
    return logits if offset is None else logits + offset

  def critic_logit_offset(self, state, z) -> jax.Array | None:
    """A known term added to the latent critics' logits of codes ``z`` (none by default)."""
    del state, z
    return None

  # ---- inference ---------------------------------------------------------------------------

  def encode(self, state: core.TrainState, images: jax.Array) -> dict[str, jax.Array]:
    """Encoder heads in inference mode (``"z"`` is the posterior mean).

    ``images``: ``(n, *image_shape)``, uint8 or float in [0, 1] (see
    :func:`aaejax.core.image_inputs`: shapes and dtypes checked always, values when concrete).
    """
    x = core.image_inputs(images, self.image_shape, "images", where=None)
    heads, _ = self.apply("encoder", state.params, state.model_state, x, train=False)
    return heads

  def latent(self, heads: Mapping[str, jax.Array]) -> jax.Array:
    """The code plotted and evaluated (the representation of x)."""
    return heads["z"]

  def decoder_input(self, heads: Mapping[str, jax.Array], labels: jax.Array | None = None
                    ) -> jax.Array:
    """Decoder input from encoder heads (inference); ``labels`` serve label-conditioned decoders."""
    del labels
    return heads["z"]

  def decode(self, state: core.TrainState, z: jax.Array) -> jax.Array:
    """Mean images in [0, 1] for decoder inputs ``z``, float ``(n, decoder_input_dim())``."""
    z = core.check_codes(z, self.decoder_input_dim())
    logits, _ = self.apply("decoder", state.params, state.model_state, z, train=False)
    return networks.mean_images(logits)

  def reconstruct(self, state, images, labels=None) -> jax.Array:
    """Mean reconstructions in [0, 1] of ``images`` (through the posterior mean)."""
    return self.decode(state, self.decoder_input(self.encode(state, images), labels))

  def reconstruction_loss(self, state, batch) -> jax.Array:
    """(n,) reconstruction loss of ``batch["image"]`` through the posterior mean."""
    self.check_batch(batch)
    heads = self.encode(state, batch["image"])
    logits, _ = self.apply("decoder", state.params, state.model_state,
                           self.decoder_input(heads, batch.get("label")), train=False)
    return networks.reconstruction_loss(logits, self.inputs(batch), self.recon_loss)

  def generate(self, state: core.TrainState, rng: jax.Array, n: int) -> jax.Array:
    """Images decoded from n prior samples (n a positive int)."""
    return self.decode(state, self.sample_prior(state, rng, core.check_count(n)))


def critic_networks(sizes: Mapping[str, int], hidden: Sequence[int], cond: int = 0,
                    dtype: Any = jnp.float32, dropout: float = 0.0):
  """Latent critics: name -> (``networks.Critic(hidden, dtype, dropout)``, example input
  shapes)."""
  nets = {}
  for name, size in sizes.items():
    shapes = ((2, size),) + (((2, cond),) if cond else ())
    nets[name] = (networks.Critic(tuple(hidden), dtype, dropout), shapes)
  return nets
