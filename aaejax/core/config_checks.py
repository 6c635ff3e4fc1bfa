"""Config validation in one place: every known field's type and range, before any work.

:func:`validate` checks the fields of an experiment config (a ``ConfigDict`` or a plain
mapping) and raises :class:`~aaejax.errors.ConfigError` (a ``ValueError``) for the first
bad one, with a message that names the field, its value and what is expected::

  config.learning_rate=-0.001: expected a positive number (a learning rate).

It checks the fields it knows (those of ``experiments/configs/``, by name or by suffix:
``*learning_rate``, ``*_weight``, ``*_hidden``, ``*_channels``) and leaves others alone, so
a config may carry fields of its own. Fields that name a registered thing (``model``,
``dataset``, ``prior``, ...) are checked against the names its caller passes: this module
imports no registry. :func:`aaejax.models.validate` passes today's registries and
:func:`aaejax.models.create` runs it before building a model (the whole preflight of a run
is :func:`aaejax.models.check`); :func:`check_workdir` checks a run's output directory.

Example:

  >>> validate({"model": "aae", "batch_size": 0})
  Traceback (most recent call last):
  aaejax.errors.ConfigError: config.batch_size=0: expected an int >= 1.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any, Callable, Mapping

from aaejax.errors import ConfigError
from aaejax.nets.conv import IMPLS as CONV_IMPLS

NETWORKS = ("mlp", "conv")

# Field -> (what it names, the names it may take), e.g. {"model": ("model", ("aae", ...))}.
Choices = Mapping[str, tuple[str, tuple[str, ...]]]


def _items(config) -> dict[str, Any]:
  if hasattr(config, "keys"):
    return {k: config[k] for k in config.keys()}
  raise ConfigError(f"a config must be a ConfigDict or a mapping, got {type(config).__name__}.")


def _is_int(v) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _int(lo=None) -> tuple[Callable[[Any], bool], str]:
  return ((lambda v: _is_int(v) and (lo is None or v >= lo)),
          "an int" + (f" >= {lo}" if lo is not None else ""))


def _number(lo=None, hi=None, lo_open=False, hi_open=False, what=""):
  def ok(v):
    return (_is_number(v) and (lo is None or (v > lo if lo_open else v >= lo))
            and (hi is None or (v < hi if hi_open else v <= hi)))

  if lo == 0 and lo_open and hi is None:
    text = "a positive number"
  elif lo == 0 and hi is None:
    text = "a number >= 0"
  else:
    text = (f"a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}")
  return ok, text + (f" ({what})" if what else "")


def _ints_tuple(lo=1):
  return ((lambda v: isinstance(v, (tuple, list)) and all(_is_int(x) and x >= lo for x in v)),
          f"a tuple of ints >= {lo}, e.g. (1000, 1000)")


_BOOL = ((lambda v: isinstance(v, bool)), "True or False")
_STR = ((lambda v: isinstance(v, str)), "a string")
_DICT = ((lambda v: hasattr(v, "keys")), "a dict, e.g. \"{'steps': 3000}\"")

# Field -> (predicate, what is expected).
FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": _int(),
    "batch_size": _int(1), "num_steps": _int(1), "log_every": _int(1), "eval_every": _int(1),
    "checkpoint_every": _int(1), "max_checkpoints": _int(1), "mode_coverage_samples": _int(1),
    "iw_samples": _int(1), "iw_examples": _int(1), "fd_samples": _int(2),
    "kid_subsets": _int(1), "kid_subset_size": _int(2), "parzen_samples": _int(1),
    "parzen_validation": _int(1), "parzen_test": _int(2), "latent_dim": _int(1), "conv_kernel": _int(1),
    "num_devices": _int(0), "num_labeled": _int(0), "labeled_batch_size": _int(0),
    "num_clusters": _int(2), "num_classes": _int(2), "num_categories": _int(2),
    "num_continuous": _int(0), "q_hidden": _int(1), "minibatch_std": _int(0),
    "plots": _BOOL, "disable_progress": _BOOL, "batch_norm": _BOOL, "download": _BOOL,
    "critic_log_prior": _BOOL, "label_adversary": _BOOL, "content_encoder": _BOOL,
    "stochastic_encoder": _BOOL, "cycle_examples": _int(1), "three_way": _BOOL,
    "critic_batch_norm": _BOOL, "feature_layer": _int(),
    "data_dir": _STR, "cache_dir": _STR, "model_module": _STR, "effnet_weights": _STR, "inception_weights": _STR,
    "prior_options": _DICT, "classifier_options": _DICT,
    "conv_impl": ((lambda v: v in CONV_IMPLS), f"one of {CONV_IMPLS} (aaejax.nets.conv)"),
    "adam_b1": _number(0, 1, hi_open=True), "adam_b2": _number(0, 1, hi_open=True),
    "critic_dropout": _number(0, 1, hi_open=True),
    "encoder_dropout": _number(0, 1, hi_open=True),
    "prior_scale": _number(0, lo_open=True), "kernel_scale": _number(0, lo_open=True),
    "critic_noise": _number(0), "beta": _number(0), "head_margin": _number(0),
    "lr_boundaries": _ints_tuple(0),
    "lr_factors": ((lambda v: isinstance(v, (tuple, list))
                    and all(_is_number(x) and x > 0 for x in v)),
                   "a tuple of positive numbers, e.g. (0.1,)"),
    "phase_lr_factors": ((lambda v: isinstance(plain(v), dict) and all(
        isinstance(k, str) and isinstance(f, (tuple, list)) and f
        and all(_is_number(x) and x > 0 for x in f) for k, f in plain(v).items())),
        "a dict of phase name -> tuple of positive numbers, e.g. {'recon': (0.5,)}"),
    "skip_evaluators": ((lambda v: isinstance(v, (tuple, list))
                         and all(isinstance(x, str) for x in v)),
                        "a tuple of evaluator names, e.g. ('mode_coverage',)"),
}


def plain(value):
  """A ConfigDict (or any value with ``to_dict``) as a dict; other values as they are."""
  return value.to_dict() if hasattr(value, "to_dict") else value


def _pattern(field: str):
  if field == "learning_rate" or field.endswith("_learning_rate"):
    return _number(0, lo_open=True, what="a learning rate")
  if field.endswith("_weight"):
    return _number(0, what="a loss weight")
  if field == "hidden" or field.endswith("_hidden") or field.endswith("_channels"):
    return _ints_tuple(1)
  return None


def _show(field: str, value) -> str:
  return f"config.{field}={plain(value)!r}"


def validate(config, choices: Choices | None = None) -> None:
  """Checks every known field of ``config``; raises :class:`ConfigError` for the first bad one.

  Checked: ``model`` is present; each field of ``choices`` (``model``, ``dataset``,
  ``prior``, ``posterior``, ``network``, ``recon_loss``, ``penalty``, ``compute_dtype`` as
  :func:`aaejax.models.validate` passes them; ``network`` alone by default) names a known thing
  (``skip_evaluators`` is a tuple of names; which names, the model knows:
  :func:`aaejax.models.create` checks them); counts
  (``batch_size``, ``num_steps``, ``latent_dim``, …) are ints >= 1 (``num_devices``,
  ``num_labeled`` >= 0); every ``*learning_rate`` is a positive number, every ``*_weight``
  >= 0; ``adam_b1``, ``adam_b2``, ``critic_dropout`` and ``encoder_dropout`` are in [0, 1);
  layer widths (``hidden``, ``*_hidden``, ``*_channels``) are tuples of positive ints;
  ``lr_boundaries`` (increasing ints >= 0) and ``lr_factors`` (positive) have the same
  length, as has each phase's tuple in ``phase_lr_factors`` (the phase names the model
  checks). Fields it does not know are left alone; what only a model can judge (e.g.
  ``num_labeled`` a multiple of the classes) :func:`aaejax.models.create` reports. Cheap: no
  data, no device.
  """
  fields = _items(config)
  choices = {"network": ("network", NETWORKS)} if choices is None else choices
  if "model" not in fields:
    known = f"; expected one of {choices['model'][1]}" if "model" in choices else ""
    raise ConfigError(f"config.model is missing{known}.")
  for field in sorted(fields, key=lambda f: (f != "model", f)):
    value = fields[field]
    if field in choices:
      noun, known = choices[field]
      for v in (value,):
        if not isinstance(v, str) or v not in known:
          raise ConfigError(f"{_show(field, value)}: unknown {noun} {v!r}; expected one of "
                            f"{known}.")
      continue
    spec = FIELDS.get(field) or _pattern(field)
    if spec is not None and not spec[0](value):
      raise ConfigError(f"{_show(field, value)}: expected {spec[1]}.")
  boundaries = tuple(fields.get("lr_boundaries", ()) or ())
  factors = tuple(fields.get("lr_factors", ()) or ())
  if len(boundaries) != len(factors):
    raise ConfigError(f"config.lr_boundaries={boundaries} and config.lr_factors={factors}: "
                      f"expected the same length (one factor per boundary), got "
                      f"{len(boundaries)} and {len(factors)}.")
  for name, own in plain(fields.get("phase_lr_factors", {}) or {}).items():
    if len(tuple(own)) != len(boundaries):
      raise ConfigError(f"config.phase_lr_factors={plain(fields['phase_lr_factors'])!r}: "
                        f"expected one factor per lr_boundaries entry {boundaries} for phase "
                        f"{name!r}, got {len(tuple(own))}.")
  if any(b >= a for b, a in zip(boundaries, boundaries[1:])):
    raise ConfigError(f"config.lr_boundaries={boundaries}: expected increasing steps.")


def check_workdir(workdir) -> str:
  """``workdir`` if it can be a run's output directory (an existing one, or a new path).

  Raises :class:`ConfigError` for an empty path, a path that is a file (or whose parent
  is), or an existing directory that cannot be written.
  """
  if not workdir or not str(workdir).strip():
    raise ConfigError("--workdir is required: the directory for checkpoints, metrics and "
                      "plots (created if missing).")
  workdir = os.path.expanduser(str(workdir))
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir={workdir} is a regular file; expected a directory (created "
                      "if missing).")
  parent = os.path.abspath(workdir)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise ConfigError(f"--workdir={workdir}: {parent} is a regular file; expected a "
                      "directory path.")
  if not os.access(parent, os.W_OK | os.X_OK):
    raise ConfigError(f"--workdir={workdir}: {parent} is not writable.")
  return workdir

