"""A model outside the package: a denoising autoencoder (Vincent et al. 2008) on the core.

The README's "How to add a model" walks through it. Its config,
``experiments/examples/denoising_ae_config.py``, names this file in ``config.model_module``;
importing it registers the model, and ``main.py``, ``sweep.py`` and ``benchmark.py`` train,
sweep and time it like any other:

  python experiments/main.py --config=experiments/examples/denoising_ae_config.py \
      --workdir=runs/dae
"""

import dataclasses

import jax
import jax.numpy as jnp

from aaejax import core, models
from aaejax.models.autoencoder import Autoencoder


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class DenoisingAE(Autoencoder):
  """Encoder and decoder of the autoencoder family (MLP or conv, from the config); one phase
  ``ae`` reconstructs each image from a copy with gaussian noise of std ``noise_std`` added
  (clipped to [0, 1]). Hparams (sweepable): ``lr_ae``, ``noise_std``, ``recon_weight``."""

  def phases(self):
    # One phase: trains both networks; its rate hparams["lr_ae"] is set by the config field
    # learning_rate (lr_field), so `--config.learning_rate` and sweeps over it work.
    return (core.Phase("ae", ("encoder", "decoder"), self.loss_ae, lr_field="learning_rate"),)

  def default_hparams(self):
    # Every number a sweep may vary; arrays in state.hparams, set by the config fields of
    # the same names. prior_scale is the family's (it scales the prior's samples).
    return {"lr_ae": 1e-3, "noise_std": 0.3, "recon_weight": 1.0, "prior_scale": 1.0}

  def capabilities(self):
    # What the evaluators and figures may use: codes, decoding, reconstructions (not
    # generation: a denoising AE's codes are not fitted to a prior).
    return frozenset({core.ENCODE, core.DECODE, core.RECONSTRUCT})

  def loss_ae(self, inputs, params, shared):
    """The loss contract: ``(inputs, params, shared) -> (loss, (metrics, model_state))``.

    ``inputs`` holds the step's ``batch``, ``state`` (hparams, model state), ``rng`` (this
    step's and phase's key) and ``progress``; ``params`` are every network's parameters (the
    phase differentiates those it trains); ``shared`` is the output of the phase's
    ``forward`` (None here). Return the scalar loss, the metrics to log (scalars) and the
    networks' updated model state (batch-norm statistics).
    """
    del shared
    state, x = inputs.state, self.inputs(inputs.batch)
    noise_rng, encoder_rng = jax.random.split(inputs.rng)
    noisy = jnp.clip(x + state.hparams["noise_std"] * jax.random.normal(noise_rng, x.shape),
                     0.0, 1.0)
    heads, model_state = self.encode_heads(params, state.model_state, noisy, encoder_rng)
    recon, model_state = self.reconstruction(params, model_state, x, heads["z"])
    loss = state.hparams["recon_weight"] * recon
    return loss, ({"loss": loss, "recon_loss": recon}, model_state)


models.register("denoising_ae", DenoisingAE)
