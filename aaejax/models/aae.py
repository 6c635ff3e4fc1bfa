"""Unsupervised adversarial autoencoder (Makhzani et al. 2015, Sec. 2).

One train step is the paper's two phases on one mini-batch, each with its own
Adam state:

1. reconstruction: encoder and decoder minimise the reconstruction loss;
2. regularization: the critic learns to tell prior samples (real) from codes
   (fake), then the encoder, as the generator, learns to fool it
   (non-saturating loss).

Each phase sees the networks as the previous phase left them.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp

from aaejax import networks, penalties
from aaejax.models.base import Autoencoder


@dataclasses.dataclass(frozen=True, eq=False)
class AAE(Autoencoder):
  """Unsupervised AAE with any prior.

  Hparams (all sweepable): ``lr_recon``, ``lr_critic``, ``lr_gen`` (Adam
  learning rates of the three phases), ``recon_weight`` (multiplies the
  reconstruction loss), ``gen_weight`` (multiplies the encoder's adversarial
  loss), ``prior_scale`` (multiplies prior samples), ``critic_noise`` (std of
  gaussian noise added to both critic inputs; 0 disables it).

  Example:

    >>> import jax, jax.numpy as jnp
    >>> from aaejax.models import AAE
    >>> model = AAE(image_shape=(28, 28, 1), latent_dim=2, prior="gaussian_mixture",
    ...             critic_hidden=(64,))
    >>> state = model.init(jax.random.key(0))
    >>> batch = {"image": jnp.zeros((8, 28, 28, 1), jnp.uint8), "label": jnp.zeros(8, jnp.int32)}
    >>> state, metrics = jax.jit(model.train_step)(state, batch, jax.random.key(1))
    >>> sorted(metrics)
    ['critic_acc', 'critic_loss', 'gen_loss', 'recon_loss']
  """

  PHASES = {"recon": ("encoder", "decoder"), "critic": ("critic",), "gen": ("encoder",)}
  DEFAULT_HPARAMS = {"lr_recon": 1e-3, "lr_critic": 1e-4, "lr_gen": 1e-4, "recon_weight": 1.0,
                     "gen_weight": 1.0, "prior_scale": 1.0, "critic_noise": 0.0}

  critic_hidden: Sequence[int] = networks.AAE_HIDDEN

  def extra_networks(self):
    z = jnp.zeros((2, self.latent_dim), jnp.float32)
    return {"critic": (networks.Critic(tuple(self.critic_hidden)), (z,))}

  def critic_logits(self, state, params, z, rng):
    """The critic's logits on ``z`` with ``critic_noise`` gaussian noise added."""
    z = z + state.hparams["critic_noise"] * jax.random.normal(rng, z.shape, z.dtype)
    return self.apply("critic", params, {}, z, train=True)[0]

  def train_step(self, state, batch, rng):
    x = self._inputs(batch)
    n = x.shape[0]
    keys = jax.random.split(rng, 7)

    def recon_loss(params):
      heads, ms = self.encode_heads(params, state.model_state, x, keys[0])
      recon, ms = self.reconstruction(params, ms, x, heads["z"])
      return state.hparams["recon_weight"] * recon, ({"recon_loss": recon}, ms)

    state, m_recon = self.phase(state, "recon", recon_loss)

    def critic_loss(params):
      heads, _ = self.encode_heads(params, state.model_state, x, keys[1])
      fake = self.critic_logits(state, params, jax.lax.stop_gradient(heads["z"]), keys[2])
      real = self.critic_logits(state, params, self.sample_prior(state, keys[3], n), keys[4])
      loss = penalties.critic_loss(real, fake)
      return loss, ({"critic_loss": loss, "critic_acc": penalties.critic_accuracy(real, fake)},
                    state.model_state)

    state, m_critic = self.phase(state, "critic", critic_loss)

    def gen_loss(params):
      heads, _ = self.encode_heads(params, state.model_state, x, keys[5])
      loss = penalties.generator_loss(self.critic_logits(state, params, heads["z"], keys[6]))
      return state.hparams["gen_weight"] * loss, ({"gen_loss": loss}, state.model_state)

    state, m_gen = self.phase(state, "gen", gen_loss)
    return state.replace(step=state.step + 1), {**m_recon, **m_critic, **m_gen}
