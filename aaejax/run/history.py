"""A run's directory keeps its config history; a re-run may change only what resuming allows.

``config.json`` is the config of the latest start, ``config_history.jsonl`` one
line per start (UTC time, the step it resumed from, the fields that changed
and the whole config). A re-run of a workdir that holds a checkpoint is checked
before anything in the workdir is touched: fields in :data:`RESUMABLE_FIELDS`
(how long to train, how often to log, evaluate and save, where data and
caches live, plots) may change; any other difference stops the run with a
:class:`ConfigChanged` naming the fields, unless the new config sets
``allow_config_change=True`` (then the change is applied from the resumed step
on: hparams such as learning rates come from the new config, and recorded).

Example:

  >>> import tempfile, ml_collections
  >>> d = tempfile.mkdtemp()
  >>> c = ml_collections.ConfigDict({"latent_dim": 2, "num_steps": 100,
  ...                                "allow_config_change": False})
  >>> record(c, d, step=0)
  {}
  >>> c.num_steps = 200          # extending a run is fine
  >>> check(c, d, resuming=True)
  {'num_steps': (100, 200)}
  >>> c.latent_dim = 8
  >>> check(c, d, resuming=True)
  Traceback (most recent call last):
  ...
  aaejax.run.history.ConfigChanged: ...latent_dim: 2 -> 8...
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any, Mapping

from aaejax.core import config_checks
from aaejax.errors import ConfigError

# Fields a resumed run may change freely: the loop's schedule and bookkeeping, not the math.
RESUMABLE_FIELDS = frozenset({
    "num_steps", "log_every", "eval_every", "checkpoint_every", "max_checkpoints",
    "plots", "disable_progress", "skip_evaluators", "mode_coverage_samples", "cache_dir",
    "classifier_options", "data_dir", "num_devices", "divergence_limit",
    "allow_config_change", "download", "fd_samples", "kid_subsets", "kid_subset_size",
    "parzen_samples", "parzen_validation", "parzen_test", "effnet_weights", "inception_weights",
})


class ConfigChanged(ConfigError):
  """A re-run's config differs from the run's in fields that resuming does not allow."""


def _plain(config) -> dict:
  d = dict(config_checks.plain(config))
  return json.loads(json.dumps(d, default=str))  # tuples -> lists, as config.json holds them


def _load(workdir: str) -> dict | None:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigChanged(f"cannot read the run's config {path}: {e}. Repair or remove it "
                        "(the run's history is in config_history.jsonl).") from e


def _off(value) -> bool:
  """Whether ``value`` is an option's "off": None, "", 0, False or an empty list or dict."""
  return value is None or (isinstance(value, (str, int, float, list, dict)) and not value)


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
  """``{field: (old, new)}`` for every top-level field that differs (missing = None). A field
  missing on one side and off on the other (``""``, 0, False, empty), as a newer config's
  off-by-default option such as ``model_module`` or ``encoder_dropout`` against a run made
  before it existed, is no difference.

  >>> diff({"lr": 1.0}, {"lr": 1.0, "encoder_dropout": 0.0, "model_module": ""})
  {}
  >>> diff({"lr": 1.0}, {"lr": 2.0, "encoder_dropout": 0.25})
  {'encoder_dropout': (None, 0.25), 'lr': (1.0, 2.0)}
  """
  def differs(a, b):
    if a == b:
      return False
    return not (a is None or b is None) or not _off(b if a is None else a)
  return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
          if differs(old.get(k), new.get(k))}


def check(config, workdir: str, resuming: bool) -> dict[str, tuple[Any, Any]]:
  """The fields ``config`` changes against the run in ``workdir``; raises if not allowed.

  Args:
    config: the new config.
    workdir: the run's directory (its ``config.json`` is the old config).
    resuming: whether the run will resume from a checkpoint; a run that starts
      from scratch may change anything.

  Raises:
    ConfigChanged: if resuming and a field outside :data:`RESUMABLE_FIELDS`
      changed, unless ``config.allow_config_change``.
  """
  old = _load(workdir)
  new = _plain(config)
  if old is None:
    return {}
  changed = diff(old, new)
  refused = {k: v for k, v in changed.items() if k not in RESUMABLE_FIELDS}
  if resuming and refused and not new.get("allow_config_change", False):
    what = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
    raise ConfigChanged(
        f"{workdir} holds a run with another config ({what}). Use a new --workdir to start "
        "a new run, or pass --config.allow_config_change=True to resume this one with the "
        f"new values. Fields that may change on resume: {', '.join(sorted(RESUMABLE_FIELDS))}.")
  return changed


def record(config, workdir: str, step: int) -> dict[str, tuple[Any, Any]]:
  """Writes ``config.json`` and appends this start to ``config_history.jsonl``.

  Returns the fields that changed against the previous ``config.json``.
  """
  old = _load(workdir)
  new = _plain(config)
  changed = diff(old, new) if old is not None else {}
  os.makedirs(workdir, exist_ok=True)
  entry = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "step": int(step), "changed": {k: list(v) for k, v in changed.items()},
           "config": new}
  with open(os.path.join(workdir, "config_history.jsonl"), "a") as f:
    f.write(json.dumps(entry, sort_keys=True) + "\n")
  tmp = os.path.join(workdir, "config.json.tmp")
  with open(tmp, "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True) if hasattr(
        config, "to_json_best_effort") else json.dumps(new, indent=2, sort_keys=True))
  os.replace(tmp, os.path.join(workdir, "config.json"))
  return changed


def has_checkpoint(workdir: str) -> bool:
  """Whether ``workdir/checkpoints`` holds a finished checkpoint (a step directory)."""
  d = os.path.join(workdir, "checkpoints")
  return os.path.isdir(d) and any(n.isdigit() for n in os.listdir(d))
