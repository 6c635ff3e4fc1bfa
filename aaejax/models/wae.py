"""Wasserstein autoencoder (Tolstikhin et al. 2018), WAE-GAN and WAE-MMD.

The autoencoder minimises ``recon_weight·c(x, G(z)) + λ·D_Z(q(z), p(z))`` in one
phase. D_Z is

- ``"mmd_rbf"`` / ``"mmd_imq"``: the authors' MMD estimator
  (:func:`aaejax.penalties.mmd`), RBF under the median heuristic or the
  multiscale inverse multiquadratic kernel with σ_p = ``kernel_scale``;
- ``"gan"``: a latent critic's non-saturating loss; each step first updates the
  critic (prior samples real, codes fake), then the autoencoder. With
  ``critic_log_prior`` (the authors' CelebA option, from the AVB paper), the critic's
  logit is its network's output plus log p(z) of the gaussian prior: the optimal logit
  is log p(z) − log q(z), so the network only has to learn −log q(z).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import math

import jax
import jax.numpy as jnp

from aaejax import core, penalties, priors as priors_lib
from aaejax.models.autoencoder import Autoencoder, critic_networks

WAE_PENALTIES = ("gan", "mmd_rbf", "mmd_imq")


def prior_log_density(z: jax.Array, std) -> jax.Array:
  """(n,) log N(z; 0, std² I) of codes ``z`` (n, d).

  >>> import jax.numpy as jnp
  >>> round(float(prior_log_density(jnp.zeros((1, 2)), 1.0)[0]), 4)  # −log 2π
  -1.8379
  """
  d = z.shape[-1]
  return (-0.5 * jnp.sum(jnp.square(z), axis=-1) / jnp.square(std)
          - 0.5 * d * math.log(2 * math.pi) - d * jnp.log(std))


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class WAE(Autoencoder):
  """WAE-GAN or WAE-MMD.

  Hparams (all sweepable): ``lr_ae`` (and ``lr_critic`` for ``"gan"``),
  ``penalty_weight`` (λ), ``recon_weight`` (the WAE paper uses 0.05 with a
  squared-error cost), ``prior_scale`` (multiplies prior samples),
  ``kernel_scale`` (σ_p of the IMQ kernel), ``critic_noise`` (``"gan"`` only).

  Attributes:
    penalty: ``"mmd_imq"``, ``"mmd_rbf"`` or ``"gan"``.
    critic_hidden: the latent critic's hidden layers (``"gan"``).
    critic_dropout: dropout after the latent critic's hidden layers in training (``"gan"``).
    critic_log_prior: add log p(z) (gaussian prior, std ``prior_scale`` · its std) to the
      critic's logit (``"gan"`` only).

  Example:

    >>> import jax, jax.numpy as jnp
    >>> from aaejax.models import WAE
    >>> model = WAE(image_shape=(28, 28, 1), latent_dim=8, penalty="mmd_imq")
    >>> state = model.init(jax.random.key(0), {"penalty_weight": 10.0})
    >>> batch = {"image": jnp.zeros((8, 28, 28, 1), jnp.uint8), "label": jnp.zeros(8, jnp.int32)}
    >>> state, metrics = jax.jit(model.train_step)(state, batch, jax.random.key(1))
    >>> sorted(metrics)
    ['loss', 'penalty', 'recon_loss']
  """

  penalty: str = "mmd_imq"
  critic_hidden: Sequence[int] = (512, 512, 512, 512)
  critic_log_prior: bool = False
  critic_dropout: float = 0.0

  def __post_init__(self):
    if self.penalty not in WAE_PENALTIES:
      raise ValueError(f"unknown WAE penalty {self.penalty!r}; expected one of {WAE_PENALTIES}.")
    super().__post_init__()
    if self.critic_log_prior and self.penalty != "gan":
      raise ValueError(f"critic_log_prior needs penalty='gan' (a latent critic), got "
                       f"{self.penalty!r}.")
    if self.critic_log_prior and not isinstance(self.prior, priors_lib.Gaussian):
      raise ValueError(f"critic_log_prior adds the log-density of a gaussian prior; got "
                       f"{self.prior!r}.")

  @classmethod
  def from_config(cls, config, image_shape, **fields):
    fields.setdefault("penalty", config.penalty)
    if "critic_hidden" in config:
      fields.setdefault("critic_hidden", tuple(config.critic_hidden))
    fields.setdefault("critic_log_prior", bool(config.get("critic_log_prior", False)))
    fields.setdefault("critic_dropout", float(config.get("critic_dropout", 0.0)))
    return super().from_config(config, image_shape, **fields)

  def phases(self):
    ae = core.Phase("ae", ("encoder", "decoder"), self.loss_ae, lr_field="learning_rate")
    if self.penalty != "gan":
      return (ae,)
    return (core.Phase("critic", ("critic",), self.loss_critic), ae)

  def default_hparams(self):
    hp = {"lr_ae": 1e-3, "penalty_weight": 10.0, "recon_weight": 1.0, "prior_scale": 1.0,
          "kernel_scale": 1.0}
    if self.penalty == "gan":
      hp.update(lr_critic=5e-4, critic_noise=0.0)
    return hp

  def networks(self):
    nets = super().networks()
    if self.penalty == "gan":
      nets.update(critic_networks({"critic": self.latent_dim}, self.critic_hidden,
                                  dtype=self.dtype, dropout=self.critic_dropout))
    return nets

  def critic_logit_offset(self, state, z):
    """log p(z) with ``critic_log_prior`` (added to the critic's logits), else none."""
    if not self.critic_log_prior:
      return None
    return prior_log_density(z, state.hparams["prior_scale"] * self.prior.std)

  def prepare(self, state, batch, rng):
    """The batch's images, the step's keys, and prior samples both phases share."""
    x = self.inputs(batch)
    keys = jax.random.split(rng, 6)
    return {"x": x, "keys": keys, "pz": self.sample_prior(state, keys[0], x.shape[0])}

  def loss_critic(self, inputs, params, shared=None):
    """WAE-GAN's critic (first): prior samples real, the codes (held fixed) fake."""
    del shared
    state, x, keys = inputs.state, inputs.inputs["x"], inputs.inputs["keys"]
    heads, _ = self.encode_heads(params, state.model_state, x, keys[1])
    fake = self.latent_critic_logits(state, params, jax.lax.stop_gradient(heads["z"]), keys[2])
    real = self.latent_critic_logits(state, params, inputs.inputs["pz"], keys[3])
    loss = penalties.critic_loss(real, fake)
    return loss, ({"critic_loss": loss, "critic_acc": penalties.critic_accuracy(real, fake)},
                  state.model_state)

  def loss_ae(self, inputs, params, shared=None):
    """recon_weight · c(x, G(z)) + λ · D_Z(q(z), p(z))."""
    del shared
    state, x, keys = inputs.state, inputs.inputs["x"], inputs.inputs["keys"]
    heads, ms = self.encode_heads(params, state.model_state, x, keys[4])
    recon, ms = self.reconstruction(params, ms, x, heads["z"])
    if self.penalty == "gan":
      penalty = penalties.generator_loss(
          self.latent_critic_logits(state, params, heads["z"], keys[5]))
    else:
      penalty = penalties.mmd(heads["z"], inputs.inputs["pz"], self.penalty[4:],
                              state.hparams["kernel_scale"])
    loss = state.hparams["recon_weight"] * recon + state.hparams["penalty_weight"] * penalty
    return loss, ({"loss": loss, "recon_loss": recon, "penalty": penalty}, ms)
