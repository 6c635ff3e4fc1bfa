"""Autoencoder families and :func:`create`, which builds one from a config."""

from __future__ import annotations

from typing import Any, Mapping

import optax

from aaejax import networks, priors
from aaejax.models.aae import AAE
from aaejax.models.aae_labels import (ClusteringAAE, DimReductionAAE, SemiSupervisedAAE,
                                      StyleAAE, SupervisedPriorAAE)
from aaejax.models.base import Autoencoder, TrainState
from aaejax.models.wae import WAE, WAE_PENALTIES

MODELS = {"aae": AAE, "wae": WAE, "aae_supervised_prior": SupervisedPriorAAE,
          "aae_style": StyleAAE, "aae_semisupervised": SemiSupervisedAAE,
          "aae_clustering": ClusteringAAE, "aae_dimreduction": DimReductionAAE}


def _networks(config, image_shape, num_categories=0):
  gaussian = config.get("posterior", "deterministic") == "gaussian"
  latent = config.latent_dim
  if config.get("network", "mlp") == "mlp":
    hidden = tuple(config.get("hidden", networks.AAE_HIDDEN))
    return (networks.MLPEncoder(latent, hidden, gaussian, num_categories),
            networks.MLPDecoder(image_shape, hidden))
  if config.network != "conv":
    raise ValueError(f"unknown network {config.network!r}; expected 'mlp' or 'conv'.")
  channels = tuple(config.get("conv_channels", networks.WAE_CHANNELS))
  kernel = config.get("conv_kernel", 4 if image_shape[0] == 28 else 5)
  bn = config.get("batch_norm", True)
  # The WAE paper's decoders mirror the encoder: 7x7 -> 28x28 on MNIST (3 widths),
  # 8x8 -> 64x64 on CelebA (4 widths).
  default_dec = tuple(reversed(channels))[:len(channels) - (image_shape[0] == 28)]
  dec_channels = tuple(config.get("decoder_channels", default_dec))
  return (networks.ConvEncoder(latent, channels, kernel, bn, gaussian, num_categories),
          networks.ConvDecoder(image_shape, dec_channels, kernel, bn))


def lr_schedule(config):
  """Multiplier of every learning rate: piecewise constant at ``lr_boundaries`` (steps)."""
  boundaries = tuple(config.get("lr_boundaries", ()))
  factors = tuple(config.get("lr_factors", ()))
  if len(boundaries) != len(factors):
    raise ValueError(f"lr_boundaries {boundaries} and lr_factors {factors} differ in length.")
  if not boundaries:
    return lambda step: 1.0
  return optax.piecewise_constant_schedule(1.0, dict(zip(boundaries, factors)))


def create(config, image_shape) -> Autoencoder:
  """Builds the model named by ``config.model`` for images of ``image_shape``."""
  name = config.model
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}.")
  cls = MODELS[name]
  prior = priors.get(config.prior, dim=config.latent_dim,
                     **dict(config.get("prior_options", {}) or {}))
  # A model may read its own config fields (e.g. num_labeled, num_clusters).
  extra = cls.config_kwargs(config) if hasattr(cls, "config_kwargs") else {}
  encoder, decoder = _networks(config, tuple(image_shape), extra.get("num_categories", 0))
  kwargs: dict[str, Any] = dict(
      **extra, image_shape=tuple(image_shape), latent_dim=config.latent_dim, prior=prior,
      encoder=encoder, decoder=decoder, posterior=config.get("posterior", "deterministic"),
      recon_loss=config.get("recon_loss", "bernoulli"), adam_b1=config.get("adam_b1", 0.9),
      adam_b2=config.get("adam_b2", 0.999), lr_schedule=lr_schedule(config))
  if "critic_hidden" in config:
    kwargs["critic_hidden"] = tuple(config.critic_hidden)
  if name == "wae":
    kwargs["penalty"] = config.penalty
  return cls(**kwargs)


_HPARAM_FIELDS = {"lr_critic": "critic_learning_rate", "lr_gen": "gen_learning_rate",
                  "lr_supervised": "supervised_learning_rate"}


def hparams_from_config(model: Autoencoder, config: Mapping) -> dict[str, float]:
  """The model's hparams that ``config`` sets.

  ``learning_rate`` sets the main phase's rate (``lr_recon`` or ``lr_ae``),
  ``critic_learning_rate``, ``gen_learning_rate`` and ``supervised_learning_rate``
  the critic's, the generator's and the supervised phase's; every other hparam
  is set by the field of the same name.
  """
  main_lr = "lr_ae" if "ae" in model.PHASES else "lr_recon"
  fields = {main_lr: "learning_rate", **_HPARAM_FIELDS}
  return {k: float(config[fields.get(k, k)]) for k in model.DEFAULT_HPARAMS
          if fields.get(k, k) in config}


__all__ = ["AAE", "WAE", "SupervisedPriorAAE", "StyleAAE", "SemiSupervisedAAE", "ClusteringAAE",
           "DimReductionAAE", "WAE_PENALTIES", "Autoencoder", "TrainState", "MODELS", "create",
           "hparams_from_config", "lr_schedule"]
