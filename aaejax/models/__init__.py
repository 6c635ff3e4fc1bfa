"""Model families and the registry :func:`create` builds a config's model from.

Every model is an :class:`aaejax.core.Model`: named networks, named phases
(each its own optimizer state and ``lr_<phase>``), hparams and a pure train
step. The autoencoder family (:mod:`aaejax.models.autoencoder`) holds the AAE,
the label-aware AAEs, the WAE and the VAE; the GAN family
(:mod:`aaejax.models.gan`) the GAN. A new model registers its class under the
name configs use (``config.model``) with :func:`register`; a model outside the package
registers itself in a module that ``config.model_module`` names (:func:`import_model_module`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Mapping

from aaejax import data, evaluation, priors
from aaejax.core import config_checks
from aaejax.nets import networks
from aaejax.core import Model, TrainState, lr_schedule
from aaejax.errors import ConfigError
from aaejax.models.aae import AAE
from aaejax.models.aae_categorical import ClusteringAAE, SemiSupervisedAAE
from aaejax.models.aae_dimreduction import DimReductionAAE
from aaejax.models.aae_style import StyleAAE
from aaejax.models.aae_supervised_prior import SupervisedPriorAAE
from aaejax.models.autoencoder import POSTERIORS, Autoencoder
from aaejax.models.bigan import BiGAN
from aaejax.models.dann import DANN
from aaejax.models.gan import GAN, AdversarialGenerator
from aaejax.models.infogan import InfoGAN
from aaejax.models.triplegan import TripleGAN
from aaejax.models.vae import VAE
from aaejax.models.vaegan import VAEGAN
from aaejax.models.wae import WAE, WAE_PENALTIES

MODELS: dict[str, type[Model]] = {
    "aae": AAE, "wae": WAE, "vae": VAE, "gan": GAN,
    "aae_supervised_prior": SupervisedPriorAAE, "aae_style": StyleAAE,
    "aae_semisupervised": SemiSupervisedAAE, "aae_clustering": ClusteringAAE,
    "aae_dimreduction": DimReductionAAE, "dann": DANN, "triplegan": TripleGAN,
    "infogan": InfoGAN, "bigan": BiGAN, "vaegan": VAEGAN}


def register(name: str, cls: type[Model]) -> None:
  """Makes ``config.model = name`` build ``cls.from_config(config, image_shape)``."""
  MODELS[name] = cls


def choices() -> config_checks.Choices:
  """The config fields that name a registered thing, with the names known now."""
  return {"model": ("model", tuple(sorted(MODELS))),
          "dataset": ("dataset", tuple(data.SUPPORTED_DATASETS)),
          "prior": ("prior", tuple(priors.names())),
          "posterior": ("posterior", tuple(POSTERIORS)),
          "network": ("network", config_checks.NETWORKS),
          "recon_loss": ("reconstruction loss", tuple(networks.RECON_LOSSES)),
          "penalty": ("WAE penalty", tuple(WAE_PENALTIES)),
          "compute_dtype": ("compute dtype", tuple(networks.COMPUTE_DTYPES))}


def import_model_module(config) -> None:
  """Imports ``config.model_module`` (if set), whose import registers a model outside the
  package (``aaejax.models.register(name, cls)``): a dotted module name on ``sys.path``, or
  the path of a ``.py`` file. Imported once per process; a missing module or file is a
  :class:`ConfigError`, an error inside the module keeps its traceback.
  """
  target = config.get("model_module", "") if hasattr(config, "get") else ""
  if not target:
    return
  if not isinstance(target, str):
    raise ConfigError(f"config.model_module={target!r}: expected a module name or a .py path.")
  if target.endswith(".py") or os.sep in target:
    path = os.path.abspath(os.path.expanduser(target))
    name = "aaejax_user_model_" + "".join(c if c.isalnum() else "_" for c in path)
    if name in sys.modules:
      return
    if not os.path.isfile(path):
      raise ConfigError(f"config.model_module={target!r}: no such file {path!r}.")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
      spec.loader.exec_module(module)
    except BaseException:
      del sys.modules[name]
      raise
    return
  try:
    importlib.import_module(target)
  except ModuleNotFoundError as e:
    if e.name and target.startswith(e.name):
      raise ConfigError(f"config.model_module={target!r}: no module {e.name!r} on sys.path "
                        "(or give the path of its .py file).") from None
    raise


def validate(config) -> None:
  """:func:`aaejax.core.config_checks.validate` against today's registries (:func:`choices`),
  after importing ``config.model_module`` (:func:`import_model_module`).

  >>> validate({"model": "aea"})
  Traceback (most recent call last):
  aaejax.errors.ConfigError: config.model='aea': unknown model 'aea'; expected one of ('aae', 'aae_clustering', 'aae_dimreduction', 'aae_semisupervised', 'aae_style', 'aae_supervised_prior', 'bigan', 'dann', 'gan', 'infogan', 'triplegan', 'vae', 'vaegan', 'wae').
  """
  import_model_module(config)
  config_checks.validate(config, choices())


def check(config, image_shape=None) -> Model:
  """The preflight of a run: the fields (:func:`validate`), then the model built for the
  data's images (``image_shape`` defaults to the shape of ``config.dataset``'s images).
  Cheap: no data is loaded. Raises :class:`~aaejax.errors.ConfigError`."""
  validate(config)
  if image_shape is None:
    image_shape = data.IMAGE_SHAPES[config["dataset"] if "dataset" in config else "mnist"]
  return create(config, image_shape)


def create(config, image_shape) -> Model:
  """Builds the model named by ``config.model`` for images of ``image_shape``.

  The config's fields are checked first (:func:`validate`); what the model's
  ``from_config`` then rejects (a ``ValueError`` or ``TypeError``, e.g. a ``num_labeled``
  that is not a multiple of the classes, an unknown prior option) is raised as a
  :class:`~aaejax.errors.ConfigError` too, naming the model.
  """
  validate(config)
  name = config["model"]
  if name not in MODELS:
    raise ConfigError(f"unknown model {name!r}; known models: {sorted(MODELS)}.")
  try:
    model = MODELS[name].from_config(config, tuple(image_shape))
  except ConfigError:
    raise
  except (ValueError, TypeError) as e:
    raise ConfigError(f"config (model {name!r}): {e}") from e
  check_labels_available(model, config)
  check_skipped_evaluators(model, config)
  check_phase_schedules(model)
  return model


def check_phase_schedules(model: Model) -> None:
  """A :class:`ConfigError` for a ``config.phase_lr_factors`` key that is not a phase of
  ``model``."""
  known = tuple(p.name for p in model.phases())
  for name in model.phase_lr_schedules:
    if name not in known:
      raise ConfigError(f"config.phase_lr_factors: unknown phase {name!r} of model "
                        f"{type(model).__name__}; expected one of {known}.")


def check_skipped_evaluators(model: Model, config: Mapping) -> None:
  """A :class:`ConfigError` for a ``config.skip_evaluators`` name that is neither a shared
  evaluator nor one of the model's own."""
  skip = tuple(config.get("skip_evaluators", ()) or ()) if hasattr(config, "get") else ()
  known = sorted({*evaluation.REGISTRY, *(e.name for e in model.evaluators())})
  for name in skip:
    if name not in known:
      raise ConfigError(f"config.skip_evaluators={skip!r}: unknown evaluator {name!r}; "
                        f"expected one of {tuple(known)}.")


def check_labels_available(model: Model, config: Mapping) -> None:
  """A :class:`ConfigError` if ``model`` reads labels and ``config.dataset`` has none (CelebA).

  >>> check_labels_available(SupervisedPriorAAE(image_shape=(64, 64, 3), latent_dim=2),
  ...                        {"model": "aae_supervised_prior", "dataset": "celeb_a"})
  Traceback (most recent call last):
  aaejax.errors.ConfigError: config.model='aae_supervised_prior' reads labels (batch['label'], batch['labeled_label']) but config.dataset='celeb_a' has none; use a model that reads no labels (e.g. aae, wae, vae, gan).
  """
  dataset = config.get("dataset") if hasattr(config, "get") else None
  fields = model.label_fields()
  if dataset in data.SUPPORTED_DATASETS and not data.has_labels(dataset) and fields:
    raise ConfigError(
        f"config.model={config.get('model')!r} reads labels "
        f"({', '.join(f'batch[{k!r}]' for k in sorted(fields))}) but config.dataset="
        f"{dataset!r} has none; use a model that reads no labels (e.g. aae, wae, vae, gan).")


def hparams_from_config(model: Model, config: Mapping) -> dict[str, float]:
  """The model's hparams that ``config`` sets (see :meth:`aaejax.core.Model.hparam_fields`)."""
  return {h: float(config[f]) for h, f in model.hparam_fields().items() if f in config}


__all__ = ["AAE", "WAE", "VAE", "GAN", "SupervisedPriorAAE", "StyleAAE", "SemiSupervisedAAE",
           "ClusteringAAE", "DimReductionAAE", "DANN", "WAE_PENALTIES", "Autoencoder",
           "AdversarialGenerator", "TripleGAN", "InfoGAN", "BiGAN", "VAEGAN", "Model",
           "TrainState", "MODELS", "create", "register", "hparams_from_config", "lr_schedule", "validate", "check", "choices",
           "import_model_module"]
