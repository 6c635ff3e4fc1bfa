"""Variational autoencoder (Kingma & Welling 2014): the whole training math.

q(z|x) = N(μ(x), diag σ²(x)) (the encoder's ``z`` and ``z_logvar`` heads),
p(z) = N(0, s² I) with s = ``prior_scale`` · the prior's std, p(x|z) the
decoder's Bernoulli (or gaussian) likelihood. One phase, ``ae`` (encoder and
decoder), minimises the negative ELBO with a sweepable weight β on the KL
(β = 1 is the VAE, β > 1 the β-VAE):

  recon_weight · E_q[−log p(x|z)] + β · KL(q(z|x) ‖ p(z)),

the expectation estimated with one reparameterised sample, the KL in closed
form (:func:`gaussian_kl`). For evaluation it also gives the importance-weighted
bound (Burda et al. 2016) with k samples,
``−log p(x) ≤ −log (1/k) Σ_i p(x, z_i) / q(z_i|x)`` (:meth:`VAE.log_weights`),
which is tighter than the ELBO (k = 1) and tends to −log p(x) as k grows.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from aaejax import core, priors as priors_lib
from aaejax.nets import networks
from aaejax.models.autoencoder import Autoencoder


def gaussian_kl(mean: jax.Array, logvar: jax.Array, prior_std) -> jax.Array:
  """(n,) KL(N(mean, exp(logvar)) ‖ N(0, prior_std² I)), summed over the last axis.

  Example:

    >>> import jax.numpy as jnp
    >>> float(gaussian_kl(jnp.zeros((1, 3)), jnp.zeros((1, 3)), 1.0)[0])
    0.0
  """
  var_ratio = jnp.exp(logvar) / jnp.square(prior_std)
  return 0.5 * jnp.sum(var_ratio + jnp.square(mean) / jnp.square(prior_std) - 1.0
                       - jnp.log(var_ratio), axis=-1)


def gaussian_log_density(z: jax.Array, mean, logvar) -> jax.Array:
  """log N(z; mean, exp(logvar)), summed over the last axis."""
  return -0.5 * jnp.sum(math.log(2 * math.pi) + logvar
                        + jnp.square(z - mean) * jnp.exp(-logvar), axis=-1)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class VAE(Autoencoder):
  """The VAE; its encoder must have a gaussian posterior (``posterior="gaussian"``).

  Hparams (all sweepable): ``lr_ae`` (Adam), ``beta`` (KL weight),
  ``recon_weight``, ``prior_scale`` (multiplies the prior's std).

  Example:

    >>> import jax, jax.numpy as jnp
    >>> from aaejax.models import VAE
    >>> model = VAE(image_shape=(28, 28, 1), latent_dim=4)
    >>> state = model.init(jax.random.key(0), {"beta": 0.5})
    >>> batch = {"image": jnp.zeros((8, 28, 28, 1), jnp.uint8)}
    >>> state, metrics = jax.jit(model.train_step)(state, batch, jax.random.key(1))
    >>> sorted(metrics)
    ['kl', 'loss', 'neg_elbo', 'recon_loss']
  """

  posterior: str = "gaussian"

  def __post_init__(self):
    if self.posterior != "gaussian":
      raise ValueError(f"the VAE needs posterior='gaussian', got {self.posterior!r}.")
    super().__post_init__()
    if not isinstance(self.prior, priors_lib.Gaussian):
      raise ValueError(f"the VAE's KL is closed-form for a gaussian prior; got {self.prior!r}.")
    if not getattr(self.encoder, "gaussian", True):
      raise ValueError("the VAE's encoder needs a z_logvar head (gaussian=True).")

  @classmethod
  def from_config(cls, config, image_shape, **fields):
    if config.get("posterior", "gaussian") != "gaussian":
      raise ValueError(f"config.posterior={config.posterior!r}: the VAE needs 'gaussian'.")
    return super().from_config(config, image_shape, posterior="gaussian", **fields)

  def phases(self):
    return (core.Phase("ae", ("encoder", "decoder"), self.loss_ae, lr_field="learning_rate"),)

  def default_hparams(self):
    return {"lr_ae": 1e-3, "beta": 1.0, "recon_weight": 1.0, "prior_scale": 1.0}

  def capabilities(self):
    return super().capabilities() | {core.LIKELIHOOD}

  def prior_std(self, state):
    return state.hparams["prior_scale"] * self.prior.std

  def loss_ae(self, inputs, params, shared=None):
    """recon_weight · E_q[−log p(x|z)] + β · KL(q(z|x) ‖ p(z)), one reparameterised sample."""
    del shared
    state, x = inputs.state, self.inputs(inputs.batch)
    heads, ms = self.encode_heads(params, state.model_state, x, inputs.rng)
    recon, ms = self.reconstruction(params, ms, x, heads["z"])
    kl = jnp.mean(gaussian_kl(heads["z_mean"], heads["z_logvar"], self.prior_std(state)))
    loss = state.hparams["recon_weight"] * recon + state.hparams["beta"] * kl
    return loss, ({"loss": loss, "recon_loss": recon, "kl": kl, "neg_elbo": recon + kl}, ms)

  # ---- likelihood (inference mode) -------------------------------------------------------

  def neg_elbo(self, state, images, rng) -> jax.Array:
    """(n,) −ELBO in nats: one-sample reconstruction NLL plus the closed-form KL."""
    return -self.log_weights(state, images, rng, 1)[:, 0]

  def log_weights(self, state, images, rng, k: int) -> jax.Array:
    """(n, k) log p(x, z_i) − log q(z_i|x) for k samples z_i ~ q(z|x) of each image.

    With k = 1 the KL is taken in closed form (the ELBO's usual estimator);
    for k > 1 every term is sampled (the importance weights of the IW bound).
    """
    x = core.image_inputs(images, self.image_shape, "images", where=None)
    k = core.check_count(k, "k")
    heads, _ = self.apply("encoder", state.params, state.model_state, x, train=False)
    mean, logvar = heads["z"], heads["z_logvar"]
    eps = jax.random.normal(rng, (k, *mean.shape), mean.dtype)
    z = mean + jnp.exp(0.5 * logvar) * eps  # (k, n, d)
    logits, _ = self.apply("decoder", state.params, state.model_state,
                           z.reshape(-1, z.shape[-1]), train=False)
    x_k = jnp.broadcast_to(x, (k, *x.shape)).reshape(-1, *x.shape[1:])
    log_px = -networks.reconstruction_loss(logits, x_k, self.recon_loss).reshape(k, -1)
    std = self.prior_std(state)
    if k == 1:
      return (log_px - gaussian_kl(mean, logvar, std)[None]).T
    log_pz = gaussian_log_density(z, 0.0, 2.0 * jnp.log(std))
    log_qz = gaussian_log_density(z, mean, logvar)
    return (log_px + log_pz - log_qz).T
